//! `cx-conductor check` as a user runs it: exit codes, formats, stdin, and bad input.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn cx(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn clean_examples_exit_0_with_a_report_grouped_by_journey() {
    let out = cx(&["check", "-f", "examples/retail"], None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("\nJourney retail/retail (examples/retail/journey.yaml:2)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("readiness:       100 (customer-centric), over 17 of 22 points (kpis-met, collectors-ready not evaluated offline)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("self-assessment: 17 of 25 yes (missing-pieces): 6 evidenced, 16 declared, 3 missing (2 of them not evaluated offline)"),
        "{stdout}"
    );
    assert!(stdout.contains("OK: 0 errors, 0 warnings"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "no colour when not on a terminal");
}

#[test]
fn findings_of_severity_error_exit_1() {
    let out = cx(
        &[
            "check",
            "-f",
            "examples/retail",
            "-f",
            "examples/broken/inconsistent-brand-voice.yaml",
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("brand.voice differs: friendly-expert on app, call-centre, chat, email, store, web; formal on marketplace"), "{stdout}");
    assert!(
        stdout.contains("error[consistency]: examples/retail/journey.yaml:14: brand.voice differs"),
        "the finding names the rule's file and line: {stdout}"
    );
    assert!(stdout.contains("FAILED: 1 error, 0 warnings"), "{stdout}");
}

#[test]
fn json_output_is_stable_and_machine_readable() {
    let first = cx(&["check", "-f", "examples/retail", "-o", "json"], None);
    let second = cx(&["check", "-f", "examples/retail", "-o", "json"], None);
    assert_eq!(first.stdout, second.stdout);
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(report["summary"]["channels"], 6);
    assert_eq!(report["summary"]["touchpoints"], 15);
    assert_eq!(report["summary"]["errors"], 0);
    assert_eq!(
        report["journeys"][0]["readiness"]["band"],
        "customer-centric"
    );
    // One collector pool for the namespace's 15 touchpoints, not 15 Deployments.
    assert_eq!(report["plan"]["objects"]["Deployment"], 1);
    assert_eq!(report["plan"]["pools"], 1);
    assert_eq!(report["plan"]["pooledTouchpoints"], 15);
    assert_eq!(report["plan"]["collectors"], 0);
    // Sections come in a fixed order in the document itself.
    let raw = text(&first.stdout);
    let positions: Vec<usize> = [
        "summary",
        "rejected",
        "skipped",
        "journeys",
        "findings",
        "plan",
        "kpiQueries",
    ]
    .iter()
    .map(|k| {
        raw.find(&format!("\n  \"{k}\":"))
            .unwrap_or_else(|| panic!("no {k}"))
    })
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    // Every KPI's queries, ready to paste into Prometheus.
    let queries = report["kpiQueries"].as_array().unwrap();
    assert_eq!(queries.len(), 15);
    // The theme KPI: the delivery theme's share of web-checkout's detractor comments, the only
    // purchase touchpoint asking nps, with its samples the comments.
    let theme = queries
        .iter()
        .find(|q| q["kpi"]["name"] == "checkout-delivery-share")
        .unwrap();
    // As the operator reads them once the recorded 5-minute increments cover the window.
    let mentions = r#"touchpoint:cx_feedback_themes_total:increase5m{namespace="retail", touchpoint="web-checkout", theme="delivery", metric="nps", segment="detractor"}"#;
    let comments = r#"touchpoint:cx_feedback_comments_total:increase5m{namespace="retail", touchpoint="web-checkout", metric="nps", segment="detractor"}"#;
    let value = theme["value"].as_str().unwrap();
    assert_eq!(
        value,
        format!("100 * sum(sum_over_time({mentions}[28d])) / sum(sum_over_time({comments}[28d]))")
    );
    assert_eq!(
        theme["samples"].as_str().unwrap(),
        format!("sum(sum_over_time({comments}[28d]))")
    );
    assert_eq!(
        theme["previousValue"].as_str().unwrap(),
        format!(
            "100 * sum(sum_over_time({mentions}[28d] offset 28d)) / sum(sum_over_time({comments}[28d] offset 28d))"
        )
    );
    let nps = queries
        .iter()
        .find(|q| q["kpi"]["name"] == "advocacy-nps")
        .unwrap();
    assert_eq!(nps["window"], "28d");
    let value = nps["value"].as_str().unwrap();
    assert!(
        value.starts_with(
            r#"100 * sum(sum_over_time(touchpoint:cx_survey_responses_total:increase5m{namespace="retail", touchpoint="email-referral", metric="nps", score=~"10|9"}[28d]) or "#
        ),
        "{value}"
    );
    assert!(
        nps["previousValue"]
            .as_str()
            .unwrap()
            .contains("[28d] offset 28d) or "),
        "{nps}"
    );
    // A calendar window reads the same whatever the day: $window.
    let calendar = queries
        .iter()
        .find(|q| q["window"] == "calendar-month")
        .unwrap();
    assert!(calendar["value"].as_str().unwrap().contains("[$window])"));
    assert!(calendar.get("previousValue").is_none());
}

#[test]
fn every_finding_and_refusal_names_its_file_and_line_in_json() {
    let mut args = vec!["check", "-o", "json", "-f", "examples/retail"];
    let broken: Vec<String> = std::fs::read_dir("examples/broken")
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    for b in &broken {
        args.extend(["-f", b.as_str()]);
    }
    let out = cx(&args, None);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut findings: Vec<&serde_json::Value> =
        report["findings"].as_array().unwrap().iter().collect();
    for j in report["journeys"].as_array().unwrap() {
        assert!(j["file"].is_string() && j["line"].is_u64(), "{j}");
        findings.extend(j["findings"].as_array().unwrap());
    }
    for r in report["rejected"].as_array().unwrap() {
        findings.extend(r["violations"].as_array().unwrap());
    }
    assert!(findings.len() >= 12, "{report:#}");
    for f in findings {
        assert!(
            f["file"]
                .as_str()
                .is_some_and(|f| f.starts_with("examples/")),
            "{f}"
        );
        assert!(f["line"].as_u64().is_some_and(|l| l > 1), "{f}");
    }
}

#[test]
fn stdin_is_read_with_a_dash() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/broken/bad-enum.yaml"),
    )
    .unwrap();
    let out = cx(&["check", "-f", "-"], Some(&manifest));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("error[schema]: -:11: Touchpoint retail/web-checkout-v2: spec.stage: \"checkout\" is not one of"),
        "the line of the field, not of the document: {stdout}"
    );
}

