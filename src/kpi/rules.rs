//! The *Act* step: alert rules that route a KPI breach to the function that owns it.
//!
//! For each KPI two alerts over the operator's `cx_kpi_state` gauge ([`super::metrics`]):
//! `CxKpiBreached` (severity `critical`) and `CxKpiAtRisk` (severity `warning`), labelled with the
//! KPI's `owner` and `journey` so Alertmanager routes them (and `kpi`, which keeps rules sharing
//! an alert name distinct for promtool's lint), and annotated with the KPI, its value, target and
//! gap — value and gap read with `query` in the annotation template, the target written in at
//! generation (the rules are regenerated when a KPI changes).
//!
//! The operator's own metrics must be scraped with `honorLabels: true`: otherwise Prometheus
//! renames the KPI's `namespace` label to `exported_namespace` (the operator's pod namespace
//! takes its place) and these expressions match nothing. Because they select `state="Breached"` / `state="AtRisk"` exactly,
//! `InsufficientData` and `Unknown` never fire them.
//!
//! `for:` is the KPI's evaluation interval: the state is re-evaluated once per interval, so an
//! alert fires only when the next evaluation confirms the breach, not on one unlucky cycle. It is
//! written in Prometheus' canonical form ([`alert_for`]), which always matches the Prometheus
//! Operator's `Duration` pattern: one invalid `for` would make the API server refuse the whole
//! PrometheusRule, silencing every alert of the namespace.
//!
//! Two forms of the same rules: a `monitoring.coreos.com/v1` `PrometheusRule` per namespace for
//! the Prometheus Operator ([`prometheus_rules`]), and the plain rule file (`groups:`) that
//! `promtool check rules` / `promtool test rules` read ([`rule_file`]).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use super::metrics::KpiLabels;
use super::promql::{number, string_literal};
use super::recording::{Increase, hours_group, recording_group};
use super::window::WindowSpec;
use crate::api::{Direction, ExperienceKPI};

/// Name of the PrometheusRule of each namespace.
pub const RULE_NAME: &str = "cx-conductor-kpis";
/// Alert of a breached KPI.
pub const BREACHED_ALERT: &str = "CxKpiBreached";
/// Alert of a KPI at risk.
pub const AT_RISK_ALERT: &str = "CxKpiAtRisk";

/// A Prometheus rule file: what `promtool` reads and a PrometheusRule's `spec`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RuleFile {
    /// Rule groups.
    pub groups: Vec<RuleGroup>,
}

/// A rule group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RuleGroup {
    /// Group name, unique in a file.
    pub name: String,
    /// How often the group is evaluated; the server's global interval when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// An alerting or a recording rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Rule {
    /// An alert.
    Alert(AlertRule),
    /// A recorded series ([`super::recording`]).
    Record(RecordingRule),
}

/// A recording rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RecordingRule {
    /// The series it records.
    pub record: String,
    /// Its PromQL.
    pub expr: String,
}

/// An alerting rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AlertRule {
    /// Alert name.
    pub alert: String,
    /// PromQL condition.
    pub expr: String,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: String,
    /// Labels added to the alert (routing).
    pub labels: BTreeMap<String, String>,
    /// Annotations (text for people; Go templates).
    pub annotations: BTreeMap<String, String>,
}

/// A `monitoring.coreos.com/v1` PrometheusRule, ready to be applied (the controller adds its
/// owner reference and field manager).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRule {
    /// `monitoring.coreos.com/v1`.
    pub api_version: String,
    /// `PrometheusRule`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// The rule groups.
    pub spec: RuleFile,
}

/// The `for` of alerts whose KPI has no usable interval: the operator's default evaluation interval.
pub const DEFAULT_FOR: &str = "5m";

