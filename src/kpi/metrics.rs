//! The operator's KPI gauges (DESIGN.md §4): `cx_kpi_value`, `cx_kpi_target`, `cx_kpi_gap`,
//! `cx_kpi_gap_change`, `cx_kpi_samples` and `cx_kpi_state{state}`, labelled
//! `namespace, kpi, indicator, owner, stage, journey`.
//!
//! Dashboards and alert rules ([`super::rules`]) are built on them. Every label comes from a
//! bounded set (object names and enums), never from measured data. `cx_kpi_state` has one series
//! per state, 1 for the current one and 0 for the others, so `cx_kpi_state{state="Breached"} == 1`
//! is an alert expression and `InsufficientData` can never look like a breach.
//!
//! The label values used for each KPI are remembered, so a KPI whose owner or stage changes, or
//! that is deleted, leaves no stale series behind.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::ResourceExt;
use prometheus::{GaugeVec, Opts, Registry};

use crate::api::{ExperienceKPI, ExperienceKPIStatus, KpiState};
use crate::core::world::namespace_of;

/// Label names of every KPI series, in order.
pub const LABELS: [&str; 6] = ["namespace", "kpi", "indicator", "owner", "stage", "journey"];
/// Every state, for `cx_kpi_state`.
pub const STATES: [KpiState; 5] = [
    KpiState::Met,
    KpiState::AtRisk,
    KpiState::Breached,
    KpiState::InsufficientData,
    KpiState::Unknown,
];

/// The label values of one KPI's series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KpiLabels {
    /// Namespace of the KPI.
    pub namespace: String,
    /// Name of the KPI.
    pub kpi: String,
    /// Builtin indicator name, or `custom`.
    pub indicator: String,
    /// `spec.owner`, empty when unset.
    pub owner: String,
    /// `spec.scope.stage`, empty when unset.
    pub stage: String,
    /// `spec.journey`, empty when unset.
    pub journey: String,
}

impl KpiLabels {
    /// The labels of a KPI object.
    pub fn of(kpi: &ExperienceKPI) -> KpiLabels {
        let spec = &kpi.spec;
        KpiLabels {
            namespace: namespace_of(kpi).to_owned(),
            kpi: kpi.name_any(),
            indicator: spec
                .indicator
                .builtin
                .map_or("custom", |b| b.as_str())
                .to_owned(),
            owner: spec.owner.clone().unwrap_or_default(),
            stage: spec
                .scope
                .stage
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            journey: spec.journey.clone().unwrap_or_default(),
        }
    }

    fn values(&self) -> [&str; 6] {
        [
            &self.namespace,
            &self.kpi,
            &self.indicator,
            &self.owner,
            &self.stage,
            &self.journey,
        ]
    }
}

/// The KPI gauges, registered on a registry.
pub struct KpiMetrics {
    value: GaugeVec,
    target: GaugeVec,
    gap: GaugeVec,
    gap_change: GaugeVec,
    samples: GaugeVec,
    state: GaugeVec,
    /// Label values exported per (namespace, kpi), so removal is exact.
    exported: Mutex<HashMap<(String, String), KpiLabels>>,
}

impl KpiMetrics {
    /// Creates the gauges and registers them on `registry`.
    pub fn new(registry: &Registry) -> Result<KpiMetrics, prometheus::Error> {
        let gauge =
            |name: &str, help: &str, extra: &[&str]| -> Result<GaugeVec, prometheus::Error> {
                let labels: Vec<&str> = LABELS.iter().chain(extra).copied().collect();
                let vec = GaugeVec::new(Opts::new(name, help), &labels)?;
                registry.register(Box::new(vec.clone()))?;
                Ok(vec)
            };
        Ok(KpiMetrics {
            value: gauge(
                "cx_kpi_value",
                "Last measured value of an experience KPI.",
                &[],
            )?,
            target: gauge("cx_kpi_target", "Target of an experience KPI.", &[])?,
            gap: gauge(
                "cx_kpi_gap",
                "Shortfall of an experience KPI to its target: > 0 is worse than target.",
                &[],
            )?,
            gap_change: gauge(
                "cx_kpi_gap_change",
                "Gap of an experience KPI minus its gap over the previous cycle (the previous window): > 0 got worse.",
                &[],
            )?,
            samples: gauge(
                "cx_kpi_samples",
                "Samples (answers or interactions) behind an experience KPI's value.",
                &[],
            )?,
            state: gauge(
                "cx_kpi_state",
                "Verdict of an experience KPI: 1 for its current state, 0 for the others.",
                &["state"],
            )?,
            exported: Mutex::new(HashMap::new()),
        })
    }

