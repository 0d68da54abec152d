//! The Grafana dashboards (`charts/cx-conductor/dashboards/*.json`) and the chart's alert rules:
//! current Grafana JSON, a datasource variable, deliberate units, thresholds and "no data" texts,
//! a sane layout, and PromQL that parses (promql-parser) and refers only to metrics — and labels
//! of those metrics — that the project exports, taken from the code: the operator's `Metrics`, the
//! KPI gauges and a collector's registry.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use cx_conductor::api::{BuiltinIndicator, ExperienceKPIStatus, KpiState, Touchpoint};
use cx_conductor::collector::event::EventSchema;
use cx_conductor::collector::metrics::CollectorMetrics;
use cx_conductor::kpi::{KpiLabels, KpiMetrics};
use cx_conductor::operator::Metrics;
use prometheus::Encoder;
use prometheus::core::Collector;
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::{Value, json};

/// Grafana's classic dashboard model: 42 is its latest (and last) schemaVersion.
const SCHEMA_VERSION: u64 = 42;
const DASHBOARDS: [&str; 3] = ["overview", "journey", "collectors"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dashboard(name: &str) -> Value {
    let path = root().join(format!("charts/cx-conductor/dashboards/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

// ----------------------------------------------------------------------------------------------
// What the project exports: metric name -> label names, from the code.

type Inventory = BTreeMap<String, BTreeSet<String>>;

fn add(inventory: &mut Inventory, name: &str, labels: impl IntoIterator<Item = String>) {
    inventory
        .entry(name.to_string())
        .or_default()
        .extend(labels);
}

/// The operator's registry (`src/operator/metrics.rs`), read from each metric's descriptor so
/// series with no child yet count too. A new field here is a new metric to list.
fn operator_metrics(inventory: &mut Inventory) {
    let m = Metrics::new();
    let collectors: [(&dyn Collector, bool); 9] = [
        (&m.reconciles, false),
        (&m.reconcile_errors, false),
        (&m.reconcile_duration, true),
        (&m.writes, false),
        (&m.consistency_violations, false),
        (&m.coverage_gaps, false),
        (&m.readiness_score, false),
        (&m.self_assessment_score, false),
        (&m.collector_ready, false),
    ];
    for (collector, histogram) in collectors {
        for desc in collector.desc() {
            let labels: Vec<String> = desc
                .variable_labels
                .iter()
                .cloned()
                .chain(desc.const_label_pairs.iter().map(|p| p.name().to_string()))
                .collect();
            if histogram {
                add(
                    inventory,
                    &format!("{}_bucket", desc.fq_name),
                    labels.iter().cloned().chain(["le".to_string()]),
                );
                add(inventory, &format!("{}_sum", desc.fq_name), labels.clone());
                add(
                    inventory,
                    &format!("{}_count", desc.fq_name),
                    labels.clone(),
                );
            } else {
                add(inventory, &desc.fq_name, labels);
            }
        }
    }
}

/// Names and labels of every sample line of a Prometheus text exposition.
fn exposition(text: &str, inventory: &mut Inventory) {
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line.split_whitespace().next().unwrap_or_default(), ""),
        };
        let labels: Vec<String> = rest
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, _)| k.trim().to_string())
            .collect();
        add(inventory, name, labels);
    }
}

/// The KPI gauges (`src/kpi/metrics.rs`), with one KPI exported.
fn kpi_metrics(inventory: &mut Inventory) {
    let registry = prometheus::Registry::new();
    let metrics = KpiMetrics::new(&registry).expect("KPI metrics register");
    let labels = KpiLabels {
        namespace: "retail".into(),
        kpi: "checkout-csat".into(),
        indicator: "csat".into(),
        owner: "digital".into(),
        stage: "purchase".into(),
        journey: "retail".into(),
    };
    let status = ExperienceKPIStatus {
        value: Some(80.0),
        previous_value: Some(82.0),
        gap: Some(5.0),
        gap_change: Some(2.0),
        samples: Some(120),
        state: Some(KpiState::AtRisk),
        ..Default::default()
    };
    metrics.set(&labels, 85.0, &status);
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .unwrap();
    exposition(&String::from_utf8(out).unwrap(), inventory);
}

/// A collector listening to every signal (`src/collector/metrics.rs` creates every series up front).
fn collector_metrics(inventory: &mut Inventory) {
    let touchpoint: Touchpoint = serde_yaml::from_str(
        r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: Touchpoint
metadata: { name: hotline, namespace: retail }
spec:
  channel: voice
  stage: support
  signals:
    surveys: [ { metric: nps }, { metric: csat, scale: 7 }, { metric: ces } ]
    interactions:
      outcomes: [completed, abandoned, error, resolved-first-contact, resolved, unresolved, escalated]
      timings: [wait, handle]
"#,
    )
    .expect("touchpoint");
    let mut config = cx_conductor::core::plan::collector_config(&touchpoint, None);
    // A declared theme, so the theme counter is exported too.
    config.themes = vec![cx_conductor::api::ThemeSpec {
        name: "delivery".into(),
        keywords: vec!["consegn*".into()],
        exclude: vec![],
    }];
    let schema = EventSchema::from_config(&config).expect("valid collector config");
    let metrics = CollectorMetrics::new(&config, &schema).expect("collector metrics");
    exposition(&metrics.render().expect("renders"), inventory);
    // The export series of a collector that exports.
    let export = cx_conductor::collector::export::ExportMetrics::new("retail").expect("export");
    let text = cx_conductor::collector::metrics::render_families(export.gather()).expect("renders");
    exposition(&text, inventory);
}

fn inventory() -> Inventory {
    let mut inventory = Inventory::new();
    operator_metrics(&mut inventory);
    kpi_metrics(&mut inventory);
    collector_metrics(&mut inventory);
    inventory
}

