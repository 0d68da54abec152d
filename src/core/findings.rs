//! What the conductor concludes: findings with a stable code, a severity and a sentence.

use serde::Serialize;

use crate::api::Severity;

use super::world::Groups;

/// Identity of an object: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    /// Kind, e.g. Touchpoint.
    pub kind: String,
    /// Namespace (`default` when the manifest has none).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// The reference of a typed object.
    pub fn to<K: kube::Resource<DynamicType = ()>>(object: &K) -> Self {
        Self {
            kind: K::kind(&()).into_owned(),
            namespace: object
                .meta()
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: object.meta().name.clone().unwrap_or_default(),
        }
    }
}

/// Where something is written: a file and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Origin {
    /// File path as given (or `-` for stdin).
    pub file: String,
    /// 1-based line.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Kinds of finding. The code is stable: pipelines and tests match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingCode {
    /// A journey's consistency rule is broken across its channels.
    Consistency,
    /// A consistency rule compares a field that no channel of the journey sets: it checks nothing.
    RuleChecksNothing,
    /// A touchpoint names a channel that does not exist.
    DanglingChannel,
    /// A KPI's scope matches no touchpoint.
    KpiScopeEmpty,
    /// A KPI's scope names a channel that does not exist.
    DanglingScopeChannel,
    /// A builtin KPI covers touchpoints of which none produces its signal: it can never be measured.
    KpiSignalMissing,
    /// A theme-share KPI names a theme that no journey holding its touchpoints declares: no
    /// collector counts it.
    KpiThemeUndeclared,
    /// An outcome-share KPI names an outcome that no touchpoint in its scope declares (builtin
    /// or custom): no interaction can end with it.
    KpiOutcomeUndeclared,
    /// A KPI's PromQL (or window) is one Prometheus would refuse.
    KpiQueryInvalid,
    /// A KPI's rolling window is shorter than its interval: answers between two evaluations are
    /// never measured.
    KpiWindowShorterThanInterval,
    /// A KPI names a journey that does not exist.
    DanglingJourney,
    /// A KPI names a journey but covers none of its touchpoints.
    KpiMissesJourney,
    /// A KPI names no journey and covers no journey's touchpoints.
    KpiWithoutJourney,
    /// A KPI names no owner to act on a breach.
    KpiWithoutOwner,
    /// Two touchpoints listen to the same signals on the same channel and stage.
    DuplicateTouchpoint,
    /// A journey's channel selector selects no channel.
    JourneyWithoutChannels,
    /// A channel no journey selects.
    ChannelWithoutJourney,
    /// A touchpoint at a stage that none of its channel's journeys has.
    TouchpointWithoutJourney,
    /// A journey stage has no touchpoint.
    StageWithoutTouchpoints,
    /// A journey stage has touchpoints but none asks a survey question.
    StageWithoutListening,
    /// A journey stage has no KPI.
    StageWithoutKpi,
    /// A channel of a journey has no touchpoint at the journey's stages.
    ChannelWithoutTouchpoints,
    /// A declared self-assessment "yes" that the evidence contradicts.
    SelfAssessmentContradicted,
    /// A journey's theme set the collectors would refuse (a malformed keyword, too many).
    ThemeInvalid,
    /// A theme keyword that no comment can ever match (its own theme excludes it).
    ThemeNeverMatches,
    /// The same keyword in two themes of a journey: every comment with it counts for both.
    ThemeKeywordRepeated,
    /// A journey declares themes but holds no touchpoint to count them.
    ThemeWithoutTouchpoint,
    /// Two journeys holding the same touchpoint declare a theme of the same name differently.
    ThemeDeclaredDifferently,
}

impl FindingCode {
    /// Every code, in the order of the README's table.
    pub const ALL: [FindingCode; 28] = [
        FindingCode::Consistency,
        FindingCode::RuleChecksNothing,
        FindingCode::DuplicateTouchpoint,
        FindingCode::DanglingChannel,
        FindingCode::DanglingJourney,
        FindingCode::DanglingScopeChannel,
        FindingCode::KpiScopeEmpty,
        FindingCode::KpiSignalMissing,
        FindingCode::KpiThemeUndeclared,
        FindingCode::KpiOutcomeUndeclared,
        FindingCode::KpiQueryInvalid,
        FindingCode::KpiWindowShorterThanInterval,
        FindingCode::KpiMissesJourney,
        FindingCode::KpiWithoutJourney,
        FindingCode::KpiWithoutOwner,
        FindingCode::JourneyWithoutChannels,
        FindingCode::ChannelWithoutJourney,
        FindingCode::TouchpointWithoutJourney,
        FindingCode::StageWithoutTouchpoints,
        FindingCode::StageWithoutListening,
        FindingCode::StageWithoutKpi,
        FindingCode::ChannelWithoutTouchpoints,
        FindingCode::SelfAssessmentContradicted,
        FindingCode::ThemeInvalid,
        FindingCode::ThemeNeverMatches,
        FindingCode::ThemeKeywordRepeated,
        FindingCode::ThemeWithoutTouchpoint,
        FindingCode::ThemeDeclaredDifferently,
    ];

