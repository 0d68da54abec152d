//! What a 28-day KPI cycle costs Prometheus, on backfilled history with the collectors' real
//! series: the raw counters' exact formula, the recorded 5-minute increments, and their hourly
//! sums with the steps at the window's ends (what the operator reads).
//!
//! `cargo bench --bench kpi_history` (env `CX_BENCH_TOUCHPOINTS`, default 20;
//! `CX_BENCH_DAYS`, default 56: a 28-day window and its previous cycle):
//! 1. takes the series a collector exposes for the KPIs (the recorded counters of
//!    `cx_conductor::kpi::recording::RECORDED`) from real collectors, one per channel of the
//!    `kpi_cycle` organisation (surveys nps, csat and ces, six outcomes, waits, comments and the
//!    example journey's themes);
//! 2. writes that many touchpoints' series at a 30 s scrape over the days, each collector
//!    restarted once at a random instant (its counters reset), day by day with `promtool tsdb
//!    create-blocks-from openmetrics` (one-day blocks);
//! 3. starts Prometheus on them and records the namespace's increments over the whole history
//!    with `promtool tsdb create-blocks-from rules` (the operator's recording group), then their
//!    hourly sums the same way (its hours group);
//! 4. runs the builtin KPIs' family queries for a 28-day window (current and previous cycle in
//!    one query each, as the operator batches them) over the raw counters, the recorded steps
//!    and the hourly sums, three times each, and reports per cycle Prometheus' CPU (from
//!    `/proc/<pid>/stat`), the samples it read (`stats=all`: `totalQueryableSamples`) and the
//!    slowest query, per series and extrapolated to 1,000 touchpoints; plus one evaluation of
//!    each rule group (every 5 minutes and every hour in production);
//! 5. checks the NPS answers counted from the recorded increments against the answers written,
//!    and from the hourly sums against the steps (both cycles).
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it only prints how to run it.

#[path = "../tests/support/prometheus.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cx_conductor::api::*;
use cx_conductor::core::listening::{theme_sources, themes_of};
use cx_conductor::core::plan::collector_config;
use cx_conductor::kpi::batch::{CycleCounting, Family};
use cx_conductor::kpi::cycle::MAX_TOUCHPOINTS_PER_QUERY;
use cx_conductor::kpi::prometheus::form_encode;
use cx_conductor::kpi::promql::{HourParts, RangeEnds, at_modifier};
use cx_conductor::kpi::recording::{
    HOURS_RECORDED, Increase, RECORDED, STEPS_RECORDED, hour_sum, hours_group, recording_group,
    step_increase,
};
use cx_conductor::kpi::rules::{RuleFile, RuleGroup};
use cx_conductor::kpi::{Span, WindowSpec};
use k8s_openapi::jiff::Timestamp;
use support::{
    Prometheus, RunningCollector, exposition, post_form, prometheus_binary, promtool_binary,
};

const NAMESPACE: &str = "brand";
const SCRAPE: i64 = 30;
const DAY: i64 = 86_400;
const RUNS: usize = 3;
const CHANNELS: [(&str, &str, i32); 4] = [
    ("web", "web", 60),
    ("app", "mobile-app", 60),
    ("call-centre", "voice", 25),
    ("chat", "chat", 120),
];

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "kpi_history: run with `cargo bench --bench kpi_history` (env CX_BENCH_TOUCHPOINTS, CX_BENCH_DAYS)"
        );
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench());
}

