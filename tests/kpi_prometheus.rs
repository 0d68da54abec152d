//! KPI evaluation against a real Prometheus scraping real collectors: a known stream of events
//! goes in over HTTP, and every builtin indicator must come out as computed by hand from that
//! stream — through the batched cycle and through each KPI's own compiled PromQL.
//!
//! Needs `/usr/bin/prometheus` (Debian package `prometheus`, installed by `scripts/test.sh`).
//! Without it the tests are skipped with a loud message, unless `CI` is set, where they fail.
//!
//! Exactness: the operator counts the answers actually received in a window (no `increase()`
//! extrapolation), so the main test scrapes every collector as its own target (each at its own
//! offset in the scrape interval, as in production) and evaluates at an arbitrary instant, not
//! at a scrape: ratios are asserted to 1e-9 (before the 4-decimal rounding of the status) and
//! sample counts exactly — where `increase()` over the same data counts more answers than were
//! posted (asserted too). The first-response time is a histogram estimate: asserted exactly
//! against Prometheus' interpolation computed by hand, and within one bucket (5 s) of the
//! stream's true p90.

#[path = "support/prometheus.rs"]
mod support;

use std::time::Duration;

use cx_conductor::api::{Channel, CustomerJourney, ExperienceKPI, KpiState, Touchpoint};
use cx_conductor::core::World;
use cx_conductor::core::listening::{theme_sources, themes_of};
use cx_conductor::core::plan::collector_config;
use cx_conductor::kpi::evaluate::{CountSource, CountSources};
use cx_conductor::kpi::promql::{Counting, displayed_queries};
use cx_conductor::kpi::{
    KpiError, KpiRequest, Measurement, PrometheusClient, PrometheusConfig, SampleCount, WindowSpec,
    evaluate, measure_cycle, measure_one, status_changed,
};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use support::{Prometheus, RunningCollector, prometheus_binary};

const CHANNELS: &str = r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: web, namespace: retail }
spec: { type: web, serviceLevels: { firstResponseSeconds: 60 } }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: app, namespace: retail }
spec: { type: mobile-app, serviceLevels: { firstResponseSeconds: 60 } }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: call-centre, namespace: retail }
spec: { type: voice, serviceLevels: { firstResponseSeconds: 25 } }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: chat, namespace: retail }
spec: { type: chat, serviceLevels: { firstResponseSeconds: 60 } }
"#;

const TOUCHPOINTS: &str = r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: Touchpoint
metadata: { name: web-checkout, namespace: retail }
spec:
  channel: web
  stage: purchase
  signals:
    surveys: [{ metric: nps }, { metric: csat, scale: 5 }]
    interactions: { outcomes: [completed, abandoned, error] }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Touchpoint
metadata: { name: app-checkout, namespace: retail }
spec:
  channel: app
  stage: purchase
  signals:
    surveys: [{ metric: csat, scale: 7 }]
    interactions: { outcomes: [completed, abandoned] }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Touchpoint
metadata: { name: call-support, namespace: retail }
spec:
  channel: call-centre
  stage: support
  signals:
    surveys: [{ metric: nps }, { metric: ces }]
    interactions:
      outcomes: [resolved-first-contact, resolved, unresolved, escalated, abandoned]
      timings: [wait]
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Touchpoint
metadata: { name: chat-support, namespace: retail }
spec:
  channel: chat
  stage: support
  signals:
    surveys: [{ metric: ces }]
    interactions:
      outcomes: [resolved-first-contact, resolved, unresolved, escalated]
      timings: [wait]
"#;

/// A KPI per builtin indicator, a custom one, one with too few samples and one scoped to nothing.
/// Windows are long enough to hold everything the test posts.
const KPIS: &str = r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: nps-all, namespace: retail }
spec:
  indicator: { builtin: nps }
  objective: { target: 20, direction: atLeast, warning: 10 }
  window: 1h
  minSamples: 100
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: checkout-csat, namespace: retail }
spec:
  indicator: { builtin: csat }
  scope: { stage: purchase }
  objective: { target: 60, direction: atLeast }
  window: 1h
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: support-ces, namespace: retail }
spec:
  indicator: { builtin: ces }
  scope: { stage: support }
  objective: { target: 5.5, direction: atLeast, warning: 4.5 }
  window: 2h
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: support-fcr, namespace: retail }
spec:
  indicator: { builtin: fcr }
  scope: { stage: support }
  objective: { target: 70, direction: atLeast, warning: 60 }
  window: 1h
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: support-resolution, namespace: retail }
spec:
  indicator: { builtin: resolution-rate }
  scope: { stage: support }
  objective: { target: 80, direction: atLeast }
  window: 1h
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: checkout-abandonment, namespace: retail }
spec:
  indicator: { builtin: abandonment-rate }
  scope: { stage: purchase }
  objective: { target: 20, direction: atMost, warning: 25 }
  window: 1h
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: care-first-response, namespace: retail }
spec:
  indicator: { builtin: first-response-time }
  scope: { channels: [call-centre, chat] }
  objective: { target: 90, direction: atMost, warning: 120 }
  window: 1h
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: care-service-level, namespace: retail }
spec:
  indicator: { builtin: service-level }
  scope: { stage: support }
  objective: { target: 80, direction: atLeast, warning: 60 }
  window: 1h
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: checkout-errors, namespace: retail }
spec:
  indicator:
    promql: 100 * sum((last_over_time(cx_interactions_total{namespace="retail", stage="purchase", outcome="error"}[$window]) - cx_interactions_total{namespace="retail", stage="purchase", outcome="error"} offset $window) or last_over_time(cx_interactions_total{namespace="retail", stage="purchase", outcome="error"}[$window])) / sum((last_over_time(cx_interactions_total{namespace="retail", stage="purchase"}[$window]) - cx_interactions_total{namespace="retail", stage="purchase"} offset $window) or last_over_time(cx_interactions_total{namespace="retail", stage="purchase"}[$window]))
    samplesPromql: sum((last_over_time(cx_interactions_total{namespace="retail", stage="purchase"}[$window]) - cx_interactions_total{namespace="retail", stage="purchase"} offset $window) or last_over_time(cx_interactions_total{namespace="retail", stage="purchase"}[$window]))
  objective: { target: 1, direction: atMost, warning: 2 }
  window: 1h
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: call-nps-few, namespace: retail }
spec:
  indicator: { builtin: nps }
  scope: { channels: [call-centre] }
  objective: { target: 20, direction: atLeast }
  window: 1h
  minSamples: 1000
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: delivery-nps, namespace: retail }
spec:
  indicator: { builtin: nps }
  scope: { stage: delivery }
  objective: { target: 20, direction: atLeast }
  window: 1h
"#;

/// What each KPI must measure: (name, value, samples, state).
const EXPECTED: [(&str, f64, f64, KpiState); 10] = [
    // NPS over web-checkout and call-support: 120 answers, 50 promoters, 32 detractors.
    (
        "nps-all",
        100.0 * (50.0 - 32.0) / 120.0,
        120.0,
        KpiState::AtRisk,
    ),
    // CSAT: web 30 of 40 in 4-5 (5 points), app 15 of 30 in 6-7 (7 points).
    ("checkout-csat", 100.0 * 45.0 / 70.0, 70.0, KpiState::Met),
    // CES: (190 + 100) / 60.
    ("support-ces", 290.0 / 60.0, 60.0, KpiState::AtRisk),
    // FCR: 50 first-contact resolutions of 80 contacts (the 10 abandoned calls are not contacts).
    ("support-fcr", 100.0 * 50.0 / 80.0, 80.0, KpiState::AtRisk),
    (
        "support-resolution",
        100.0 * 65.0 / 80.0,
        80.0,
        KpiState::Met,
    ),
    // Abandonment: 30 of 150 checkout interactions.
    ("checkout-abandonment", 20.0, 150.0, KpiState::Met),
    // p90 of the 80 answered contacts' waits (the 10 abandoned calls are not answered): rank 72
    // falls in (50, 55] holding cumulative 70 → 75: 50 + 5 × 2/5.
    ("care-first-response", 52.0, 80.0, KpiState::Met),
    // Service level: 36 calls answered within 25 s and 25 chats within 60 s, of 90 contacts
    // offered. The 4 calls abandoned after 10 s waited less than 25 s but were not answered:
    // they count as offered, not as answered in time (65 of 90 would count them).
    (
        "care-service-level",
        100.0 * 61.0 / 90.0,
        90.0,
        KpiState::AtRisk,
    ),
    // Custom PromQL: 5 errors of 150 checkout interactions, counted exactly as the builtins do
    // (with increase() it reads a few percent high here: each target extrapolated by its own
    // factor).
    (
        "checkout-errors",
        100.0 * 5.0 / 150.0,
        150.0,
        KpiState::Breached,
    ),
    // 60 answers, fewer than minSamples 1000: no verdict, but the value is reported.
    ("call-nps-few", 0.0, 60.0, KpiState::InsufficientData),
];