#[test]
fn invalid_yaml_exits_2_naming_file_and_line() {
    let dir = tempdir("invalid-yaml");
    let file = dir.join("bad.yaml");
    std::fs::write(&file, "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: cx.conductor.dev/v1alpha1\nkind: Channel\nmetadata: {name: web\nspec: {}\n").unwrap();
    let out = cx(&["check", "-f", file.to_str().unwrap()], None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:7:", file.display())),
        "{stderr}"
    );
    assert!(stderr.contains("invalid YAML"), "{stderr}");
}

#[test]
fn unreadable_path_exits_2() {
    let out = cx(&["check", "-f", "does/not/exist.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does/not/exist.yaml: cannot read"));
}

#[test]
fn unknown_kinds_duplicates_and_other_groups_are_reported_not_fatal() {
    let dir = tempdir("mixed");
    std::fs::write(
        dir.join("mixed.yaml"),
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend}
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channle
metadata: {name: web}
spec: {type: web}
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: {name: web}
spec: {type: web}
---
apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: {name: web}
spec: {type: mobile-app}
---
- just
- a list
"#,
    )
    .unwrap();
    let out = cx(&["check", "-f", dir.to_str().unwrap(), "-o", "json"], None);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["channels"], 1);
    assert_eq!(report["skipped"].as_array().unwrap().len(), 2, "{report:#}");
    let rejected = report["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{report:#}");
    assert_eq!(rejected[0]["violations"][0]["field"], "kind");
    assert!(
        rejected[0]["violations"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown kind \"Channle\"")
    );
    assert_eq!(rejected[1]["violations"][0]["rule"], "unique");
    assert_eq!(rejected[1]["origin"]["line"], 16);
}

