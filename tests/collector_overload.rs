//! The collector under floods and slow clients, over real TCP on loopback: probes are answered on
//! the health port whatever happens on the event port, overload is answered 503 with
//! `Retry-After` (never a stall), a slow upload never blocks other batches, every refusal has the
//! JSON error body, and shutdown goes readiness off → refusing → final scrapes → exit.

use std::net::SocketAddr;
use std::time::Duration;

use cx_conductor::collector::config::{AuthConfig, CollectorConfig};
use cx_conductor::collector::{Collector, Drained, ServeOptions, raise_open_file_limit};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CONFIG: &str = r#"
namespace: retail
touchpoint: web-checkout
channel: web
stage: purchase
surveys: [{ metric: nps }]
maxEventBytes: 1024
"#;

const NPS_9: &str = r#"{"type":"survey","metric":"nps","score":9}"#;

/// Bound for "answers at all": far above any normal answer time, far below the 10 s a stall lasts.
const ANSWER_BOUND: Duration = Duration::from_secs(2);

struct Server {
    events: SocketAddr,
    health: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Drained>,
}

impl Server {
    async fn start(config: CollectorConfig, options: ServeOptions) -> Server {
        let collector = Collector::new(&config, options).expect("collector starts");
        let events = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let health = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addresses = (
            events.local_addr().expect("address"),
            health.local_addr().expect("address"),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(collector.serve_with(events, Some(health), async {
            let _ = stopped.await;
        }));
        Server {
            events: addresses.0,
            health: addresses.1,
            stop: Some(stop),
            served,
        }
    }

    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    async fn shutdown(mut self) -> Drained {
        self.signal_stop();
        tokio::time::timeout(Duration::from_secs(30), self.served)
            .await
            .expect("drains in time")
            .expect("serve task")
    }
}

fn config() -> CollectorConfig {
    serde_yaml::from_str(CONFIG).expect("test config")
}

/// An HTTP answer read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// Asserts the JSON error body `{"error":{"reason","field","message"}}`.
    #[track_caller]
    fn assert_error(&self, status: u16, reason: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let body: Value =
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"));
        assert_eq!(body["error"]["reason"], reason, "{self:?}");
        assert!(body["error"].get("field").is_some(), "{self:?}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{self:?}"
        );
    }

    #[track_caller]
    fn assert_retry_after(&self) {
        assert_eq!(self.header("retry-after"), Some("1"), "{self:?}");
    }
}

/// Sends `request` on a fresh connection and reads the answer until the server closes the
/// connection; `None` when the connection is refused or closed without an answer. Panics when
/// nothing happens within [`ANSWER_BOUND`]: a stall.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Option<Answer> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(request).await.ok()?;
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes).await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.get(9..12)?.parse().ok()?;
        Some(Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    };
    tokio::time::timeout(ANSWER_BOUND, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer from {addr} within {ANSWER_BOUND:?}"))
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn answer(addr: SocketAddr, request: &[u8]) -> Answer {
    exchange(addr, request)
        .await
        .unwrap_or_else(|| panic!("no answer from {addr}"))
}

fn received(metrics: &str) -> f64 {
    series(metrics, "cx_events_received_total")
}

fn rejected(metrics: &str, reason: &str) -> f64 {
    series(
        metrics,
        &format!(
            "cx_events_rejected_total{{channel=\"web\",namespace=\"retail\",reason=\"{reason}\""
        ),
    )
}

/// The value of the first sample line starting with `prefix`.
#[track_caller]
fn series(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| panic!("{prefix} in\n{metrics}"))
}

