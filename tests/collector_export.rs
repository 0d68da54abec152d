//! OTLP export from collectors against a scriptable OTLP/HTTP endpoint (tests/support/otlp.rs):
//! group commit, 2xx only after the endpoint accepted, 503 with `Retry-After` otherwise, counters
//! that count exactly the exported events, pools and pseudonyms. The same against a real
//! OpenTelemetry Collector and Kafka: tests/export_pipeline.rs.

#[path = "support/otlp.rs"]
mod otlp;

use std::net::SocketAddr;
use std::time::Duration;

use cx_conductor::collector::config::{CollectorConfig, CollectorSetup};
use cx_conductor::collector::{Collector, ServeOptions};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use otlp::{Endpoint, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

fn config(endpoint: &str, extra: &str) -> CollectorConfig {
    serde_yaml::from_str(&format!(
        r#"
namespace: retail
touchpoint: web-checkout
channel: web
stage: delivery
surveys: [{{ metric: nps }}]
interactions: {{ outcomes: [completed, abandoned], timings: [wait] }}
maxEventBytes: 4096
themes:
  - name: delivery
    keywords: [consegn*, corriere, courier, late]
export:
  endpoint: {endpoint}
  lingerMillis: 20
  {extra}
"#
    ))
    .expect("test config")
}

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<cx_conductor::collector::Drained>,
}

async fn serve(collector: Collector) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(collector.serve(listener, async {
        let _ = stopped.await;
    }));
    Running { addr, stop, served }
}

impl Running {
    async fn stop(self) {
        self.drained().await;
    }

