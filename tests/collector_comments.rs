//! Comments over real HTTP: counted and matched against declared themes, and never echoed — not in
//! `/metrics`, not in a log line at any level, not in any answer, accepted or refused.

#[path = "support/otlp.rs"]
mod otlp;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cx_conductor::collector::config::CollectorConfig;
use cx_conductor::collector::{Collector, ServeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const MARKER: &str = "MARKER-7f3a-comment";

const CONFIG: &str = r#"
namespace: retail
touchpoint: web-checkout
channel: web
stage: delivery
surveys: [{ metric: nps }, { metric: csat, scale: 5 }]
interactions: { outcomes: [completed, abandoned] }
maxEventBytes: 4096
maxCommentBytes: 200
themes:
  - name: delivery
    keywords: [consegn*, corriere, delivery, courier, late, in ritardo]
    exclude: [non in ritardo]
  - name: price
    keywords: [prezz*, price, expensive]
"#;

/// Every log line of this test binary, at trace level.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || Capture(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        logs
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A request over a fresh connection: the status and the whole answer (head and body).
async fn post(addr: SocketAddr, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8(answer).expect("UTF-8 answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    String::from_utf8(answer).expect("UTF-8 answer")
}

/// The value of the one series of `name` whose labels include every one of `labels`.
#[track_caller]
fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    let found: Vec<f64> = metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse().ok())
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?} in\n{metrics}");
    found[0]
}