fn documents<T: DeserializeOwned>(yaml: &str) -> Vec<T> {
    yaml.split("\n---\n")
        .map(|doc| serde_yaml::from_str(doc).expect("valid test manifest"))
        .collect()
}

fn survey(metric: &str, mix: &[(u8, usize)]) -> Vec<String> {
    mix.iter()
        .flat_map(|&(score, count)| {
            std::iter::repeat_n(
                format!(r#"{{"type":"survey","metric":"{metric}","score":{score}}}"#),
                count,
            )
        })
        .collect()
}

fn interactions(mix: &[(&str, usize, Option<f64>)]) -> Vec<String> {
    mix.iter()
        .flat_map(|&(outcome, count, wait)| {
            let wait = wait
                .map(|w| format!(r#","waitSeconds":{w}"#))
                .unwrap_or_default();
            std::iter::repeat_n(
                format!(r#"{{"type":"interaction","outcome":"{outcome}"{wait}}}"#),
                count,
            )
        })
        .collect()
}

/// The stream posted to each touchpoint's collector.
fn stream(touchpoint: &str) -> Vec<String> {
    match touchpoint {
        "web-checkout" => [
            // 30 promoters, 18 passives, 12 detractors.
            survey(
                "nps",
                &[(10, 18), (9, 12), (8, 10), (7, 8), (6, 5), (3, 4), (0, 3)],
            ),
            survey("csat", &[(5, 20), (4, 10), (3, 5), (2, 3), (1, 2)]),
            interactions(&[
                ("completed", 70, None),
                ("abandoned", 25, None),
                ("error", 5, None),
            ]),
        ]
        .concat(),
        "app-checkout" => [
            survey(
                "csat",
                &[(7, 10), (6, 5), (5, 5), (4, 3), (3, 2), (2, 3), (1, 2)],
            ),
            interactions(&[("completed", 45, None), ("abandoned", 5, None)]),
        ]
        .concat(),
        "call-support" => [
            // 20 promoters, 20 passives, 20 detractors.
            survey(
                "nps",
                &[(10, 8), (9, 12), (8, 12), (7, 8), (5, 10), (2, 6), (1, 4)],
            ),
            // 40 answers summing to 190.
            survey("ces", &[(7, 10), (6, 10), (5, 5), (4, 5), (2, 5), (1, 5)]),
            // Waits: 36 within the 25 s promise.
            interactions(&[
                ("resolved-first-contact", 12, Some(3.0)),
                ("resolved-first-contact", 12, Some(12.0)),
                ("resolved-first-contact", 6, Some(22.0)),
                ("resolved", 6, Some(22.0)),
                ("resolved", 4, Some(28.0)),
                ("unresolved", 6, Some(28.0)),
                ("escalated", 2, Some(28.0)),
                ("escalated", 2, Some(50.0)),
                ("abandoned", 4, Some(10.0)),
                ("abandoned", 6, Some(100.0)),
            ]),
        ]
        .concat(),
        "chat-support" => [
            // 20 answers summing to 100.
            survey("ces", &[(7, 5), (5, 10), (3, 5)]),
            // Waits: 25 within the 60 s promise.
            interactions(&[
                ("resolved-first-contact", 10, Some(8.0)),
                ("resolved-first-contact", 10, Some(40.0)),
                ("resolved", 5, Some(55.0)),
                ("unresolved", 3, Some(200.0)),
                ("escalated", 2, Some(200.0)),
            ]),
        ]
        .concat(),
        other => panic!("no stream for {other}"),
    }
}

/// Collectors for the test touchpoints and Prometheus scraping each of them every second, with
/// the stream posted and fully scraped. `t` is half a second after the last scrape.
struct Stack {
    channels: Vec<Channel>,
    touchpoints: Vec<Touchpoint>,
    kpis: Vec<ExperienceKPI>,
    prometheus: Prometheus,
    t: Timestamp,
    _collectors: Vec<RunningCollector>,
}

async fn stack() -> Option<Stack> {
    let binary = prometheus_binary()?;
    let channels: Vec<Channel> = documents(CHANNELS);
    let touchpoints: Vec<Touchpoint> = documents(TOUCHPOINTS);
    let kpis: Vec<ExperienceKPI> = documents(KPIS);
    let mut collectors = Vec::new();
    for touchpoint in &touchpoints {
        let channel = channels
            .iter()
            .find(|c| c.name_any() == touchpoint.spec.channel);
        collectors.push(RunningCollector::start(&collector_config(touchpoint, channel)).await);
    }
    // One target per collector, each scraped at its own offset, as in production.
    let targets: Vec<_> = collectors.iter().map(|c| c.addr).collect();
    let prometheus = Prometheus::start(binary, &targets, "1s").await;
    // The first scrape, at zero, before any event (no extrapolation before the first sample).
    prometheus
        .wait_for_value(
            "count(cx_events_received_total)",
            touchpoints.len() as f64,
            Duration::from_secs(30),
        )
        .await;
    let mut total = 0;
    for (touchpoint, collector) in touchpoints.iter().zip(&collectors) {
        let events = stream(&touchpoint.name_any());
        total += events.len();
        collector.post(&events).await;
    }
    prometheus
        .wait_for_value(
            "sum(cx_events_received_total)",
            total as f64,
            Duration::from_secs(30),
        )
        .await;
    // Evaluated half a scrape interval after the last scrape: `increase()` would extrapolate.
    let t = prometheus
        .last_scrape()
        .await
        .checked_add(Duration::from_millis(500))
        .expect("timestamp");
    tokio::time::sleep(Duration::from_millis(600)).await;
    Some(Stack {
        channels,
        touchpoints,
        kpis,
        prometheus,
        t,
        _collectors: collectors,
    })
}

impl Stack {
    fn requests(&self) -> Vec<KpiRequest<'_>> {
        let journeys: &[CustomerJourney] = &[];
        let world = World::new(&self.channels, &self.touchpoints, &self.kpis, journeys);
        KpiRequest::all(&world)
    }

    fn index(&self, name: &str) -> usize {
        self.kpis
            .iter()
            .position(|k| k.name_any() == name)
            .unwrap_or_else(|| panic!("no KPI {name}"))
    }
}

/// One cycle over every KPI of the stack, at the stack's evaluation time.
async fn results(stack: &Stack) -> Vec<Result<Measurement, KpiError>> {
    let requests = stack.requests();
    measure_cycle(&stack.prometheus.client, &requests, stack.t)
        .await
        .results
}

fn assert_measured(name: &str, measured: &Result<Measurement, KpiError>, value: f64, samples: f64) {
    let m = measured.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = m.value.unwrap_or_else(|| panic!("{name}: no value"));
    assert!(
        (got - value).abs() < 1e-9,
        "{name}: value {got}, expected {value}"
    );
    assert_eq!(m.samples, SampleCount::Counted(samples), "{name}: samples");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_and_custom_indicators_equal_the_hand_computed_values() {
    let Some(stack) = stack().await else { return };
    let requests = stack.requests();
    let report = measure_cycle(&stack.prometheus.client, &requests, stack.t).await;

    for (name, value, samples, state) in EXPECTED {
        let i = stack.index(name);
        assert_measured(name, &report.results[i], value, samples);
        // The same numbers from the KPI's own compiled PromQL, evaluated by Prometheus.
        let compiled = report.compiled[i].as_ref().expect("compiled");
        let alone = measure_one(&stack.prometheus.client, compiled, stack.t).await;
        assert_measured(&format!("{name} (own PromQL)"), &alone, value, samples);
        // What `check` prints for the raw counters is what Prometheus was asked (no recorded
        // increments here: tests/kpi_history.rs has them): pasted, it gives the same number.
        let window = WindowSpec::parse(&stack.kpis[i].spec.window).expect("window");
        let shown = displayed_queries(
            &stack.kpis[i].spec,
            &requests[i].scope,
            &window,
            Counting::Raw,
        )
        .expect("displayed");
        assert_eq!(shown.value, compiled.value, "{name}");
        assert_eq!(shown.samples, compiled.samples, "{name}");
        if compiled.indicator.is_some() {
            assert_eq!(
                shown.previous_value.as_ref(),
                Some(&compiled.previous.value)
            );
        }
        let spec = &stack.kpis[i].spec;
        let evaluation = evaluate(&spec.objective, spec.min_samples, None, &report.results[i]);
        assert_eq!(evaluation.state, state, "{name}: {}", evaluation.message);
    }

    // The histogram quantile is an estimate: within one bucket (5 s) of the true p90 of the
    // answered contacts' waits (55 s).
    let mut waits: Vec<f64> = ["call-support", "chat-support"]
        .iter()
        .flat_map(|t| stream(t))
        .filter_map(|e| {
            let event = serde_json::from_str::<serde_json::Value>(&e).ok()?;
            (event["outcome"] != "abandoned")
                .then(|| event["waitSeconds"].as_f64())
                .flatten()
        })
        .collect();
    waits.sort_by(f64::total_cmp);
    assert_eq!(waits.len(), 80);
    let true_p90 = waits[(0.9 * waits.len() as f64).ceil() as usize - 1];
    assert_eq!(true_p90, 55.0);
    assert!((52.0_f64 - true_p90).abs() <= 5.0, "true p90 {true_p90}");

    // What `increase()` would have counted over the same data: more answers than were posted
    // (extrapolated to the window's end), which let minSamples pass too early.
    let extrapolated = stack
        .prometheus
        .number(
            r#"sum(increase(cx_survey_responses_total{namespace="retail", metric="nps"}[1h]))"#,
            Some(stack.t),
        )
        .await
        .expect("a number");
    assert!(extrapolated > 120.0, "increase() counted {extrapolated}");

    // A scope without a touchpoint that asks nps is Unknown with a reason, never a query over
    // everything.
    let empty = &report.results[stack.index("delivery-nps")];
    let error = empty.as_ref().expect_err("empty scope");
    assert_eq!(error.reason(), "ScopeEmpty");
    let evaluation = evaluate(
        &stack.kpis[stack.index("delivery-nps")].spec.objective,
        30,
        None,
        empty,
    );
    assert_eq!(evaluation.state, KpiState::Unknown);

    // 8 builtin KPIs over 4 families and 2 window lengths share 5 queries (each with its
    // previous cycle), plus one asking how much of each window is recorded; the custom one is 2
    // (now, and at the end of its previous window).
    assert_eq!(report.http_queries, 5 + 1 + 2, "{:?}", report.compiled);
    // Nothing was posted an hour earlier: no previous cycle yet.
    let nps = report.results[stack.index("nps-all")].as_ref().expect("ok");
    assert_eq!(nps.previous.map(|p| p.samples), Some(SampleCount::NoSeries));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_new_feedback_writes_nothing_and_an_outage_keeps_the_last_measurement() {
    let Some(mut stack) = stack().await else {
        return;
    };
    let t = stack.t;
    let i = stack.index("nps-all");
    let spec = stack.kpis[i].spec.clone();
    let nps = 15.0;

    // First evaluation: nothing an hour earlier, so no previous cycle.
    let first = evaluate(
        &spec.objective,
        spec.min_samples,
        None,
        &results(&stack).await[i],
    )
    .to_status(None);
    assert_eq!((first.value, first.previous_value), (Some(nps), None));
    assert_eq!((first.gap, first.gap_change), (Some(5.0), None));
    assert_eq!(first.samples, Some(120));

    // An interval later, no new feedback: the same status, so no write.
    let later = t.checked_add(Duration::from_secs(2)).expect("timestamp");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = stack.requests();
    let again = measure_cycle(&stack.prometheus.client, &requests, later).await;
    let second = evaluate(
        &spec.objective,
        spec.min_samples,
        Some(&first),
        &again.results[i],
    )
    .to_status(Some(&first));
    assert_eq!(second, first);
    assert!(!status_changed(Some(&first), &second));

    // Prometheus goes down: Unknown, with the reason, and the last measurement kept.
    stack.prometheus.stop();
    let down = results(&stack).await;
    for (k, result) in down.iter().enumerate() {
        let error = result.as_ref().expect_err("Prometheus is down");
        if stack.kpis[k].name_any() != "delivery-nps" {
            assert_eq!(error.reason(), "PrometheusUnavailable", "{error}");
            assert!(
                error
                    .to_string()
                    .to_lowercase()
                    .contains("connection refused"),
                "{error}"
            );
        }
    }
    let during = evaluate(&spec.objective, spec.min_samples, Some(&second), &down[i])
        .to_status(Some(&second));
    assert_eq!(during.state, Some(KpiState::Unknown));
    assert_eq!(
        (during.value, during.gap, during.samples),
        (Some(nps), Some(5.0), Some(120))
    );

    // It comes back with its storage: the KPI recovers, as it was.
    stack.prometheus.restart().await;
    let prometheus = &stack.prometheus;
    support::wait_until(
        "the data back after the restart",
        Duration::from_secs(30),
        || async {
            prometheus
                .number("sum(cx_events_received_total)", Some(t))
                .await
                .filter(|v| *v > 0.0)
        },
    )
    .await;
    let after = evaluate(
        &spec.objective,
        spec.min_samples,
        Some(&during),
        &results(&stack).await[i],
    );
    assert_eq!(after.state, KpiState::AtRisk, "{}", after.message);
    assert_eq!((after.value, after.previous_value), (Some(nps), None));
}

/// The previous cycle is the previous window: answers posted one window apart land in the
/// current and the previous window, and previousValue, gap and gapChange are theirs — measured
/// at one instant, through the batched cycle, the KPI's own PromQL and a custom query alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_value_is_the_previous_window() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let channels: Vec<Channel> = documents(CHANNELS);
    let touchpoints: Vec<Touchpoint> = documents(TOUCHPOINTS);
    let call = touchpoints
        .iter()
        .find(|t| t.name_any() == "call-support")
        .expect("call-support");
    let channel = channels.iter().find(|c| c.name_any() == "call-centre");
    let collector = RunningCollector::start(&collector_config(call, channel)).await;
    let prometheus = Prometheus::start(binary, &[collector.addr], "1s").await;
    let total = "sum(cx_survey_responses_total)";
    prometheus
        .wait_for_value(
            "count(cx_events_received_total)",
            1.0,
            Duration::from_secs(30),
        )
        .await;
    // Window A: 10 promoters, 10 detractors (NPS 0). Window B: 15 promoters, 5 detractors of
    // 25 answers (NPS 40).
    let a = survey("nps", &[(10, 10), (2, 10)]);
    let b = survey("nps", &[(9, 15), (8, 5), (0, 5)]);
    collector.post(&a).await;
    prometheus
        .wait_for_value(total, 20.0, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    collector.post(&b).await;
    prometheus
        .wait_for_value(total, 45.0, Duration::from_secs(30))
        .await;
    let seen = prometheus.last_scrape().await;
    // An instant T with the window (T-4s, T] holding B only and (T-8s, T-4s] holding A only,
    // checked on the stored samples themselves.
    let window = Duration::from_secs(4);
    let mut chosen = None;
    for k in 0..16 {
        let at = |back: Duration| {
            seen.checked_add(Duration::from_millis(250 * k))
                .and_then(|t| t.checked_sub(back))
                .expect("timestamp")
        };
        let values = [
            prometheus.number(total, Some(at(Duration::ZERO))).await,
            prometheus.number(total, Some(at(window))).await,
            prometheus.number(total, Some(at(2 * window))).await,
        ];
        if values == [Some(45.0), Some(20.0), Some(0.0)] {
            chosen = Some(at(Duration::ZERO));
            break;
        }
    }
    let t = chosen.expect("an instant one window after A and two after the zero scrape");
    support::wait_until("T in the past", Duration::from_secs(10), || async {
        (Timestamp::now() > t).then_some(())
    })
    .await;

    let kpis: Vec<ExperienceKPI> = documents(
        r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: call-nps, namespace: retail }
spec:
  indicator: { builtin: nps }
  objective: { target: 30, direction: atLeast }
  window: 4s
  minSamples: 20
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: call-nps-custom, namespace: retail }
spec:
  indicator:
    promql: 100 * (sum(increase(cx_survey_responses_total{score=~"9|10"}[$window])) - sum(increase(cx_survey_responses_total{score=~"[0-6]"}[$window]))) / sum(increase(cx_survey_responses_total[$window]))
    samplesPromql: sum(increase(cx_survey_responses_total[$window]))
  objective: { target: 30, direction: atLeast }
  window: 4s
  minSamples: 20
"#,
    );
    let journeys: &[CustomerJourney] = &[];
    let world = World::new(&channels, std::slice::from_ref(call), &kpis, journeys);
    let requests = KpiRequest::all(&world);
    let report = measure_cycle(&prometheus.client, &requests, t).await;
    assert_eq!(
        report.http_queries,
        1 + 1 + 2,
        "one family query, one for the recorded steps, two custom"
    );

    let builtin = report.results[0].as_ref().expect("measured");
    assert_eq!(builtin.value, Some(40.0));
    assert_eq!(builtin.samples, SampleCount::Counted(25.0));
    let previous = builtin.previous.expect("previous cycle");
    assert_eq!(previous.value, Some(0.0));
    assert_eq!(previous.samples, SampleCount::Counted(20.0));
    // The KPI's own PromQL (current and previous queries at T) says the same.
    let compiled = report.compiled[0].as_ref().expect("compiled");
    assert!(
        compiled.previous.value.contains("[4s] offset 4s"),
        "{}",
        compiled.previous.value
    );
    let alone = measure_one(&prometheus.client, compiled, t)
        .await
        .expect("measured");
    // No recording rules here: the cycle counted from the raw counters, and says so.
    assert_eq!(
        builtin.sources,
        Some(CountSources {
            current: CountSource::NotRecorded,
            previous: CountSource::NotRecorded,
        })
    );
    assert_eq!(
        alone,
        Measurement {
            sources: None,
            ..*builtin
        }
    );

    let evaluation = evaluate(&kpis[0].spec.objective, 20, None, &report.results[0]);
    assert_eq!(
        (
            evaluation.value,
            evaluation.previous_value,
            evaluation.gap,
            evaluation.gap_change,
            evaluation.state
        ),
        (
            Some(40.0),
            Some(0.0),
            Some(-10.0),
            Some(-40.0),
            KpiState::Met
        )
    );

    // The custom query (increase() is the user's choice: evaluated at the last sample of each
    // window, its extrapolation only reaches back to the zero point) — its previous cycle is
    // evaluated at T - 4s, at the end of the previous window.
    let custom = report.results[1].as_ref().expect("measured");
    let custom_previous = custom.previous.expect("previous cycle");
    assert!(
        custom.value.is_some() && custom_previous.value.is_some(),
        "{custom:?}"
    );
    let custom_compiled = report.compiled[1].as_ref().expect("compiled");
    assert_eq!(custom_compiled.previous.evaluated_before, window);
    let custom_alone = measure_one(&prometheus.client, custom_compiled, t)
        .await
        .expect("measured");
    // Compared as text: a window with nothing counted reads NaN (0/0), and NaN != NaN.
    assert_eq!(format!("{custom_alone:?}"), format!("{custom:?}"));
}

/// A collector restarted in place resets its counters: the exact count falls back to
/// `increase()` for the series that reset (and only for them), so no answer is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_reset_loses_no_answer() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let channels: Vec<Channel> = documents(CHANNELS);
    let touchpoints: Vec<Touchpoint> = documents(TOUCHPOINTS);
    let call = touchpoints
        .iter()
        .find(|t| t.name_any() == "call-support")
        .expect("call-support");
    let channel = channels.iter().find(|c| c.name_any() == "call-centre");
    let config = collector_config(call, channel);
    let first = RunningCollector::start(&config).await;
    let addr = first.addr;
    let prometheus = Prometheus::start(binary, &[addr], "1s").await;
    let received = "sum(cx_events_received_total)";
    prometheus
        .wait_for_value(
            "count(cx_events_received_total)",
            1.0,
            Duration::from_secs(30),
        )
        .await;
    // 10 promoters, then a restart, then 5 detractors: the promoters' counter drops to 0.
    first.post(&survey("nps", &[(10, 10)])).await;
    prometheus
        .wait_for_value(received, 10.0, Duration::from_secs(30))
        .await;
    drop(first);
    let second = RunningCollector::start_at(&config, addr).await;
    second.post(&survey("nps", &[(0, 5)])).await;
    prometheus
        .wait_for_value(received, 5.0, Duration::from_secs(30))
        .await;
    let promoters = r#"cx_survey_responses_total{metric="nps", score="10"}"#;
    let resets = prometheus
        .number(&format!("sum(resets({promoters}[1h]))"), None)
        .await;
    assert_eq!(
        resets,
        Some(1.0),
        "the restart reset the promoters' counter"
    );

    // At the last scrape nothing is extrapolated after it, and the reset series started at
    // zero, so its increase() is exact too: 10 promoters and 5 detractors.
    let t = prometheus.last_scrape().await;
    let kpis: Vec<ExperienceKPI> = documents(
        r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: call-nps, namespace: retail }
spec:
  indicator: { builtin: nps }
  objective: { target: 30, direction: atLeast }
  window: 1h
  minSamples: 15
"#,
    );
    let journeys: &[CustomerJourney] = &[];
    let world = World::new(&channels, std::slice::from_ref(call), &kpis, journeys);
    let report = measure_cycle(&prometheus.client, &KpiRequest::all(&world), t).await;
    assert_measured("call-nps", &report.results[0], 100.0 * 5.0 / 15.0, 15.0);
    // Without the fallback, the reset series would count 0 promoters.
    let naive = prometheus
        .number(
            &format!("sum(last_over_time({promoters}[1h]) - {promoters} offset 1h or last_over_time({promoters}[1h]))"),
            Some(t),
        )
        .await;
    assert_eq!(naive, Some(0.0));
    drop(second);
}

/// A custom query returning several series, or nothing, gets a reason naming the field and the
/// problem (a string is refused before it is sent: `invalid_custom_promql_names_the_problem`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_queries_returning_several_series_or_nothing_are_named() {
    let Some(stack) = stack().await else { return };
    let kpis: Vec<ExperienceKPI> = documents(
        r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: by-touchpoint, namespace: retail }
spec:
  indicator:
    promql: sum by (touchpoint) (increase(cx_interactions_total[$window]))
    samplesPromql: sum(increase(cx_interactions_total[$window]))
  objective: { target: 1, direction: atMost }
  window: 1h
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: samples-by-outcome, namespace: retail }
spec:
  indicator:
    promql: vector(1)
    samplesPromql: sum by (outcome) (cx_interactions_total)
  objective: { target: 1, direction: atMost }
  window: 1h
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: nothing, namespace: retail }
spec:
  indicator:
    promql: sum(cx_no_such_metric)
    samplesPromql: scalar(sum(cx_events_received_total))
  objective: { target: 1, direction: atMost }
  window: 1h
