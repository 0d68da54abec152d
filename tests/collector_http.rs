//! The collector over real TCP on loopback: every status code, exact metric values after a known
//! stream of events, and a drain that loses no acknowledged event.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cx_conductor::collector::config::CollectorConfig;
use cx_conductor::collector::{Collector, Drained, ServeOptions};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CONFIG: &str = r#"
namespace: retail
touchpoint: web-checkout
channel: web
stage: purchase
surveys: [{ metric: nps }, { metric: csat, scale: 5 }]
interactions: { outcomes: [completed, abandoned, error], timings: [wait, handle] }
maxEventBytes: 1024
firstResponseSeconds: 25
"#;

const NPS_9: &str = r#"{"type":"survey","metric":"nps","score":9}"#;

struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Drained>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl TestServer {
    async fn start(config: CollectorConfig, options: ServeOptions) -> TestServer {
        let collector = Collector::new(&config, options).expect("collector starts");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(collector.serve(listener, async {
            let _ = stopped.await;
        }));
        let client = Client::builder(TokioExecutor::new()).build_http();
        TestServer {
            addr,
            stop: Some(stop),
            served,
            client,
        }
    }

    async fn default() -> TestServer {
        TestServer::start(config(), ServeOptions::default()).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        send(&self.client, self.addr, method, path, headers, body.into())
            .await
            .expect("request answered")
    }

    async fn post(&self, path: &str, content_type: &str, body: impl Into<Bytes>) -> Answer {
        self.request(Method::POST, path, &[("content-type", content_type)], body)
            .await
    }

    async fn event(&self, json: &str) -> Answer {
        self.post("/v1/events", "application/json", json.to_owned())
            .await
    }

    async fn scrape(&self) -> String {
        let answer = self.request(Method::GET, "/metrics", &[], "").await;
        assert_eq!(answer.status, StatusCode::OK);
        String::from_utf8(answer.body.to_vec()).expect("UTF-8 metrics")
    }

    async fn shutdown(mut self) -> Drained {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), self.served)
            .await
            .expect("drains in time")
            .expect("serve task")
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts a refusal: status, `{"error": {"reason", "field", "message"}}`.
    #[track_caller]
    fn assert_error(&self, status: StatusCode, reason: &str, field: Option<&str>) {
        assert_eq!(
            self.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let body = self.json();
        assert_eq!(body["error"]["reason"], reason, "{body}");
        assert_eq!(body["error"]["field"], json!(field), "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client.request(request.body(Full::new(body))?).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn config() -> CollectorConfig {
    serde_yaml::from_str(CONFIG).expect("test config")
}

/// A token file unique to this test process and name.
fn token_file(name: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "cx-collector-test-{}-{name}.token",
        std::process::id()
    ));
    std::fs::write(&path, content).expect("write token file");
    path
}

/// The value of the series `name` with exactly `labels` plus the test touchpoint's constant labels.
#[track_caller]
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let constant = [
        ("namespace", "retail"),
        ("touchpoint", "web-checkout"),
        ("channel", "web"),
        ("stage", "purchase"),
    ];
    let found: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = series.split_once('{').unwrap_or((series, "}"));
            let pairs: Vec<(&str, &str)> = rest
                .trim_end_matches('}')
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            let matches = series_name == name
                && labels.iter().chain(&constant).all(|l| pairs.contains(l))
                && pairs.len() == labels.len() + constant.len();
            matches.then(|| value.parse().ok()).flatten()
        })
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?} in\n{text}");
    found[0]
}

fn rejected(text: &str, reason: &str) -> f64 {
    metric(text, "cx_events_rejected_total", &[("reason", reason)])
}

/// Sends raw bytes on a fresh connection and returns everything the server answers until it
/// closes the connection (or `wait` passes).
async fn raw_exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn single_event_is_accepted_with_202() {
    let server = TestServer::default().await;
    let answer = server.event(NPS_9).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.json(), json!({"accepted": 1}));
    let metrics = server.scrape().await;
    assert_eq!(metric(&metrics, "cx_events_received_total", &[]), 1.0);
    server.shutdown().await;
}

