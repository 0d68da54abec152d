//! Operator convergence on the real control plane (`scripts/cluster.sh`): 1,000 touchpoints
//! across 100 channels and 10 journeys, every option on (NetworkPolicy, PodDisruptionBudget for
//! the half with two replicas, ServiceMonitor). The operator runs as a separate process
//! (`cx-conductor run`, release build) with a token of the chart's ServiceAccount, through a
//! counting proxy, so its requests, writes and peak RSS are its own.
//!
//! Run with `cargo bench --bench operator_converge`: collectors pooled (the default: one pool
//! per namespace, 100 touchpoints each); `CX_BENCH_COLLECTORS=dedicated cargo bench --bench
//! operator_converge` gives each touchpoint its own collector (half of them with two replicas
//! and a PDB). Prints time to converge (every touchpoint Ready: its collector or pool applied
//! and kwok's pods ready), the operator's CPU time meanwhile, API requests and writes per
//! touchpoint, writes over two resyncs in steady state, the operator's peak RSS (VmHWM), and the
//! writes after editing one Channel.

#[path = "../tests/support/cluster.rs"]
mod cluster;
#[path = "../tests/support/operator.rs"]
mod operator_support;
#[path = "../tests/support/proxy.rs"]
mod proxy;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::{apply, cluster};
use cx_conductor::api::Touchpoint;
use http::Method;
use kube::api::{Api, ListParams};
use operator_support::full_release;
use proxy::FaultProxy;
use serde_json::json;

const CHANNELS: usize = 100;
const TOUCHPOINTS: usize = 1000;
const JOURNEYS: usize = 10;
const RESYNC_SECONDS: u64 = 10;

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

