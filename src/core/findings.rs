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
    /// A touchpoint names a channel that does not exist.
    DanglingChannel,
    /// A KPI's scope matches no touchpoint.
    KpiScopeEmpty,
    /// A KPI names a journey that does not exist.
    DanglingJourney,
    /// Two touchpoints listen to the same signals on the same channel and stage.
    DuplicateTouchpoint,
    /// A journey's channel selector selects no channel.
    JourneyWithoutChannels,
    /// A journey stage has no touchpoint.
    StageWithoutTouchpoints,
    /// A journey stage has touchpoints but none asks a survey question.
    StageWithoutListening,
    /// A journey stage has no KPI.
    StageWithoutKpi,
    /// A channel of a journey has no touchpoint at the journey's stages.
    ChannelWithoutTouchpoints,
}

impl FindingCode {
    /// The code as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::Consistency => "consistency",
            FindingCode::DanglingChannel => "dangling-channel",
            FindingCode::KpiScopeEmpty => "kpi-scope-empty",
            FindingCode::DanglingJourney => "dangling-journey",
            FindingCode::DuplicateTouchpoint => "duplicate-touchpoint",
            FindingCode::JourneyWithoutChannels => "journey-without-channels",
            FindingCode::StageWithoutTouchpoints => "stage-without-touchpoints",
            FindingCode::StageWithoutListening => "stage-without-listening",
            FindingCode::StageWithoutKpi => "stage-without-kpi",
            FindingCode::ChannelWithoutTouchpoints => "channel-without-touchpoints",
        }
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
}
