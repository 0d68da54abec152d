//! The deployment plan: from a Touchpoint (and its Channel) to the exact Kubernetes objects the
//! operator applies for its collector. Deterministic: the same input gives byte-identical output.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, KeyToPath, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecretProjection, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::{Channel, ThemeSpec, Touchpoint};
use crate::collector::config::{
    AuthConfig, COLLECTOR_PORT, CONFIG_ENV, CollectorConfig, DEFAULT_QUEUE_EVENTS, Delivery,
    ExportConfig, HEALTH_PORT, TOKEN_MOUNT_PATH,
};

use super::world::namespace_of;

/// User the collector runs as (non-root, the distroless `nonroot` user).
pub const COLLECTOR_UID: i64 = 65532;
/// Group the collector runs as, and the pod's `fsGroup`: the group its token Secret volume gets.
pub const COLLECTOR_GID: i64 = 65532;

/// Field manager of every object the operator applies.
pub const FIELD_MANAGER: &str = "cx-conductor";
/// Pod-template annotation carrying the configuration hash, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "cx.conductor.dev/config-hash";
/// Label naming the touchpoint on every collector object.
pub const TOUCHPOINT_LABEL: &str = "cx.conductor.dev/touchpoint";
/// Label naming the channel on every collector object.
pub const CHANNEL_LABEL: &str = "cx.conductor.dev/channel";
/// Label naming the stage on every collector object.
pub const STAGE_LABEL: &str = "cx.conductor.dev/stage";
/// Service port producers send events to.
pub const SERVICE_PORT: i32 = 80;

/// Operator-wide settings that shape every plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// The collector image (the operator's own), run by pools and by dedicated collectors that
    /// name none.
    pub default_image: String,
    /// Images a dedicated collector may name besides the default: exact references, or prefixes
    /// ending in `*` (`registry.example/cx/*`). Empty: only the default image.
    pub allowed_images: Vec<String>,
    /// Emit a ServiceMonitor (the Prometheus Operator's CRDs exist).
    pub service_monitor: bool,
    /// Labels on every collector ServiceMonitor, so the platform's Prometheus selects them.
    pub service_monitor_labels: BTreeMap<String, String>,
    /// How often Prometheus scrapes collectors: the ServiceMonitor interval, and what a stopping
    /// collector waits for so that its final counts are scraped.
    pub scrape_interval_seconds: u32,
    /// Emit a NetworkPolicy admitting only event traffic to the collector.
    pub network_policy: bool,
    /// Size and scaling of each namespace's collector pool.
    pub pool: PoolOptions,
    /// OTLP export of every collector's events (chart values `export.*`); `None`: no export.
    pub export: Option<ExportOptions>,
}

/// Where collectors export their events (chart values `export.*`, operator flags `--export-*`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// Base URL of the OTLP/HTTP endpoint, e.g. `http://otel-collector.observability:4318`.
    pub endpoint: String,
    /// Longest wait for the endpoint's answer to one export request, in milliseconds.
    pub timeout_millis: u32,
    /// Secret (in each collector's namespace) and key holding a bearer token for the endpoint.
    pub token_secret: Option<SecretKey>,
    /// Secret (in each collector's namespace) and key holding the pseudonym key of `customerId`
    /// and `sessionId`; absent: those fields are exported only by touchpoints asking for raw ids.
    pub pseudonym_key_secret: Option<SecretKey>,
    /// What a collector's 2xx promises about the export (`guaranteed` or `bestEffort`).
    pub delivery: Delivery,
    /// Capacity of a `bestEffort` queue, in events.
    pub queue_events: u32,
    /// How long the first event of a group waits for others, in milliseconds.
    pub linger_millis: u32,
    /// Most log records in one export request.
    pub max_batch_events: u32,
    /// Secret (in each collector's namespace) and key holding the PEM CA bundle that verifies an
    /// `https` endpoint instead of the system's roots.
    pub ca_secret: Option<SecretKey>,
    /// A `kubernetes.io/tls` Secret (in each collector's namespace): the client certificate
    /// (`tls.crt`) and key (`tls.key`) presented to the endpoint.
    pub client_cert_secret: Option<String>,
    /// A Secret (in each collector's namespace) whose keys are header names and values header
    /// values, sent with every export request.
    pub headers_secret: Option<String>,
}

