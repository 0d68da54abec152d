//! The export on the real pipeline (scripts/pipeline.sh): a collector pool exports to an
//! OpenTelemetry Collector (built with the official builder; OTLP/HTTP receiver, Kafka exporter
//! with its sending queue off, no batch processor) in front of a KRaft Kafka broker. Under load,
//! with the OpenTelemetry Collector SIGKILLed and restarted mid-way, every event answered 2xx is
//! read back from the Kafka topic with its comment byte for byte and its attributes, refusals are
//! 503 with `Retry-After`, duplicates only come from retries, and the collector's counters equal
//! the events it exported.
//!
//! Like the control plane, the pipeline is built (once per version, cached outside the
//! repository) and started on demand; a machine that cannot build or start it fails this test.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cx_conductor::collector::config::CollectorSetup;
use cx_conductor::collector::{Collector, ServeOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, oneshot};

fn pipeline(arg: &str) -> Output {
    Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pipeline.sh"))
        .arg(arg)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/pipeline.sh {arg}: {e}"))
}

#[track_caller]
fn pipeline_ok(arg: &str) -> String {
    let output = pipeline(arg);
    assert!(
        output.status.success(),
        "scripts/pipeline.sh {arg} failed (the export tests need the pipeline: Go, Java 17 and \
         Maven; scripts/test.sh builds it):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `scripts/pipeline.sh env` as a map.
fn pipeline_env() -> HashMap<String, String> {
    pipeline_ok("env")
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A request over a fresh connection: the status, the `Retry-After` header and the body.
async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, Option<u32>, String) {
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
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let retry_after = head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().parse().ok())
            .flatten()
    });
    (status, retry_after, body.to_string())
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

