//! `ExperienceKPI`: an experience indicator with a target over a window, scoped to touchpoints.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Conditions, DURATION_PATTERN, POSITIVE_DURATION_RULE, POSITIVE_WINDOW_RULE, Stage,
    WINDOW_PATTERN, conditions_schema,
};

/// An experience KPI: what to measure, where, and the target that defines success. The operator
/// evaluates it every interval and reports the gap to target.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cx.conductor.dev",
    version = "v1alpha1",
    kind = "ExperienceKPI",
    plural = "experiencekpis",
    namespaced,
    status = "ExperienceKPIStatus",
    shortname = "xkpi",
    category = "cx",
    derive = "PartialEq",
    validation = Rule::new("size(self.metadata.name) <= 63").message("ExperienceKPI names are at most 63 characters: they are label values of the KPI's metrics and alerts").field_path(".metadata.name"),
    doc = "An experience KPI with a target over a window, scoped to touchpoints, channels and a stage.",
    printcolumn(
        name = "Indicator",
        type_ = "string",
        json_path = ".spec.indicator.builtin",
        description = "Builtin indicator (empty for custom PromQL)"
    ),
    printcolumn(
        name = "Value",
        type_ = "number",
        json_path = ".status.value",
        description = "Last measured value"
    ),
    printcolumn(
        name = "Target",
        type_ = "number",
        json_path = ".spec.objective.target",
        description = "Target value"
    ),
    printcolumn(
        name = "Gap",
        type_ = "number",
        json_path = ".status.gap",
        description = "Shortfall to target (> 0 is worse than target)"
    ),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.state",
        description = "Met, AtRisk, Breached, InsufficientData or Unknown"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the KPI is or is not evaluated (Ready condition), e.g. PrometheusNotConfigured"
    ),
    printcolumn(
        name = "Owner",
        type_ = "string",
        json_path = ".spec.owner",
        description = "Who acts on a breach",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since creation"
    )
)]
#[x_kube(
    cel,
    validation = Rule::new("!has(self.indicator.builtin) || self.indicator.builtin != 'nps' || (double(self.objective.target) >= -100.0 && double(self.objective.target) <= 100.0)").message("an nps target must be between -100 and 100").field_path(".objective.target"),
    validation = Rule::new("!has(self.indicator.builtin) || !(self.indicator.builtin in ['csat', 'fcr', 'abandonment-rate', 'resolution-rate', 'service-level', 'theme-share', 'comment-rate', 'outcome-share']) || (double(self.objective.target) >= 0.0 && double(self.objective.target) <= 100.0)").message("a percentage target (csat, fcr, abandonment-rate, resolution-rate, service-level, theme-share, comment-rate, outcome-share) must be between 0 and 100").field_path(".objective.target"),
    validation = Rule::new("!has(self.indicator.builtin) || self.indicator.builtin != 'ces' || (double(self.objective.target) >= 1.0 && double(self.objective.target) <= 7.0)").message("a ces target must be between 1 and 7").field_path(".objective.target"),
    validation = Rule::new("!has(self.indicator.builtin) || self.indicator.builtin != 'first-response-time' || double(self.objective.target) >= 0.0").message("a first-response-time target is a number of seconds and cannot be negative").field_path(".objective.target")
)]
#[serde(rename_all = "camelCase")]
pub struct ExperienceKPISpec {
    /// What is measured: a builtin indicator or a custom PromQL expression.
    pub indicator: Indicator,
    /// Which touchpoints the KPI covers. Empty: every touchpoint in the namespace.
    #[serde(default)]
    pub scope: Scope,
    /// The target and the direction that counts as good.
    pub objective: Objective,
    /// Evaluation window: a rolling duration such as 7d, 28d or 1d12h (units y, w, d, h, m, s, ms in that order, each at most once, as Prometheus reads them), or calendar-month / calendar-quarter.
    #[serde(default = "default_window")]
    #[schemars(regex(pattern = WINDOW_PATTERN), length(max = 64))]
    #[x_kube(validation = Rule::new(POSITIVE_WINDOW_RULE).message("window must be longer than zero, e.g. 28d, or calendar-month / calendar-quarter"))]
    pub window: String,
    /// IANA time zone of a calendar window, e.g. Europe/Rome: months and quarters start at local midnight of their first day, daylight-saving changes included. Absent: UTC. A rolling window ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = TIME_ZONE_PATTERN))]
    pub time_zone: Option<String>,
    /// How often the KPI is evaluated, e.g. 5m or 1h30m (units y, w, d, h, m, s, ms in that order, each at most once); also the `for` of the KPI's alerts.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 64))]
    #[x_kube(validation = Rule::new(POSITIVE_DURATION_RULE).message("interval must be longer than zero, e.g. 5m"))]
    pub interval: String,
    /// Fewest samples in the window for a verdict: survey answers or interactions (comments for theme-share); fewer gives InsufficientData.
    #[serde(default = "default_min_samples")]
    #[schemars(range(min = 0, max = 1000000000))]
    pub min_samples: i64,
    /// The function accountable for acting on a breach; alerts are routed by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub owner: Option<String>,
    /// The CustomerJourney this KPI reports to. Empty: every journey whose stages and channels it covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub journey: Option<String>,
}

