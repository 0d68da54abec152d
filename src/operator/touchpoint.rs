//! Touchpoint controller: deploys the collector the core plans, repairs drift, and reports the
//! collector's endpoint, replicas and rollout in status.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, DeserializeGuard, GroupVersionKind};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::Value;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::api::{
    Channel, CollectorStatus, CustomerJourney, ThemeSpec, Touchpoint, TouchpointStatus,
};
use crate::collector::config::POOL_NAME;
use crate::core::listening::{theme_sources, themes_of, with_journey_export};
use crate::core::plan::{
    CONFIG_HASH_ANNOTATION, CollectorPlan, PlanOptions, collector_name, export_config,
    plan_collector,
};
use crate::core::pool::{
    PoolMember, PoolPlan, Refusal, SharedPlan, admit, is_marked_for_auth, plan_pool, plan_shared,
    pool_endpoint,
};
use crate::core::world::namespace_of;

use super::conditions::{self, Verdict};
use super::context::{Context, Stores, key_of, valid_in};
use super::error::Result;
use super::shell;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "touchpoint";

/// Where a touchpoint's events go once admitted: its own collector or its namespace's pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// In-cluster URL producers POST single events to.
    pub endpoint: String,
    /// Hash of the configuration planned.
    pub config_hash: String,
    /// The pool serving the touchpoint; `None`: a dedicated collector, whose pod template
    /// carries the hash (a pool's pods re-read their configuration instead).
    pub pool: Option<String>,
    /// Where its events are exported (the OTLP logs URL, without credentials).
    pub export: Option<String>,
    /// What Prometheus says about the exports of the namespace's collectors; `None`: not known
    /// (no Prometheus configured, a failed query, collectors not scraped yet).
    pub export_health: Option<ExportHealth>,
}

/// The condition type saying whether a touchpoint's events reach the export endpoint.
pub const EXPORTED: &str = "Exported";
/// The window over which export failures are read.
pub const EXPORT_HEALTH_WINDOW: &str = "5m";

/// The export health of a namespace's collectors over [`EXPORT_HEALTH_WINDOW`]: the reasons
/// (the bounded `reason` labels) of failed export requests and of dropped events. Every
/// exporting touchpoint of a namespace sends to the same endpoint, so they share it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportHealth {
    /// `cx_export_failures_total` reasons that increased, sorted.
    pub failing: Vec<String>,
    /// `cx_export_dropped_events_total` reasons that increased, sorted.
    pub dropping: Vec<String>,
}

/// The PromQL queries of a namespace's export health: failures, then drops, by reason.
pub fn export_health_queries(namespace: &str) -> [String; 2] {
    ["cx_export_failures_total", "cx_export_dropped_events_total"].map(|metric| {
        format!(
            "sum by (reason) (increase({metric}{{namespace=\"{namespace}\"}}[{EXPORT_HEALTH_WINDOW}]))"
        )
    })
}

/// The health the answers to [`export_health_queries`] describe: `None` when no failure series
/// exists (the collectors register every reason at zero, so nothing was scraped).
pub fn export_health(
    failures: &[crate::kpi::prometheus::Sample],
    drops: &[crate::kpi::prometheus::Sample],
) -> Option<ExportHealth> {
    if failures.is_empty() {
        return None;
    }
    let increased = |samples: &[crate::kpi::prometheus::Sample]| {
        let mut reasons: Vec<String> = samples
            .iter()
            .filter(|s| s.value.is_finite() && s.value > 0.0)
            .filter_map(|s| s.labels.get("reason").cloned())
            .collect();
        reasons.sort();
        reasons.dedup();
        reasons
    };
    Some(ExportHealth {
        failing: increased(failures),
        dropping: increased(drops),
    })
}

/// The `Exported` condition of a touchpoint whose events go to `url`. Its message names only the
/// reasons, never counts, so a lasting state writes no new status.
pub fn export_verdict(url: &str, health: &ExportHealth) -> Verdict {
    if health.failing.is_empty() && health.dropping.is_empty() {
        return Verdict::yes(
            EXPORTED,
            "Exporting",
            format!(
                "events go to {url}; no export request failed in the last {EXPORT_HEALTH_WINDOW}"
            ),
        );
    }
    let mut problems = Vec::new();
    if !health.failing.is_empty() {
        problems.push(format!(
            "export requests failed ({})",
            health.failing.join(", ")
        ));
    }
    if !health.dropping.is_empty() {
        problems.push(format!(
            "bestEffort events were dropped ({})",
            health.dropping.join(", ")
        ));
    }
    Verdict::no(
        EXPORTED,
        "ExportFailing",
        format!(
            "in the last {EXPORT_HEALTH_WINDOW} the namespace's collectors exporting to {url}: {}; \
             see cx_export_failures_total and the Collectors dashboard's export row",
            problems.join("; ")
        ),
    )
}

impl Target {
    /// The target of a dedicated collector.
    pub fn dedicated(plan: &CollectorPlan) -> Target {
        Target {
            endpoint: plan.endpoint.clone(),
            config_hash: plan.config_hash.clone(),
            pool: None,
            export: None,
            export_health: None,
        }
    }

    /// The target of a pooled touchpoint.
    pub fn pooled(touchpoint: &Touchpoint, plan: &PoolPlan) -> Target {
        Target {
            endpoint: pool_endpoint(namespace_of(touchpoint), &touchpoint.name_any()),
            config_hash: plan.config_hash.clone(),
            pool: plan.deployment.metadata.name.clone(),
            export: None,
            export_health: None,
        }
    }

    /// The target with where `touchpoint`'s events are exported under `options`.
    pub fn exporting(mut self, touchpoint: &Touchpoint, options: &PlanOptions) -> Target {
        self.export = export_config(touchpoint, options)
            .and_then(|export| crate::collector::export::shown_logs_url(&export.endpoint));
        self
    }
}