#[test]
fn the_inventory_holds_the_metrics_contract() {
    let inventory = inventory();
    // DESIGN.md §4, with the labels every dashboard filters on.
    for (name, labels) in [
        (
            "cx_events_received_total",
            &["namespace", "touchpoint", "channel", "stage"][..],
        ),
        (
            "cx_events_rejected_total",
            &["namespace", "touchpoint", "channel", "stage", "reason"],
        ),
        (
            "cx_survey_responses_total",
            &["namespace", "touchpoint", "metric", "score"],
        ),
        (
            "cx_interactions_total",
            &["namespace", "touchpoint", "outcome"],
        ),
        (
            "cx_interaction_duration_seconds_bucket",
            &["namespace", "touchpoint", "timing", "le"],
        ),
        (
            "cx_kpi_value",
            &["namespace", "kpi", "indicator", "owner", "stage", "journey"],
        ),
        ("cx_kpi_target", &["namespace", "kpi", "journey"]),
        ("cx_kpi_gap", &["namespace", "kpi", "journey"]),
        ("cx_kpi_gap_change", &["namespace", "kpi", "journey"]),
        ("cx_kpi_samples", &["namespace", "kpi"]),
        ("cx_kpi_state", &["namespace", "kpi", "state"]),
        ("cx_consistency_violations", &["namespace", "journey"]),
        (
            "cx_journey_coverage_gaps",
            &["namespace", "journey", "kind"],
        ),
        ("cx_journey_readiness_score", &["namespace", "journey"]),
        (
            "cx_journey_self_assessment_score",
            &["namespace", "journey"],
        ),
        (
            "cx_touchpoint_collector_ready",
            &["namespace", "touchpoint", "channel", "stage"],
        ),
        ("cx_reconciles_total", &["controller", "result"]),
        ("cx_reconcile_errors_total", &["controller", "reason"]),
        (
            "cx_reconcile_duration_seconds_bucket",
            &["controller", "le"],
        ),
        ("cx_api_writes_total", &["controller", "write"]),
    ] {
        let have = inventory
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not exported: {:?}", inventory.keys()));
        for label in labels {
            assert!(
                have.contains(*label),
                "{name} lacks label {label}: {have:?}"
            );
        }
    }
    assert!(
        !inventory["cx_kpi_value"].contains("channel"),
        "KPI series have no channel label"
    );
}

// ----------------------------------------------------------------------------------------------
// PromQL

/// Grafana's variables replaced by values of the right shape, so the text is plain PromQL.
fn substitute(expr: &str) -> String {
    let mut out = expr.to_string();
    for builtin in [
        "${__rate_interval}",
        "$__rate_interval",
        "${__interval}",
        "$__interval",
        "${__range}",
        "$__range",
    ] {
        out = out.replace(builtin, "5m");
    }
    // $name and ${name} appear only inside label values here.
    let mut result = String::new();
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            if chars.peek() == Some(&'{') {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
            } else {
                while chars
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    chars.next();
                }
            }
            result.push_str("var");
        } else {
            result.push(c);
        }
    }
    result
}

/// Every selector of an expression: (metric names it can match, label names it filters on).
struct Selectors(Vec<(Vec<String>, Vec<String>)>);

impl ExprVisitor for Selectors {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let selector = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        let mut names: Vec<String> = selector.name.iter().cloned().collect();
        let mut labels = Vec::new();
        for m in &selector.matchers.matchers {
            if m.name == "__name__" {
                match &m.op {
                    MatchOp::Equal => names.push(m.value.clone()),
                    MatchOp::Re(_) => names.extend(m.value.split('|').map(str::to_string)),
                    other => return Err(format!("unsupported __name__ matcher {other:?}")),
                }
            } else {
                labels.push(m.name.clone());
            }
        }
        if names.is_empty() {
            return Err("a selector without a metric name".into());
        }
        self.0.push((names, labels));
        Ok(true)
    }
}

/// Parses a PromQL expression (Grafana variables substituted) and checks every metric and
/// matcher label it uses against the inventory. Returns the metric names.
fn check_promql(expr: &str, inventory: &Inventory, context: &str) -> Vec<String> {
    let text = substitute(expr);
    let ast =
        parser::parse(&text).unwrap_or_else(|e| panic!("{context}: {expr}\ndoes not parse: {e}"));
    let mut selectors = Selectors(Vec::new());
    walk_expr(&mut selectors, &ast).unwrap_or_else(|e| panic!("{context}: {expr}: {e}"));
    let mut names = Vec::new();
    for (metrics, labels) in selectors.0 {
        for metric in metrics {
            let known = inventory.get(&metric).unwrap_or_else(|| {
                panic!("{context}: {metric} is not a metric the project exports ({expr})")
            });
            for label in &labels {
                assert!(
                    known.contains(label),
                    "{context}: {metric} has no label {label:?} (it has {known:?}) in {expr}"
                );
            }
            names.push(metric);
        }
    }
    names
}

/// `label_values(SELECTOR, label)` -> SELECTOR.
fn variable_selector(query: &str) -> Option<&str> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, _label) = inner.rsplit_once(',')?;
    Some(selector.trim())
}

// ----------------------------------------------------------------------------------------------
// Dashboard walking

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        out.push(panel);
        for nested in panel["panels"].as_array().into_iter().flatten() {
            out.push(nested);
        }
    }
    out
}

fn exprs(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|p| {
            p["targets"].as_array().into_iter().flatten().map(move |t| {
                (
                    format!("panel {:?}", p["title"].as_str().unwrap_or_default()),
                    t["expr"]
                        .as_str()
                        .expect("every target has an expr")
                        .to_string(),
                )
            })
        })
        .collect()
}

fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .collect()
}

fn variable_query(variable: &Value) -> Option<String> {
    match &variable["query"] {
        Value::String(s) if variable["type"] == "query" => Some(s.clone()),
        Value::Object(o) => o.get("query").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

#[test]
fn dashboards_are_current_grafana_json_with_a_datasource_variable() {
    let mut uids = BTreeSet::new();
    for name in DASHBOARDS {
        let d = dashboard(name);
        assert_eq!(d["schemaVersion"], SCHEMA_VERSION, "{name}: schemaVersion");
        assert!(
            d["title"].as_str().unwrap().starts_with("CX conductor / "),
            "{name}: title"
        );
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_string()),
            "{name}: unique uid"
        );
        assert!(
            d["uid"].as_str().unwrap().len() <= 40,
            "{name}: Grafana uids are at most 40 characters"
        );
        assert!(d["id"].is_null(), "{name}: no instance-specific id");
        assert!(
            d.get("__inputs").is_none(),
            "{name}: the sidecar cannot resolve __inputs"
        );
        assert!(
            d["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "cx-conductor"),
            "{name}: tagged for the dashboards link"
        );
        let vars = variables(&d);
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .expect("a datasource variable");
        assert_eq!(ds["type"], "datasource");
        assert_eq!(ds["query"], "prometheus");
        let names: BTreeSet<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert!(names.contains("namespace"), "{name}: a namespace variable");
        match name {
            "overview" => assert!(names.contains("journey") && names.contains("channel")),
            "journey" => assert!(
                names.contains("journey") && names.contains("stage") && names.contains("channel")
            ),
            _ => assert!(
                names.contains("channel")
                    && names.contains("stage")
                    && names.contains("touchpoint")
            ),
        }
        for v in &vars {
            if v["type"] == "query" {
                assert_eq!(
                    v["datasource"]["uid"], "${datasource}",
                    "{name}: variable {}",
                    v["name"]
                );
            }
        }
        // Every panel and query uses the datasource variable: no uid of someone's Grafana.
        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{name}: panel ids are unique"
            );
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap_or_default();
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}/{title}");
            assert_eq!(p["datasource"]["type"], "prometheus", "{name}/{title}");
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}/{title}");
            }
        }
    }
}