/// Shape of an IANA time zone name (`UTC`, `Europe/Rome`, `America/Argentina/Buenos_Aires`,
/// `Etc/GMT+1`); whether the zone exists is checked against the bundled database by `check` and
/// the operator.
pub const TIME_ZONE_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$";

fn default_window() -> String {
    "28d".into()
}

fn default_interval() -> String {
    "5m".into()
}

fn default_min_samples() -> i64 {
    30
}

/// What a KPI measures: exactly one of `builtin` or `promql`.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[x_kube(
    cel,
    validation = Rule::new("has(self.builtin) != has(self.promql)").message("set exactly one of builtin or promql"),
    validation = Rule::new("!has(self.samplesPromql) || has(self.promql)").message("samplesPromql only applies to a promql indicator").field_path(".samplesPromql"),
    validation = Rule::new("has(self.theme) == (has(self.builtin) && self.builtin == 'theme-share')").message("theme-share names the theme it measures (theme: delivery), and only theme-share takes a theme").field_path(".theme"),
    validation = Rule::new("has(self.outcomes) == (has(self.builtin) && self.builtin == 'outcome-share')").message("outcome-share names the outcomes whose share of interactions it measures (outcomes: [failed-attempt]), and only outcome-share takes outcomes").field_path(".outcomes"),
    validation = Rule::new("!has(self.metric) || (has(self.builtin) && self.builtin in ['theme-share', 'comment-rate'])").message("metric only applies to the theme-share and comment-rate indicators").field_path(".metric"),
    validation = Rule::new("!has(self.segment) || (has(self.builtin) && self.builtin == 'theme-share' && has(self.metric))").message("segment only applies to theme-share, with the metric whose answer band it is (metric: nps, segment: detractor)").field_path(".segment"),
    validation = Rule::new("!has(self.segment) || !has(self.metric) || (self.metric == 'nps' ? self.segment in ['detractor', 'passive', 'promoter'] : self.metric == 'interaction' || self.segment in ['low', 'neutral', 'high'])").message("segment is an answer band of the metric: detractor, passive or promoter for nps; low, neutral or high for csat and ces; an outcome for interaction").field_path(".segment")
)]
#[serde(rename_all = "camelCase")]
pub struct Indicator {
    /// A builtin indicator computed from the collectors' metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinIndicator>,
    /// A custom PromQL expression returning one number. `$window` is replaced by the KPI window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub promql: Option<String>,
    /// For a promql indicator: PromQL returning the number of samples behind the value, checked against minSamples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub samples_promql: Option<String>,
    /// For theme-share: the theme whose share of comments is measured, as declared in a CustomerJourney's spec.themes (e.g. delivery). The touchpoints in scope must count it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub theme: Option<String>,
    /// For theme-share and comment-rate: only comments on answers to this metric (nps, csat, ces, or interaction for interactions' comments). Absent: every comment (theme-share), every answer and interaction (comment-rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<CommentMetric>,
    /// For theme-share, with metric: only comments in this answer band, e.g. detractor (nps: detractor, passive, promoter; csat and ces: low, neutral, high; interaction: the outcome, e.g. abandoned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub segment: Option<String>,
    /// For outcome-share: the interaction outcomes whose share of interactions is measured, builtin (abandoned) or a touchpoint's customOutcomes (failed-attempt); at least one touchpoint in scope must declare each of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(min = 1, max = 16), inner(length(min = 1, max = 40), regex(pattern = crate::api::OUTCOME_PATTERN)))]
    pub outcomes: Vec<String>,
}

