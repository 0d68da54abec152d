//! `Touchpoint`: one point of interaction on a channel, at one journey stage, and how to listen to it.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, Stage, conditions_schema};

/// A touchpoint: where a customer meets the company on a channel at a journey stage. The operator
/// deploys a feedback collector for it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cx.conductor.dev",
    version = "v1alpha1",
    kind = "Touchpoint",
    namespaced,
    status = "TouchpointStatus",
    shortname = "tp",
    category = "cx",
    derive = "PartialEq",
    validation = Rule::new("size(self.metadata.name) <= 53").message("touchpoint names are at most 53 characters: they name the collector's objects (collector-<name>)").field_path(".metadata.name"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("touchpoint names must be valid Service names: lower-case letters, digits and '-', starting with a letter, e.g. web-checkout").field_path(".metadata.name"),
    doc = "A point of interaction on a channel at one journey stage, with the feedback signals to collect.",
    printcolumn(
        name = "Channel",
        type_ = "string",
        json_path = ".spec.channel",
        description = "Channel the touchpoint belongs to"
    ),
    printcolumn(
        name = "Stage",
        type_ = "string",
        json_path = ".spec.stage",
        description = "Journey stage"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Collector ready"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "string",
        json_path = ".status.collector.replicasSummary",
        description = "Ready/desired collector replicas"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.collector.endpoint",
        description = "Where to POST feedback events",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since creation"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TouchpointSpec {
    /// Name of the Channel (same namespace) this touchpoint belongs to.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub channel: String,
    /// Journey stage of the touchpoint: awareness, consideration, purchase, delivery, usage, support, loyalty or advocacy.
    pub stage: Stage,
    /// Feedback to collect: explicit surveys and implicit interaction signals.
    pub signals: Signals,
    /// How the feedback collector is deployed.
    #[serde(default)]
    pub collector: CollectorSpec,
    /// When true, the operator stops changing the collector's objects (nothing is deleted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// What of this touchpoint's events leaves the cluster when the platform team configured an
    /// export (OTLP log records to the company's pipeline). A choice left out follows the
    /// journeys holding the touchpoint (spec.export of a CustomerJourney); absent there too:
    /// every event is exported, comments included, customerId and sessionId pseudonymised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<TouchpointExport>,
}

/// A touchpoint's export choices (the endpoint itself is the platform team's setting).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TouchpointExport {
    /// Export this touchpoint's events; false keeps them in the cluster (counted only). Unset:
    /// false when a journey holding the touchpoint opts out, else true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Export comments (the log record's body); false exports every other field but no text.
    /// Unset: false when a journey holding the touchpoint withholds comments, else true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comments: Option<bool>,
    /// Export customerId and sessionId as sent instead of as keyed hashes (HMAC-SHA256 with the
    /// platform's pseudonym key). Turn on only where the pipeline may hold personal data.
    #[serde(default)]
    pub raw_identifiers: bool,
}

/// Signals listened to at a touchpoint.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[x_kube(
    cel,
    validation = Rule::new("size(self.surveys) > 0 || has(self.interactions)").message("signals must declare at least one survey or interactions").reason(Reason::FieldValueRequired)
)]
#[serde(rename_all = "camelCase")]
pub struct Signals {
    /// Explicit feedback: survey questions asked at this touchpoint, at most one per metric.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["metric"]), length(max = 3))]
    pub surveys: Vec<SurveySignal>,
    /// Implicit feedback: interaction outcomes and timings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactions: Option<InteractionSignals>,
}

/// One survey question type asked at a touchpoint.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(
    cel,
    validation = Rule::new("!has(self.scale) || self.metric == 'csat'").message("scale applies only to csat: nps is always 0-10 and ces always 1-7").field_path(".scale"),
    validation = Rule::new("!has(self.scale) || self.scale == 5 || self.scale == 7").message("csat scale must be 5 or 7").field_path(".scale")
)]
#[serde(rename_all = "camelCase")]
pub struct SurveySignal {
    /// Survey metric: nps (0-10), csat (1-5 or 1-7) or ces (1-7).
    pub metric: SurveyMetric,
    /// Number of points of the csat scale: 5 (default) or 7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<i32>,
}

/// Survey metrics a collector accepts.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum SurveyMetric {
    /// Net Promoter Score question, answered 0-10.
    Nps,
    /// Customer satisfaction, answered 1-5 or 1-7.
    Csat,
    /// Customer effort score, answered 1-7 (7 = easiest).
    Ces,
}

impl SurveyMetric {
    /// The name used in manifests, events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SurveyMetric::Nps => "nps",
            SurveyMetric::Csat => "csat",
            SurveyMetric::Ces => "ces",
        }
    }
}

