//! Vocabulary shared by every custom resource: journey stages, channel types, conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every cx-conductor custom resource.
pub const GROUP: &str = "cx.conductor.dev";
/// API version served and stored for every cx-conductor custom resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` value of every cx-conductor manifest.
pub const API_VERSION: &str = "cx.conductor.dev/v1alpha1";

/// A stage of the customer journey, in the order a customer lives them.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Awareness,
    Consideration,
    Purchase,
    Delivery,
    Usage,
    Support,
    Loyalty,
    Advocacy,
}

impl Stage {
    /// Every stage in journey order.
    pub const ALL: [Stage; 8] = [
        Stage::Awareness,
        Stage::Consideration,
        Stage::Purchase,
        Stage::Delivery,
        Stage::Usage,
        Stage::Support,
        Stage::Loyalty,
        Stage::Advocacy,
    ];

    /// The name used in manifests, labels and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Awareness => "awareness",
            Stage::Consideration => "consideration",
            Stage::Purchase => "purchase",
            Stage::Delivery => "delivery",
            Stage::Usage => "usage",
            Stage::Support => "support",
            Stage::Loyalty => "loyalty",
            Stage::Advocacy => "advocacy",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The medium through which customers interact on a channel.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelType {
    Web,
    MobileApp,
    Email,
    Sms,
    Chat,
    Voice,
    Social,
    Store,
    Kiosk,
    Marketplace,
    Other,
}

impl ChannelType {
    /// The name used in manifests and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelType::Web => "web",
            ChannelType::MobileApp => "mobile-app",
            ChannelType::Email => "email",
            ChannelType::Sms => "sms",
            ChannelType::Chat => "chat",
            ChannelType::Voice => "voice",
            ChannelType::Social => "social",
            ChannelType::Store => "store",
            ChannelType::Kiosk => "kiosk",
            ChannelType::Marketplace => "marketplace",
            ChannelType::Other => "other",
        }
    }
}

/// Standard Kubernetes conditions, merged by `type` so server-side apply keeps each one.
pub type Conditions = Vec<Condition>;

/// Schema extension that makes a list of conditions a map keyed by `type`, as the API conventions ask.
pub fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("x-kubernetes-list-type".into(), "map".into());
        obj.insert(
            "x-kubernetes-list-map-keys".into(),
            serde_json::json!(["type"]),
        );
        obj.insert(
            "description".into(),
            "Standard conditions (type, status, reason, message, lastTransitionTime, observedGeneration), one per type.".into(),
        );
    }
    schema
}

/// Regular expression of a duration as Prometheus and the Prometheus Operator read it: numbers
/// with units in decreasing order (y, w, d, h, m, s, ms), each unit at most once, e.g. `5m`,
/// `1h30m`, `7d`. It is the Prometheus Operator's `Duration` pattern without its bare `0`, so a
/// KPI `interval` always makes a `for:` its PrometheusRule CRD accepts. The empty string and
/// all-zero durations match: a CEL rule ([`POSITIVE_DURATION_RULE`]) refuses them with a message.
pub const DURATION_PATTERN: &str =
    r"^([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$";

/// Regular expression of a KPI window: a [`DURATION_PATTERN`] duration or a calendar period.
pub const WINDOW_PATTERN: &str = r"^(calendar-month|calendar-quarter|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$";

/// CEL rule of a window that matches [`WINDOW_PATTERN`]: a calendar period, or a duration longer
/// than zero (some digit is not 0), which also refuses the empty string.
pub const POSITIVE_WINDOW_RULE: &str = "self.startsWith('calendar-') || self.matches('[1-9]')";

/// CEL rule of a duration that matches [`DURATION_PATTERN`]: longer than zero (some digit is not
/// 0), which also refuses the empty string.
pub const POSITIVE_DURATION_RULE: &str = "self.matches('[1-9]')";

/// Regular expression of a Kubernetes object name (RFC 1123 DNS subdomain label).
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Regular expression of a calendar date, `YYYY-MM-DD`.
pub const DATE_PATTERN: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$";