impl Indicator {
    /// The builtin indicator with its parameters, `None` for custom PromQL.
    pub fn builtin_measure(&self) -> Option<BuiltinMeasure> {
        self.builtin.map(|indicator| BuiltinMeasure {
            indicator,
            theme: self.theme.clone(),
            metric: self.metric,
            segment: self.segment.clone(),
            outcomes: self.outcomes.clone(),
        })
    }
}

/// Which answers a comment was written on: the `metric` label of `cx_feedback_comments_total`
/// and `cx_feedback_themes_total`.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "kebab-case")]
pub enum CommentMetric {
    /// Comments on NPS answers.
    Nps,
    /// Comments on CSAT answers.
    Csat,
    /// Comments on CES answers.
    Ces,
    /// Comments on interactions (an agent's wrap-up note, a chat's closing remark).
    Interaction,
}

impl CommentMetric {
    /// The name used in manifests and in the `metric` label.
    pub fn as_str(self) -> &'static str {
        match self {
            CommentMetric::Nps => "nps",
            CommentMetric::Csat => "csat",
            CommentMetric::Ces => "ces",
            CommentMetric::Interaction => "interaction",
        }
    }

    /// The survey question, `None` for interactions.
    pub fn survey(self) -> Option<crate::api::SurveyMetric> {
        match self {
            CommentMetric::Nps => Some(crate::api::SurveyMetric::Nps),
            CommentMetric::Csat => Some(crate::api::SurveyMetric::Csat),
            CommentMetric::Ces => Some(crate::api::SurveyMetric::Ces),
            CommentMetric::Interaction => None,
        }
    }
}

/// A builtin indicator with the parameters theme KPIs add (theme, metric, segment): everything
/// query generation, batching and scope matching read from `spec.indicator`. The other builtins
/// leave the parameters empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BuiltinMeasure {
    /// The indicator.
    pub indicator: BuiltinIndicator,
    /// theme-share: the theme.
    pub theme: Option<String>,
    /// theme-share and comment-rate: the metric the comments were written on.
    pub metric: Option<CommentMetric>,
    /// theme-share: the answer band (or interaction outcome) of the comments.
    pub segment: Option<String>,
    /// outcome-share: the outcomes whose share is measured.
    pub outcomes: Vec<String>,
}

impl From<BuiltinIndicator> for BuiltinMeasure {
    fn from(indicator: BuiltinIndicator) -> BuiltinMeasure {
        BuiltinMeasure {
            indicator,
            theme: None,
            metric: None,
            segment: None,
            outcomes: Vec::new(),
        }
    }
}

/// Indicators computed from collector metrics without writing PromQL.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "kebab-case")]
pub enum BuiltinIndicator {
    /// Net Promoter Score: % promoters (9-10) minus % detractors (0-6), -100 to 100.
    Nps,
    /// Customer satisfaction: % of answers in the top two boxes of the scale, 0 to 100.
    Csat,
    /// Customer effort score: mean answer on 1-7, higher is easier.
    Ces,
    /// First-contact resolution: % of support contacts resolved on first contact.
    Fcr,
    /// % of interactions abandoned.
    AbandonmentRate,
    /// Seconds until first response of answered contacts (abandoned ones excluded), 90th
    /// percentile.
    FirstResponseTime,
    /// % of support contacts resolved.
    ResolutionRate,
    /// % of contacts offered (abandoned ones included) answered within the channel's
    /// serviceLevels.firstResponseSeconds.
    ServiceLevel,
    /// % of comments mentioning `theme` (optionally only comments on `metric` answers in
    /// `segment`: the share of detractors' comments about delivery), 0 to 100.
    ThemeShare,
    /// % of answers and interactions that carry a comment (optionally of one `metric`), 0 to 100.
    CommentRate,
    /// % of interactions ending in one of `outcomes` (builtin or the touchpoints' custom
    /// outcomes), over the touchpoints declaring at least one of them, 0 to 100.
    OutcomeShare,
}

