//! KPI evaluation — MALMA's *Measure* and *Act* steps, as a library the ExperienceKPI controller
//! calls.
//!
//! The flow of one evaluation cycle:
//!
//! 1. [`scope::QueryScope::resolve`] turns a KPI's scope into the touchpoints it covers (with their
//!    signals and their channel's first-response promise), from the [`crate::core::World`];
//! 2. [`window::WindowSpec`] reads the KPI window (`7d`, `calendar-month`...) and
//!    [`promql::compile`] turns the indicator into a value query and a samples query — pure, so
//!    every formula is tested from table cases, and every generated query is checked with
//!    `promql-parser`;
//! 3. [`cycle::measure_cycle`] asks Prometheus ([`prometheus::PrometheusClient`]) for every KPI
//!    of the cycle at once: builtin indicators sharing a window share one query per signal family
//!    (see [`batch`]), custom PromQL ones run with bounded concurrency;
//! 4. [`evaluate::evaluate`] turns a measurement (or its error) into the next status: value, gap to
//!    target, gap change, state — pure, and [`evaluate::status_changed`] says whether it is worth
//!    a write;
//! 5. [`metrics::KpiMetrics`] exports the `cx_kpi_*` gauges and [`rules`] the PrometheusRule whose
//!    alerts route breaches to the KPI's owner (the *Act* step).
//!
//! Errors are data: every failure is a [`KpiError`] with a low-cardinality
//! [`KpiError::reason`] for conditions and metric labels.

pub mod batch;
pub mod cycle;
pub mod evaluate;
pub mod metrics;
pub mod prometheus;
pub mod promql;
pub mod recording;
pub mod rules;
pub mod scope;
pub mod window;

pub use cycle::{CycleReport, KpiRequest, measure_cycle, measure_one};
pub use evaluate::{Evaluation, Measurement, Reading, SampleCount, evaluate, status_changed};
pub use metrics::{KpiLabels, KpiMetrics};
pub use prometheus::{BearerToken, PrometheusClient, PrometheusConfig};
pub use promql::{CompiledKpi, compile};
pub use scope::{QueryScope, TouchpointScope};
pub use window::{Span, WindowSpec};

/// Why a KPI could not be measured. Every variant carries a message a person can act on; the
/// controller puts [`KpiError::reason`] and the message into the KPI's conditions.
///
/// Cloneable (messages only, no I/O sources) because one failed Prometheus query can be the
/// answer for many KPIs of a cycle.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum KpiError {
    /// `spec.window` is not a Prometheus duration nor a calendar window.
    #[error("invalid window {window:?}: {message}")]
    InvalidWindow {
        /// The window as written.
        window: String,
        /// What is wrong with it.
        message: String,
    },
    /// `spec.timeZone` names no IANA time zone (the window itself is valid).
    #[error("timeZone {zone:?} is not an IANA time zone such as Europe/Rome or America/New_York")]
    InvalidTimeZone {
        /// The zone as written.
        zone: String,
    },
    /// A custom PromQL expression (`promql` or `samplesPromql`) does not parse or does not return
    /// one number.
    #[error("invalid {field}: {message}")]
    InvalidQuery {
        /// `promql` or `samplesPromql`.
        field: &'static str,
        /// The parser's diagnosis.
        message: String,
    },
    /// No touchpoint in the KPI's scope produces the signal the indicator is computed from. The
    /// query is never widened to "every touchpoint".
    #[error("{0}")]
    EmptyScope(String),
    /// A theme-share KPI names a theme no collector in its scope counts: no journey holding its
    /// touchpoints declares it (a typo, or a theme declared on another journey).
    #[error("{0}")]
    ThemeNotCounted(String),
    /// An outcome-share KPI names an outcome that no touchpoint in its scope declares (a typo,
    /// or a custom outcome of a touchpoint outside the scope): it would always count zero.
    #[error("{0}")]
    OutcomeNotDeclared(String),
    /// Prometheus cannot be reached (connection refused, DNS, TLS).
    #[error("Prometheus is unavailable: {0}")]
    Unavailable(String),
    /// Prometheus did not answer within the timeout.
    #[error("Prometheus did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// Prometheus answered with an HTTP error and no Prometheus error body.
    #[error("Prometheus answered HTTP {status}: {body}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// Prometheus refused or failed the query (`"status": "error"`).
    #[error("Prometheus query failed ({error_type}): {message}")]
    QueryFailed {
        /// Prometheus' `errorType` (`bad_data`, `timeout`, `execution`...).
        error_type: String,
        /// Prometheus' `error`.
        message: String,
    },
    /// A custom query (`promql` or `samplesPromql`) returned several series where one number is
    /// needed: it must aggregate them (with `sum()`, for example).
    #[error(
        "{field} returned {count} series ({labels}): it must return one number; aggregate the series, e.g. with sum()"
    )]
    SeveralSeries {
        /// `promql` or `samplesPromql`.
        field: &'static str,
        /// How many.
        count: usize,
        /// The label sets of the first few.
        labels: String,
    },
    /// The answer is not what the query should give (not JSON, a matrix, several series...).
    #[error("unexpected answer from Prometheus: {0}")]
    UnexpectedResult(String),
}

impl KpiError {
    /// A CamelCase reason, from a closed set: for condition reasons, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            KpiError::InvalidWindow { .. } => "InvalidWindow",
            KpiError::InvalidTimeZone { .. } => "InvalidTimeZone",
            KpiError::InvalidQuery { .. } => "QueryInvalid",
            KpiError::EmptyScope(_) => "ScopeEmpty",
            KpiError::ThemeNotCounted(_) => "ThemeNotDeclared",
            KpiError::OutcomeNotDeclared(_) => "OutcomeNotDeclared",
            KpiError::Unavailable(_) => "PrometheusUnavailable",
            KpiError::Timeout(_) => "PrometheusTimeout",
            KpiError::Http { .. } => "PrometheusHttpError",
            KpiError::QueryFailed { .. } => "QueryFailed",
            KpiError::SeveralSeries { .. } => "QueryReturnsSeveralSeries",
            KpiError::UnexpectedResult(_) => "UnexpectedResult",
        }
    }

    /// True when the KPI's own definition is at fault (the controller's `QueryValid=False`), false
    /// when the measurement failed and may succeed next cycle.
    pub fn is_invalid_spec(&self) -> bool {
        matches!(
            self,
            KpiError::InvalidWindow { .. }
                | KpiError::InvalidTimeZone { .. }
                | KpiError::InvalidQuery { .. }
                | KpiError::SeveralSeries { .. }
                | KpiError::ThemeNotCounted(_)
                | KpiError::OutcomeNotDeclared(_)
        )
    }
}