/// The status a touchpoint should have, from what exists: pure, so every case is unit-tested.
/// `refusal` is why the operator will not deploy what the touchpoint asks; `apply_error` why the
/// collector's objects could not be applied.
pub fn desired_status(
    touchpoint: &Touchpoint,
    channel_found: bool,
    refusal: Option<&Refusal>,
    target: Option<&Target>,
    deployment: Option<&Deployment>,
    apply_error: Option<&str>,
    now: &Time,
) -> TouchpointStatus {
    let mut existing = touchpoint.status.clone().unwrap_or_default();
    let generation = touchpoint.metadata.generation;
    let pooled = !touchpoint.spec.collector.is_dedicated();
    // Someone else may scale the Deployment (kubectl scale, an autoscaler): its count is the one
    // pods follow.
    let desired = deployment
        .and_then(|d| d.spec.replicas)
        .unwrap_or(if pooled {
            0
        } else {
            touchpoint.spec.collector.dedicated_replicas()
        });
    let ready = deployment
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let mut verdicts = Vec::new();
    if channel_found {
        verdicts.push(Verdict::yes(
            "ChannelResolved",
            "ChannelFound",
            format!("channel {} exists", touchpoint.spec.channel),
        ));
    } else {
        verdicts.push(Verdict::no(
            "ChannelResolved",
            "ChannelNotFound",
            format!(
                "channel {} does not exist in namespace {}",
                touchpoint.spec.channel,
                namespace_of(touchpoint)
            ),
        ));
    }
    verdicts.push(match refusal {
        Some(refusal) => Verdict::no("Admitted", refusal.reason, refusal.message.clone()),
        None => Verdict::yes(
            "Admitted",
            "Allowed",
            "the collector image and auth Secret are allowed",
        ),
    });
    let rollout = match (refusal, target, apply_error) {
        (Some(refusal), _, _) => Verdict::no("Ready", refusal.reason, refusal.message.clone()),
        (None, _, Some(error)) => Verdict::no(
            "Ready",
            "ApplyFailed",
            format!("the collector's objects could not be applied: {error}"),
        ),
        (None, None, None) => Verdict::no(
            "Ready",
            "ChannelNotFound",
            "no collector is deployed until the channel exists",
        ),
        (None, Some(target), None) => {
            let hash = target.pool.is_none().then_some(target.config_hash.as_str());
            let mut verdict = rollout_verdict(deployment, hash, desired, ready);
            if let Some(pool) = &target.pool {
                verdict.message = format!("collector pool {pool}: {}", verdict.message);
            }
            verdict
        }
    };
    let rolled_out = rollout.status;
    verdicts.push(rollout);
    verdicts.push(if touchpoint.spec.paused {
        Verdict::yes(
            "Paused",
            "PausedBySpec",
            "spec.paused is true: the collector's objects are left as they are",
        )
    } else {
        Verdict::no(
            "Paused",
            "Reconciling",
            "the collector's objects follow the touchpoint",
        )
    });
    // Exported: from the namespace's export health when known; kept as it is when not; gone
    // when the touchpoint's events are not exported.
    match target.and_then(|t| t.export.as_deref().map(|url| (url, &t.export_health))) {
        Some((url, Some(health))) => verdicts.push(export_verdict(url, health)),
        Some((_, None)) => {}
        None => existing.conditions.retain(|c| c.type_ != EXPORTED),
    }
    // The hash deployed is the planned one only once every pod runs it.
    let deployed_hash = if rolled_out {
        target.map(|t| t.config_hash.clone())
    } else {
        existing
            .collector
            .as_ref()
            .and_then(|c| c.config_hash.clone())
    };
    TouchpointStatus {
        observed_generation: generation,
        collector: target.map(|t| CollectorStatus {
            endpoint: Some(t.endpoint.clone()),
            ready_replicas: ready,
            replicas: desired,
            replicas_summary: Some(format!("{ready}/{desired}")),
            pool: t.pool.clone(),
            config_hash: deployed_hash,
            export: t.export.clone(),
        }),
        conditions: conditions::merge(&existing.conditions, &verdicts, generation, now),
    }
}

/// Whether the collector Deployment runs the planned configuration on every desired pod, decided
/// the way `kubectl rollout status` does (observed generation, updated, total and available
/// replicas), and if not, why (from the Deployment's own conditions).
fn rollout_verdict(
    deployment: Option<&Deployment>,
    planned_hash: Option<&str>,
    desired: i32,
    ready: i32,
) -> Verdict {
    let Some(deployment) = deployment else {
        return Verdict::no(
            "Ready",
            "CollectorPending",
            "the collector Deployment does not exist yet",
        );
    };
    let template_hash = deployment
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(CONFIG_HASH_ANNOTATION));
    if planned_hash.is_some() && template_hash.map(String::as_str) != planned_hash {
        return Verdict::no(
            "Ready",
            "CollectorUpdating",
            "the collector Deployment is being updated to the new configuration",
        );
    }
    let status = deployment.status.clone().unwrap_or_default();
    let conditions = status.conditions.clone().unwrap_or_default();
    let deadline_exceeded = conditions.iter().find(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.status.as_deref() == Some("False")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(c) = deadline_exceeded {
        return Verdict::no(
            "Ready",
            "CollectorRolloutFailed",
            format!(
                "{ready}/{desired} replicas ready; {}",
                c.message.clone().unwrap_or_default()
            ),
        );
    }
    if desired == 0 {
        return Verdict::no(
            "Ready",
            "ScaledToZero",
            "the collector is scaled to 0 replicas: nothing listens at this touchpoint",
        );
    }
    let generation = deployment.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return Verdict::no(
            "Ready",
            "CollectorRollingOut",
            "the Deployment controller has not yet seen the latest collector Deployment",
        );
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < desired || total > updated {
        return Verdict::no(
            "Ready",
            "CollectorRollingOut",
            format!(
                "{updated}/{desired} replicas run the new configuration; {} old ones remain",
                (total - updated).max(0)
            ),
        );
    }
    if available < desired {
        let unavailable = conditions.iter().find(|c| {
            matches!(c.type_.as_deref(), Some("Available" | "Progressing"))
                && c.status.as_deref() == Some("False")
        });
        return match unavailable {
            Some(c) => Verdict::no(
                "Ready",
                "CollectorUnavailable",
                format!(
                    "{ready}/{desired} replicas ready; {}",
                    c.message.clone().unwrap_or_default()
                ),
            ),
            None => Verdict::no(
                "Ready",
                "CollectorStarting",
                format!("{ready}/{desired} replicas ready"),
            ),
        };
    }
    Verdict::yes(
        "Ready",
        "CollectorAvailable",
        format!("{ready}/{desired} collector replicas ready"),
    )
}

