//! `Channel`: one medium customers use, and the settings that must stay coherent across channels.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ChannelType, Conditions, conditions_schema};

/// A channel (web shop, app, call centre, store...) and the brand, content, privacy, language and
/// service-level settings that journeys compare across channels.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cx.conductor.dev",
    version = "v1alpha1",
    kind = "Channel",
    namespaced,
    status = "ChannelStatus",
    shortname = "chan",
    category = "cx",
    derive = "PartialEq",
    validation = Rule::new("size(self.metadata.name) <= 63").message("channel names are at most 63 characters: they are label values on collectors and metrics").field_path(".metadata.name"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("channel names are label values that touchpoints name in spec.channel: lower-case letters, digits and '-', starting and ending with a letter or digit, e.g. web-shop").field_path(".metadata.name"),
    doc = "A customer channel and the settings that must stay coherent across channels.",
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = ".spec.type",
        description = "Kind of channel"
    ),
    printcolumn(
        name = "Owner",
        type_ = "string",
        json_path = ".spec.owner",
        description = "Accountable function"
    ),
    printcolumn(
        name = "Touchpoints",
        type_ = "integer",
        json_path = ".status.touchpoints",
        description = "Touchpoints declared on this channel"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every touchpoint collector of the channel is ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since creation"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSpec {
    /// Kind of channel: web, mobile-app, email, sms, chat, voice, social, store, kiosk, marketplace or other.
    #[serde(rename = "type")]
    pub channel_type: ChannelType,
    /// Human-readable name shown in reports and dashboards, e.g. "Web shop".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,
    /// The function or team accountable for the channel (e.g. digital, customer-care, retail-ops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub owner: Option<String>,
    /// Brand identity the channel presents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<Brand>,
    /// Versions of the catalogue and price list the channel serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Consent and data-retention policy applied on the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<Privacy>,
    /// BCP 47 language tags the channel serves customers in, e.g. it-IT, en-GB.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), length(max = 64), inner(regex(pattern = r"^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$")))]
    pub locales: Vec<String>,
    /// Service levels promised to customers on this channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_levels: Option<ServiceLevels>,
    /// Free-form settings (return policy, delivery options...) that journey rules compare as `attributes.<key>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub attributes: BTreeMap<String, String>,
}

/// Brand identity presented on a channel.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Brand {
    /// Brand name as customers see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub name: Option<String>,
    /// Tone of voice the channel writes and speaks in, e.g. friendly-expert, formal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub voice: Option<String>,
    /// Version of the brand style guide the channel follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub style_guide_version: Option<String>,
}

/// Versions of the content a channel serves.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    /// Version of the product catalogue served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub catalog_version: Option<String>,
    /// Version of the price list served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub pricing_version: Option<String>,
}

/// Privacy settings of a channel.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Privacy {
    /// Version of the consent policy customers accept on this channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub consent_policy_version: Option<String>,
    /// Days customer data collected on this channel is kept (1 to 3650).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3650))]
    pub data_retention_days: Option<i32>,
}

/// Service levels promised on a channel.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLevels {
    /// Seconds within which a customer gets a first response; the `service-level` KPI measures against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub first_response_seconds: Option<i32>,
    /// Hours within which a customer's request is resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 8760))]
    pub resolution_hours: Option<i32>,
}

/// Observed state of a Channel.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of touchpoints that reference this channel.
    #[serde(default)]
    pub touchpoints: i32,
    /// Number of those touchpoints whose collector is ready.
    #[serde(default)]
    pub ready_touchpoints: i32,
    /// CustomerJourneys whose channel selector includes this channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journeys: Vec<String>,
    /// Conditions: Ready (every touchpoint collector ready).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Conditions,
}