"#,
    );
    let journeys: &[CustomerJourney] = &[];
    let world = World::new(&stack.channels, &stack.touchpoints, &kpis, journeys);
    let requests = KpiRequest::all(&world);
    let report = measure_cycle(&stack.prometheus.client, &requests, stack.t).await;

    let several = report.results[0].as_ref().expect_err("several series");
    assert_eq!(several.reason(), "QueryReturnsSeveralSeries");
    assert!(several.is_invalid_spec());
    assert!(
        several
            .to_string()
            .starts_with("promql returned 4 series ({touchpoint=\"app-checkout\"}"),
        "{several}"
    );
    let samples = report.results[1]
        .as_ref()
        .expect_err("several samples series");
    assert!(
        samples.to_string().starts_with("samplesPromql returned "),
        "{samples}"
    );
    let evaluation = evaluate(&kpis[2].spec.objective, 30, None, &report.results[2]);
    assert_eq!(
        (evaluation.state, evaluation.reason),
        (KpiState::Unknown, "NoData")
    );
    assert!(
        evaluation.message.contains("no series"),
        "{}",
        evaluation.message
    );
    // The scalar samples query was wrapped and counted.
    assert_eq!(evaluation.samples, Some(stack_events()));
}

/// Events posted by [`stack`].
fn stack_events() -> i64 {
    [
        "web-checkout",
        "app-checkout",
        "call-support",
        "chat-support",
    ]
    .iter()
    .map(|t| stream(t).len() as i64)
    .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_errors_are_reasons_not_panics() {
    let Some(stack) = stack().await else { return };
    let client = &stack.prometheus.client;
    // Its retention (the harness starts it with 1d), which a KPI's window is checked against.
    assert_eq!(
        client.retention().await,
        Ok(Some(Duration::from_secs(86_400)))
    );
    // Prometheus' own error message comes through.
    let error = client
        .query("sum(rate(x[5m])", stack.t)
        .await
        .expect_err("invalid PromQL");
    assert_eq!(error.reason(), "QueryFailed");
    assert!(error.to_string().contains("bad_data"), "{error}");
    // Several series are not one number.
    let error = client
        .query_number("cx_events_received_total", stack.t)
        .await
        .expect_err("four series");
    assert!(error.to_string().contains("returned 4 series"), "{error}");
    // A matrix is not a number.
    let error = client
        .query("cx_events_received_total[1m]", stack.t)
        .await
        .expect_err("matrix");
    assert_eq!(error.reason(), "UnexpectedResult");
    // An HTTP error without a Prometheus body (a wrong path prefix).
    let wrong = PrometheusClient::new(PrometheusConfig::new(format!(
        "{}/nope",
        stack.prometheus.url
    )))
    .expect("client");
    let error = wrong.query("1", stack.t).await.expect_err("404");
    assert!(
        matches!(error, KpiError::Http { status: 404, .. }),
        "{error}"
    );
}

/// Test-only TLS material for 127.0.0.1, valid until 2126: a CA, and a server certificate it
/// signed. Nothing else trusts this CA.
const TEST_TLS: support::Tls = support::Tls {
    ca: "-----BEGIN CERTIFICATE-----\nMIIBpTCCAUugAwIBAgIUNJbYvPPSFsT5RxJPu8uOqld6IwAwCgYIKoZIzj0EAwIw\nHzEdMBsGA1UEAwwUY3gtY29uZHVjdG9yIHRlc3QgQ0EwIBcNMjYxMTIyMTQ0MTEw\nWhgPMjEyNjEwMjkxNDQxMTBaMB8xHTAbBgNVBAMMFGN4LWNvbmR1Y3RvciB0ZXN0\nIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEcGmU7d8RNpTguHh+rf2FZDWJ\nmEAHtk6GOiNaDVRg2/GgpnWn3eb8lKmPwLY3s0+/u0Bf7hzzmpAA+IACGnB3XaNj\nMGEwHQYDVR0OBBYEFAffNBlHt1X4d6ql1jAMcdPpQ6F8MB8GA1UdIwQYMBaAFAff\nNBlHt1X4d6ql1jAMcdPpQ6F8MA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQD\nAgEGMAoGCCqGSM49BAMCA0gAMEUCIQCAjP1GgiM+CcRgN3Uo1tcz6pBAr38ZH33D\nAISQswg+BQIgOxtitUXkfD6SUpzVrTRTUx1LnugySH9U2sMwXv2sd3I=\n-----END CERTIFICATE-----\n",
    certificate: "-----BEGIN CERTIFICATE-----\nMIIBxzCCAW2gAwIBAgIUHVCUNEZ/Ud8ZAacYKx9CCBE1RH4wCgYIKoZIzj0EAwIw\nHzEdMBsGA1UEAwwUY3gtY29uZHVjdG9yIHRlc3QgQ0EwIBcNMjYxMTIyMTQ0MTEw\nWhgPMjEyNjEwMjkxNDQxMTBaMBQxEjAQBgNVBAMMCTEyNy4wLjAuMTBZMBMGByqG\nSM49AgEGCCqGSM49AwEHA0IABCvNjkTNjm+1aZdUdZVGUACmB98qWrEUeOxDUFA/\nA/i8LjMUoRz81HwEt0qBAzE8WrAcnQOOd6wzbGqrY8qnFGejgY8wgYwwGgYDVR0R\nBBMwEYcEfwAAAYIJbG9jYWxob3N0MAkGA1UdEwQCMAAwDgYDVR0PAQH/BAQDAgeA\nMBMGA1UdJQQMMAoGCCsGAQUFBwMBMB0GA1UdDgQWBBQFdb3VYrV/BlUw7DotM5sk\nekRKfTAfBgNVHSMEGDAWgBQH3zQZR7dV+HeqpdYwDHHT6UOhfDAKBggqhkjOPQQD\nAgNIADBFAiEAucgwCwyPbYN9WdjJ/XOkwseGuV443UDtJf5muGeJu70CIB9MbUUU\nnk+6gaWOfcMnrvpfJQmJU7HYif3oVWLbsPk5\n-----END CERTIFICATE-----\n",
    key: "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg5p8jBk9dLpiMcxA1\nSqEBEHVOb7tAHcX2+Ixe2wOwXayhRANCAAQrzY5EzY5vtWmXVHWVRlAApgffKlqx\nFHjsQ1BQPwP4vC4zFKEc/NR8BLdKgQMxPFqwHJ0DjnesM2xqq2PKpxRn\n-----END PRIVATE KEY-----\n",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_an_extra_ca_certificate() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let prometheus = Prometheus::start_with(binary, &[], "1s", Some(&TEST_TLS)).await;
    assert!(prometheus.url.starts_with("https://"));
    // The harness' client trusts the test CA (PrometheusConfig::ca_file): queries work.
    assert_eq!(
        prometheus
            .client
            .query_number("vector(42)", Timestamp::now())
            .await,
        Ok(Some(42.0))
    );
    // Without the CA the server is not trusted, and the error says so.
    let untrusting =
        PrometheusClient::new(PrometheusConfig::new(prometheus.url.clone())).expect("client");
    let error = untrusting
        .query_number("vector(42)", Timestamp::now())
        .await
        .expect_err("unknown issuer");
    assert_eq!(error.reason(), "PrometheusUnavailable");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
}

/// What customers write, for the theme KPIs: a purchase touchpoint (nps, csat, checkout
/// interactions) and a delivery one (ces, tracking interactions) held by a journey declaring the
/// example organisation's themes.
const THEMED_ORGANISATION: &str = r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: web, namespace: retail, labels: { journey: retail } }
spec: { type: web }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: app, namespace: retail, labels: { journey: retail } }
spec: { type: mobile-app }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Touchpoint
metadata: { name: web-checkout, namespace: retail }
spec:
  channel: web
  stage: purchase
  signals:
    surveys: [{ metric: nps }, { metric: csat }]
    interactions: { outcomes: [completed, abandoned] }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Touchpoint
