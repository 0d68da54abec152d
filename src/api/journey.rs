//! `CustomerJourney`: the score the conductor follows — stages, channels, consistency rules, coverage.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, Stage, conditions_schema};

/// Field paths of Channel.spec that consistency rules may compare.
pub const RULE_FIELD_PATTERN: &str = r"^(type|displayName|owner|brand\.(name|voice|styleGuideVersion)|content\.(catalogVersion|pricingVersion)|privacy\.(consentPolicyVersion|dataRetentionDays)|locales|serviceLevels\.(firstResponseSeconds|resolutionHours)|attributes\.[-._a-zA-Z0-9/]+)$";

/// A customer journey: the stages customers go through, the channels taking part, the settings
/// that must be consistent across those channels, and how much listening and measuring is required.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cx.conductor.dev",
    version = "v1alpha1",
    kind = "CustomerJourney",
    namespaced,
    status = "CustomerJourneyStatus",
    shortname = "cxj",
    category = "cx",
    derive = "PartialEq",
    validation = Rule::new("size(self.metadata.name) <= 63").message("CustomerJourney names are at most 63 characters: they are label values of the journey's metrics and alerts").field_path(".metadata.name"),
    doc = "A customer journey: stages, participating channels, cross-channel consistency rules and coverage requirements.",
    printcolumn(
        name = "Channels",
        type_ = "integer",
        json_path = ".status.channels",
        description = "Channels taking part"
    ),
    printcolumn(
        name = "Violations",
        type_ = "integer",
        json_path = ".status.violationCount",
        description = "Consistency violations"
    ),
    printcolumn(
        name = "Readiness",
        type_ = "integer",
        json_path = ".status.readiness.score",
        description = "Readiness score, 0-100"
    ),
    printcolumn(
        name = "Band",
        type_ = "string",
        json_path = ".status.readiness.band",
        description = "Readiness band"
    ),
    printcolumn(
        name = "Self-Assessment",
        type_ = "integer",
        json_path = ".status.selfAssessment.score",
        description = "Yes answers to the 25-question CX self-assessment (18-25 customer-centric, 9-17 missing pieces, 0-8 many gaps)"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Consistent, covered and KPIs met"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since creation"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CustomerJourneySpec {
    /// The function that owns the journey as a whole (e.g. cx-office).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub owner: Option<String>,
    /// The stages of this journey, in order.
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(min = 1, max = 8))]
    pub stages: Vec<Stage>,
    /// Channels (same namespace) taking part, by label. Absent: every channel in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_selector: Option<LabelSelector>,
    /// Settings that must be coherent across the journey's channels.
    #[serde(default)]
    pub consistency: Consistency,
    /// What the journey requires at each stage.
    #[serde(default)]
    pub coverage: CoverageRequirements,
    /// Answers people declare to the 25-question CX self-assessment, for the questions the
    /// conductor holds no evidence for (or none yet). Evidence, when known, takes precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_assessment: Option<SelfAssessmentSpec>,
    /// Themes customers write about on this journey (delivery, price, staff...), each a name and the words and phrases that mean it in the languages customers write. Every touchpoint of the journey (on its channels, at its stages) matches them in the comments it receives and counts cx_feedback_themes_total{theme, metric, segment}: one definition serves the whole programme. At most 50 themes; names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]),
        length(max = 50)
    )]
    pub themes: Vec<crate::api::ThemeSpec>,
    /// What leaves the cluster of the events of every touchpoint of the journey (on its
    /// channels, at its stages) when the platform team configured an export. A touchpoint's own
    /// spec.export choice overrides it; when several journeys hold a touchpoint, the more
    /// private choice wins. Absent: the touchpoints decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<JourneyExport>,
}

/// A journey's export choices for its touchpoints.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct JourneyExport {
    /// Export the events of the journey's touchpoints; false keeps them in the cluster (counted
    /// only), unless a touchpoint sets spec.export.enabled itself.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Export comments; false exports every other field but no text, unless a touchpoint sets
    /// spec.export.comments itself.
    #[serde(default = "yes")]
    pub comments: bool,
}

/// Declared answers to the CX self-assessment (25 yes/no questions; 18-25 yes is customer-centric,
/// 9-17 has missing pieces, 0-8 many gaps).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SelfAssessmentSpec {
    /// One answer per question, each with who answered and when.
    #[serde(default)]
    #[schemars(
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["question"]),
        length(max = 25)
    )]
    pub answers: Vec<DeclaredAnswer>,
}

/// A declared answer to one question of the self-assessment.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredAnswer {
    /// Question number, 1 to 25, as in the self-assessment (e.g. 17: is there a "conductor" who owns CX?).
    #[schemars(range(min = 1, max = 25))]
    pub question: i32,
    /// The answer: true for yes, false for no.
    pub answer: bool,
    /// Who answered and is accountable for the answer: a person or a role, e.g. giulia.bianchi@larkspur.example.
    #[schemars(length(min = 1, max = 253))]
    pub answered_by: String,
    /// When the answer was given, as a date: YYYY-MM-DD.
    #[schemars(regex(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"))]
    pub answered_at: String,
    /// Why, or where the supporting evidence is (a survey, a workshop, a document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub note: Option<String>,
}