fn setting(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One series of the history: its label prefix, and whether it is an NPS answer (score).
struct Shape {
    metric: String,
    labels: Vec<(String, String)>,
}

/// The counters the KPIs read, as a collector of `channel` exposes them (identity labels left
/// out: the history sets them).
async fn shapes() -> Vec<Vec<Shape>> {
    let journey: CustomerJourney = serde_yaml::from_str(
        &std::fs::read_to_string(support::repo("examples/retail/journey.yaml")).expect("journey"),
    )
    .expect("the example journey");
    let sources = theme_sources(std::slice::from_ref(&journey));
    let recorded: Vec<&str> = RECORDED.iter().map(|c| c.metric).collect();
    let mut out = Vec::new();
    for (name, kind, promise) in CHANNELS {
        let channel: Channel = serde_yaml::from_str(&format!(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: Channel\nmetadata: {{ name: {name}, namespace: {NAMESPACE} }}\nspec: {{ type: {kind}, serviceLevels: {{ firstResponseSeconds: {promise} }} }}\n"
        ))
        .expect("channel");
        let touchpoint: Touchpoint = serde_yaml::from_str(&format!(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: Touchpoint\nmetadata: {{ name: tp, namespace: {NAMESPACE} }}\nspec:\n  channel: {name}\n  stage: purchase\n  signals:\n    surveys: [{{ metric: nps }}, {{ metric: csat, scale: 5 }}, {{ metric: ces }}]\n    interactions: {{ outcomes: [completed, abandoned, resolved-first-contact, resolved, unresolved, escalated], timings: [wait] }}\n"
        ))
        .expect("touchpoint");
        let mut journey = journey.clone();
        journey.metadata.namespace = Some(NAMESPACE.into());
        let mut config = collector_config(&touchpoint, Some(&channel));
        config.themes = themes_of(&touchpoint, Some(&channel), &sources);
        let collector = RunningCollector::start(&config).await;
        let text = exposition(collector.addr).await;
        let mut series = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, rest)) = line.split_once('{') else {
                continue;
            };
            if !recorded.contains(&name) {
                continue;
            }
            let labels = rest.split_once('}').map(|(l, _)| l).unwrap_or_default();
            let labels: Vec<(String, String)> = labels
                .split("\",")
                .filter_map(|pair| {
                    let (k, v) = pair.split_once("=\"")?;
                    Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                })
                .filter(|(k, _)| {
                    !["namespace", "touchpoint", "channel", "stage"].contains(&k.as_str())
                })
                .collect();
            series.push(Shape {
                metric: name.to_owned(),
                labels,
            });
        }
        out.push(series);
    }
    out
}

/// xorshift64*: the history's randomness, seeded per series.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// A series being written: its prefix, its counter, and (NPS answers) the increment of every
/// scrape, for the ground truth.
struct Written {
    prefix: String,
    value: u64,
    state: u64,
    restart: i64,
    nps: Option<u8>,
    increments: Vec<(i64, u32)>,
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
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits for a `promtool` conversion and removes its input.
fn finish(child: std::process::Child, file: &Path) {
    let output = child.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "promtool create-blocks-from openmetrics: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_file(file);
}

/// Prometheus' CPU time so far (user + system).
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// One query with `stats=all`: (samples read, execution seconds).
async fn with_stats(prometheus: &Prometheus, query: &str, at: i64) -> (f64, f64) {
    let body = post_form(
        &format!("{}/api/v1/query", prometheus.url),
        format!(
            "query={}&time={at}&stats=all&timeout=120s",
            form_encode(query)
        ),
    )
    .await;
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["status"], "success", "{query}: {body:.300}");
    let stats = &answer["data"]["stats"];
    (
        stats["samples"]["totalQueryableSamples"]
            .as_f64()
            .unwrap_or(f64::NAN),
        stats["timings"]["execTotalTime"]
            .as_f64()
            .unwrap_or(f64::NAN),
    )
}

/// Runs `queries` one after the other `RUNS` times: the median cycle's (CPU, samples, slowest
/// query seconds).
async fn cycle_cost(prometheus: &Prometheus, queries: &[String], at: i64) -> (Duration, f64, f64) {
    let pid = prometheus.pid().expect("running");
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let before = cpu_of(pid);
        let (mut samples, mut slowest) = (0.0, 0.0_f64);
        for query in queries {
            let (read, seconds) = with_stats(prometheus, query, at).await;
            samples += read;
            slowest = slowest.max(seconds);
        }
        runs.push((cpu_of(pid) - before, samples, slowest));
    }
    runs.sort_by_key(|r| r.0);
    runs[RUNS / 2]
}