impl SurveySignal {
    /// Inclusive range of valid answers for this question.
    pub fn score_range(&self) -> (i32, i32) {
        match self.metric {
            SurveyMetric::Nps => (0, 10),
            SurveyMetric::Csat => (1, self.scale.unwrap_or(5)),
            SurveyMetric::Ces => (1, 7),
        }
    }
}

/// Implicit signals: how interactions end and how long they take.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[x_kube(
    cel,
    validation = Rule::new("!has(self.customOutcomes) || self.customOutcomes.all(o, !(o in ['completed', 'abandoned', 'error', 'resolved-first-contact', 'resolved', 'unresolved', 'escalated']))").message("a custom outcome cannot repeat a builtin outcome (completed, abandoned, error, resolved-first-contact, resolved, unresolved, escalated): list the builtin one in outcomes instead").field_path(".customOutcomes")
)]
#[serde(rename_all = "camelCase")]
pub struct InteractionSignals {
    /// Builtin outcomes an interaction at this touchpoint can end with: completed, abandoned, error, resolved-first-contact, resolved, unresolved, escalated.
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(min = 1, max = 7))]
    pub outcomes: Vec<Outcome>,
    /// The company's own outcomes, next to the builtin ones (e.g. rescheduled, failed-attempt): at most 16 names in lower-case kebab-case (letters, digits and '-', starting with a letter, at most 40 characters), none repeating a builtin outcome. Events send them as their outcome; they are counted in cx_interactions_total under the outcome label like the builtin ones, and the outcome-share indicator measures them. The builtin indicators keep their meaning: fcr and resolution-rate read only the builtin contact outcomes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 16), inner(length(min = 1, max = 40), regex(pattern = OUTCOME_PATTERN)))]
    pub custom_outcomes: Vec<String>,
    /// Durations measured for each interaction: wait (until first response) and handle (active handling time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 2))]
    pub timings: Vec<Timing>,
}

/// How an interaction ended. A closed set, so it can be a metric label.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The customer finished what they came to do (order placed, form sent).
    Completed,
    /// The customer gave up (left the queue, closed the cart).
    Abandoned,
    /// The interaction failed on the company's side.
    Error,
    /// The request was resolved on the first contact.
    ResolvedFirstContact,
    /// The request was resolved after more than one contact.
    Resolved,
    /// The contact ended without resolution.
    Unresolved,
    /// The request was escalated to another team or level.
    Escalated,
}

/// Shape of an outcome name (a touchpoint's custom outcome, an outcome-share KPI's outcome): a
/// label value in lower-case kebab-case, starting with a letter.
pub const OUTCOME_PATTERN: &str = r"^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// Most custom outcomes a touchpoint may declare (`interactions.customOutcomes`).
pub const MAX_CUSTOM_OUTCOMES: usize = 16;
/// Longest custom outcome name.
pub const MAX_OUTCOME_NAME_BYTES: usize = 40;

/// Why `name` cannot be a custom outcome (a label value, so kebab-case and bounded like the
/// CRD pattern says), or `None` when it can. A builtin name is refused: it is listed in
/// `outcomes`.
pub fn custom_outcome_error(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let shaped = !bytes.is_empty()
        && bytes.len() <= MAX_OUTCOME_NAME_BYTES
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !shaped {
        return Some(format!(
            "custom outcome {name:?} is not a lower-case kebab-case name of 1 to {MAX_OUTCOME_NAME_BYTES} characters starting with a letter, e.g. failed-attempt"
        ));
    }
    if Outcome::ALL.iter().any(|o| o.as_str() == name) {
        return Some(format!(
            "custom outcome {name} repeats a builtin outcome: list it in outcomes instead"
        ));
    }
    None
}

impl InteractionSignals {
    /// Whether an interaction here may end with the outcome named `name`, builtin or custom.
    pub fn declares(&self, name: &str) -> bool {
        self.outcomes.iter().any(|o| o.as_str() == name)
            || self.custom_outcomes.iter().any(|o| o == name)
    }

    /// The names of every outcome an interaction here may end with: the builtin ones in
    /// declaration order, then the custom ones.
    pub fn outcome_names(&self) -> impl Iterator<Item = &str> {
        self.outcomes
            .iter()
            .map(|o| o.as_str())
            .chain(self.custom_outcomes.iter().map(String::as_str))
    }
}

impl Outcome {
    /// Every outcome, in declaration order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Completed,
        Outcome::Abandoned,
        Outcome::Error,
        Outcome::ResolvedFirstContact,
        Outcome::Resolved,
        Outcome::Unresolved,
        Outcome::Escalated,
    ];

    /// The name used in manifests, events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Abandoned => "abandoned",
            Outcome::Error => "error",
            Outcome::ResolvedFirstContact => "resolved-first-contact",
            Outcome::Resolved => "resolved",
            Outcome::Unresolved => "unresolved",
            Outcome::Escalated => "escalated",
        }
    }
}