fn find<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<K>,
    namespace: &str,
    name: &str,
) -> Option<Arc<K>> {
    store.get(&ObjectRef::new(name).within(namespace))
}

fn to_json<K: serde::Serialize>(object: Option<Arc<K>>) -> Option<Value> {
    object.and_then(|o| serde_json::to_value(o.as_ref()).ok())
}

/// Reconciles one touchpoint: admit it, keep its namespace's pool in step, deploy its own
/// collector when dedicated (or remove the one it had), write status.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<Touchpoint>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let touchpoint = match &guard.0 {
        Ok(t) => t,
        Err(invalid) => {
            return shell::report_invalid::<Touchpoint>(invalid, &ctx, CONTROLLER).await;
        }
    };
    let namespace = namespace_of(touchpoint).to_string();
    let name = touchpoint.name_any();
    let stores = &ctx.stores;
    let channel: Option<Channel> =
        find(&stores.channels, &namespace, &touchpoint.spec.channel).and_then(|g| g.0.clone().ok());
    let admission = admit(
        touchpoint,
        marked_secret(stores, touchpoint).as_deref(),
        &ctx.options.plan,
    );
    let refusal = admission.as_ref().err();
    let journeys = valid_in(&stores.journeys, &namespace);
    // Planned (and its export shown) with the export choices of the journeys holding it.
    let planned = with_journey_export(
        touchpoint,
        channel.as_ref(),
        &journeys.iter().collect::<Vec<_>>(),
    );

    // Whichever touchpoint triggers it, the namespace's pool follows all of them.
    let (pool, pool_applied) = keep_pool(&ctx, &namespace).await;
    let paused = touchpoint.spec.paused;
    let (target, applied, deployment) = if touchpoint.spec.collector.is_dedicated() {
        let plan = channel.as_ref().filter(|_| refusal.is_none()).map(|c| {
            let themes = themes_of(touchpoint, Some(c), &theme_sources(&journeys));
            plan_collector(&planned, Some(c), &themes, &ctx.options.plan)
        });
        let applied = match plan.as_ref().filter(|_| !paused) {
            Some(plan) => apply_plan(plan, &ctx, &namespace).await,
            None => Ok(()),
        };
        let deployment = find(&stores.deployments, &namespace, &collector_name(&name));
        let target = plan
            .as_ref()
            .map(|p| Target::dedicated(p).exporting(&planned, &ctx.options.plan));
        (target, applied, deployment)
    } else {
        let removed = if paused {
            Ok(())
        } else {
            remove_dedicated(&ctx, &namespace, &name).await
        };
        let target = pool
            .as_ref()
            .filter(|p| p.members.contains(&name))
            .map(|p| Target::pooled(touchpoint, p).exporting(&planned, &ctx.options.plan));
        (
            target,
            removed,
            find(&stores.deployments, &namespace, POOL_NAME),
        )
    };
    // A pooled touchpoint is served only when its pool's objects are applied too.
    let pool_error = pool_applied
        .as_ref()
        .err()
        .filter(|_| !touchpoint.spec.collector.is_dedicated())
        .map(ToString::to_string);
    let apply_error = pool_error.or_else(|| applied.as_ref().err().map(ToString::to_string));
    let exported = target.as_ref().is_some_and(|t| t.export.is_some());
    let target = match target {
        Some(mut target) if exported => {
            target.export_health = ctx.export_health(&namespace).await;
            Some(target)
        }
        other => other,
    };

    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = desired_status(
        touchpoint,
        channel.is_some(),
        refusal,
        target.as_ref(),
        deployment.as_deref(),
        apply_error.as_deref(),
        &now,
    );
    let previous = touchpoint.status.clone().unwrap_or_default();
    if shell::write_status(&ctx, CONTROLLER, touchpoint, &status).await? {
        publish_transitions(touchpoint, &previous, &status, &ctx).await;
    }
    // A failed apply is in status and an Event; the error also retries with backoff.
    applied?;
    pool_applied?;
    // Export health changes without any object changing: read it again within a minute.
    if exported && ctx.options.kpi.is_some() {
        return Ok(Action::requeue(
            ctx.options.resync.min(EXPORT_HEALTH_REFRESH),
        ));
    }
    Ok(Action::requeue(ctx.options.resync))
}

/// How often a touchpoint whose events are exported has its `Exported` condition re-read when
/// Prometheus is configured.
pub const EXPORT_HEALTH_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// The touchpoint's auth Secret, when it is marked for collector auth (only those are cached).
fn marked_secret(stores: &Stores, touchpoint: &Touchpoint) -> Option<Arc<Secret>> {
    let auth = touchpoint.spec.collector.auth.as_ref()?;
    find(
        &stores.auth_secrets,
        namespace_of(touchpoint),
        &auth.secret_ref.name,
    )
    .filter(|s| is_marked_for_auth(s))
}

/// Plans and applies `namespace`'s pool, unless it was applied from the same inputs within the
/// last resync ([`super::context::PoolMemo`]).
async fn keep_pool(ctx: &Context, namespace: &str) -> (Option<Arc<PoolPlan>>, Result<()>) {
    let fingerprint = pool_fingerprint(&ctx.stores, namespace);
    if let Some(plan) = ctx.pools.fresh(namespace, fingerprint, ctx.options.resync) {
        return (plan, Ok(()));
    }
    let plan = plan_namespace_pool(&ctx.stores, namespace, &ctx.options.plan).map(Arc::new);
    let shared = plan_namespace_shared(&ctx.stores, namespace, &ctx.options.plan);
    let applied = match apply_pool(plan.as_deref(), ctx, namespace).await {
        Ok(()) => apply_shared(shared.as_ref(), ctx, namespace).await,
        failed => failed,
    };
    if applied.is_ok() {
        ctx.pools.remember(namespace, fingerprint, plan.clone());
    }
    (plan, applied)
}