/// The test process holds both ends of every connection.
fn enough_file_descriptors(needed: u64) {
    let (_, soft, hard) = raise_open_file_limit().expect("raise the open-file limit");
    assert!(
        soft >= needed,
        "this test needs {needed} open files; the hard limit is {hard}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_2000_idle_and_slow_loris_connections_hold_the_event_port() {
    enough_file_descriptors(4_500);
    // The default connection limit (1024) and a reserve large enough that the event request
    // below deterministically lands on it rather than being closed.
    let options = ServeOptions {
        overload_reserve: 1024,
        ..ServeOptions::default()
    };
    let server = Server::start(config(), options).await;
    let mut flood = Vec::new();
    for index in 0..2_000 {
        let mut stream = TcpStream::connect(server.events).await.expect("connect");
        if index % 2 == 1 {
            // Slow loris: a head that never ends.
            stream
                .write_all(b"POST /v1/events HTTP/1.1\r\nhost: test\r\nx-slow: ")
                .await
                .expect("write");
        }
        flood.push(stream);
    }

    for path in ["/readyz", "/healthz"] {
        let probe = answer(server.health, &get(path)).await;
        assert_eq!(probe.status, 200, "{probe:?}");
    }
    let metrics = answer(server.health, &get("/metrics")).await;
    assert_eq!(metrics.status, 200);
    // An event on the full event port: 503 with Retry-After at once, not a wait in the backlog.
    let refused = answer(
        server.events,
        &post("/v1/events", "application/json", NPS_9),
    )
    .await;
    refused.assert_error(503, "overloaded");
    refused.assert_retry_after();
    // Unknown paths on the health port are JSON refusals too.
    answer(server.health, &get("/v1/events"))
        .await
        .assert_error(404, "not_found");

    drop(flood);
    // Once the flood is gone, events are taken again.
    let accepted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let answer = answer(
                server.events,
                &post("/v1/events", "application/json", NPS_9),
            )
            .await;
            if answer.status == 202 {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("events accepted after the flood");
    assert_eq!(accepted.body, r#"{"accepted":1}"#);
    let metrics = answer(server.health, &get("/metrics")).await.body;
    assert!(rejected(&metrics, "overloaded") >= 1.0, "{metrics}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_reserve_are_closed_at_once_not_left_waiting() {
    let options = ServeOptions {
        max_connections: 4,
        overload_reserve: 2,
        ..ServeOptions::default()
    };
    let server = Server::start(config(), options).await;
    let mut idle = Vec::new();
    for _ in 0..6 {
        idle.push(TcpStream::connect(server.events).await.expect("connect"));
    }
    // Give the accept loop the six connections.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Main slots and reserve are taken: closed at once (within the bound), no answer.
    let request = post("/v1/events", "application/json", NPS_9);
    assert!(exchange(server.events, &request).await.is_none());
    // The health port is untouched.
    assert_eq!(answer(server.health, &get("/readyz")).await.status, 200);
    drop(idle);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_batch_upload_does_not_block_other_batches() {
    let options = ServeOptions {
        max_concurrent_batches: 2,
        request_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    };
    let server = Server::start(config(), options).await;
    // More slow uploads than batch parsers, each stalled halfway through its body.
    let mut slow = Vec::new();
    for _ in 0..6 {
        let mut stream = TcpStream::connect(server.events).await.expect("connect");
        stream
            .write_all(
                format!(
                    "POST /v1/events:batch HTTP/1.1\r\nhost: test\r\n\
                     content-type: application/x-ndjson\r\ncontent-length: 10000\r\n\r\n{NPS_9}\n"
                )
                .as_bytes(),
            )
            .await
            .expect("write");
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let batch = format!("{NPS_9}\n{NPS_9}\n");
    let answer = answer(
        server.events,
        &post("/v1/events:batch", "application/x-ndjson", &batch),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer.body).expect("JSON")["accepted"],
        2
    );
    drop(slow);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_beyond_the_memory_budget_are_refused_with_503_at_once() {
    let options = ServeOptions {
        body_memory_bytes: 300_000,
        request_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    };
    let server = Server::start(config(), options).await;
    // A slow upload that declares 250,000 bytes holds them for its whole life.
    let mut slow = TcpStream::connect(server.events).await.expect("connect");
    slow.write_all(
        b"POST /v1/events:batch HTTP/1.1\r\nhost: test\r\ncontent-type: application/x-ndjson\r\n\
          content-length: 250000\r\n\r\n",
    )
    .await
    .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Refused on its declared length, before its body is sent: 503 at once.
    let refused = answer(
        server.events,
        b"POST /v1/events:batch HTTP/1.1\r\nhost: test\r\ncontent-type: application/x-ndjson\r\n\
          content-length: 100000\r\n\r\n",
    )
    .await;
    refused.assert_error(503, "overloaded");
    refused.assert_retry_after();
    // A chunked body is charged as it arrives, and refused as soon as it does not fit (the
    // client sends no more than the server reads, so the answer is not lost to a reset).
    let line = format!("{NPS_9}\n");
    let partial = line.repeat(55_000 / line.len());
    let chunked = format!(
        "POST /v1/events:batch HTTP/1.1\r\nhost: test\r\ncontent-type: application/x-ndjson\r\n\
         transfer-encoding: chunked\r\n\r\n{len:x}\r\n{partial}",
        len = 60_000
    );
    answer(server.events, chunked.as_bytes())
        .await
        .assert_error(503, "overloaded");
    // Small events still fit in what is left.
    let accepted = answer(
        server.events,
        &post("/v1/events", "application/json", NPS_9),
    )
    .await;
    assert_eq!(accepted.status, 202, "{accepted:?}");
    drop(slow);
    // The budget comes back when the upload goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let big = line.repeat(100_000 / line.len());
    let fits = answer(
        server.events,
        &post("/v1/events:batch", "application/x-ndjson", &big),
    )
    .await;
    assert_eq!(fits.status, 200, "{fits:?}");
    let metrics = answer(server.health, &get("/metrics")).await.body;
    assert_eq!(rejected(&metrics, "overloaded"), 2.0, "{metrics}");
    server.shutdown().await;
}

#[tokio::test]
async fn http_errors_from_the_parser_have_the_json_error_body() {
    let server = Server::start(config(), ServeOptions::default()).await;
    let too_large = format!(
        "GET /healthz HTTP/1.1\r\nhost: test\r\nx-padding: {}\r\n\r\n",
        "p".repeat(20 * 1024)
    );
    for addr in [server.events, server.health] {
        let answer = answer(addr, too_large.as_bytes()).await;
        answer.assert_error(431, "headers_too_large");
        assert_eq!(answer.header("connection"), Some("close"));
    }
    let mut many = String::from("GET /healthz HTTP/1.1\r\nhost: test\r\n");
    for index in 0..150 {
        many.push_str(&format!("x-h{index}: v\r\n"));
    }
    many.push_str("\r\n");
    answer(server.events, many.as_bytes())
        .await
        .assert_error(431, "headers_too_large");
    answer(server.events, b"NOT HTTP AT ALL\r\n\r\n")
        .await
        .assert_error(400, "malformed");
    // Ordinary answers are untouched.
    let ok = answer(
        server.events,
        &post("/v1/events", "application/json", NPS_9),
    )
    .await;
    assert_eq!(ok.status, 202);
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_file_with_surrounding_whitespace_works() {
    let path = std::env::temp_dir().join(format!("cx-overload-{}-ws.token", std::process::id()));
    std::fs::write(&path, " \t s3cret-token \r\n\n").expect("write the token");
    let mut config = config();
    config.auth = Some(AuthConfig {
        token_file: path.display().to_string(),
    });
    let server = Server::start(config.clone(), ServeOptions::default()).await;
    let with_token = |token: &str| {
        format!(
            "POST /v1/events HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
             authorization: Bearer {token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{NPS_9}",
            NPS_9.len()
        )
    };
    let accepted = answer(server.events, with_token("s3cret-token").as_bytes()).await;
    assert_eq!(accepted.status, 202, "{accepted:?}");
    answer(server.events, with_token("s3cret-token \t").as_bytes())
        .await
        .status
        .eq(&202)
        .then_some(())
        .expect("trailing whitespace of the header is not part of the token");
    answer(server.events, with_token("s3cret").as_bytes())
        .await
        .assert_error(401, "unauthorized");
    server.shutdown().await;

    std::fs::write(&path, " \r\n\t\n").expect("write the token");
    let error = Collector::new(&config, ServeOptions::default())
        .err()
        .expect("a blank token file is refused");
    assert!(error.to_string().contains("is empty"), "{error}");
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_readiness_then_refuses_events_then_serves_the_final_metrics() {
    let options = ServeOptions {
        shutdown_delay: Duration::from_millis(1000),
        final_scrape: Duration::from_millis(2000),
        ..ServeOptions::default()
    };
    let mut server = Server::start(config(), options).await;
    let event = post("/v1/events", "application/json", NPS_9);
    assert_eq!(answer(server.events, &event).await.status, 202);
    let started = tokio::time::Instant::now();
    server.signal_stop();

    // Shutdown delay: readiness off, events still taken.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for addr in [server.events, server.health] {
        let ready = answer(addr, &get("/readyz")).await;
        assert_eq!(
            (ready.status, ready.body.as_str()),
            (503, r#"{"status":"draining"}"#)
        );
        assert_eq!(answer(addr, &get("/healthz")).await.status, 200);
    }
    assert_eq!(answer(server.events, &event).await.status, 202);

    // After the delay: events refused, metrics still served on both ports.
    tokio::time::sleep_until(started + Duration::from_millis(1500)).await;
    let refused = answer(server.events, &event).await;
    refused.assert_error(503, "shutting_down");
    refused.assert_retry_after();
    assert_eq!(refused.header("connection"), Some("close"));
    let batch = answer(
        server.events,
        &post("/v1/events:batch", "application/x-ndjson", NPS_9),
    )
    .await;
    batch.assert_error(503, "shutting_down");
    for addr in [server.events, server.health] {
        let metrics = answer(addr, &get("/metrics")).await;
        assert_eq!(metrics.status, 200);
        assert_eq!(received(&metrics.body), 2.0, "{}", metrics.body);
        assert_eq!(rejected(&metrics.body, "shutting_down"), 2.0);
    }
    // Still there late in the final scrape window (1 s delay + 2 s window).
    tokio::time::sleep_until(started + Duration::from_millis(2600)).await;
    assert_eq!(answer(server.health, &get("/metrics")).await.status, 200);

    let (events, health) = (server.events, server.health);
    let drained = server.shutdown().await;
    assert!(started.elapsed() >= Duration::from_millis(3000));
    assert_eq!(drained.accepted_events, 2);
    assert_eq!(drained.aborted_connections, 0);
    assert!(
        TcpStream::connect(events).await.is_err(),
        "event port closed"
    );
    assert!(
        TcpStream::connect(health).await.is_err(),
        "health port closed"
    );
}
