//! What a 28-day KPI cycle costs Prometheus, on backfilled history with the collectors' real
//! series: the raw counters' exact formula against the recorded 5-minute increments.
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
//!    with `promtool tsdb create-blocks-from rules` (the operator's recording group);
//! 4. runs the builtin KPIs' family queries for a 28-day window (current and previous cycle in
//!    one query each, as the operator batches them) over the raw counters and over the recorded
//!    increments, three times each, and reports per cycle Prometheus' CPU (from
//!    `/proc/<pid>/stat`), the samples it read (`stats=all`: `totalQueryableSamples`) and the
//!    slowest query, per series and extrapolated to 1,000 touchpoints; plus one evaluation of
//!    the recording group (every 5 minutes in production);
//! 5. checks the NPS answers counted from the recorded increments against the answers written.
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
use cx_conductor::kpi::promql::RangeEnds;
use cx_conductor::kpi::recording::{
    Increase, RECORDED, STEPS_RECORDED, recording_group, step_increase,
};
use cx_conductor::kpi::rules::RuleFile;
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
    let file = RuleFile {
        groups: vec![recording_group(NAMESPACE, increase)],
    };
    std::fs::write(
        work.join("rules.yaml"),
        serde_yaml::to_string(&file).expect("yaml"),
    )
    .expect("rules");
    // Two halves at once (two cores); the group's evaluation instants are the same in both.
    let middle = start + 3600 + (end - start - 3600) / 2;
    let halves: Vec<std::process::Child> = [(start + 3600, middle), (middle, end)]
        .iter()
        .enumerate()
        .map(|(i, (from, to))| {
            Command::new(&promtool)
                .args(["tsdb", "create-blocks-from", "rules"])
                .arg(format!("--url={}", prometheus.url))
                .arg(format!("--start={from}"))
                .arg(format!("--end={to}"))
                .arg(format!(
                    "--output-dir={}",
                    work.join(format!("recorded-{i}")).display()
                ))
                .arg("rules.yaml")
                .current_dir(&work)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("promtool")
        })
        .collect();
    for (i, child) in halves.into_iter().enumerate() {
        let output = child.wait_with_output().expect("promtool");
        assert!(
            output.status.success(),
            "promtool create-blocks-from rules: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for block in std::fs::read_dir(work.join(format!("recorded-{i}"))).expect("blocks") {
            let block = block.expect("a block").path();
            std::fs::rename(
                &block,
                prometheus.data_dir().join(block.file_name().expect("name")),
            )
            .expect("block moved");
        }
    }
    prometheus.restart().await;
    println!(
        "  recording rules backfilled in {:.0?}",
        rules_started.elapsed()
    );
    // Let the storage settle before measuring CPU: the backfilled rule blocks (two hours each)
    // are compacted after the restart, which takes minutes of CPU that would otherwise be
    // counted against whichever queries run meanwhile. Settled: under 0.2 s of CPU in 10 s.
    let pid = prometheus.pid().expect("running");
    let settling = Instant::now();
    loop {
        let before = cpu_of(pid);
        tokio::time::sleep(Duration::from_secs(10)).await;
        if cpu_of(pid) - before < Duration::from_millis(200)
            || settling.elapsed() > Duration::from_secs(1800)
        {
            break;
        }
    }
    println!(
        "  storage settled (compaction done) in {:.0?}",
        settling.elapsed()
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
    let queries = |counting: &CycleCounting| -> Vec<String> {
        families
            .iter()
            .map(|f| {
                f.query(
                    &themes,
                    true,
                    &[] as &[&str],
                    (&current, counting),
                    Some((&previous, counting)),
                )
            })
            .collect()
    };
    let raw = CycleCounting {
        recorded: vec![],
        raw: vec![NAMESPACE.into()],
        ends: None,
    };
    // As the operator reads them: ranges fitted to the server's ends.
    let recorded = CycleCounting {
        recorded: vec![NAMESPACE.into()],
        raw: vec![],
        ends: Some(if increase == Increase::Anchored {
            RangeEnds::LeftOpen
        } else {
            RangeEnds::Closed
        }),
    };
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

    let (raw_cpu, raw_samples, raw_slowest) = cycle_cost(&prometheus, &queries(&raw), now).await;
    let (rec_cpu, rec_samples, rec_slowest) =
        cycle_cost(&prometheus, &queries(&recorded), now).await;
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
        ("recorded increments", rec_cpu, rec_samples, rec_slowest),
        (
            "recording group, one evaluation",
            rule_cpu,
            rule_samples,
            rule_slowest,
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
        "  recorded ÷ raw: CPU {:.3}, samples {:.4}",
        rec_cpu.as_secs_f64() / raw_cpu.as_secs_f64().max(1e-9),
        rec_samples / raw_samples.max(1.0)
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
        (&current, &raw),
        Some((&previous, &raw)),
    );
    let raw_answers = sum_rows(&prometheus, &raw_query, now, "current").await;
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