impl Default for ExportOptions {
    /// No endpoint, and the collector's defaults.
    fn default() -> Self {
        ExportOptions {
            endpoint: String::new(),
            timeout_millis: 5000,
            token_secret: None,
            pseudonym_key_secret: None,
            delivery: Delivery::Guaranteed,
            queue_events: DEFAULT_QUEUE_EVENTS,
            linger_millis: 0,
            max_batch_events: 512,
            ca_secret: None,
            client_cert_secret: None,
            headers_secret: None,
        }
    }
}

/// A key of a Secret.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretKey {
    /// The Secret's name.
    pub name: String,
    /// The key inside it.
    pub key: String,
}

/// Directory where collectors find the export Secrets' keys.
pub const EXPORT_SECRETS_DIR: &str = "/var/run/cx-conductor/export";
/// File of the export bearer token inside [`EXPORT_SECRETS_DIR`].
pub const EXPORT_TOKEN_FILE: &str = "token";
/// File of the pseudonym key inside [`EXPORT_SECRETS_DIR`].
pub const EXPORT_PSEUDONYM_KEY_FILE: &str = "pseudonym-key";
/// File of the CA bundle inside [`EXPORT_SECRETS_DIR`].
pub const EXPORT_CA_FILE: &str = "ca.crt";
/// File of the client certificate inside [`EXPORT_SECRETS_DIR`].
pub const EXPORT_CLIENT_CERT_FILE: &str = "client.crt";
/// File of the client certificate's key inside [`EXPORT_SECRETS_DIR`].
pub const EXPORT_CLIENT_KEY_FILE: &str = "client.key";
/// Directory where collectors find the export headers Secret, one file per header.
pub const EXPORT_HEADERS_DIR: &str = "/var/run/cx-conductor/export-headers";

/// The export section of a touchpoint's collector configuration: `None` when no export is
/// configured or the touchpoint opted out (`spec.export.enabled: false`).
pub fn export_config(touchpoint: &Touchpoint, options: &PlanOptions) -> Option<ExportConfig> {
    let export = options.export.as_ref()?;
    let choices = touchpoint.spec.export.clone().unwrap_or_default();
    if choices.enabled == Some(false) {
        return None;
    }
    Some(ExportConfig {
        endpoint: export.endpoint.clone(),
        delivery: export.delivery,
        // Only a bestEffort queue has a capacity; absent, a guaranteed configuration (and its
        // hash) stays as it was.
        queue_events: (export.delivery == Delivery::BestEffort)
            .then_some(export.queue_events.max(1)),
        timeout_millis: export.timeout_millis.max(1),
        linger_millis: export.linger_millis,
        max_batch_events: export.max_batch_events.max(1),
        token_file: export
            .token_secret
            .as_ref()
            .map(|_| format!("{EXPORT_SECRETS_DIR}/{EXPORT_TOKEN_FILE}")),
        comments: choices.comments != Some(false),
        pseudonym_key_file: export
            .pseudonym_key_secret
            .as_ref()
            .map(|_| format!("{EXPORT_SECRETS_DIR}/{EXPORT_PSEUDONYM_KEY_FILE}")),
        raw_identifiers: choices.raw_identifiers,
        ca_file: export
            .ca_secret
            .as_ref()
            .map(|_| format!("{EXPORT_SECRETS_DIR}/{EXPORT_CA_FILE}")),
        client_cert_file: export
            .client_cert_secret
            .as_ref()
            .map(|_| format!("{EXPORT_SECRETS_DIR}/{EXPORT_CLIENT_CERT_FILE}")),
        client_key_file: export
            .client_cert_secret
            .as_ref()
            .map(|_| format!("{EXPORT_SECRETS_DIR}/{EXPORT_CLIENT_KEY_FILE}")),
        headers_dir: export
            .headers_secret
            .as_ref()
            .map(|_| EXPORT_HEADERS_DIR.to_string()),
    })
}

