//! ExperienceKPI evaluation loop: every KPI is measured against Prometheus when its `interval` has
//! elapsed (or its spec changed), its status is written only when the result changed, the
//! `cx_kpi_*` gauges follow every KPI (and vanish with deleted ones), and, when enabled, one
//! PrometheusRule per namespace routes breaches to the KPI's owner.
//!
//! Evaluation is driven by time, not by watch events, so it is a loop over the shared KPI cache
//! rather than a `Controller`; journeys see the new states through their KPI watch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;

use crate::api::{ExperienceKPI, ExperienceKPIStatus, KpiState};
use crate::core::World;
use crate::core::world::namespace_of;
use crate::kpi::{
    KpiError, KpiLabels, KpiMetrics, KpiRequest, PrometheusClient, QueryScope, WindowSpec,
    evaluate, measure_cycle, status_changed,
};

use super::apply::apply_if_drifted;
use super::conditions::{self, Verdict};
use super::context::{Stores, valid};
use super::metrics::Metrics;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "kpi";
/// How often the loop looks for KPIs that are due.
pub const TICK: Duration = Duration::from_secs(5);

/// Settings of KPI evaluation.
#[derive(Clone)]
pub struct KpiOptions {
    /// The Prometheus to query.
    pub prometheus: Arc<PrometheusClient>,
    /// Apply one PrometheusRule per namespace (needs the Prometheus Operator's CRDs); with these
    /// labels, so the Prometheus `ruleSelector` picks it up.
    pub prometheus_rules: Option<BTreeMap<String, String>>,
}

/// When each KPI was last measured, and for which generation.
#[derive(Default)]
struct Schedule {
    last: HashMap<(String, String), (Instant, Option<i64>)>,
}

impl Schedule {
    fn due(&self, kpi: &ExperienceKPI, now: Instant) -> bool {
        let key = (namespace_of(kpi).to_string(), kpi.name_any());
        let interval = WindowSpec::parse(&kpi.spec.interval)
            .map(|w| w.duration(Timestamp::now()))
            .unwrap_or(Duration::from_secs(300));
        match self.last.get(&key) {
            None => true,
            Some((at, generation)) => {
                *generation != kpi.metadata.generation || now.duration_since(*at) >= interval
            }
        }
    }

    fn done(&mut self, kpi: &ExperienceKPI, now: Instant) {
        self.last.insert(
            (namespace_of(kpi).to_string(), kpi.name_any()),
            (now, kpi.metadata.generation),
        );
    }
}

/// The status of a KPI after a measurement: pure.
pub fn next_status(
    kpi: &ExperienceKPI,
    measured: &Result<crate::kpi::Measurement, KpiError>,
    now: &Time,
) -> ExperienceKPIStatus {
    let current = kpi.status.as_ref();
    // A new generation (indicator, scope, objective changed) starts the cycle history afresh.
    let previous = current.filter(|s| s.observed_generation == kpi.metadata.generation);
    let evaluation = evaluate(
        &kpi.spec.objective,
        kpi.spec.min_samples,
        previous,
        measured,
    );
    let mut status = evaluation.to_status(current);
    status.observed_generation = kpi.metadata.generation;
    let query_valid = match measured {
        Err(e) if e.is_invalid_spec() => Verdict::no("QueryValid", e.reason(), e.to_string()),
        _ => Verdict::yes(
            "QueryValid",
            "Compiled",
            "the indicator compiles to valid PromQL",
        ),
    };
    let ready = if evaluation.state == KpiState::Unknown {
        Verdict::no("Ready", evaluation.reason, evaluation.message.clone())
    } else {
        Verdict::yes("Ready", evaluation.reason, evaluation.message.clone())
    };
    let existing = current.map(|s| s.conditions.clone()).unwrap_or_default();
    status.conditions = conditions::merge(
        &existing,
        &[query_valid, ready],
        kpi.metadata.generation,
        now,
    );
    status.last_evaluation_time = current.and_then(|s| s.last_evaluation_time.clone());
    if status_changed(current, &status) {
        status.last_evaluation_time = Some(now.clone());
    }
    status
}

