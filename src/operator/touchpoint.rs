//! Touchpoint controller: deploys the collector the core plans, repairs drift, and reports the
//! collector's endpoint, replicas and readiness in status.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::api::{Channel, CollectorStatus, Touchpoint, TouchpointStatus};
use crate::core::plan::{CollectorPlan, collector_name, plan_collector};
use crate::core::world::namespace_of;

use super::apply::apply_if_drifted;
use super::conditions::{self, Verdict};
use super::context::{Context, key_of};
use super::error::{Error, Result};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "touchpoint";

/// The status a touchpoint should have, from what exists: pure, so every case is unit-tested.
pub fn desired_status(
    touchpoint: &Touchpoint,
    channel_found: bool,
    plan: Option<&CollectorPlan>,
    deployment: Option<&Deployment>,
    now: &Time,
) -> TouchpointStatus {
    let existing = touchpoint.status.clone().unwrap_or_default();
    let generation = touchpoint.metadata.generation;
    let desired = touchpoint.spec.collector.replicas;
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
    verdicts.push(if !channel_found {
        Verdict::no(
            "Ready",
            "ChannelNotFound",
            "no collector is deployed until the channel exists",
        )
    } else if let Some(verdict) = deployment_verdict(deployment, desired, ready) {
        verdict
    } else {
        Verdict::yes(
            "Ready",
            "CollectorAvailable",
            format!("{ready}/{desired} collector replicas ready"),
        )
    });
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
    TouchpointStatus {
        observed_generation: generation,
        collector: plan.map(|p| CollectorStatus {
            endpoint: Some(p.endpoint.clone()),
            ready_replicas: ready,
            replicas: desired,
            replicas_summary: Some(format!("{ready}/{desired}")),
            config_hash: Some(p.config_hash.clone()),
        }),
        conditions: conditions::merge(&existing.conditions, &verdicts, generation, now),
    }
}

/// Why the collector is not ready, from the Deployment's own conditions (so a crash-looping or
/// unschedulable collector says so); `None` when it is ready.
fn deployment_verdict(
    deployment: Option<&Deployment>,
    desired: i32,
    ready: i32,
) -> Option<Verdict> {
    let Some(deployment) = deployment else {
        return Some(Verdict::no(
            "Ready",
            "CollectorPending",
            "the collector Deployment does not exist yet",
        ));
    };
    if desired == 0 {
        return Some(Verdict::no(
            "Ready",
            "ScaledToZero",
            "spec.collector.replicas is 0: nothing listens at this touchpoint",
        ));
    }
    if ready >= desired {
        return None;
    }
    let conditions = deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let failed = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_.as_deref() == Some(type_) && c.status.as_deref() == Some("False"))
    };
    if let Some(c) = failed("Progressing") {
        return Some(Verdict::no(
            "Ready",
            "CollectorRolloutFailed",
            format!(
                "{ready}/{desired} replicas ready; {}",
                c.message.clone().unwrap_or_default()
            ),
        ));
    }
    if let Some(c) = failed("Available") {
        return Some(Verdict::no(
            "Ready",
            "CollectorUnavailable",
            format!(
                "{ready}/{desired} replicas ready; {}",
                c.message.clone().unwrap_or_default()
            ),
        ));
    }
    Some(Verdict::no(
        "Ready",
        "CollectorStarting",
        format!("{ready}/{desired} replicas ready"),
    ))
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

/// Reconciles one touchpoint.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<Touchpoint>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let touchpoint = match &guard.0 {
        Ok(t) => t,
        Err(invalid) => {
            return super::report_invalid::<Touchpoint>(invalid, &ctx, CONTROLLER).await;
        }
    };
    let namespace = namespace_of(touchpoint).to_string();
    let name = touchpoint.name_any();
    let stores = &ctx.stores;
    let channel: Option<Channel> =
        find(&stores.channels, &namespace, &touchpoint.spec.channel).and_then(|g| g.0.clone().ok());
    let plan = channel
        .as_ref()
        .map(|c| plan_collector(touchpoint, Some(c), &ctx.options.plan));

    if let Some(plan) = plan.as_ref().filter(|_| !touchpoint.spec.paused) {
        apply_plan(plan, &ctx, &namespace).await?;
    }

    let deployment = find(&stores.deployments, &namespace, &collector_name(&name));
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = desired_status(
        touchpoint,
        channel.is_some(),
        plan.as_ref(),
        deployment.as_deref(),
        &now,
    );
    let previous = touchpoint.status.clone().unwrap_or_default();
    if status != previous {
        let api: Api<Touchpoint> = Api::namespaced(ctx.client.clone(), &namespace);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
        ctx.metrics
            .writes
            .with_label_values(&[CONTROLLER, "status"])
            .inc();
        publish_transitions(touchpoint, &previous, &status, &ctx).await;
    }
    Ok(Action::requeue(ctx.options.resync))
}

