//! The collector pool of a namespace: one autoscaled Deployment serving every pooled touchpoint
//! there, at `/v1/touchpoints/<name>/events`. Pure: from the touchpoints (with their channels and
//! token digests) to the exact objects, so `check --plan` shows what the operator applies.
//!
//! The pool's configuration is a Secret (it carries the SHA-256 of each touchpoint's token) that
//! the running pods re-read: adding, changing or removing a touchpoint restarts no pod. The pod
//! template carries no configuration hash for that reason, and no `replicas`: the
//! HorizontalPodAutoscaler owns the count.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    KeyToPath, Secret, SecretVolumeSource, Service, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde_json::Value;

use crate::api::{Channel, Touchpoint};
use crate::collector::config::{POOL_CONFIG_KEY, POOL_CONFIG_MOUNT_PATH, POOL_NAME, PoolConfig};
use crate::collector::event::EventSchema;

use super::plan::{
    CollectorPods, PlanOptions, SERVICE_PORT, collector_config, collector_deployment,
    collector_network_policy, collector_service, collector_service_monitor, disruption_budget,
    export_config, export_volume, hash, objects_in_order,
};

/// Label value of `app.kubernetes.io/component` on a pool's objects.
pub const POOL_COMPONENT: &str = "collector-pool";
/// Annotation on the pool Secret with the hash of the configuration it holds.
pub const POOL_CONFIG_HASH_ANNOTATION: &str = "cx.conductor.dev/pool-config-hash";

/// A pooled touchpoint with what its entry needs.
#[derive(Clone, Copy, Debug)]
pub struct PoolMember<'a> {
    /// The touchpoint.
    pub touchpoint: &'a Touchpoint,
    /// Its channel (for the first-response bucket).
    pub channel: Option<&'a Channel>,
    /// SHA-256 (hex) of its bearer token, when it asks for authentication.
    pub token_sha256: Option<&'a str>,
    /// The themes its journeys declare ([`crate::core::listening::themes_of`]).
    pub themes: &'a [crate::api::ThemeSpec],
}

/// The objects of a namespace's collector pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolPlan {
    /// The pool's configuration (every member's entry).
    pub secret: Secret,
    /// The pool pods; `replicas` left to the autoscaler.
    pub deployment: Deployment,
    /// Where producers send events.
    pub service: Service,
    /// Scales the pool on CPU between the chart's bounds.
    pub autoscaler: HorizontalPodAutoscaler,
    /// Keeps one pod up during node drains (when the pool has at least 2 pods).
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
    /// Hash of the configuration.
    pub config_hash: String,
    /// The touchpoints served, by name.
    pub members: Vec<String>,
}

impl PoolPlan {
    /// Every object as JSON, in apply order (configuration before the pods that read it).
    pub fn objects(&self) -> Vec<Value> {
        objects_in_order(
            [
                serde_json::to_value(&self.secret),
                serde_json::to_value(&self.service),
                serde_json::to_value(&self.deployment),
                serde_json::to_value(&self.autoscaler),
            ],
            self.pod_disruption_budget.as_ref(),
            None,
            None,
        )
    }
}

/// What every collector of a namespace shares, pooled and dedicated alike: one NetworkPolicy
/// and one ServiceMonitor, named like the pool, selecting the pods and Services of every
/// collector there. A dedicated collector so costs no objects of its own for them (it cost two
/// writes per touchpoint when each had its own).
#[derive(Debug, Clone, PartialEq)]
pub struct SharedPlan {
    /// Admits only event and scrape traffic to every collector (when enabled).
    pub network_policy: Option<NetworkPolicy>,
    /// Tells the Prometheus Operator to scrape every collector (when enabled).
    pub service_monitor: Option<Value>,
}

impl SharedPlan {
    /// Every object as JSON, in apply order.
    pub fn objects(&self) -> Vec<Value> {
        objects_in_order::<0>(
            [],
            None,
            self.network_policy.as_ref(),
            self.service_monitor.as_ref(),
        )
    }
}

/// The labels that select every collector's pods and Services in a namespace.
pub fn shared_selector_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "cx-collector".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "cx-conductor".to_string(),
        ),
    ])
}

/// Plans what the collectors of `namespace` share; `None` when it has none, or when neither
/// NetworkPolicies nor ServiceMonitors are on. Owned by every touchpoint with a collector (none
/// a controller), in name order: the garbage collector removes them with the last one.
pub fn plan_shared(
    namespace: &str,
    collectors: &[&Touchpoint],
    options: &PlanOptions,
) -> Option<SharedPlan> {
    if collectors.is_empty() || !(options.network_policy || options.service_monitor) {
        return None;
    }
    let mut owners: Vec<OwnerReference> = collectors
        .iter()
        .filter_map(|t| {
            let mut owner = t.controller_owner_ref(&())?;
            owner.controller = None;
            owner.block_owner_deletion = None;
            Some(owner)
        })
        .collect();
    owners.sort_by(|a, b| a.name.cmp(&b.name));
    owners.dedup_by(|a, b| a.uid == b.uid);
    let mut labels = shared_selector_labels();
    labels.insert("app.kubernetes.io/instance".into(), POOL_NAME.into());
    labels.insert("app.kubernetes.io/component".into(), "collectors".into());
    labels.insert("app.kubernetes.io/part-of".into(), "cx-conductor".into());
    labels.insert(
        "app.kubernetes.io/version".into(),
        env!("CARGO_PKG_VERSION").into(),
    );
    let meta = ObjectMeta {
        name: Some(POOL_NAME.into()),
        namespace: Some(namespace.into()),
        labels: Some(labels),
        owner_references: (!owners.is_empty()).then_some(owners),
        ..Default::default()
    };
    Some(SharedPlan {
        network_policy: options
            .network_policy
            .then(|| collector_network_policy(&meta, shared_selector_labels(), options)),
        service_monitor: options
            .service_monitor
            .then(|| collector_service_monitor(&meta, shared_selector_labels(), options)),
    })
}