    /// Stops the collector and returns what its drain left.
    async fn drained(self) -> cx_conductor::collector::Drained {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.served)
            .await
            .expect("drains")
            .expect("serve task")
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

async fn metrics(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
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

fn attribute<'r>(record: &'r LogRecord, key: &str) -> Option<&'r Value> {
    record
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn text<'r>(record: &'r LogRecord, key: &str) -> Option<&'r str> {
    match attribute(record, key)? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn body(record: &LogRecord) -> Option<&str> {
    match record.body.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

const COMMENTS: [&str; 3] = [
    "Il corriere è arrivato in ritardo, però gentilissimo",
    "The courier was late again",
    "Perfetto 👍🏽 grazie! 🚚💨",
];

#[tokio::test]
async fn concurrent_events_share_export_requests_and_count_once_accepted() {
    let endpoint = Endpoint::start(Mode::Accept).await;
    let config = config(&endpoint.url(), "");
    let running = serve(Collector::new(&config, ServeOptions::default()).expect("collector")).await;
    let addr = running.addr;

    let mut posts = Vec::new();
    for i in 0..30 {
        let comment = COMMENTS[i % 3];
        let event = serde_json::json!({
            "type": "survey", "metric": "nps", "score": i % 11, "comment": comment,
            "language": (["it", "en", "it"][i % 3]), "eventId": format!("e-{i}"),
            "timestamp": "2026-11-03T10:15:00Z",
        })
        .to_string();
        posts.push(tokio::spawn(async move {
            post(addr, "/v1/events", "application/json", &event).await
        }));
    }
    let batch = "{\"type\":\"interaction\",\"outcome\":\"abandoned\",\"waitSeconds\":12.5,\"eventId\":\"b-1\"}\n\
                 {\"type\":\"survey\",\"metric\":\"nps\",\"score\":11,\"eventId\":\"b-2\"}\n\
                 {\"type\":\"survey\",\"metric\":\"nps\",\"score\":9,\"eventId\":\"b-3\"}\n";
    let (status, answer) = post(addr, "/v1/events:batch", "application/x-ndjson", batch).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(r#""accepted":2,"rejected":1"#), "{answer}");
    for posted in posts {
        let (status, answer) = posted.await.expect("post");
        assert_eq!(status, 202, "{answer}");
    }

    let seen = endpoint.snapshot();
    let records = seen.records();
    assert_eq!(records.len(), 32);
    // Group commit: 31 requests, far fewer export requests.
    assert!(
        seen.requests.len() < 16,
        "{} export requests for 31 HTTP requests",
        seen.requests.len()
    );
    for i in 0..30 {
        let id = format!("e-{i}");
        let record = records
            .iter()
            .find(|r| text(r, "cx.event.id") == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{id} exported"));
        assert_eq!(body(record), Some(COMMENTS[i % 3]), "{id}: byte-identical");
        assert_eq!(record.event_name, "cx.feedback.survey");
        assert_eq!(text(record, "cx.touchpoint"), Some("web-checkout"));
        assert_eq!(text(record, "cx.journey.stage"), Some("delivery"));
        assert_eq!(
            attribute(record, "cx.survey.score"),
            Some(&Value::IntValue((i % 11) as i64))
        );
        assert_eq!(record.time_unix_nano, 1_793_700_900_000_000_000);
        assert!(record.observed_time_unix_nano > record.time_unix_nano);
        let themed = i % 3 != 2;
        assert_eq!(attribute(record, "cx.themes").is_some(), themed, "{id}");
    }
    let interaction = records
        .iter()
        .find(|r| text(r, "cx.event.id") == Some("b-1"))
        .expect("b-1");
    assert_eq!(interaction.event_name, "cx.feedback.interaction");
    assert_eq!(
        text(interaction, "cx.interaction.outcome"),
        Some("abandoned")
    );
    assert!(
        records
            .iter()
            .all(|r| text(r, "cx.event.id") != Some("b-2"))
    );
    let resource = seen.requests[0].0.resource_logs[0]
        .resource
        .as_ref()
        .expect("resource");
    assert!(resource.attributes.iter().any(|kv| kv.key == "service.name"
        && kv.value.as_ref().and_then(|v| v.value.as_ref())
            == Some(&Value::StringValue("cx-conductor-collector".into()))));
    let export_requests = seen.requests.len() as f64;

    let metrics = metrics(addr).await;
    assert_eq!(sample(&metrics, "cx_events_received_total", &[]), 32.0);
    assert_eq!(
        sample(
            &metrics,
            "cx_export_events_total",
            &[r#"result="exported""#]
        ),
        32.0
    );
    assert_eq!(
        sample(
            &metrics,
            "cx_export_batches_total",
            &[r#"result="exported""#]
        ),
        export_requests
    );
    assert_eq!(
        sample(&metrics, "cx_export_duration_seconds_count", &[]),
        export_requests
    );
    assert_eq!(sample(&metrics, "cx_export_pending_events", &[]), 0.0);
    running.stop().await;
}

#[tokio::test]
async fn a_failing_endpoint_gets_events_refused_with_503_and_retry_after_and_nothing_counted() {
    let endpoint = Endpoint::start(Mode::Accept).await;
    let config = config(&endpoint.url(), "timeoutMillis: 300");
    let running = serve(Collector::new(&config, ServeOptions::default()).expect("collector")).await;
    let addr = running.addr;
    let event =
        r#"{"type":"survey","metric":"nps","score":3,"comment":"consegna lenta","eventId":"r-1"}"#;

    for (mode, retry_after, reason) in [
        (Mode::Status(503, Some(7)), "7", "unavailable"),
        (Mode::Status(429, None), "1", "throttled"),
        (Mode::Status(502, None), "1", "unavailable"),
        (Mode::Partial, "1", "partial_success"),
        (Mode::Status(401, None), "30", "rejected"),
        (Mode::Status(500, None), "30", "server_error"),
        (Mode::Slow(Duration::from_secs(2)), "1", "timeout"),
    ] {
        endpoint.set(mode);
        let (status, answer) = post(addr, "/v1/events", "application/json", event).await;
        assert_eq!(status, 503, "{mode:?}: {answer}");
        assert_eq!(
            header(&answer, "retry-after"),
            Some(retry_after),
            "{mode:?}"
        );
        assert!(
            answer.contains(r#""reason":"export_unavailable""#),
            "{answer}"
        );
        assert!(
            answer.contains(&format!("({reason})")),
            "{mode:?}: {answer}"
        );
        let metrics = metrics(addr).await;
        assert_eq!(
            sample(
                &metrics,
                "cx_export_failures_total",
                &[&format!(r#"reason="{reason}""#)]
            ),
            if reason == "unavailable" && retry_after == "1" {
                2.0
            } else {
                1.0
            },
            "{mode:?}"
        );
    }
    // A batch is refused whole, and nothing of it is counted.
    endpoint.set(Mode::Status(503, None));
    let batch = format!("{event}\n{event}\n");
    let (status, answer) = post(addr, "/v1/events:batch", "application/x-ndjson", &batch).await;
    assert_eq!(status, 503, "{answer}");
    let metrics_now = metrics(addr).await;
    assert_eq!(sample(&metrics_now, "cx_events_received_total", &[]), 0.0);
    assert_eq!(
        sample(&metrics_now, "cx_survey_responses_total", &[r#"score="3""#]),
        0.0
    );
    assert_eq!(
        sample(
            &metrics_now,
            "cx_events_rejected_total",
            &[r#"reason="export_unavailable""#]
        ),
        8.0
    );
    assert_eq!(
        sample(
            &metrics_now,
            "cx_export_events_total",
            &[r#"result="failed""#]
        ),
        9.0
    );
    // The endpoint is back: the retried event is accepted, exported once and counted once.
    endpoint.set(Mode::Accept);
    let (status, answer) = post(addr, "/v1/events", "application/json", event).await;
    assert_eq!(status, 202, "{answer}");
    let metrics_now = metrics(addr).await;
    assert_eq!(sample(&metrics_now, "cx_events_received_total", &[]), 1.0);
    assert_eq!(
        sample(
            &metrics_now,
            "cx_export_events_total",
            &[r#"result="exported""#]
        ),
        1.0
    );
    assert_eq!(endpoint.accepted.lock().expect("seen").records().len(), 1);
    running.stop().await;

    // An endpoint nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let nobody = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let running =
        serve(Collector::new(&config_of(&nobody), ServeOptions::default()).expect("collector"))
            .await;
    let (status, answer) = post(running.addr, "/v1/events", "application/json", event).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("(unreachable)"), "{answer}");
    assert_eq!(header(&answer, "retry-after"), Some("1"));
    running.stop().await;
}

fn config_of(endpoint: &str) -> CollectorConfig {
    config(endpoint, "")
}

#[tokio::test]
async fn a_pool_shares_one_exporter_and_pseudonyms_are_stable_across_collectors() {
    let endpoint = Endpoint::start(Mode::Accept).await;
    let key = std::env::temp_dir().join(format!("cx-export-key-{}", std::process::id()));
    std::fs::write(&key, "0123456789abcdef-pseudonym-key\n").expect("key file");
    let pool = format!(
        r#"
namespace: retail
touchpoints:
  - namespace: retail
    touchpoint: web-checkout
    channel: web
    stage: purchase
    surveys: [{{ metric: nps }}]
    maxEventBytes: 4096
    export: {{ endpoint: "{url}", lingerMillis: 20, pseudonymKeyFile: "{key}" }}
  - namespace: retail
    touchpoint: hotline
    channel: voice
    stage: support
    surveys: [{{ metric: nps }}]
    maxEventBytes: 4096
    export: {{ endpoint: "{url}", lingerMillis: 20, pseudonymKeyFile: "{key}", comments: false }}
  - namespace: retail
    touchpoint: kiosk
    channel: store
    stage: purchase
    surveys: [{{ metric: nps }}]
    maxEventBytes: 4096
"#,
        url = endpoint.url(),
        key = key.display()
    );
    let setup = CollectorSetup::from_yaml(&pool).expect("pool config");
    let first = serve(Collector::with_setup(&setup, ServeOptions::default()).expect("pool")).await;
    let second = serve(Collector::with_setup(&setup, ServeOptions::default()).expect("pool")).await;
    let event = |id: &str| {
        format!(
            r#"{{"type":"survey","metric":"nps","score":9,"comment":"ottimo","eventId":"{id}","customerId":"customer-42","sessionId":"s-1"}}"#
        )
    };
    let answers = futures::future::join_all([
        post(
            first.addr,
            "/v1/touchpoints/web-checkout/events",
            "application/json",
            &event("p-1"),
        ),
        post(
            first.addr,
            "/v1/touchpoints/hotline/events",
            "application/json",
            &event("p-2"),
        ),
        post(
            second.addr,
            "/v1/touchpoints/web-checkout/events",
            "application/json",
            &event("p-3"),
        ),
        post(
            first.addr,
            "/v1/touchpoints/kiosk/events",
            "application/json",
            &event("p-4"),
        ),
    ])
    .await;
    for (status, answer) in &answers {
        assert_eq!(*status, 202, "{answer}");
    }
    let seen = endpoint.snapshot();
    let records = seen.records();
    let by_id = |id: &str| {
        records
            .iter()
            .find(|r| text(r, "cx.event.id") == Some(id))
            .unwrap_or_else(|| panic!("{id}"))
            .clone()
    };
    let (p1, p2, p3) = (by_id("p-1"), by_id("p-2"), by_id("p-3"));
    // The kiosk does not export.
    assert!(
        records
            .iter()
            .all(|r| text(r, "cx.event.id") != Some("p-4"))
    );
    assert_eq!(records.len(), 3);
    assert_eq!(text(&p1, "cx.touchpoint"), Some("web-checkout"));
    assert_eq!(text(&p2, "cx.touchpoint"), Some("hotline"));
    assert_eq!(text(&p2, "cx.channel"), Some("voice"));
    assert_eq!(body(&p1), Some("ottimo"));
    assert_eq!(body(&p2), None, "hotline keeps comments in the cluster");
    // The same customer, the same pseudonym, from either collector; never the raw id.
    let hash = text(&p1, "user.hash").expect("pseudonymised");
    assert_eq!(hash.len(), 64);
    assert_eq!(text(&p2, "user.hash"), Some(hash));
    assert_eq!(text(&p3, "user.hash"), Some(hash));
    assert!(text(&p1, "cx.session.hash").is_some());
    for record in &records {
        assert_eq!(text(record, "user.id"), None);
        assert!(!format!("{record:?}").contains("customer-42"));
    }
    let pooled = seen.requests.iter().all(|(request, _)| {
        request.resource_logs[0]
            .resource
            .as_ref()
            .expect("resource")
            .attributes
            .iter()
            .any(|kv| {
                kv.key == "cx.collector.kind"
                    && kv.value.as_ref().and_then(|v| v.value.as_ref())
                        == Some(&Value::StringValue("pool".into()))
            })
    });
    assert!(pooled);
    let metrics = metrics(first.addr).await;
    // One exporter, one set of series, for the two exporting touchpoints.
    assert_eq!(
        sample(
            &metrics,
            "cx_export_events_total",
            &[r#"result="exported""#]
        ),
        2.0
    );
    first.stop().await;
    second.stop().await;
    let _ = std::fs::remove_file(&key);
}

#[test]
fn unusable_export_settings_are_named() {
    for (extra_endpoint, expected) in [
        ("otel-collector:4318", "export.endpoint"),
        ("ftp://otel", "export.endpoint"),
    ] {
        let bad = config(extra_endpoint, "");
        let error = Collector::new(&bad, ServeOptions::default())
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains(expected), "{error}");
    }
    let missing = config("http://otel:4318", "pseudonymKeyFile: /nonexistent/key");
    let error = Collector::new(&missing, ServeOptions::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("export.pseudonymKeyFile"), "{error}");
    let short = std::env::temp_dir().join(format!("cx-short-key-{}", std::process::id()));
    std::fs::write(&short, "short").expect("key");
    let too_short = config(
        "http://otel:4318",
        &format!("pseudonymKeyFile: {}", short.display()),
    );
    let error = Collector::new(&too_short, ServeOptions::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("at least 16"), "{error}");
    let _ = std::fs::remove_file(&short);
}

/// `count` single events `<prefix>-<i>`, posted one after the other: every answer.
async fn post_events(addr: SocketAddr, prefix: &str, count: usize) -> Vec<(u16, String)> {
    let mut answers = Vec::new();
    for i in 0..count {
        let event = format!(
            r#"{{"type":"survey","metric":"nps","score":{},"comment":"{}","eventId":"{prefix}-{i}"}}"#,
            i % 11,
            COMMENTS[i % 3]
        );
        answers.push(post(addr, "/v1/events", "application/json", &event).await);
    }
    answers
}

/// Waits up to `within` for `check` to hold, polling.
async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

/// The `eventId`s of `records`, sorted, each once per record.
fn event_ids(records: &[LogRecord]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| text(r, "cx.event.id").expect("event id").to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn best_effort_answers_at_once_queues_while_the_endpoint_is_down_and_delivers_each_event_once()
 {
    // An endpoint nobody listens on yet.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint_addr = closed.local_addr().expect("address");
    drop(closed);
    let config = config(
        &format!("http://{endpoint_addr}"),
        "delivery: bestEffort\n  timeoutMillis: 300",
    );
    let running = serve(Collector::new(&config, ServeOptions::default()).expect("collector")).await;
    let addr = running.addr;

    for (status, answer) in post_events(addr, "q", 12).await {
        assert_eq!(status, 202, "{answer}");
    }
    let batch = "{\"type\":\"survey\",\"metric\":\"nps\",\"score\":2,\"eventId\":\"qb-1\"}\n\
                 {\"type\":\"survey\",\"metric\":\"nps\",\"score\":12,\"eventId\":\"qb-bad\"}\n\
                 {\"type\":\"survey\",\"metric\":\"nps\",\"score\":3,\"eventId\":\"qb-2\"}\n";
    let (status, answer) = post(addr, "/v1/events:batch", "application/x-ndjson", batch).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(r#""accepted":2,"rejected":1"#), "{answer}");
    // Counted at once, waiting in the queue, nothing dropped.
    let now = metrics(addr).await;
    assert_eq!(sample(&now, "cx_events_received_total", &[]), 14.0);
    assert_eq!(sample(&now, "cx_export_queued_events", &[]), 14.0);
    assert_eq!(
        sample(&now, "cx_export_events_total", &[r#"result="exported""#]),
        0.0
    );
    for reason in ["queue_full", "rejected", "shutdown"] {
        assert_eq!(
            sample(
                &now,
                "cx_export_dropped_events_total",
                &[&format!(r#"reason="{reason}""#)]
            ),
            0.0
        );
    }
    // The queue is being tried, and refused: the endpoint is down.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while sample(
        &metrics(addr).await,
        "cx_export_failures_total",
        &[r#"reason="unreachable""#],
    ) < 1.0
    {
        assert!(tokio::time::Instant::now() < until, "no export attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The endpoint comes up: the queue reaches it, each event once.
    let endpoint = Endpoint::start_at(endpoint_addr, Mode::Accept).await;
    assert!(
        eventually(Duration::from_secs(10), || endpoint
            .snapshot()
            .records()
            .len()
            >= 14)
        .await,
        "the queue is delivered"
    );
    let mut expected: Vec<String> = (0..12).map(|i| format!("q-{i}")).collect();
    expected.extend(["qb-1".to_string(), "qb-2".to_string()]);
    expected.sort();
    let records = endpoint.snapshot().records();
    assert_eq!(event_ids(&records), expected);
    let q7 = records
        .iter()
        .find(|r| text(r, "cx.event.id") == Some("q-7"))
        .expect("q-7");
    assert_eq!(body(q7), Some(COMMENTS[1]), "byte-identical comment");
    let now = metrics(addr).await;
    assert_eq!(
        sample(&now, "cx_export_events_total", &[r#"result="exported""#]),
        14.0
    );
    assert_eq!(sample(&now, "cx_export_queued_events", &[]), 0.0);
    assert_eq!(sample(&now, "cx_export_pending_events", &[]), 0.0);
    running.stop().await;
    assert_eq!(
        endpoint.snapshot().records().len(),
        14,
        "nothing sent twice"
    );
}

#[tokio::test]
async fn best_effort_drops_what_a_full_queue_cannot_hold_and_counts_it() {
    let endpoint = Endpoint::start(Mode::Status(503, None)).await;
    let config = config(
        &endpoint.url(),
        "delivery: bestEffort\n  queueEvents: 5\n  maxBatchEvents: 2",
    );
    let running = serve(Collector::new(&config, ServeOptions::default()).expect("collector")).await;
    let addr = running.addr;
    for (status, answer) in post_events(addr, "f", 8).await {
        assert_eq!(status, 202, "{answer}");
    }
    // A batch of three when the queue is full: answered, counted, dropped from the export.
    let batch = "{\"type\":\"survey\",\"metric\":\"nps\",\"score\":2,\"eventId\":\"fb-1\"}\n\
                 {\"type\":\"survey\",\"metric\":\"nps\",\"score\":3,\"eventId\":\"fb-2\"}\n\
                 {\"type\":\"survey\",\"metric\":\"nps\",\"score\":4,\"eventId\":\"fb-3\"}\n";
    let (status, answer) = post(addr, "/v1/events:batch", "application/x-ndjson", batch).await;
    assert_eq!(status, 200, "{answer}");
    let now = metrics(addr).await;
    assert_eq!(sample(&now, "cx_events_received_total", &[]), 11.0);
    assert_eq!(sample(&now, "cx_export_queued_events", &[]), 5.0);
    assert_eq!(
        sample(
            &now,
            "cx_export_dropped_events_total",
            &[r#"reason="queue_full""#]
        ),
        6.0
    );
    // Back: the five queued events arrive, in batches of at most two, and nothing else.
    endpoint.set(Mode::Accept);
    assert!(
        eventually(Duration::from_secs(10), || endpoint
            .snapshot()
            .records()
            .len()
            >= 5)
        .await
    );
    let seen = endpoint.snapshot();
    assert_eq!(
        event_ids(&seen.records()),
        ["f-0", "f-1", "f-2", "f-3", "f-4"]
    );
    assert!(
        seen.requests
            .iter()
            .all(|(request, _)| request.resource_logs[0].scope_logs[0].log_records.len() <= 2)
    );
    // Refused for good (401): dropped and counted as rejected, not retried.
    endpoint.set(Mode::Status(401, None));
    for (status, answer) in post_events(addr, "r", 1).await {
        assert_eq!(status, 202, "{answer}");
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    let now = loop {
        let now = metrics(addr).await;
        let dropped = sample(
            &now,
            "cx_export_dropped_events_total",
            &[r#"reason="rejected""#],
        );
        if dropped == 1.0 || tokio::time::Instant::now() >= until {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        sample(
            &now,
            "cx_export_dropped_events_total",
            &[r#"reason="rejected""#]
        ),
        1.0
    );
    assert_eq!(
        sample(&now, "cx_export_failures_total", &[r#"reason="rejected""#]),
        1.0
    );
    assert_eq!(sample(&now, "cx_export_queued_events", &[]), 0.0);
    assert_eq!(
        sample(&now, "cx_export_events_total", &[r#"result="exported""#]),
        5.0
    );
    running.stop().await;
}

#[tokio::test]
async fn best_effort_shutdown_flushes_the_queue_within_the_grace_period_and_counts_the_rest() {
    // The endpoint recovers during the grace period: everything queued is delivered before the
    // collector exits.
    let endpoint = Endpoint::start(Mode::Status(503, Some(1))).await;
    let config = config(&endpoint.url(), "delivery: bestEffort");
    let options = ServeOptions {
        grace_period: Duration::from_secs(5),
        ..ServeOptions::default()
    };
    let running = serve(Collector::new(&config, options.clone()).expect("collector")).await;
    for (status, answer) in post_events(running.addr, "s", 20).await {
        assert_eq!(status, 202, "{answer}");
    }
    assert!(endpoint.snapshot().records().is_empty());
    let recovering = {
        let mode = endpoint.mode.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            *mode.lock().expect("mode") = Mode::Accept;
        })
    };
    let drained = running.drained().await;
    recovering.await.expect("recovered");
    let mut expected: Vec<String> = (0..20).map(|i| format!("s-{i}")).collect();
    expected.sort();
    assert_eq!(event_ids(&endpoint.snapshot().records()), expected);
    let last = &drained.final_metrics;
    assert_eq!(
        sample(last, "cx_export_events_total", &[r#"result="exported""#]),
        20.0
    );
    assert_eq!(sample(last, "cx_export_queued_events", &[]), 0.0);
    assert_eq!(
        sample(
            last,
            "cx_export_dropped_events_total",
            &[r#"reason="shutdown""#]
        ),
        0.0
    );

    // The endpoint stays down: the collector exits at the end of the grace period, and the
    // events it could not send are counted as dropped at shutdown.
    let down = Endpoint::start(Mode::Status(503, Some(1))).await;
    let options = ServeOptions {
        grace_period: Duration::from_millis(1500),
        ..ServeOptions::default()
    };
    let config = config_of_best_effort(&down.url());
    let running = serve(Collector::new(&config, options).expect("collector")).await;
    for (status, answer) in post_events(running.addr, "d", 7).await {
        assert_eq!(status, 202, "{answer}");
    }
    let started = tokio::time::Instant::now();
    let drained = running.drained().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let last = &drained.final_metrics;
    assert_eq!(
        sample(
            last,
            "cx_export_dropped_events_total",
            &[r#"reason="shutdown""#]
        ),
        7.0
    );
    assert_eq!(sample(last, "cx_export_queued_events", &[]), 0.0);
    assert_eq!(
        sample(last, "cx_export_events_total", &[r#"result="exported""#]),
        0.0
    );
    assert!(down.snapshot().records().is_empty());
}

fn config_of_best_effort(endpoint: &str) -> CollectorConfig {
    config(endpoint, "delivery: bestEffort")
}

/// Certificates made with the openssl command: a CA, a server certificate for 127.0.0.1 and a
/// client certificate, all signed by the CA, in `dir`.
fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command (it makes the test certificates)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = |name: &str| {
        run(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            name,
        ])
    };
    key("ca.key");
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=cx-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    for (name, extensions) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        ),
        (
            "client",
            "subjectAltName=DNS:cx-collector\nextendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        ),
    ] {
        key(&format!("{name}.key"));
        std::fs::write(dir.join(format!("{name}.ext")), extensions).expect("extensions");
        run(&[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
}

/// What the HTTPS endpoint saw: each request's headers and record count, and failed handshakes.
#[derive(Default)]
struct TlsSeen {
    requests: Vec<(http::HeaderMap, usize)>,
    failed_handshakes: usize,
}

/// An HTTPS OTLP/HTTP logs endpoint that requires a client certificate signed by `dir`'s CA.
async fn tls_endpoint(
    dir: &std::path::Path,
) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<TlsSeen>>) {
    use http_body_util::BodyExt;
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use prost::Message;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::{Arc, Mutex};

    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .expect("server.crt")
        .collect::<Result<_, _>>()
        .expect("server.crt");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server.key");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.join("ca.crt")).expect("ca.crt"))
        .expect("CA");
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .expect("client verifier");
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let seen = Arc::new(Mutex::new(TlsSeen::default()));
    let shared = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = shared.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    seen.lock().expect("seen").failed_handshakes += 1;
                    return;
                };
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await?.to_bytes();
                            let decoded = ExportLogsServiceRequest::decode(body)
                                .expect("an OTLP logs request");
                            let records = decoded
                                .resource_logs
                                .iter()
                                .flat_map(|r| &r.scope_logs)
                                .map(|s| s.log_records.len())
                                .sum();
                            seen.lock()
                                .expect("seen")
                                .requests
                                .push((parts.headers, records));
                            let answer = ExportLogsServiceResponse::default().encode_to_vec();
                            Ok::<_, hyper::Error>(http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(answer),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn exports_over_tls_with_a_private_ca_a_client_certificate_and_headers_from_a_secret() {
    let dir = std::env::temp_dir().join(format!("cx-export-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("headers")).expect("directory");
    make_certificates(&dir);
    // A headers Secret as Kubernetes mounts it: one file per key, and its bookkeeping.
    std::fs::write(dir.join("headers/X-Scope-OrgID"), "tenant-a\n").expect("header");
    std::fs::write(dir.join("headers/x-api-key"), "k-0123456789").expect("header");
    std::fs::create_dir_all(dir.join("headers/..2026_12_06")).expect("bookkeeping");
    let (addr, seen) = tls_endpoint(&dir).await;
    let url = format!("https://{addr}");
    let file = |name: &str| dir.join(name).display().to_string();
    let event = r#"{"type":"survey","metric":"nps","score":10,"comment":"ottimo servizio","eventId":"t-1"}"#;

    let mutual = config(
        &url,
        &format!(
            "caFile: {}\n  clientCertFile: {}\n  clientKeyFile: {}\n  headersDir: {}",
            file("ca.crt"),
            file("client.crt"),
            file("client.key"),
            file("headers")
        ),
    );
    let running = serve(Collector::new(&mutual, ServeOptions::default()).expect("collector")).await;
    let (status, answer) = post(running.addr, "/v1/events", "application/json", event).await;
    assert_eq!(status, 202, "{answer}");
    {
        let seen = seen.lock().expect("seen");
        assert_eq!(seen.requests.len(), 1);
        let (headers, records) = &seen.requests[0];
        assert_eq!(*records, 1);
        assert_eq!(headers["x-scope-orgid"], "tenant-a");
        assert_eq!(headers["x-api-key"], "k-0123456789");
        assert_eq!(headers["content-type"], "application/x-protobuf");
        assert_eq!(seen.failed_handshakes, 0);
    }
    running.stop().await;

    // Without the client certificate the endpoint refuses the handshake: 503, nothing counted.
    let anonymous = config(&url, &format!("caFile: {}", file("ca.crt")));
    let running =
        serve(Collector::new(&anonymous, ServeOptions::default()).expect("collector")).await;
    let (status, answer) = post(running.addr, "/v1/events", "application/json", event).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("(unreachable)"), "{answer}");
    assert_eq!(
        sample(
            &metrics(running.addr).await,
            "cx_events_received_total",
            &[]
        ),
        0.0
    );
    running.stop().await;
    // With another CA than the endpoint's the collector does not trust the endpoint (the
    // client certificate stands in as that CA).
    let untrusting = config(
        &url,
        &format!(
            "caFile: {}\n  clientCertFile: {}\n  clientKeyFile: {}",
            file("client.crt"),
            file("client.crt"),
            file("client.key")
        ),
    );
    let running =
        serve(Collector::new(&untrusting, ServeOptions::default()).expect("collector")).await;
    let (status, answer) = post(running.addr, "/v1/events", "application/json", event).await;
    assert_eq!(status, 503, "{answer}");
    running.stop().await;
    {
        let seen = seen.lock().expect("seen");
        assert_eq!(seen.requests.len(), 1, "no request got through");
        assert_eq!(seen.failed_handshakes, 2);
    }

    // Unusable settings are named, and secret material is never echoed.
    let refused = |extra: String| {
        Collector::new(&config(&url, &extra), ServeOptions::default())
            .err()
            .expect("refused")
            .to_string()
    };
    let error = refused(format!("caFile: {}", file("missing.crt")));
    assert!(error.contains("export.caFile"), "{error}");
    let error = refused(format!("clientCertFile: {}", file("client.crt")));
    assert!(error.contains("export.clientKeyFile"), "{error}");
    let error = refused(format!(
        "clientCertFile: {}\n  clientKeyFile: {}",
        file("client.crt"),
        file("ca.crt")
    ));
    assert!(error.contains("export.clientKeyFile"), "{error}");
    let error = Collector::new(
        &config(
            &format!("http://{addr}"),
            &format!("caFile: {}", file("ca.crt")),
        ),
        ServeOptions::default(),
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(
        error.contains("export.caFile") && error.contains("https://"),
        "{error}"
    );
    std::fs::write(dir.join("headers/x-api-key"), "k-secret\nsecond line").expect("header");
    let error = refused(format!("headersDir: {}", file("headers")));
    assert!(error.contains("x-api-key"), "{error}");
    assert!(!error.contains("k-secret"), "{error}");
    std::fs::write(dir.join("headers/x-api-key"), "k-0123456789").expect("header");
    std::fs::write(dir.join("headers/Content-Type"), "text/plain").expect("header");
    let error = refused(format!("headersDir: {}", file("headers")));
    assert!(error.contains("content-type"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Events handed to a flushed bestEffort exporter are dropped and counted, never kept unsent.
#[tokio::test]
async fn a_flushed_best_effort_exporter_counts_what_it_is_still_handed() {
    use cx_conductor::collector::export::{ExportMetrics, Exporter, ExporterKey, encode};
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let nobody = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let settings = config_of_best_effort(&nobody).export.expect("export");
    let metrics = ExportMetrics::new("retail").expect("metrics");
    let exporter = Exporter::new(
        &ExporterKey::of(&settings),
        encode::resource("retail", "test-pod", false),
        metrics.clone(),
    )
    .expect("exporter");
    let record = || LogRecord {
        time_unix_nano: 1,
        ..LogRecord::default()
    };
    exporter
        .export(vec![record(), record()])
        .await
        .expect("answered at once");
    exporter.flush(tokio::time::Instant::now()).await;
    exporter
        .export(vec![record(), record(), record()])
        .await
        .expect("answered at once");
    let text =
        cx_conductor::collector::metrics::render_families(metrics.gather()).expect("renders");
    assert_eq!(
        sample(
            &text,
            "cx_export_dropped_events_total",
            &[r#"reason="shutdown""#]
        ),
        5.0
    );
    assert_eq!(sample(&text, "cx_export_queued_events", &[]), 0.0);
}