#[tokio::test]
async fn comments_are_counted_by_theme_and_never_echoed() {
    let logs = logs();
    let config: CollectorConfig = serde_yaml::from_str(CONFIG).expect("test config");
    let collector = Collector::new(&config, ServeOptions::default()).expect("collector starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(collector.serve(listener, async {
        let _ = stopped.await;
    }));

    let mut answers = Vec::new();
    // The issue's example: an Italian detractor about a late courier.
    let delivery = r#"{"type":"survey","metric":"nps","score":3,"comment":"Il corriere è arrivato in ritardo"}"#;
    let (status, answer) = post(addr, "/v1/events", "application/json", delivery).await;
    assert_eq!(status, 202, "{answer}");
    // Accepted comments with the marker, single and batched, with theme words and without.
    for event in [
        format!(
            r#"{{"type":"survey","metric":"nps","score":10,"comment":"{MARKER} courier on time","language":"en-GB","eventId":"e-1"}}"#
        ),
        format!(
            r#"{{"type":"interaction","outcome":"abandoned","comment":"{MARKER} troppo caro, prezzi alti"}}"#
        ),
        format!(r#"{{"type":"survey","metric":"csat","score":3,"comment":"{MARKER}"}}"#),
    ] {
        let (status, answer) = post(addr, "/v1/events", "application/json", &event).await;
        assert_eq!(status, 202, "{answer}");
        answers.push(answer);
    }
    // Refused comments with the marker: over the limit, a control character, the wrong type of a
    // neighbour field, and invalid UTF-8 would not even be a string.
    let long = format!("{MARKER} {}", "x".repeat(200));
    let refusals = [
        (
            format!(r#"{{"type":"survey","metric":"nps","score":3,"comment":"{long}"}}"#),
            "comment_too_long",
        ),
        (
            format!(r#"{{"type":"survey","metric":"nps","score":3,"comment":"{MARKER}\u0007"}}"#),
            "invalid_comment",
        ),
        (
            format!(
                r#"{{"type":"survey","metric":"nps","score":3,"comment":"{MARKER}","text":1}}"#
            ),
            "unknown_field",
        ),
        (
            format!(r#"{{"type":"survey","metric":"nps","score":11,"comment":"{MARKER}"}}"#),
            "score_out_of_range",
        ),
        (
            format!("{{\"type\":\"survey\",\"comment\":\"{MARKER}\u{1}\"}}"),
            "malformed",
        ),
    ];
    for (event, reason) in &refusals {
        let (status, answer) = post(addr, "/v1/events", "application/json", event).await;
        assert!((400..500).contains(&status), "{answer}");
        assert!(answer.contains(reason), "{reason}: {answer}");
        answers.push(answer);
    }
    // An over-limit comment with the issue-20 limit in the message, naming the field only.
    let over_limit = &answers[3];
    assert!(over_limit.starts_with("HTTP/1.1 422"), "{over_limit}");
    assert!(over_limit.contains(r#""field":"comment""#), "{over_limit}");
    assert!(over_limit.contains("200"), "{over_limit}");
    // A batch: only the bad event is refused.
    let batch = format!(
        "{{\"type\":\"survey\",\"metric\":\"nps\",\"score\":5,\"comment\":\"{MARKER} consegna lenta\"}}\n\
         {{\"type\":\"survey\",\"metric\":\"nps\",\"score\":5,\"comment\":\"{long}\"}}\n\
         {{\"type\":\"survey\",\"metric\":\"nps\",\"score\":5,\"comment\":\"{MARKER} non in ritardo\"}}\n"
    );
    let (status, answer) = post(addr, "/v1/events:batch", "application/x-ndjson", &batch).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(r#""accepted":2"#), "{answer}");
    assert!(
        answer.contains(r#""index":1,"reason":"comment_too_long""#),
        "{answer}"
    );
    answers.push(answer);
    let json_batch = format!(
        r#"[{{"type":"survey","metric":"nps","score":8,"comment":"{MARKER} delivery"}},{{"type":"survey","metric":"nps","score":8,"comment":"{long}"}}]"#
    );
    let (status, answer) = post(addr, "/v1/events:batch", "application/json", &json_batch).await;
    assert_eq!(status, 200, "{answer}");
    answers.push(answer);

    let metrics = get(addr, "/metrics").await;
    let tp = r#"touchpoint="web-checkout""#;
    let theme = |t: &str, metric: &str, segment: &str| {
        sample(
            &metrics,
            "cx_feedback_themes_total",
            &[
                tp,
                &format!(r#"theme="{t}""#),
                &format!(r#"metric="{metric}""#),
                &format!(r#"segment="{segment}""#),
            ],
        )
    };
    assert_eq!(theme("delivery", "nps", "detractor"), 2.0, "{metrics}");
    assert_eq!(theme("delivery", "nps", "promoter"), 1.0);
    assert_eq!(theme("delivery", "nps", "passive"), 1.0);
    assert_eq!(theme("price", "interaction", "abandoned"), 1.0);
    assert_eq!(theme("price", "nps", "detractor"), 0.0);
    assert_eq!(theme("delivery", "csat", "neutral"), 0.0);
    let comments = |metric: &str, segment: &str| {
        sample(
            &metrics,
            "cx_feedback_comments_total",
            &[
                tp,
                &format!(r#"metric="{metric}""#),
                &format!(r#"segment="{segment}""#),
            ],
        )
    };
    assert_eq!(comments("nps", "detractor"), 3.0);
    assert_eq!(comments("csat", "neutral"), 1.0);
    assert_eq!(comments("interaction", "abandoned"), 1.0);
    assert_eq!(
        sample(
            &metrics,
            "cx_events_rejected_total",
            &[r#"reason="comment_too_long""#]
        ),
        3.0
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .expect("drains")
        .expect("serve task");

    assert!(!metrics.contains(MARKER), "{metrics}");
    for answer in &answers {
        assert!(!answer.contains(MARKER), "{answer}");
    }
    let logs =
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "the subscriber captured nothing: {logs}"
    );
    assert!(!logs.contains(MARKER), "{logs}");
    assert!(!logs.contains("MARKER"), "{logs}");
}

/// The issue's "done when", offline: the retail example's own pool configuration (as `check
/// --plan` plans it, themes from the journey included) counts an Italian detractor's comment
/// about a late delivery under the delivery theme and the detractor segment.
#[tokio::test]
async fn the_retail_pool_counts_an_italian_late_delivery_under_delivery_and_detractor() {
    use cx_conductor::collector::config::CollectorSetup;
    let plan = std::process::Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
        .args(["check", "-f", "examples/retail", "--plan"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("check runs");
    assert!(plan.status.success());
    let secret: serde_json::Value = serde_yaml::Deserializer::from_slice(&plan.stdout)
        .filter_map(|doc| serde::Deserialize::deserialize(doc).ok())
        .find(|doc: &serde_json::Value| doc["kind"] == "Secret")
        .expect("the pool's Secret");
    // serde_yaml reads the Secret's data as base64 text: decode it through k8s-openapi's type.
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(secret).expect("a Secret");
    let config = secret
        .data
        .and_then(|d| d.get("collectors.yaml").map(|b| b.0.clone()))
        .expect("the pool's configuration");
    let setup = CollectorSetup::from_yaml(std::str::from_utf8(&config).expect("UTF-8"))
        .expect("the pool's configuration parses");
    let collector = Collector::with_setup(&setup, ServeOptions::default()).expect("pool starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(collector.serve(listener, async {
        let _ = stopped.await;
    }));
    let path = "/v1/touchpoints/web-checkout/events";
    let late = r#"{"type":"survey","metric":"nps","score":4,"comment":"Il pacco è arrivato con tre giorni di ritardo, corriere introvabile","language":"it-IT"}"#;
    let on_time = r#"{"type":"survey","metric":"nps","score":9,"comment":"Consegna non in ritardo, tutto perfetto"}"#;
    for event in [late, on_time] {
        let (status, answer) = post(addr, path, "application/json", event).await;
        assert_eq!(status, 202, "{answer}");
    }
    let metrics = get(addr, "/metrics").await;
    let delivery = [
        r#"touchpoint="web-checkout""#,
        r#"theme="delivery""#,
        r#"metric="nps""#,
    ];
    let with = |segment: &str| -> Vec<String> {
        delivery
            .iter()
            .map(|s| s.to_string())
            .chain([format!(r#"segment="{segment}""#)])
            .collect()
    };
    fn labels(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    assert_eq!(
        sample(
            &metrics,
            "cx_feedback_themes_total",
            &labels(&with("detractor"))
        ),
        1.0
    );
    // "non in ritardo" excludes the promoter's comment from delivery.
    assert_eq!(
        sample(
            &metrics,
            "cx_feedback_themes_total",
            &labels(&with("promoter"))
        ),
        0.0
    );
    let _ = stop.send(());
    let _ = served.await;
}

/// Export failures (refusals, partial success, an unreachable endpoint) and successes never echo
/// a comment either: not in the 503 answers, not in `/metrics`, not in a log line.
#[tokio::test]
async fn export_errors_never_echo_comments() {
    let logs = logs();
    let endpoint = otlp::Endpoint::start(otlp::Mode::Accept).await;
    let config: CollectorConfig = serde_yaml::from_str(&format!(
        "{CONFIG}export: {{ endpoint: \"{}\", timeoutMillis: 300 }}\n",
        endpoint.url()
    ))
    .expect("test config");
    let collector = Collector::new(&config, ServeOptions::default()).expect("collector starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(collector.serve(listener, async {
        let _ = stopped.await;
    }));
    let single = format!(
        r#"{{"type":"survey","metric":"nps","score":2,"comment":"{MARKER} consegna in ritardo","customerId":"{MARKER}-customer"}}"#
    );
    let batch = format!("{single}\n{single}\n");
    let mut answers = Vec::new();
    for mode in [
        otlp::Mode::Status(503, Some(2)),
        otlp::Mode::Partial,
        otlp::Mode::Status(400, None),
        otlp::Mode::Slow(Duration::from_secs(1)),
        otlp::Mode::Accept,
    ] {
        endpoint.set(mode);
        let (status, answer) = post(addr, "/v1/events", "application/json", &single).await;
        let expected = if mode == otlp::Mode::Accept { 202 } else { 503 };
        assert_eq!(status, expected, "{mode:?}: {answer}");
        answers.push(answer);
        let (status, answer) = post(addr, "/v1/events:batch", "application/x-ndjson", &batch).await;
        let expected = if mode == otlp::Mode::Accept { 200 } else { 503 };
        assert_eq!(status, expected, "{mode:?}: {answer}");
        answers.push(answer);
    }
    let metrics = get(addr, "/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "cx_export_events_total",
            &[r#"result="exported""#]
        ),
        3.0
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .expect("drains")
        .expect("serve task");
    // The comment did reach the endpoint, where it belongs.
    let exported = endpoint.accepted.lock().expect("seen").records();
    assert_eq!(exported.len(), 3);
    assert!(format!("{:?}", exported[0].body).contains(MARKER));

    assert!(!metrics.contains(MARKER), "{metrics}");
    for answer in &answers {
        assert!(!answer.contains(MARKER), "{answer}");
    }
    let logs =
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        logs.contains("export request failed"),
        "the export failures were not logged: {logs}"
    );
    assert!(!logs.contains(MARKER), "{logs}");
    assert!(!logs.contains("MARKER"), "{logs}");
}
