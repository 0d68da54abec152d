//! The operator's own Prometheus metrics: reconcile health per controller, and the journey and
//! touchpoint gauges of the metrics contract. Labels are object names and fixed enums only.

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Every operator metric, registered on one registry served at `/metrics`.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Reconciles by controller and result (ok, error).
    pub reconciles: IntCounterVec,
    /// Reconcile errors by controller and reason.
    pub reconcile_errors: IntCounterVec,
    /// Reconcile duration by controller.
    pub reconcile_duration: HistogramVec,
    /// Writes to the API by controller and kind of write (apply, status, event).
    pub writes: IntCounterVec,
    /// Consistency violations per journey.
    pub consistency_violations: GaugeVec,
    /// Coverage gaps per journey and kind of gap.
    pub coverage_gaps: GaugeVec,
    /// Readiness score per journey.
    pub readiness_score: GaugeVec,
    /// Self-assessment score (yes answers, 0-25) per journey.
    pub self_assessment_score: GaugeVec,
    /// 1 when a touchpoint's collector is ready, else 0.
    pub collector_ready: GaugeVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c =
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "cx_reconcile_duration_seconds",
                "Time spent in one reconcile.",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["controller"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(reconcile_duration.clone()))
            .expect("metric registered once");
        let metrics = Self {
            reconciles: counter(
                "cx_reconciles_total",
                "Reconciles by controller and result.",
                &["controller", "result"],
            ),
            reconcile_errors: counter(
                "cx_reconcile_errors_total",
                "Failed reconciles by controller and reason.",
                &["controller", "reason"],
            ),
            writes: counter(
                "cx_api_writes_total",
                "Writes to the Kubernetes API by controller and kind of write.",
                &["controller", "write"],
            ),
            consistency_violations: gauge(
                "cx_consistency_violations",
                "Consistency violations of a journey's channels.",
                &["namespace", "journey"],
            ),
            coverage_gaps: gauge(
                "cx_journey_coverage_gaps",
                "Coverage gaps of a journey by kind (stage_without_touchpoints, stage_without_listening, stage_without_kpi, channel_without_touchpoints).",
                &["namespace", "journey", "kind"],
            ),
            readiness_score: gauge(
                "cx_journey_readiness_score",
                "Readiness score of a journey, 0-100.",
                &["namespace", "journey"],
            ),
            self_assessment_score: gauge(
                "cx_journey_self_assessment_score",
                "Yes answers of a journey's 25-question CX self-assessment, 0-25 (18 customer-centric, 9 missing pieces).",
                &["namespace", "journey"],
            ),
            collector_ready: gauge(
                "cx_touchpoint_collector_ready",
                "1 when the touchpoint's collector has every desired replica ready, else 0.",
                &["namespace", "touchpoint", "channel", "stage"],
            ),
            reconcile_duration,
            registry,
        };
        // Every controller's counters exist from the start, at zero: "0 errors" on a dashboard,
        // and increase() sees the first one.
        for controller in super::CONTROLLERS {
            for result in ["ok", "error"] {
                metrics.reconciles.with_label_values(&[controller, result]);
            }
            for reason in super::error::Error::REASONS {
                metrics
                    .reconcile_errors
                    .with_label_values(&[controller, reason]);
            }
        }
        metrics
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_controller_result_and_error_reason_is_exported_from_zero() {
        let text = super::Metrics::new().encode();
        for controller in super::super::CONTROLLERS {
            for result in ["ok", "error"] {
                let line = format!(
                    "cx_reconciles_total{{controller=\"{controller}\",result=\"{result}\"}} 0"
                );
                assert!(text.contains(&line), "{line} in\n{text}");
            }
            for reason in super::super::error::Error::REASONS {
                let line = format!(
                    "cx_reconcile_errors_total{{controller=\"{controller}\",reason=\"{reason}\"}} 0"
                );
                assert!(text.contains(&line), "{line} in\n{text}");
            }
        }
    }
}