/// The sum of every series of `name` whose labels include all of `labels`.
fn total(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Comments in Italian, English and emoji, with what JSON and protobuf must carry intact.
const COMMENTS: [&str; 4] = [
    "Il corriere è arrivato in ritardo, però è stato gentilissimo — grazie",
    "Great service, the parcel arrived a day early",
    "👍🏽🚚💨 perfetto! 🇮🇹",
    "Line one\n\tline two with \"quotes\" and a \\ backslash",
];

/// What a producer sent, and what it was answered.
#[derive(Clone, Debug)]
struct Sent {
    touchpoint: &'static str,
    score: u8,
    comment: &'static str,
    language: &'static str,
    /// Attempts answered 503 before the 2xx.
    refused: usize,
}

/// One record read back from Kafka.
#[derive(Debug)]
struct Read {
    body: Option<String>,
    event_name: String,
    attributes: HashMap<String, Value>,
    resource: HashMap<String, Value>,
}

fn attributes(list: &Value) -> HashMap<String, Value> {
    list.as_array()
        .map(|list| {
            list.iter()
                .filter_map(|kv| Some((kv["key"].as_str()?.to_string(), kv["value"].clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// Every record of the topic whose `cx.event.id` starts with `prefix`, by event id.
fn read_back(prefix: &str) -> HashMap<String, Vec<Read>> {
    let mut read: HashMap<String, Vec<Read>> = HashMap::new();
    for line in pipeline_ok("consume").lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        for resource_logs in message["resourceLogs"].as_array().into_iter().flatten() {
            let resource = attributes(&resource_logs["resource"]["attributes"]);
            for scope_logs in resource_logs["scopeLogs"].as_array().into_iter().flatten() {
                for record in scope_logs["logRecords"].as_array().into_iter().flatten() {
                    let attributes = attributes(&record["attributes"]);
                    let Some(id) = attributes
                        .get("cx.event.id")
                        .and_then(|v| v["stringValue"].as_str())
                        .filter(|id| id.starts_with(prefix))
                        .map(str::to_string)
                    else {
                        continue;
                    };
                    read.entry(id).or_default().push(Read {
                        body: record["body"]["stringValue"].as_str().map(str::to_string),
                        event_name: record["eventName"].as_str().unwrap_or_default().to_string(),
                        attributes,
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_reaches_kafka_through_an_opentelemetry_collector_restart() {
    let endpoint = pipeline_ok("start").trim().to_string();
    let env = pipeline_env();
    assert_eq!(env["CX_PIPELINE_OTLP_ENDPOINT"], endpoint);
    let prefix = format!(
        "run-{}-{}-",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    );
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
    themes: [{{ name: delivery, keywords: [corriere, parcel] }}]
    export: {{ endpoint: "{endpoint}", lingerMillis: 5, timeoutMillis: 3000 }}
  - namespace: retail
    touchpoint: hotline
    channel: voice
    stage: support
    surveys: [{{ metric: nps }}]
    maxEventBytes: 4096
    export: {{ endpoint: "{endpoint}", lingerMillis: 5, timeoutMillis: 3000 }}
"#
    );
    let setup = CollectorSetup::from_yaml(&pool).expect("pool config");
    let collector = Collector::with_setup(&setup, ServeOptions::default()).expect("pool");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(collector.serve(listener, async {
        let _ = stopped.await;
    }));

    // Producers: 8 at once, 50 events each, retrying a 503 after its Retry-After with the same
    // eventId, as the README tells them to.
    const PRODUCERS: usize = 8;
    const EACH: usize = 50;
    let acked = Arc::new(AtomicUsize::new(0));
    let sent: Arc<Mutex<HashMap<String, Sent>>> = Arc::default();
    let refusals = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for producer in 0..PRODUCERS {
        let (acked, sent, refusals, prefix) = (
            acked.clone(),
            sent.clone(),
            refusals.clone(),
            prefix.clone(),
        );
        producers.push(tokio::spawn(async move {
            for n in 0..EACH {
                let i = producer * EACH + n;
                let id = format!("{prefix}{i}");
                let touchpoint = if i.is_multiple_of(2) {
                    "web-checkout"
                } else {
                    "hotline"
                };
                let comment = COMMENTS[i % COMMENTS.len()];
                let language = ["it", "en", "it", "en"][i % 4];
                let score = (i % 11) as u8;
                let event = serde_json::json!({
                    "type": "survey", "metric": "nps", "score": score, "comment": comment,
                    "language": language, "eventId": id,
                })
                .to_string();
                let path = format!("/v1/touchpoints/{touchpoint}/events");
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut refused = 0;
                loop {
                    let (status, retry_after, body) =
                        post(addr, &path, "application/json", &event).await;
                    if status == 202 {
                        break;
                    }
                    assert_eq!(status, 503, "{id}: {body}");
                    assert!(body.contains(r#""reason":"export_unavailable""#), "{body}");
                    let retry_after = retry_after.expect("503 with Retry-After");
                    assert!((1..=300).contains(&retry_after), "{retry_after}");
                    assert!(Instant::now() < deadline, "{id} never accepted");
                    refused += 1;
                    refusals.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(u64::from(retry_after))).await;
                }
                sent.lock().await.insert(
                    id,
                    Sent {
                        touchpoint,
                        score,
                        comment,
                        language,
                        refused,
                    },
                );
                acked.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // Mid-load, the OpenTelemetry Collector is SIGKILLed, and restarted two seconds later.
    let started = Instant::now();
    while acked.load(Ordering::SeqCst) < PRODUCERS * EACH / 4 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid_file = format!("{}/otelcol.pid", env["CX_PIPELINE_STATE"]);
    let pid = std::fs::read_to_string(&pid_file).expect("otelcol pid");
    let killed = Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let acked_at_kill = acked.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    pipeline_ok("start");
    for producer in producers {
        producer.await.expect("producer");
    }
    let elapsed = started.elapsed();
    let sent = sent.lock().await.clone();
    assert_eq!(sent.len(), PRODUCERS * EACH);
    assert!(
        acked_at_kill < PRODUCERS * EACH,
        "the OpenTelemetry Collector was killed after the load"
    );
    let refused = refusals.load(Ordering::SeqCst);
    assert!(
        refused > 0,
        "no event was refused while the OpenTelemetry Collector was down"
    );

    // Counters count exactly the exported events: every acknowledged one, once.
    let metrics = metrics(addr).await;
    let received = total(&metrics, "cx_events_received_total", &[]);
    assert_eq!(received, sent.len() as f64, "{metrics}");
    assert_eq!(
        total(
            &metrics,
            "cx_export_events_total",
            &[r#"result="exported""#]
        ),
        received
    );
    assert_eq!(
        total(
            &metrics,
            "cx_events_rejected_total",
            &[r#"reason="export_unavailable""#]
        ),
        refused as f64
    );
    assert!(!metrics.contains("corriere") && !metrics.contains("👍"));
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .expect("drains")
        .expect("serve task");

    // Every acknowledged event is in Kafka, byte for byte; a duplicate only where a producer
    // retried (an export that reached Kafka while its answer was lost to the kill).
    let read = read_back(&prefix);
    let mut missing = Vec::new();
    let mut duplicates = 0;
    for (id, event) in &sent {
        let Some(records) = read.get(id) else {
            missing.push(id.clone());
            continue;
        };
        if records.len() > 1 {
            assert!(
                event.refused > 0,
                "{id} is in Kafka {} times, never retried",
                records.len()
            );
            duplicates += records.len() - 1;
        }
        for record in records {
            assert_eq!(record.body.as_deref(), Some(event.comment), "{id}");
            assert_eq!(record.event_name, "cx.feedback.survey");
            let string = |key: &str| {
                record
                    .attributes
                    .get(key)
                    .and_then(|v| v["stringValue"].as_str())
            };
            assert_eq!(string("cx.touchpoint"), Some(event.touchpoint), "{id}");
            assert_eq!(
                string("cx.channel"),
                Some(if event.touchpoint == "hotline" {
                    "voice"
                } else {
                    "web"
                })
            );
            assert_eq!(string("cx.event.kind"), Some("survey"));
            assert_eq!(string("cx.survey.metric"), Some("nps"));
            assert_eq!(string("cx.comment.language"), Some(event.language));
            // OTLP JSON writes 64-bit integers as strings.
            assert_eq!(
                record.attributes["cx.survey.score"]["intValue"].as_str(),
                Some(event.score.to_string().as_str()),
                "{id}"
            );
            let segment = match event.score {
                0..=6 => "detractor",
                7..=8 => "passive",
                _ => "promoter",
            };
            assert_eq!(string("cx.survey.segment"), Some(segment));
            let themed = event.touchpoint == "web-checkout"
                && (event.comment.contains("corriere") || event.comment.contains("parcel"));
            assert_eq!(record.attributes.contains_key("cx.themes"), themed, "{id}");
            assert_eq!(
                record.resource["k8s.namespace.name"]["stringValue"].as_str(),
                Some("retail")
            );
            assert_eq!(
                record.resource["service.name"]["stringValue"].as_str(),
                Some("cx-conductor-collector")
            );
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged but not in Kafka: {missing:?}"
    );
    let unknown: HashSet<&String> = read.keys().filter(|id| !sent.contains_key(*id)).collect();
    assert!(unknown.is_empty(), "{unknown:?}");
    eprintln!(
        "{} events acknowledged in {elapsed:?} with the OpenTelemetry Collector killed after {acked_at_kill}: \
         {refused} refusals (503), {duplicates} duplicates in Kafka, none missing",
        sent.len()
    );
}
