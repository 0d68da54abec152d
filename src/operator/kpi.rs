//! ExperienceKPI evaluation loop: every KPI is measured against Prometheus when its `interval` has
//! elapsed (or its spec changed), its status is written only when the result changed, the
//! `cx_kpi_*` gauges follow every KPI (and vanish with deleted ones), and, when enabled, one
//! PrometheusRule per namespace routes breaches to the KPI's owner.
//!
//! Evaluation is driven by time, not by watch events, so it is a loop over the shared KPI cache
//! rather than a `Controller`; journeys see the new states through their KPI watch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use tokio::sync::watch;

use crate::api::{ExperienceKPI, ExperienceKPIStatus, KpiState};
use crate::core::World;
use crate::core::plan::hash;
use crate::core::world::namespace_of;
use crate::kpi::cycle::{FinishedPeriods, measure_cycle_keeping};
use crate::kpi::evaluate::{CountSource, CountSources};
use crate::kpi::recording::Increase;
use crate::kpi::rules::{RULE_NAME, prometheus_rules};
use crate::kpi::window::{promql_duration, window_problem};
use crate::kpi::{
    KpiError, KpiLabels, KpiMetrics, KpiRequest, QueryScope, WindowSpec, evaluate, status_changed,
};

use super::conditions::{self, Verdict};
use super::context::{Context, KpiOptions, valid};
use super::shell;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "kpi";
/// How often the loop looks for KPIs that are due.
pub const TICK: Duration = Duration::from_secs(5);

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

/// The status of a KPI after a measurement, with Prometheus' `retention` when known: pure.
pub fn next_status(
    kpi: &ExperienceKPI,
    measured: &Result<crate::kpi::Measurement, KpiError>,
    retention: Option<Duration>,
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
    let interval = WindowSpec::parse(&kpi.spec.interval)
        .map(|w| w.duration(now.0))
        .unwrap_or(Duration::from_secs(300));
    let window_valid = match WindowSpec::parse_in(&kpi.spec.window, kpi.spec.time_zone.as_deref()) {
        Err(e) => Verdict::no("WindowValid", e.reason(), e.to_string()),
        Ok(window) => match window_problem(&window, &kpi.spec.window, interval, retention, now.0) {
            Some((reason, message)) => Verdict::no("WindowValid", reason, message),
            None => Verdict::yes(
                "WindowValid",
                "Valid",
                match retention {
                    Some(r) => format!(
                        "the window and its previous cycle are within Prometheus' retention ({})",
                        promql_duration(r)
                    ),
                    None => {
                        "the window is at least the interval (Prometheus' retention unknown)".into()
                    }
                },
            ),
        },
    };
    let mut existing = current.map(|s| s.conditions.clone()).unwrap_or_default();
    let mut verdicts = vec![query_valid, ready, window_valid];
    // When Prometheus did not answer, what was counted last stands.
    if let Ok(measurement) = measured {
        match measurement.sources {
            Some(sources) => verdicts.push(counted_from(sources)),
            // Custom PromQL counts what its author wrote.
            None => existing.retain(|c| c.type_ != INCREMENTS_RECORDED),
        }
    }
    status.conditions = conditions::merge(&existing, &verdicts, kpi.metadata.generation, now);
    status.last_evaluation_time = current.and_then(|s| s.last_evaluation_time.clone());
    if status_changed(current, &status) {
        status.last_evaluation_time = Some(now.clone());
    }
    status
}

/// The condition saying whether a builtin KPI was counted from the recorded increments.
pub const INCREMENTS_RECORDED: &str = "IncrementsRecorded";

/// The [`INCREMENTS_RECORDED`] condition for where a builtin KPI's counts came from: True when
/// both cycles read the recorded 5-minute increments; otherwise False, naming why the raw
/// counters were read (exact too, but every raw sample of the window). The messages hold no
/// number that moves every cycle, so a KPI waiting for its window to be recorded is not
/// rewritten every 5 minutes.
pub fn counted_from(sources: CountSources) -> Verdict {
    const RAW: &str = "counted from the raw counters instead (exact too, but reading every raw sample of the window)";
    let why = |source: CountSource, cycle: &str| match source {
        CountSource::Recorded => None,
        CountSource::NotRecorded => Some((
            "NotRecorded",
            format!(
                "no step of the {cycle} window is recorded: the namespace's recording rules (the PrometheusRule of --prometheus-rules, or the rule file of check --plan) are not loaded in this Prometheus; {RAW}"
            ),
        )),
        CountSource::PartlyRecorded => Some((
            "PartlyRecorded",
            format!(
                "the recorded increments do not cover the whole {cycle} window (the rules were loaded less than a window ago, or evaluations were missed); {RAW}"
            ),
        )),
        CountSource::CoverageUnknown => Some((
            "CoverageUnknown",
            format!("Prometheus did not say how much of the {cycle} window is recorded; {RAW}"),
        )),
    };
    match why(sources.current, "current").or_else(|| why(sources.previous, "previous cycle's")) {
        Some((reason, message)) => Verdict::no(INCREMENTS_RECORDED, reason, message),
        None => Verdict::yes(
            INCREMENTS_RECORDED,
            "Recorded",
            "both cycles are counted from the recorded 5-minute increments",
        ),
    }
}