impl BuiltinIndicator {
    /// Every builtin indicator.
    pub const ALL: [BuiltinIndicator; 11] = [
        BuiltinIndicator::Nps,
        BuiltinIndicator::Csat,
        BuiltinIndicator::Ces,
        BuiltinIndicator::Fcr,
        BuiltinIndicator::AbandonmentRate,
        BuiltinIndicator::FirstResponseTime,
        BuiltinIndicator::ResolutionRate,
        BuiltinIndicator::ServiceLevel,
        BuiltinIndicator::ThemeShare,
        BuiltinIndicator::CommentRate,
        BuiltinIndicator::OutcomeShare,
    ];

    /// The name used in manifests and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinIndicator::Nps => "nps",
            BuiltinIndicator::Csat => "csat",
            BuiltinIndicator::Ces => "ces",
            BuiltinIndicator::Fcr => "fcr",
            BuiltinIndicator::AbandonmentRate => "abandonment-rate",
            BuiltinIndicator::FirstResponseTime => "first-response-time",
            BuiltinIndicator::ResolutionRate => "resolution-rate",
            BuiltinIndicator::ServiceLevel => "service-level",
            BuiltinIndicator::ThemeShare => "theme-share",
            BuiltinIndicator::CommentRate => "comment-rate",
            BuiltinIndicator::OutcomeShare => "outcome-share",
        }
    }
}

/// The touchpoints a KPI covers: all conditions must hold.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// Only touchpoints whose labels match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touchpoint_selector: Option<LabelSelector>,
    /// Only touchpoints on these channels (Channel names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64), inner(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")))]
    pub channels: Vec<String>,
    /// Only touchpoints at this journey stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
}

/// The target of a KPI.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(
    cel,
    validation = Rule::new("!has(self.warning) || (self.direction == 'atLeast' ? double(self.warning) <= double(self.target) : double(self.warning) >= double(self.target))").message("warning must be on the failing side of target: at or below it for atLeast, at or above it for atMost").field_path(".warning")
)]
#[serde(rename_all = "camelCase")]
pub struct Objective {
    /// The value to reach (atLeast) or stay under (atMost).
    pub target: f64,
    /// Whether higher (atLeast) or lower (atMost) values are better.
    pub direction: Direction,
    /// Threshold between AtRisk and Breached: between target and warning the KPI is AtRisk, past warning Breached. Absent: any miss is Breached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<f64>,
}

/// Which side of the target is good.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Values at or above the target meet it.
    AtLeast,
    /// Values at or below the target meet it.
    AtMost,
}

/// Verdict of the last evaluation.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum KpiState {
    /// The value meets the target.
    Met,
    /// The value misses the target but not the warning threshold.
    AtRisk,
    /// The value misses the warning threshold (or the target when no warning is set).
    Breached,
    /// Fewer samples than minSamples in the window: no verdict.
    InsufficientData,
    /// The value could not be computed (Prometheus unreachable, invalid query...).
    Unknown,
}

impl KpiState {
    /// The name used in status, metric labels and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            KpiState::Met => "Met",
            KpiState::AtRisk => "AtRisk",
            KpiState::Breached => "Breached",
            KpiState::InsufficientData => "InsufficientData",
            KpiState::Unknown => "Unknown",
        }
    }
}

/// Observed state of an ExperienceKPI.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExperienceKPIStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Value measured in the last cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Value over the previous cycle: the previous window (rolling), or the previous month or
    /// quarter (calendar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_value: Option<f64>,
    /// Shortfall to target: > 0 is worse than target, <= 0 meets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<f64>,
    /// This cycle's gap minus the previous cycle's (both with at least minSamples samples): > 0
    /// means the experience got worse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_change: Option<f64>,
    /// Samples in the window: answers or interactions (comments for theme-share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<i64>,
    /// Verdict of the last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<KpiState>,
    /// When the KPI was last evaluated with a changed result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluation_time: Option<Time>,
    /// Conditions: Ready (evaluated), QueryValid (the indicator compiles to valid PromQL),
    /// WindowValid (the window is at least the interval and within Prometheus' retention).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
}
