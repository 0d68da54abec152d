//! What every controller shares: the client, the caches of every kind, options and metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};

use crate::api::{Channel, CustomerJourney, ExperienceKPI, Touchpoint};
use crate::core::plan::PlanOptions;
use crate::core::pool::PoolPlan;
use crate::kpi::PrometheusClient;

use super::metrics::Metrics;
use super::touchpoint::{ExportHealth, export_health, export_health_queries};
use crate::kpi::prometheus::QueryResult;

/// Caches of every kind the controllers read, fed by one shared watch per kind.
#[derive(Clone)]
pub struct Stores {
    /// Channels (an object that fails to parse is held as an error, never dropped silently).
    pub channels: Store<DeserializeGuard<Channel>>,
    /// Touchpoints.
    pub touchpoints: Store<DeserializeGuard<Touchpoint>>,
    /// Experience KPIs.
    pub kpis: Store<DeserializeGuard<ExperienceKPI>>,
    /// Customer journeys.
    pub journeys: Store<DeserializeGuard<CustomerJourney>>,
    /// Collector Deployments (selected by label).
    pub deployments: Store<Deployment>,
    /// Collector ConfigMaps.
    pub config_maps: Store<ConfigMap>,
    /// Collector Services.
    pub services: Store<Service>,
    /// Collector PodDisruptionBudgets.
    pub pdbs: Store<PodDisruptionBudget>,
    /// Collector NetworkPolicies.
    pub network_policies: Store<NetworkPolicy>,
    /// Collector pools' autoscalers.
    pub autoscalers: Store<HorizontalPodAutoscaler>,
    /// Collector pools' configuration Secrets.
    pub pool_secrets: Store<Secret>,
    /// Secrets marked for collector auth (`cx.conductor.dev/collector-auth=true`), the only
    /// ones a touchpoint may name.
    pub auth_secrets: Store<Secret>,
}

/// The valid objects of `store` in `namespace`, cloned. Filtering before cloning keeps a
/// reconcile of one namespace from copying every other namespace's objects (with 1,000
/// touchpoints, copying them all in each channel reconcile was most of the operator's CPU).
pub fn valid_in<K>(store: &Store<DeserializeGuard<K>>, namespace: &str) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone,
    DeserializeGuard<K>: Resource<DynamicType = ()> + Clone,
{
    valid_where(store, |g| {
        g.meta().namespace.as_deref().unwrap_or("default") == namespace
    })
}

/// Valid objects of a guarded store (invalid ones are reported by their own reconcile).
pub fn valid<K>(store: &Store<DeserializeGuard<K>>) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone,
    DeserializeGuard<K>: Resource<DynamicType = ()> + Clone,
{
    valid_where(store, |_| true)
}

/// The valid objects `keep` selects, cloned after selecting, in (namespace, name) order: never in
/// cache order, which differs from process to process, so whatever is derived from them is the
/// same after a restart.
fn valid_where<K>(
    store: &Store<DeserializeGuard<K>>,
    keep: impl Fn(&DeserializeGuard<K>) -> bool,
) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone,
    DeserializeGuard<K>: Resource<DynamicType = ()> + Clone,
{
    let mut valid: Vec<K> = store
        .state()
        .iter()
        .filter(|g| keep(g))
        .filter_map(|g| g.0.as_ref().ok().cloned())
        .collect();
    valid.sort_by(|a, b| {
        (a.meta().namespace.as_deref(), a.meta().name.as_deref())
            .cmp(&(b.meta().namespace.as_deref(), b.meta().name.as_deref()))
    });
    valid
}

/// Settings of the operator process.
#[derive(Clone)]
pub struct OperatorOptions {
    /// How collectors are planned (image, ServiceMonitor, NetworkPolicy).
    pub plan: PlanOptions,
    /// Namespaces watched; empty: all.
    pub namespaces: Vec<String>,
    /// Periodic resync of every object, a safety net behind the watches.
    pub resync: Duration,
    /// KPI evaluation against Prometheus; `None`: KPIs are not evaluated.
    pub kpi: Option<KpiOptions>,
}

/// Settings of KPI evaluation.
#[derive(Clone)]
pub struct KpiOptions {
    /// The Prometheus to query.
    pub prometheus: Arc<PrometheusClient>,
    /// Apply one PrometheusRule per namespace (needs the Prometheus Operator's CRDs); with these
    /// labels, so the Prometheus `ruleSelector` picks it up. `None`: rules are not applied, and
    /// those applied earlier are removed.
    pub prometheus_rules: Option<BTreeMap<String, String>>,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        Self {
            plan: PlanOptions::default(),
            namespaces: Vec::new(),
            resync: Duration::from_secs(300),
            kpi: None,
        }
    }
}