#[test]
fn every_panel_sets_units_thresholds_and_no_data_deliberately() {
    for name in DASHBOARDS {
        let d = dashboard(name);
        for p in panels(&d) {
            let kind = p["type"].as_str().unwrap();
            let title = p["title"].as_str().unwrap_or_default();
            assert!(
                ["row", "stat", "timeseries", "table", "bargauge"].contains(&kind),
                "{name}/{title}: panel type {kind}"
            );
            if kind == "row" {
                continue;
            }
            assert!(!title.is_empty(), "{name}: a panel without title");
            assert!(
                p["description"].as_str().is_some_and(|s| s.len() > 20),
                "{name}/{title}: a description tells what the panel shows"
            );
            let defaults = &p["fieldConfig"]["defaults"];
            assert!(
                defaults["unit"].as_str().is_some_and(|u| !u.is_empty()),
                "{name}/{title}: unit"
            );
            let no_value = defaults["noValue"].as_str().unwrap_or_default();
            assert!(
                !no_value.is_empty() && no_value != "No data",
                "{name}/{title}: noValue says what an empty result means, got {no_value:?}"
            );
            let steps = defaults["thresholds"]["steps"]
                .as_array()
                .expect("thresholds");
            assert!(
                steps[0]["value"].is_null(),
                "{name}/{title}: threshold base step"
            );
            let values: Vec<f64> = steps[1..]
                .iter()
                .map(|s| s["value"].as_f64().unwrap())
                .collect();
            assert!(
                values.windows(2).all(|w| w[0] < w[1]),
                "{name}/{title}: ascending thresholds"
            );
            if kind == "stat" || kind == "bargauge" {
                assert_eq!(defaults["color"]["mode"], "thresholds", "{name}/{title}");
            }
            // A current value without a sparkline is an instant query (no wasted range query).
            if kind == "bargauge" || (kind == "stat" && p["options"]["graphMode"] == "none") {
                for t in p["targets"].as_array().unwrap() {
                    assert_eq!(
                        t["instant"], true,
                        "{name}/{title}: a current value is an instant query"
                    );
                }
            }
        }
    }
}

#[test]
fn panels_fit_the_grid_without_overlapping() {
    fn rect(p: &Value) -> (i64, i64, i64, i64) {
        let g = &p["gridPos"];
        (
            g["x"].as_i64().unwrap(),
            g["y"].as_i64().unwrap(),
            g["w"].as_i64().unwrap(),
            g["h"].as_i64().unwrap(),
        )
    }
    fn overlap(a: (i64, i64, i64, i64), b: (i64, i64, i64, i64)) -> bool {
        a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
    }
    for name in DASHBOARDS {
        let d = dashboard(name);
        let top: Vec<&Value> = d["panels"].as_array().unwrap().iter().collect();
        let mut groups: Vec<Vec<&Value>> = vec![top.clone()];
        for p in &top {
            if let Some(nested) = p["panels"].as_array().filter(|n| !n.is_empty()) {
                assert_eq!(
                    p["collapsed"], true,
                    "{name}: only collapsed rows nest panels"
                );
                groups.push(nested.iter().collect());
            }
        }
        for group in groups {
            for (i, a) in group.iter().enumerate() {
                let ra = rect(a);
                assert!(
                    ra.0 >= 0 && ra.2 > 0 && ra.0 + ra.2 <= 24 && ra.3 > 0,
                    "{name}: {:?} fits 24 columns",
                    a["title"]
                );
                for b in &group[i + 1..] {
                    assert!(
                        !overlap(ra, rect(b)),
                        "{name}: {:?} overlaps {:?}",
                        a["title"],
                        b["title"]
                    );
                }
            }
        }
    }
}

#[test]
fn every_dashboard_query_parses_and_uses_only_exported_metrics() {
    let inventory = inventory();
    let builtins = ["__rate_interval", "__interval", "__range"];
    for name in DASHBOARDS {
        let d = dashboard(name);
        let vars = variables(&d);
        let defined: BTreeSet<String> = vars
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect();
        let mut used_vars = BTreeSet::new();
        let mut queries = exprs(&d);
        for v in &vars {
            if let Some(query) = variable_query(v) {
                let selector = variable_selector(&query).unwrap_or_else(|| {
                    panic!(
                        "{name}: variable {} is not label_values(selector, label)",
                        v["name"]
                    )
                });
                queries.push((format!("variable {}", v["name"]), selector.to_string()));
            }
        }
        assert!(queries.len() > 10, "{name}: queries found");
        for (context, expr) in &queries {
            check_promql(expr, &inventory, &format!("{name} {context}"));
            let mut rest = expr.as_str();
            while let Some(i) = rest.find('$') {
                rest = &rest[i + 1..];
                let var: String = rest
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !builtins.contains(&var.as_str()) {
                    assert!(
                        defined.contains(&var),
                        "{name} {context}: undefined variable ${var}"
                    );
                    used_vars.insert(var);
                }
            }
        }
        // Panel titles may use variables too (repeated rows).
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or_default();
            for var in &defined {
                if title.contains(&format!("${var}")) {
                    used_vars.insert(var.clone());
                }
            }
        }
        for var in &defined {
            if var != "datasource" {
                assert!(
                    used_vars.contains(var),
                    "{name}: variable ${var} is defined but unused"
                );
            }
        }
    }
    // The check bites.
    for (bad, why) in [
        ("sum(rate(cx_events_total[5m]))", "not a metric"),
        ("cx_kpi_gap{channel=\"web\"}", "no label"),
        ("sum(rate(cx_events_received_total[5m])", "does not parse"),
    ] {
        let result = std::panic::catch_unwind(|| check_promql(bad, &inventory, "bad"));
        let message = result
            .err()
            .and_then(|e| e.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| panic!("{bad} must be refused"));
        assert!(message.contains(why), "{bad}: {message}");
    }
}

