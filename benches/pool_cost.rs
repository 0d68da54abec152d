//! What collectors cost a platform team: 1,000 touchpoints in 10 namespaces, planned with the
//! operator's defaults as dedicated collectors (one Deployment each) and as pooled ones (one
//! autoscaled pool per namespace). Counts pods and sums the CPU and memory they request, from
//! the very objects the operator applies. Run with `cargo bench --bench pool_cost`.

use std::collections::BTreeMap;

use cx_conductor::api::*;
use cx_conductor::core::plan::{PlanOptions, plan_collector};
use cx_conductor::core::pool::{PoolMember, plan_pool};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const NAMESPACES: usize = 10;
const TOUCHPOINTS: usize = 1_000;

fn touchpoint(i: usize, mode: CollectorMode) -> Touchpoint {
    Touchpoint {
        metadata: ObjectMeta {
            name: Some(format!("tp-{i}")),
            namespace: Some(format!("team-{}", i % NAMESPACES)),
            uid: Some(format!("uid-{i}")),
            ..Default::default()
        },
        spec: TouchpointSpec {
            channel: "web".into(),
            stage: Stage::ALL[i % Stage::ALL.len()],
            signals: Signals {
                surveys: vec![SurveySignal {
                    metric: SurveyMetric::Csat,
                    scale: None,
                }],
                interactions: Some(InteractionSignals {
                    outcomes: vec![Outcome::Completed, Outcome::Abandoned],
                    custom_outcomes: vec![],
                    timings: vec![Timing::Wait],
                }),
            },
            collector: CollectorSpec {
                mode,
                ..Default::default()
            },
            paused: false,
            export: None,
        },
        status: None,
    }
}

/// CPU in millicores and memory in MiB of a Kubernetes quantity (the forms the plans use).
fn amount(quantity: Option<&Quantity>) -> f64 {
    let Some(Quantity(text)) = quantity else {
        return 0.0;
    };
    if let Some(milli) = text.strip_suffix('m') {
        milli.parse().unwrap_or(0.0)
    } else if let Some(mib) = text.strip_suffix("Mi") {
        mib.parse().unwrap_or(0.0)
    } else if let Some(gib) = text.strip_suffix("Gi") {
        gib.parse::<f64>().unwrap_or(0.0) * 1024.0
    } else {
        text.parse::<f64>().unwrap_or(0.0) * 1000.0
    }
}

/// Pods, requested millicores and requested MiB of `deployments`, each at `replicas`.
fn cost(deployments: &[(Deployment, i32)]) -> (i32, f64, f64) {
    let mut total = (0, 0.0, 0.0);
    for (deployment, replicas) in deployments {
        let spec = deployment.spec.template.spec.as_ref().expect("a pod spec");
        for container in &spec.containers {
            let requests: BTreeMap<String, Quantity> = container
                .resources
                .as_ref()
                .and_then(|r| r.requests.clone())
                .unwrap_or_default();
            total.1 += f64::from(*replicas) * amount(requests.get("cpu"));
            total.2 += f64::from(*replicas) * amount(requests.get("memory"));
        }
        total.0 += replicas;
    }
    total
}

fn main() {
    let options = PlanOptions::default();
    let dedicated: Vec<(Deployment, i32)> = (0..TOUCHPOINTS)
        .map(|i| {
            let plan = plan_collector(
                &touchpoint(i, CollectorMode::Dedicated),
                None,
                &[],
                &options,
            );
            let replicas = plan.deployment.spec.replicas.unwrap_or(1);
            (plan.deployment, replicas)
        })
        .collect();
    let pooled_touchpoints: Vec<Touchpoint> = (0..TOUCHPOINTS)
        .map(|i| touchpoint(i, CollectorMode::Pooled))
        .collect();
    let pools: Vec<_> = (0..NAMESPACES)
        .filter_map(|n| {
            let namespace = format!("team-{n}");
            let members: Vec<PoolMember<'_>> = pooled_touchpoints
                .iter()
                .filter(|t| t.metadata.namespace.as_deref() == Some(namespace.as_str()))
                .map(|touchpoint| PoolMember {
                    touchpoint,
                    channel: None,
                    token_sha256: None,
                    themes: &[],
                })
                .collect();
            plan_pool(&namespace, &members, &options)
        })
        .collect();
    let at = |replicas: i32| -> Vec<(Deployment, i32)> {
        pools
            .iter()
            .map(|p| (p.deployment.clone(), replicas))
            .collect()
    };
    let (d_pods, d_cpu, d_mem) = cost(&dedicated);
    let (p_pods, p_cpu, p_mem) = cost(&at(options.pool.min_replicas));
    let (x_pods, x_cpu, x_mem) = cost(&at(options.pool.max_replicas));
    println!(
        "{TOUCHPOINTS} touchpoints in {NAMESPACES} namespaces, operator defaults (cargo bench --bench pool_cost)"
    );
    println!("| collectors | pods | CPU requested | memory requested |");
    println!("|---|---:|---:|---:|");
    println!(
        "| dedicated (one Deployment per touchpoint) | {d_pods} | {:.1} cores | {:.1} GiB |",
        d_cpu / 1000.0,
        d_mem / 1024.0
    );
    println!(
        "| pooled, autoscaler at its minimum ({} per namespace) | {p_pods} | {:.1} cores | {:.1} GiB |",
        options.pool.min_replicas,
        p_cpu / 1000.0,
        p_mem / 1024.0
    );
    println!(
        "| pooled, autoscaler at its maximum ({} per namespace) | {x_pods} | {:.1} cores | {:.1} GiB |",
        options.pool.max_replicas,
        x_cpu / 1000.0,
        x_mem / 1024.0
    );
    println!(
        "pooled at minimum / dedicated: pods {:.1} %, CPU {:.1} %, memory {:.1} %",
        100.0 * f64::from(p_pods) / f64::from(d_pods),
        100.0 * p_cpu / d_cpu,
        100.0 * p_mem / d_mem
    );
}
