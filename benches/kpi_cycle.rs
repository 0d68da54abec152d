//! One KPI evaluation cycle of 1,000 KPIs against a real Prometheus scraping 100 real collectors.
//!
//! `cargo bench --bench kpi_cycle` starts the collectors (in-process, 5 namespaces × 20
//! touchpoints), posts events to them, starts `/usr/bin/prometheus` on loopback scraping each
//! collector every second, waits until everything is scraped, then times (median of several
//! runs):
//! - the batched cycle ([`measure_cycle`]): builtin KPIs share one query per signal family and
//!   window, custom ones run concurrently — what the operator does;
//! - for comparison, the naive path: every KPI's own value and samples queries
//!   ([`measure_one`]), with the same concurrency.
//!
//! The collectors count the example organisation's themes (one nps answer in three carries a
//! comment), so the comments family (theme-share and comment-rate) is timed over real series.
//!
//! The data spans seconds, not weeks: on a production Prometheus each query reads more samples,
//! which makes the number of queries (printed too) matter even more than here.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it only prints how to run it.

#[path = "../tests/support/prometheus.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cx_conductor::api::*;
use cx_conductor::core::World;
use cx_conductor::core::listening::{theme_sources, themes_of};
use cx_conductor::core::plan::collector_config;
use cx_conductor::kpi::batch::{CycleCounting, Family};
use cx_conductor::kpi::prometheus::QueryResult;
use cx_conductor::kpi::promql::{FIRST_RESPONSES, counted, label_in};
use cx_conductor::kpi::{
    KpiRequest, PrometheusClient, PrometheusConfig, WindowSpec, measure_cycle, measure_one,
};
use futures::stream::{self, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use support::{Prometheus, RunningCollector, prometheus_binary};

const NAMESPACES: usize = 5;
const TOUCHPOINTS_PER_NAMESPACE: usize = 20;
const KPIS: usize = 1000;
/// One KPI in this many is custom PromQL (value and samples queries of its own).
const CUSTOM_EVERY: usize = 20;
const RUNS: usize = 7;
const WINDOWS: [&str; 4] = ["1h", "7d", "28d", "calendar-month"];
const CHANNELS: [(&str, ChannelType, i32); 4] = [
    ("web", ChannelType::Web, 60),
    ("app", ChannelType::MobileApp, 60),
    ("call-centre", ChannelType::Voice, 25),
    ("chat", ChannelType::Chat, 120),
];

fn meta(name: String, namespace: &str, labels: &[(&str, String)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.into()),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn yaml<T: serde::de::DeserializeOwned>(text: String) -> T {
    serde_yaml::from_str(&text).expect("valid bench object")
}

struct Org {
    channels: Vec<Channel>,
    touchpoints: Vec<Touchpoint>,
    kpis: Vec<ExperienceKPI>,
    journeys: Vec<CustomerJourney>,
}

fn organisation() -> Org {
    let mut channels = Vec::new();
    let mut touchpoints = Vec::new();
    let mut kpis = Vec::new();
    let mut journeys = Vec::new();
    // Each namespace's journey holds every touchpoint and declares the example organisation's
    // themes, so its collectors count them and the theme-share KPIs are measured.
    let example: CustomerJourney = serde_yaml::from_str(
        &std::fs::read_to_string(support::repo("examples/retail/journey.yaml")).expect("journey"),
    )
    .expect("the example journey");
    for n in 0..NAMESPACES {
        let ns = format!("brand-{n}");
        let mut journey = example.clone();
        journey.metadata = meta("brand".into(), &ns, &[]);
        journey.spec.stages = Stage::ALL.to_vec();
        journey.spec.channel_selector = Some(LabelSelector::default());
        journeys.push(journey);
        for (name, kind, promise) in CHANNELS {
            let mut channel: Channel = yaml(format!(
                "apiVersion: cx.conductor.dev/v1alpha1\nkind: Channel\nmetadata: {{ name: {name} }}\nspec: {{ type: {}, serviceLevels: {{ firstResponseSeconds: {promise} }} }}\n",
                kind.as_str()
            ));
            channel.metadata = meta(name.into(), &ns, &[]);
            channels.push(channel);
        }
        for t in 0..TOUCHPOINTS_PER_NAMESPACE {
            let (channel, _, _) = CHANNELS[t % CHANNELS.len()];
            let stage = Stage::ALL[t % Stage::ALL.len()];
            let mut touchpoint: Touchpoint = yaml(format!(
                "apiVersion: cx.conductor.dev/v1alpha1\nkind: Touchpoint\nmetadata: {{ name: x }}\nspec:\n  channel: {channel}\n  stage: {}\n  signals:\n    surveys: [{{ metric: nps }}, {{ metric: csat, scale: {} }}, {{ metric: ces }}]\n    interactions: {{ outcomes: [completed, abandoned, resolved-first-contact, resolved, unresolved, escalated], timings: [wait] }}\n",
                stage.as_str(),
                if t.is_multiple_of(2) { 5 } else { 7 }
            ));
            touchpoint.metadata = meta(
                format!("tp-{t}"),
                &ns,
                &[("team", format!("team-{}", t % 3))],
            );
            touchpoints.push(touchpoint);
        }
    }
    for k in 0..KPIS {
        let ns = format!("brand-{}", k % NAMESPACES);
        let indicator = if k % CUSTOM_EVERY == 0 {
            format!(
                "{{ promql: 'sum(increase(cx_interactions_total{{namespace=\"{ns}\", outcome=\"abandoned\"}}[$window])) / sum(increase(cx_interactions_total{{namespace=\"{ns}\"}}[$window]))', samplesPromql: 'sum(increase(cx_interactions_total{{namespace=\"{ns}\"}}[$window]))' }}"
            )
        } else {
            match BuiltinIndicator::ALL[k % BuiltinIndicator::ALL.len()] {
                BuiltinIndicator::ThemeShare => "{ builtin: theme-share, theme: delivery }".into(),
                BuiltinIndicator::OutcomeShare => {
                    "{ builtin: outcome-share, outcomes: [abandoned] }".into()
                }
                other => format!("{{ builtin: {} }}", other.as_str()),
            }
        };
        let mut kpi: ExperienceKPI = yaml(format!(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: ExperienceKPI\nmetadata: {{ name: x }}\nspec:\n  indicator: {indicator}\n  objective: {{ target: 1, direction: atLeast }}\n  window: {}\n",
            // Not k % 4: indicators cycle every 8 KPIs, and each must meet every window.
            WINDOWS[(k / BuiltinIndicator::ALL.len()) % WINDOWS.len()]
        ));
        kpi.metadata = meta(format!("kpi-{k}"), &ns, &[]);
        // Scopes of every shape: a channel, a stage, a label selector, the whole namespace.
        match k % 4 {
            0 => kpi.spec.scope.channels = vec![CHANNELS[k % CHANNELS.len()].0.into()],
            1 => {
                kpi.spec.scope.touchpoint_selector = Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "team".to_owned(),
                        format!("team-{}", k % 3),
                    )])),
                    ..Default::default()
                })
            }
            2 => {}
            _ => kpi.spec.scope.channels = vec!["web".into(), "call-centre".into()],
        }
        kpis.push(kpi);
    }
    Org {
        channels,
        touchpoints,
        kpis,
        journeys,
    }
}