/// Runs the evaluation loop until `shutdown` turns true.
pub async fn run(
    client: kube::Client,
    stores: Stores,
    metrics: Arc<Metrics>,
    options: KpiOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let kpi_metrics = match KpiMetrics::new(&metrics.registry) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot register KPI metrics; KPI evaluation disabled");
            return;
        }
    };
    let mut schedule = Schedule::default();
    let mut exported: HashMap<(String, String), ()> = HashMap::new();
    loop {
        cycle(
            &client,
            &stores,
            &metrics,
            &kpi_metrics,
            &options,
            &mut schedule,
            &mut exported,
        )
        .await;
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn cycle(
    client: &kube::Client,
    stores: &Stores,
    metrics: &Metrics,
    kpi_metrics: &KpiMetrics,
    options: &KpiOptions,
    schedule: &mut Schedule,
    exported: &mut HashMap<(String, String), ()>,
) {
    let channels = valid(&stores.channels);
    let touchpoints = valid(&stores.touchpoints);
    let kpis = valid(&stores.kpis);
    let journeys = valid(&stores.journeys);
    let world = World::new(&channels, &touchpoints, &kpis, &journeys);
    let started = Instant::now();
    let due: Vec<usize> = (0..kpis.len())
        .filter(|&k| schedule.due(&kpis[k], started))
        .collect();

    if !due.is_empty() {
        let requests: Vec<KpiRequest> = due
            .iter()
            .map(|&k| KpiRequest {
                spec: &kpis[k].spec,
                scope: QueryScope::resolve(&world, k),
            })
            .collect();
        let now = Timestamp::now();
        let report = measure_cycle(&options.prometheus, &requests, now).await;
        tracing::debug!(kpis = due.len(), queries = report.http_queries, elapsed = ?report.elapsed, "KPI cycle");
        let time = Time(now);
        for (i, &k) in due.iter().enumerate() {
            let kpi = &kpis[k];
            let status = next_status(kpi, &report.results[i], &time);
            let timer = metrics
                .reconcile_duration
                .with_label_values(&[CONTROLLER])
                .start_timer();
            let written = if status_changed(kpi.status.as_ref(), &status) {
                let api: Api<ExperienceKPI> = Api::namespaced(client.clone(), namespace_of(kpi));
                api.patch_status(
                    &kpi.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await
                .map(|_| true)
            } else {
                Ok(false)
            };
            timer.observe_duration();
            match written {
                Ok(wrote) => {
                    if wrote {
                        metrics
                            .writes
                            .with_label_values(&[CONTROLLER, "status"])
                            .inc();
                    }
                    metrics
                        .reconciles
                        .with_label_values(&[CONTROLLER, "ok"])
                        .inc();
                    schedule.done(kpi, started);
                }
                Err(e) => {
                    // Not marked done: retried on the next tick.
                    metrics
                        .reconciles
                        .with_label_values(&[CONTROLLER, "error"])
                        .inc();
                    let error = super::error::Error::Kube(e);
                    metrics
                        .reconcile_errors
                        .with_label_values(&[CONTROLLER, error.reason()])
                        .inc();
                    tracing::warn!(kpi = %kpi.name_any(), %error, "writing KPI status failed");
                }
            }
            kpi_metrics.set(&KpiLabels::of(kpi), kpi.spec.objective.target, &status);
        }
    }

    // Gauges of deleted KPIs disappear.
    let alive: HashMap<(String, String), ()> = kpis
        .iter()
        .map(|k| ((namespace_of(k).to_string(), k.name_any()), ()))
        .collect();
    for key in exported
        .keys()
        .filter(|k| !alive.contains_key(*k))
        .cloned()
        .collect::<Vec<_>>()
    {
        kpi_metrics.remove(&key.0, &key.1);
        exported.remove(&key);
        schedule.last.remove(&key);
    }
    exported.extend(alive);

    if let Some(labels) = &options.prometheus_rules {
        for rule in crate::kpi::rules::prometheus_rules(&kpis, labels) {
            let name = rule.metadata.name.clone().unwrap_or_default();
            let namespace = rule.metadata.namespace.clone().unwrap_or_default();
            let Ok(desired) = serde_json::to_value(&rule) else {
                continue;
            };
            let resource = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
                "monitoring.coreos.com",
                "v1",
                "PrometheusRule",
            ));
            let api: Api<kube::api::DynamicObject> =
                Api::namespaced_with(client.clone(), &namespace, &resource);
            let observed = match api.get_opt(&name).await {
                Ok(o) => o.and_then(|o| serde_json::to_value(o).ok()),
                Err(e) => {
                    tracing::warn!(%namespace, error = %e, "cannot read the PrometheusRule");
                    continue;
                }
            };
            match apply_if_drifted(client, &desired, observed.as_ref()).await {
                Ok(true) => metrics
                    .writes
                    .with_label_values(&[CONTROLLER, "apply"])
                    .inc(),
                Ok(false) => {}
                Err(e) => tracing::warn!(%namespace, error = %e, "cannot apply the PrometheusRule"),
            }
        }
    }
}