/// The volumes and mounts that put the export Secrets' keys where [`export_config`] points:
/// one projected volume for the files, one for the headers Secret (mounted whole).
pub(crate) fn export_volume(options: &PlanOptions) -> Vec<(Volume, VolumeMount)> {
    let Some(export) = options.export.as_ref() else {
        return Vec::new();
    };
    let client_cert = export.client_cert_secret.as_ref().map(|name| SecretKey {
        name: name.clone(),
        key: "tls.crt".into(),
    });
    let client_key = export.client_cert_secret.as_ref().map(|name| SecretKey {
        name: name.clone(),
        key: "tls.key".into(),
    });
    let sources: Vec<VolumeProjection> = [
        (&export.token_secret, EXPORT_TOKEN_FILE),
        (&export.pseudonym_key_secret, EXPORT_PSEUDONYM_KEY_FILE),
        (&export.ca_secret, EXPORT_CA_FILE),
        (&client_cert, EXPORT_CLIENT_CERT_FILE),
        (&client_key, EXPORT_CLIENT_KEY_FILE),
    ]
    .into_iter()
    .filter_map(|(secret, path)| {
        let secret = secret.as_ref()?;
        Some(VolumeProjection {
            secret: Some(SecretProjection {
                name: secret.name.clone(),
                items: Some(vec![KeyToPath {
                    key: secret.key.clone(),
                    path: path.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    })
    .collect();
    let mut volumes = Vec::new();
    if let Some(headers) = &export.headers_secret {
        volumes.push((
            Volume {
                name: "export-headers".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(headers.clone()),
                    default_mode: Some(0o440),
                    ..Default::default()
                }),
                ..Default::default()
            },
            VolumeMount {
                name: "export-headers".into(),
                mount_path: EXPORT_HEADERS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ));
    }
    if sources.is_empty() {
        return volumes;
    }
    volumes.insert(
        0,
        (
            Volume {
                name: "export".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(sources),
                    // Owner and group read only; the group is the pod's fsGroup (the collector's).
                    default_mode: Some(0o440),
                    ..Default::default()
                }),
                ..Default::default()
            },
            VolumeMount {
                name: "export".into(),
                mount_path: EXPORT_SECRETS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ),
    );
    volumes
}

/// Size and scaling of a namespace's collector pool (chart values `collectors.pool.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolOptions {
    /// Fewest pool pods (the HorizontalPodAutoscaler's `minReplicas`); above 1 adds a
    /// PodDisruptionBudget.
    pub min_replicas: i32,
    /// Most pool pods.
    pub max_replicas: i32,
    /// Average CPU use, in percent of the request, the autoscaler keeps pods at.
    pub target_cpu_percent: i32,
    /// Requests and limits of a pool pod.
    pub resources: ResourceRequirements,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            min_replicas: 1,
            max_replicas: 10,
            target_cpu_percent: 70,
            resources: ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity("100m".into())),
                    ("memory".to_string(), Quantity("64Mi".into())),
                ])),
                limits: Some(BTreeMap::from([(
                    "memory".to_string(),
                    Quantity("256Mi".into()),
                )])),
                ..Default::default()
            },
        }
    }
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            default_image: format!(
                "ghcr.io/cx-conductor/cx-conductor:{}",
                env!("CARGO_PKG_VERSION")
            ),
            allowed_images: Vec::new(),
            service_monitor: false,
            service_monitor_labels: BTreeMap::new(),
            scrape_interval_seconds: 30,
            network_policy: false,
            pool: PoolOptions::default(),
            export: None,
        }
    }
}

impl PlanOptions {
    /// Why a dedicated collector may not run `image`, if it may not.
    pub fn refuse_image(&self, image: &str) -> Option<String> {
        let allowed = image == self.default_image
            || self
                .allowed_images
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => image.starts_with(prefix),
                    None => image == pattern,
                });
        (!allowed).then(|| {
            let list = if self.allowed_images.is_empty() {
                "none besides the collector image".to_string()
            } else {
                self.allowed_images.join(", ")
            };
            format!(
                "spec.collector.image: {image} is not an allowed collector image (the platform \
                 team allows {}; allowed: {list})",
                self.default_image
            )
        })
    }
}