/// Why KPIs are not evaluated when the operator has no Prometheus, and the setting that fixes it.
pub const NOT_CONFIGURED_MESSAGE: &str = "not evaluated: the operator has no Prometheus to query; \
     set the chart value kpis.prometheusUrl (operator flag --prometheus-url) to the Prometheus \
     that scrapes the collectors";

/// The status of a KPI the operator cannot evaluate because no Prometheus is configured: pure.
/// State Unknown, and a Ready=False condition naming the cause and the chart value that fixes
/// it, so `kubectl get xkpi` and the journey show why instead of an empty status.
pub fn not_configured_status(kpi: &ExperienceKPI, now: &Time) -> ExperienceKPIStatus {
    let current = kpi.status.as_ref();
    let existing = current.map(|s| s.conditions.clone()).unwrap_or_default();
    ExperienceKPIStatus {
        observed_generation: kpi.metadata.generation,
        state: Some(KpiState::Unknown),
        conditions: conditions::merge(
            &existing,
            &[Verdict::no(
                "Ready",
                "PrometheusNotConfigured",
                NOT_CONFIGURED_MESSAGE,
            )],
            kpi.metadata.generation,
            now,
        ),
        ..Default::default()
    }
}

/// Without Prometheus: keeps every KPI's status saying why it is not evaluated (written only
/// when it differs, so a steady state and a restart write nothing), until `shutdown`.
pub async fn report_not_configured(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let now = Time(Timestamp::now());
        for kpi in valid(&ctx.stores.kpis) {
            let status = not_configured_status(&kpi, &now);
            let written = shell::write_status(&ctx, CONTROLLER, &kpi, &status).await;
            let outcome = if written.is_ok() { "ok" } else { "error" };
            ctx.metrics
                .reconciles
                .with_label_values(&[CONTROLLER, outcome])
                .inc();
            if let Err(error) = written {
                ctx.metrics
                    .reconcile_errors
                    .with_label_values(&[CONTROLLER, error.reason()])
                    .inc();
                tracing::warn!(kpi = %kpi.name_any(), %error, "writing KPI status failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Runs the evaluation loop until `shutdown` turns true.
pub async fn run(ctx: Arc<Context>, options: KpiOptions, mut shutdown: watch::Receiver<bool>) {
    let kpi_metrics = match KpiMetrics::new(&ctx.metrics.registry) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot register KPI metrics; KPI evaluation disabled");
            return;
        }
    };
    let mut schedule = Schedule::default();
    let mut exported: HashMap<(String, String), ()> = HashMap::new();
    let mut rules = RuleTracker::default();
    if options.prometheus_rules.is_some() {
        rules.namespaces = existing_rule_namespaces(&ctx).await;
    }
    let mut retention = Retention::default();
    let mut periods = FinishedPeriods::default();
    loop {
        retention.refresh(&options.prometheus).await;
        cycle(
            &ctx,
            &kpi_metrics,
            &options,
            &retention,
            &mut schedule,
            &mut exported,
            &mut periods,
        )
        .await;
        if let Some(labels) = &options.prometheus_rules {
            rules.sync(&ctx, labels).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Prometheus' storage retention, re-read every [`Retention::EVERY`] (a KPI's `WindowValid`
/// condition compares its window with it); unknown until Prometheus says. A failed read is
/// retried after [`Retention::RETRY`], not on every tick, so that an unreachable Prometheus is
/// not asked twice per tick (the cycle's own queries already report it).
#[derive(Default)]
struct Retention {
    value: Option<Duration>,
    next_read: Option<Instant>,
}

impl Retention {
    const EVERY: Duration = Duration::from_secs(600);
    const RETRY: Duration = Duration::from_secs(60);

    async fn refresh(&mut self, client: &crate::kpi::PrometheusClient) {
        if self.next_read.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let wait = match client.retention().await {
            Ok(value) => {
                self.value = value;
                Self::EVERY
            }
            Err(error) => {
                tracing::debug!(%error, "cannot read Prometheus' retention");
                Self::RETRY
            }
        };
        self.next_read = Some(Instant::now() + wait);
    }

    fn get(&self) -> Option<Duration> {
        self.value
    }
}

async fn cycle(
    ctx: &Context,
    kpi_metrics: &KpiMetrics,
    options: &KpiOptions,
    retention: &Retention,
    schedule: &mut Schedule,
    exported: &mut HashMap<(String, String), ()>,
    periods: &mut FinishedPeriods,
) {
    let stores = &ctx.stores;
    let metrics = &ctx.metrics;
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
        let report = measure_cycle_keeping(&options.prometheus, &requests, now, periods).await;
        tracing::debug!(kpis = due.len(), queries = report.http_queries, elapsed = ?report.elapsed, "KPI cycle");
        let time = Time(now);
        for (i, &k) in due.iter().enumerate() {
            let kpi = &kpis[k];
            let status = next_status(kpi, &report.results[i], retention.get(), &time);
            let timer = metrics
                .reconcile_duration
                .with_label_values(&[CONTROLLER])
                .start_timer();
            let written = shell::write_status(ctx, CONTROLLER, kpi, &status).await;
            timer.observe_duration();
            match written {
                Ok(_) => {
                    metrics
                        .reconciles
                        .with_label_values(&[CONTROLLER, "ok"])
                        .inc();
                    schedule.done(kpi, started);
                }
                Err(error) => {
                    // Not marked done: retried on the next tick.
                    metrics
                        .reconciles
                        .with_label_values(&[CONTROLLER, "error"])
                        .inc();
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
}

/// The Prometheus Operator's PrometheusRule kind.
pub fn prometheus_rule_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "PrometheusRule",
    ))
}

/// Namespaces holding a PrometheusRule the operator applied (an absent CRD: none). Listed per
/// watched namespace when there are some, so namespaced RBAC is enough.
async fn existing_rule_namespaces(ctx: &Context) -> BTreeSet<String> {
    let params = ListParams::default().labels("app.kubernetes.io/managed-by=cx-conductor");
    let found = super::list_metadata_in(ctx, &prometheus_rule_resource(), &params).await;
    found
        .into_iter()
        .filter(|o| o.metadata.name.as_deref() == Some(RULE_NAME))
        .filter_map(|o| o.metadata.namespace)
        .collect()
}

/// Removes every PrometheusRule the operator applied, when rules are turned off.
pub async fn remove_rules(ctx: &Context) {
    let resource = prometheus_rule_resource();
    for namespace in existing_rule_namespaces(ctx).await {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &namespace, &resource);
        if let Err(error) = shell::delete(ctx, CONTROLLER, &api, RULE_NAME).await {
            tracing::warn!(%namespace, %error, "cannot remove the PrometheusRule");
        }
    }
}

/// How `prometheus` computes an exact increase: `anchored` when it parses a query using it
/// (Prometheus 3.x), the last-value formula when it refuses it as bad data (2.x); `None` when
/// it cannot be asked now (asked again next cycle).
async fn probe_increase(prometheus: &crate::kpi::PrometheusClient) -> Option<Increase> {
    match prometheus
        .query(
            "increase(cx_events_received_total[1m] anchored)",
            k8s_openapi::jiff::Timestamp::now(),
        )
        .await
    {
        Ok(_) => Some(Increase::Anchored),
        Err(KpiError::QueryFailed { error_type, .. }) if error_type == "bad_data" => {
            Some(Increase::Differences)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot ask Prometheus which increase it supports");
            None
        }
    }
}

/// The PrometheusRules applied: one per namespace with KPIs; re-read from the server only when
/// the rules change or a resync period passed, so a steady state costs no request.
#[derive(Default)]
struct RuleTracker {
    namespaces: BTreeSet<String>,
    applied: HashMap<String, (String, Instant)>,
    /// How the Prometheus evaluates an exact increase, once asked.
    increase: Option<Increase>,
}

impl RuleTracker {
    async fn sync(&mut self, ctx: &Context, labels: &BTreeMap<String, String>) {
        let kpis = valid(&ctx.stores.kpis);
        let resource = prometheus_rule_resource();
        let mut wanted = BTreeSet::new();
        // Until Prometheus answers, the form every server evaluates.
        if self.increase.is_none()
            && let Some(kpi) = &ctx.options.kpi
        {
            self.increase = probe_increase(&kpi.prometheus).await;
            if let Some(increase) = self.increase {
                tracing::info!(?increase, "recorded increments use this form");
            }
        }
        let increase = self.increase.unwrap_or(Increase::Differences);
        for rule in prometheus_rules(&kpis, labels, increase) {
            let namespace = rule.metadata.namespace.clone().unwrap_or_default();
            wanted.insert(namespace.clone());
            let Ok(desired) = serde_json::to_value(&rule) else {
                continue;
            };
            let fingerprint = hash(&desired.to_string());
            let fresh = self
                .applied
                .get(&namespace)
                .is_some_and(|(h, at)| *h == fingerprint && at.elapsed() < ctx.options.resync);
            if fresh {
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), &namespace, &resource);
            let observed = match api.get_opt(RULE_NAME).await {
                Ok(o) => o.and_then(|o| serde_json::to_value(o).ok()),
                Err(error) => {
                    tracing::warn!(%namespace, %error, "cannot read the PrometheusRule");
                    continue;
                }
            };
            match shell::apply_all(ctx, CONTROLLER, &[(desired, observed)]).await {
                Ok(()) => {
                    self.applied
                        .insert(namespace.clone(), (fingerprint, Instant::now()));
                    self.namespaces.insert(namespace);
                }
                Err(error) => {
                    tracing::warn!(%namespace, %error, "cannot apply the PrometheusRule")
                }
            }
        }
        // The last KPI of a namespace went: so does its rule.
        for namespace in self
            .namespaces
            .difference(&wanted)
            .cloned()
            .collect::<Vec<_>>()
        {
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), &namespace, &resource);
            match shell::delete(ctx, CONTROLLER, &api, RULE_NAME).await {
                Ok(()) => {
                    self.namespaces.remove(&namespace);
                    self.applied.remove(&namespace);
                }
                Err(error) => {
                    tracing::warn!(%namespace, %error, "cannot remove the PrometheusRule")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kpi(yaml: &str) -> ExperienceKPI {
        serde_yaml::from_str(yaml).expect("a KPI")
    }

    const KPI: &str = r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: {name: nps, namespace: shop, generation: 3}
spec:
  indicator: {builtin: nps}
  objective: {target: 40, direction: atLeast}
  window: 7d
"#;

    #[test]
    fn a_kpi_without_prometheus_says_why_and_names_the_chart_value() {
        let now = Time(Timestamp::from_second(1_800_000_000).unwrap());
        let status = not_configured_status(&kpi(KPI), &now);
        assert_eq!(status.state, Some(KpiState::Unknown));
        assert_eq!(status.observed_generation, Some(3));
        let ready = &status.conditions[0];
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_str()
            ),
            ("Ready", "False", "PrometheusNotConfigured")
        );
        assert!(
            ready.message.contains("kpis.prometheusUrl"),
            "{}",
            ready.message
        );
        // Computed again later from its own status: identical, so nothing is rewritten.
        let mut again = kpi(KPI);
        again.status = Some(status.clone());
        let later = Time(Timestamp::from_second(1_800_000_600).unwrap());
        assert_eq!(not_configured_status(&again, &later), status);
    }

    /// A theme KPI naming a theme its touchpoints' journeys do not declare: the definition is at
    /// fault (QueryValid=False, ThemeNotDeclared, naming the themes that are counted), resolved
    /// from the same world the operator keeps.
    #[test]
    fn the_increments_recorded_condition_names_the_cycle_counted_from_raw_counters() {
        let sources = |current, previous| CountSources { current, previous };
        let recorded = counted_from(sources(CountSource::Recorded, CountSource::Recorded));
        assert_eq!(
            (recorded.status, recorded.reason.as_str()),
            (true, "Recorded")
        );
        let new_rules = counted_from(sources(CountSource::Recorded, CountSource::PartlyRecorded));
        assert_eq!(
            (new_rules.status, new_rules.reason.as_str()),
            (false, "PartlyRecorded")
        );
        assert!(
            new_rules.message.contains("previous cycle's window"),
            "{}",
            new_rules.message
        );
        let none = counted_from(sources(CountSource::NotRecorded, CountSource::NotRecorded));
        assert_eq!(none.reason, "NotRecorded");
        assert!(
            none.message
                .starts_with("no step of the current window is recorded")
        );
        assert_eq!(
            counted_from(sources(CountSource::CoverageUnknown, CountSource::Recorded)).reason,
            "CoverageUnknown"
        );
    }

    #[test]
    fn a_theme_kpi_naming_an_undeclared_theme_says_so_in_its_conditions() {
        use crate::api::{Channel, CustomerJourney, Touchpoint};
        use crate::core::World;
        use crate::kpi::{QueryScope, compile};
        let channel: Channel = serde_yaml::from_str(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: Channel\n\
             metadata: {name: web, namespace: shop}\nspec: {type: web}\n",
        )
        .expect("a channel");
        let touchpoint: Touchpoint = serde_yaml::from_str(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: Touchpoint\n\
             metadata: {name: checkout, namespace: shop}\n\
             spec: {channel: web, stage: purchase, signals: {surveys: [{metric: nps}]}}\n",
        )
        .expect("a touchpoint");
        let journey: CustomerJourney = serde_yaml::from_str(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: CustomerJourney\n\
             metadata: {name: retail, namespace: shop}\n\
             spec: {stages: [purchase], channelSelector: {}, themes: [{name: delivery, keywords: [corriere]}]}\n",
        )
        .expect("a journey");
        let theme_kpi = kpi(r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: {name: delivery-share, namespace: shop, generation: 1}
spec:
  indicator: {builtin: theme-share, theme: delivry, metric: nps, segment: detractor}
  objective: {target: 20, direction: atMost}
  window: 7d
"#);
        let (channels, touchpoints, journeys) = ([channel], [touchpoint], [journey]);
        let kpis = [theme_kpi.clone()];
        let world = World::new(&channels, &touchpoints, &kpis, &journeys);
        let window = WindowSpec::parse("7d").expect("window");
        let now = Time(Timestamp::from_second(1_800_000_000).unwrap());
        let measured = compile(
            &theme_kpi.spec,
            &QueryScope::resolve(&world, 0),
            &window,
            now.0,
            crate::kpi::promql::Counting::Raw,
        )
        .map(|_| unreachable!("the theme is not counted"));
        let status = next_status(&theme_kpi, &measured, None, &now);
        assert_eq!(status.state, Some(KpiState::Unknown));
        let query_valid = status
            .conditions
            .iter()
            .find(|c| c.type_ == "QueryValid")
            .expect("QueryValid");
        assert_eq!(
            (query_valid.status.as_str(), query_valid.reason.as_str()),
            ("False", "ThemeNotDeclared")
        );
        assert_eq!(
            query_valid.message,
            "theme delivry is declared by no journey holding the touchpoints in scope (checkout), so no collector counts it; they count delivery"
        );
    }

    /// An outcome-share KPI naming an outcome no touchpoint in its scope declares: the
    /// definition is at fault (QueryValid=False, OutcomeNotDeclared, naming the outcomes that are
    /// declared).
    #[test]
    fn an_outcome_kpi_naming_an_undeclared_outcome_says_so_in_its_conditions() {
        use crate::api::{Channel, Touchpoint};
        use crate::core::World;
        use crate::kpi::{QueryScope, compile};
        let channel: Channel = serde_yaml::from_str(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: Channel\n\
             metadata: {name: app, namespace: shop}\nspec: {type: mobile-app}\n",
        )
        .expect("a channel");
        let touchpoint: Touchpoint = serde_yaml::from_str(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: Touchpoint\n\
             metadata: {name: tracking, namespace: shop}\n\
             spec: {channel: app, stage: delivery, signals: {interactions: \
             {outcomes: [completed], customOutcomes: [failed-attempt]}}}\n",
        )
        .expect("a touchpoint");
        let outcome_kpi = kpi(r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: {name: failed-attempts, namespace: shop, generation: 1}
spec:
  indicator: {builtin: outcome-share, outcomes: [failed-atempt]}
  objective: {target: 5, direction: atMost}
  window: 7d
"#);
        let (channels, touchpoints) = ([channel], [touchpoint]);
        let kpis = [outcome_kpi.clone()];
        let world = World::new(&channels, &touchpoints, &kpis, &[]);
        let window = WindowSpec::parse("7d").expect("window");
        let now = Time(Timestamp::from_second(1_800_000_000).unwrap());
        let measured = compile(
            &outcome_kpi.spec,
            &QueryScope::resolve(&world, 0),
            &window,
            now.0,
            crate::kpi::promql::Counting::Raw,
        )
        .map(|_| unreachable!("the outcome is not declared"));
        let status = next_status(&outcome_kpi, &measured, None, &now);
        assert_eq!(status.state, Some(KpiState::Unknown));
        let query_valid = status
            .conditions
            .iter()
            .find(|c| c.type_ == "QueryValid")
            .expect("QueryValid");
        assert_eq!(
            (query_valid.status.as_str(), query_valid.reason.as_str()),
            ("False", "OutcomeNotDeclared")
        );
        assert_eq!(
            query_valid.message,
            "outcome failed-atempt is declared by no touchpoint in scope (tracking), so no interaction can end with it; they declare completed, failed-attempt"
        );
    }
}
