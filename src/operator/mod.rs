//! The operator (`cx-conductor run`): one controller per kind on shared caches, leader election
//! with a Lease, `/metrics`, `/healthz`, `/readyz`, graceful shutdown.
//!
//! Each kind is watched once; its cache (a reflector store) feeds every controller that needs it,
//! and a change reaches a controller only after the cache holds it, so a reconcile never reads an
//! older world than the event that triggered it.

pub mod apply;
pub mod channel;
pub mod conditions;
pub mod context;
pub mod error;
pub mod http;
pub mod journey;
pub mod kpi;
pub mod metrics;
pub mod shell;
pub mod touchpoint;

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};

use crate::core::pool::COLLECTOR_AUTH_LABEL;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DynamicObject, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::api::{Channel, CustomerJourney, ExperienceKPI, Touchpoint};

pub use context::{Context, KpiOptions, OperatorOptions, Stores};
pub use metrics::Metrics;

use shell::{error_policy, observed};

/// Label every collector object carries; the operator caches only objects with it.
/// How long the channel and journey controllers wait for a burst of changes to settle.
const SUMMARY_DEBOUNCE: Duration = Duration::from_secs(1);

/// Every controller's name, the `controller` label's bounded set.
pub const CONTROLLERS: [&str; 4] = [
    channel::CONTROLLER,
    touchpoint::CONTROLLER,
    journey::CONTROLLER,
    kpi::CONTROLLER,
];

pub const COLLECTOR_SELECTOR: &str = "app.kubernetes.io/name=cx-collector";

/// How many kinds are cached (the four cx kinds, seven collector kinds and marked Secrets).
const CACHED_KINDS: usize = 12;

/// A cache of one kind plus the subscriptions controllers take on it.
struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    subscribers: Vec<ReflectHandle<K>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Shared<K> {
    fn take(&mut self) -> ReflectHandle<K> {
        self.subscribers
            .pop()
            .expect("one subscription per consumer was created")
    }
}

/// Starts watching one kind into a shared cache with `consumers` subscriptions. Objects outside
/// `namespaces` (when given) are left out of the cache.
fn watch_kind<K>(
    client: &Client,
    namespaces: &[String],
    config: watcher::Config,
    consumers: usize,
    synced: &Arc<AtomicUsize>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Shared<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = match namespaces {
        [only] => Api::namespaced(client.clone(), only),
        _ => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store_shared(1024);
    let subscribers = (0..consumers)
        .map(|_| {
            writer
                .subscribe()
                .expect("shared stores give subscriptions")
        })
        .collect();
    let scope: Vec<String> = namespaces.to_vec();
    let in_scope = move |event: &watcher::Event<K>| match event {
        watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
            scope.is_empty()
                || o.meta()
                    .namespace
                    .as_ref()
                    .is_some_and(|ns| scope.contains(ns))
        }
        watcher::Event::Init | watcher::Event::InitDone => true,
    };
    // Counted once, when the first full list is in the cache. (Not `Store::wait_until_ready`:
    // its one-shot keeps a single waker, so a second waiter can starve the controller's.)
    let synced = synced.clone();
    let mut listed = false;
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|object: &mut K| slim(object.meta_mut()))
        .try_filter(move |event| std::future::ready(in_scope(event)))
        .reflect_shared(writer)
        .for_each(move |event| {
            match event {
                Err(error) => {
                    tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying with backoff")
                }
                Ok(watcher::Event::InitDone) if !listed => {
                    listed = true;
                    synced.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {}
            }
            std::future::ready(())
        });
    tasks.push(tokio::spawn(stream));
    Shared { store, subscribers }
}

/// Drops from a cached object's metadata what the controllers never read: every
/// managedFields entry but those owning `spec.replicas` (who scales a Deployment, see
/// [`apply::prepare`]), and of those only that field. managedFields are often most of an
/// object's size; the caches hold every touchpoint, channel and collector object.
pub fn slim(meta: &mut kube::api::ObjectMeta) {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    let Some(entries) = meta.managed_fields.as_mut() else {
        return;
    };
    entries.retain_mut(|entry| {
        let owns_replicas = entry
            .fields_v1
            .as_ref()
            .is_some_and(|fields| fields.0["f:spec"]["f:replicas"].is_object());
        if owns_replicas {
            entry.fields_v1 = Some(FieldsV1(serde_json::json!({"f:spec": {"f:replicas": {}}})));
        }
        owns_replicas
    });
    if entries.is_empty() {
        meta.managed_fields = None;
    }
}

