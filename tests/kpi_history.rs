//! Long-window KPIs on backfilled history, on a real Prometheus (Debian's 2.x, and the
//! Prometheus 3 server `scripts/test.sh` builds): two days of the collectors' survey series at a
//! 30 s scrape, written with `promtool tsdb create-blocks-from openmetrics`, and the namespace's
//! recording rules evaluated over them every 5 minutes with `promtool tsdb create-blocks-from
//! rules`, exactly as a Prometheus running those rules would have recorded them. The history
//! holds the failure modes the raw counters make awkward, one touchpoint each:
//! - `checkout`: a rollout (pod `a` replaced by pod `b`, both alive for two minutes);
//! - `app`: a collector restarted in place between two scrapes, in each cycle;
//! - `kiosk`: a 20-minute scrape gap across the start of each cycle's window;
//! - `store`: a pool scaled up and down inside the window (pod `f` born and gone);
//! - `portal` (namespace `b2b`): rule evaluations missed for 30 minutes in the current window.
//!
//! Every KPI value and sample count is compared with the ground truth tallied from the
//! generated answers, for the current and the previous cycle; `retail` is counted from its
//! recorded increments (`IncrementsRecorded`), `b2b` from its raw counters (the recorded steps
//! do not cover its window), both exact. With no new feedback, a later evaluation instant gives
//! the same measurement, whatever resets the window contains.

#[path = "support/prometheus.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cx_conductor::api::{Channel, CustomerJourney, ExperienceKPI, Touchpoint};
use cx_conductor::core::World;
use cx_conductor::kpi::cycle::{
    FINISHED_AFTER, FinishedPeriods, MAX_TOUCHPOINTS_PER_QUERY, measure_cycle_keeping,
};
use cx_conductor::kpi::evaluate::{CountSource, CountSources};
use cx_conductor::kpi::recording::{Increase, STEPS_RECORDED, hours_group, recording_group};
use cx_conductor::kpi::rules::{RuleFile, RuleGroup};
use cx_conductor::kpi::{KpiRequest, Measurement, SampleCount, WindowSpec, measure_cycle};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use support::{Prometheus, prometheus_binary, promtool_binary};

const SCRAPE: i64 = 30;
const STEP: i64 = 300;
const DAY: i64 = 86_400;

const ORGANISATION: &str = r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: web, namespace: retail }
spec: { type: web }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: app, namespace: retail }
spec: { type: mobile-app }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: kiosk, namespace: retail }
spec: { type: kiosk }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: store, namespace: retail }
spec: { type: store }
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: web, namespace: b2b }
spec: { type: web }
"#;

/// Touchpoint `name` on channel `channel` of `namespace`, asking NPS.
fn touchpoint(namespace: &str, name: &str, channel: &str) -> String {
    format!(
        "apiVersion: cx.conductor.dev/v1alpha1\nkind: Touchpoint\nmetadata: {{ name: {name}, namespace: {namespace} }}\nspec:\n  channel: {channel}\n  stage: purchase\n  signals:\n    surveys: [{{ metric: nps }}]\n"
    )
}