async fn ready_touchpoints(admin: &kube::Client, namespaces: &[String]) -> usize {
    let mut ready = 0;
    for ns in namespaces {
        let list = Api::<Touchpoint>::namespaced(admin.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("touchpoints listed");
        ready += list
            .items
            .iter()
            .filter(|t| {
                t.status.as_ref().is_some_and(|s| {
                    s.observed_generation == Some(1)
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
    }
    ready
}

/// User plus system CPU seconds of a process (`/proc/<pid>/stat` fields 14 and 15, in clock
/// ticks of 1/100 s on Linux).
fn cpu_seconds(child: &Child) -> f64 {
    std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
        .ok()
        .and_then(|stat| {
            // The command name (field 2) may hold spaces: count fields after its closing ')'.
            let after = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

fn writes(requests: &[(Method, String, String)]) -> Vec<&(Method, String, String)> {
    requests
        .iter()
        .filter(|(m, _, _)| *m != Method::GET)
        .collect()
}

/// The touchpoint's collector: a dedicated one gets one or two replicas (a PDB with two).
fn collector_of(collector: &serde_json::Value, dedicated: bool, t: usize) -> serde_json::Value {
    let mut collector = collector.clone();
    if dedicated {
        collector["replicas"] = json!(1 + (t % 2));
    }
    collector
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("operator_converge: run with `cargo bench --bench operator_converge`");
        return;
    }
    let dedicated = match std::env::var("CX_BENCH_COLLECTORS").as_deref() {
        Ok("dedicated") => true,
        Ok("pooled") | Err(_) => false,
        Ok(other) => panic!("CX_BENCH_COLLECTORS={other}: say pooled or dedicated"),
    };
    let collector = if dedicated {
        json!({"mode": "dedicated", "maxEventBytes": 65536,
               "resources": {"requests": {"cpu": "0.05", "memory": "32Mi"}}})
    } else {
        json!({"mode": "pooled", "maxEventBytes": 65536})
    };
    let cluster = cluster();
    let release = full_release();
    let admin = cluster.admin();
    let mut namespaces = Vec::new();
    for _ in 0..JOURNEYS {
        namespaces.push(cluster.namespace("bench").await);
    }
    let setup = Instant::now();
    for ns in &namespaces {
        apply(&admin, &json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "CustomerJourney",
            "metadata": {"name": "main", "namespace": ns},
            "spec": {"owner": "cx-office", "stages": ["awareness", "purchase", "support", "loyalty"],
                     "consistency": {"rules": [{"field": "brand.voice", "policy": "equal"}, {"field": "locales", "policy": "includes", "values": ["it-IT"]}]}}}), "bench")
            .await
            .expect("journey created");
    }
    for c in 0..CHANNELS {
        apply(&admin, &json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
            "metadata": {"name": format!("channel-{c}"), "namespace": namespaces[c % JOURNEYS]},
            "spec": {"type": "web", "owner": "digital", "brand": {"voice": "friendly"}, "locales": ["it-IT"],
                     "serviceLevels": {"firstResponseSeconds": 60}}}), "bench")
            .await
            .expect("channel created");
    }
    let stages = ["awareness", "purchase", "support", "loyalty"];
    for t in 0..TOUCHPOINTS {
        let c = t % CHANNELS;
        apply(&admin, &json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
            "metadata": {"name": format!("tp-{t}"), "namespace": namespaces[c % JOURNEYS]},
            "spec": {"channel": format!("channel-{c}"), "stage": stages[t % 4],
                     "signals": {"surveys": [{"metric": "csat"}], "interactions": {"outcomes": ["completed", "abandoned"], "timings": ["wait"]}},
                     "collector": collector_of(&collector, dedicated, t)}}), "bench")
            .await
            .expect("touchpoint created");
    }
    println!(
        "setup: {TOUCHPOINTS} touchpoints, {CHANNELS} channels, {JOURNEYS} journeys created in {:.1}s",
        setup.elapsed().as_secs_f64()
    );

    let proxy = FaultProxy::start(&cluster.server, &cluster.ca_pem).await;
    let token = cluster
        .service_account_token(&release.namespace, &release.service_account)
        .await;
    let config = cluster.kubeconfig_for(&proxy.url, &token, "bench");
    let start = Instant::now();
    let mut operator = Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
        .args([
            "run",
            "--leader-election",
            "false",
            "--metrics-addr",
            "127.0.0.1:0",
            "--resync-seconds",
            &RESYNC_SECONDS.to_string(),
            "--service-monitors",
            "--network-policies",
            "--namespace",
            &namespaces.join(","),
        ])
        .env("KUBECONFIG", &config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("operator started");
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut converged = false;
    while Instant::now() < deadline {
        if ready_touchpoints(&admin, &namespaces).await == TOUCHPOINTS {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let elapsed = start.elapsed();
    let converge_cpu = cpu_seconds(&operator);
    // Let the status cascade (channels, journeys) finish before counting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let requests = proxy.requests();
    let all_writes = writes(&requests);
    let touchpoint_writes = all_writes
        .iter()
        .filter(|(_, p, _)| {
            p.contains("/touchpoints/") || p.contains("collector-") || p.contains("/cx-collectors")
        })
        .count();
    let steady = proxy.requests().len();
    tokio::time::sleep(Duration::from_secs(2 * RESYNC_SECONDS + 5)).await;
    let after_steady = proxy.requests();
    let steady_requests = after_steady.len() - steady;
    let steady_writes = writes(&after_steady[steady..]).len();

    // One Channel edit: only what depends on it is written.
    let edit = proxy.requests().len();
    apply(&admin, &json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
        "metadata": {"name": "channel-0", "namespace": namespaces[0]},
        "spec": {"type": "web", "owner": "digital", "brand": {"voice": "formal"}, "locales": ["it-IT"],
                 "serviceLevels": {"firstResponseSeconds": 60}}}), "bench")
        .await
        .expect("channel edited");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after_edit = proxy.requests();
    let edit_writes: Vec<String> = writes(&after_edit[edit..])
        .iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    let rss = peak_rss_kib(&operator);
    let _ = operator.kill();
    let _ = operator.wait();
    let _ = std::fs::remove_file(&config);
    assert!(converged, "the operator did not converge within 900s");
    println!(
        "operator convergence on the real control plane: {TOUCHPOINTS} touchpoints ({}), {CHANNELS} channels, {JOURNEYS} journeys, NetworkPolicy + PDB + ServiceMonitor on",
        if dedicated {
            "dedicated collectors, half with 2 replicas"
        } else {
            "pooled: one pool per namespace"
        }
    );
    println!(
        "  time to converge (every touchpoint Ready: collector applied, kwok's pods ready): {:.1}s, operator CPU meanwhile {converge_cpu:.1}s",
        elapsed.as_secs_f64()
    );
    println!(
        "  API requests: {} total, {:.2} per touchpoint",
        requests.len(),
        requests.len() as f64 / TOUCHPOINTS as f64
    );
    println!(
        "  writes for touchpoints (collector objects + status): {touchpoint_writes}, {:.2} per touchpoint; all writes {} ({:.2} per touchpoint)",
        touchpoint_writes as f64 / TOUCHPOINTS as f64,
        all_writes.len(),
        all_writes.len() as f64 / TOUCHPOINTS as f64
    );
    println!(
        "  steady state over two resyncs ({}s): {steady_writes} writes, {steady_requests} requests",
        2 * RESYNC_SECONDS + 5
    );
    println!(
        "  operator peak RSS (VmHWM): {:.1} MiB",
        rss as f64 / 1024.0
    );
    println!(
        "  after editing one Channel: {} writes: {:?}",
        edit_writes.len(),
        edit_writes
    );
}