/// The `for` of a KPI's alerts: its `interval` in Prometheus' canonical form (`90m` gives `1h30m`,
/// `60s` gives `1m`), which always matches the Prometheus Operator's `Duration` pattern. An
/// interval that is not a positive duration (the CRD refuses them, but objects stored under an
/// older CRD, or read by `check` before validation, may carry one) gives [`DEFAULT_FOR`], the
/// interval the operator then evaluates the KPI at.
pub fn alert_for(interval: &str) -> String {
    match WindowSpec::parse(interval) {
        Ok(WindowSpec::Rolling { duration, .. }) => {
            promql_parser::util::display_duration(&duration)
        }
        _ => DEFAULT_FOR.to_owned(),
    }
}

/// The two alert rules of a KPI.
pub fn kpi_rules(kpi: &ExperienceKPI) -> [AlertRule; 2] {
    let labels = KpiLabels::of(kpi);
    let objective = &kpi.spec.objective;
    let side = match objective.direction {
        Direction::AtLeast => "at least",
        Direction::AtMost => "at most",
    };
    let warning = objective
        .warning
        .map(|w| format!(" (warning {})", number(w)))
        .unwrap_or_default();
    let selector = |metric: &str| {
        format!(
            "{metric}{{namespace={}, kpi={}}}",
            string_literal(&labels.namespace),
            string_literal(&labels.kpi)
        )
    };
    // Go template: the gauge's current value, humanized, or "unknown".
    let current = |metric: &str| {
        format!(
            "{{{{ with query `{}` }}}}{{{{ . | first | value | humanize }}}}{{{{ else }}}}unknown{{{{ end }}}}",
            selector(metric)
        )
    };
    let owner = labels.owner.as_str();
    let rule = |alert: &str, state: &str, severity: &str, verdict: &str| {
        // `kpi` is on the series already; repeating it makes each rule's labels unique, which
        // promtool's lint requires of rules sharing an alert name.
        let mut rule_labels = BTreeMap::from([
            ("severity".to_owned(), severity.to_owned()),
            ("kpi".to_owned(), labels.kpi.clone()),
        ]);
        if !labels.owner.is_empty() {
            rule_labels.insert("owner".into(), labels.owner.clone());
        }
        if !labels.journey.is_empty() {
            rule_labels.insert("journey".into(), labels.journey.clone());
        }
        let owner_text = if owner.is_empty() {
            "no owner is set on the KPI".to_owned()
        } else {
            format!("owner: {owner}")
        };
        let annotations = BTreeMap::from([
            (
                "summary".to_owned(),
                format!(
                    "KPI {}/{} ({}) is {verdict}",
                    labels.namespace, labels.kpi, labels.indicator
                ),
            ),
            (
                "description".to_owned(),
                format!(
                    "{} measures {} against a target of {side} {}{warning} over {}; the gap is {} ({owner_text}).",
                    labels.kpi,
                    current("cx_kpi_value"),
                    number(objective.target),
                    kpi.spec.window,
                    current("cx_kpi_gap"),
                ),
            ),
        ]);
        AlertRule {
            alert: alert.to_owned(),
            expr: format!(
                "cx_kpi_state{{namespace={}, kpi={}, state={}}} == 1",
                string_literal(&labels.namespace),
                string_literal(&labels.kpi),
                string_literal(state)
            ),
            for_: alert_for(&kpi.spec.interval),
            labels: rule_labels,
            annotations,
        }
    };
    [
        rule(BREACHED_ALERT, "Breached", "critical", "breached"),
        rule(AT_RISK_ALERT, "AtRisk", "warning", "at risk"),
    ]
}

/// The rule group of one namespace's KPIs, in name order.
pub fn rule_group(namespace: &str, kpis: &[&ExperienceKPI]) -> RuleGroup {
    let mut sorted: Vec<&&ExperienceKPI> = kpis.iter().collect();
    sorted.sort_by_key(|k| k.name_any());
    RuleGroup {
        name: format!("cx-kpis.{namespace}"),
        interval: None,
        rules: sorted
            .into_iter()
            .flat_map(|k| kpi_rules(k))
            .map(Rule::Alert)
            .collect(),
    }
}