/// Cross-channel consistency requirements.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Consistency {
    /// Rules over Channel.spec fields, each checked across every channel of the journey.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub rules: Vec<ConsistencyRule>,
}

/// One consistency rule: a Channel.spec field and the policy its values must follow across channels.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(
    cel,
    validation = Rule::new("!(self.policy in ['includes', 'oneOf', 'atMost', 'atLeast']) || (has(self.values) && size(self.values) > 0)").message("policies includes, oneOf, atMost and atLeast need values").field_path(".values").reason(Reason::FieldValueRequired),
    validation = Rule::new("!(self.policy in ['equal', 'present']) || !has(self.values) || size(self.values) == 0").message("policies equal and present take no values").field_path(".values"),
    validation = Rule::new("!(self.policy in ['atMost', 'atLeast']) || (size(self.values) == 1 && self.values[0].matches('^-?[0-9]+(\\\\.[0-9]+)?$'))").message("policies atMost and atLeast take exactly one numeric value").field_path(".values")
)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyRule {
    /// Channel.spec field to compare, e.g. brand.voice, privacy.consentPolicyVersion, locales, attributes.returnPolicy.
    #[schemars(
        length(min = 1, max = 253),
        regex(
            pattern = r"^(type|displayName|owner|brand\.(name|voice|styleGuideVersion)|content\.(catalogVersion|pricingVersion)|privacy\.(consentPolicyVersion|dataRetentionDays)|locales|serviceLevels\.(firstResponseSeconds|resolutionHours)|attributes\.[-._a-zA-Z0-9/]+)$"
        )
    )]
    pub field: String,
    /// How values must relate across channels: equal (same on every channel), present (set on every channel),
    /// includes (contains all of values), oneOf (is one of values), atMost / atLeast (numeric bound in values[0]).
    pub policy: Policy,
    /// Values the policy compares against (includes, oneOf, atMost, atLeast).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 253)))]
    pub values: Vec<String>,
    /// error (default) makes the journey inconsistent; warning only reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

/// How a field's values must relate across channels.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Policy {
    /// Every channel has the same value (channels without the field are reported too).
    Equal,
    /// Every channel sets the field.
    Present,
    /// The field (a list, or a single value) contains every one of `values` on every channel.
    Includes,
    /// The field's value is one of `values` on every channel.
    OneOf,
    /// The field's numeric value is at most `values[0]` on every channel.
    AtMost,
    /// The field's numeric value is at least `values[0]` on every channel.
    AtLeast,
}

impl Policy {
    /// The name used in manifests and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Equal => "equal",
            Policy::Present => "present",
            Policy::Includes => "includes",
            Policy::OneOf => "oneOf",
            Policy::AtMost => "atMost",
            Policy::AtLeast => "atLeast",
        }
    }
}

/// How serious a finding is.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// Reported, but the journey stays consistent and `check` exits 0.
    Warning,
    /// Makes the journey inconsistent and `check` exit 1.
    #[default]
    Error,
}

/// What the journey requires at each stage and channel.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CoverageRequirements {
    /// Every stage has at least one touchpoint with a survey signal.
    #[serde(default = "yes")]
    pub listening_per_stage: bool,
    /// Every stage is covered by at least one ExperienceKPI.
    #[serde(default = "yes")]
    pub kpi_per_stage: bool,
    /// Every channel of the journey has at least one touchpoint.
    #[serde(default = "yes")]
    pub touchpoint_per_channel: bool,
}

fn yes() -> bool {
    true
}

impl Default for CoverageRequirements {
    fn default() -> Self {
        Self {
            listening_per_stage: true,
            kpi_per_stage: true,
            touchpoint_per_channel: true,
        }
    }
}

/// Observed state of a CustomerJourney.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CustomerJourneyStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of channels taking part.
    #[serde(default)]
    pub channels: i32,
    /// Number of touchpoints on those channels at the journey's stages.
    #[serde(default)]
    pub touchpoints: i32,
    /// Number of consistency violations (all severities).
    #[serde(default)]
    pub violation_count: i32,
    /// Consistency violations found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// Coverage gaps found.
    #[serde(default)]
    pub coverage: CoverageStatus,
    /// KPIs reporting to the journey, counted by state.
    #[serde(default)]
    pub kpis: KpiCounts,
    /// Readiness assessment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
    /// The 25-question CX self-assessment: evidenced answers, declared ones, and the missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_assessment: Option<SelfAssessment>,
    /// Conditions: Consistent, Covered, KPIsMet, Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
}

/// A consistency problem found across the journey's channels.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// Short identifier of the rule or builtin check, e.g. `brand.voice equal` or `dangling-channel`.
    pub rule: String,
    /// error or warning.
    pub severity: Severity,
    /// A sentence a CX lead understands, e.g. "brand.voice differs: friendly-expert on web, app; formal on voice".
    pub message: String,
    /// Channels grouped by the value they have (`<unset>` for none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, Vec<String>>,
}