async fn bench() {
    let (Some(prometheus_bin), Some(promtool)) = (prometheus_binary(), promtool_binary()) else {
        return;
    };
    let touchpoints = setting("CX_BENCH_TOUCHPOINTS", 20) as usize;
    let days = setting("CX_BENCH_DAYS", 56);
    let version = run(&promtool, &["--version"], &std::env::temp_dir());
    let increase = if version.contains("version 2.") {
        Increase::Differences
    } else {
        Increase::Anchored
    };
    let shapes = shapes().await;
    let per_touchpoint: Vec<usize> = shapes.iter().map(Vec::len).collect();

    let wall = Timestamp::now().as_second();
    let end = wall.div_euclid(DAY) * DAY;
    let now = end - 100;
    let start = end - days * DAY - DAY;
    let work = std::env::temp_dir().join(format!("cx-kpi-history-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("a folder");

    let mut written: Vec<Written> = Vec::new();
    for t in 0..touchpoints {
        let (channel, _, _) = CHANNELS[t % CHANNELS.len()];
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ (t as u64 + 1);
        let restart = start + (next(&mut seed) % (days * DAY) as u64) as i64;
        for (s, shape) in shapes[t % CHANNELS.len()].iter().enumerate() {
            let mut labels = format!(
                r#"namespace="{NAMESPACE}",channel="{channel}",stage="purchase",touchpoint="tp-{t}",pod="tp-{t}-0""#
            );
            for (k, v) in &shape.labels {
                labels.push_str(&format!(r#",{k}="{v}""#));
            }
            let nps = (shape.metric == "cx_survey_responses_total"
                && shape
                    .labels
                    .iter()
                    .any(|(k, v)| k == "metric" && v == "nps"))
            .then(|| {
                shape
                    .labels
                    .iter()
                    .find(|(k, _)| k == "score")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0)
            });
            written.push(Written {
                prefix: format!("{}{{{labels}}} ", shape.metric),
                value: 0,
                state: seed ^ ((s as u64 + 1) << 32),
                restart,
                nps,
                increments: Vec::new(),
            });
        }
    }
    let series_count = written.len();
    println!(
        "kpi_history: {touchpoints} touchpoints × {per_touchpoint:?} series (by channel) = {series_count} series, {days} days + 1 at a {SCRAPE} s scrape ({} samples), {}",
        series_count as i64 * (days + 1) * DAY / SCRAPE,
        version.lines().next().unwrap_or_default()
    );

    let generated = Instant::now();
    let mut prometheus = Prometheus::start_on_history_with(
        prometheus_bin,
        &["--storage.tsdb.max-block-duration=1d"],
        |data| {
            // Each day's file is turned into a block while the next one is written.
            let mut converting: Option<(std::process::Child, std::path::PathBuf)> = None;
            for day in 0..=days {
                let from = start + day * DAY;
                let file = work.join(format!("day-{}.om", day % 2));
                let mut out = std::io::BufWriter::with_capacity(
                    1 << 22,
                    std::fs::File::create(&file).expect("day file"),
                );
                for series in written.iter_mut() {
                    let mut t = from + SCRAPE;
                    while t <= from + DAY {
                        if series.restart > t - SCRAPE && series.restart <= t {
                            series.value = 0;
                        }
                        // About one increment in six scrapes, sometimes two.
                        let add = match next(&mut series.state) % 12 {
                            0 => 2,
                            1 => 1,
                            _ => 0,
                        };
                        series.value += add;
                        if series.nps.is_some() && add > 0 {
                            series.increments.push((t, add as u32));
                        }
                        writeln!(out, "{}{} {t}", series.prefix, series.value).expect("write");
                        t += SCRAPE;
                    }
                }
                writeln!(out, "# EOF").expect("write");
                out.flush().expect("flush");
                drop(out);
                if let Some((child, done)) = converting.take() {
                    finish(child, &done);
                }
                let child = Command::new(&promtool)
                    .args([
                        "tsdb",
                        "create-blocks-from",
                        "openmetrics",
                        "--max-block-duration=24h",
                    ])
                    .arg(&file)
                    .arg(data)
                    .current_dir(&work)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("promtool");
                converting = Some((child, file));
            }
            if let Some((child, done)) = converting.take() {
                finish(child, &done);
            }
        },
    )
    .await;
    println!("  history written in {:.0?}", generated.elapsed());

    let rules_started = Instant::now();
    // Two halves at once (two cores); the group's evaluation instants are the same in both.
    let middle = start + 3600 + (end - start - 3600) / 2;
    backfill_in_halves(
        &promtool,
        &prometheus,
        &work,
        "rules",
        recording_group(NAMESPACE, increase),
        [(start + 3600, middle), (middle, end)],
    );
    prometheus.restart().await;
    // Then their hourly sums, over the recorded steps, from the first whole 2-hour block after
    // the first steps (`create-blocks-from rules` stops at a block whose part after the start
    // holds no evaluation).
    let block = |t: i64| (t + 7199).div_euclid(7200) * 7200;
    let middle = block(middle);
    backfill_in_halves(
        &promtool,
        &prometheus,
        &work,
        "hours",
        hours_group(NAMESPACE, increase),
        [(block(start + 3 * 3600), middle), (middle, end)],
    );
    prometheus.restart().await;
    println!(
        "  recording rules backfilled in {:.0?}",
        rules_started.elapsed()
    );
    // Let the storage settle before measuring CPU: the backfilled blocks (two hours each, one
    // per rule: thousands) are compacted after the restart, from the first compaction tick (a
    // minute), which takes minutes of CPU that would otherwise be counted against whichever
    // queries run meanwhile. Settled: past two minutes, the number of blocks unchanged over the
    // last 30 seconds and under 0.2 s of CPU in the last 15.
    let pid = prometheus.pid().expect("running");
    let settling = Instant::now();
    let mut blocks = vec![blocks_loaded(&prometheus)];
    loop {
        let before = cpu_of(pid);
        tokio::time::sleep(Duration::from_secs(15)).await;
        let idle = cpu_of(pid) - before < Duration::from_millis(200);
        blocks.push(blocks_loaded(&prometheus));
        let steady =
            blocks.len() >= 3 && blocks[blocks.len() - 3..].windows(2).all(|w| w[0] == w[1]);
        if (settling.elapsed() > Duration::from_secs(120) && idle && steady)
            || settling.elapsed() > Duration::from_secs(3600)
        {
            break;
        }
    }
    println!(
        "  storage settled (compaction done) in {:.0?}, {} blocks loaded",
        settling.elapsed(),
        blocks_loaded(&prometheus)
    );

    // A window of half the history: 28 days by default, its previous cycle the other half.
    let window_days = days / 2;
    let window = WindowSpec::parse(&format!("{window_days}d")).expect("window");
    let at = Timestamp::from_second(now).expect("now");
    let (current, previous): (Span, Span) = (window.current(at), window.previous(at));
    let themes = ["delivery"];
    let families = [
        Family::Survey(SurveyMetric::Nps),
        Family::Survey(SurveyMetric::Csat),
        Family::Survey(SurveyMetric::Ces),
        Family::Interactions,
        Family::Waits,
        Family::Comments,
    ];
    let queries = |counting: &(CycleCounting, CycleCounting)| -> Vec<String> {
        families
            .iter()
            .map(|f| {
                f.query(
                    &themes,
                    true,
                    &[] as &[&str],
                    (&current, &counting.0),
                    Some((&previous, &counting.1)),
                )
            })
            .collect()
    };
    let raw = CycleCounting {
        raw: vec![NAMESPACE.into()],
        ..CycleCounting::default()
    };
    let raw = (raw.clone(), raw);
    // As the operator reads them: ranges fitted to the server's ends.
    let ends = if increase == Increase::Anchored {
        RangeEnds::LeftOpen
    } else {
        RangeEnds::Closed
    };
    let steps = CycleCounting {
        recorded: vec![NAMESPACE.into()],
        ends: Some(ends),
        ..CycleCounting::default()
    };
    let recorded = (steps.clone(), steps);
    let hourly = |span: &Span| CycleCounting {
        hours: vec![NAMESPACE.into()],
        hour_parts: Some(HourParts::of(span, now * 1000).expect("hours in the window")),
        ends: Some(ends),
        ..CycleCounting::default()
    };
    let hours = (hourly(&current), hourly(&previous));
    for (cycle, span) in [("current", &current), ("previous", &previous)] {
        let parts = HourParts::of(span, now * 1000).expect("hours");
        let (length, at) = parts.selection(ends);
        let recorded_hours = client_number(
            &prometheus,
            &format!(
                "count_over_time({HOURS_RECORDED}{{namespace=\"{NAMESPACE}\"}}[{}ms]{})",
                length.as_millis(),
                at_modifier(at)
            ),
            now,
        )
        .await;
        println!(
            "  hourly sums recorded in the {cycle} window: {recorded_hours} of {}",
            parts.hours()
        );
    }
    let coverage = client_number(
        &prometheus,
        &format!("count_over_time({STEPS_RECORDED}{{namespace=\"{NAMESPACE}\"}}[{window_days}d] offset {window_days}d)"),
        now,
    )
    .await;
    println!(
        "  steps recorded in the previous cycle's window: {coverage} of {}",
        window_days * 288
    );

    if std::env::var_os("CX_BENCH_DIAGNOSE").is_some() {
        // Each family query alone, steps then hours, and the hourly selector alone.
        let parts = HourParts::of(&current, now * 1000).expect("hours");
        let (length, at) = parts.selection(ends);
        let bare = format!(
            "sum by (namespace, touchpoint, score) (sum_over_time(touchpoint:cx_survey_responses_total:increase1h{{namespace=\"{NAMESPACE}\", metric=\"nps\"}}[{}ms]{}))",
            length.as_millis(),
            at_modifier(at)
        );
        let bare_steps = format!(
            "sum by (namespace, touchpoint, score) (sum_over_time(touchpoint:cx_survey_responses_total:increase5m{{namespace=\"{NAMESPACE}\", metric=\"nps\"}}[{window_days}d]))"
        );
        for (name, query) in queries(&recorded)
            .into_iter()
            .map(|q| ("steps", q))
            .chain(queries(&hours).into_iter().map(|q| ("hours", q)))
            .chain([("bare hours", bare), ("bare steps", bare_steps)])
        {
            let (cpu, samples, _) =
                cycle_cost(&prometheus, std::slice::from_ref(&query), now).await;
            println!(
                "  {name}: {:.3} s, {samples:.0} samples: {:.120}",
                cpu.as_secs_f64(),
                query
            );
        }
    }
    let (raw_cpu, raw_samples, raw_slowest) = cycle_cost(&prometheus, &queries(&raw), now).await;
    let (rec_cpu, rec_samples, rec_slowest) =
        cycle_cost(&prometheus, &queries(&recorded), now).await;
    let (hours_cpu, hours_samples, hours_slowest) =
        cycle_cost(&prometheus, &queries(&hours), now).await;
    // The hourly group's own cost, every hour.
    let hour_rules: Vec<String> = RECORDED
        .iter()
        .map(|c| hour_sum(c, NAMESPACE, increase))
        .collect();
    let (hour_rule_cpu, hour_rule_samples, hour_rule_slowest) =
        cycle_cost(&prometheus, &hour_rules, now).await;
    // The recording group's own cost, every 5 minutes: one evaluation of each rule.
    let rules: Vec<String> = RECORDED
        .iter()
        .map(|c| step_increase(c, NAMESPACE, increase))
        .collect();
    let (rule_cpu, rule_samples, rule_slowest) = cycle_cost(&prometheus, &rules, now).await;

    let scale = 1000.0 / touchpoints as f64;
    let per_series = |x: f64| x / series_count as f64;
    println!(
        "\n  {window_days}-day KPI cycle (6 family queries, current + previous), median of {RUNS}; ×{scale:.0} for 1,000 touchpoints:"
    );
    println!(
        "  | | Prometheus CPU per cycle | samples read | slowest query | CPU at 1,000 touchpoints (per 5-min cycle) | slowest query at 1,000, in one query / split by {MAX_TOUCHPOINTS_PER_QUERY} touchpoints |"
    );
    println!("  |---|---|---|---|---|---|");
    let split = MAX_TOUCHPOINTS_PER_QUERY.min(1000) as f64 / touchpoints as f64;
    for (name, cpu, samples, slowest) in [
        (
            "raw counters (exact formula)",
            raw_cpu,
            raw_samples,
            raw_slowest,
        ),
        ("recorded 5-minute steps", rec_cpu, rec_samples, rec_slowest),
        (
            "hourly sums + the steps at the ends",
            hours_cpu,
            hours_samples,
            hours_slowest,
        ),
        (
            "steps group, one evaluation (every 5 min)",
            rule_cpu,
            rule_samples,
            rule_slowest,
        ),
        (
            "hours group, one evaluation (every hour)",
            hour_rule_cpu,
            hour_rule_samples,
            hour_rule_slowest,
        ),
    ] {
        let at_scale = cpu.as_secs_f64() * scale;
        println!(
            "  | {name} | {:.2} s | {samples:.0} ({:.0}/series) | {slowest:.2} s | {at_scale:.1} s ({:.2} core) | {:.1} s / {:.1} s |",
            cpu.as_secs_f64(),
            per_series(samples),
            at_scale / 300.0,
            slowest * scale,
            slowest * split
        );
    }
    println!(
        "  steps ÷ raw: CPU {:.3}, samples {:.4}; hours ÷ raw: CPU {:.3}, samples {:.4}; hours ÷ steps: CPU {:.3}, samples {:.4}",
        rec_cpu.as_secs_f64() / raw_cpu.as_secs_f64().max(1e-9),
        rec_samples / raw_samples.max(1.0),
        hours_cpu.as_secs_f64() / raw_cpu.as_secs_f64().max(1e-9),
        hours_samples / raw_samples.max(1.0),
        hours_cpu.as_secs_f64() / rec_cpu.as_secs_f64().max(1e-9),
        hours_samples / rec_samples.max(1.0)
    );
    // Per 5-minute cycle at 1,000 touchpoints, with the rules' own cost: the KPI cycle, one
    // steps evaluation, and a twelfth of an hours evaluation.
    let total = |cycle: Duration| {
        (cycle.as_secs_f64() + rule_cpu.as_secs_f64() + hour_rule_cpu.as_secs_f64() / 12.0) * scale
            / 300.0
    };
    println!(
        "  Prometheus at 1,000 touchpoints, KPI cycle + rules: steps {:.2} core, hourly sums {:.2} core",
        total(rec_cpu),
        total(hours_cpu)
    );

    // Ground truth: the NPS answers of the recorded steps' span against the answers written.
    let marker = format!("{STEPS_RECORDED}{{namespace=\"{NAMESPACE}\"}}[{window_days}d]");
    let first = client_number(&prometheus, &format!("min_over_time({marker})"), now).await as i64;
    let last = client_number(&prometheus, &format!("max_over_time({marker})"), now).await as i64;
    let truth: u64 = written
        .iter()
        .filter(|s| s.nps.is_some())
        .flat_map(|s| s.increments.iter())
        .filter(|(t, _)| *t > first - 300 && *t <= last)
        .map(|(_, n)| u64::from(*n))
        .sum();
    let counted = |counting: &str| {
        format!(
            "sum({counting}(touchpoint:cx_survey_responses_total:increase5m{{namespace=\"{NAMESPACE}\", metric=\"nps\"}}[{window_days}d]))"
        )
    };
    let recorded_answers = client_number(&prometheus, &counted("sum_over_time"), now).await;
    let raw_truth: u64 = written
        .iter()
        .filter(|s| s.nps.is_some())
        .flat_map(|s| s.increments.iter())
        .filter(|(t, _)| *t > now - window_days * DAY && *t <= now)
        .map(|(_, n)| u64::from(*n))
        .sum();
    let raw_query = families[0].query(
        &[] as &[&str],
        false,
        &[] as &[&str],
        (&current, &raw.0),
        Some((&previous, &raw.1)),
    );
    let raw_answers = sum_rows(&prometheus, &raw_query, now, "current").await;
    let (mut from_steps, mut from_hours) = (Vec::new(), Vec::new());
    for cycle in ["current", "previous"] {
        from_steps.push(sum_rows(&prometheus, &queries(&recorded)[0], now, cycle).await);
        from_hours.push(sum_rows(&prometheus, &queries(&hours)[0], now, cycle).await);
    }
    println!(
        "  NPS answers (current, previous) from the steps {from_steps:?}, from the hourly sums {from_hours:?}"
    );
    assert_eq!(
        from_hours, from_steps,
        "the hourly sums count every step once"
    );
    println!(
        "\n  NPS answers, {window_days} days: recorded increments {recorded_answers:.0}, written {truth} (over the recorded steps); raw counters {raw_answers:.0}, written {raw_truth} (over the window)"
    );
    if increase == Increase::Anchored {
        assert_eq!(
            recorded_answers, truth as f64,
            "the recorded increments count every answer"
        );
    }
    drop(prometheus);
    let _ = std::fs::remove_dir_all(&work);
}

/// Evaluates `group` (written to `<name>.yaml`) with `promtool tsdb create-blocks-from rules`
/// over each of `halves` at once (two cores), and moves the blocks into `prometheus`' storage
/// (read after a restart).
fn backfill_in_halves(
    promtool: &Path,
    prometheus: &Prometheus,
    work: &Path,
    name: &str,
    group: RuleGroup,
    halves: [(i64, i64); 2],
) {
    let file = RuleFile {
        groups: vec![group],
    };
    std::fs::write(
        work.join(format!("{name}.yaml")),
        serde_yaml::to_string(&file).expect("yaml"),
    )
    .expect("rules");
    let children: Vec<std::process::Child> = halves
        .iter()
        .enumerate()
        .map(|(i, (from, to))| {
            Command::new(promtool)
                .args(["tsdb", "create-blocks-from", "rules"])
                .arg(format!("--url={}", prometheus.url))
                .arg(format!("--start={from}"))
                .arg(format!("--end={to}"))
                .arg(format!(
                    "--output-dir={}",
                    work.join(format!("{name}-{i}")).display()
                ))
                .arg(format!("{name}.yaml"))
                .current_dir(work)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("promtool")
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().expect("promtool");
        assert!(
            output.status.success(),
            "promtool create-blocks-from rules: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for block in std::fs::read_dir(work.join(format!("{name}-{i}"))).expect("blocks") {
            let block = block.expect("a block").path();
            std::fs::rename(
                &block,
                prometheus.data_dir().join(block.file_name().expect("name")),
            )
            .expect("block moved");
        }
    }
}

/// Prometheus' own `prometheus_tsdb_blocks_loaded`, from its `/metrics`.
fn blocks_loaded(prometheus: &Prometheus) -> String {
    let output = Command::new("curl")
        .args(["-s", &format!("{}/metrics", prometheus.url)])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("prometheus_tsdb_blocks_loaded "))
        .unwrap_or("?")
        .to_owned()
}

async fn client_number(prometheus: &Prometheus, query: &str, at: i64) -> f64 {
    prometheus
        .client
        .query_number(query, Timestamp::from_second(at).expect("time"))
        .await
        .expect("an answer")
        .expect("a number")
}

/// The sum of a family query's rows of one cycle.
async fn sum_rows(prometheus: &Prometheus, query: &str, at: i64, cycle: &str) -> f64 {
    let answer = prometheus
        .client
        .query(query, Timestamp::from_second(at).expect("time"))
        .await
        .expect("an answer");
    match answer {
        cx_conductor::kpi::prometheus::QueryResult::Vector(rows) => rows
            .iter()
            .filter(|r| r.labels.get("cx_conductor_cycle").map(String::as_str) == Some(cycle))
            .map(|r| r.value)
            .sum(),
        cx_conductor::kpi::prometheus::QueryResult::Scalar(v) => v,
    }
}