metadata: { name: app-delivery-tracking, namespace: retail }
spec:
  channel: app
  stage: delivery
  signals:
    surveys: [{ metric: ces }]
    interactions: { outcomes: [completed, error] }
"#;

const THEME_KPIS: &str = r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: checkout-detractors-on-delivery, namespace: retail }
spec:
  indicator: { builtin: theme-share, theme: delivery, metric: nps, segment: detractor }
  scope: { stage: purchase }
  objective: { target: 25, direction: atMost, warning: 40 }
  window: 1h
  minSamples: 5
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: delivery-share, namespace: retail }
spec:
  indicator: { builtin: theme-share, theme: delivery }
  objective: { target: 50, direction: atMost }
  window: 1h
  minSamples: 5
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: comment-rate, namespace: retail }
spec:
  indicator: { builtin: comment-rate }
  objective: { target: 50, direction: atLeast, warning: 30 }
  window: 1h
  minSamples: 20
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: checkout-nps-comment-rate, namespace: retail }
spec:
  indicator: { builtin: comment-rate, metric: nps }
  scope: { stage: purchase }
  objective: { target: 50, direction: atLeast }
  window: 1h
  minSamples: 10
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: interaction-comment-rate, namespace: retail }
spec:
  indicator: { builtin: comment-rate, metric: interaction }
  objective: { target: 10, direction: atLeast }
  window: 1h
  minSamples: 100
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: misspelt-theme, namespace: retail }
spec:
  indicator: { builtin: theme-share, theme: delivry }
  objective: { target: 50, direction: atMost }
  window: 1h