/// The objects of one touchpoint's dedicated collector. Its NetworkPolicy and ServiceMonitor
/// are its namespace's, shared by every collector there ([`crate::core::pool::plan_shared`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorPlan {
    /// The collector pods, their configuration in the pod template.
    pub deployment: Deployment,
    /// Where producers send events.
    pub service: Service,
    /// Keeps one collector up during node drains (replicas > 1).
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
    /// The configuration (JSON), as the pods get it.
    pub config: String,
    /// Hash of the configuration, also on the pod template.
    pub config_hash: String,
    /// In-cluster URL producers POST single events to.
    pub endpoint: String,
}

impl CollectorPlan {
    /// Every object as JSON, in apply order.
    pub fn objects(&self) -> Vec<Value> {
        objects_in_order(
            [
                serde_json::to_value(&self.service),
                serde_json::to_value(&self.deployment),
            ],
            self.pod_disruption_budget.as_ref(),
            None,
            None,
        )
    }
}

/// `required` objects, then the optional ones that are planned, as JSON: the apply order of
/// every collector (dedicated or pool).
pub(crate) fn objects_in_order<const N: usize>(
    required: [serde_json::Result<Value>; N],
    pod_disruption_budget: Option<&PodDisruptionBudget>,
    network_policy: Option<&NetworkPolicy>,
    service_monitor: Option<&Value>,
) -> Vec<Value> {
    let mut out: Vec<Value> = required.into_iter().filter_map(Result::ok).collect();
    out.extend(pod_disruption_budget.and_then(|pdb| serde_json::to_value(pdb).ok()));
    out.extend(network_policy.and_then(|np| serde_json::to_value(np).ok()));
    out.extend(service_monitor.cloned());
    out
}

/// Name of every object of a touchpoint's collector. Touchpoint names are at most 53 characters
/// (a CRD rule), so this is a valid Service name of at most 63.
pub fn collector_name(touchpoint: &str) -> String {
    format!("collector-{touchpoint}")
}

/// The collector configuration of a touchpoint: what its dedicated collector's pods get.
pub fn collector_config(touchpoint: &Touchpoint, channel: Option<&Channel>) -> CollectorConfig {
    let spec = &touchpoint.spec;
    CollectorConfig {
        namespace: namespace_of(touchpoint).to_string(),
        touchpoint: touchpoint.name_any(),
        channel: spec.channel.clone(),
        stage: spec.stage,
        surveys: spec.signals.surveys.clone(),
        interactions: spec.signals.interactions.clone(),
        max_event_bytes: spec.collector.max_event_bytes.max(0) as u64,
        first_response_seconds: channel
            .and_then(|c| c.spec.service_levels.as_ref())
            .and_then(|l| l.first_response_seconds)
            .and_then(|s| u32::try_from(s).ok()),
        auth: spec.collector.auth.as_ref().map(|_| AuthConfig {
            token_file: TOKEN_MOUNT_PATH.into(),
        }),
        auth_token_sha256: None,
        // The default is left out, so configurations (and hashes) without comments are unchanged.
        max_comment_bytes: u32::try_from(spec.collector.max_comment_bytes)
            .ok()
            .filter(|b| i64::from(*b) != crate::api::DEFAULT_MAX_COMMENT_BYTES),
        // The journeys' themes are added by the planners (`plan_collector`, `pool_config`).
        themes: Vec::new(),
        // Export is set by the planners from the operator's settings.
        export: None,
    }
}

/// Labels on every object of a touchpoint's collector.
pub fn collector_labels(touchpoint: &Touchpoint) -> BTreeMap<String, String> {
    let mut labels = selector_labels(touchpoint);
    labels.insert("app.kubernetes.io/component".into(), "collector".into());
    labels.insert("app.kubernetes.io/part-of".into(), "cx-conductor".into());
    labels.insert("app.kubernetes.io/managed-by".into(), "cx-conductor".into());
    labels.insert(
        "app.kubernetes.io/version".into(),
        env!("CARGO_PKG_VERSION").into(),
    );
    labels.insert(TOUCHPOINT_LABEL.into(), touchpoint.name_any());
    labels.insert(CHANNEL_LABEL.into(), touchpoint.spec.channel.clone());
    labels.insert(STAGE_LABEL.into(), touchpoint.spec.stage.as_str().into());
    labels
}