    /// The code as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::Consistency => "consistency",
            FindingCode::RuleChecksNothing => "rule-checks-nothing",
            FindingCode::DanglingChannel => "dangling-channel",
            FindingCode::KpiScopeEmpty => "kpi-scope-empty",
            FindingCode::DanglingScopeChannel => "dangling-scope-channel",
            FindingCode::KpiSignalMissing => "kpi-signal-missing",
            FindingCode::KpiThemeUndeclared => "kpi-theme-undeclared",
            FindingCode::KpiOutcomeUndeclared => "kpi-outcome-undeclared",
            FindingCode::KpiQueryInvalid => "kpi-query-invalid",
            FindingCode::KpiWindowShorterThanInterval => "kpi-window-shorter-than-interval",
            FindingCode::DanglingJourney => "dangling-journey",
            FindingCode::KpiMissesJourney => "kpi-misses-journey",
            FindingCode::KpiWithoutJourney => "kpi-without-journey",
            FindingCode::KpiWithoutOwner => "kpi-without-owner",
            FindingCode::DuplicateTouchpoint => "duplicate-touchpoint",
            FindingCode::JourneyWithoutChannels => "journey-without-channels",
            FindingCode::ChannelWithoutJourney => "channel-without-journey",
            FindingCode::TouchpointWithoutJourney => "touchpoint-without-journey",
            FindingCode::StageWithoutTouchpoints => "stage-without-touchpoints",
            FindingCode::StageWithoutListening => "stage-without-listening",
            FindingCode::StageWithoutKpi => "stage-without-kpi",
            FindingCode::ChannelWithoutTouchpoints => "channel-without-touchpoints",
            FindingCode::SelfAssessmentContradicted => "self-assessment-contradicted",
            FindingCode::ThemeInvalid => "theme-invalid",
            FindingCode::ThemeNeverMatches => "theme-never-matches",
            FindingCode::ThemeKeywordRepeated => "theme-keyword-repeated",
            FindingCode::ThemeWithoutTouchpoint => "theme-without-touchpoint",
            FindingCode::ThemeDeclaredDifferently => "theme-declared-differently",
        }
    }

    /// Whether the code is a coverage gap (what the journey's `Covered` condition is about).
    pub fn is_coverage(self) -> bool {
        matches!(
            self,
            FindingCode::JourneyWithoutChannels
                | FindingCode::StageWithoutTouchpoints
                | FindingCode::StageWithoutListening
                | FindingCode::StageWithoutKpi
                | FindingCode::ChannelWithoutTouchpoints
        )
    }
}

impl std::fmt::Display for FindingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One conclusion about the manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// What kind of problem.
    pub code: FindingCode,
    /// error (fails `check`, makes the journey not Ready) or warning.
    pub severity: Severity,
    /// The object the finding is about.
    pub subject: ObjectRef,
    /// What precisely: the rule (`brand.voice equal`), the stage or the channel concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A sentence a CX lead understands.
    pub message: String,
    /// Channels (or touchpoints) grouped by the value they have.
    #[serde(skip_serializing_if = "Groups::is_empty")]
    pub values: Groups,
    /// The field to change to fix it, as a path (`spec.channel`, `spec.consistency.rules[2]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The object holding `field`, when it is not the subject (a duplicate touchpoint of a journey).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_of: Option<ObjectRef>,
    /// Where `field` is written, when the objects were read from files (`check`).
    #[serde(flatten)]
    pub origin: Option<Origin>,
}

impl Finding {
    /// A finding about `subject`, with no detail, field or values yet.
    pub fn new(
        code: FindingCode,
        severity: Severity,
        subject: ObjectRef,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code,
            severity,
            subject,
            detail: None,
            message: message.into(),
            values: Groups::new(),
            field: None,
            field_of: None,
            origin: None,
        }
    }

    /// With what precisely it is about (a rule, a stage, a channel).
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// With the field of the subject to change.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// With the field to change on another object than the subject.
    pub fn field_of(mut self, object: ObjectRef, field: impl Into<String>) -> Self {
        self.field_of = Some(object);
        self.field = Some(field.into());
        self
    }

    /// With objects grouped by value.
    pub fn values(mut self, values: Groups) -> Self {
        self.values = values;
        self
    }

    /// The object and field to look at: `field_of` or the subject, and `field` or its name.
    pub fn place(&self) -> (&ObjectRef, &str) {
        (
            self.field_of.as_ref().unwrap_or(&self.subject),
            self.field.as_deref().unwrap_or("metadata.name"),
        )
    }
}