"#;

/// The events posted, each with whether a person reading it finds it is about delivery. Italian
/// and English, with what the themes must get right: stems (spedizione, consegna), phrases (in
/// ritardo), exclusions (non in ritardo, on time — they suppress the theme for the whole
/// comment), a comment of spaces (no comment), answers without comments.
fn themed_stream(touchpoint: &str) -> Vec<(String, bool)> {
    let nps = |score: u8, comment: Option<&str>, language: &str| match comment {
        Some(text) => format!(
            r#"{{"type":"survey","metric":"nps","score":{score},"comment":"{text}","language":"{language}"}}"#
        ),
        None => format!(r#"{{"type":"survey","metric":"nps","score":{score}}}"#),
    };
    match touchpoint {
        "web-checkout" => {
            let mut events = vec![
                // Detractors (0-6): six comments, three about delivery.
                (
                    nps(
                        3,
                        Some("il corriere non è mai arrivato, consegna in ritardo"),
                        "it",
                    ),
                    true,
                ),
                (
                    nps(2, Some("The courier left the parcel in the rain"), "en"),
                    true,
                ),
                (
                    nps(5, Some("Prezzo troppo alto per la spedizione"), "it"),
                    true,
                ),
                (nps(6, Some("il sito è lento e poco chiaro"), "it"), false),
                (
                    nps(4, Some("Checkout kept failing, I gave up"), "en"),
                    false,
                ),
                (
                    nps(
                        0,
                        Some("consegna non in ritardo ma il pacco era rotto"),
                        "it",
                    ),
                    false,
                ),
                (nps(1, None, ""), false),
                (nps(6, Some("   "), "it"), false),
                // A passive and two promoters with comments, one about delivery.
                (nps(8, Some("ok, ma la CONSEGNA è lenta"), "it"), true),
                (
                    nps(10, Some("Delivered on time, great service"), "en"),
                    false,
                ),
                (nps(9, Some("ottimo prezzo"), "it"), false),
            ];
            events.extend((0..5).map(|i| (nps(9 + i % 2, None, ""), false)));
            events.extend([
                (
                    r#"{"type":"survey","metric":"csat","score":2,"comment":"the parcel arrived late"}"#.into(),
                    true,
                ),
                (
                    r#"{"type":"survey","metric":"csat","score":5,"comment":"great"}"#.into(),
                    false,
                ),
            ]);
            events.extend((0..3).map(|_| {
                (
                    r#"{"type":"survey","metric":"csat","score":4}"#.into(),
                    false,
                )
            }));
            events.push((
                r#"{"type":"interaction","outcome":"abandoned","comment":"spese di spedizione troppo care","language":"it"}"#.into(),
                true,
            ));
            events.extend((0..4).map(|_| {
                (
                    r#"{"type":"interaction","outcome":"completed"}"#.into(),
                    false,
                )
            }));
            events
        }
        "app-delivery-tracking" => {
            let mut events: Vec<(String, bool)> = vec![
                (
                    r#"{"type":"survey","metric":"ces","score":2,"comment":"la app si blocca quando traccio il pacco","language":"it"}"#.into(),
                    true,
                ),
                (
                    r#"{"type":"survey","metric":"ces","score":6,"comment":"tracking was clear"}"#.into(),
                    false,
                ),
                (
                    r#"{"type":"interaction","outcome":"error","comment":"the tracking page froze"}"#.into(),
                    false,
                ),
            ];
            events.extend((0..2).map(|_| {
                (
                    r#"{"type":"survey","metric":"ces","score":7}"#.into(),
                    false,
                )
            }));
            events.extend((0..3).map(|_| {
                (
                    r#"{"type":"interaction","outcome":"completed"}"#.into(),
                    false,
                )
            }));
            events
        }
        other => panic!("no stream for {other}"),
    }
}

/// Counts over the posted events, the way a person tallies a survey export: `keep` picks the
/// events, `commented` keeps only those with a comment that is not blank, `delivery` only those a
/// reader files under delivery.
fn tally(keep: impl Fn(&serde_json::Value) -> bool, commented: bool, delivery: bool) -> f64 {
    ["web-checkout", "app-delivery-tracking"]
        .iter()
        .flat_map(|t| themed_stream(t))
        .filter(|(event, about_delivery)| {
            let event: serde_json::Value = serde_json::from_str(event).expect("JSON event");
            let has_comment = event["comment"]
                .as_str()
                .is_some_and(|c| !c.trim().is_empty());
            keep(&event) && (!commented || has_comment) && (!delivery || *about_delivery)
        })
        .count() as f64
}

/// The theme KPIs against a real Prometheus scraping real collectors, each configured with the
/// themes its journey declares (the example organisation's, in Italian and English): the share
/// of detractors' comments about delivery and the comment rates equal the shares tallied by hand
/// from the posted events — through the batched cycle and each KPI's own PromQL, which is also
/// what `check` shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn theme_share_and_comment_rate_equal_the_shares_tallied_from_the_posted_comments() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let mut channels = Vec::new();
    let mut touchpoints = Vec::new();
    for document in THEMED_ORGANISATION.split("\n---\n") {
        let value: serde_yaml::Value = serde_yaml::from_str(document).expect("manifest");
        match value["kind"].as_str() {
            Some("Channel") => {
                channels.push(serde_yaml::from_value::<Channel>(value).expect("channel"))
            }
            _ => touchpoints.push(serde_yaml::from_value::<Touchpoint>(value).expect("touchpoint")),
        }
    }
    // The example organisation's journey, its themes included, narrowed to these two stages.
    let mut journey: CustomerJourney = serde_yaml::from_str(
        &std::fs::read_to_string(support::repo("examples/retail/journey.yaml")).expect("journey"),
    )
    .expect("the example journey");
    journey.spec.stages = vec![
        cx_conductor::api::Stage::Purchase,
        cx_conductor::api::Stage::Delivery,
    ];
    assert!(journey.spec.themes.iter().any(|t| t.name == "delivery"));
    let journeys = vec![journey];
    let kpis: Vec<ExperienceKPI> = documents(THEME_KPIS);

    let mut collectors = Vec::new();
    for touchpoint in &touchpoints {
        let channel = channels
            .iter()
            .find(|c| c.name_any() == touchpoint.spec.channel);
        let mut config = collector_config(touchpoint, channel);
        config.themes = themes_of(touchpoint, channel, &theme_sources(&journeys));
        assert!(config.themes.iter().any(|t| t.name == "delivery"));
        collectors.push(RunningCollector::start(&config).await);
    }
    let targets: Vec<_> = collectors.iter().map(|c| c.addr).collect();
    let prometheus = Prometheus::start(binary, &targets, "1s").await;
    prometheus
        .wait_for_value(
            "count(cx_events_received_total)",
            touchpoints.len() as f64,
            Duration::from_secs(30),
        )
        .await;
    let mut total = 0;
    for (touchpoint, collector) in touchpoints.iter().zip(&collectors) {
        let events: Vec<String> = themed_stream(&touchpoint.name_any())
            .into_iter()
            .map(|(event, _)| event)
            .collect();
        total += events.len();
        collector.post(&events).await;
    }
    prometheus
        .wait_for_value(
            "sum(cx_events_received_total)",
            total as f64,
            Duration::from_secs(30),
        )
        .await;
    let t = prometheus
        .last_scrape()
        .await
        .checked_add(Duration::from_millis(500))
        .expect("timestamp");
    tokio::time::sleep(Duration::from_millis(600)).await;

    let world = World::new(&channels, &touchpoints, &kpis, &journeys);
    let requests = KpiRequest::all(&world);
    let report = measure_cycle(&prometheus.client, &requests, t).await;

    let detractor =
        |e: &serde_json::Value| e["metric"] == "nps" && e["score"].as_u64().is_some_and(|s| s <= 6);
    let nps = |e: &serde_json::Value| e["metric"] == "nps";
    let interaction = |e: &serde_json::Value| e["type"] == "interaction";
    let any = |_: &serde_json::Value| true;
    // (KPI, value, samples, state), each tallied from the events and written out.
    let expected = [
        // Six detractors' comments (the blank one is no comment), three about delivery: the
        // courier who never came, the parcel in the rain, shipping costs. "consegna non in
        // ritardo ma il pacco era rotto" is excluded by "non in ritardo".
        (
            "checkout-detractors-on-delivery",
            100.0 * tally(detractor, true, true) / tally(detractor, true, false),
            tally(detractor, true, false),
            100.0 * 3.0 / 6.0,
            6.0,
            KpiState::Breached,
        ),
        // Every comment of both touchpoints: 15, 7 about delivery ("Delivered on time" is
        // excluded by "on time").
        (
            "delivery-share",
            100.0 * tally(any, true, true) / tally(any, true, false),
            tally(any, true, false),
            100.0 * 7.0 / 15.0,
            15.0,
            KpiState::Met,
        ),
        // 15 comments on 34 answers and interactions.
        (
            "comment-rate",
            100.0 * tally(any, true, false) / tally(any, false, false),
            tally(any, false, false),
            100.0 * 15.0 / 34.0,
            34.0,
            KpiState::AtRisk,
        ),
        // 9 commented nps answers of 16.
        (
            "checkout-nps-comment-rate",
            100.0 * tally(nps, true, false) / tally(nps, false, false),
            tally(nps, false, false),
            100.0 * 9.0 / 16.0,
            16.0,
            KpiState::Met,
        ),
        // 2 commented interactions of 9: fewer than minSamples 100.
        (
            "interaction-comment-rate",
            100.0 * tally(interaction, true, false) / tally(interaction, false, false),
            tally(interaction, false, false),
            100.0 * 2.0 / 9.0,
            9.0,
            KpiState::InsufficientData,
        ),
    ];
    for (name, value, samples, written_value, written_samples, state) in expected {
        assert_eq!(
            (value, samples),
            (written_value, written_samples),
            "{name}: the tally"
        );
        let i = kpis
            .iter()
            .position(|k| k.name_any() == name)
            .expect("a KPI");
        assert_measured(name, &report.results[i], value, samples);
        let compiled = report.compiled[i].as_ref().expect("compiled");
        let alone = measure_one(&prometheus.client, compiled, t).await;
        assert_measured(&format!("{name} (own PromQL)"), &alone, value, samples);
        let window = WindowSpec::parse(&kpis[i].spec.window).expect("window");
        let shown = displayed_queries(&kpis[i].spec, &requests[i].scope, &window, Counting::Raw)
            .expect("displayed");
        assert_eq!(shown.value, compiled.value, "{name}");
        assert_eq!(shown.samples, compiled.samples, "{name}");
        assert_eq!(
            shown.previous_value.as_ref(),
            Some(&compiled.previous.value)
        );
        let spec = &kpis[i].spec;
        let evaluation = evaluate(&spec.objective, spec.min_samples, None, &report.results[i]);
        assert_eq!(evaluation.state, state, "{name}: {}", evaluation.message);
        // Nothing was posted an hour earlier.
        let measured = report.results[i].as_ref().expect("measured");
        assert_eq!(
            measured.previous.map(|p| p.samples),
            Some(SampleCount::NoSeries),
            "{name}"
        );
    }

    // The misspelt theme: the definition is wrong, and the themes counted are named.
    let misspelt = kpis
        .iter()
        .position(|k| k.name_any() == "misspelt-theme")
        .expect("a KPI");
    let error = report.results[misspelt].as_ref().expect_err("not counted");
    assert_eq!(error.reason(), "ThemeNotDeclared");
    assert!(error.is_invalid_spec());
    assert!(
        error
            .to_string()
            .ends_with("they count app-crashes, delivery, price, staff, waiting-time"),
        "{error}"
    );
    // Five theme KPIs of one window: one query, the previous cycle included.
    assert_eq!(report.http_queries, 1 + 1, "{:?}", report.compiled);

    // The live map's themes row reads the same series: per stage (one touchpoint each here),
    // the comments written and the delivery mentions equal the tallies.
    let span = WindowSpec::parse("1h").expect("window").current(t);
    let [comments, mentions] = cx_conductor::map::model::theme_queries(Some("retail"), &span);
    let rows = |answer| match answer {
        Ok(cx_conductor::kpi::prometheus::QueryResult::Vector(rows)) => rows,
        other => panic!("a vector: {other:?}"),
    };
    let counts = cx_conductor::map::model::theme_counts(
        "1h",
        &rows(prometheus.client.query(&comments, t).await),
        &rows(prometheus.client.query(&mentions, t).await),
    );
    let key = |tp: &str| ("retail".to_string(), tp.to_string());
    for (touchpoint, comments, delivery) in [
        ("web-checkout", 12.0, 6.0),
        ("app-delivery-tracking", 3.0, 1.0),
    ] {
        let posted = themed_stream(touchpoint);
        let written = posted
            .iter()
            .filter(|(e, _)| {
                let e: serde_json::Value = serde_json::from_str(e).expect("JSON");
                e["comment"].as_str().is_some_and(|c| !c.trim().is_empty())
            })
            .count() as f64;
        let about = posted.iter().filter(|(_, d)| *d).count() as f64;
        assert_eq!(
            (written, about),
            (comments, delivery),
            "{touchpoint}: the tally"
        );
        assert_eq!(
            counts.comments.get(&key(touchpoint)),
            Some(&comments),
            "{touchpoint}"
        );
        let mentioned = counts
            .mentions
            .get(&key(touchpoint))
            .and_then(|m| m.iter().find(|(theme, _)| theme == "delivery"))
            .map(|(_, n)| *n);
        assert_eq!(mentioned, Some(delivery), "{touchpoint}");
    }
}

