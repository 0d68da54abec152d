//! Operator convergence benchmark against the in-process fake API server: 1,000 touchpoints
//! across 100 channels and 10 journeys. The operator runs as a separate process
//! (`cx-conductor run`, release build) so its peak RSS is its own.
//!
//! Run with `cargo bench --bench operator_converge`. Prints time to converge, API requests and
//! writes per touchpoint, writes in steady state, and the operator's peak RSS (VmHWM).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cx_conductor::api::Touchpoint;
use cx_conductor::testing::FakeApiServer;
use serde_json::json;

const CHANNELS: usize = 100;
const TOUCHPOINTS: usize = 1000;
const JOURNEYS: usize = 10;

fn kubeconfig(url: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("cx-bench-kubeconfig-{}", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .expect("kubeconfig written");
    path
}

fn peak_rss_kib(child: &Child) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn converged(server: &FakeApiServer) -> bool {
    let touchpoints = server.list_as::<Touchpoint>(None);
    touchpoints.len() == TOUCHPOINTS
        && touchpoints.iter().all(|t| {
            t.status
                .as_ref()
                .is_some_and(|s| s.collector.is_some() && s.observed_generation == Some(1))
        })
        && server.list("deployments.apps", None).len() == TOUCHPOINTS
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("operator_converge: run with `cargo bench --bench operator_converge`");
        return;
    }
    let binary = env!("CARGO_BIN_EXE_cx-conductor");
    let server = FakeApiServer::builder()
        .history_limit(200_000)
        .start()
        .await;
    for n in 0..JOURNEYS {
        let ns = format!("team-{n}");
        server
            .create(json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "CustomerJourney",
                "metadata": {"name": "main", "namespace": ns},
                "spec": {"owner": "cx-office", "stages": ["awareness", "purchase", "support", "loyalty"],
                         "consistency": {"rules": [{"field": "brand.voice", "policy": "equal"}, {"field": "locales", "policy": "includes", "values": ["it-IT"]}]}}}))
            .expect("journey created");
    }
    for c in 0..CHANNELS {
        let ns = format!("team-{}", c % JOURNEYS);
        server
            .create(json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
                "metadata": {"name": format!("channel-{c}"), "namespace": ns},
                "spec": {"type": "web", "owner": "digital", "brand": {"voice": "friendly"}, "locales": ["it-IT"],
                         "serviceLevels": {"firstResponseSeconds": 60}}}))
            .expect("channel created");
    }
    let stages = ["awareness", "purchase", "support", "loyalty"];
    for t in 0..TOUCHPOINTS {
        let c = t % CHANNELS;
        server
            .create(json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
                "metadata": {"name": format!("tp-{t}"), "namespace": format!("team-{}", c % JOURNEYS)},
                "spec": {"channel": format!("channel-{c}"), "stage": stages[t % 4],
                         "signals": {"surveys": [{"metric": "csat"}], "interactions": {"outcomes": ["completed", "abandoned"], "timings": ["wait"]}},
                         "collector": {"replicas": 1 + (t % 2), "maxEventBytes": 65536}}}))
            .expect("touchpoint created");
    }
    let config = kubeconfig(&server.url());
    let mark = server.mark();
    let start = Instant::now();
    let mut operator = Command::new(binary)
        .args([
            "run",
            "--leader-election",
            "false",
            "--metrics-addr",
            "127.0.0.1:0",
            "--resync-seconds",
            "10",
        ])
        .env("KUBECONFIG", &config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("operator started");
    let ok = server.wait_until(Duration::from_secs(300), converged).await;
    let elapsed = start.elapsed();
    // Let the status cascade (channels, journeys) finish before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = server.requests_since(mark);
    let writes = server.writes_since(mark);
    let touchpoint_writes = writes
        .iter()
        .filter(|r| r.path.contains("/touchpoints/") || r.path.contains("collector-"))
        .count();
    let steady = server.mark();
    tokio::time::sleep(Duration::from_secs(25)).await; // two resync periods
    let steady_writes = server.writes_since(steady).len();
    let rss = peak_rss_kib(&operator);
    let _ = operator.kill();
    let _ = operator.wait();
    let _ = std::fs::remove_file(&config);
    assert!(ok, "the operator did not converge within 300s");
    println!(
        "operator convergence: {TOUCHPOINTS} touchpoints, {CHANNELS} channels, {JOURNEYS} journeys"
    );
    println!(
        "  time to converge (every touchpoint's collector applied and status written): {:.2}s",
        elapsed.as_secs_f64()
    );
    println!(
        "  API requests: {} total, {:.2} per touchpoint",
        requests.len(),
        requests.len() as f64 / TOUCHPOINTS as f64
    );
    println!(
        "  writes for touchpoints (collector objects + status): {touchpoint_writes}, {:.2} per touchpoint; all writes {}",
        touchpoint_writes as f64 / TOUCHPOINTS as f64,
        writes.len()
    );
    println!("  writes in steady state over two resyncs: {steady_writes}");
    println!(
        "  operator peak RSS (VmHWM): {:.1} MiB",
        rss as f64 / 1024.0
    );
}
