//! Channel controller: how many touchpoints a channel has, how many collectors are ready, and
//! which journeys it takes part in.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::api::{Channel, ChannelStatus, CustomerJourney, Touchpoint};
use crate::core::analysis::collector_ready;
use crate::core::selector;
use crate::core::world::namespace_of;

use super::conditions::{self, Verdict};
use super::context::{Context, valid_in};
use super::error::Result;
use super::shell;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "channel";

/// The status a channel should have: pure.
pub fn desired_status(
    channel: &Channel,
    touchpoints: &[Touchpoint],
    journeys: &[CustomerJourney],
    now: &Time,
) -> ChannelStatus {
    let namespace = namespace_of(channel);
    let name = channel.name_any();
    let mine: Vec<&Touchpoint> = touchpoints
        .iter()
        .filter(|t| namespace_of(*t) == namespace && t.spec.channel == name)
        .collect();
    let ready = mine.iter().filter(|t| collector_ready(t)).count() as i32;
    let mut journey_names: Vec<String> = journeys
        .iter()
        .filter(|j| namespace_of(*j) == namespace)
        .filter(|j| {
            selector::matches(
                j.spec.channel_selector.as_ref(),
                channel.metadata.labels.as_ref(),
            )
        })
        .map(|j| j.name_any())
        .collect();
    journey_names.sort();
    let total = mine.len() as i32;
    let verdict = if total == 0 {
        Verdict::no(
            "Ready",
            "NoTouchpoints",
            "no touchpoint is declared on this channel: nobody listens to its customers",
        )
    } else if ready < total {
        let mut waiting: Vec<String> = mine
            .iter()
            .filter(|t| !collector_ready(t))
            .map(|t| t.name_any())
            .collect();
        waiting.sort();
        Verdict::no(
            "Ready",
            "CollectorsNotReady",
            format!(
                "{ready}/{total} collectors ready; waiting for {}",
                waiting.join(", ")
            ),
        )
    } else {
        Verdict::yes(
            "Ready",
            "AllCollectorsReady",
            format!("{ready}/{total} collectors ready"),
        )
    };
    let existing = channel.status.clone().unwrap_or_default();
    ChannelStatus {
        observed_generation: channel.metadata.generation,
        touchpoints: total,
        ready_touchpoints: ready,
        journeys: journey_names,
        conditions: conditions::merge(
            &existing.conditions,
            &[verdict],
            channel.metadata.generation,
            now,
        ),
    }
}

/// Reconciles one channel.
pub async fn reconcile(guard: Arc<DeserializeGuard<Channel>>, ctx: Arc<Context>) -> Result<Action> {
    let channel = match &guard.0 {
        Ok(c) => c,
        Err(invalid) => return shell::report_invalid::<Channel>(invalid, &ctx, CONTROLLER).await,
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let namespace = namespace_of(channel);
    let status = desired_status(
        channel,
        &valid_in(&ctx.stores.touchpoints, namespace),
        &valid_in(&ctx.stores.journeys, namespace),
        &now,
    );
    shell::write_status(&ctx, CONTROLLER, channel, &status).await?;
    Ok(Action::requeue(ctx.options.resync))
}

/// The channel a touchpoint is on.
pub fn channel_of_touchpoint(
    touchpoint: &DeserializeGuard<Touchpoint>,
) -> Option<ObjectRef<DeserializeGuard<Channel>>> {
    let t = touchpoint.0.as_ref().ok()?;
    Some(ObjectRef::new(&t.spec.channel).within(namespace_of(t)))
}