async fn apply_plan(plan: &CollectorPlan, ctx: &Context, namespace: &str) -> Result<()> {
    let stores = &ctx.stores;
    let name = plan.config_map.metadata.name.clone().unwrap_or_default();
    let desired: Vec<(Value, Option<Value>)> = vec![
        (
            serde_json::to_value(&plan.config_map)?,
            to_json(find(&stores.config_maps, namespace, &name)),
        ),
        (
            serde_json::to_value(&plan.service)?,
            to_json(find(&stores.services, namespace, &name)),
        ),
        (
            serde_json::to_value(&plan.deployment)?,
            to_json(find(&stores.deployments, namespace, &name)),
        ),
    ];
    for (object, observed) in &desired {
        if apply_if_drifted(&ctx.client, object, observed.as_ref()).await? {
            ctx.metrics
                .writes
                .with_label_values(&[CONTROLLER, "apply"])
                .inc();
        }
    }
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
    let policy = find(&stores.network_policies, namespace, &name);
    reconcile_optional(ctx, namespace, &name, plan.network_policy.as_ref(), policy).await?;
    if let Some(monitor) = &plan.service_monitor {
        // No cache for ServiceMonitors (the CRD may be absent): read before writing.
        let resource = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "monitoring.coreos.com",
            "v1",
            "ServiceMonitor",
        ));
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), namespace, &resource);
        let observed = api
            .get_opt(&name)
            .await?
            .and_then(|o| serde_json::to_value(o).ok());
        if apply_if_drifted(&ctx.client, monitor, observed.as_ref()).await? {
            ctx.metrics
                .writes
                .with_label_values(&[CONTROLLER, "apply"])
                .inc();
        }
    }
    Ok(())
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
            if apply_if_drifted(
                &ctx.client,
                &serde_json::to_value(desired)?,
                to_json(observed).as_ref(),
            )
            .await?
            {
                ctx.metrics
                    .writes
                    .with_label_values(&[CONTROLLER, "apply"])
                    .inc();
            }
        }
        (None, Some(_)) => {
            let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
            delete_ignoring_missing(api.delete(name, &DeleteParams::default()).await)?;
            ctx.metrics
                .writes
                .with_label_values(&[CONTROLLER, "delete"])
                .inc();
        }
        (None, None) => {}
    }
    Ok(())
}

fn delete_ignoring_missing<T>(result: kube::Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Events on meaningful transitions only: the collector became ready or stopped being ready,
/// the channel went missing.
async fn publish_transitions(
    touchpoint: &Touchpoint,
    before: &TouchpointStatus,
    after: &TouchpointStatus,
    ctx: &Context,
) {
    let was_ready = conditions::is_true(&before.conditions, "Ready");
    let is_ready = conditions::is_true(&after.conditions, "Ready");
    let had_channel =
        before.conditions.is_empty() || conditions::is_true(&before.conditions, "ChannelResolved");
    let has_channel = conditions::is_true(&after.conditions, "ChannelResolved");
    let message = |type_: &str| {
        after
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let mut events = Vec::new();
    if is_ready && !was_ready {
        events.push((EventType::Normal, "CollectorReady", message("Ready")));
    } else if was_ready && !is_ready {
        events.push((EventType::Warning, "CollectorNotReady", message("Ready")));
    }
    if had_channel && !has_channel {
        events.push((
            EventType::Warning,
            "ChannelNotFound",
            message("ChannelResolved"),
        ));
    }
    super::publish(
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

/// Backoff key of a touchpoint reference.
pub fn key(object: &ObjectRef<DeserializeGuard<Touchpoint>>) -> String {
    key_of(object)
}
