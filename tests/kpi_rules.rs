//! The KPI alert rules of `examples/retail`, checked by Prometheus' own tools: `promtool check
//! rules` accepts them, and `promtool test rules` proves, for every KPI, that the breach alert
//! fires once the breach has lasted its `for:` duration (not before), with the owner's routing
//! labels and the value, target and gap in its description; that the at-risk alert fires as a
//! warning; and that InsufficientData and Unknown fire nothing.
//!
//! Needs `promtool` (Debian package `prometheus`); skipped loudly without it unless `CI` is set.

#[path = "support/prometheus.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use cx_conductor::api::{Direction, ExperienceKPI};
use cx_conductor::kpi::metrics::{KpiLabels, STATES};
use cx_conductor::kpi::promql::{HourParts, RangeEnds, at_modifier, counted, hours, steps};
use cx_conductor::kpi::recording::{
    HOURS_RECORDED, Increase, RECORDED, hours_group, recording_group,
};
use cx_conductor::kpi::rules::{
    AT_RISK_ALERT, BREACHED_ALERT, RuleFile, prometheus_rules, rule_file,
};
use cx_conductor::kpi::window::{Span, WindowSpec};
use cx_conductor::manifest::{Inventory, load_paths};
use cx_conductor::schema::SchemaValidator;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use support::{promtool_binary, repo};

/// The gap every test series shows (≥ 1, so `humanize` prints it plainly).
const GAP: f64 = 2.0;