/// Coverage gaps of a journey.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CoverageStatus {
    /// Stages of the journey without any touchpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages_without_touchpoints: Vec<Stage>,
    /// Stages without a touchpoint that collects survey answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages_without_listening: Vec<Stage>,
    /// Stages without an ExperienceKPI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages_without_kpis: Vec<Stage>,
    /// Channels of the journey without any touchpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels_without_touchpoints: Vec<String>,
}

/// KPIs reporting to a journey, counted by state.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KpiCounts {
    /// KPIs meeting their target.
    #[serde(default)]
    pub met: i32,
    /// KPIs between target and warning.
    #[serde(default)]
    pub at_risk: i32,
    /// KPIs past their warning threshold.
    #[serde(default)]
    pub breached: i32,
    /// KPIs with too few samples for a verdict.
    #[serde(default)]
    pub insufficient_data: i32,
    /// KPIs not evaluated yet or that could not be evaluated.
    #[serde(default)]
    pub unknown: i32,
}

/// The journey's readiness score, band, and the criteria behind them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// Percentage of the evaluated criteria weight that passed, 0-100.
    pub score: i32,
    /// customer-centric (>= 72), gaps-to-close (>= 36) or structural-weaknesses.
    pub band: ReadinessBand,
    /// Every criterion with its verdict and reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub criteria: Vec<CriterionResult>,
}

/// Readiness bands.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ReadinessBand {
    /// Score of 72 or more.
    CustomerCentric,
    /// Score from 36 to 71.
    GapsToClose,
    /// Score under 36.
    StructuralWeaknesses,
}

impl ReadinessBand {
    /// The name used in status and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadinessBand::CustomerCentric => "customer-centric",
            ReadinessBand::GapsToClose => "gaps-to-close",
            ReadinessBand::StructuralWeaknesses => "structural-weaknesses",
        }
    }
}

/// One readiness criterion's verdict.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CriterionResult {
    /// Stable identifier, e.g. every-stage-listened.
    pub id: String,
    /// Weight of the criterion in the score.
    pub weight: i32,
    /// Whether it passed.
    pub passed: bool,
    /// False when the criterion could not be judged (KPI states and collector readiness when
    /// checking manifests without a cluster): it then counts neither for nor against the score.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub evaluated: bool,
    /// Why it passed or failed, and what to do to pass it.
    pub reason: String,
}

fn is_true(value: &bool) -> bool {
    *value
}

/// The CX self-assessment of a journey: 25 yes/no questions, ten answered from evidence the
/// conductor holds, the others by declaration.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SelfAssessment {
    /// Number of yes answers, 0-25 (a missing answer counts as no).
    #[schemars(range(min = 0, max = 25))]
    pub score: i32,
    /// customer-centric (18-25), missing-pieces (9-17) or many-gaps (0-8).
    pub band: SelfAssessmentBand,
    /// Questions answered from evidence (journeys, channels, touchpoints, KPIs, collectors).
    #[serde(default)]
    pub evidenced: Vec<i32>,
    /// Questions answered by declaration (spec.selfAssessment.answers).
    #[serde(default)]
    pub declared: Vec<i32>,
    /// Questions with neither evidence nor declaration: they count as no.
    #[serde(default)]
    pub missing: Vec<i32>,
    /// Every question's answer, where it comes from and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<SelfAssessmentAnswer>,
}

/// Bands of the self-assessment score.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum SelfAssessmentBand {
    /// 18 to 25 yes: a customer-centric culture shared by every function.
    CustomerCentric,
    /// 9 to 17 yes: something is missing before culture and CX give the desired results.
    MissingPieces,
    /// 0 to 8 yes: many gaps at strategic, information, organisational and technological level.
    ManyGaps,
}

impl SelfAssessmentBand {
    /// The name used in status and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SelfAssessmentBand::CustomerCentric => "customer-centric",
            SelfAssessmentBand::MissingPieces => "missing-pieces",
            SelfAssessmentBand::ManyGaps => "many-gaps",
        }
    }
}

/// One question's answer in the self-assessment.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SelfAssessmentAnswer {
    /// Question number, 1-25.
    #[schemars(range(min = 1, max = 25))]
    pub question: i32,
    /// The answer; absent when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<bool>,
    /// Where the answer comes from: evidenced, declared or missing.
    pub source: AnswerSource,
    /// The evidence, or who declared it and when, or what would answer it.
    pub reason: String,
}

/// Where a self-assessment answer comes from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum AnswerSource {
    /// Computed from the objects and their status.
    Evidenced,
    /// Declared in spec.selfAssessment.answers.
    Declared,
    /// Neither evidence nor declaration.
    Missing,
}

impl AnswerSource {
    /// The name used in status and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerSource::Evidenced => "evidenced",
            AnswerSource::Declared => "declared",
            AnswerSource::Missing => "missing",
        }
    }
}