/// A digest of everything `namespace`'s pool is planned from and applied over: each
/// touchpoint's identity and spec generation, its channel's, its marked auth Secret's version,
/// and the versions of the pool's cached objects (an edited or deleted one is re-applied). A
/// status write changes none of them.
pub fn pool_fingerprint(stores: &Stores, namespace: &str) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut members: Vec<_> = stores
        .touchpoints
        .state()
        .iter()
        .filter(|g| g.meta().namespace.as_deref() == Some(namespace))
        .map(|g| {
            let meta = g.meta();
            let (channel, secret) = match &g.0 {
                Ok(t) => (
                    find(&stores.channels, namespace, &t.spec.channel)
                        .map(|c| (c.meta().uid.clone(), c.meta().generation)),
                    marked_secret(stores, t).map(|s| s.metadata.resource_version.clone()),
                ),
                Err(_) => (None, None),
            };
            (
                meta.name.clone(),
                meta.uid.clone(),
                meta.generation,
                g.0.is_ok(),
                channel,
                secret,
            )
        })
        .collect();
    members.sort();
    // The journeys' themes go into the pool's configuration.
    let mut journeys: Vec<_> = stores
        .journeys
        .state()
        .iter()
        .filter(|g| g.meta().namespace.as_deref() == Some(namespace))
        .map(|g| {
            (
                g.meta().name.clone(),
                g.meta().uid.clone(),
                g.meta().generation,
            )
        })
        .collect();
    journeys.sort();
    let observed = [
        pool_object_version(&stores.pool_secrets, namespace),
        pool_object_version(&stores.services, namespace),
        pool_object_version(&stores.deployments, namespace),
        pool_object_version(&stores.autoscalers, namespace),
        pool_object_version(&stores.pdbs, namespace),
        pool_object_version(&stores.network_policies, namespace),
    ];
    let mut hasher = DefaultHasher::new();
    (members, journeys, observed).hash(&mut hasher);
    hasher.finish()
}

fn pool_object_version<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<K>,
    namespace: &str,
) -> Option<String> {
    find(store, namespace, POOL_NAME).and_then(|o| o.meta().resource_version.clone())
}

/// The pool of `namespace` from the caches: every valid, pooled, admitted touchpoint there whose
/// channel exists.
pub fn plan_namespace_pool(
    stores: &Stores,
    namespace: &str,
    options: &PlanOptions,
) -> Option<PoolPlan> {
    let touchpoints: Vec<Touchpoint> = stores
        .touchpoints
        .state()
        .iter()
        .filter(|g| g.meta().namespace.as_deref() == Some(namespace))
        .filter_map(|g| g.0.as_ref().ok().cloned())
        .filter(|t| !t.spec.collector.is_dedicated())
        .collect();
    let journeys = valid_in(&stores.journeys, namespace);
    let sources = theme_sources(&journeys);
    let all_journeys: Vec<&CustomerJourney> = journeys.iter().collect();
    type Member = (Touchpoint, Channel, Option<String>, Vec<ThemeSpec>);
    let channels: Vec<Member> = touchpoints
        .into_iter()
        .filter_map(|t| {
            let channel = find(&stores.channels, namespace, &t.spec.channel)
                .and_then(|g| g.0.clone().ok())?;
            let digest = admit(&t, marked_secret(stores, &t).as_deref(), options).ok()?;
            let themes = themes_of(&t, Some(&channel), &sources);
            let t = with_journey_export(&t, Some(&channel), &all_journeys);
            Some((t, channel, digest, themes))
        })
        .collect();
    let members: Vec<PoolMember<'_>> = channels
        .iter()
        .map(|(touchpoint, channel, digest, themes)| PoolMember {
            touchpoint,
            channel: Some(channel),
            token_sha256: digest.as_deref(),
            themes,
        })
        .collect();
    plan_pool(namespace, &members, options)
}

/// What the collectors of `namespace` share, from the caches: owned by every valid, admitted
/// touchpoint there whose channel exists (each has a collector, pooled or dedicated).
pub fn plan_namespace_shared(
    stores: &Stores,
    namespace: &str,
    options: &PlanOptions,
) -> Option<SharedPlan> {
    let collectors: Vec<Touchpoint> = valid_in(&stores.touchpoints, namespace)
        .into_iter()
        .filter(|t| find(&stores.channels, namespace, &t.spec.channel).is_some())
        .filter(|t| admit(t, marked_secret(stores, t).as_deref(), options).is_ok())
        .collect();
    let collectors: Vec<&Touchpoint> = collectors.iter().collect();
    plan_shared(namespace, &collectors, options)
}

/// Applies what the namespace's collectors share (where it drifted), or deletes it when the
/// namespace has no collector any more (or the option is off).
async fn apply_shared(shared: Option<&SharedPlan>, ctx: &Context, namespace: &str) -> Result<()> {
    let policy = find(&ctx.stores.network_policies, namespace, POOL_NAME);
    let planned_policy = shared.and_then(|s| s.network_policy.as_ref());
    reconcile_optional(ctx, namespace, POOL_NAME, planned_policy, policy).await?;
    match shared.and_then(|s| s.service_monitor.as_ref()) {
        Some(monitor) => apply_service_monitor(ctx, namespace, POOL_NAME, monitor).await,
        None => remove_service_monitor(ctx, namespace, POOL_NAME).await,
    }
}

