//! Benchmark of the conductor's core on a synthetic organisation: consistency + coverage +
//! readiness for every journey, and planning every collector. Run with
//! `cargo bench --bench analysis`; prints the median of several runs at two sizes so the growth
//! is visible (the full size is 2,000 channels, 20,000 touchpoints, 2,000 KPIs, 200 journeys
//! with 5 rules each).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cx_conductor::api::*;
use cx_conductor::core::plan::{PlanOptions, plan_collector};
use cx_conductor::core::world::namespace_of;
use cx_conductor::core::{World, analyze};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

const STAGES: [Stage; 8] = Stage::ALL;

struct Org {
    channels: Vec<Channel>,
    touchpoints: Vec<Touchpoint>,
    kpis: Vec<ExperienceKPI>,
    journeys: Vec<CustomerJourney>,
}

fn meta(name: String, namespace: &str, labels: &[(&str, String)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.into()),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// `scale` = 1.0 gives the full-size organisation; 20 namespaces, each with 100 channels split
/// into 10 journeys, 10 touchpoints per channel, 100 KPIs.
fn organisation(scale: f64) -> Org {
    let namespaces = (20.0 * scale).round() as usize;
    let mut org = Org {
        channels: vec![],
        touchpoints: vec![],
        kpis: vec![],
        journeys: vec![],
    };
    for n in 0..namespaces {
        let ns = format!("team-{n}");
        for c in 0..100 {
            let journey = format!("j{}", c % 10);
            org.channels.push(Channel::new_with_meta(
                meta(format!("channel-{c}"), &ns, &[("journey", journey)]),
                ChannelSpec {
                    channel_type: ChannelType::Web,
                    display_name: None,
                    owner: Some("digital".into()),
                    brand: Some(Brand {
                        name: Some("Acme".into()),
                        voice: Some(if c % 17 == 0 { "formal" } else { "friendly" }.into()),
                        style_guide_version: Some("2026.3".into()),
                    }),
                    content: None,
                    privacy: Some(Privacy {
                        consent_policy_version: Some("v7".into()),
                        data_retention_days: Some(365),
                    }),
                    locales: vec!["it-IT".into(), "en-GB".into()],
                    service_levels: Some(ServiceLevels {
                        first_response_seconds: Some(60 + (c % 3) * 60),
                        resolution_hours: Some(24),
                    }),
                    attributes: BTreeMap::from([("returnPolicy".into(), "30d".into())]),
                },
            ));
            for t in 0..10 {
                let stage = STAGES[t % 8];
                let t32 = t as i32;
                org.touchpoints.push(Touchpoint::new_with_meta(
                    meta(
                        format!("tp-{c}-{t}"),
                        &ns,
                        &[("team", format!("t{}", t % 4))],
                    ),
                    TouchpointSpec {
                        channel: format!("channel-{c}"),
                        stage,
                        signals: Signals {
                            surveys: if t % 3 == 0 {
                                vec![]
                            } else {
                                vec![SurveySignal {
                                    metric: SurveyMetric::Csat,
                                    scale: None,
                                }]
                            },
                            interactions: Some(InteractionSignals {
                                outcomes: vec![Outcome::Completed, Outcome::Abandoned],
                                custom_outcomes: vec![],
                                timings: vec![Timing::Wait],
                            }),
                        },
                        collector: CollectorSpec {
                            mode: CollectorMode::Dedicated,
                            replicas: Some(1 + (t32 % 2)),
                            ..Default::default()
                        },
                        paused: false,
                        export: None,
                    },
                ));
            }
        }
        for k in 0..100 {
            org.kpis.push(ExperienceKPI::new_with_meta(
                meta(format!("kpi-{k}"), &ns, &[]),
                ExperienceKPISpec {
                    indicator: Indicator {
                        builtin: Some(BuiltinIndicator::Csat),
                        ..Default::default()
                    },
                    scope: Scope {
                        touchpoint_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                "team".into(),
                                format!("t{}", k % 4),
                            )])),
                            ..Default::default()
                        }),
                        channels: vec![format!("channel-{}", k % 100)],
                        stage: None,
                    },
                    objective: Objective {
                        target: 80.0,
                        direction: Direction::AtLeast,
                        warning: Some(70.0),
                    },
                    window: "28d".into(),
                    time_zone: None,
                    interval: "5m".into(),
                    min_samples: 30,
                    owner: Some("care".into()),
                    journey: None,
                },
            ));
        }
        let rule = |field: &str, policy: Policy, values: &[&str]| ConsistencyRule {
            field: field.into(),
            policy,
            values: values.iter().map(|v| v.to_string()).collect(),
            severity: None,
        };
        for j in 0..10 {
            org.journeys.push(CustomerJourney::new_with_meta(
                meta(format!("j{j}"), &ns, &[]),
                CustomerJourneySpec {
                    owner: Some("cx-office".into()),
                    stages: STAGES.to_vec(),
                    channel_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([("journey".into(), format!("j{j}"))])),
                        ..Default::default()
                    }),
                    consistency: Consistency {
                        rules: vec![
                            rule("brand.voice", Policy::Equal, &[]),
                            rule("privacy.consentPolicyVersion", Policy::Present, &[]),
                            rule("locales", Policy::Includes, &["it-IT"]),
                            rule(
                                "serviceLevels.firstResponseSeconds",
                                Policy::AtMost,
                                &["120"],
                            ),
                            rule("attributes.returnPolicy", Policy::Equal, &[]),
                        ],
                    },
                    coverage: CoverageRequirements::default(),
                    self_assessment: None,
                    themes: Vec::new(),
                    export: None,
                },
            ));
        }
    }
    org
}