/// Where producers POST a pooled touchpoint's events.
pub fn pool_endpoint(namespace: &str, touchpoint: &str) -> String {
    format!("http://{POOL_NAME}.{namespace}.svc:{SERVICE_PORT}/v1/touchpoints/{touchpoint}/events")
}

/// The labels that select a pool's pods.
pub fn pool_selector_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "cx-collector".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), POOL_NAME.into()),
    ])
}

fn pool_labels() -> BTreeMap<String, String> {
    let mut labels = pool_selector_labels();
    labels.insert("app.kubernetes.io/component".into(), POOL_COMPONENT.into());
    labels.insert("app.kubernetes.io/part-of".into(), "cx-conductor".into());
    labels.insert("app.kubernetes.io/managed-by".into(), "cx-conductor".into());
    labels.insert(
        "app.kubernetes.io/version".into(),
        env!("CARGO_PKG_VERSION").into(),
    );
    labels
}

/// Owner references to every member (none a controller): the garbage collector deletes the
/// pool when its last touchpoint is deleted, and drops a deleted member's reference (an update
/// the operator sees, which replans the pool without it).
fn owner_references(members: &[PoolMember<'_>]) -> Option<Vec<OwnerReference>> {
    let refs: Vec<OwnerReference> = members
        .iter()
        .filter_map(|m| {
            let mut owner = m.touchpoint.controller_owner_ref(&())?;
            owner.controller = None;
            owner.block_owner_deletion = None;
            Some(owner)
        })
        .collect();
    (!refs.is_empty()).then_some(refs)
}

/// The pool's configuration: one entry per member, sorted by name.
pub fn pool_config(
    namespace: &str,
    members: &[PoolMember<'_>],
    options: &PlanOptions,
) -> PoolConfig {
    let mut touchpoints: Vec<_> = members
        .iter()
        .map(|m| {
            let mut entry = collector_config(m.touchpoint, m.channel);
            entry.auth = None;
            entry.auth_token_sha256 = m.token_sha256.map(str::to_string);
            entry.themes = m.themes.to_vec();
            entry.export = export_config(m.touchpoint, options);
            entry
        })
        .collect();
    touchpoints.sort_by(|a, b| a.touchpoint.cmp(&b.touchpoint));
    PoolConfig {
        namespace: namespace.to_string(),
        touchpoints,
    }
}

/// Plans the pool of `namespace`; `None` when no touchpoint there is pooled. Canonical: the
/// members are taken in name order whatever order the caller's cache gave them, so a fresh
/// process plans byte-identical objects (owner references included) and applies nothing.
pub fn plan_pool(
    namespace: &str,
    members: &[PoolMember<'_>],
    options: &PlanOptions,
) -> Option<PoolPlan> {
    if members.is_empty() {
        return None;
    }
    let mut sorted = members.to_vec();
    sorted.sort_by_key(|m| m.touchpoint.name_any());
    let members = sorted.as_slice();
    let meta = ObjectMeta {
        name: Some(POOL_NAME.into()),
        namespace: Some(namespace.into()),
        labels: Some(pool_labels()),
        owner_references: owner_references(members),
        ..Default::default()
    };
    let config = pool_config(namespace, members, options);
    let config_yaml = serde_json::to_string_pretty(&config).unwrap_or_default();
    let config_hash = hash(&config_yaml);
    let mut secret_meta = meta.clone();
    secret_meta.annotations = Some(BTreeMap::from([(
        POOL_CONFIG_HASH_ANNOTATION.to_string(),
        config_hash.clone(),
    )]));
    let secret = Secret {
        metadata: secret_meta,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            POOL_CONFIG_KEY.to_string(),
            ByteString(config_yaml.into_bytes()),
        )])),
        ..Default::default()
    };
    let selector = pool_selector_labels();
    let autoscaler = HorizontalPodAutoscaler {
        metadata: meta.clone(),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: POOL_NAME.into(),
            },
            min_replicas: Some(options.pool.min_replicas.max(1)),
            max_replicas: options
                .pool
                .max_replicas
                .max(options.pool.min_replicas.max(1)),
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(options.pool.target_cpu_percent),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    };
    let members_sorted: Vec<String> = members.iter().map(|m| m.touchpoint.name_any()).collect();
    Some(PoolPlan {
        secret,
        deployment: pool_deployment(&meta, options),
        service: collector_service(&meta, selector.clone()),
        autoscaler,
        pod_disruption_budget: (options.pool.min_replicas > 1)
            .then(|| disruption_budget(&meta, selector)),
        config_hash,
        members: members_sorted,
    })
}