#[test]
fn enormous_files_are_refused_before_reading() {
    let dir = tempdir("huge");
    let file = std::fs::File::create(dir.join("huge.yaml")).unwrap();
    file.set_len(cx_conductor::manifest::MAX_FILE_BYTES + 1)
        .unwrap();
    let out = cx(&["check", "-f", dir.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("larger than the"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn plan_prints_deterministic_yaml_of_every_collector_object() {
    let first = cx(
        &[
            "check",
            "-f",
            "examples/retail",
            "--plan",
            "--network-policy",
            "--service-monitor",
        ],
        None,
    );
    let second = cx(
        &[
            "check",
            "-f",
            "examples/retail",
            "--plan",
            "--network-policy",
            "--service-monitor",
        ],
        None,
    );
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(first.stdout, second.stdout, "plans are byte-identical");
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_slice(&first.stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let count = |kind: &str| docs.iter().filter(|d| d["kind"] == kind).count();
    // The retail namespace's 15 touchpoints share one pool.
    assert_eq!(count("Deployment"), 1);
    assert_eq!(count("Service"), 1);
    assert_eq!(count("Secret"), 1);
    assert_eq!(count("HorizontalPodAutoscaler"), 1);
    assert_eq!(count("NetworkPolicy"), 1);
    assert_eq!(count("ServiceMonitor"), 1);
    assert_eq!(count("ConfigMap"), 0);
    assert_eq!(
        count("PodDisruptionBudget"),
        0,
        "a pool of at least 1 pod gets a PDB only from minReplicas 2"
    );
    let secret = docs.iter().find(|d| d["kind"] == "Secret").unwrap();
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(secret.clone()).expect("a Secret");
    let config = String::from_utf8(secret.data.unwrap()["collectors.yaml"].0.clone()).unwrap();
    let config: serde_json::Value = serde_yaml::from_str(&config).unwrap();
    assert_eq!(config["touchpoints"].as_array().map(Vec::len), Some(15));
    assert_eq!(config["touchpoints"][0]["touchpoint"], "app-checkout");
    assert_eq!(count("PrometheusRule"), 1, "one per namespace with KPIs");
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cx-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    use std::io::Read;
    for args in [
        &[
            "check",
            "-f",
            "examples/retail",
            "--plan",
            "--network-policy",
            "--service-monitor",
        ][..],
        &["crd"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Like `| head -c 10`: read a little, then close the pipe.
        let mut first = [0u8; 10];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
    }
}

#[test]
fn plan_as_json_is_one_list_and_errors_are_said_on_stderr() {
    let out = cx(
        &["check", "-f", "examples/retail", "--plan", "-o", "json"],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    // The pool (its configuration Secret, Service, Deployment and autoscaler), then the KPIs'
    // PrometheusRule: an alert pair per KPI on the cx_kpi_state gauge.
    assert_eq!(items.len(), 4 + 1);
    assert_eq!(items[0]["kind"], "Secret");
    let rule = &items[items.len() - 1];
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "retail");
    assert_eq!(
        rule["spec"]["groups"][0]["rules"].as_array().unwrap().len(),
        2 * 15
    );

    let out = cx(
        &[
            "check",
            "-f",
            "examples/retail",
            "-f",
            "examples/broken/bad-enum.yaml",
            "-f",
            "examples/broken/dangling-channel.yaml",
            "--plan",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !out.stdout.is_empty(),
        "the plan of what is accepted is printed"
    );
    assert_eq!(
        text(&out.stderr),
        "error[schema]: examples/broken/bad-enum.yaml:11: Touchpoint retail/web-checkout-v2: spec.stage: \"checkout\" is not one of: awareness, consideration, purchase, delivery, usage, support, loyalty, advocacy\n\
         error[dangling-channel]: examples/broken/dangling-channel.yaml:10: touchpoint kiosk-checkin names channel kiosk, which does not exist in namespace retail\n\
         check failed: 2 errors; the plan covers only what the API server would accept (run without --plan for the whole report)\n"
    );
}

#[test]
fn nothing_to_check_is_an_error_not_ok() {
    let empty = tempdir("empty");
    let out = cx(&["check", "-f", empty.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {}: no manifest found (no .yaml, .yml or .json file with a document in it)\n",
            empty.display()
        )
    );
    let out = cx(&["check", "-f", "examples/retail/00-namespace.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: examples/retail/00-namespace.yaml: no cx.conductor.dev resource to check (1 document skipped: v1 Namespace at examples/retail/00-namespace.yaml:2)\n"
    );
    let out = cx(&["check", "-f", "-"], Some("# nothing\n"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn a_kpi_window_shorter_than_its_interval_is_a_warning_naming_the_field() {
    let dir = tempdir("short-window");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/retail");
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() == "kpis.yaml" {
            // The first KPI (awareness-csat) measures one minute, evaluated every five.
            text = text.replacen("window: 28d", "window: 1m", 1);
        }
        std::fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
    }
    let out = cx(&["check", "-f", dir.to_str().unwrap(), "-o", "json"], None);
    assert_eq!(out.status.code(), Some(0), "a warning alone exits 0");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    let finding = &findings[0];
    assert_eq!(finding["code"], "kpi-window-shorter-than-interval");
    assert_eq!(finding["severity"], "warning");
    assert_eq!(finding["subject"]["name"], "awareness-csat");
    assert_eq!(finding["field"], "spec.window");
    assert_eq!(finding["line"], 12);
    assert_eq!(
        finding["message"],
        "KPI awareness-csat's window 1m is shorter than the interval 5m: answers between two evaluations are never measured; make the window at least the interval"
    );
}

/// The first command a person runs fits a screen per journey: the PromQL is behind `--queries`.
#[test]
fn the_text_report_is_readable_and_the_queries_are_behind_a_flag() {
    let short = cx(&["check", "-f", "examples/retail"], None);
    assert_eq!(short.status.code(), Some(0));
    let text = String::from_utf8(short.stdout).unwrap();
    assert!(
        text.contains("KPI queries: 15 KPIs compile to PromQL (print the queries with --queries"),
        "{text}"
    );
    assert!(
        !text.contains("last_over_time"),
        "no PromQL without --queries"
    );
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 250, "a line of {longest} bytes");
    let long = cx(&["check", "-f", "examples/retail", "--queries"], None);
    let text = String::from_utf8(long.stdout).unwrap();
    assert!(
        text.contains("KPI queries (paste into Prometheus"),
        "{text}"
    );
    assert_eq!(
        text.matches("\n  retail/").count(),
        15,
        "one entry per KPI: {text}"
    );
    assert!(text.contains("    value:   100 * sum("), "{text}");
}

/// Theme mistakes are findings with the file and line of the field to fix.
#[test]
fn theme_mistakes_are_reported_with_file_and_line() {
    let out = cx(
        &["check", "-f", "tests/fixtures/themes/mistakes.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "errors fail check");
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        r#"error[theme-invalid]: tests/fixtures/themes/mistakes.yaml:39: journey empty: "!!!" has no letter or digit"#,
        r#"error[theme-never-matches]: tests/fixtures/themes/mistakes.yaml:26: theme lateness: keyword "in ritardo" can never match"#,
        r#"warning[theme-keyword-repeated]: tests/fixtures/themes/mistakes.yaml:24: keyword "Courier" is in themes delivery and shipping"#,
        "warning[theme-without-touchpoint]: tests/fixtures/themes/mistakes.yaml:",
        "warning[theme-declared-differently]: tests/fixtures/themes/mistakes.yaml:62: theme delivery is also declared, differently, by journey shop; touchpoints both hold (e.g. checkout) count journey shop's",
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
    // The plan leaves the refused theme set out and keeps the valid ones.
    let plan = cx(
        &["check", "-f", "examples/retail", "--plan", "-o", "json"],
        None,
    );
    let list: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let secret = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "Secret")
        .expect("the pool's Secret");
    // k8s-openapi's Secret decodes the base64 data.
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(secret.clone()).unwrap();
    let config = &secret.data.unwrap()["collectors.yaml"].0;
    let config: serde_json::Value = serde_json::from_slice(config).unwrap();
    let touchpoints = config["touchpoints"].as_array().unwrap();
    assert_eq!(touchpoints.len(), 15);
    for tp in touchpoints {
        let themes: Vec<&str> = tp["themes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            themes,
            ["app-crashes", "delivery", "price", "staff", "waiting-time"],
            "{tp}"
        );
    }
}

/// A calendar window in a zone that does not exist is named at the timeZone line.
#[test]
fn an_unknown_time_zone_is_named_with_its_line() {
    let out = cx(
        &["check", "-f", "tests/fixtures/kpi/unknown-time-zone.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            r#"error[kpi-query-invalid]: tests/fixtures/kpi/unknown-time-zone.yaml:9: KPI monthly-nps cannot be evaluated: timeZone "Europe/Atlantis" is not an IANA time zone"#
        ),
        "{text}"
    );
}
