//! The collector's configuration: what the operator writes into the touchpoint's ConfigMap
//! (`collector.yaml`) and `cx-conductor collector --config FILE` reads.

use serde::{Deserialize, Serialize};

use crate::api::{InteractionSignals, Stage, SurveySignal};

/// Path inside the collector container where the ConfigMap is mounted.
pub const CONFIG_MOUNT_PATH: &str = "/etc/cx-conductor/collector.yaml";
/// Key of the configuration in the ConfigMap.
pub const CONFIG_KEY: &str = "collector.yaml";
/// Path inside the collector container where the auth token Secret key is mounted.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/cx-conductor/token";
/// Port the collector listens on inside its pod.
pub const COLLECTOR_PORT: u16 = 8080;
/// Port of the collector's health listener (`/healthz`, `/readyz`, `/metrics`) inside its pod:
/// probes there never queue behind event connections.
pub const HEALTH_PORT: u16 = 8081;

/// Everything a collector needs to know about its touchpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CollectorConfig {
    /// Namespace of the touchpoint (a label on every series).
    pub namespace: String,
    /// Name of the touchpoint (a label on every series).
    pub touchpoint: String,
    /// Channel of the touchpoint (a label on every series).
    pub channel: String,
    /// Journey stage of the touchpoint (a label on every series).
    pub stage: Stage,
    /// Survey questions accepted; answers to any other metric are refused.
    #[serde(default)]
    pub surveys: Vec<SurveySignal>,
    /// Interaction outcomes and timings accepted; absent: interactions are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactions: Option<InteractionSignals>,
    /// Largest accepted request body for a single event, in bytes.
    pub max_event_bytes: u64,
    /// The channel's promised first-response time, added as a histogram bucket boundary so the
    /// service-level KPI is exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_response_seconds: Option<u32>,
    /// Bearer-token authentication; absent: events are accepted without a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
}

/// Where the collector reads the bearer token producers must send.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// File holding the token (mounted from the Secret named in the touchpoint).
    pub token_file: String,
}