/// Every KPI's rules in one file (for `promtool`): per namespace, its alerts and the group
/// recording its touchpoints' increments ([`recording_group`]) in the `increase` form, and the
/// group summing them by the hour ([`hours_group`]).
pub fn rule_file(kpis: &[ExperienceKPI], increase: Increase) -> RuleFile {
    RuleFile {
        groups: by_namespace(kpis)
            .into_iter()
            .flat_map(|(ns, kpis)| {
                [
                    rule_group(ns, &kpis),
                    recording_group(ns, increase),
                    hours_group(ns, increase),
                ]
            })
            .collect(),
    }
}

/// One PrometheusRule per namespace holding KPIs, named [`RULE_NAME`], with `labels` (what the
/// Prometheus' `ruleSelector` expects, e.g. `release: prometheus`): the KPIs' alerts and the
/// group recording the namespace's increments in the `increase` form.
pub fn prometheus_rules(
    kpis: &[ExperienceKPI],
    labels: &BTreeMap<String, String>,
    increase: Increase,
) -> Vec<PrometheusRule> {
    by_namespace(kpis)
        .into_iter()
        .map(|(namespace, kpis)| {
            let mut all_labels = labels.clone();
            all_labels.insert("app.kubernetes.io/managed-by".into(), "cx-conductor".into());
            PrometheusRule {
                api_version: "monitoring.coreos.com/v1".into(),
                kind: "PrometheusRule".into(),
                metadata: ObjectMeta {
                    name: Some(RULE_NAME.into()),
                    namespace: Some(namespace.to_owned()),
                    labels: Some(all_labels),
                    ..ObjectMeta::default()
                },
                spec: RuleFile {
                    groups: vec![
                        rule_group(namespace, &kpis),
                        recording_group(namespace, increase),
                        hours_group(namespace, increase),
                    ],
                },
            }
        })
        .collect()
}