/// A duration measured for an interaction. A closed set, so it can be a metric label.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "kebab-case")]
pub enum Timing {
    /// Time the customer waited for a first response.
    Wait,
    /// Time spent actively handling the interaction.
    Handle,
}

impl Timing {
    /// The name used in manifests, events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Timing::Wait => "wait",
            Timing::Handle => "handle",
        }
    }
}

/// How the touchpoint's collector is deployed.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(
    cel,
    validation = Rule::new("self.mode == 'dedicated' || (!has(self.replicas) && !has(self.image) && !has(self.resources))").message("replicas, image and resources apply only to a dedicated collector (mode: dedicated); a pooled touchpoint shares its namespace's collector pool, sized by the platform team").field_path(".mode")
)]
#[serde(rename_all = "camelCase")]
pub struct CollectorSpec {
    /// pooled (default): the touchpoint is served by its namespace's shared collector pool, at
    /// POST /v1/touchpoints/<name>/events; dedicated: it gets collector pods of its own.
    #[serde(default)]
    pub mode: CollectorMode,
    /// Number of dedicated collector pods (0 to 50, default 1). 0 keeps the objects but runs no pod; more than 1 adds a PodDisruptionBudget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 50))]
    pub replicas: Option<i32>,
    /// Container image of a dedicated collector, from the images the platform team allows. Empty: the operator's collector image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// CPU and memory requests and limits of a dedicated collector container. Empty: the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Bearer-token authentication of event producers. Absent: the collector accepts unauthenticated events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<CollectorAuth>,
    /// Largest accepted event, in bytes (256 to 1048576); larger requests get 413.
    #[serde(default = "default_max_event_bytes")]
    #[schemars(range(min = 256, max = 1048576))]
    pub max_event_bytes: i64,
    /// Longest accepted comment (the free text of an event's comment field), in bytes (1 to 65536, default 4096); an event with a longer comment is refused (422, comment_too_long). Comments are never a metric label nor logged.
    #[serde(default = "default_max_comment_bytes")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_comment_bytes: i64,
}

/// How a touchpoint's events are collected.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum CollectorMode {
    /// Served by the namespace's shared collector pool (one autoscaled Deployment).
    #[default]
    Pooled,
    /// Collector pods of its own: isolation, its own image, replicas and resources.
    Dedicated,
}

impl CollectorMode {
    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            CollectorMode::Pooled => "pooled",
            CollectorMode::Dedicated => "dedicated",
        }
    }
}

/// Replicas of a dedicated collector when the touchpoint sets none.
pub const DEFAULT_DEDICATED_REPLICAS: i32 = 1;

impl CollectorSpec {
    /// Replicas of a dedicated collector.
    pub fn dedicated_replicas(&self) -> i32 {
        self.replicas.unwrap_or(DEFAULT_DEDICATED_REPLICAS)
    }

    /// Whether the touchpoint has collector pods of its own.
    pub fn is_dedicated(&self) -> bool {
        self.mode == CollectorMode::Dedicated
    }
}

fn default_max_event_bytes() -> i64 {
    65536
}

/// `maxCommentBytes` when the touchpoint sets none.
pub const DEFAULT_MAX_COMMENT_BYTES: i64 = 4096;

fn default_max_comment_bytes() -> i64 {
    DEFAULT_MAX_COMMENT_BYTES
}

impl Default for CollectorSpec {
    fn default() -> Self {
        Self {
            mode: CollectorMode::default(),
            replicas: None,
            image: None,
            resources: None,
            auth: None,
            max_event_bytes: default_max_event_bytes(),
            max_comment_bytes: default_max_comment_bytes(),
        }
    }
}

/// Bearer-token authentication of a collector.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CollectorAuth {
    /// The Secret key (same namespace) holding the token producers send as `Authorization: Bearer <token>`.
    pub secret_ref: SecretKeyRef,
}

/// A key of a Secret in the touchpoint's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Observed state of a Touchpoint.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TouchpointStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// State of the deployed collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<CollectorStatus>,
    /// Conditions: Ready (collector available), ChannelResolved (the channel exists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
}

/// State of a touchpoint's collector.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CollectorStatus {
    /// In-cluster URL producers POST events to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Collector pods ready to receive events.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Collector pods desired.
    #[serde(default)]
    pub replicas: i32,
    /// "ready/desired", for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_summary: Option<String>,
    /// The collector pool serving this touchpoint (its Deployment and Service), when pooled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Hash of the collector configuration currently deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Where this touchpoint's events are exported as OpenTelemetry log records (the OTLP logs
    /// URL, without credentials); absent: they are not exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
}