#[tokio::test]
async fn charset_parameter_is_accepted() {
    let server = TestServer::default().await;
    let answer = server
        .post("/v1/events", "application/json; charset=utf-8", NPS_9)
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    server.shutdown().await;
}

#[tokio::test]
async fn ndjson_batch_routes_to_the_colon_path_and_reports_each_event() {
    let server = TestServer::default().await;
    let body = [
        NPS_9,
        r#"{"type":"survey","metric":"nps","score":12}"#,
        "",
        r#"{"type":"interaction","outcome":"completed","waitSeconds":3}"#,
        "garbage",
    ]
    .join("\n");
    let answer = server
        .post("/v1/events:batch", "application/x-ndjson", body)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let report = answer.json();
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["rejected"], 2);
    assert!(report.get("error").is_none());
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["index"], 1);
    assert_eq!(errors[0]["reason"], "score_out_of_range");
    assert_eq!(errors[0]["field"], "score");
    assert_eq!(errors[1]["index"], 4);
    assert_eq!(errors[1]["reason"], "malformed");
    assert_eq!(errors[1]["field"], Value::Null);

    let metrics = server.scrape().await;
    assert_eq!(metric(&metrics, "cx_events_received_total", &[]), 2.0);
    assert_eq!(rejected(&metrics, "score_out_of_range"), 1.0);
    assert_eq!(rejected(&metrics, "malformed"), 1.0);
    server.shutdown().await;
}