fn by_namespace(kpis: &[ExperienceKPI]) -> BTreeMap<&str, Vec<&ExperienceKPI>> {
    let mut grouped: BTreeMap<&str, Vec<&ExperienceKPI>> = BTreeMap::new();
    for kpi in kpis {
        grouped
            .entry(crate::core::world::namespace_of(kpi))
            .or_default()
            .push(kpi);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kpi(yaml: &str) -> ExperienceKPI {
        serde_yaml::from_str(yaml).expect("kpi")
    }

    const CSAT: &str = r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: checkout-csat, namespace: retail }
spec:
  indicator: { builtin: csat }
  scope: { stage: purchase }
  objective: { target: 85, direction: atLeast, warning: 80 }
  window: 7d
  interval: 5m
  owner: digital
  journey: retail
"#;

    #[test]
    fn a_kpi_gets_a_breach_and_an_at_risk_alert() {
        let [breach, at_risk] = kpi_rules(&kpi(CSAT));
        assert_eq!(breach.alert, "CxKpiBreached");
        assert_eq!(
            breach.expr,
            r#"cx_kpi_state{namespace="retail", kpi="checkout-csat", state="Breached"} == 1"#
        );
        assert_eq!(breach.for_, "5m");
        assert_eq!(
            breach.labels,
            BTreeMap::from([
                ("journey".to_owned(), "retail".to_owned()),
                ("kpi".to_owned(), "checkout-csat".to_owned()),
                ("owner".to_owned(), "digital".to_owned()),
                ("severity".to_owned(), "critical".to_owned()),
            ])
        );
        assert_eq!(
            breach.annotations["summary"],
            "KPI retail/checkout-csat (csat) is breached"
        );
        assert_eq!(
            breach.annotations["description"],
            "checkout-csat measures {{ with query `cx_kpi_value{namespace=\"retail\", kpi=\"checkout-csat\"}` }}{{ . | first | value | humanize }}{{ else }}unknown{{ end }} against a target of at least 85 (warning 80) over 7d; the gap is {{ with query `cx_kpi_gap{namespace=\"retail\", kpi=\"checkout-csat\"}` }}{{ . | first | value | humanize }}{{ else }}unknown{{ end }} (owner: digital)."
        );
        assert_eq!(at_risk.labels["severity"], "warning");
        assert!(at_risk.expr.contains(r#"state="AtRisk""#));
        for rule in [&breach, &at_risk] {
            promql_parser::parser::parse(&rule.expr).expect("parses");
        }
    }

    #[test]
    fn prometheus_rules_are_one_per_namespace() {
        let mut other = kpi(CSAT);
        other.metadata.namespace = Some("b2b".into());
        other.spec.owner = None;
        other.spec.journey = None;
        let kpis = [kpi(CSAT), other];
        let rules = prometheus_rules(
            &kpis,
            &BTreeMap::from([("release".to_owned(), "prometheus".to_owned())]),
            Increase::Differences,
        );
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].metadata.namespace.as_deref(), Some("b2b"));
        let Rule::Alert(b2b) = &rules[0].spec.groups[0].rules[0] else {
            panic!("the alerts come first");
        };
        assert_eq!(rules[0].spec.groups[1].name, "cx-increments.b2b");
        assert_eq!(
            b2b.labels,
            BTreeMap::from([
                ("kpi".to_owned(), "checkout-csat".to_owned()),
                ("severity".to_owned(), "critical".to_owned()),
            ])
        );
        assert!(b2b.annotations["description"].contains("no owner is set"));
        let json = serde_json::to_value(&rules[1]).expect("json");
        assert_eq!(json["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(json["kind"], "PrometheusRule");
        assert_eq!(json["metadata"]["name"], "cx-conductor-kpis");
        assert_eq!(json["metadata"]["labels"]["release"], "prometheus");
        assert_eq!(json["spec"]["groups"][0]["name"], "cx-kpis.retail");
        assert_eq!(json["spec"]["groups"][0]["rules"][0]["for"], "5m");
        let file = rule_file(&kpis, Increase::Differences);
        let names: Vec<&str> = file.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cx-kpis.b2b",
                "cx-increments.b2b",
                "cx-hours.b2b",
                "cx-kpis.retail",
                "cx-increments.retail",
                "cx-hours.retail"
            ]
        );
        assert_eq!(file.groups[3].rules.len(), 2);
        assert_eq!(rules[0].spec.groups[2].interval.as_deref(), Some("1h"));
    }

    /// The Prometheus Operator's `Duration` pattern (monitoring.coreos.com_prometheusrules.yaml,
    /// `spec.groups[].rules[].for`).
    const OPERATOR_DURATION: &str = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$";

    #[test]
    fn alert_for_is_canonical_and_always_matches_the_prometheus_operator_pattern() {
        let pattern = jsonschema::validator_for(&serde_json::json!({
            "type": "string",
            "pattern": OPERATOR_DURATION
        }))
        .expect("a valid pattern");
        for (interval, expected) in [
            ("5m", "5m"),
            ("90m", "1h30m"),
            ("60s", "1m"),
            ("1h30m", "1h30m"),
            ("1d12h", "1d12h"),
            ("7d", "1w"),
            ("1500ms", "1s500ms"),
            ("2w", "2w"),
            // Refused by the CRD today; stored objects or `check` input may still carry them.
            ("30m1h", DEFAULT_FOR),
            ("1m1m", DEFAULT_FOR),
            ("0s", DEFAULT_FOR),
            ("", DEFAULT_FOR),
            ("300", DEFAULT_FOR),
            ("1e400", DEFAULT_FOR),
            ("inf", DEFAULT_FOR),
            ("5 minutes", DEFAULT_FOR),
            ("calendar-month", DEFAULT_FOR),
        ] {
            let got = alert_for(interval);
            assert_eq!(got, expected, "interval {interval:?}");
            assert!(
                pattern.is_valid(&serde_json::json!(got)),
                "for {got:?} (interval {interval:?}) must match {OPERATOR_DURATION}"
            );
        }
        // The check bites.
        assert!(!pattern.is_valid(&serde_json::json!("30m1h")));
        let mut odd = kpi(CSAT);
        odd.spec.interval = "30m1h".into();
        assert!(kpi_rules(&odd).iter().all(|r| r.for_ == DEFAULT_FOR));
    }
}
