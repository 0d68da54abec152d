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

/// A request over a fresh connection: the status, the `Retry-After` header and the body; status 0
/// when no answer came (nobody listening, the connection cut).
async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, Option<u32>, String) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        std::io::Result::Ok(answer)
    };
    let Ok(answer) = exchange.await else {
        return (0, None, String::new());
    };
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
    read_back_from(&pipeline_env()["CX_PIPELINE_TOPIC"], prefix)
}

/// Every record of `topic` whose `cx.event.id` starts with `prefix`, by event id.
fn read_back_from(topic: &str, prefix: &str) -> HashMap<String, Vec<Read>> {
    let output = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pipeline.sh"))
        .args(["consume", topic])
        .output()
        .expect("scripts/pipeline.sh consume");
    assert!(output.status.success(), "consume {topic}");
    let mut read: HashMap<String, Vec<Read>> = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
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

/// Only one test at a time disturbs the shared pipeline.
static PIPELINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The pool configuration of the tests: two touchpoints exporting to `endpoint`.
fn pool_yaml(endpoint: &str) -> String {
    format!(
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
    )
}

/// A unique prefix of this run's event ids.
fn run_prefix(what: &str) -> String {
    format!(
        "{what}-{}-{}-",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    )
}

const PRODUCERS: usize = 8;
const EACH: usize = 50;

/// What a load run saw.
struct Load {
    sent: HashMap<String, Sent>,
    /// Answers 503 (each with `Retry-After`, checked).
    refusals: usize,
    /// Attempts that got no answer at all (the collector itself was gone).
    unanswered: usize,
    acked_at_disruption: usize,
    elapsed: Duration,
}

/// 8 producers post 50 events each to `addr`, retrying a 503 after its `Retry-After` (and a
/// missing answer after 200 ms) with the same `eventId`, as the README tells them to; once a
/// quarter is acknowledged, `disrupt` runs (and is awaited) while they go on.
async fn load<F: std::future::Future<Output = ()>>(
    addr: SocketAddr,
    prefix: &str,
    disrupt: F,
) -> Load {
    let acked = Arc::new(AtomicUsize::new(0));
    let sent: Arc<Mutex<HashMap<String, Sent>>> = Arc::default();
    let refusals = Arc::new(AtomicUsize::new(0));
    let unanswered = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for producer in 0..PRODUCERS {
        let (acked, sent, refusals, unanswered, prefix) = (
            acked.clone(),
            sent.clone(),
            refusals.clone(),
            unanswered.clone(),
            prefix.to_string(),
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
                let deadline = Instant::now() + Duration::from_secs(180);
                let mut refused = 0;
                loop {
                    assert!(Instant::now() < deadline, "{id} never accepted");
                    let (status, retry_after, body) =
                        post(addr, &path, "application/json", &event).await;
                    if status == 202 {
                        break;
                    }
                    refused += 1;
                    if status == 0 {
                        unanswered.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    assert_eq!(status, 503, "{id}: {body}");
                    assert!(
                        body.contains(r#""reason":"export_unavailable""#)
                            || body.contains(r#""reason":"shutting_down""#),
                        "{body}"
                    );
                    let retry_after = retry_after.expect("503 with Retry-After");
                    assert!((1..=300).contains(&retry_after), "{retry_after}");
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
    let started = Instant::now();
    while acked.load(Ordering::SeqCst) < PRODUCERS * EACH / 4 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acked_at_disruption = acked.load(Ordering::SeqCst);
    disrupt.await;
    for producer in producers {
        producer.await.expect("producer");
    }
    let sent = sent.lock().await.clone();
    assert_eq!(sent.len(), PRODUCERS * EACH);
    assert!(
        acked_at_disruption < PRODUCERS * EACH,
        "the disruption came after the load"
    );
    Load {
        sent,
        refusals: refusals.load(Ordering::SeqCst),
        unanswered: unanswered.load(Ordering::SeqCst),
        acked_at_disruption,
        elapsed: started.elapsed(),
    }
}

/// Every acknowledged event is in Kafka, byte for byte with its attributes; a duplicate only
/// where a producer retried (an export that reached Kafka while its answer was lost). Returns
/// the number of duplicates.
fn assert_in_kafka(prefix: &str, sent: &HashMap<String, Sent>) -> usize {
    let read = read_back(prefix);
    let mut missing = Vec::new();
    let mut duplicates = 0;
    for (id, event) in sent {
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
    duplicates
}

/// SIGKILLs a part of the pipeline (`otelcol` or `kafka`), waits, and starts it again.
async fn kill_and_restart(part: &str, down_for: Duration) {
    let env = pipeline_env();
    let pid_file = format!("{}/{part}.pid", env["CX_PIPELINE_STATE"]);
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let killed = Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .expect("kill");
    assert!(killed.success());
    tokio::time::sleep(down_for).await;
    tokio::task::spawn_blocking(|| pipeline_ok("start"))
        .await
        .expect("start");
}

/// Runs a pool in this process against the pipeline, disturbs `part` mid-load, and checks
/// Kafka and the counters.
async fn through_a_restart_of(part: &'static str, down_for: Duration) {
    let _only = PIPELINE.lock().await;
    let endpoint = pipeline_ok("start").trim().to_string();
    assert_eq!(pipeline_env()["CX_PIPELINE_OTLP_ENDPOINT"], endpoint);
    let prefix = run_prefix(part);
    let setup = CollectorSetup::from_yaml(&pool_yaml(&endpoint)).expect("pool config");
    let collector = Collector::with_setup(&setup, ServeOptions::default()).expect("pool");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(collector.serve(listener, async {
        let _ = stopped.await;
    }));

    let load = load(addr, &prefix, kill_and_restart(part, down_for)).await;
    assert!(
        load.refusals > 0,
        "no event was refused while {part} was down"
    );
    assert_eq!(load.unanswered, 0, "the collector answers every request");

    // Counters count exactly the exported events: every acknowledged one, once.
    let metrics = metrics(addr).await;
    let received = total(&metrics, "cx_events_received_total", &[]);
    assert_eq!(received, load.sent.len() as f64, "{metrics}");
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
        load.refusals as f64
    );
    assert!(!metrics.contains("corriere") && !metrics.contains("👍"));
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .expect("drains")
        .expect("serve task");

    let duplicates = assert_in_kafka(&prefix, &load.sent);
    eprintln!(
        "{} events acknowledged in {:?}, {part} SIGKILLed after {} and restarted {down_for:?} \
         later: {} refusals (503), {duplicates} duplicates in Kafka, none missing",
        load.sent.len(),
        load.elapsed,
        load.acked_at_disruption,
        load.refusals
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_reaches_kafka_through_an_opentelemetry_collector_restart() {
    through_a_restart_of("otelcol", Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_reaches_kafka_through_a_kafka_restart() {
    through_a_restart_of("kafka", Duration::from_secs(3)).await;
}

/// The collector itself, the real binary, SIGKILLed mid-load and started again on the same
/// port: whatever it answered 2xx before dying is in Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_a_sigkilled_collector_acknowledged_is_in_kafka() {
    let _only = PIPELINE.lock().await;
    let endpoint = pipeline_ok("start").trim().to_string();
    let prefix = run_prefix("sigkill");
    let dir = std::env::temp_dir().join(format!("cx-export-sigkill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("collectors.yaml");
    std::fs::write(&config, pool_yaml(&endpoint)).expect("config");
    let ports = [
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    ];
    let addr = ports[0].local_addr().expect("address");
    let health = ports[1].local_addr().expect("address");
    drop(ports);
    let spawn = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
            .arg("collector")
            .arg("--config")
            .arg(&config)
            .args(["--listen", &addr.to_string()])
            .args(["--health-listen", &health.to_string()])
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("the collector starts")
    };
    let ready = || async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "the collector did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let mut first = spawn();
    ready().await;
    let second: Arc<Mutex<Option<tokio::process::Child>>> = Arc::default();
    let restart = {
        let second = second.clone();
        async move {
            first.start_kill().expect("SIGKILL");
            first.wait().await.expect("reaped");
            tokio::time::sleep(Duration::from_millis(500)).await;
            *second.lock().await = Some(spawn());
        }
    };
    let load = load(addr, &prefix, restart).await;
    let duplicates = assert_in_kafka(&prefix, &load.sent);
    if let Some(mut child) = second.lock().await.take() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{} events acknowledged in {:?}, the collector SIGKILLed after {} and started again: \
         {} attempts unanswered, {} refused, {duplicates} duplicates in Kafka, none missing",
        load.sent.len(),
        load.elapsed,
        load.acked_at_disruption,
        load.unanswered,
        load.refusals
    );
}

/// The README's routing recipe, on the real pipeline: detractors' comments (NPS 0-6 with a
/// comment) reach their own topic as well as the main one; everything else only the main one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detractor_comments_are_routed_to_their_own_topic() {
    let _only = PIPELINE.lock().await;
    let endpoint = pipeline_ok("start").trim().to_string();
    let env = pipeline_env();
    let prefix = run_prefix("route");
    let setup = CollectorSetup::from_yaml(&pool_yaml(&endpoint)).expect("pool config");
    let collector = Collector::with_setup(&setup, ServeOptions::default()).expect("pool");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(collector.serve(listener, async {
        let _ = stopped.await;
    }));
    // (id suffix, score, comment)
    let events: [(&str, u8, Option<&str>); 5] = [
        ("angry", 2, Some(COMMENTS[0])),
        ("six", 6, Some(COMMENTS[2])),
        ("silent", 1, None),
        ("promoter", 10, Some(COMMENTS[1])),
        ("neutral", 8, Some(COMMENTS[3])),
    ];
    for (id, score, comment) in events {
        let mut event = serde_json::json!({
            "type": "survey", "metric": "nps", "score": score, "eventId": format!("{prefix}{id}"),
        });
        if let Some(comment) = comment {
            event["comment"] = comment.into();
        }
        let (status, _, body) = post(
            addr,
            "/v1/touchpoints/web-checkout/events",
            "application/json",
            &event.to_string(),
        )
        .await;
        assert_eq!(status, 202, "{id}: {body}");
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .expect("drains")
        .expect("serve task");

    let ids = |read: &HashMap<String, Vec<Read>>| {
        let mut ids: Vec<String> = read
            .keys()
            .map(|id| id.trim_start_matches(&prefix).to_string())
            .collect();
        ids.sort();
        ids
    };
    let main = read_back_from(&env["CX_PIPELINE_TOPIC"], &prefix);
    assert_eq!(
        ids(&main),
        ["angry", "neutral", "promoter", "silent", "six"]
    );
    let detractors = read_back_from(&env["CX_PIPELINE_DETRACTOR_TOPIC"], &prefix);
    assert_eq!(ids(&detractors), ["angry", "six"]);
    let angry = &detractors[&format!("{prefix}angry")];
    assert_eq!(angry.len(), 1);
    assert_eq!(angry[0].body.as_deref(), Some(COMMENTS[0]), "byte for byte");
    assert_eq!(
        angry[0].attributes["cx.survey.segment"]["stringValue"],
        "detractor"
    );
    assert_eq!(
        detractors[&format!("{prefix}six")][0].body.as_deref(),
        Some(COMMENTS[2])
    );
}