fn metrics_of(name: &str, inventory: &Inventory) -> BTreeSet<String> {
    exprs(&dashboard(name))
        .iter()
        .flat_map(|(context, expr)| check_promql(expr, inventory, context))
        .collect()
}

#[test]
fn each_dashboard_shows_what_it_promises() {
    let inventory = inventory();
    let has = |name: &str, metrics: &[&str]| {
        let used = metrics_of(name, &inventory);
        for m in metrics {
            assert!(
                used.contains(*m),
                "{name} dashboard does not show {m}: {used:?}"
            );
        }
    };
    has(
        "overview",
        &[
            "cx_kpi_gap",
            "cx_kpi_gap_change",
            "cx_kpi_state",
            "cx_consistency_violations",
            "cx_journey_readiness_score",
            "cx_journey_self_assessment_score",
            "cx_journey_coverage_gaps",
            "cx_touchpoint_collector_ready",
            "cx_reconcile_errors_total",
            "cx_feedback_themes_total",
        ],
    );
    has(
        "journey",
        &[
            "cx_kpi_value",
            "cx_kpi_target",
            "cx_kpi_gap",
            "cx_kpi_gap_change",
            "cx_touchpoint_collector_ready",
            "cx_journey_readiness_score",
            "cx_feedback_themes_total",
        ],
    );
    has(
        "collectors",
        &[
            "cx_events_received_total",
            "cx_events_rejected_total",
            "cx_interaction_duration_seconds_bucket",
            "cx_interactions_total",
            "cx_survey_responses_total",
        ],
    );

    let all_exprs = |name: &str| -> String {
        exprs(&dashboard(name))
            .into_iter()
            .map(|(_, e)| e + "\n")
            .collect()
    };
    let overview = dashboard("overview");
    // KPI verdicts by journey x stage, and a KPI table whose gap column has thresholds.
    let matrix = panels(&overview)
        .into_iter()
        .find(|p| {
            p["transformations"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| {
                    t["id"] == "groupingToMatrix"
                        && t["options"]["rowField"] == "journey_ref"
                        && t["options"]["columnField"] == "stage"
                })
        })
        .expect("a journey x stage matrix");
    assert!(
        matrix["targets"][0]["expr"]
            .as_str()
            .unwrap()
            .contains("state=\"Breached\"")
    );
    let gap_table = panels(&overview)
        .into_iter()
        .find(|p| p["title"] == "KPI gaps")
        .expect("a KPI gap table");
    let gap_override = gap_table["fieldConfig"]["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["matcher"]["options"] == "Gap")
        .expect("the Gap column is coloured");
    assert!(
        gap_override["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "thresholds")
    );
    assert!(all_exprs("overview").contains("state=\"AtRisk\""));
    // The journey dashboard repeats a row per stage.
    let journey = dashboard("journey");
    assert!(
        panels(&journey)
            .iter()
            .any(|p| p["type"] == "row" && p["repeat"] == "stage"),
        "a row per stage"
    );
    // Per stage, what customers write about: unhappy answers' themes first, then everyone's,
    // each counted over the time range and compared with the range before it.
    let theme_tables: Vec<&Value> = panels(&journey)
        .into_iter()
        .filter(|p| {
            p["targets"].as_array().into_iter().flatten().any(|t| {
                t["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains("cx_feedback_themes_total"))
            })
        })
        .collect();
    let titles: Vec<&str> = theme_tables
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "What unhappy customers write about at $stage",
            "What customers write about at $stage"
        ]
    );
    // The overview has the same two tables, by stage.
    let overview_themes: Vec<String> = panels(&overview)
        .into_iter()
        .filter(|p| {
            p["targets"].as_array().into_iter().flatten().any(|t| {
                t["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains("sum by (namespace, stage, theme)"))
            })
        })
        .map(|p| p["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        overview_themes,
        [
            "What unhappy customers write about, by stage",
            "What customers write about, by stage"
        ]
    );
    let unhappy = &theme_tables[0];
    assert!(
        unhappy["gridPos"]["x"] == 0 && unhappy["gridPos"]["y"] == theme_tables[1]["gridPos"]["y"]
    );
    for (table, segment) in theme_tables.iter().zip([true, false]) {
        let exprs: Vec<&str> = table["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["expr"].as_str().unwrap())
            .collect();
        assert!(exprs.iter().all(|e| e.contains("sum by (theme)")));
        assert_eq!(
            exprs
                .iter()
                .all(|e| e.contains(r#"segment=~"detractor|low""#)),
            segment,
            "{exprs:?}"
        );
        assert!(
            exprs[1].contains("[$__range] offset $__range"),
            "{}",
            exprs[1]
        );
    }
    // Collectors: rejects by reason, latency percentiles.
    let collectors = all_exprs("collectors");
    assert!(collectors.contains("sum by (reason) (rate(cx_events_rejected_total"));
    for q in ["0.5", "0.9", "0.99"] {
        assert!(
            collectors.contains(&format!("histogram_quantile({q}, sum by (le, timing) (rate(cx_interaction_duration_seconds_bucket")),
            "p{q}"
        );
    }
}

// ----------------------------------------------------------------------------------------------
// The chart's PrometheusRule

/// Renders the chart with every optional part on, with the real `helm` of `scripts/cluster.sh`
/// (built if needed; no cluster).
fn render_all_on() -> String {
    let chart = root().join("charts/cx-conductor");
    let output = cluster::tool_command("helm")
        .args(["template", "cx-conductor"])
        .arg(&chart)
        .args(["--kube-version", "1.33.0", "--namespace", "cx-system", "-f"])
        .arg(chart.join("ci/all-on-values.yaml"))
        .output()
        .expect("helm runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn rule_exprs(rendered: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(rendered) {
        let doc: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
        let doc = serde_json::to_value(doc).unwrap();
        if doc["kind"] != "PrometheusRule" {
            continue;
        }
        for group in doc["spec"]["groups"].as_array().unwrap() {
            for rule in group["rules"].as_array().unwrap() {
                let name = rule["alert"]
                    .as_str()
                    .or(rule["record"].as_str())
                    .unwrap()
                    .to_string();
                out.push((name, rule["expr"].as_str().unwrap().to_string()));
            }
        }
    }
    out
}

#[test]
fn every_alert_rule_parses_and_uses_only_exported_metrics() {
    let rendered = render_all_on();
    let inventory = inventory();
    let rules = rule_exprs(&rendered);
    assert_eq!(rules.len(), 4, "{rules:?}");
    let mut used = BTreeSet::new();
    for (alert, expr) in &rules {
        used.extend(check_promql(expr, &inventory, &format!("alert {alert}")));
    }
    for metric in [
        "cx_reconcile_errors_total",
        "cx_reconciles_total",
        "cx_touchpoint_collector_ready",
        "cx_consistency_violations",
        "cx_journey_readiness_score",
    ] {
        assert!(used.contains(metric), "an alert on {metric}");
    }
}

#[test]
fn dashboard_files_are_what_the_chart_ships() {
    // Every JSON under dashboards/ is one of the three documented ones (the chart globs them).
    let dir = root().join("charts/cx-conductor/dashboards");
    let names: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p: &PathBuf| p.extension().is_some_and(|e| e == "json"))
        .map(|p| file_stem(&p))
        .collect();
    let expected: BTreeSet<String> = DASHBOARDS.iter().map(|s| s.to_string()).collect();
    assert_eq!(names, expected);
    let uids: HashMap<&str, &str> = [
        ("overview", "cx-overview"),
        ("journey", "cx-journey"),
        ("collectors", "cx-collectors"),
    ]
    .into_iter()
    .collect();
    for name in DASHBOARDS {
        assert_eq!(
            dashboard(name)["uid"],
            uids[name],
            "stable uid: links and bookmarks keep working"
        );
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// A CSAT score of 5 is the top box on a 5-point scale and a middling one on a 7-point scale:
/// the score distribution keeps one row per question and touchpoint, so the two scales are
/// never summed into one row.
#[test]
fn survey_scores_of_different_scales_are_never_summed() {
    let collectors = dashboard("collectors");
    let (_, expr) = exprs(&collectors)
        .into_iter()
        .find(|(_, expr)| expr.contains("cx_survey_responses_total") && expr.contains("score"))
        .expect("the score distribution panel");
    assert!(
        expr.starts_with("label_join(sum by (metric, touchpoint, score) ("),
        "{expr}"
    );
    let panel = panels(&collectors)
        .into_iter()
        .find(|p| p["title"] == "Survey score distribution")
        .expect("panel");
    assert_eq!(
        panel["transformations"][0]["options"]["rowField"],
        "question"
    );
}

// ----------------------------------------------------------------------------------------------
// Units: what each number measures, and what a panel shows it as

/// What a number on a dashboard measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    /// Things counted: events, answers, KPIs, violations, gaps, samples.
    Count,
    /// A counter's rate, per second.
    PerSecond,
    /// 0 or 1 per series (ready, in a state): summed it is a count, averaged a ratio.
    Flag,
    /// 0 to 1.
    Ratio,
    /// 0 to 100.
    Percent,
    /// Seconds.
    Seconds,
    /// Histogram buckets of durations in seconds: only `histogram_quantile` makes seconds.
    SecondsBuckets,
    /// Net Promoter Score, −100 to 100.
    Nps,
    /// Customer effort score, 1 to 7.
    Ces,
    /// Journey readiness score, 0 to 100.
    Readiness,
    /// CX self-assessment: yes answers, 0 to 25.
    SelfAssessment,
    /// A custom PromQL KPI: whatever its author measures.
    Custom,
    /// KPI figures grouped by indicator: each row in its indicator's unit, and says which.
    PerIndicator,
}

/// The unit of each KPI indicator (`indicator` label of `cx_kpi_value`, `cx_kpi_target`,
/// `cx_kpi_gap`, `cx_kpi_gap_change`; a gap is in points of its indicator's unit).
const INDICATOR_UNITS: [(&str, Unit); 12] = [
    ("nps", Unit::Nps),
    ("csat", Unit::Percent),
    ("ces", Unit::Ces),
    ("fcr", Unit::Percent),
    ("abandonment-rate", Unit::Percent),
    ("first-response-time", Unit::Seconds),
    ("resolution-rate", Unit::Percent),
    ("service-level", Unit::Percent),
    ("theme-share", Unit::Percent),
    ("comment-rate", Unit::Percent),
    ("outcome-share", Unit::Percent),
    ("custom", Unit::Custom),
];

/// The unit of each metric the project exports; `None` for the KPI figures, whose unit is their
/// indicator's ([`INDICATOR_UNITS`]).
const METRIC_UNITS: [(&str, Option<Unit>); 38] = [
    ("cx_events_received_total", Some(Unit::Count)),
    ("cx_feedback_comments_total", Some(Unit::Count)),
    ("cx_feedback_themes_total", Some(Unit::Count)),
    ("cx_events_rejected_total", Some(Unit::Count)),
    ("cx_survey_responses_total", Some(Unit::Count)),
    ("cx_interactions_total", Some(Unit::Count)),
    (
        "cx_interaction_duration_seconds_bucket",
        Some(Unit::SecondsBuckets),
    ),
    ("cx_interaction_duration_seconds_sum", Some(Unit::Seconds)),
    ("cx_interaction_duration_seconds_count", Some(Unit::Count)),
    (
        "cx_first_response_seconds_bucket",
        Some(Unit::SecondsBuckets),
    ),
    ("cx_first_response_seconds_sum", Some(Unit::Seconds)),
    ("cx_first_response_seconds_count", Some(Unit::Count)),
    ("cx_kpi_value", None),
    ("cx_kpi_target", None),
    ("cx_kpi_gap", None),
    ("cx_kpi_gap_change", None),
    ("cx_kpi_samples", Some(Unit::Count)),
    ("cx_kpi_state", Some(Unit::Flag)),
    ("cx_consistency_violations", Some(Unit::Count)),
    ("cx_journey_coverage_gaps", Some(Unit::Count)),
    ("cx_journey_readiness_score", Some(Unit::Readiness)),
    (
        "cx_journey_self_assessment_score",
        Some(Unit::SelfAssessment),
    ),
    ("cx_touchpoint_collector_ready", Some(Unit::Flag)),
    ("cx_reconciles_total", Some(Unit::Count)),
    ("cx_reconcile_errors_total", Some(Unit::Count)),
    (
        "cx_reconcile_duration_seconds_bucket",
        Some(Unit::SecondsBuckets),
    ),
    ("cx_reconcile_duration_seconds_sum", Some(Unit::Seconds)),
    ("cx_reconcile_duration_seconds_count", Some(Unit::Count)),
    ("cx_api_writes_total", Some(Unit::Count)),
    ("cx_export_batches_total", Some(Unit::Count)),
    ("cx_export_events_total", Some(Unit::Count)),
    ("cx_export_failures_total", Some(Unit::Count)),
    (
        "cx_export_duration_seconds_bucket",
        Some(Unit::SecondsBuckets),
    ),
    ("cx_export_duration_seconds_sum", Some(Unit::Seconds)),
    ("cx_export_duration_seconds_count", Some(Unit::Count)),
    ("cx_export_pending_events", Some(Unit::Count)),
    ("cx_export_queued_events", Some(Unit::Count)),
    ("cx_export_dropped_events_total", Some(Unit::Count)),
];

/// Whether Grafana's `unit` shows a number of `unit` truthfully.
fn shows(unit: Unit, grafana: &str) -> bool {
    match unit {
        Unit::Count | Unit::Flag | Unit::Readiness | Unit::SelfAssessment | Unit::Custom => {
            ["none", "short"].contains(&grafana)
        }
        Unit::PerIndicator => grafana == "none",
        Unit::PerSecond => {
            ["ops", "wps", "reqps"].contains(&grafana)
                || (grafana.starts_with("suffix: ") && grafana.ends_with("/s"))
        }
        Unit::Ratio => grafana == "percentunit",
        Unit::Percent => grafana == "percent",
        Unit::Seconds => grafana == "s",
        Unit::Nps => grafana == "suffix: NPS",
        Unit::Ces => grafana == "suffix: /7",
        Unit::SecondsBuckets => false,
    }
}

/// The unit of an expression's result, as far as it can be told from the expression.
#[derive(Clone, Debug, PartialEq)]
enum Measure {
    /// A plain number (a literal, `vector(0)`): takes the unit of what it meets.
    Number,
    /// One unit.
    Of(Unit),
    /// KPI figures of several indicators, so several units: fine only grouped by indicator.
    Mixed(BTreeSet<Unit>),
}

fn selector_measure(
    name: &str,
    matchers: &[promql_parser::label::Matcher],
) -> Result<Measure, String> {
    let unit = METRIC_UNITS
        .iter()
        .find(|(m, _)| *m == name)
        .ok_or(format!("no unit for {name}: add it to METRIC_UNITS"))?
        .1;
    if let Some(unit) = unit {
        return Ok(Measure::Of(unit));
    }
    let mut indicators: BTreeSet<&str> = INDICATOR_UNITS.iter().map(|(i, _)| *i).collect();
    for m in matchers.iter().filter(|m| m.name == "indicator") {
        let values: BTreeSet<&str> = m
            .value
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split('|')
            .collect();
        indicators = match &m.op {
            MatchOp::Equal | MatchOp::Re(_) => &indicators & &values,
            MatchOp::NotEqual | MatchOp::NotRe(_) => &indicators - &values,
        };
    }
    let units: BTreeSet<Unit> = INDICATOR_UNITS
        .iter()
        .filter(|(i, _)| indicators.contains(i))
        .map(|(_, u)| *u)
        .collect();
    match units.len() {
        0 => Err(format!(
            "{name}: its indicator matchers select no indicator"
        )),
        1 => Ok(Measure::Of(*units.first().unwrap())),
        _ => Ok(Measure::Mixed(units)),
    }
}

/// The measure of a PromQL expression: selectors take their metric's unit, and functions,
/// aggregations and operators transform it (a rate is per second, a quantile of seconds buckets
/// is seconds, a sum of flags is a count, a count over a count a ratio...). Anything this does
/// not know is an error, so a new kind of query gets a deliberate rule.
fn measure(expr: &Expr) -> Result<Measure, String> {
    use Measure::{Mixed, Number, Of};
    Ok(match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Number,
        Expr::Paren(p) => measure(&p.expr)?,
        Expr::Unary(u) => measure(&u.expr)?,
        Expr::Subquery(s) => measure(&s.expr)?,
        Expr::VectorSelector(vs) => selector_measure(&selector_name(vs)?, &vs.matchers.matchers)?,
        Expr::MatrixSelector(ms) => {
            selector_measure(&selector_name(&ms.vs)?, &ms.vs.matchers.matchers)?
        }
        Expr::Call(call) => {
            let args = &call.args.args;
            let first = || -> Result<Measure, String> {
                measure(args.first().ok_or("a call without arguments")?)
            };
            match call.func.name {
                "rate" | "irate" => match first()? {
                    Of(Unit::Count) => Of(Unit::PerSecond),
                    Of(Unit::SecondsBuckets) => Of(Unit::SecondsBuckets),
                    other => return Err(format!("rate() of {other:?}")),
                },
                "increase" | "delta" | "last_over_time" | "max_over_time" | "min_over_time"
                | "avg_over_time" | "abs" | "ceil" | "floor" | "round" | "clamp" | "clamp_min"
                | "clamp_max" | "sort" | "sort_desc" | "label_replace" | "label_join" => first()?,
                "histogram_quantile" => match measure(&args[1])? {
                    Of(Unit::SecondsBuckets) => Of(Unit::Seconds),
                    other => return Err(format!("histogram_quantile() of {other:?}")),
                },
                "vector" | "scalar" => Number,
                "timestamp" | "time" => Of(Unit::Seconds),
                other => return Err(format!("no unit rule for {other}()")),
            }
        }
        Expr::Aggregate(agg) => {
            let inner = measure(&agg.expr)?;
            let by_indicator = agg.modifier.as_ref().is_some_and(|m| {
                m.is_include() && m.labels().labels.iter().any(|l| l == "indicator")
            });
            match (agg.op.to_string().as_str(), inner) {
                (_, Mixed(_)) if by_indicator => Of(Unit::PerIndicator),
                (_, Mixed(units)) => Mixed(units),
                ("count", _) => Of(Unit::Count),
                ("sum", Of(Unit::Flag)) => Of(Unit::Count),
                ("avg", Of(Unit::Flag)) => Of(Unit::Ratio),
                ("sum" | "avg" | "max" | "min" | "topk" | "bottomk" | "quantile", m) => m,
                (op, _) => return Err(format!("no unit rule for {op}")),
            }
        }
        Expr::Binary(b) => {
            let (lhs, rhs) = (measure(&b.lhs)?, measure(&b.rhs)?);
            let op = b.op.to_string();
            let bool_modifier = b.modifier.as_ref().is_some_and(|m| m.return_bool);
            if let (Mixed(_), _) | (_, Mixed(_)) = (&lhs, &rhs) {
                return Err(format!(
                    "{op} on KPI figures of several units ({lhs:?}, {rhs:?})"
                ));
            }
            match (op.as_str(), lhs, rhs) {
                ("==" | "!=" | ">" | "<" | ">=" | "<=", _, _) if bool_modifier => Of(Unit::Flag),
                ("==" | "!=" | ">" | "<" | ">=" | "<=" | "and" | "unless", Number, r) => r,
                ("==" | "!=" | ">" | "<" | ">=" | "<=" | "and" | "unless", l, _) => l,
                ("or" | "+" | "-", l, Number) => l,
                ("or" | "+" | "-", Number, r) => r,
                ("or" | "+" | "-", l, r) if l == r => l,
                ("*", Number, r) => r,
                ("*" | "/", l, Number) => l,
                ("/", Of(l), Of(r)) if l == r || (l == Unit::Flag && r == Unit::Count) => {
                    Of(Unit::Ratio)
                }
                (op, l, r) => return Err(format!("{l:?} {op} {r:?} has no unit")),
            }
        }
        Expr::Extension(_) => return Err("an extension expression".into()),
    })
}

fn selector_name(vs: &promql_parser::parser::VectorSelector) -> Result<String, String> {
    vs.name
        .clone()
        .or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
                .map(|m| m.value.clone())
        })
        .ok_or_else(|| "a selector without one metric name".to_string())
}

/// The Grafana unit a panel shows target `ref_id` in: a per-query override (`byFrameRefID`),
/// or, in a table, an override of the column the target's value becomes, else the default.
fn shown_unit<'a>(panel: &'a Value, ref_id: &str) -> (&'a str, Option<&'a Value>) {
    let column = panel["transformations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["id"] == "organize")
        .find_map(|t| t["options"]["renameByName"][format!("Value #{ref_id}")].as_str());
    let overrides = panel["fieldConfig"]["overrides"].as_array();
    let matching = overrides.into_iter().flatten().find(|o| {
        let options = o["matcher"]["options"].as_str();
        (o["matcher"]["id"] == "byFrameRefID" && options == Some(ref_id))
            || (o["matcher"]["id"] == "byName" && options.is_some() && options == column)
    });
    let unit = matching.and_then(|o| {
        o["properties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "unit")
            .and_then(|p| p["value"].as_str())
    });
    (
        unit.unwrap_or_else(|| panel["fieldConfig"]["defaults"]["unit"].as_str().unwrap()),
        matching,
    )
}

/// Unit problems of one panel: a target whose unit its panel misrepresents, or targets of
/// different units sharing one Grafana unit (one axis, one scale) in a graph or stat.
fn unit_problems(panel: &Value) -> Vec<String> {
    let title = panel["title"].as_str().unwrap_or_default();
    let kind = panel["type"].as_str().unwrap_or_default();
    let mut problems = Vec::new();
    let mut shown: BTreeMap<&str, BTreeSet<Unit>> = BTreeMap::new();
    for target in panel["targets"].as_array().into_iter().flatten() {
        let ref_id = target["refId"].as_str().unwrap_or_default();
        let expr = target["expr"].as_str().unwrap_or_default();
        let ast = match parser::parse(&substitute(expr)) {
            Ok(ast) => ast,
            Err(e) => {
                problems.push(format!("{title} / {ref_id}: does not parse: {e}"));
                continue;
            }
        };
        let unit = match measure(&ast) {
            Ok(Measure::Of(unit)) => unit,
            Ok(Measure::Number) => continue,
            Ok(Measure::Mixed(units)) => {
                problems.push(format!(
                    "{title} / {ref_id}: mixes {units:?} in one query; split it by indicator: {expr}"
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!("{title} / {ref_id}: {e}: {expr}"));
                continue;
            }
        };
        let (grafana, by_override) = shown_unit(panel, ref_id);
        if !shows(unit, grafana) {
            problems.push(format!(
                "{title} / {ref_id}: {unit:?} shown as unit {grafana:?}: {expr}"
            ));
        }
        if unit == Unit::PerIndicator && kind != "table" {
            problems.push(format!(
                "{title} / {ref_id}: KPIs of every indicator on one axis: {expr}"
            ));
        }
        // Each unit of a graph has its own axis, and says what it is.
        if kind == "timeseries"
            && let Some(o) = by_override
            && !o["properties"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["id"] == "custom.axisLabel")
        {
            problems.push(format!(
                "{title} / {ref_id}: an axis of its own has no label"
            ));
        }
        shown.entry(grafana).or_default().insert(unit);
    }
    if kind != "table" {
        for (grafana, units) in &shown {
            if units.len() > 1 {
                problems.push(format!(
                    "{title}: {units:?} share unit {grafana:?} (one axis and scale)"
                ));
            }
        }
    }
    problems
}

#[test]
fn every_exported_metric_and_indicator_has_a_unit() {
    let inventory = inventory();
    for (name, _) in METRIC_UNITS {
        assert!(inventory.contains_key(name), "{name} is not exported");
    }
    for (name, _) in inventory {
        assert!(
            METRIC_UNITS.iter().any(|(m, _)| *m == name),
            "{name} has no unit in METRIC_UNITS"
        );
    }
    for indicator in BuiltinIndicator::ALL {
        assert!(
            INDICATOR_UNITS
                .iter()
                .any(|(i, _)| *i == indicator.as_str()),
            "indicator {} has no unit",
            indicator.as_str()
        );
    }
}

#[test]
fn every_panel_shows_one_unit_per_axis_and_the_right_one() {
    let mut problems = Vec::new();
    for name in DASHBOARDS {
        for panel in panels(&dashboard(name)) {
            problems.extend(
                unit_problems(panel)
                    .into_iter()
                    .map(|p| format!("{name} / {p}")),
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The check bites: the journey dashboard's KPI graph as it was (every indicator on one
    // unitless axis), NPS and CES on one unit, and a ratio shown as a percentage.
    let bad = |targets: Value, unit: &str| {
        json!({"title": "bad", "type": "timeseries", "targets": targets,
               "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}})
    };
    for (panel, why) in [
        (
            bad(
                json!([{"refId": "A", "expr": "max by (kpi) (cx_kpi_value{stage=~\"$stage\"})"}]),
                "none",
            ),
            "mixes",
        ),
        (
            bad(
                json!([{"refId": "A", "expr": "max by (kpi) (cx_kpi_value{indicator=\"nps\"})"},
                       {"refId": "B", "expr": "max by (kpi) (cx_kpi_value{indicator=\"ces\"})"}]),
                "none",
            ),
            "shown as unit",
        ),
        (
            bad(
                json!([{"refId": "A", "expr": "avg(cx_touchpoint_collector_ready)"}]),
                "percent",
            ),
            "Ratio shown as unit \"percent\"",
        ),
        (
            bad(
                json!([{"refId": "A", "expr": "sum(cx_kpi_gap{indicator=\"csat\"}) + sum(rate(cx_reconciles_total[5m]))"}]),
                "percent",
            ),
            "has no unit",
        ),
    ] {
        let problems = unit_problems(&panel);
        assert!(
            problems.iter().any(|p| p.contains(why)),
            "{why}: {problems:?}"
        );
    }
}

// ----------------------------------------------------------------------------------------------
// Filters

/// Variables named after a label: each filters every series that has the label.
const LABEL_VARIABLES: [&str; 5] = ["namespace", "journey", "channel", "stage", "touchpoint"];

/// Every selector of an expression: (metric names, (label, value) of each matcher).
type Selector = (Vec<String>, Vec<(String, String)>);

struct MatcherValues(Vec<Selector>);

impl ExprVisitor for MatcherValues {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let selector = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        let mut names: Vec<String> = selector.name.iter().cloned().collect();
        let mut matchers = Vec::new();
        for m in &selector.matchers.matchers {
            if m.name == "__name__" {
                names.extend(m.value.split('|').map(str::to_string));
            } else {
                matchers.push((m.name.clone(), m.value.clone()));
            }
        }
        self.0.push((names, matchers));
        Ok(true)
    }
}

/// Grafana's variables written `__var_NAME__` (builtins a plain duration): plain PromQL in which
/// a matcher's value still tells which variable it uses.
fn mark_variables(expr: &str) -> String {
    let mut out = expr.to_string();
    for builtin in ["__rate_interval", "__interval", "__range"] {
        out = out
            .replace(&format!("${{{builtin}}}"), "5m")
            .replace(&format!("${builtin}"), "5m");
    }
    let mut result = String::new();
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            result.push(c);
            continue;
        }
        let mut name = String::new();
        if chars.peek() == Some(&'{') {
            chars.next();
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
                name.push(c);
            }
            name = name.split(':').next().unwrap_or_default().to_string();
        } else {
            while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
                name.push(c);
            }
        }
        result.push_str(&format!("__var_{name}__"));
    }
    result
}

fn selectors(expr: &str) -> Vec<Selector> {
    let ast = parser::parse(&mark_variables(expr)).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut found = MatcherValues(Vec::new());
    walk_expr(&mut found, &ast).unwrap();
    found.0
}

/// Every panel with the variable its row repeats over (rows repeat the panels below them, up
/// to the next row; a collapsed row holds its own).
fn panels_with_rows(dashboard: &Value) -> Vec<(&Value, Option<&str>)> {
    let mut out = Vec::new();
    let mut repeat = None;
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            repeat = panel["repeat"].as_str();
            for nested in panel["panels"].as_array().into_iter().flatten() {
                out.push((nested, repeat));
            }
        } else {
            out.push((panel, repeat));
        }
    }
    out
}

/// Where `queries` (context, expr, the row's repeat variable, variables defined before it) fail
/// to filter a series that has a variable's label by that variable. A variable a row repeats
/// over filters only that row's panels: the rest of the dashboard is about the whole journey.
fn unfiltered(
    queries: &[(String, String, Option<&str>, Vec<&str>)],
    inventory: &Inventory,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (context, expr, repeat, vars) in queries {
        for (metrics, matchers) in selectors(expr) {
            for var in vars {
                let repeated_elsewhere = queries.iter().any(|(_, _, r, _)| *r == Some(var));
                if repeated_elsewhere && *repeat != Some(var) {
                    continue;
                }
                let labelled = metrics
                    .iter()
                    .all(|m| inventory.get(m).is_some_and(|labels| labels.contains(*var)));
                let filtered = matchers.iter().any(|(label, value)| {
                    label == var && value.contains(&format!("__var_{var}__"))
                });
                if labelled && !filtered {
                    problems.push(format!(
                        "{context}: {metrics:?} has label {var} but ignores ${var}: {expr}"
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn every_variable_filters_every_query_whose_series_have_its_label() {
    let inventory = inventory();
    let mut problems = Vec::new();
    for name in DASHBOARDS {
        let d = dashboard(name);
        let defined: Vec<&str> = variables(&d)
            .iter()
            .filter_map(|v| v["name"].as_str())
            .filter(|n| LABEL_VARIABLES.contains(n))
            .collect();
        let mut queries = Vec::new();
        for (panel, repeat) in panels_with_rows(&d) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                queries.push((
                    format!("{name} / {}", panel["title"].as_str().unwrap_or_default()),
                    target["expr"].as_str().unwrap().to_string(),
                    repeat,
                    defined.clone(),
                ));
            }
        }
        // A variable's values follow the variables before it.
        for (i, v) in variables(&d).iter().enumerate() {
            if let Some(query) = variable_query(v) {
                let before: Vec<&str> = variables(&d)[..i]
                    .iter()
                    .filter_map(|v| v["name"].as_str())
                    .filter(|n| LABEL_VARIABLES.contains(n))
                    .collect();
                queries.push((
                    format!("{name} / variable {}", v["name"]),
                    variable_selector(&query).unwrap().to_string(),
                    None,
                    before,
                ));
            }
        }
        problems.extend(unfiltered(&queries, &inventory));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The check bites: a channel table that ignores $stage in a row repeated per stage, and a
    // KPI stat that ignores $journey.
    let bad = vec![
        (
            "bad table".to_string(),
            "max by (touchpoint) (cx_touchpoint_collector_ready{namespace=\"$namespace\"})"
                .to_string(),
            Some("stage"),
            vec!["namespace", "stage"],
        ),
        (
            "bad stat".to_string(),
            "sum(cx_kpi_state{state=\"Breached\", namespace=\"$namespace\"})".to_string(),
            None,
            vec!["namespace", "journey"],
        ),
    ];
    let problems = unfiltered(&bad, &inventory);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("ignores $stage") && problems[1].contains("ignores $journey"));
}