/// Runs every controller until `shutdown` turns true. Returns when they have drained.
pub async fn run_controllers(
    client: Client,
    options: OperatorOptions,
    metrics: Arc<Metrics>,
    stores_out: watch::Sender<Option<Stores>>,
    shutdown: watch::Receiver<bool>,
) {
    let mut tasks = Vec::new();
    let ns = options.namespaces.clone();
    let synced = Arc::new(AtomicUsize::new(0));
    let all = watcher::Config::default();
    let owned = watcher::Config::default().labels(COLLECTOR_SELECTOR);
    let mut channels =
        watch_kind::<DeserializeGuard<Channel>>(&client, &ns, all.clone(), 3, &synced, &mut tasks);
    let mut touchpoints = watch_kind::<DeserializeGuard<Touchpoint>>(
        &client,
        &ns,
        all.clone(),
        3,
        &synced,
        &mut tasks,
    );
    let mut kpis = watch_kind::<DeserializeGuard<ExperienceKPI>>(
        &client,
        &ns,
        all.clone(),
        1,
        &synced,
        &mut tasks,
    );
    let mut journeys = watch_kind::<DeserializeGuard<CustomerJourney>>(
        &client,
        &ns,
        all.clone(),
        3,
        &synced,
        &mut tasks,
    );
    let mut deployments =
        watch_kind::<Deployment>(&client, &ns, owned.clone(), 2, &synced, &mut tasks);
    let autoscalers =
        watch_kind::<HorizontalPodAutoscaler>(&client, &ns, owned.clone(), 0, &synced, &mut tasks);
    let pool_secrets = watch_kind::<Secret>(&client, &ns, owned.clone(), 0, &synced, &mut tasks);
    let marked = watcher::Config::default().labels(&format!("{COLLECTOR_AUTH_LABEL}=true"));
    let mut auth_secrets = watch_kind::<Secret>(&client, &ns, marked, 1, &synced, &mut tasks);
    let mut config_maps =
        watch_kind::<ConfigMap>(&client, &ns, owned.clone(), 1, &synced, &mut tasks);
    let mut services = watch_kind::<Service>(&client, &ns, owned.clone(), 1, &synced, &mut tasks);
    let mut pdbs =
        watch_kind::<PodDisruptionBudget>(&client, &ns, owned.clone(), 1, &synced, &mut tasks);
    let mut policies = watch_kind::<NetworkPolicy>(&client, &ns, owned, 1, &synced, &mut tasks);
    let stores = Stores {
        channels: channels.store.clone(),
        touchpoints: touchpoints.store.clone(),
        kpis: kpis.store.clone(),
        journeys: journeys.store.clone(),
        deployments: deployments.store.clone(),
        config_maps: config_maps.store.clone(),
        services: services.store.clone(),
        pdbs: pdbs.store.clone(),
        network_policies: policies.store.clone(),
        autoscalers: autoscalers.store.clone(),
        pool_secrets: pool_secrets.store.clone(),
        auth_secrets: auth_secrets.store.clone(),
    };
    let ctx = Arc::new(Context::new(client, stores.clone(), options, metrics));
    // Ready (and serving gauges) once every cache holds the cluster's state.
    let stores_out = Arc::new(stores_out);
    let (ready_stores, publish_to, kinds) = (stores.clone(), stores_out.clone(), synced.clone());
    tasks.push(tokio::spawn(async move {
        while kinds.load(Ordering::SeqCst) < CACHED_KINDS {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = publish_to.send(Some(ready_stores));
    }));
    tasks.push(tokio::spawn(remove_unplanned_monitoring(ctx.clone())));
    let config = ControllerConfig::default()
        .concurrency(8)
        .debounce(Duration::from_millis(100));
    // Channel and journey statuses summarise their touchpoints: while a burst of touchpoint
    // changes arrives (a rollout, a cold start), one reconcile after it settles writes the
    // summary once instead of once per member.
    let summary_config = config.clone().debounce(SUMMARY_DEBOUNCE);
    let stop = || {
        let mut rx = shutdown.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let tp_store = stores.touchpoints.clone();
    let (pool_store, secret_store) = (stores.touchpoints.clone(), stores.touchpoints.clone());
    let journey_store = stores.touchpoints.clone();
    let journeys_seen = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let touchpoint_controller =
        Controller::for_shared_stream(touchpoints.take(), stores.touchpoints.clone())
            .with_config(config.clone())
            .owns_shared_stream(deployments.take())
            .owns_shared_stream(config_maps.take())
            .owns_shared_stream(services.take())
            .owns_shared_stream(pdbs.take())
            .owns_shared_stream(policies.take())
            .watches_shared_stream(channels.take(), move |c| {
                touchpoint::touchpoints_of_channel(&tp_store, &c)
            })
            .watches_shared_stream(deployments.take(), move |d| {
                touchpoint::touchpoints_of_pool(&pool_store, &d)
            })
            .watches_shared_stream(auth_secrets.take(), move |s| {
                touchpoint::touchpoints_of_secret(&secret_store, &s)
            })
            .watches_shared_stream(journeys.take(), move |j| {
                touchpoint::touchpoints_of_journey(&journey_store, &journeys_seen, &j)
            })
            .graceful_shutdown_on(stop())
            .run(
                |object, ctx| {
                    let key = context::key_of_object(object.as_ref());
                    observed(
                        touchpoint::CONTROLLER,
                        key,
                        ctx.clone(),
                        touchpoint::reconcile(object, ctx),
                    )
                },
                error_policy,
                ctx.clone(),
            )
            .for_each(|_| std::future::ready(()));

    let channel_store = stores.channels.clone();
    let channel_controller =
        Controller::for_shared_stream(channels.take(), stores.channels.clone())
            .with_config(summary_config.clone())
            .watches_shared_stream(touchpoints.take(), |t| channel::channel_of_touchpoint(&t))
            .watches_shared_stream(journeys.take(), move |j| {
                context::in_namespace_of(&channel_store, j.as_ref())
            })
            .graceful_shutdown_on(stop())
            .run(
                |object, ctx| {
                    let key = context::key_of_object(object.as_ref());
                    observed(
                        channel::CONTROLLER,
                        key,
                        ctx.clone(),
                        channel::reconcile(object, ctx),
                    )
                },
                error_policy,
                ctx.clone(),
            )
            .for_each(|_| std::future::ready(()));

    let (j1, j2, j3) = (
        stores.journeys.clone(),
        stores.journeys.clone(),
        stores.journeys.clone(),
    );
    let journey_controller =
        Controller::for_shared_stream(journeys.take(), stores.journeys.clone())
            .with_config(summary_config)
            .watches_shared_stream(channels.take(), move |c| {
                context::in_namespace_of(&j1, c.as_ref())
            })
            .watches_shared_stream(touchpoints.take(), move |t| {
                context::in_namespace_of(&j2, t.as_ref())
            })
            .watches_shared_stream(kpis.take(), move |k| {
                context::in_namespace_of(&j3, k.as_ref())
            })
            .graceful_shutdown_on(stop())
            .run(
                |object, ctx| {
                    let key = context::key_of_object(object.as_ref());
                    observed(
                        journey::CONTROLLER,
                        key,
                        ctx.clone(),
                        journey::reconcile(object, ctx),
                    )
                },
                error_policy,
                ctx.clone(),
            )
            .for_each(|_| std::future::ready(()));

    let kpi_loop = {
        let (ctx, shutdown, kinds) = (ctx.clone(), shutdown.clone(), synced.clone());
        async move {
            // Not before every cache holds the cluster's state: a KPI measured over half-filled
            // caches would find no touchpoint in its scope and write a wrong status (which a
            // restart would then flip back).
            while kinds.load(Ordering::SeqCst) < CACHED_KINDS {
                if *shutdown.borrow() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            match ctx.options.kpi.clone() {
                Some(options) => kpi::run(ctx, options, shutdown).await,
                None => kpi::report_not_configured(ctx, shutdown).await,
            }
        }
    };
    tokio::join!(
        touchpoint_controller,
        channel_controller,
        journey_controller,
        kpi_loop
    );
    for task in tasks {
        task.abort();
    }
    let _ = stores_out.send(None);
}

/// Objects of `resource` matching `params` in the watched namespaces (each listed on its own, so
/// namespaced RBAC is enough), or in every namespace; an absent CRD gives none.
pub(crate) async fn list_metadata_in(
    ctx: &Context,
    resource: &kube::core::ApiResource,
    params: &ListParams,
) -> Vec<kube::core::PartialObjectMeta<DynamicObject>> {
    let apis: Vec<Api<DynamicObject>> = if ctx.options.namespaces.is_empty() {
        vec![Api::all_with(ctx.client.clone(), resource)]
    } else {
        ctx.options
            .namespaces
            .iter()
            .map(|ns| Api::namespaced_with(ctx.client.clone(), ns, resource))
            .collect()
    };
    let mut found = Vec::new();
    for api in apis {
        match api.list_metadata(params).await {
            Ok(list) => found.extend(list.items),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(error) => tracing::warn!(kind = %resource.kind, %error, "cannot list"),
        }
    }
    found
}

/// ServiceMonitors and PrometheusRules the operator applied under an earlier configuration are
/// removed once that option is off (deleted touchpoints take theirs along by garbage
/// collection). Without the Prometheus Operator's CRDs there is nothing to do.
async fn remove_unplanned_monitoring(ctx: Arc<Context>) {
    if !ctx.options.plan.service_monitor {
        let found = list_metadata_in(
            &ctx,
            &touchpoint::service_monitor_resource(),
            &ListParams::default().labels(COLLECTOR_SELECTOR),
        )
        .await;
        for monitor in found {
            let (Some(namespace), Some(name)) = (monitor.metadata.namespace, monitor.metadata.name)
            else {
                continue;
            };
            let api: Api<DynamicObject> = Api::namespaced_with(
                ctx.client.clone(),
                &namespace,
                &touchpoint::service_monitor_resource(),
            );
            if let Err(error) = shell::delete(&ctx, touchpoint::CONTROLLER, &api, &name).await {
                tracing::warn!(%namespace, %name, %error, "cannot remove a ServiceMonitor");
            }
        }
    }
    let rules_on = ctx
        .options
        .kpi
        .as_ref()
        .is_some_and(|k| k.prometheus_rules.is_some());
    if !rules_on {
        kpi::remove_rules(&ctx).await;
    }
}

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// Seconds a lease stays valid without renewal.
    pub duration_seconds: u64,
}

/// Runs the controllers while this replica holds the Lease. Returns when `shutdown` turns true
/// (Ok) or when leadership is lost (Err: the process should exit so a fresh replica takes over).
pub async fn run_as_leader(
    client: Client,
    options: OperatorOptions,
    metrics: Arc<Metrics>,
    election: LeaderElection,
    stores_out: watch::Sender<Option<Stores>>,
    shutdown: watch::Receiver<bool>,
) -> std::result::Result<(), String> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &election.name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration_seconds)
        .with_grace(election.duration_seconds.div_ceil(3).max(1))
        .build()
        .await
        .map_err(|e| format!("leader election: {e}"))?;
    let (mut leader, lease_task) = manager.watch().await;
    let mut stop = shutdown.clone();
    tracing::info!(lease = %election.name, identity = %election.identity, "waiting for leadership");
    loop {
        let leading = *leader.borrow_and_update();
        if leading {
            break;
        }
        let stopping = async {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::select! {
            changed = leader.changed() => if changed.is_err() { return Err("leader election stopped".into()) },
            () = stopping => { drop(leader); let _ = lease_task.await; return Ok(()); }
        }
    }
    tracing::info!(identity = %election.identity, "leading: starting controllers");
    let (lost_tx, lost_rx) = watch::channel(false);
    let mut controllers = tokio::spawn(run_controllers(
        client, options, metrics, stores_out, lost_rx,
    ));
    let stopping = async {
        let _ = stop.wait_for(|s| *s).await;
    };
    let lost = async {
        let _ = leader.wait_for(|is_leader| !*is_leader).await;
    };
    let outcome = tokio::select! {
        () = stopping => Ok(()),
        () = lost => Err("leadership lost".to_string()),
        _ = &mut controllers => Err("controllers stopped".to_string()),
    };
    let _ = lost_tx.send(true);
    let _ = controllers.await;
    drop(leader);
    if let Ok(Ok(manager)) = lease_task.await {
        let _ = manager.release().await;
    }
    outcome
}
