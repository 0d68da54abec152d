//! A rollout loses no acknowledged event: the real `cx-conductor collector` process under load
//! from several producers, scraped by a real Prometheus every second, gets SIGTERM mid-traffic.
//! After it exits, the last value Prometheus holds for `cx_events_received_total` is exactly the
//! number of events the producers got a 2xx for.

#[path = "support/prometheus.rs"]
mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::{Prometheus, free_port, prometheus_binary, wait_until};

const CONFIG: &str = r#"
namespace: retail
touchpoint: web-checkout
channel: web
stage: purchase
surveys: [{ metric: nps }]
interactions: { outcomes: [completed, abandoned], timings: [wait] }
maxEventBytes: 1024
"#;

const PRODUCERS: u64 = 8;

/// The collector process; killed if the test fails before it exits.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the producers saw.
#[derive(Default)]
struct Tally {
    /// Events answered 2xx (a batch counts its accepted events).
    acknowledged: AtomicU64,
    /// Events answered 2xx after SIGTERM: the shutdown delay keeps accepting.
    acknowledged_after_term: AtomicU64,
    /// 503 `shutting_down` answers, each with `Retry-After`.
    refused_shutting_down: AtomicU64,
    /// Requests that got no answer (connection refused or closed) after SIGTERM.
    unanswered_after_term: AtomicU64,
}

async fn get(client: &Client<HttpConnector, Full<Bytes>>, url: &str) -> Option<StatusCode> {
    let request = Request::get(url).body(Full::new(Bytes::new())).ok()?;
    client.request(request).await.ok().map(|r| r.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollout_loses_no_acknowledged_event_in_prometheus() {
    let Some(prometheus_bin) = prometheus_binary() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("cx-collector-rollout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let config = dir.join("collector.yaml");
    std::fs::write(&config, CONFIG).expect("write the configuration");
    let events: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let health: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log_path = dir.join("collector.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
        .args(["collector", "--config"])
        .arg(&config)
        .args(["--listen", &events.to_string()])
        .args(["--health-listen", &health.to_string()])
        .args(["--shutdown-delay-seconds", "2"])
        .args(["--grace-period-seconds", "10"])
        // Scrape interval 1 s: two intervals and a margin.
        .args(["--final-scrape-seconds", "3"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log file")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start the collector");
    let mut process = Process(child);
    let pid = process.0.id();
    let collector_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let ready = format!("http://{health}/readyz");
    wait_until("the collector's readiness", Duration::from_secs(30), || {
        let client = client.clone();
        let ready = ready.clone();
        async move { (get(&client, &ready).await == Some(StatusCode::OK)).then_some(()) }
    })
    .await;

    // Prometheus scrapes the event port, as the plan's ServiceMonitor and annotations do.
    let prometheus = Prometheus::start(prometheus_bin, &[events], "1s").await;
    prometheus
        .wait_for_value("cx_events_received_total", 0.0, Duration::from_secs(30))
        .await;

    let tally = Arc::new(Tally::default());
    let terminated = Arc::new(AtomicBool::new(false));
    let exited = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for producer in 0..PRODUCERS {
        let tally = tally.clone();
        let terminated = terminated.clone();
        let exited = exited.clone();
        producers.push(tokio::spawn(async move {
            let client: Client<HttpConnector, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let event = format!(
                r#"{{"type":"survey","metric":"nps","score":{}}}"#,
                producer % 11
            );
            for round in 0u64.. {
                if exited.load(Ordering::SeqCst) {
                    return;
                }
                let (path, content_type, body, count) = if round % 4 == 3 {
                    let batch = format!("{event}\n").repeat(5);
                    ("/v1/events:batch", "application/x-ndjson", batch, 5)
                } else {
                    ("/v1/events", "application/json", event.clone(), 1)
                };
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(format!("http://{events}{path}"))
                    .header("content-type", content_type)
                    .body(Full::new(Bytes::from(body)))
                    .expect("request");
                let after_term = terminated.load(Ordering::SeqCst);
                match client.request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let retry_after = response.headers().get("retry-after").cloned();
                        let body = response.into_body().collect().await.map(|b| b.to_bytes());
                        let Ok(body) = body else {
                            assert!(after_term, "a body cut before SIGTERM");
                            tally.unanswered_after_term.fetch_add(1, Ordering::SeqCst);
                            continue;
                        };
                        if status.is_success() {
                            tally.acknowledged.fetch_add(count, Ordering::SeqCst);
                            if after_term {
                                tally
                                    .acknowledged_after_term
                                    .fetch_add(count, Ordering::SeqCst);
                            }
                        } else {
                            let text = String::from_utf8_lossy(&body);
                            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
                            assert!(text.contains(r#""reason":"shutting_down""#), "{text}");
                            assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
                            tally.refused_shutting_down.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    Err(error) => {
                        assert!(
                            terminated.load(Ordering::SeqCst),
                            "request failed before SIGTERM: {error}"
                        );
                        tally.unanswered_after_term.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }

    // Traffic first, then SIGTERM in the middle of it.
    wait_until("2,000 acknowledged events", Duration::from_secs(60), || {
        let tally = tally.clone();
        async move { (tally.acknowledged.load(Ordering::SeqCst) >= 2_000).then_some(()) }
    })
    .await;
    terminated.store(true, Ordering::SeqCst);
    let signalled = Instant::now();
    // SAFETY: kill(2) with the id of the child this test started and still owns.
    let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "SIGTERM sent");

    let status = loop {
        if let Some(status) = process.0.try_wait().expect("wait for the collector") {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(60),
            "the collector did not exit: {}",
            collector_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let exited_after = signalled.elapsed();
    exited.store(true, Ordering::SeqCst);
    for producer in producers {
        tokio::time::timeout(Duration::from_secs(30), producer)
            .await
            .expect("producer ends")
            .expect("producer did not panic");
    }
    assert!(status.success(), "exit {status}: {}", collector_log());

    let acknowledged = tally.acknowledged.load(Ordering::SeqCst);
    let log = collector_log();
    eprintln!(
        "acknowledged {acknowledged} (after SIGTERM {}), refused shutting_down {}, unanswered \
         after SIGTERM {}, exit {exited_after:?} after SIGTERM",
        tally.acknowledged_after_term.load(Ordering::SeqCst),
        tally.refused_shutting_down.load(Ordering::SeqCst),
        tally.unanswered_after_term.load(Ordering::SeqCst),
    );
    assert!(
        tally.acknowledged_after_term.load(Ordering::SeqCst) > 0,
        "events are still accepted during the shutdown delay: {log}"
    );
    assert!(
        tally.refused_shutting_down.load(Ordering::SeqCst) > 0,
        "events are refused with 503 after the shutdown delay: {log}"
    );
    // Shutdown delay 2 s + final scrape window 3 s: the process stayed for both.
    assert!(
        exited_after >= Duration::from_secs(5),
        "{exited_after:?}: {log}"
    );
    assert!(
        log.contains("serving the final counts to Prometheus"),
        "{log}"
    );

    let last = prometheus
        .number("last_over_time(cx_events_received_total[5m])", None)
        .await
        .unwrap_or_else(|| panic!("no cx_events_received_total: {}", prometheus.log()));
    assert_eq!(
        last, acknowledged as f64,
        "Prometheus' last count vs events acknowledged with a 2xx"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
