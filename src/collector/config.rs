//! The collector's configuration: what the operator puts into a dedicated collector's pod
//! template (`CX_COLLECTOR_CONFIG`) or a pool's Secret, and `cx-conductor collector` reads.

use serde::{Deserialize, Serialize};

use crate::api::{InteractionSignals, Stage, SurveySignal, ThemeSpec};

/// A declared theme as the collector matches it (see [`crate::themes`]).
pub type ThemeConfig = ThemeSpec;

/// The environment variable holding a dedicated collector's configuration.
pub const CONFIG_ENV: &str = "CX_COLLECTOR_CONFIG";
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
    /// Bearer-token authentication by the token's SHA-256 (64 hex digits): how a pool's
    /// configuration, itself a Secret, carries each touchpoint's token, so that adding or
    /// changing a token restarts no pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_sha256: Option<String>,
    /// Longest accepted `comment`, in bytes; absent: 4096. (Absent rather than 4096 when the
    /// touchpoint keeps the default, so configurations written before comments existed, and
    /// their hashes, do not change.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_comment_bytes: Option<u32>,
    /// Themes counted in comments (`cx_feedback_themes_total{theme}`); empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub themes: Vec<ThemeConfig>,
    /// OTLP/HTTP log export of every accepted event; absent: events are only counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportConfig>,
}

/// Where and how a touchpoint's events are exported as OpenTelemetry log records
/// ([`crate::collector::export`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportConfig {
    /// Base URL of the OTLP/HTTP endpoint (like `OTEL_EXPORTER_OTLP_ENDPOINT`): records are
    /// posted, protobuf-encoded, to `<endpoint>/v1/logs`. `http://` or `https://`.
    pub endpoint: String,
    /// What the 2xx of the collector means: `guaranteed` answers 2xx only once the endpoint
    /// accepted the export request holding the event; `bestEffort` answers at once and exports
    /// from a bounded in-memory queue, with retry.
    #[serde(default)]
    pub delivery: Delivery,
    /// Most events the `bestEffort` queue holds (those being sent included); beyond, new events
    /// are dropped from the export, and counted. Absent: [`DEFAULT_QUEUE_EVENTS`]. Not used by
    /// `guaranteed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_events: Option<u32>,
    /// Longest wait for the endpoint's answer to one export request, in milliseconds.
    #[serde(default = "default_export_timeout_millis")]
    pub timeout_millis: u32,
    /// How long the first event of a group also waits for others before the group is sent, in
    /// milliseconds (group commit; 0: a group holds what waited while export requests were in
    /// flight, and goes when they are answered, or at a free slot once it holds 32 events or
    /// `maxBatchEvents`).
    #[serde(default = "default_linger_millis")]
    pub linger_millis: u32,
    /// Most log records in one export request: a full group is sent at once.
    #[serde(default = "default_max_batch_events")]
    pub max_batch_events: u32,
    /// File holding a bearer token sent as `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// PEM file of the CA certificates that verify an `https` endpoint, instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM file of the client certificate (chain) presented to an `https` endpoint; with
    /// `clientKeyFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    /// PEM file of the client certificate's private key; with `clientCertFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
    /// Directory of headers sent with every export request: each file's name is a header name,
    /// its content the value (a Secret mounted whole; names starting with `.` are skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_dir: Option<String>,
    /// Whether comments are exported (the log record's body); `false` keeps them in the cluster.
    #[serde(default = "yes")]
    pub comments: bool,
    /// File holding the key of the keyed hash (HMAC-SHA256) that pseudonymises `customerId` and
    /// `sessionId`; absent (and `rawIdentifiers` off): those fields are not exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudonym_key_file: Option<String>,
    /// Export `customerId` and `sessionId` as sent instead of pseudonymised.
    #[serde(default)]
    pub raw_identifiers: bool,
}