/// The labels that select a touchpoint's collector pods (stable across upgrades).
pub fn selector_labels(touchpoint: &Touchpoint) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "cx-collector".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            collector_name(&touchpoint.name_any()),
        ),
    ])
}

/// The controller owner reference to the touchpoint, when it has a uid (it does in a cluster;
/// offline manifests do not), so deleting the touchpoint garbage-collects its collector.
fn owner_references(touchpoint: &Touchpoint) -> Option<Vec<OwnerReference>> {
    touchpoint.controller_owner_ref(&()).map(|r| vec![r])
}

/// Plans every object of a touchpoint's collector; `themes` are the ones its journeys declare
/// ([`crate::core::listening::themes_of`]).
pub fn plan_collector(
    touchpoint: &Touchpoint,
    channel: Option<&Channel>,
    themes: &[ThemeSpec],
    options: &PlanOptions,
) -> CollectorPlan {
    let name = collector_name(&touchpoint.name_any());
    let namespace = namespace_of(touchpoint).to_string();
    let labels = collector_labels(touchpoint);
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        owner_references: owner_references(touchpoint),
        ..Default::default()
    };
    let mut config = collector_config(touchpoint, channel);
    config.themes = themes.to_vec();
    config.export = export_config(touchpoint, options);
    // JSON is YAML too, and an order of magnitude faster to write than serde_yaml.
    // Compact: it travels in the pod template.
    let config_json = serde_json::to_string(&config).unwrap_or_default();
    let config_hash = hash(&config_json);

    let service = collector_service(&meta, selector_labels(touchpoint));

    let deployment = plan_deployment(touchpoint, &meta, &config_json, &config_hash, options);
    let replicas = touchpoint.spec.collector.dedicated_replicas();
    let pod_disruption_budget =
        (replicas > 1).then(|| disruption_budget(&meta, selector_labels(touchpoint)));
    CollectorPlan {
        endpoint: format!("http://{name}.{namespace}.svc:{SERVICE_PORT}/v1/events"),
        deployment,
        service,
        pod_disruption_budget,
        config: config_json,
        config_hash,
    }
}