fn pool_deployment(meta: &ObjectMeta, options: &PlanOptions) -> Deployment {
    let (dir, file) = POOL_CONFIG_MOUNT_PATH
        .rsplit_once('/')
        .unwrap_or(("/etc/cx-conductor/pool", POOL_CONFIG_KEY));
    // The export Secrets are mounted whenever an export is configured: the members may change
    // without a rollout.
    let export = export_volume(options);
    let mounts = [VolumeMount {
        name: "config".into(),
        mount_path: dir.into(),
        read_only: Some(true),
        ..Default::default()
    }]
    .into_iter()
    .chain(export.iter().map(|(_, mount)| mount.clone()))
    .collect();
    collector_deployment(
        meta,
        CollectorPods {
            selector: pool_selector_labels(),
            // The HorizontalPodAutoscaler owns `replicas`.
            replicas: None,
            image: options.default_image.clone(),
            config_path: Some(POOL_CONFIG_MOUNT_PATH),
            env: Vec::new(),
            resources: options.pool.resources.clone(),
            volumes: [Volume {
                name: "config".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(POOL_NAME.into()),
                    items: Some(vec![KeyToPath {
                        key: POOL_CONFIG_KEY.into(),
                        path: file.into(),
                        ..Default::default()
                    }]),
                    default_mode: Some(0o440),
                    ..Default::default()
                }),
                ..Default::default()
            }]
            .into_iter()
            .chain(export.iter().map(|(volume, _)| volume.clone()))
            .collect(),
            mounts,
            // No configuration hash: the pods re-read their configuration instead of rolling.
            annotations: BTreeMap::new(),
        },
        options,
    )
}

/// Label a Secret must carry for a touchpoint to use it for collector auth: the platform team
/// marks which Secrets Touchpoint authors may point collectors at.
pub const COLLECTOR_AUTH_LABEL: &str = "cx.conductor.dev/collector-auth";

/// Why a touchpoint's collector is not deployed as asked: a condition reason and a message
/// naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Condition reason, e.g. `ImageNotAllowed`.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Checks a dedicated collector's image against the chart's image and `allowedImages`: the part
/// of [`admit`] that needs no Secret, so `check` applies it offline too.
pub fn admit_image(touchpoint: &Touchpoint, options: &PlanOptions) -> Result<(), Refusal> {
    let spec = &touchpoint.spec.collector;
    match spec.image.as_deref().filter(|i| !i.is_empty()) {
        Some(image) if spec.is_dedicated() => match options.refuse_image(image) {
            Some(message) => Err(Refusal {
                reason: "ImageNotAllowed",
                message,
            }),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Checks what a Touchpoint author may ask of the operator: a dedicated collector's image is
/// allowed, and the auth Secret is marked for collector auth and holds the key. `marked_secret`
/// is the Secret named in `spec.collector.auth` when it carries [`COLLECTOR_AUTH_LABEL`]=true
/// (the operator caches only those). Returns the SHA-256 (hex) of the token, when there is one.
pub fn admit(
    touchpoint: &Touchpoint,
    marked_secret: Option<&Secret>,
    options: &PlanOptions,
) -> Result<Option<String>, Refusal> {
    let spec = &touchpoint.spec.collector;
    admit_image(touchpoint, options)?;
    // What the collector would refuse to load is never written into a pool's configuration
    // (one bad entry would stop the whole pool from reloading).
    if let Err(invalid) = EventSchema::from_config(&collector_config(touchpoint, None)) {
        return Err(Refusal {
            reason: "InvalidCollectorConfig",
            message: format!("the collector cannot serve this touchpoint: {invalid}"),
        });
    }
    let Some(auth) = &spec.auth else {
        return Ok(None);
    };
    let secret_ref = &auth.secret_ref;
    let Some(secret) = marked_secret else {
        return Err(Refusal {
            reason: "AuthSecretNotUsable",
            message: format!(
                "spec.collector.auth.secretRef: Secret {} is missing or not marked for collector \
                 auth: the platform team marks such Secrets with the label {COLLECTOR_AUTH_LABEL}=true",
                secret_ref.name
            ),
        });
    };
    let token = secret
        .data
        .as_ref()
        .and_then(|data| data.get(&secret_ref.key))
        .map(|bytes| bytes.0.trim_ascii())
        .filter(|token| !token.is_empty());
    match token {
        Some(token) => Ok(Some(hex_sha256(token))),
        None => Err(Refusal {
            reason: "AuthSecretNotUsable",
            message: format!(
                "spec.collector.auth.secretRef: Secret {} has no non-empty key {}",
                secret_ref.name, secret_ref.key
            ),
        }),
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `secret` is marked for collector auth.
pub fn is_marked_for_auth(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(COLLECTOR_AUTH_LABEL))
        .is_some_and(|v| v == "true")
}