/// What a collector's 2xx promises about the export of the event.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Delivery {
    /// 2xx only after the endpoint accepted the export request holding the event; 503 with
    /// `Retry-After` when it did not.
    #[default]
    Guaranteed,
    /// 2xx before the export: events wait in a bounded in-memory queue and are retried while the
    /// endpoint is down; those dropped (queue full, refused for good, left at shutdown) are
    /// counted in `cx_export_dropped_events_total{reason}`.
    BestEffort,
}

/// Capacity of a `bestEffort` export queue, in events, when the configuration names none.
pub const DEFAULT_QUEUE_EVENTS: u32 = 10_000;

fn default_export_timeout_millis() -> u32 {
    5000
}

fn default_linger_millis() -> u32 {
    0
}

fn default_max_batch_events() -> u32 {
    512
}

fn yes() -> bool {
    true
}

/// Where the collector reads the bearer token producers must send.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// File holding the token (mounted from the Secret named in the touchpoint).
    pub token_file: String,
}

/// Name of a namespace's collector pool: its Deployment, Service, Secret and autoscaler. Not a
/// possible dedicated collector's name (those are `collector-<touchpoint>`).
pub const POOL_NAME: &str = "cx-collectors";
/// Key of the pool's configuration in its Secret.
pub const POOL_CONFIG_KEY: &str = "collectors.yaml";
/// Path inside a pool's container where its configuration Secret is mounted.
pub const POOL_CONFIG_MOUNT_PATH: &str = "/etc/cx-conductor/pool/collectors.yaml";

/// A collector pool's configuration: every pooled touchpoint of a namespace, served by one
/// process at `/v1/touchpoints/<name>/events`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolConfig {
    /// Namespace of the touchpoints.
    pub namespace: String,
    /// The touchpoints served, each as a dedicated collector would be configured.
    pub touchpoints: Vec<CollectorConfig>,
}

/// What a collector serves: one touchpoint at `/v1/events`, or a pool.
#[derive(Clone, Debug, PartialEq)]
// One value per process (and per pool reload): boxing the larger variant would save nothing.
#[allow(clippy::large_enum_variant)]
pub enum CollectorSetup {
    /// One touchpoint (a dedicated collector).
    Dedicated(CollectorConfig),
    /// Every pooled touchpoint of a namespace.
    Pool(PoolConfig),
}

impl CollectorSetup {
    /// Parses a configuration file: a pool when it lists `touchpoints`, else one touchpoint.
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        let value: serde_yaml::Value = serde_yaml::from_str(text)?;
        if value.get("touchpoints").is_some() {
            serde_yaml::from_value(value).map(CollectorSetup::Pool)
        } else {
            serde_yaml::from_value(value).map(CollectorSetup::Dedicated)
        }
    }

    /// The touchpoints served.
    pub fn touchpoints(&self) -> &[CollectorConfig] {
        match self {
            CollectorSetup::Dedicated(config) => std::slice::from_ref(config),
            CollectorSetup::Pool(pool) => &pool.touchpoints,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration written before comments existed serialises exactly as it did, so the hash
    /// of a pool's Secret does not change on upgrade.
    #[test]
    fn configurations_without_comment_settings_serialise_as_before() {
        let yaml = "namespace: retail\ntouchpoint: web-checkout\nchannel: web\nstage: purchase\n\
                    surveys:\n- metric: nps\nmaxEventBytes: 65536\n";
        let config: CollectorConfig = serde_yaml::from_str(yaml).expect("config");
        assert_eq!(config.max_comment_bytes, None);
        assert!(config.themes.is_empty());
        assert_eq!(serde_yaml::to_string(&config).expect("yaml"), yaml);
        let with = CollectorConfig {
            max_comment_bytes: Some(100),
            themes: vec![ThemeConfig {
                name: "delivery".into(),
                keywords: vec!["corriere".into()],
                exclude: vec![],
            }],
            ..config
        };
        let text = serde_yaml::to_string(&with).expect("yaml");
        assert!(text.contains("maxCommentBytes: 100"), "{text}");
        assert_eq!(
            serde_yaml::from_str::<CollectorConfig>(&text).expect("round trip"),
            with
        );
    }
}