/// Applies the pool's objects (where they drifted), or deletes them when no touchpoint of the
/// namespace is pooled any more.
async fn apply_pool(pool: Option<&PoolPlan>, ctx: &Context, namespace: &str) -> Result<()> {
    let stores = &ctx.stores;
    let Some(pool) = pool else {
        // No pooled touchpoint left: whatever the pool had goes (a cached object is deleted).
        let observed = find(&stores.pool_secrets, namespace, POOL_NAME);
        reconcile_optional::<Secret>(ctx, namespace, POOL_NAME, None, observed).await?;
        let observed = find(&stores.deployments, namespace, POOL_NAME);
        reconcile_optional::<Deployment>(ctx, namespace, POOL_NAME, None, observed).await?;
        let observed = find(&stores.services, namespace, POOL_NAME);
        reconcile_optional::<Service>(ctx, namespace, POOL_NAME, None, observed).await?;
        let observed = find(&stores.autoscalers, namespace, POOL_NAME);
        reconcile_optional::<HorizontalPodAutoscaler>(ctx, namespace, POOL_NAME, None, observed)
            .await?;
        let pdb = find(&stores.pdbs, namespace, POOL_NAME);
        reconcile_optional::<PodDisruptionBudget>(ctx, namespace, POOL_NAME, None, pdb).await?;
        return Ok(());
    };
    shell::apply_all(
        ctx,
        CONTROLLER,
        &[
            (
                serde_json::to_value(&pool.secret)?,
                to_json(find(&stores.pool_secrets, namespace, POOL_NAME)),
            ),
            (
                serde_json::to_value(&pool.service)?,
                to_json(find(&stores.services, namespace, POOL_NAME)),
            ),
            (
                serde_json::to_value(&pool.deployment)?,
                to_json(find(&stores.deployments, namespace, POOL_NAME)),
            ),
            (
                serde_json::to_value(&pool.autoscaler)?,
                to_json(find(&stores.autoscalers, namespace, POOL_NAME)),
            ),
        ],
    )
    .await?;
    let pdb = find(&stores.pdbs, namespace, POOL_NAME);
    reconcile_optional(
        ctx,
        namespace,
        POOL_NAME,
        pool.pod_disruption_budget.as_ref(),
        pdb,
    )
    .await
}

/// Deletes what a touchpoint's dedicated collector left when the touchpoint became pooled.
async fn remove_dedicated(ctx: &Context, namespace: &str, touchpoint: &str) -> Result<()> {
    let stores = &ctx.stores;
    let name = collector_name(touchpoint);
    remove_per_collector_objects(ctx, namespace, &name).await?;
    if find(&stores.deployments, namespace, &name).is_some() {
        let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
        shell::delete(ctx, CONTROLLER, &api, &name).await?;
    }
    if find(&stores.services, namespace, &name).is_some() {
        let api: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
        shell::delete(ctx, CONTROLLER, &api, &name).await?;
    }
    let pdb = find(&stores.pdbs, namespace, &name);
    reconcile_optional::<PodDisruptionBudget>(ctx, namespace, &name, None, pdb).await
}

/// Deletes the objects a dedicated collector `name` had of its own before this version: its
/// ConfigMap (its configuration is in its pod template now), NetworkPolicy and ServiceMonitor
/// (the namespace's shared ones cover it). The ServiceMonitor is not cached: it goes first,
/// while the cached ConfigMap still says the old layout exists, so a failed delete is retried.
async fn remove_per_collector_objects(ctx: &Context, namespace: &str, name: &str) -> Result<()> {
    let stores = &ctx.stores;
    if find(&stores.config_maps, namespace, name).is_some() {
        remove_service_monitor(ctx, namespace, name).await?;
    }
    let policy = find(&stores.network_policies, namespace, name);
    reconcile_optional::<NetworkPolicy>(ctx, namespace, name, None, policy).await?;
    if find(&stores.config_maps, namespace, name).is_some() {
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
        shell::delete(ctx, CONTROLLER, &api, name).await?;
    }
    Ok(())
}

/// Deletes the collector ServiceMonitor `name` when ServiceMonitors are on (when they are off,
/// the operator removes every collector ServiceMonitor at start-up instead). Read first (it is
/// not cached), so an absent one costs no write.
async fn remove_service_monitor(ctx: &Context, namespace: &str, name: &str) -> Result<()> {
    if !ctx.options.plan.service_monitor {
        return Ok(());
    }
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &service_monitor_resource());
    if api.get_opt(name).await?.is_none() {
        return Ok(());
    }
    shell::delete(ctx, CONTROLLER, &api, name).await
}

/// Applies a ServiceMonitor, read first (no cache: the CRD may be absent).
async fn apply_service_monitor(
    ctx: &Context,
    namespace: &str,
    name: &str,
    monitor: &Value,
) -> Result<()> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &service_monitor_resource());
    let observed = api
        .get_opt(name)
        .await?
        .and_then(|o| serde_json::to_value(o).ok());
    shell::apply_all(ctx, CONTROLLER, &[(monitor.clone(), observed)]).await
}

async fn apply_plan(plan: &CollectorPlan, ctx: &Context, namespace: &str) -> Result<()> {
    let stores = &ctx.stores;
    let name = plan.deployment.metadata.name.clone().unwrap_or_default();
    shell::apply_all(
        ctx,
        CONTROLLER,
        &[
            (
                serde_json::to_value(&plan.service)?,
                to_json(find(&stores.services, namespace, &name)),
            ),
            (
                serde_json::to_value(&plan.deployment)?,
                to_json(find(&stores.deployments, namespace, &name)),
            ),
        ],
    )
    .await?;
    // Optional objects: applied when planned, deleted when no longer planned.
    let pdb = find(&stores.pdbs, namespace, &name);
    reconcile_optional(
        ctx,
        namespace,
        &name,
        plan.pod_disruption_budget.as_ref(),
        pdb,
    )
    .await?;
    // The Deployment no longer reads them: what an earlier version gave the collector goes.
    remove_per_collector_objects(ctx, namespace, &name).await
}

/// The Prometheus Operator's ServiceMonitor kind.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
    ))
}

/// Applies an optional object when planned (and drifted), deletes it when no longer planned.
async fn reconcile_optional<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    desired: Option<&K>,
    observed: Option<Arc<K>>,
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    match (desired, observed) {
        (Some(desired), observed) => {
            shell::apply_all(
                ctx,
                CONTROLLER,
                &[(serde_json::to_value(desired)?, to_json(observed))],
            )
            .await
        }
        (None, Some(_)) => {
            let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
            shell::delete(ctx, CONTROLLER, &api, name).await
        }
        (None, None) => Ok(()),
    }
}