fn retail_kpis() -> Vec<ExperienceKPI> {
    let documents = load_paths(&[repo("examples/retail")]).expect("examples load");
    let inventory = Inventory::from_documents(&documents, &SchemaValidator::new());
    assert!(
        inventory.kpis.len() >= 10,
        "the retail example has its KPIs"
    );
    inventory.kpis
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cx-kpi-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes `tests` (a `promtool test rules` file) to `dir`/`file` and runs them: promtool's output.
fn promtool_test(promtool: &PathBuf, dir: &PathBuf, file: &str, tests: &Value) -> String {
    std::fs::write(dir.join(file), serde_yaml::to_string(tests).expect("yaml"))
        .expect("tests written");
    run(promtool, &["test", "rules", file], dir)
}

fn run(promtool: &PathBuf, args: &[&str], dir: &PathBuf) -> String {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn selector(metric: &str, labels: &KpiLabels, state: Option<&str>) -> String {
    let mut pairs = vec![
        format!("namespace=\"{}\"", labels.namespace),
        format!("kpi=\"{}\"", labels.kpi),
        format!("indicator=\"{}\"", labels.indicator),
        format!("owner=\"{}\"", labels.owner),
        format!("stage=\"{}\"", labels.stage),
        format!("journey=\"{}\"", labels.journey),
    ];
    if let Some(state) = state {
        pairs.push(format!("state=\"{state}\""));
    }
    format!("{metric}{{{}}}", pairs.join(","))
}

/// Input series of a KPI in `state` for an hour, with a value `GAP` on the wrong side of target.
fn series(kpi: &ExperienceKPI, state: &str) -> (Vec<Value>, f64) {
    let labels = KpiLabels::of(kpi);
    let objective = &kpi.spec.objective;
    let value = match objective.direction {
        Direction::AtLeast => objective.target - GAP,
        Direction::AtMost => objective.target + GAP,
    };
    let mut input: Vec<Value> = STATES
        .iter()
        .map(|s| {
            let one = if s.as_str() == state { 1 } else { 0 };
            json!({"series": selector("cx_kpi_state", &labels, Some(s.as_str())), "values": format!("{one}x60")})
        })
        .collect();
    input.push(
        json!({"series": selector("cx_kpi_value", &labels, None), "values": format!("{value}x60")}),
    );
    input.push(
        json!({"series": selector("cx_kpi_gap", &labels, None), "values": format!("{GAP}x60")}),
    );
    (input, value)
}

/// The alert expected for `kpi` in `state`: every label of the series plus the routing labels,
/// and the annotations as a person reads them.
fn expected_alert(
    kpi: &ExperienceKPI,
    state: &str,
    severity: &str,
    verdict: &str,
    value: f64,
) -> Value {
    let labels = KpiLabels::of(kpi);
    let objective = &kpi.spec.objective;
    let side = match objective.direction {
        Direction::AtLeast => "at least",
        Direction::AtMost => "at most",
    };
    let warning = objective
        .warning
        .map(|w| format!(" (warning {w})"))
        .unwrap_or_default();
    json!({
        "exp_labels": {
            "namespace": labels.namespace,
            "kpi": labels.kpi,
            "indicator": labels.indicator,
            "owner": labels.owner,
            "stage": labels.stage,
            "journey": labels.journey,
            "state": state,
            "severity": severity,
        },
        "exp_annotations": {
            "summary": format!("KPI {}/{} ({}) is {verdict}", labels.namespace, labels.kpi, labels.indicator),
            "description": format!(
                "{} measures {value} against a target of {side} {}{warning} over {}; the gap is {GAP} (owner: {}).",
                labels.kpi, objective.target, kpi.spec.window, labels.owner
            ),
        },
    })
}

fn minutes(duration: &str) -> u64 {
    let d = promql_parser::util::parse_duration(duration).expect("a duration");
    d.as_secs().div_ceil(60)
}

#[test]
fn retail_rules_pass_promtool_check_and_unit_tests() {
    let Some(promtool) = promtool_binary() else {
        return;
    };
    let kpis = retail_kpis();
    let dir = temp_dir();

    let rules = rule_file(&kpis, Increase::Differences);
    assert_eq!(
        rules.groups.len(),
        3,
        "one namespace: its alerts, its increments and their hourly sums"
    );
    assert_eq!(rules.groups[0].rules.len(), 2 * kpis.len());
    assert_eq!(
        rules.groups[1].rules.len(),
        RECORDED.len() + 1,
        "and the steps marker"
    );
    assert_eq!(
        rules.groups[2].rules.len(),
        RECORDED.len() + 1,
        "and the hours marker"
    );
    std::fs::write(
        dir.join("kpi-rules.yaml"),
        serde_yaml::to_string(&rules).expect("yaml"),
    )
    .expect("write rules");
    let checked = run(&promtool, &["check", "rules", "kpi-rules.yaml"], &dir);
    assert!(
        checked.contains(&format!(
            "SUCCESS: {} rules found",
            2 * kpis.len() + 2 * (RECORDED.len() + 1)
        )),
        "{checked}"
    );

    // The PrometheusRule's spec is the same rule file.
    let custom = prometheus_rules(&kpis, &Default::default(), Increase::Differences);
    assert_eq!(custom.len(), 1);
    assert_eq!(custom[0].spec, rules);

    let mut tests = Vec::new();
    for kpi in &kpis {
        let name = KpiLabels::of(kpi).kpi;
        let hold = minutes(&kpi.spec.interval);
        let (breached, value) = series(kpi, "Breached");
        tests.push(json!({
            "name": format!("{name} breached"),
            "interval": "1m",
            "input_series": breached,
            "alert_rule_test": [
                // Pending, not firing, until the breach has lasted `for`.
                {"eval_time": format!("{}m", hold - 1), "alertname": BREACHED_ALERT, "exp_alerts": []},
                {"eval_time": format!("{}m", hold + 1), "alertname": BREACHED_ALERT,
                 "exp_alerts": [expected_alert(kpi, "Breached", "critical", "breached", value)]},
                {"eval_time": format!("{}m", hold + 1), "alertname": AT_RISK_ALERT, "exp_alerts": []},
            ],
        }));
        let (at_risk, value) = series(kpi, "AtRisk");
        tests.push(json!({
            "name": format!("{name} at risk"),
            "interval": "1m",
            "input_series": at_risk,
            "alert_rule_test": [
                {"eval_time": format!("{}m", hold + 1), "alertname": AT_RISK_ALERT,
                 "exp_alerts": [expected_alert(kpi, "AtRisk", "warning", "at risk", value)]},
                {"eval_time": format!("{}m", hold + 1), "alertname": BREACHED_ALERT, "exp_alerts": []},
            ],
        }));
        // Whatever the value says, no verdict means no alert.
        for quiet in ["InsufficientData", "Unknown", "Met"] {
            let (input, _) = series(kpi, quiet);
            tests.push(json!({
                "name": format!("{name} {quiet}"),
                "interval": "1m",
                "input_series": input,
                "alert_rule_test": [
                    {"eval_time": "59m", "alertname": BREACHED_ALERT, "exp_alerts": []},
                    {"eval_time": "59m", "alertname": AT_RISK_ALERT, "exp_alerts": []},
                ],
            }));
        }
    }
    let test_file = json!({
        "rule_files": ["kpi-rules.yaml"],
        "evaluation_interval": "1m",
        "tests": tests,
    });
    let tested = promtool_test(&promtool, &dir, "kpi-rules-test.yaml", &test_file);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // The harness itself must catch a wrong expectation: an alert expected on InsufficientData.
    let (input, value) = series(&kpis[0], "InsufficientData");
    let wrong = json!({
        "rule_files": ["kpi-rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": input,
            "alert_rule_test": [{"eval_time": "30m", "alertname": BREACHED_ALERT,
                "exp_alerts": [expected_alert(&kpis[0], "InsufficientData", "critical", "breached", value)]}],
        }],
    });
    std::fs::write(
        dir.join("wrong-test.yaml"),
        serde_yaml::to_string(&wrong).expect("yaml"),
    )
    .expect("write");
    let status = Command::new(&promtool)
        .args(["test", "rules", "wrong-test.yaml"])
        .current_dir(&dir)
        .output()
        .expect("run promtool");
    assert!(
        !status.status.success(),
        "promtool must fail a wrong expectation"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The recorded increments are exact where the raw series are awkward: a pod replaced by another
/// mid-window, a collector restarted in place (its counter reset between two scrapes), a series
/// born on a step boundary. `promtool test rules` evaluates the group every 5 minutes over 30 s
/// scrapes; the 28-day form of a KPI, `sum_over_time` of the recorded series, must equal the
/// answers actually received. Both forms on a Prometheus 3 promtool, the last-value form on 2.x.
#[test]
fn recorded_increments_sum_to_the_answers_received() {
    let Some(promtool) = promtool_binary() else {
        return;
    };
    let version = run(&promtool, &["--version"], &temp_dir());
    let forms: &[Increase] = if version.contains("version 2.") {
        &[Increase::Differences]
    } else {
        &[Increase::Differences, Increase::Anchored]
    };
    let series = |pod: &str, values: &str| {
        json!({
            "series": format!(
                r#"cx_survey_responses_total{{namespace="retail", channel="web", stage="purchase", touchpoint="checkout", metric="nps", score="9", pod="{pod}"}}"#
            ),
            "values": values,
        })
    };
    // a: 20 answers over 10 minutes, then gone (a rolled-out pod); b: born at 5m, 20 answers by
    // 10m; c: 10 answers, restarted at 5m30s, 19 more by 15m.
    let input = [
        series("a", "0+1x20"),
        series("b", "_x10 0+2x10"),
        series("c", "0+1x10 0+1x19"),
    ];
    let recorded = "touchpoint:cx_survey_responses_total:increase5m";
    let labels = r#"channel="web", metric="nps", namespace="retail", score="9", stage="purchase", touchpoint="checkout""#;
    for &form in forms {
        let dir = temp_dir().join(format!("{form:?}"));
        std::fs::create_dir_all(&dir).expect("a folder");
        let file = RuleFile {
            groups: vec![recording_group("retail", form)],
        };
        std::fs::write(
            dir.join("increments.yaml"),
            serde_yaml::to_string(&file).expect("yaml"),
        )
        .expect("rules written");
        let tests = json!({
            "rule_files": ["increments.yaml"],
            "evaluation_interval": "5m",
            "tests": [{
                "interval": "30s",
                "input_series": input,
                "promql_expr_test": [
                    // One step of each: a 10 + b 0; a 10 + b 20 + c 9 (its restart); c 10.
                    {"expr": recorded, "eval_time": "5m",
                     "exp_samples": [{"labels": format!("{recorded}{{{labels}}}"), "value": 20}]},
                    {"expr": recorded, "eval_time": "10m",
                     "exp_samples": [{"labels": format!("{recorded}{{{labels}}}"), "value": 39}]},
                    {"expr": recorded, "eval_time": "15m",
                     "exp_samples": [{"labels": format!("{recorded}{{{labels}}}"), "value": 10}]},
                    // The long window: 20 + 20 + 29 answers, the pods summed away.
                    {"expr": format!("sum by (touchpoint) (sum_over_time({recorded}[20m]))"),
                     "eval_time": "20m",
                     "exp_samples": [{"labels": r#"{touchpoint="checkout"}"#, "value": 69}]},
                ],
            }],
        });
        let out = promtool_test(&promtool, &dir, "increments-test.yaml", &tests);
        assert!(out.contains("SUCCESS"), "{form:?}: {out}");
    }
}

/// The recorded steps of consecutive windows are each counted once where a step falls exactly
/// on a window's start (the case where a range's ends matter: 3.x ranges exclude their start,
/// 2.x ranges include it). Steps every 5 minutes from zero, step k recording k + 1 answers (a
/// step counted twice or missed changes the sum); windows whose start is a step, and one whose
/// start is not, summed as the operator sums them ([`steps`], fitted to the server's ends),
/// must equal the steps of `(end - w, end]`.
#[test]
fn recorded_steps_are_counted_once_on_window_boundaries() {
    let Some(promtool) = promtool_binary() else {
        return;
    };
    let version = run(&promtool, &["--version"], &temp_dir());
    let ends = if version.contains("version 2.") {
        RangeEnds::Closed
    } else {
        RangeEnds::LeftOpen
    };
    let dir = temp_dir().join("steps");
    std::fs::create_dir_all(&dir).expect("a folder");
    let recorded_steps = "touchpoint:cx_interactions_total:increase5m";
    let matchers = r#"namespace="retail""#;
    let mut cases = Vec::new();
    for (end, window) in [
        (10 * 3600 + 15 * 60, "3h"),
        (10 * 3600, "150m"),
        (10 * 3600 + 120, "150m"),
    ] {
        let span = WindowSpec::parse(window)
            .expect("window")
            .current(Timestamp::from_second(end).expect("time"));
        let start = end - span.length.as_secs() as i64;
        let expected: i64 = (0..=300)
            .filter(|k| (start + 1..=end).contains(&(k * 300)))
            .map(|k| k + 1)
            .sum();
        cases.push(json!({
            "expr": format!("sum({})", steps("cx_interactions_total", matchers, &span, ends)),
            "eval_time": format!("{end}s"),
            "exp_samples": [{"labels": "{}", "value": expected}],
        }));
    }
    let tests = json!({
        "rule_files": [],
        "evaluation_interval": "5m",
        "tests": [{
            "interval": "5m",
            "input_series": [{
                "series": format!(r#"{recorded_steps}{{namespace="retail", touchpoint="checkout", outcome="resolved"}}"#),
                "values": "1+1x300",
            }],
            "promql_expr_test": cases,
        }],
    });
    let out = promtool_test(&promtool, &dir, "steps-test.yaml", &tests);
    assert!(out.contains("SUCCESS"), "{ends:?}: {out}");
}

/// The hourly sums ([`hours_group`], evaluated by promtool every hour on the hour) read with the
/// steps at a window's ends ([`hours`]) count each step of `(end - w, end]` once: steps every 5
/// minutes from zero (on the hours' own boundaries, where a range's ends matter), step k
/// recording k + 1 answers; current and previous windows, starts on and off the step grid. The
/// hours recorded in a window ([`HOURS_RECORDED`]) are counted as the operator counts them.
#[test]
fn hourly_sums_and_the_steps_at_the_ends_count_each_step_once() {
    let Some(promtool) = promtool_binary() else {
        return;
    };
    let version = run(&promtool, &["--version"], &temp_dir());
    let (ends, form) = if version.contains("version 2.") {
        (RangeEnds::Closed, Increase::Differences)
    } else {
        (RangeEnds::LeftOpen, Increase::Anchored)
    };
    let dir = temp_dir().join("hours");
    std::fs::create_dir_all(&dir).expect("a folder");
    let file = RuleFile {
        groups: vec![hours_group("retail", form)],
    };
    std::fs::write(
        dir.join("hours.yaml"),
        serde_yaml::to_string(&file).expect("yaml"),
    )
    .expect("rules written");
    let matchers = r#"namespace="retail""#;
    let mut cases = Vec::new();
    for (now, window, previous) in [
        (30 * 3600 + 15 * 60, "20h", false),
        (30 * 3600, "20h", false),
        (30 * 3600 + 120, "13h", true),
        (31 * 3600 + 50 * 60, "6h", true),
    ] {
        let window = WindowSpec::parse(window).expect("window");
        let at = Timestamp::from_second(now).expect("time");
        let span = if previous {
            window.previous(at)
        } else {
            window.current(at)
        };
        let parts = HourParts::of(&span, now * 1000).expect("hours in the window");
        let (start, end) = (parts.start / 1000, parts.end / 1000);
        let expected: i64 = (0..=400)
            .filter(|k| (start + 1..=end).contains(&(k * 300)))
            .map(|k| k + 1)
            .sum();
        cases.push(json!({
            "expr": format!("sum({})", hours("cx_interactions_total", matchers, ends, &parts)),
            "eval_time": format!("{now}s"),
            "exp_samples": [{"labels": "{}", "value": expected}],
        }));
        let (length, at) = parts.selection(ends);
        cases.push(json!({
            "expr": format!(
                "count_over_time({HOURS_RECORDED}{{{matchers}}}[{}ms]{})",
                length.as_millis(),
                at_modifier(at)
            ),
            "eval_time": format!("{now}s"),
            "exp_samples": [{
                "labels": format!("{{{matchers}}}"),
                "value": parts.hours(),
            }],
        }));
    }
    let tests = json!({
        "rule_files": ["hours.yaml"],
        "evaluation_interval": "1h",
        "tests": [{
            "interval": "5m",
            "input_series": [{
                "series": r#"touchpoint:cx_interactions_total:increase5m{namespace="retail", touchpoint="checkout", outcome="resolved"}"#,
                "values": "1+1x400",
            }],
            "promql_expr_test": cases,
        }],
    });
    let out = promtool_test(&promtool, &dir, "hours-test.yaml", &tests);
    assert!(out.contains("SUCCESS"), "{ends:?}: {out}");
}

/// A KPI's exact count ([`counted`]) where a window starts inside a scrape gap: a collector
/// restarted in place while unscraped (its counter back at zero), and one unscraped for longer
/// than Prometheus' 5-minute lookback. Before the count looked for the start value and resets an
/// hour back, the first read 0 answers where 10 came and the second its whole history (15)
/// where 11 came after its last sample before the window.
#[test]
fn counts_are_exact_when_a_window_starts_inside_a_scrape_gap() {
    let Some(promtool) = promtool_binary() else {
        return;
    };
    let dir = temp_dir().join("gaps");
    std::fs::create_dir_all(&dir).expect("a folder");
    std::fs::write(dir.join("none.yaml"), "groups: []\n").expect("rules written");
    let series = |score: &str, values: &str| {
        json!({
            "series": format!(
                r#"cx_survey_responses_total{{namespace="retail", touchpoint="checkout", metric="nps", score="{score}"}}"#
            ),
            "values": values,
        })
    };
    let span = Span {
        range: "12m".into(),
        length: Duration::from_secs(12 * 60),
        offset: Duration::ZERO,
    };
    let count = format!(
        "sum by (score) ({})",
        counted(
            "cx_survey_responses_total",
            r#"namespace="retail", touchpoint="checkout""#,
            &span
        )
    );
    let tests = json!({
        "rule_files": ["none.yaml"],
        "tests": [{
            "interval": "30s",
            "input_series": [
                // 10 answers, unscraped from 5m, restarted at 15m: 10 answers by 20m.
                series("9", "0+1x10 _x19 0+1x10"),
                // 4 answers by 2m, unscraped until 15m, 11 more by 20m (no restart).
                series("10", "0+1x4 _x25 5+1x10"),
            ],
            "promql_expr_test": [{
                "expr": count,
                // The 12-minute window starts at 8m, inside both gaps.
                "eval_time": "20m",
                "exp_samples": [
                    {"labels": r#"{score="9"}"#, "value": 10},
                    {"labels": r#"{score="10"}"#, "value": 11},
                ],
            }],
        }],
    });
    let out = promtool_test(&promtool, &dir, "gaps-test.yaml", &tests);
    assert!(out.contains("SUCCESS"), "{out}");
}
