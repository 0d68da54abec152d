//! The thin shell every controller shares: fetch from the caches, call the pure core, then the
//! three kinds of write made here and nowhere else — apply owned objects, write status, publish
//! Events — each counted in the `cx_api_writes_total` metric. A new kind needs a
//! [`Reported`] impl and a pure `desired_status`.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::{
    Channel, ChannelStatus, CustomerJourney, CustomerJourneyStatus, ExperienceKPI,
    ExperienceKPIStatus, Touchpoint, TouchpointStatus,
};
use crate::core::plan::FIELD_MANAGER;

use super::apply::apply_if_drifted;
use super::context::{Context, key_of_object};
use super::error::{Error, Result};

/// events.k8s.io/v1 refuses notes over 1 KiB.
pub const EVENT_NOTE_LIMIT: usize = 1024;

/// A kind whose status the operator writes.
pub trait Reported:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Its status type.
    type Status: Serialize + PartialEq + Clone + Send + Sync;
    /// Its current status.
    fn current_status(&self) -> Option<&Self::Status>;
}

macro_rules! reported {
    ($($kind:ty => $status:ty),*) => {$(
        impl Reported for $kind {
            type Status = $status;
            fn current_status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
        }
    )*};
}
reported!(
    Channel => ChannelStatus,
    Touchpoint => TouchpointStatus,
    ExperienceKPI => ExperienceKPIStatus,
    CustomerJourney => CustomerJourneyStatus
);

/// Writes `status` unless the object already has it. Server-side apply of the status
/// subresource by the operator's field manager: a field that became empty or absent is removed
/// from the server's copy, so status converges exactly and the next compare finds nothing to do.
pub async fn write_status<K: Reported>(
    ctx: &Context,
    controller: &'static str,
    object: &K,
    status: &K::Status,
) -> Result<bool> {
    if object.current_status() == Some(status) {
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(
        ctx.client.clone(),
        object.meta().namespace.as_deref().unwrap_or("default"),
    );
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            &object.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await;
    match written {
        Ok(_) => {}
        // Deleted since the cache saw it (a pool change reconciles every member, the one being
        // deleted included): there is no status left to write.
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(false),
        Err(error) => return Err(error.into()),
    }
    count(ctx, controller, "status");
    Ok(true)
}

/// Applies each `(desired, observed)` pair that drifted.
pub async fn apply_all(
    ctx: &Context,
    controller: &'static str,
    objects: &[(Value, Option<Value>)],
) -> Result<()> {
    for (desired, observed) in objects {
        if apply_if_drifted(&ctx.client, desired, observed.as_ref()).await? {
            count(ctx, controller, "apply");
        }
    }
    Ok(())
}

/// Deletes an owned object that is no longer planned (gone already is fine).
pub async fn delete<K>(
    ctx: &Context,
    controller: &'static str,
    api: &Api<K>,
    name: &str,
) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            count(ctx, controller, "delete");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

fn count(ctx: &Context, controller: &'static str, write: &str) {
    ctx.metrics
        .writes
        .with_label_values(&[controller, write])
        .inc();
}

/// `text` cut to at most `limit` bytes on a character boundary, marked with an ellipsis.
pub fn shorten(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let ellipsis = "…";
    let mut end = limit - ellipsis.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}

/// Publishes Events about one object (kube's recorder folds repeats into a series). Notes are
/// shortened to what events.k8s.io accepts, so a long message never costs the Event.
pub async fn publish(
    ctx: &Context,
    controller: &'static str,
    action: &str,
    reference: &ObjectReference,
    events: Vec<(EventType, &str, String)>,
) {
    for (type_, reason, note) in events {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(shorten(&note, EVENT_NOTE_LIMIT)),
            action: action.into(),
            secondary: None,
        };
        match ctx.recorder.publish(&event, reference).await {
            Ok(()) => count(ctx, controller, "event"),
            Err(error) => tracing::warn!(controller, reason, %error, "cannot publish an Event"),
        }
    }
}

/// An object that does not parse as its kind: reported as a Warning Event on it, and left out
/// of every computation, so it never blocks the valid ones.
pub async fn report_invalid<K: Resource<DynamicType = ()>>(
    invalid: &InvalidObject,
    ctx: &Context,
    controller: &'static str,
) -> Result<Action> {
    let meta = &invalid.metadata;
    let reference = ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    };
    tracing::warn!(controller, name = ?meta.name, namespace = ?meta.namespace, error = %invalid.error, "invalid object skipped");
    let note = format!("cannot be read as a {}: {}", K::kind(&()), invalid.error);
    publish(
        ctx,
        controller,
        "Validate",
        &reference,
        vec![(EventType::Warning, "InvalidObject", note)],
    )
    .await;
    Ok(Action::await_change())
}

/// Records the outcome of a reconcile in metrics and the backoff bookkeeping.
pub async fn observed(
    controller: &'static str,
    key: String,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action>>,
) -> Result<Action> {
    let timer = ctx
        .metrics
        .reconcile_duration
        .with_label_values(&[controller])
        .start_timer();
    let result = reconcile.await;
    timer.observe_duration();
    match &result {
        Ok(_) => {
            ctx.metrics
                .reconciles
                .with_label_values(&[controller, "ok"])
                .inc();
            ctx.succeeded(&key);
        }
        Err(error) => {
            ctx.metrics
                .reconciles
                .with_label_values(&[controller, "error"])
                .inc();
            ctx.metrics
                .reconcile_errors
                .with_label_values(&[controller, error.reason()])
                .inc();
            tracing::warn!(controller, object = %key, reason = error.reason(), %error, "reconcile failed");
        }
    }
    result
}

/// Retry with exponential backoff per object, so one failing object never slows the others.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    _error: &Error,
    ctx: Arc<Context>,
) -> Action {
    Action::requeue(ctx.backoff(&key_of_object(object.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_shortened_on_a_character_boundary() {
        let long = "é".repeat(600);
        let short = shorten(&long, EVENT_NOTE_LIMIT);
        assert!(short.len() <= EVENT_NOTE_LIMIT, "{}", short.len());
        assert!(short.ends_with('…'));
        assert_eq!(shorten("fits", 10), "fits");
    }
}