/// Events on meaningful transitions only: the collector became ready or stopped being ready,
/// its objects could not be applied, the channel went missing.
async fn publish_transitions(
    touchpoint: &Touchpoint,
    before: &TouchpointStatus,
    after: &TouchpointStatus,
    ctx: &Context,
) {
    let ready_of = |status: &TouchpointStatus| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.status == "True", c.reason.clone(), c.message.clone()))
            .unwrap_or_default()
    };
    let (was_ready, was_reason, _) = ready_of(before);
    let (is_ready, reason, message) = ready_of(after);
    let had_channel =
        before.conditions.is_empty() || conditions::is_true(&before.conditions, "ChannelResolved");
    let has_channel = conditions::is_true(&after.conditions, "ChannelResolved");
    let refusal_of = |status: &TouchpointStatus| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "Admitted" && c.status == "False")
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let mut events = Vec::new();
    if let Some((reason, message)) = refusal_of(after)
        && refusal_of(before).map(|(r, _)| r) != Some(reason.clone())
    {
        events.push((EventType::Warning, "CollectorRefused", message));
    }
    if is_ready && !was_ready {
        events.push((EventType::Normal, "CollectorReady", message));
    } else if reason == "ApplyFailed" && was_reason != "ApplyFailed" {
        events.push((EventType::Warning, "ApplyFailed", message));
    } else if was_ready && !is_ready {
        events.push((EventType::Warning, "CollectorNotReady", message));
    }
    if had_channel && !has_channel {
        let note = after
            .conditions
            .iter()
            .find(|c| c.type_ == "ChannelResolved")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        events.push((EventType::Warning, "ChannelNotFound", note));
    }
    shell::publish(
        ctx,
        CONTROLLER,
        "Reconcile",
        &touchpoint.object_ref(&()),
        events,
    )
    .await;
}