    /// Exports a KPI's target and status. Figures the status does not have (no value yet, no
    /// sample count) have no series rather than a misleading zero.
    pub fn set(&self, labels: &KpiLabels, target: f64, status: &ExperienceKPIStatus) {
        let key = (labels.namespace.clone(), labels.kpi.clone());
        {
            let mut exported = self.exported.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = exported.insert(key, labels.clone())
                && &old != labels
            {
                self.remove_series(&old);
            }
        }
        let values = labels.values();
        self.target.with_label_values(&values).set(target);
        let optional = [
            (&self.value, status.value),
            (&self.gap, status.gap),
            (&self.gap_change, status.gap_change),
            (&self.samples, status.samples.map(|s| s as f64)),
        ];
        for (gauge, figure) in optional {
            match figure {
                Some(figure) => gauge.with_label_values(&values).set(figure),
                None => {
                    let _ = gauge.remove_label_values(&values);
                }
            }
        }
        for state in STATES {
            let with_state = with(&values, state.as_str());
            match status.state {
                Some(current) => self
                    .state
                    .with_label_values(&with_state)
                    .set(if current == state { 1.0 } else { 0.0 }),
                None => {
                    let _ = self.state.remove_label_values(&with_state);
                }
            }
        }
    }

    /// Removes every series of a KPI (deleted, or no longer evaluated).
    pub fn remove(&self, namespace: &str, kpi: &str) {
        let removed = self
            .exported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_owned(), kpi.to_owned()));
        if let Some(labels) = removed {
            self.remove_series(&labels);
        }
    }

    fn remove_series(&self, labels: &KpiLabels) {
        let values = labels.values();
        for gauge in [
            &self.value,
            &self.target,
            &self.gap,
            &self.gap_change,
            &self.samples,
        ] {
            let _ = gauge.remove_label_values(&values);
        }
        for state in STATES {
            let _ = self
                .state
                .remove_label_values(&with(&values, state.as_str()));
        }
    }
}