/// A dedicated collector's Deployment. Its configuration is an environment variable of the pod
/// template rather than a ConfigMap: one object less per touchpoint, and the pods of each
/// rollout carry their own configuration (a pod restarted mid-rollout never reads the next one).
fn plan_deployment(
    touchpoint: &Touchpoint,
    meta: &ObjectMeta,
    config: &str,
    config_hash: &str,
    options: &PlanOptions,
) -> Deployment {
    let spec = &touchpoint.spec.collector;
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some(auth) = &spec.auth {
        let (dir, file) = TOKEN_MOUNT_PATH
            .rsplit_once('/')
            .unwrap_or(("/var/run/cx-conductor", "token"));
        volumes.push(Volume {
            name: "token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(auth.secret_ref.name.clone()),
                items: Some(vec![KeyToPath {
                    key: auth.secret_ref.key.clone(),
                    path: file.into(),
                    ..Default::default()
                }]),
                // Owner and group read only; the group is the pod's fsGroup (the collector's).
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "token".into(),
            mount_path: dir.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if export_config(touchpoint, options).is_some() {
        for (volume, mount) in export_volume(options) {
            volumes.push(volume);
            mounts.push(mount);
        }
    }
    collector_deployment(
        meta,
        CollectorPods {
            selector: selector_labels(touchpoint),
            replicas: Some(spec.dedicated_replicas()),
            image: spec
                .image
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| options.default_image.clone()),
            config_path: None,
            env: vec![EnvVar {
                name: CONFIG_ENV.into(),
                value: Some(config.into()),
                ..Default::default()
            }],
            resources: spec.resources.clone().unwrap_or_else(default_resources),
            volumes,
            mounts,
            // A configuration change rolls a dedicated collector's pods.
            annotations: BTreeMap::from([(
                CONFIG_HASH_ANNOTATION.to_string(),
                config_hash.to_string(),
            )]),
        },
        options,
    )
}

/// What tells a dedicated collector's pods from a pool's.
pub(crate) struct CollectorPods<'a> {
    /// Labels selecting the pods.
    pub(crate) selector: BTreeMap<String, String>,
    /// `None`: left to an autoscaler.
    pub(crate) replicas: Option<i32>,
    pub(crate) image: String,
    /// Where the configuration is mounted (a pool's); `None`: it is in `env`.
    pub(crate) config_path: Option<&'a str>,
    /// Environment variables of the collector container.
    pub(crate) env: Vec<EnvVar>,
    pub(crate) resources: ResourceRequirements,
    pub(crate) volumes: Vec<Volume>,
    pub(crate) mounts: Vec<VolumeMount>,
    /// Pod-template annotations besides the scrape ones.
    pub(crate) annotations: BTreeMap<String, String>,
}

/// A collector Deployment: restricted pods probed on their health port, rolled one at a time
/// without dropping below the desired count, given the time to stop without losing a count.
pub(crate) fn collector_deployment(
    meta: &ObjectMeta,
    pods: CollectorPods<'_>,
    options: &PlanOptions,
) -> Deployment {
    let container = Container {
        name: "collector".into(),
        image: Some(pods.image),
        args: Some(options.collector_args(pods.config_path)),
        env: (!pods.env.is_empty()).then_some(pods.env),
        ports: Some(collector_ports()),
        readiness_probe: Some(collector_probe("/readyz", 5)),
        liveness_probe: Some(collector_probe("/healthz", 10)),
        resources: Some(pods.resources),
        security_context: Some(container_security_context()),
        volume_mounts: (!pods.mounts.is_empty()).then_some(pods.mounts),
        ..Default::default()
    };
    let mut pod_labels = meta.labels.clone().unwrap_or_default();
    pod_labels.extend(pods.selector.clone());
    let mut annotations = pods.annotations;
    annotations.insert("prometheus.io/scrape".into(), "true".into());
    annotations.insert("prometheus.io/port".into(), HEALTH_PORT.to_string());
    Deployment {
        metadata: meta.clone(),
        spec: DeploymentSpec {
            replicas: pods.replicas,
            selector: LabelSelector {
                match_labels: Some(pods.selector),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(options.termination_grace_seconds()),
                    security_context: Some(pod_security_context()),
                    containers: vec![container],
                    volumes: (!pods.volumes.is_empty()).then_some(pods.volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The Service producers send events to.
pub(crate) fn collector_service(meta: &ObjectMeta, selector: BTreeMap<String, String>) -> Service {
    Service {
        metadata: meta.clone(),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".into()),
                    port: SERVICE_PORT,
                    target_port: Some(IntOrString::String("http".into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
                ServicePort {
                    name: Some("metrics".into()),
                    port: i32::from(HEALTH_PORT),
                    target_port: Some(IntOrString::String("health".into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Keeps one collector pod up during node drains.
pub(crate) fn disruption_budget(
    meta: &ObjectMeta,
    selector: BTreeMap<String, String>,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta.clone(),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Admits only event and scrape traffic; egress only where the collectors export to (a
/// collector opens no other connection).
pub(crate) fn collector_network_policy(
    meta: &ObjectMeta,
    selector: BTreeMap<String, String>,
    options: &PlanOptions,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta.clone(),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(
                    [COLLECTOR_PORT, HEALTH_PORT]
                        .into_iter()
                        .map(|port| NetworkPolicyPort {
                            port: Some(IntOrString::Int(i32::from(port))),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }]),
            egress: Some(
                options
                    .export
                    .as_ref()
                    .map(|export| export_egress(&export.endpoint))
                    .unwrap_or_default(),
            ),
        }),
    }
}

/// What collectors exporting to `endpoint` may open: its port (any address: the endpoint is a
/// Service or a name outside the cluster), and DNS to resolve it.
pub fn export_egress(endpoint: &str) -> Vec<NetworkPolicyEgressRule> {
    let port = endpoint
        .parse::<http::Uri>()
        .ok()
        .and_then(|uri| {
            uri.port_u16().or(match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            })
        })
        .unwrap_or(4318);
    let rule = |ports: &[(u16, &str)]| NetworkPolicyEgressRule {
        ports: Some(
            ports
                .iter()
                .map(|(port, protocol)| NetworkPolicyPort {
                    port: Some(IntOrString::Int(i32::from(*port))),
                    protocol: Some((*protocol).into()),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    };
    vec![rule(&[(port, "TCP")]), rule(&[(53, "UDP"), (53, "TCP")])]
}

/// Tells the Prometheus Operator to scrape the collector, with the labels the platform's
/// Prometheus selects ServiceMonitors on (kube-prometheus-stack: `release`).
pub(crate) fn collector_service_monitor(
    meta: &ObjectMeta,
    selector: BTreeMap<String, String>,
    options: &PlanOptions,
) -> Value {
    let mut meta = meta.clone();
    let mut labels = meta.labels.take().unwrap_or_default();
    labels.extend(options.service_monitor_labels.clone());
    meta.labels = Some(labels);
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": serde_json::to_value(&meta).unwrap_or(Value::Null),
        "spec": {
            "selector": {"matchLabels": selector},
            "namespaceSelector": {"matchNames": [meta.namespace.clone().unwrap_or_default()]},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": format!("{}s", options.scrape_interval_seconds)}]
        }
    })
}

/// Seconds a stopping collector keeps accepting events while its endpoints drop it.
pub const SHUTDOWN_DELAY_SECONDS: u32 = 5;
/// Seconds in-flight requests get to finish once new events are refused.
pub const GRACE_PERIOD_SECONDS: u32 = 20;

impl PlanOptions {
    /// Seconds a stopping collector keeps serving `/metrics` after its last event: two scrape
    /// intervals and a margin, so Prometheus scrapes the final counts (no acknowledged event is
    /// lost on a rollout or scale-down).
    pub fn final_scrape_seconds(&self) -> u32 {
        2 * self.scrape_interval_seconds + 5
    }

    /// The pod's `terminationGracePeriodSeconds`: the whole shutdown sequence and a margin.
    pub fn termination_grace_seconds(&self) -> i64 {
        i64::from(SHUTDOWN_DELAY_SECONDS + GRACE_PERIOD_SECONDS + self.final_scrape_seconds() + 10)
    }

    /// The collector's arguments, with the configuration file at `config` (a pool's; a
    /// dedicated collector's configuration is in its environment).
    pub fn collector_args(&self, config: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = vec!["collector".into()];
        if let Some(config) = config {
            args.extend(["--config".into(), config.into()]);
        }
        args.extend([
            "--listen".into(),
            format!("0.0.0.0:{COLLECTOR_PORT}"),
            "--health-listen".into(),
            format!("0.0.0.0:{HEALTH_PORT}"),
            "--shutdown-delay-seconds".into(),
            SHUTDOWN_DELAY_SECONDS.to_string(),
            "--grace-period-seconds".into(),
            GRACE_PERIOD_SECONDS.to_string(),
            "--final-scrape-seconds".into(),
            self.final_scrape_seconds().to_string(),
        ]);
        args
    }
}

/// The collector container's ports: events, and health and metrics on their own listener.
pub(crate) fn collector_ports() -> Vec<ContainerPort> {
    [("http", COLLECTOR_PORT), ("health", HEALTH_PORT)]
        .into_iter()
        .map(|(name, port)| ContainerPort {
            name: Some(name.into()),
            container_port: i32::from(port),
            protocol: Some("TCP".into()),
            ..Default::default()
        })
        .collect()
}

/// An HTTP probe on the health port (its own connection budget: floods cannot starve it).
pub(crate) fn collector_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("health".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// The collector container's security context: restricted Pod Security Standard.
pub(crate) fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The collector pod's security context.
pub(crate) fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(COLLECTOR_UID),
        run_as_group: Some(COLLECTOR_GID),
        // The kubelet writes Secret volumes root-owned, mode 0440; with fsGroup it gives the
        // volume this group, the collector's, so the collector can read it (without it:
        // permission denied at start, a crash loop).
        fs_group: Some(COLLECTOR_GID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Requests and limits of a collector when the touchpoint sets none: sized from the collector's
/// measured footprint (well under 50 MiB under load).
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("50m".into())),
            ("memory".to_string(), Quantity("32Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("128Mi".into()),
        )])),
        ..Default::default()
    }
}

/// First 16 hex digits of the SHA-256 of `text`.
pub fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