/// An NPS KPI over a day, on `channel` alone or (None) every touchpoint of the namespace.
fn kpi(namespace: &str, name: &str, channel: Option<&str>) -> String {
    let scope = channel
        .map(|c| format!("  scope: {{ channels: [{c}] }}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: cx.conductor.dev/v1alpha1\nkind: ExperienceKPI\nmetadata: {{ name: {name}, namespace: {namespace} }}\nspec:\n  indicator: {{ builtin: nps }}\n{scope}  objective: {{ target: 20, direction: atLeast }}\n  window: 1d\n"
    )
}

fn documents<T: DeserializeOwned>(yaml: &str) -> Vec<T> {
    yaml.split("\n---\n")
        .map(|doc| serde_yaml::from_str(doc).expect("valid test manifest"))
        .collect()
}

/// One raw counter series: a collector pod's answers with one score, sampled every scrape.
struct Series {
    namespace: &'static str,
    touchpoint: &'static str,
    channel: &'static str,
    pod: &'static str,
    score: u8,
    /// (scrape time in seconds, counter value).
    samples: Vec<(i64, u64)>,
}

impl Series {
    /// The answers the samples in `(from, to]` reveal: each sample's increase over the one
    /// before (its whole value after a reset, or as the series' first sample: counters start
    /// at zero).
    fn answers_in(&self, from: i64, to: i64) -> u64 {
        let mut before: Option<u64> = None;
        let mut total = 0;
        for &(t, value) in &self.samples {
            let delta = match before {
                Some(b) if value >= b => value - b,
                _ => value,
            };
            if t > from && t <= to {
                total += delta;
            }
            before = Some(value);
        }
        total
    }
}

/// Answers per scrape, deterministic: 0, 1 or 2 of each score in turn, promoters twice that.
fn answers_at(seed: u64, t: i64, score: u8) -> u64 {
    let x = (t as u64 / SCRAPE as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(seed.wrapping_mul(1442695040888963407) + u64::from(score) * 97);
    let answers = (x >> 33) % 3;
    if score == 10 { 2 * answers } else { answers }
}

/// The history: every series of every pod over `[start, end]`, with the failure modes above
/// placed around `now`'s current and previous windows (1 day each).
fn history(start: i64, end: i64, now: i64) -> Vec<Series> {
    let current_start = now - DAY;
    let previous_start = now - 2 * DAY;
    let mut series = Vec::new();
    // (namespace, touchpoint, channel, pod, seed, alive from, alive until, restarts, gaps)
    type Pod = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        u64,
        i64,
        i64,
        Vec<i64>,
        Vec<(i64, i64)>,
    );
    let rollout = now - DAY / 2;
    let scale_up = now - 15 * 3600;
    let scale_down = now - 4 * 3600;
    let pods: Vec<Pod> = vec![
        (
            "retail",
            "checkout",
            "web",
            "a",
            1,
            start,
            rollout + 60,
            vec![],
            vec![],
        ),
        (
            "retail",
            "checkout",
            "web",
            "b",
            2,
            rollout - 60,
            end,
            vec![],
            vec![],
        ),
        (
            "retail",
            "app",
            "app",
            "c",
            3,
            start,
            end,
            // Restarted in place between two scrapes, in each cycle.
            vec![previous_start + 7 * 3600 + 15, now - 3 * 3600 + 15],
            vec![],
        ),
        (
            "retail",
            "kiosk",
            "kiosk",
            "d",
            4,
            start,
            end,
            vec![],
            // Unscraped for 20 minutes across each window's start.
            vec![
                (current_start - 600, current_start + 600),
                (previous_start - 600, previous_start + 600),
            ],
        ),
        (
            "retail",
            "store",
            "store",
            "e",
            5,
            start,
            end,
            vec![],
            vec![],
        ),
        (
            "retail",
            "store",
            "store",
            "f",
            6,
            scale_up,
            scale_down,
            vec![],
            vec![],
        ),
        ("b2b", "portal", "web", "g", 7, start, end, vec![], vec![]),
    ];
    for (namespace, touchpoint, channel, pod, seed, from, until, restarts, gaps) in pods {
        for score in [3u8, 8, 10] {
            let mut value = 0u64;
            let mut samples = Vec::new();
            let first = from.div_euclid(SCRAPE) * SCRAPE + SCRAPE;
            let mut t = first;
            while t <= until.min(end) {
                if restarts.iter().any(|&r| r > t - SCRAPE && r <= t) {
                    value = 0;
                }
                // A new pod is scraped first before any answer (as the collectors register
                // every series up front).
                if t > first {
                    value += answers_at(seed, t, score);
                }
                if !gaps.iter().any(|&(a, b)| t > a && t < b) {
                    samples.push((t, value));
                }
                t += SCRAPE;
            }
            series.push(Series {
                namespace,
                touchpoint,
                channel,
                pod,
                score,
                samples,
            });
        }
    }
    series
}

fn openmetrics(series: &[Series]) -> String {
    let mut out = String::from(
        "# HELP cx_survey_responses Survey answers.\n# TYPE cx_survey_responses counter\n",
    );
    for s in series {
        let labels = format!(
            r#"namespace="{}",channel="{}",stage="purchase",touchpoint="{}",pod="{}",metric="nps",score="{}""#,
            s.namespace, s.channel, s.touchpoint, s.pod, s.score
        );
        for (t, value) in &s.samples {
            out.push_str(&format!(
                "cx_survey_responses_total{{{labels}}} {value} {t}\n"
            ));
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Evaluates `groups` over `[from, to]` with `promtool tsdb create-blocks-from rules` against
/// `prometheus` (its evaluation offsets hashed from the group and file names, as a server's
/// are) and moves the blocks into its storage (read after a restart). `name` names the files.
fn backfill(
    promtool: &Path,
    prometheus: &Prometheus,
    work: &Path,
    name: &str,
    groups: Vec<RuleGroup>,
    from: i64,
    to: i64,
) -> PathBuf {
    let rules = work.join(format!("rules-{name}.yaml"));
    let file = RuleFile { groups };
    std::fs::write(&rules, serde_yaml::to_string(&file).expect("yaml")).expect("rules");
    let output = work.join(format!("recorded-{name}"));
    let said = run(
        promtool,
        &[
            "tsdb",
            "create-blocks-from",
            "rules",
            &format!("--url={}", prometheus.url),
            &format!("--start={from}"),
            &format!("--end={to}"),
            &format!("--output-dir={}", output.display()),
            &rules.display().to_string(),
        ],
        work,
    );
    assert!(
        std::fs::read_dir(&output).is_ok_and(|mut blocks| blocks.next().is_some()),
        "{name}: no block written: {said}"
    );
    output
}

fn run(program: &Path, args: &[&str], dir: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// NPS and its answers from answers by score.
fn nps(by_score: &BTreeMap<u8, u64>) -> (f64, f64) {
    let all: u64 = by_score.values().sum();
    let promoters = by_score.get(&10).copied().unwrap_or(0) as f64;
    let detractors = by_score.get(&3).copied().unwrap_or(0) as f64;
    (100.0 * (promoters - detractors) / all as f64, all as f64)
}

/// The ground truth of an NPS KPI over `(from, to]`: the answers of the series `within` picks.
fn truth(series: &[Series], within: impl Fn(&Series) -> bool, from: i64, to: i64) -> (f64, f64) {
    let mut by_score = BTreeMap::new();
    for s in series.iter().filter(|s| within(s)) {
        *by_score.entry(s.score).or_insert(0) += s.answers_in(from, to);
    }
    nps(&by_score)
}

fn assert_reads(name: &str, measured: &Measurement, current: (f64, f64), previous: (f64, f64)) {
    let value = measured.value.unwrap_or_else(|| panic!("{name}: no value"));
    assert!(
        (value - current.0).abs() < 1e-9,
        "{name}: NPS {value}, the answers give {}",
        current.0
    );
    assert_eq!(
        measured.samples,
        SampleCount::Counted(current.1),
        "{name}: answers"
    );
    let before = measured
        .previous
        .unwrap_or_else(|| panic!("{name}: no previous cycle"));
    let previous_value = before
        .value
        .unwrap_or_else(|| panic!("{name}: no previous value"));
    assert!(
        (previous_value - previous.0).abs() < 1e-9,
        "{name}: previous NPS {previous_value}, the answers give {}",
        previous.0
    );
    assert_eq!(
        before.samples,
        SampleCount::Counted(previous.1),
        "{name}: previous answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn month_long_kpis_read_recorded_increments_and_equal_the_answers_through_restarts_gaps_and_rollouts()
 {
    let (Some(prometheus_bin), Some(promtool)) = (prometheus_binary(), promtool_binary()) else {
        return;
    };
    let version = run(&promtool, &["--version"], &std::env::temp_dir());
    let increase = if version.contains("version 2.") {
        Increase::Differences
    } else {
        Increase::Anchored
    };
    // Evaluated 200 s after a whole 5 minutes, a little before the history ends.
    let wall = Timestamp::now().as_second();
    let end = wall.div_euclid(STEP) * STEP - STEP;
    let now = end - STEP + 200;
    let start = now - 2 * DAY - 2 * 3600;
    let series = history(start, end, now);

    let work = std::env::temp_dir().join(format!("cx-kpi-history-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("a folder");
    std::fs::write(work.join("history.om"), openmetrics(&series)).expect("history written");
    let mut prometheus = Prometheus::start_on_history(prometheus_bin, |data| {
        run(
            &promtool,
            &[
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "history.om",
                &data.display().to_string(),
            ],
            &work,
        );
    })
    .await;

    // The recording rules, evaluated every 5 minutes over the history; b2b's miss 30 minutes of
    // its current window (a Prometheus down, say).
    // On the 5-minute grid, as a Prometheus evaluating the group would be.
    let grid = |t: i64| t.div_euclid(STEP) * STEP;
    let recorded_from = grid(start + 3600);
    let missed = (grid(now - 6 * 3600), grid(now - 6 * 3600) + 1800);
    let mut runs = vec![("retail", recorded_from, end)];
    runs.push(("b2b", recorded_from, missed.0));
    runs.push(("b2b", missed.1, end));
    let mut blocks = Vec::new();
    for (i, (namespace, from, to)) in runs.iter().enumerate() {
        let groups = vec![recording_group(namespace, increase)];
        blocks.push(backfill(
            &promtool,
            &prometheus,
            &work,
            &format!("steps-{i}"),
            groups,
            *from,
            *to,
        ));
    }
    prometheus.restart_adding(&blocks).await;
    blocks.clear();
    // Then the hourly sums of the steps, every hour; retail's miss an hour of its previous
    // cycle, whose steps it then reads whole.
    // (`create-blocks-from rules` stops at a 2-hour block whose part after the start holds no
    // evaluation: each run starts on a block's start.)
    let block = |t: i64| (t + 7199).div_euclid(7200) * 7200;
    let hours_from = block(recorded_from + 3600);
    let missed_hour = block(now - DAY - 6 * 3600);
    for (i, (namespace, from, to)) in [
        ("retail", hours_from, missed_hour - 1),
        ("retail", missed_hour + 7200, end),
        ("b2b", hours_from, end),
    ]
    .into_iter()
    .enumerate()
    {
        let groups = vec![hours_group(namespace, increase)];
        blocks.push(backfill(
            &promtool,
            &prometheus,
            &work,
            &format!("hours-{i}"),
            groups,
            from,
            to,
        ));
    }
    prometheus.restart_adding(&blocks).await;

    let mut yaml = vec![ORGANISATION.trim().to_string()];
    for (ns, tp, channel) in [
        ("retail", "checkout", "web"),
        ("retail", "app", "app"),
        ("retail", "kiosk", "kiosk"),
        ("retail", "store", "store"),
        ("b2b", "portal", "web"),
    ] {
        yaml.push(touchpoint(ns, tp, channel));
    }
    let channels: Vec<Channel> = documents(&yaml[0]);
    let touchpoints: Vec<Touchpoint> = yaml[1..]
        .iter()
        .map(|d| serde_yaml::from_str(d).expect("tp"))
        .collect();
    let kpis: Vec<ExperienceKPI> = [
        kpi("retail", "retail-nps", None),
        kpi("retail", "checkout-nps", Some("web")),
        kpi("retail", "app-nps", Some("app")),
        kpi("retail", "kiosk-nps", Some("kiosk")),
        kpi("retail", "store-nps", Some("store")),
        kpi("b2b", "portal-nps", None),
    ]
    .iter()
    .map(|d| serde_yaml::from_str(d).expect("kpi"))
    .collect();
    let journeys: &[CustomerJourney] = &[];
    let world = World::new(&channels, &touchpoints, &kpis, journeys);
    let requests = KpiRequest::all(&world);
    let at = Timestamp::from_second(now).expect("now");
    let report = measure_cycle(&prometheus.client, &requests, at).await;
    // One survey family query: retail's cycles from the recorded steps, b2b's current cycle from
    // its raw counters.
    assert_eq!(report.family_queries.len(), 1);
    let query = &report.family_queries[0];
    assert!(
        query.contains(r#"increase5m{namespace="retail", metric="nps"}"#)
            && query.contains(r#"cx_survey_responses_total{namespace="b2b", metric="nps"}"#),
        "{query}"
    );
    // retail's current cycle from its hourly sums, its previous one (an hour missed) from the
    // steps alone.
    assert_eq!(
        query
            .matches(r#"increase1h{namespace="retail", metric="nps"}"#)
            .count(),
        1,
        "{query}"
    );

    // The steps each window holds, from the marker the rules record with their evaluation time.
    let step = |query: String| {
        let client = &prometheus.client;
        async move {
            client
                .query_number(&query, at)
                .await
                .expect("a number")
                .expect("a step") as i64
        }
    };
    // Each namespace's group is evaluated at its own offset in the 5 minutes (Prometheus spreads
    // groups by a hash of their name), so each has its own grid.
    let marker = |namespace: &str, offset: &str| {
        format!(r#"{STEPS_RECORDED}{{namespace="{namespace}"}}[1d]{offset}"#)
    };
    let (first, last) = (
        step(format!("min_over_time({})", marker("retail", ""))).await,
        step(format!("max_over_time({})", marker("retail", ""))).await,
    );
    let (previous_first, previous_last) = (
        step(format!("min_over_time({})", marker("retail", " offset 1d"))).await,
        step(format!("max_over_time({})", marker("retail", " offset 1d"))).await,
    );
    assert_eq!(
        step(format!("count_over_time({})", marker("retail", ""))).await,
        DAY / STEP,
        "every step of the day recorded"
    );
    assert_eq!((last - first) / STEP, DAY / STEP - 1);
    assert_eq!(previous_last + STEP, first, "the cycles share no step");
    // (`create-blocks-from rules` evaluates in whole blocks: the gap is 30 minutes or more.)
    let b2b_steps = step(format!("count_over_time({})", marker("b2b", ""))).await;
    assert!(
        (1..DAY / STEP - 3).contains(&b2b_steps),
        "30 minutes of b2b's evaluations missed: {b2b_steps} steps recorded"
    );
    let (b2b_previous_first, b2b_previous_last) = (
        step(format!("min_over_time({})", marker("b2b", " offset 1d"))).await,
        step(format!("max_over_time({})", marker("b2b", " offset 1d"))).await,
    );
    assert_eq!(
        step(format!("count_over_time({})", marker("b2b", " offset 1d"))).await,
        DAY / STEP,
        "every step of b2b's previous cycle recorded (steps {b2b_previous_first}..{b2b_previous_last}, \
         now {now})"
    );

    let recorded = Some(CountSources {
        current: CountSource::Recorded,
        previous: CountSource::Recorded,
    });
    for (name, within) in [
        ("retail-nps", None),
        ("checkout-nps", Some("checkout")),
        ("app-nps", Some("app")),
        ("kiosk-nps", Some("kiosk")),
        ("store-nps", Some("store")),
    ] {
        let i = kpis
            .iter()
            .position(|k| k.name_any() == name)
            .expect("a KPI");
        let measured = report.results[i]
            .as_ref()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(measured.sources, recorded, "{name}");
        let picks =
            |s: &Series| s.namespace == "retail" && within.is_none_or(|tp| s.touchpoint == tp);
        // The recorded steps tile (first - 5m, last] and the previous cycle's steps the 5
        // minutes before each.
        let expected = (
            truth(&series, picks, first - STEP, last),
            truth(&series, picks, previous_first - STEP, previous_last),
        );
        assert_reads(name, measured, expected.0, expected.1);
    }
    // b2b's recorded steps miss 30 minutes of the current window: counted from the raw series
    // over exactly the window, and its previous cycle (recorded whole) from the recorded steps.
    let i = kpis
        .iter()
        .position(|k| k.name_any() == "portal-nps")
        .expect("a KPI");
    let portal = report.results[i].as_ref().expect("measured");
    assert_eq!(
        portal.sources,
        Some(CountSources {
            current: CountSource::PartlyRecorded,
            previous: CountSource::Recorded,
        })
    );
    let b2b = |s: &Series| s.namespace == "b2b";
    assert_reads(
        "portal-nps",
        portal,
        truth(&series, b2b, now - DAY, now),
        truth(&series, b2b, b2b_previous_first - STEP, b2b_previous_last),
    );

    // Two evaluation instants before retail's next step: the same numbers, though the app's
    // counter reset twice in its windows (the raw counters' `increase()` moves with the instant).
    // (After `now` when a whole second is left before the next step; the group's offset in the
    // 5 minutes comes from a hash, so the next step may fall within a second of `now`: then
    // just after the last step, which reads the same steps.)
    let later = if now + 1 < last + STEP {
        last + STEP - 1
    } else {
        last + 1
    };
    assert!(last < later && later < last + STEP && later != now);
    let later = measure_cycle(
        &prometheus.client,
        &requests,
        Timestamp::from_second(later).expect("later"),
    )
    .await;
    for (i, kpi) in kpis
        .iter()
        .enumerate()
        .filter(|(_, k)| k.namespace().as_deref() == Some("retail"))
    {
        assert_eq!(
            later.results[i].as_ref().expect("measured"),
            report.results[i].as_ref().expect("measured"),
            "{}",
            kpi.name_any()
        );
    }

    // A calendar month's previous cycle, last month, is read once and then kept: the next
    // cycle asks Prometheus for the current month alone and measures the same previous cycle.
    let monthly: ExperienceKPI = serde_yaml::from_str(
        &kpi("retail", "retail-nps-month", None).replace("window: 1d", "window: calendar-month"),
    )
    .expect("kpi");
    let monthly = [monthly];
    let world = World::new(&channels, &touchpoints, &monthly, journeys);
    let requests = KpiRequest::all(&world);
    let finished = WindowSpec::parse("calendar-month")
        .expect("window")
        .previous(at)
        .offset
        >= FINISHED_AFTER;
    let mut periods = FinishedPeriods::default();
    let first = measure_cycle_keeping(&prometheus.client, &requests, at, &mut periods).await;
    assert_eq!(first.finished_periods_reused, 0);
    assert_eq!(periods.len(), usize::from(finished));
    let again = Timestamp::from_second(now + 1).expect("a second later");
    let second = measure_cycle_keeping(&prometheus.client, &requests, again, &mut periods).await;
    assert_eq!(second.finished_periods_reused, usize::from(finished));
    // (The current month is counted from the raw counters here, two days of recorded steps
    // covering it only in part: its reset series move with the instant.)
    assert_eq!(
        second.results[0].as_ref().expect("measured").previous,
        first.results[0].as_ref().expect("measured").previous
    );
    drop(prometheus);
    let _ = std::fs::remove_dir_all(&work);
}

/// A namespace of more touchpoints than one family query may read ([`MAX_TOUCHPOINTS_PER_QUERY`]):
/// the survey family is split by touchpoint name into parts, each read separately, and their rows
/// merged give the namespace's KPI exactly, in both cycles. Three hours of 130 touchpoints'
/// counters, backfilled; one NPS KPI over the whole namespace, an hour long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_wider_than_one_query_is_read_in_parts_and_counted_exactly() {
    let (Some(prometheus_bin), Some(promtool)) = (prometheus_binary(), promtool_binary()) else {
        return;
    };
    const TOUCHPOINTS: usize = 130;
    let now = Timestamp::now().as_second().div_euclid(60) * 60 - 120;
    let names: Vec<&'static str> = (0..TOUCHPOINTS)
        .map(|i| &*Box::leak(format!("tp-{i:03}").into_boxed_str()))
        .collect();
    let mut series = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for score in [10, 8, 3] {
            let mut value = 0;
            let samples = (now - 3 * 3600..=now)
                .step_by(60)
                .map(|t| {
                    value += answers_at(i as u64, t, score);
                    (t, value)
                })
                .collect();
            series.push(Series {
                namespace: "wide",
                touchpoint: name,
                channel: "web",
                pod: "pool-0",
                score,
                samples,
            });
        }
    }
    let work = std::env::temp_dir().join(format!("cx-kpi-wide-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("a folder");
    std::fs::write(work.join("wide.om"), openmetrics(&series)).expect("history written");
    let prometheus = Prometheus::start_on_history(prometheus_bin, |data| {
        run(
            &promtool,
            &[
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "wide.om",
                &data.display().to_string(),
            ],
            &work,
        );
    })
    .await;

    let channels: Vec<Channel> = documents(
        "apiVersion: cx.conductor.dev/v1alpha1\nkind: Channel\nmetadata: { name: web, namespace: wide }\nspec: { type: web }",
    );
    let touchpoints: Vec<Touchpoint> = names
        .iter()
        .map(|name| serde_yaml::from_str(&touchpoint("wide", name, "web")).expect("tp"))
        .collect();
    let kpis: Vec<ExperienceKPI> = vec![
        serde_yaml::from_str(&kpi("wide", "wide-nps", None).replace("window: 1d", "window: 1h"))
            .expect("kpi"),
    ];
    let journeys: &[CustomerJourney] = &[];
    let world = World::new(&channels, &touchpoints, &kpis, journeys);
    let requests = KpiRequest::all(&world);
    let report = measure_cycle(
        &prometheus.client,
        &requests,
        Timestamp::from_second(now).expect("now"),
    )
    .await;
    const { assert!(TOUCHPOINTS > MAX_TOUCHPOINTS_PER_QUERY) };
    assert_eq!(
        report.family_queries.len(),
        TOUCHPOINTS.div_ceil(MAX_TOUCHPOINTS_PER_QUERY),
        "{:?}",
        report.family_queries
    );
    for (part, query) in report.family_queries.iter().enumerate() {
        // Each part names its touchpoints: the first 100 in name order, then the rest.
        let first = names[part * MAX_TOUCHPOINTS_PER_QUERY];
        assert!(
            query.contains(&format!("touchpoint=~\"{first}|")),
            "{query}"
        );
    }
    let measured = report.results[0].as_ref().expect("measured");
    assert_eq!(
        measured.sources,
        Some(CountSources {
            current: CountSource::NotRecorded,
            previous: CountSource::NotRecorded,
        })
    );
    let all = |_: &Series| true;
    assert_reads(
        "wide-nps",
        measured,
        truth(&series, all, now - 3600, now),
        truth(&series, all, now - 7200, now - 3600),
    );
    drop(prometheus);
    let _ = std::fs::remove_dir_all(&work);
}