#[tokio::test]
async fn json_array_batch_is_accepted() {
    let server = TestServer::default().await;
    let body = format!(r#"[{NPS_9}, {{"type":"interaction","outcome":"error"}}]"#);
    let answer = server
        .post("/v1/events:batch", "application/json", body)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({"accepted": 2, "rejected": 0, "errors": []})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn batch_with_every_event_rejected_is_422_with_details() {
    let server = TestServer::default().await;
    let body = r#"{"type":"survey","metric":"ces","score":3}"#;
    let answer = server
        .post("/v1/events:batch", "application/x-ndjson", body)
        .await;
    answer.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_metric",
        Some("metric"),
    );
    let report = answer.json();
    assert_eq!(report["accepted"], 0);
    assert_eq!(report["rejected"], 1);
    assert_eq!(report["errors"][0]["index"], 0);
    server.shutdown().await;
}

#[tokio::test]
async fn empty_batch_is_accepted_with_nothing_counted() {
    let server = TestServer::default().await;
    let answer = server
        .post("/v1/events:batch", "application/x-ndjson", "")
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({"accepted": 0, "rejected": 0, "errors": []})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn broken_json_array_batch_is_400_and_counts_nothing_of_it() {
    let server = TestServer::default().await;
    let body = format!("[{NPS_9}, {NPS_9}");
    let answer = server
        .post("/v1/events:batch", "application/json", body)
        .await;
    answer.assert_error(StatusCode::BAD_REQUEST, "malformed", None);
    let metrics = server.scrape().await;
    assert_eq!(metric(&metrics, "cx_events_received_total", &[]), 0.0);
    assert_eq!(rejected(&metrics, "malformed"), 1.0);
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_json_and_trailing_garbage_are_400() {
    let server = TestServer::default().await;
    server.event(r#"{"type":"survey","#).await.assert_error(
        StatusCode::BAD_REQUEST,
        "malformed",
        None,
    );
    server
        .event(&format!("{NPS_9} trailing"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "malformed", None);
    server
        .event("")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "malformed", None);
    let metrics = server.scrape().await;
    assert_eq!(rejected(&metrics, "malformed"), 3.0);
    assert_eq!(metric(&metrics, "cx_events_received_total", &[]), 0.0);
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_events_are_422_naming_the_field() {
    let server = TestServer::default().await;
    let cases = [
        (
            r#"{"type":"survey","metric":"ces","score":3}"#,
            "invalid_metric",
            Some("metric"),
        ),
        (
            r#"{"type":"survey","metric":"csat","score":6}"#,
            "score_out_of_range",
            Some("score"),
        ),
        (
            r#"{"type":"survey","metric":"nps","score":6.5}"#,
            "score_not_integer",
            Some("score"),
        ),
        (
            r#"{"type":"survey","metric":"nps","score":"6"}"#,
            "wrong_type",
            Some("score"),
        ),
        (
            r#"{"type":"survey","metric":"nps"}"#,
            "missing_field",
            Some("score"),
        ),
        (
            r#"{"type":"survey","metric":"nps","score":6,"extra":1}"#,
            "unknown_field",
            Some("extra"),
        ),
        (
            r#"{"type":"interaction","outcome":"escalated"}"#,
            "unknown_outcome",
            Some("outcome"),
        ),
        (
            r#"{"type":"interaction","outcome":"completed","waitSeconds":-1}"#,
            "invalid_duration",
            Some("waitSeconds"),
        ),
        (r#"{"type":"feedback"}"#, "unknown_event_type", Some("type")),
        ("[1]", "wrong_type", None),
    ];
    for (body, reason, field) in cases {
        server
            .event(body)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, reason, field);
    }
    let metrics = server.scrape().await;
    assert_eq!(rejected(&metrics, "wrong_type"), 2.0);
    assert_eq!(rejected(&metrics, "invalid_metric"), 1.0);
    assert_eq!(metric(&metrics, "cx_events_received_total", &[]), 0.0);
    server.shutdown().await;
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let mut config = config();
    let path = token_file("auth", "s3cret-token\n");
    config.auth = Some(cx_conductor::collector::config::AuthConfig {
        token_file: path.display().to_string(),
    });
    let server = TestServer::start(config, ServeOptions::default()).await;
    let json = ("content-type", "application/json");

    let missing = server
        .request(Method::POST, "/v1/events", &[json], NPS_9)
        .await;
    missing.assert_error(StatusCode::UNAUTHORIZED, "unauthorized", None);
    assert_eq!(
        missing
            .headers
            .get("www-authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    for wrong in [
        "Bearer s3cret",
        "Bearer s3cret-token2",
        "Basic s3cret-token",
    ] {
        server
            .request(
                Method::POST,
                "/v1/events",
                &[json, ("authorization", wrong)],
                NPS_9,
            )
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized", None);
    }
    // Auth comes first: a bad body from an unauthenticated client says nothing about the body.
    server
        .request(
            Method::POST,
            "/v1/events:batch",
            &[("content-type", "text/plain")],
            "x",
        )
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized", None);

    let good = ("authorization", "Bearer s3cret-token");
    let accepted = server
        .request(Method::POST, "/v1/events", &[json, good], NPS_9)
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let batch = server
        .request(
            Method::POST,
            "/v1/events:batch",
            &[("content-type", "application/x-ndjson"), good],
            NPS_9,
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK);
    // Probes and scrapes need no token.
    let metrics = server.scrape().await;
    assert_eq!(rejected(&metrics, "unauthorized"), 5.0);
    assert_eq!(metric(&metrics, "cx_events_received_total", &[]), 2.0);
    server.shutdown().await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn empty_or_missing_token_file_refuses_to_start() {
    let mut config = config();
    let path = token_file("empty", "\n");
    config.auth = Some(cx_conductor::collector::config::AuthConfig {
        token_file: path.display().to_string(),
    });
    assert!(Collector::new(&config, ServeOptions::default()).is_err());
    config.auth = Some(cx_conductor::collector::config::AuthConfig {
        token_file: "/nonexistent/cx-token".into(),
    });
    assert!(Collector::new(&config, ServeOptions::default()).is_err());
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let server = TestServer::default().await;
    let big_event = format!(
        r#"{{"type":"survey","metric":"nps","score":9,"sessionId":"{}"}}"#,
        "s".repeat(1100)
    );
    server
        .event(&big_event)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", None);

    // Without Content-Length (chunked), the limit applies while reading.
    let chunk = "x".repeat(2000);
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let answer = raw_exchange(server.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""reason":"too_large""#), "{answer}");

    // A batch may be 1000 × maxEventBytes: 1,024,000 bytes here.
    let line = format!("{NPS_9}\n");
    let big_batch = line.repeat(1_024_000 / line.len() + 1);
    server
        .post("/v1/events:batch", "application/x-ndjson", big_batch)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", None);
    let fitting_batch = line.repeat(10_000);
    let answer = server
        .post("/v1/events:batch", "application/x-ndjson", fitting_batch)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["accepted"], 10_000);

    let metrics = server.scrape().await;
    assert_eq!(rejected(&metrics, "too_large"), 3.0);
    assert_eq!(metric(&metrics, "cx_events_received_total", &[]), 10_000.0);
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_content_types_are_415() {
    let server = TestServer::default().await;
    server
        .post("/v1/events", "text/plain", NPS_9)
        .await
        .assert_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            Some("Content-Type"),
        );
    server
        .post("/v1/events", "application/x-ndjson", NPS_9)
        .await
        .assert_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            Some("Content-Type"),
        );
    server
        .post("/v1/events", "application/json; charset=iso-8859-1", NPS_9)
        .await
        .assert_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            Some("Content-Type"),
        );
    server
        .request(Method::POST, "/v1/events", &[], NPS_9)
        .await
        .assert_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            Some("Content-Type"),
        );
    server
        .post("/v1/events:batch", "text/csv", NPS_9)
        .await
        .assert_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            Some("Content-Type"),
        );
    let metrics = server.scrape().await;
    assert_eq!(rejected(&metrics, "unsupported_media_type"), 5.0);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let server = TestServer::default().await;
    for path in [
        "/",
        "/v1/event",
        "/v1/events:bulk",
        "/v1/events/batch",
        "/metricsx",
    ] {
        server
            .post(path, "application/json", NPS_9)
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found", None);
    }
    let get = server.request(Method::GET, "/v1/events", &[], "").await;
    get.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
    assert_eq!(
        get.headers.get("allow").map(|v| v.as_bytes()),
        Some(&b"POST"[..])
    );
    server
        .request(Method::GET, "/v1/events:batch", &[], "")
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
    server
        .request(Method::POST, "/metrics", &[], "")
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
    server.shutdown().await;
}

#[tokio::test]
async fn slow_bodies_time_out_with_408() {
    let options = ServeOptions {
        request_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let server = TestServer::start(config(), options).await;
    let request = b"POST /v1/events HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                    content-length: 100\r\n\r\n{\"type\":";
    let answer = raw_exchange(server.addr, request, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""reason":"timeout""#), "{answer}");
    let metrics = server.scrape().await;
    assert_eq!(rejected(&metrics, "timeout"), 1.0);
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_headers_are_refused_with_431() {
    let server = TestServer::default().await;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nhost: test\r\nx-padding: {}\r\n\r\n",
        "p".repeat(20 * 1024)
    );
    let answer = raw_exchange(server.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    assert!(
        answer.contains(r#"{"error":{"reason":"headers_too_large","field":null,"message":"#),
        "{answer}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness_probes() {
    let server = TestServer::default().await;
    let health = server.request(Method::GET, "/healthz", &[], "").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), json!({"status": "ok"}));
    let ready = server.request(Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json(), json!({"status": "ready"}));
    server.shutdown().await;
}

#[tokio::test]
async fn readiness_turns_503_while_draining_and_events_are_still_taken() {
    let options = ServeOptions {
        shutdown_delay: Duration::from_millis(1500),
        ..ServeOptions::default()
    };
    let mut server = TestServer::start(config(), options).await;
    if let Some(stop) = server.stop.take() {
        let _ = stop.send(());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = server.request(Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json(), json!({"status": "draining"}));
    let health = server.request(Method::GET, "/healthz", &[], "").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(server.event(NPS_9).await.status, StatusCode::ACCEPTED);
    let addr = server.addr;
    let drained = server.shutdown().await;
    assert_eq!(drained.accepted_events, 1);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed after the drain"
    );
}

#[tokio::test]
async fn metrics_count_a_known_stream_exactly() {
    let server = TestServer::default().await;
    // 3 × nps 10, 2 × nps 0, 1 × csat 5 as single events...
    for score in [10, 10, 10, 0, 0] {
        let answer = server
            .event(&format!(
                r#"{{"type":"survey","metric":"nps","score":{score}}}"#
            ))
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    }
    assert_eq!(
        server
            .event(r#"{"type":"survey","metric":"csat","score":5,"customerId":"c-1"}"#)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    // ...and interactions in a batch: waits 10, 25, 26 (le=25 is the first-response promise).
    let batch = [
        r#"{"type":"interaction","outcome":"completed","waitSeconds":10,"handleSeconds":100}"#,
        r#"{"type":"interaction","outcome":"completed","waitSeconds":25}"#,
        r#"{"type":"interaction","outcome":"abandoned","waitSeconds":26}"#,
        r#"{"type":"interaction","outcome":"abandoned","waitSeconds":-3}"#,
    ]
    .join("\n");
    let answer = server
        .post("/v1/events:batch", "application/x-ndjson", batch)
        .await;
    assert_eq!(answer.json()["accepted"], 3);
    server
        .event(r#"{"type":"survey","metric":"nps","score":11}"#)
        .await;

    let text = server.scrape().await;
    let survey = |metric_name: &str, score: &str| {
        metric(
            &text,
            "cx_survey_responses_total",
            &[("metric", metric_name), ("score", score)],
        )
    };
    assert_eq!(metric(&text, "cx_events_received_total", &[]), 9.0);
    assert_eq!(survey("nps", "10"), 3.0);
    assert_eq!(survey("nps", "0"), 2.0);
    assert_eq!(survey("nps", "5"), 0.0);
    assert_eq!(survey("csat", "5"), 1.0);
    assert_eq!(survey("csat", "1"), 0.0);
    let outcome = |name: &str| metric(&text, "cx_interactions_total", &[("outcome", name)]);
    assert_eq!(outcome("completed"), 2.0);
    assert_eq!(outcome("abandoned"), 1.0);
    assert_eq!(outcome("error"), 0.0);
    let bucket = |timing: &str, le: &str| {
        metric(
            &text,
            "cx_interaction_duration_seconds_bucket",
            &[("timing", timing), ("le", le)],
        )
    };
    assert_eq!(bucket("wait", "20"), 1.0);
    assert_eq!(bucket("wait", "25"), 2.0);
    assert_eq!(bucket("wait", "30"), 3.0);
    assert_eq!(bucket("wait", "+Inf"), 3.0);
    assert_eq!(bucket("handle", "90"), 0.0);
    assert_eq!(bucket("handle", "120"), 1.0);
    let wait_sum = metric(
        &text,
        "cx_interaction_duration_seconds_sum",
        &[("timing", "wait")],
    );
    assert_eq!(wait_sum, 61.0);
    assert_eq!(rejected(&text, "invalid_duration"), 1.0);
    assert_eq!(rejected(&text, "score_out_of_range"), 1.0);
    assert_eq!(rejected(&text, "malformed"), 0.0);
    // No customer id ever reaches the metrics.
    assert!(!text.contains("c-1"));
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text() {
    let server = TestServer::default().await;
    let answer = server.request(Method::GET, "/metrics", &[], "").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/plain; version=0.0.4; charset=utf-8"[..])
    );
    let text = String::from_utf8(answer.body.to_vec()).expect("UTF-8");
    for family in [
        "# TYPE cx_events_received_total counter",
        "# TYPE cx_events_rejected_total counter",
        "# TYPE cx_survey_responses_total counter",
        "# TYPE cx_interactions_total counter",
        "# TYPE cx_interaction_duration_seconds histogram",
    ] {
        assert!(text.contains(family), "{family} missing in\n{text}");
    }
    server.shutdown().await;
}

/// Many producers, shutdown in the middle: every event answered 2xx is in the final metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_loses_no_acknowledged_event() {
    let options = ServeOptions {
        grace_period: Duration::from_secs(10),
        ..ServeOptions::default()
    };
    let server = TestServer::start(config(), options).await;
    let addr = server.addr;
    let acknowledged = Arc::new(AtomicU64::new(0));
    let acknowledged_by_score: Arc<[AtomicU64; 11]> = Arc::new(Default::default());
    let failures_after_stop = Arc::new(AtomicU64::new(0));
    let stopping = Arc::new(AtomicBool::new(false));

    let mut producers = Vec::new();
    for producer in 0..32u64 {
        let acknowledged = acknowledged.clone();
        let by_score = acknowledged_by_score.clone();
        let failures_after_stop = failures_after_stop.clone();
        let stopping = stopping.clone();
        producers.push(tokio::spawn(async move {
            let client: Client<HttpConnector, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let score = (producer % 11) as usize;
            let event = format!(r#"{{"type":"survey","metric":"nps","score":{score}}}"#);
            for round in 0u64.. {
                // Every fourth request is a batch of 5.
                let (path, content_type, body, events) = if round % 4 == 3 {
                    let batch = format!("{event}\n").repeat(5);
                    ("/v1/events:batch", "application/x-ndjson", batch, 5)
                } else {
                    ("/v1/events", "application/json", event.clone(), 1)
                };
                let headers = [("content-type", content_type)];
                match send(&client, addr, Method::POST, path, &headers, body.into()).await {
                    Ok(answer) if answer.status.is_success() => {
                        acknowledged.fetch_add(events, Ordering::SeqCst);
                        by_score[score].fetch_add(events, Ordering::SeqCst);
                    }
                    // After the stop, new events are refused (503) or their connection closes.
                    Ok(answer)
                        if answer.status != StatusCode::SERVICE_UNAVAILABLE
                            || !stopping.load(Ordering::SeqCst) =>
                    {
                        panic!("unexpected answer {answer:?}")
                    }
                    Err(error) if !stopping.load(Ordering::SeqCst) => {
                        panic!("request failed before shutdown: {error}")
                    }
                    Ok(_) | Err(_) => {
                        failures_after_stop.fetch_add(1, Ordering::SeqCst);
                        // Keep trying briefly: a request may race the closing listener.
                        if round > 0 {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        if failures_after_stop.load(Ordering::SeqCst) > 64 {
                            return;
                        }
                    }
                }
            }
        }));
    }

    // Let traffic build up, then stop in the middle of it.
    while acknowledged.load(Ordering::SeqCst) < 2_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stopping.store(true, Ordering::SeqCst);
    let drained = server.shutdown().await;
    for producer in producers {
        tokio::time::timeout(Duration::from_secs(30), producer)
            .await
            .expect("producer ends")
            .expect("producer did not panic");
    }

    let acked = acknowledged.load(Ordering::SeqCst);
    assert!(
        failures_after_stop.load(Ordering::SeqCst) > 0,
        "shutdown happened mid-traffic"
    );
    assert_eq!(drained.aborted_connections, 0);
    let text = &drained.final_metrics;
    let received = metric(text, "cx_events_received_total", &[]) as u64;
    assert_eq!(drained.accepted_events, received);
    // Nothing acknowledged is missing; and with a clean drain nothing unacknowledged was counted.
    assert!(
        received >= acked,
        "received {received} < acknowledged {acked}"
    );
    assert_eq!(received, acked);
    for (score, count) in acknowledged_by_score.iter().enumerate() {
        let counted = metric(
            text,
            "cx_survey_responses_total",
            &[("metric", "nps"), ("score", &score.to_string())],
        ) as u64;
        assert_eq!(counted, count.load(Ordering::SeqCst), "score {score}");
    }
}

#[tokio::test]
async fn grace_period_cuts_requests_that_never_finish() {
    let options = ServeOptions {
        grace_period: Duration::from_millis(300),
        request_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    };
    let server = TestServer::start(config(), options).await;
    // A request whose body never completes keeps its connection busy.
    let mut stalled = TcpStream::connect(server.addr).await.expect("connect");
    stalled
        .write_all(b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n{")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let drained = server.shutdown().await;
    assert_eq!(drained.aborted_connections, 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}