fn with<'a>(values: &[&'a str; 6], state: &'a str) -> [&'a str; 7] {
    [
        values[0], values[1], values[2], values[3], values[4], values[5], state,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    fn render(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .expect("encode");
        String::from_utf8(out).expect("utf-8")
    }

    fn series(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    fn kpi(yaml: &str) -> ExperienceKPI {
        serde_yaml::from_str(yaml).expect("kpi")
    }

    const NPS: &str = r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: advocacy-nps, namespace: retail }
spec:
  indicator: { builtin: nps }
  scope: { stage: advocacy }
  objective: { target: 50, direction: atLeast, warning: 40 }
  owner: crm
  journey: retail
"#;

    const CUSTOM: &str = r#"
apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata: { name: error-rate, namespace: shop }
spec:
  indicator: { promql: "vector(1)" }
  objective: { target: 1, direction: atMost }
"#;

    #[test]
    fn exact_lines_appear_and_disappear() {
        let registry = Registry::new();
        let metrics = KpiMetrics::new(&registry).expect("metrics");
        let nps = kpi(NPS);
        let status = ExperienceKPIStatus {
            value: Some(42.5),
            previous_value: Some(45.0),
            gap: Some(7.5),
            gap_change: Some(2.5),
            samples: Some(120),
            state: Some(KpiState::AtRisk),
            ..Default::default()
        };
        metrics.set(&KpiLabels::of(&nps), 50.0, &status);
        let custom = kpi(CUSTOM);
        metrics.set(
            &KpiLabels::of(&custom),
            1.0,
            &ExperienceKPIStatus {
                state: Some(KpiState::Unknown),
                ..Default::default()
            },
        );
        let labels = r#"indicator="nps",journey="retail",kpi="advocacy-nps",namespace="retail",owner="crm",stage="advocacy""#;
        let expected_nps = [
            format!("cx_kpi_gap{{{labels}}} 7.5"),
            format!("cx_kpi_gap_change{{{labels}}} 2.5"),
            format!("cx_kpi_samples{{{labels}}} 120"),
            format!("cx_kpi_state{{{labels},state=\"AtRisk\"}} 1"),
            format!("cx_kpi_state{{{labels},state=\"Breached\"}} 0"),
            format!("cx_kpi_state{{{labels},state=\"InsufficientData\"}} 0"),
            format!("cx_kpi_state{{{labels},state=\"Met\"}} 0"),
            format!("cx_kpi_state{{{labels},state=\"Unknown\"}} 0"),
            format!("cx_kpi_target{{{labels}}} 50"),
            format!("cx_kpi_value{{{labels}}} 42.5"),
        ];
        let custom_labels =
            r#"indicator="custom",journey="",kpi="error-rate",namespace="shop",owner="",stage="""#;
        let text = render(&registry);
        let lines = series(&text);
        for line in &expected_nps {
            assert!(lines.contains(&line.as_str()), "missing {line} in\n{text}");
        }
        assert!(
            lines
                .contains(&format!("cx_kpi_state{{{custom_labels},state=\"Unknown\"}} 1").as_str())
        );
        assert!(lines.contains(&format!("cx_kpi_target{{{custom_labels}}} 1").as_str()));
        // No value yet: no value, gap or samples series rather than a zero.
        assert!(
            !text.contains(&format!("cx_kpi_value{{{custom_labels}}}")),
            "{text}"
        );
        assert!(
            !text.contains(&format!("cx_kpi_samples{{{custom_labels}}}")),
            "{text}"
        );
        assert_eq!(lines.len(), expected_nps.len() + 6, "{text}");

        // The owner changes: the old series go, the new ones come.
        let mut moved = nps.clone();
        moved.spec.owner = Some("cx-office".into());
        metrics.set(&KpiLabels::of(&moved), 50.0, &status);
        let text = render(&registry);
        assert!(!text.contains(r#"owner="crm""#), "{text}");
        assert!(text.contains(r#"owner="cx-office""#), "{text}");

        // Deleted: every series of the KPI disappears, the other KPI's stay.
        metrics.remove("retail", "advocacy-nps");
        let text = render(&registry);
        assert!(!text.contains("advocacy-nps"), "{text}");
        assert_eq!(series(&text).len(), 6, "{text}");
        metrics.remove("shop", "error-rate");
        assert!(series(&render(&registry)).is_empty());
        // Removing twice, or an unknown KPI, is harmless.
        metrics.remove("shop", "error-rate");
    }

    #[test]
    fn a_state_change_moves_the_one() {
        let registry = Registry::new();
        let metrics = KpiMetrics::new(&registry).expect("metrics");
        let labels = KpiLabels::of(&kpi(NPS));
        for state in STATES {
            metrics.set(
                &labels,
                50.0,
                &ExperienceKPIStatus {
                    state: Some(state),
                    ..Default::default()
                },
            );
            let text = render(&registry);
            let ones: Vec<&str> = series(&text)
                .into_iter()
                .filter(|l| l.starts_with("cx_kpi_state{") && l.ends_with(" 1"))
                .collect();
            assert_eq!(ones.len(), 1, "{text}");
            assert!(ones[0].contains(&format!("state=\"{}\"", state.as_str())));
        }
        assert!(
            KpiMetrics::new(&registry).is_err(),
            "registering twice is refused"
        );
    }
}