/// Touchpoints to reconcile when a channel changes: those on that channel.
pub fn touchpoints_of_channel(
    store: &Store<DeserializeGuard<Touchpoint>>,
    channel: &DeserializeGuard<Channel>,
) -> Vec<ObjectRef<DeserializeGuard<Touchpoint>>> {
    let Some(name) = channel.meta().name.clone() else {
        return vec![];
    };
    let namespace = channel.meta().namespace.clone();
    store
        .state()
        .iter()
        .filter(|g| g.meta().namespace == namespace)
        .filter(|g| g.0.as_ref().is_ok_and(|t| t.spec.channel == name))
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// Touchpoints to reconcile when a journey's spec changes (its themes go into their collectors'
/// configuration): every one of its namespace. Status writes (same generation) are skipped, so
/// a journey's summary status does not replan its namespace's collectors.
pub fn touchpoints_of_journey(
    store: &Store<DeserializeGuard<Touchpoint>>,
    seen: &std::sync::Mutex<std::collections::HashMap<(String, String), Option<i64>>>,
    journey: &DeserializeGuard<crate::api::CustomerJourney>,
) -> Vec<ObjectRef<DeserializeGuard<Touchpoint>>> {
    let meta = journey.meta();
    let key = (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    );
    let changed = match seen.lock() {
        Ok(mut seen) => seen.insert(key, meta.generation) != Some(meta.generation),
        Err(_) => true,
    };
    if !changed {
        return vec![];
    }
    let namespace = meta.namespace.clone();
    store
        .state()
        .iter()
        .filter(|g| g.meta().namespace == namespace)
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// Touchpoints to reconcile when a namespace's pool Deployment changes (its readiness, or the
/// garbage collector dropping a deleted member's owner reference): every pooled one there.
pub fn touchpoints_of_pool(
    store: &Store<DeserializeGuard<Touchpoint>>,
    deployment: &Deployment,
) -> Vec<ObjectRef<DeserializeGuard<Touchpoint>>> {
    if deployment.meta().name.as_deref() != Some(POOL_NAME) {
        return vec![];
    }
    let namespace = deployment.meta().namespace.clone();
    store
        .state()
        .iter()
        .filter(|g| g.meta().namespace == namespace)
        .filter(|g| g.0.as_ref().is_ok_and(|t| !t.spec.collector.is_dedicated()))
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// Touchpoints to reconcile when a Secret marked for collector auth changes: those naming it.
pub fn touchpoints_of_secret(
    store: &Store<DeserializeGuard<Touchpoint>>,
    secret: &Secret,
) -> Vec<ObjectRef<DeserializeGuard<Touchpoint>>> {
    let Some(name) = secret.meta().name.clone() else {
        return vec![];
    };
    let namespace = secret.meta().namespace.clone();
    store
        .state()
        .iter()
        .filter(|g| g.meta().namespace == namespace)
        .filter(|g| {
            g.0.as_ref().is_ok_and(|t| {
                t.spec
                    .collector
                    .auth
                    .as_ref()
                    .is_some_and(|a| a.secret_ref.name == name)
            })
        })
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// Backoff key of a touchpoint reference.
pub fn key(object: &ObjectRef<DeserializeGuard<Touchpoint>>) -> String {
    key_of(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(yaml: &str) -> Deployment {
        serde_yaml::from_str(yaml).expect("a Deployment")
    }

    const SPEC: &str = r#"
metadata: {name: collector-checkout, generation: 2}
spec:
  replicas: 2
  selector: {matchLabels: {app: c}}
  template:
    metadata: {annotations: {"cx.conductor.dev/config-hash": "new"}}
"#;

    fn verdict(status: &str) -> Verdict {
        let d = deployment(&format!("{SPEC}{status}"));
        rollout_verdict(Some(&d), Some("new"), 2, 2)
    }

    #[test]
    fn a_complete_rollout_is_ready() {
        let v = verdict(
            "status: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2}",
        );
        assert!(v.status, "{v:?}");
        assert_eq!(v.reason, "CollectorAvailable");
    }

    #[test]
    fn old_pods_still_serving_are_a_rollout_in_progress_not_ready() {
        // Before: 2 ready replicas (old ones) counted as Ready with the new hash.
        let v = verdict(
            "status: {observedGeneration: 2, replicas: 3, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 2}",
        );
        assert_eq!(
            (v.status, v.reason.as_str()),
            (false, "CollectorRollingOut")
        );
    }

    #[test]
    fn a_deadline_exceeded_rollout_says_so() {
        let v = verdict(
            r#"status:
  observedGeneration: 2
  replicas: 3
  updatedReplicas: 1
  readyReplicas: 2
  availableReplicas: 2
  conditions:
  - {type: Progressing, status: "False", reason: ProgressDeadlineExceeded, message: 'ReplicaSet "collector-checkout-5d" has timed out progressing.'}
"#,
        );
        assert_eq!(
            (v.status, v.reason.as_str()),
            (false, "CollectorRolloutFailed")
        );
        assert!(v.message.contains("timed out progressing"), "{}", v.message);
    }

    #[test]
    fn a_generation_the_controller_has_not_seen_is_not_ready() {
        let v = verdict(
            "status: {observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2}",
        );
        assert_eq!(
            (v.status, v.reason.as_str()),
            (false, "CollectorRollingOut")
        );
    }

    #[test]
    fn a_template_without_the_planned_hash_is_updating() {
        let d = deployment(&format!(
            "{SPEC}status: {{observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2}}"
        ));
        let v = rollout_verdict(Some(&d), Some("newer"), 2, 2);
        assert_eq!((v.status, v.reason.as_str()), (false, "CollectorUpdating"));
    }

    mod pool_fingerprint {
        use super::super::pool_fingerprint;
        use crate::api::{Channel, Touchpoint};
        use crate::operator::context::Stores;
        use k8s_openapi::api::core::v1::Secret;
        use kube::core::DeserializeGuard;
        use kube::runtime::reflector::{self, store::Writer};
        use kube::runtime::watcher::Event;

        struct Caches {
            stores: Stores,
            touchpoints: Writer<DeserializeGuard<Touchpoint>>,
            channels: Writer<DeserializeGuard<Channel>>,
            pool_secrets: Writer<Secret>,
        }

        fn caches() -> Caches {
            let (touchpoints, touchpoint_writer) = reflector::store();
            let (channels, channel_writer) = reflector::store();
            let (pool_secrets, pool_secret_writer) = reflector::store();
            let stores = Stores {
                channels,
                touchpoints,
                kpis: reflector::store().0,
                journeys: reflector::store().0,
                deployments: reflector::store().0,
                config_maps: reflector::store().0,
                services: reflector::store().0,
                pdbs: reflector::store().0,
                network_policies: reflector::store().0,
                autoscalers: reflector::store().0,
                pool_secrets,
                auth_secrets: reflector::store().0,
            };
            Caches {
                stores,
                touchpoints: touchpoint_writer,
                channels: channel_writer,
                pool_secrets: pool_secret_writer,
            }
        }

        fn touchpoint(namespace: &str, generation: i64, version: &str, ready: bool) -> Touchpoint {
            serde_yaml::from_str(&format!(
                "apiVersion: cx.conductor.dev/v1alpha1\nkind: Touchpoint\nmetadata: {{name: checkout, namespace: {namespace}, uid: u1, generation: {generation}, resourceVersion: '{version}'}}\nspec: {{channel: web, stage: purchase, signals: {{surveys: [{{metric: csat}}]}}}}\nstatus: {{conditions: [{{type: Ready, status: '{}', reason: R, message: m, lastTransitionTime: '2026-12-03T10:00:00Z'}}]}}\n",
                if ready { "True" } else { "False" }
            ))
            .expect("a Touchpoint")
        }

        /// What a touchpoint's reconcile compares to skip replanning its pool: status writes do
        /// not change it, a spec change, a channel change or a pool object edit do.
        #[test]
        fn only_what_the_pool_is_built_from_changes_it() {
            let mut c = caches();
            let apply_tp = |c: &mut Caches, t: Touchpoint| {
                c.touchpoints
                    .apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(t))));
            };
            apply_tp(&mut c, touchpoint("shop", 1, "10", false));
            let channel: Channel = serde_yaml::from_str(
                "apiVersion: cx.conductor.dev/v1alpha1\nkind: Channel\nmetadata: {name: web, namespace: shop, uid: c1, generation: 1}\nspec: {type: web}\n",
            )
            .expect("a Channel");
            c.channels
                .apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(channel.clone()))));
            let first = pool_fingerprint(&c.stores, "shop");

            apply_tp(&mut c, touchpoint("shop", 1, "11", true));
            assert_eq!(pool_fingerprint(&c.stores, "shop"), first, "a status write");
            apply_tp(&mut c, touchpoint("elsewhere", 1, "12", false));
            assert_eq!(
                pool_fingerprint(&c.stores, "shop"),
                first,
                "another namespace"
            );

            apply_tp(&mut c, touchpoint("shop", 2, "13", true));
            let spec_changed = pool_fingerprint(&c.stores, "shop");
            assert_ne!(spec_changed, first, "a spec change");

            let mut edited = channel;
            edited.metadata.generation = Some(2);
            c.channels
                .apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(edited))));
            let channel_changed = pool_fingerprint(&c.stores, "shop");
            assert_ne!(channel_changed, spec_changed, "its channel's spec");

            let secret: Secret = serde_yaml::from_str(
                "metadata: {name: cx-collectors, namespace: shop, resourceVersion: '20'}",
            )
            .expect("a Secret");
            c.pool_secrets.apply_watcher_event(&Event::Apply(secret));
            assert_ne!(
                pool_fingerprint(&c.stores, "shop"),
                channel_changed,
                "the pool's own object, created or edited"
            );
        }
    }

    /// Status says where a touchpoint's events are exported, and nothing
    /// when it opted out or no export is configured.
    #[test]
    fn status_names_where_events_are_exported() {
        use crate::api::TouchpointExport;
        use crate::core::plan::ExportOptions;
        let mut touchpoint: Touchpoint = serde_yaml::from_str(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: Touchpoint\n\
             metadata: {name: checkout, namespace: shop, generation: 1}\n\
             spec: {channel: web, stage: purchase, signals: {surveys: [{metric: nps}]}}\n",
        )
        .expect("a touchpoint");
        let target = Target {
            endpoint: "http://cx-collectors.shop.svc/v1/touchpoints/checkout/events".into(),
            config_hash: "h".into(),
            pool: Some("cx-collectors".into()),
            export: None,
            export_health: None,
        };
        let options = PlanOptions {
            export: Some(ExportOptions {
                endpoint: "https://otel.observability:4318/".into(),
                ..ExportOptions::default()
            }),
            ..PlanOptions::default()
        };
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let export_of = |touchpoint: &Touchpoint, options: &PlanOptions| {
            let target = target.clone().exporting(touchpoint, options);
            desired_status(touchpoint, true, None, Some(&target), None, None, &now)
                .collector
                .and_then(|c| c.export)
        };
        assert_eq!(
            export_of(&touchpoint, &options).as_deref(),
            Some("https://otel.observability:4318/v1/logs")
        );
        assert_eq!(export_of(&touchpoint, &PlanOptions::default()), None);
        touchpoint.spec.export = Some(TouchpointExport {
            enabled: Some(false),
            ..TouchpointExport::default()
        });
        assert_eq!(export_of(&touchpoint, &options), None);
    }

    /// The `Exported` condition follows the namespace's export health, keeps its message (and
    /// so the status) while the health holds, stays as it was while unknown, and goes away when
    /// the touchpoint's events are no longer exported.
    #[test]
    fn the_exported_condition_follows_the_export_health() {
        use crate::kpi::prometheus::Sample;
        let sample = |reason: &str, value: f64| Sample {
            labels: [("reason".to_string(), reason.to_string())].into(),
            value,
        };
        assert_eq!(export_health(&[], &[]), None, "nothing scraped");
        let healthy = export_health(
            &[sample("unreachable", 0.0), sample("timeout", 0.0)],
            &[sample("queue_full", 0.0)],
        )
        .expect("scraped");
        assert_eq!(healthy, ExportHealth::default());
        let failing = export_health(
            &[
                sample("timeout", 2.5),
                sample("unreachable", 1.0),
                sample("rejected", 0.0),
                sample("throttled", f64::NAN),
            ],
            &[sample("queue_full", 40.0), sample("shutdown", 0.0)],
        )
        .expect("scraped");
        assert_eq!(
            failing,
            ExportHealth {
                failing: vec!["timeout".into(), "unreachable".into()],
                dropping: vec!["queue_full".into()],
            }
        );
        assert_eq!(
            export_health_queries("shop"),
            [
                "sum by (reason) (increase(cx_export_failures_total{namespace=\"shop\"}[5m]))",
                "sum by (reason) (increase(cx_export_dropped_events_total{namespace=\"shop\"}[5m]))",
            ]
        );

        let touchpoint: Touchpoint = serde_yaml::from_str(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: Touchpoint\n\
             metadata: {name: checkout, namespace: shop, generation: 1}\n\
             spec: {channel: web, stage: purchase, signals: {surveys: [{metric: nps}]}}\n",
        )
        .expect("a touchpoint");
        let url = "https://otel.observability:4318/v1/logs";
        let target = |health: Option<ExportHealth>, export: bool| Target {
            endpoint: "http://cx-collectors.shop.svc/v1/touchpoints/checkout/events".into(),
            config_hash: "h".into(),
            pool: Some("cx-collectors".into()),
            export: export.then(|| url.to_string()),
            export_health: health,
        };
        let exported = |status: &TouchpointStatus| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == EXPORTED)
                .cloned()
        };
        let at = |seconds: i64| {
            Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("a time"))
        };
        let status_at = |touchpoint: &Touchpoint, target: &Target, now: i64| {
            desired_status(touchpoint, true, None, Some(target), None, None, &at(now))
        };

        // Unknown health: no condition yet.
        let first = status_at(&touchpoint, &target(None, true), 10);
        assert_eq!(exported(&first), None);
        // Failing: False, naming the reasons and where to look, never a count.
        let mut touchpoint = touchpoint;
        touchpoint.status = Some(first);
        let failing_status = status_at(&touchpoint, &target(Some(failing.clone()), true), 20);
        let condition = exported(&failing_status).expect("Exported");
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", "ExportFailing")
        );
        assert_eq!(
            condition.message,
            "in the last 5m the namespace's collectors exporting to \
             https://otel.observability:4318/v1/logs: export requests failed (timeout, \
             unreachable); bestEffort events were dropped (queue_full); see \
             cx_export_failures_total and the Collectors dashboard's export row"
        );
        assert_eq!(condition.last_transition_time, at(20));
        // Still failing for the same reasons later, then unknown: the same status, nothing to
        // write.
        touchpoint.status = Some(failing_status.clone());
        assert_eq!(
            status_at(&touchpoint, &target(Some(failing), true), 30),
            failing_status
        );
        assert_eq!(
            status_at(&touchpoint, &target(None, true), 40),
            failing_status
        );
        // Healthy again: True, with a new transition time.
        let healthy_status = status_at(&touchpoint, &target(Some(healthy), true), 50);
        let condition = exported(&healthy_status).expect("Exported");
        assert_eq!(
            (
                condition.status.as_str(),
                condition.reason.as_str(),
                condition.message.as_str()
            ),
            (
                "True",
                "Exporting",
                "events go to https://otel.observability:4318/v1/logs; no export request failed \
                 in the last 5m"
            )
        );
        assert_eq!(condition.last_transition_time, at(50));
        // No longer exported: the condition goes.
        touchpoint.status = Some(healthy_status);
        let gone = status_at(&touchpoint, &target(None, false), 60);
        assert_eq!(exported(&gone), None);
        assert!(gone.conditions.iter().any(|c| c.type_ == "Ready"));
    }
}