fn events(t: usize) -> Vec<String> {
    let mut events = Vec::new();
    for i in 0..150 {
        let score = (i * 7 + t) % 11;
        // One answer in three carries a comment, in Italian or English, some about delivery.
        let comment = match i % 6 {
            0 => r#","comment":"il corriere non è mai arrivato, consegna in ritardo""#,
            3 => r#","comment":"great prices but the app keeps closing""#,
            _ => "",
        };
        events.push(format!(
            r#"{{"type":"survey","metric":"nps","score":{score}{comment}}}"#
        ));
        let csat = 1 + (i + t) % if t.is_multiple_of(2) { 5 } else { 7 };
        events.push(format!(
            r#"{{"type":"survey","metric":"csat","score":{csat}}}"#
        ));
        let ces = 1 + (i * 3 + t) % 7;
        events.push(format!(
            r#"{{"type":"survey","metric":"ces","score":{ces}}}"#
        ));
        let outcome = [
            "completed",
            "abandoned",
            "resolved-first-contact",
            "resolved",
            "unresolved",
            "escalated",
        ][i % 6];
        let wait = ((i * 13 + t * 7) % 240) as f64 + 0.5;
        events.push(format!(
            r#"{{"type":"interaction","outcome":"{outcome}","waitSeconds":{wait}}}"#
        ));
    }
    events
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("kpi_cycle: run with `cargo bench --bench kpi_cycle` (needs /usr/bin/prometheus)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let org = organisation();
    let sources = theme_sources(&org.journeys);
    let mut collectors = Vec::new();
    for touchpoint in &org.touchpoints {
        let namespace = touchpoint.metadata.namespace.as_deref().unwrap_or_default();
        let channel = org.channels.iter().find(|c| {
            c.metadata.namespace.as_deref() == Some(namespace)
                && c.metadata.name.as_deref() == Some(touchpoint.spec.channel.as_str())
        });
        // The themes of the journey holding it, as the operator configures the collector.
        let mut config = collector_config(touchpoint, channel);
        config.themes = themes_of(touchpoint, channel, &sources);
        collectors.push(RunningCollector::start(&config).await);
    }
    let targets: Vec<_> = collectors.iter().map(|c| c.addr).collect();
    let prometheus = Prometheus::start(binary, &targets, "1s").await;
    prometheus
        .wait_for_value(
            "count(cx_events_received_total)",
            collectors.len() as f64,
            Duration::from_secs(60),
        )
        .await;
    let mut total = 0;
    for (t, collector) in collectors.iter().enumerate() {
        let batch = events(t);
        total += batch.len();
        collector.post(&batch).await;
    }
    prometheus
        .wait_for_value(
            "sum(cx_events_received_total)",
            total as f64,
            Duration::from_secs(60),
        )
        .await;

    let world = World::new(&org.channels, &org.touchpoints, &org.kpis, &org.journeys);
    let requests = KpiRequest::all(&world);
    let mut config = PrometheusConfig::new(prometheus.url.clone());
    config.timeout = Duration::from_secs(30);
    let client = PrometheusClient::new(config).expect("client");
    let now = Timestamp::now();
    // Everything is scraped: stop the collectors so that ingesting 100 targets a second (a
    // production Prometheus scrapes every 30 s or so) does not compete with the queries. Their
    // data stays queryable at `now`.
    drop(collectors);

    // Warm-up (connections, Prometheus' caches), then the timed runs.
    let warm = measure_cycle(&client, &requests, now).await;
    let failed: Vec<String> = warm
        .results
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    let measured = warm.results.len() - failed.len();
    let mut batched = Vec::new();
    let mut queries = 0;
    for _ in 0..RUNS {
        let report = measure_cycle(&client, &requests, now).await;
        queries = report.http_queries;
        batched.push(report.elapsed);
    }

    let builtin: Vec<KpiRequest<'_>> = requests
        .iter()
        .filter(|r| r.spec.indicator.builtin.is_some())
        .cloned()
        .collect();
    let mut builtin_only = Vec::new();
    let mut builtin_queries = 0;
    for _ in 0..RUNS {
        let report = measure_cycle(&client, &builtin, now).await;
        builtin_queries = report.http_queries;
        builtin_only.push(report.elapsed);
    }

    let compiled: Vec<_> = warm.compiled.iter().flatten().collect();
    let naive_queries: usize = compiled
        .iter()
        .map(|c| 2 * (1 + usize::from(c.samples.is_some())))
        .sum();
    // Where the batched time goes: each family query alone, one after the other.
    let namespaces: Vec<String> = (0..NAMESPACES).map(|n| format!("brand-{n}")).collect();
    let mut family_times = Vec::new();
    for family in [
        Family::Survey(SurveyMetric::Nps),
        Family::Survey(SurveyMetric::Csat),
        Family::Survey(SurveyMetric::Ces),
        Family::Interactions,
        Family::Waits,
        Family::Comments,
    ] {
        // The comments family with the mentions of one theme and the answers, as a theme-share
        // and a comment-rate KPI of one window ask together.
        let themes: Vec<String> = match family {
            Family::Comments => vec!["delivery".into()],
            _ => Vec::new(),
        };
        for window in ["1h", "28d"] {
            let started = Instant::now();
            let spec = WindowSpec::parse(window).expect("window");
            // The raw counters: the bench's history is too short for recorded increments.
            let raw = CycleCounting {
                raw: namespaces.clone(),
                ..CycleCounting::default()
            };
            let answer = client
                .query(
                    &family.query(
                        &themes,
                        true,
                        &[] as &[&str],
                        (&spec.current(now), &raw),
                        Some((&spec.previous(now), &raw)),
                    ),
                    now,
                )
                .await
                .expect("family query");
            let rows = match answer {
                QueryResult::Vector(rows) => rows.len(),
                QueryResult::Scalar(_) => 0,
            };
            family_times.push((
                started.elapsed(),
                format!("{family:?} [{window}]: {rows} rows"),
            ));
        }
    }
    family_times.sort();

    // What exactness costs on one counter: the wait-time buckets of every touchpoint over 1h,
    // read once by increase() (the code before) or counted exactly (`promql::counted`).
    let buckets = format!("{FIRST_RESPONSES}_bucket");
    let matchers = label_in("namespace", &namespaces);
    let span = WindowSpec::parse("1h").expect("window").current(now);
    let by = "sum by (namespace, touchpoint, le)";
    let mut read_once = Vec::new();
    let mut read_exactly = Vec::new();
    for _ in 0..RUNS {
        for (query, times) in [
            (
                format!("{by} (increase({buckets}{{{matchers}}}[1h]))"),
                &mut read_once,
            ),
            (
                format!("{by} ({})", counted(&buckets, &matchers, &span)),
                &mut read_exactly,
            ),
        ] {
            let started = Instant::now();
            client.query(&query, now).await.expect("bucket query");
            times.push(started.elapsed());
        }
    }

    let mut naive = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let _: Vec<_> = stream::iter(&compiled)
            .map(|c| measure_one(&client, c, now))
            .buffer_unordered(client.concurrency())
            .collect()
            .await;
        naive.push(started.elapsed());
    }

    println!(
        "kpi_cycle: {} KPIs ({} custom) over {} touchpoints in {NAMESPACES} namespaces, windows {WINDOWS:?}, concurrency {}",
        requests.len(),
        KPIS / CUSTOM_EVERY,
        org.touchpoints.len(),
        client.concurrency()
    );
    println!(
        "  measured: {measured}, unmeasurable: {} {:?}",
        failed.len(),
        failed.first()
    );
    println!(
        "  batched cycle (the operator's): median {:>8.1} ms over {RUNS} runs, {queries} HTTP queries",
        median(batched).as_secs_f64() * 1000.0
    );
    println!(
        "  batched, the {} builtin KPIs only: median {:>8.1} ms over {RUNS} runs, {builtin_queries} HTTP queries",
        builtin.len(),
        median(builtin_only).as_secs_f64() * 1000.0
    );
    if let (Some(fastest), Some(slowest)) = (family_times.first(), family_times.last()) {
        println!(
            "  family queries alone: fastest {:.1} ms ({}), slowest {:.1} ms ({})",
            fastest.0.as_secs_f64() * 1000.0,
            fastest.1,
            slowest.0.as_secs_f64() * 1000.0,
            slowest.1
        );
    }
    println!(
        "  wait buckets of every touchpoint over 1h: increase() {:.1} ms, exact count {:.1} ms (median of {RUNS})",
        median(read_once).as_secs_f64() * 1000.0,
        median(read_exactly).as_secs_f64() * 1000.0
    );
    println!(
        "  each KPI's own queries (value and samples, current and previous cycle): median {:>8.1} ms over 3 runs, {naive_queries} HTTP queries",
        median(naive).as_secs_f64() * 1000.0
    );
}