trait WithMeta: Sized {
    type Spec;
    fn new_with_meta(meta: ObjectMeta, spec: Self::Spec) -> Self;
}

macro_rules! with_meta {
    ($kind:ty, $spec:ty) => {
        impl WithMeta for $kind {
            type Spec = $spec;
            fn new_with_meta(meta: ObjectMeta, spec: $spec) -> Self {
                let mut object = <$kind>::new(meta.name.as_deref().unwrap_or_default(), spec);
                object.metadata = meta;
                object
            }
        }
    };
}
with_meta!(Channel, ChannelSpec);
with_meta!(Touchpoint, TouchpointSpec);
with_meta!(ExperienceKPI, ExperienceKPISpec);
with_meta!(CustomerJourney, CustomerJourneySpec);

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut samples = Vec::with_capacity(runs);
    let mut out = 0;
    for _ in 0..runs {
        let start = Instant::now();
        out = std::hint::black_box(f());
        samples.push(start.elapsed());
    }
    (median(samples), out)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("analysis: run with `cargo bench --bench analysis`");
        return;
    }
    let runs = 7;
    println!("cx-conductor core benchmark (median of {runs} runs, one thread)");
    println!(
        "{:<52} {:>12} {:>14} {:>10}",
        "organisation", "analysis", "plan all", "findings"
    );
    let mut rows = Vec::new();
    for scale in [0.5, 1.0] {
        let org = organisation(scale);
        let (analysis_time, findings) = measure(runs, || {
            let world = World::new(&org.channels, &org.touchpoints, &org.kpis, &org.journeys);
            analyze(&world).all_findings().count()
        });
        let options = PlanOptions::default();
        let (plan_time, objects) = measure(runs, || {
            let world = World::new(&org.channels, &org.touchpoints, &org.kpis, &org.journeys);
            org.touchpoints
                .iter()
                .map(|t| {
                    let plan = plan_collector(
                        t,
                        world.channel(namespace_of(t), &t.spec.channel),
                        &[],
                        &options,
                    );
                    3 + usize::from(plan.pod_disruption_budget.is_some())
                })
                .sum()
        });
        let label = format!(
            "{} channels, {} touchpoints, {} KPIs, {} journeys",
            org.channels.len(),
            org.touchpoints.len(),
            org.kpis.len(),
            org.journeys.len()
        );
        println!(
            "{label:<52} {:>10.1}ms {:>12.1}ms {findings:>10}  ({objects} objects planned)",
            analysis_time.as_secs_f64() * 1e3,
            plan_time.as_secs_f64() * 1e3
        );
        rows.push((org.touchpoints.len(), analysis_time, plan_time));
    }
    let (small, large) = (&rows[0], &rows[1]);
    let size_ratio = large.0 as f64 / small.0 as f64;
    println!(
        "growth for {size_ratio:.1}x the objects: analysis {:.2}x, plan {:.2}x",
        large.1.as_secs_f64() / small.1.as_secs_f64(),
        large.2.as_secs_f64() / small.2.as_secs_f64()
    );
}