/// Three delivery touchpoints: the example organisation's app delivery tracking (its custom
/// outcomes failed-attempt and rescheduled, read from `examples/retail/touchpoints.yaml`), a
/// courier desk that also records failed attempts, and a store pickup counter that cannot fail
/// one.
const DELIVERY_ORGANISATION: &str = r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: app, namespace: retail }
spec: { type: mobile-app }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: call-centre, namespace: retail }
spec: { type: voice }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: store, namespace: retail }
spec: { type: store }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Touchpoint
metadata: { name: courier-desk, namespace: retail }
spec:
  channel: call-centre
  stage: delivery
  signals:
    interactions: { outcomes: [completed, abandoned], customOutcomes: [failed-attempt] }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Touchpoint
metadata: { name: store-pickup, namespace: retail }
spec:
  channel: store
  stage: delivery
  signals:
    interactions: { outcomes: [completed] }
"#;

const OUTCOME_KPIS: &str = r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: failed-attempts, namespace: retail }
spec:
  indicator: { builtin: outcome-share, outcomes: [failed-attempt] }
  scope: { stage: delivery }
  objective: { target: 5, direction: atMost, warning: 8 }
  window: 1h
  minSamples: 10
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: not-delivered, namespace: retail }
spec:
  indicator: { builtin: outcome-share, outcomes: [failed-attempt, rescheduled, abandoned] }
  scope: { stage: delivery }
  objective: { target: 40, direction: atMost }
  window: 1h
  minSamples: 10
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: delivery-abandonment, namespace: retail }
spec:
  indicator: { builtin: abandonment-rate }
  scope: { stage: delivery }
  objective: { target: 20, direction: atMost }
  window: 1h
  minSamples: 5
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: rescheduled-promql, namespace: retail }
spec:
  indicator:
    promql: 100 * sum(cx_interactions_total{namespace="retail", outcome="rescheduled"}) / sum(cx_interactions_total{namespace="retail", touchpoint="app-delivery-tracking"})
    samplesPromql: sum(cx_interactions_total{namespace="retail", touchpoint="app-delivery-tracking"})
  objective: { target: 15, direction: atMost }
  window: 1h
  minSamples: 10