/// Shared by every reconcile.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Caches of every kind.
    pub stores: Stores,
    /// Settings.
    pub options: OperatorOptions,
    /// Metrics served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Publishes Events on meaningful transitions.
    pub recorder: Recorder,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The pool each namespace was last applied from (see [`PoolMemo`]).
    pub pools: PoolMemo,
    /// Each namespace's export health as last read from Prometheus, and when: the touchpoints of
    /// a namespace share one reading for [`EXPORT_HEALTH_MAX_AGE`].
    export_health: Mutex<HashMap<String, (Instant, Option<ExportHealth>)>>,
}

/// How long a namespace's export health reading is reused.
pub const EXPORT_HEALTH_MAX_AGE: Duration = Duration::from_secs(20);

/// The pool each namespace was last applied from, keyed by a fingerprint of everything it is
/// built from. The reconciles of a pool's other members reuse it instead of planning and
/// comparing it again: a namespace of n pooled touchpoints would otherwise cost O(n²) per
/// resync. An entry lasts one resync at most, so that drift of what is read without a cache
/// (the ServiceMonitor) is still repaired.
#[derive(Default)]
pub struct PoolMemo {
    entries: Mutex<HashMap<String, PoolMemoEntry>>,
}

struct PoolMemoEntry {
    fingerprint: u64,
    plan: Option<Arc<PoolPlan>>,
    at: Instant,
}

impl PoolMemo {
    /// The plan applied for `namespace` from the same `fingerprint` less than `max_age` ago:
    /// `Some(None)` when that was "no pool".
    pub fn fresh(
        &self,
        namespace: &str,
        fingerprint: u64,
        max_age: Duration,
    ) -> Option<Option<Arc<PoolPlan>>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(namespace)
            .filter(|e| e.fingerprint == fingerprint && e.at.elapsed() < max_age)
            .map(|e| e.plan.clone())
    }

    /// Remembers that `plan` was applied for `namespace` from `fingerprint`.
    pub fn remember(&self, namespace: &str, fingerprint: u64, plan: Option<Arc<PoolPlan>>) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                namespace.to_owned(),
                PoolMemoEntry {
                    fingerprint,
                    plan,
                    at: Instant::now(),
                },
            );
    }
}

impl Context {
    /// Creates the context.
    pub fn new(
        client: Client,
        stores: Stores,
        options: OperatorOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "cx-conductor".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Self {
            client,
            stores,
            options,
            metrics,
            recorder,
            failures: Mutex::new(HashMap::new()),
            pools: PoolMemo::default(),
            export_health: Mutex::new(HashMap::new()),
        }
    }

    /// The export health of `namespace`'s collectors from Prometheus: `None` without Prometheus,
    /// when a query fails (logged) or when nothing was scraped yet.
    pub async fn export_health(&self, namespace: &str) -> Option<ExportHealth> {
        let kpi = self.options.kpi.as_ref()?;
        if let Some((at, health)) = self
            .export_health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace)
            && at.elapsed() < EXPORT_HEALTH_MAX_AGE
        {
            return health.clone();
        }
        let now = k8s_openapi::jiff::Timestamp::now();
        let [failures, drops] = export_health_queries(namespace);
        let vector = |result| match result {
            Ok(QueryResult::Vector(samples)) => Ok(samples),
            Ok(QueryResult::Scalar(_)) => Ok(Vec::new()),
            Err(error) => Err(error),
        };
        let health = match (
            vector(kpi.prometheus.query(&failures, now).await),
            vector(kpi.prometheus.query(&drops, now).await),
        ) {
            (Ok(failures), Ok(drops)) => export_health(&failures, &drops),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(namespace, %error, "cannot read the export health from Prometheus");
                None
            }
        };
        self.export_health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(namespace.to_owned(), (Instant::now(), health.clone()));
        health
    }

    /// Records a failure of `key` and returns how long to wait before retrying: 1s, 2s, 4s, ... up to 5 minutes.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300))
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Every object of `store` in `object`'s namespace: a change to a channel, touchpoint or KPI
/// can change any journey (or channel status) of its namespace.
pub fn in_namespace_of<K, O>(
    store: &Store<DeserializeGuard<K>>,
    object: &O,
) -> Vec<ObjectRef<DeserializeGuard<K>>>
where
    K: Resource<DynamicType = ()> + Clone,
    DeserializeGuard<K>: Resource<DynamicType = ()> + Clone,
    O: Resource,
{
    let namespace = object.meta().namespace.clone();
    store
        .state()
        .iter()
        .filter(|o| o.meta().namespace == namespace)
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// The backoff key of an object.
pub fn key_of_object<K: Resource<DynamicType = ()>>(object: &K) -> String {
    key_of(&ObjectRef::from_obj(object))
}

/// A stable key for an object reference, for backoff bookkeeping.
pub fn key_of<K: Resource<DynamicType = ()>>(object: &ObjectRef<K>) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace.as_deref().unwrap_or_default(),
        object.name
    )
}