---
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: misspelt-outcome, namespace: retail }
spec:
  indicator: { builtin: outcome-share, outcomes: [faild-attempt] }
  scope: { stage: delivery }
  objective: { target: 5, direction: atMost }
  window: 1h
"#;

/// The interactions posted to each delivery touchpoint: (outcome, count).
fn delivery_stream(touchpoint: &str) -> &'static [(&'static str, usize)] {
    match touchpoint {
        "app-delivery-tracking" => &[
            ("completed", 12),
            ("failed-attempt", 3),
            ("rescheduled", 2),
            ("error", 1),
        ],
        "courier-desk" => &[("completed", 5), ("failed-attempt", 2), ("abandoned", 1)],
        "store-pickup" => &[("completed", 20)],
        other => panic!("no stream for {other}"),
    }
}

/// Interactions posted to `touchpoints` ending in one of `outcomes` (any outcome when empty).
fn posted(touchpoints: &[&str], outcomes: &[&str]) -> f64 {
    touchpoints
        .iter()
        .flat_map(|t| delivery_stream(t).iter())
        .filter(|(outcome, _)| outcomes.is_empty() || outcomes.contains(outcome))
        .map(|(_, count)| *count as f64)
        .sum()
}

/// Custom outcomes against a real Prometheus scraping real collectors: outcome-share equals the
/// share counted from the posted interactions, over the touchpoints declaring the outcomes (the
/// store pickup's sales dilute nothing), through the batched cycle and each KPI's own PromQL (what
/// `check` shows); abandonment rate keeps its meaning (abandoned ÷ every interaction of the
/// touchpoints that can be abandoned, custom outcomes included); a custom PromQL KPI reads the
/// custom outcome's series; a misspelt outcome is the definition's fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_share_equals_the_share_counted_from_the_posted_interactions() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let mut channels = Vec::new();
    let mut touchpoints = Vec::new();
    for document in DELIVERY_ORGANISATION.split("\n---\n") {
        let value: serde_yaml::Value = serde_yaml::from_str(document).expect("manifest");
        match value["kind"].as_str() {
            Some("Channel") => {
                channels.push(serde_yaml::from_value::<Channel>(value).expect("channel"))
            }
            _ => touchpoints.push(serde_yaml::from_value::<Touchpoint>(value).expect("touchpoint")),
        }
    }
    let example: Vec<Touchpoint> = documents(
        &std::fs::read_to_string(support::repo("examples/retail/touchpoints.yaml"))
            .expect("example touchpoints"),
    );
    let tracking = example
        .into_iter()
        .find(|t| t.name_any() == "app-delivery-tracking")
        .expect("the example's delivery tracking");
    assert_eq!(
        tracking
            .spec
            .signals
            .interactions
            .as_ref()
            .map(|i| i.custom_outcomes.clone()),
        Some(vec![
            "failed-attempt".to_string(),
            "rescheduled".to_string()
        ])
    );
    touchpoints.push(tracking);
    let kpis: Vec<ExperienceKPI> = documents(OUTCOME_KPIS);

    let mut collectors = Vec::new();
    for touchpoint in &touchpoints {
        let channel = channels
            .iter()
            .find(|c| c.name_any() == touchpoint.spec.channel);
        collectors.push(RunningCollector::start(&collector_config(touchpoint, channel)).await);
    }
    let targets: Vec<_> = collectors.iter().map(|c| c.addr).collect();
    let prometheus = Prometheus::start(binary, &targets, "1s").await;
    prometheus
        .wait_for_value(
            "count(cx_events_received_total)",
            touchpoints.len() as f64,
            Duration::from_secs(30),
        )
        .await;
    let mut total = 0;
    for (touchpoint, collector) in touchpoints.iter().zip(&collectors) {
        let events = interactions(
            &delivery_stream(&touchpoint.name_any())
                .iter()
                .map(|&(outcome, count)| (outcome, count, None))
                .collect::<Vec<_>>(),
        );
        total += events.len();
        collector.post(&events).await;
    }
    prometheus
        .wait_for_value(
            "sum(cx_events_received_total)",
            total as f64,
            Duration::from_secs(30),
        )
        .await;
    let t = prometheus
        .last_scrape()
        .await
        .checked_add(Duration::from_millis(500))
        .expect("timestamp");
    tokio::time::sleep(Duration::from_millis(600)).await;

    let world = World::new(&channels, &touchpoints, &kpis, &[]);
    let requests = KpiRequest::all(&world);
    let report = measure_cycle(&prometheus.client, &requests, t).await;

    let declaring = ["app-delivery-tracking", "courier-desk"];
    // (KPI, value, samples, the same written out, state).
    let expected = [
        // 3 + 2 failed attempts of the 18 + 8 tracked and desk deliveries.
        (
            "failed-attempts",
            100.0 * posted(&declaring, &["failed-attempt"]) / posted(&declaring, &[]),
            posted(&declaring, &[]),
            100.0 * 5.0 / 26.0,
            26.0,
            KpiState::Breached,
        ),
        (
            "not-delivered",
            100.0 * posted(&declaring, &["failed-attempt", "rescheduled", "abandoned"])
                / posted(&declaring, &[]),
            posted(&declaring, &[]),
            100.0 * 8.0 / 26.0,
            26.0,
            KpiState::Met,
        ),
        // Only the courier desk can be abandoned: 1 of its 8, failed attempts included.
        (
            "delivery-abandonment",
            100.0 * posted(&["courier-desk"], &["abandoned"]) / posted(&["courier-desk"], &[]),
            posted(&["courier-desk"], &[]),
            100.0 / 8.0,
            8.0,
            KpiState::Met,
        ),
    ];
    for (name, value, samples, written_value, written_samples, state) in expected {
        assert_eq!(
            (value, samples),
            (written_value, written_samples),
            "{name}: the count"
        );
        let i = kpis
            .iter()
            .position(|k| k.name_any() == name)
            .expect("a KPI");
        assert_measured(name, &report.results[i], value, samples);
        let compiled = report.compiled[i].as_ref().expect("compiled");
        let alone = measure_one(&prometheus.client, compiled, t).await;
        assert_measured(&format!("{name} (own PromQL)"), &alone, value, samples);
        let window = WindowSpec::parse(&kpis[i].spec.window).expect("window");
        let shown = displayed_queries(&kpis[i].spec, &requests[i].scope, &window, Counting::Raw)
            .expect("displayed");
        assert_eq!(shown.value, compiled.value, "{name}");
        assert_eq!(shown.samples, compiled.samples, "{name}");
        assert_eq!(
            shown.previous_value.as_ref(),
            Some(&compiled.previous.value)
        );
        assert!(
            !compiled.touchpoints.contains(&"store-pickup".to_string()),
            "{name}: {:?}",
            compiled.touchpoints
        );
        let spec = &kpis[i].spec;
        let evaluation = evaluate(&spec.objective, spec.min_samples, None, &report.results[i]);
        assert_eq!(evaluation.state, state, "{name}: {}", evaluation.message);
        let measured = report.results[i].as_ref().expect("measured");
        assert_eq!(
            measured.previous.map(|p| p.samples),
            Some(SampleCount::NoSeries),
            "{name}: nothing was posted an hour earlier"
        );
    }

    // The custom outcome in a custom PromQL KPI: 2 rescheduled of 18 tracked deliveries.
    let custom = kpis
        .iter()
        .position(|k| k.name_any() == "rescheduled-promql")
        .expect("a KPI");
    assert_measured(
        "rescheduled-promql",
        &report.results[custom],
        100.0 * posted(&["app-delivery-tracking"], &["rescheduled"])
            / posted(&["app-delivery-tracking"], &[]),
        18.0,
    );

    // The misspelt outcome: the definition is wrong, and the declared outcomes are named.
    let misspelt = kpis
        .iter()
        .position(|k| k.name_any() == "misspelt-outcome")
        .expect("a KPI");
    let error = report.results[misspelt].as_ref().expect_err("not declared");
    assert_eq!(error.reason(), "OutcomeNotDeclared");
    assert!(error.is_invalid_spec());
    assert_eq!(
        error.to_string(),
        "outcome faild-attempt is declared by no touchpoint in scope (app-delivery-tracking, courier-desk, store-pickup), so no interaction can end with it; they declare abandoned, completed, error, failed-attempt, rescheduled"
    );
    // The three builtin KPIs of one window: one query, and one for the recorded steps; the
    // custom one two (current, previous).
    assert_eq!(report.http_queries, 1 + 1 + 2, "{:?}", report.compiled);
}
