//! Tests of the in-process fake API server (`cx_conductor::testing::apiserver`), driven through a
//! real `kube::Client` over HTTP, so controller tests can trust what it models.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cx_conductor::api::Touchpoint;
use cx_conductor::testing::{FakeApiServer, Fault, FaultRule, ResourceKind};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::{Controller, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const NS: &str = "shop";

fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn touchpoint(name: &str, channel: &str) -> Touchpoint {
    serde_json::from_value(json!({
        "apiVersion": "cx.conductor.dev/v1alpha1",
        "kind": "Touchpoint",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"channel": channel, "stage": "purchase", "signals": {"surveys": [{"metric": "nps"}]}},
    }))
    .expect("a valid Touchpoint")
}

fn deployment(name: &str, replicas: i32, labels: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))
    .expect("a valid Deployment")
}

fn api_error(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn rv<K: Resource>(obj: &K) -> u64 {
    obj.meta()
        .resource_version
        .as_deref()
        .expect("resourceVersion set")
        .parse()
        .expect("numeric resourceVersion")
}

#[tokio::test]
async fn create_get_list_delete() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let pp = PostParams::default();

    let mut labelled = configmap("a", &[("k", "v")]);
    labelled.metadata.labels = Some(BTreeMap::from([("app".into(), "web".into())]));
    let created = cms.create(&pp, &labelled).await.unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some(NS));
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    cms.create(&pp, &configmap("b", &[])).await.unwrap();
    let other_ns: Api<ConfigMap> = Api::namespaced(server.client(), "elsewhere");
    other_ns.create(&pp, &configmap("a", &[])).await.unwrap();

    let got = cms.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");
    assert_eq!(got.metadata.uid, created.metadata.uid);

    let list = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let list_rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert_eq!(list_rv, server.resource_version());

    let by_label = cms
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(by_label.items.len(), 1);
    let not_web = cms
        .list(&ListParams::default().labels("app!=web"))
        .await
        .unwrap();
    assert_eq!(not_web.items[0].name_any(), "b");
    let all: Api<ConfigMap> = Api::all(server.client());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );
    let by_field = all
        .list(&ListParams::default().fields("metadata.name=a,metadata.namespace=elsewhere"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);
    assert_eq!(by_field.items[0].namespace().as_deref(), Some("elsewhere"));

    // Pagination as the watcher does it.
    let page = all.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().expect("a continue token");
    let rest = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.metadata.continue_.unwrap_or_default().is_empty());

    // PartialObjectMetadata, as metadata watchers use.
    let meta = cms.get_metadata("a").await.unwrap();
    assert_eq!(meta.metadata.uid, created.metadata.uid);
    let metas = cms.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(metas.items.len(), 2);

    let gone = cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(
        gone.is_right(),
        "an object without finalizers is deleted at once"
    );
    assert!(api_error(cms.get("a").await.unwrap_err()).is_not_found());
    assert_eq!(cms.get_opt("a").await.unwrap(), None);
    assert!(server.get("configmaps", Some("elsewhere"), "a").is_some());
    server.shutdown().await;
}

#[tokio::test]
async fn errors_are_kubernetes_statuses() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let pp = PostParams::default();

    let missing = api_error(cms.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");
    assert!(
        api_error(
            cms.delete("nope", &DeleteParams::default())
                .await
                .unwrap_err()
        )
        .is_not_found()
    );

    let first = cms
        .create(&pp, &configmap("x", &[("a", "1")]))
        .await
        .unwrap();
    let dup = api_error(cms.create(&pp, &configmap("x", &[])).await.unwrap_err());
    assert_eq!(dup.code, 409);
    assert!(dup.is_already_exists());

    // Replace with the current resourceVersion succeeds; with a stale one it conflicts.
    let mut update = first.clone();
    update.data = Some(BTreeMap::from([("a".into(), "2".into())]));
    let updated = cms.replace("x", &pp, &update).await.unwrap();
    assert!(rv(&updated) > rv(&first));
    let stale = api_error(cms.replace("x", &pp, &update).await.unwrap_err());
    assert_eq!(stale.code, 409);
    assert!(stale.is_conflict());
    assert!(!stale.is_already_exists());
    // A merge patch carrying a stale resourceVersion is a conflict too.
    let stale_patch =
        json!({"metadata": {"resourceVersion": first.resource_version()}, "data": {"a": "3"}});
    let err = api_error(
        cms.patch("x", &PatchParams::default(), &Patch::Merge(&stale_patch))
            .await
            .unwrap_err(),
    );
    assert!(err.is_conflict());

    let unnamed = api_error(cms.create(&pp, &ConfigMap::default()).await.unwrap_err());
    assert_eq!((unnamed.code, unnamed.reason.as_str()), (422, "Invalid"));
    let bad_name = api_error(
        cms.create(&pp, &configmap("Not_Valid", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad_name.code, 422);

    // Unknown resources are 404 like a missing CRD.
    let monitors: Api<DynamicObject> = Api::namespaced_with(
        server.client(),
        NS,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "monitoring.coreos.com",
            "v1",
            "ServiceMonitor",
        )),
    );
    assert!(api_error(monitors.list(&ListParams::default()).await.unwrap_err()).is_not_found());
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_skips_noops() {
    let server = FakeApiServer::start().await;
    let deploys: Api<Deployment> = Api::namespaced(server.client(), NS);
    let ssa = PatchParams::apply("cx-conductor").force();

    let desired = deployment("collector", 2, json!({"app": "collector", "team": "cx"}));
    let created = deploys
        .patch("collector", &ssa, &Patch::Apply(&desired))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.spec.replicas, Some(2));
    let created_rv = rv(&created);

    // The same apply again: no write, no new resourceVersion, no watch event.
    let mark = server.mark();
    let again = deploys
        .patch("collector", &ssa, &Patch::Apply(&desired))
        .await
        .unwrap();
    assert_eq!(rv(&again), created_rv);
    assert_eq!(again.metadata.generation, Some(1));
    assert_eq!(server.resource_version(), created_rv);
    let writes = server.writes_since(mark);
    assert_eq!(writes.len(), 1);
    assert!(!writes[0].changed);
    assert_eq!(writes[0].method, "PATCH");
    assert!(server.changes_since(mark).is_empty());

    // A spec change bumps generation; a label the manager stops applying is removed,
    // a label another client set is kept.
    let mut other = Patch::Merge(json!({"metadata": {"labels": {"owner": "someone-else"}}}));
    deploys
        .patch("collector", &PatchParams::default(), &other)
        .await
        .unwrap();
    let changed = deployment("collector", 3, json!({"app": "collector"}));
    let updated = deploys
        .patch("collector", &ssa, &Patch::Apply(&changed))
        .await
        .unwrap();
    assert_eq!(updated.metadata.generation, Some(2));
    assert_eq!(updated.spec.replicas, Some(3));
    let labels = updated.metadata.labels.clone().unwrap();
    assert_eq!(labels.get("team"), None);
    assert_eq!(labels["owner"], "someone-else");
    assert_eq!(labels["app"], "collector");
    assert!(rv(&updated) > created_rv);

    // A label-only change keeps generation.
    other = Patch::Merge(json!({"metadata": {"labels": {"owner": "me"}}}));
    let relabelled = deploys
        .patch("collector", &PatchParams::default(), &other)
        .await
        .unwrap();
    assert_eq!(relabelled.metadata.generation, Some(2));

    // Apply without a field manager is rejected (kube checks it client-side first).
    let raw = server.client();
    let req = http::Request::patch(format!(
        "/apis/apps/v1/namespaces/{NS}/deployments/collector"
    ))
    .header("content-type", "application/apply-patch+yaml")
    .body(serde_json::to_vec(&changed).unwrap())
    .unwrap();
    let err = api_error(raw.request_text(req).await.unwrap_err());
    assert_eq!(err.code, 422);
}

#[tokio::test]
async fn merge_and_json_patches() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    cms.create(
        &PostParams::default(),
        &configmap("p", &[("a", "1"), ("b", "2")]),
    )
    .await
    .unwrap();

    let merged = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .unwrap();
    let data = merged.data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["b", "c"]);

    // JSON patch over raw HTTP (kube's `Patch::Json` needs the `jsonpatch` feature).
    let req = http::Request::patch(format!("/api/v1/namespaces/{NS}/configmaps/p"))
        .header("content-type", "application/json-patch+json")
        .body(
            serde_json::to_vec(&json!([
                {"op": "test", "path": "/data/b", "value": "2"},
                {"op": "replace", "path": "/data/b", "value": "20"},
                {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
            ]))
            .unwrap(),
        )
        .unwrap();
    let text = server.client().request_text(req).await.unwrap();
    let patched: ConfigMap = serde_json::from_str(&text).unwrap();
    assert_eq!(patched.data.unwrap()["b"], "20");
    assert_eq!(patched.metadata.labels.unwrap()["x"], "y");

    let failing = http::Request::patch(format!("/api/v1/namespaces/{NS}/configmaps/p"))
        .header("content-type", "application/json-patch+json")
        .body(
            serde_json::to_vec(&json!([{"op": "test", "path": "/data/b", "value": "2"}])).unwrap(),
        )
        .unwrap();
    let err = api_error(server.client().request_text(failing).await.unwrap_err());
    assert_eq!(err.code, 422);
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let server = FakeApiServer::start().await;
    let tps: Api<Touchpoint> = Api::namespaced(server.client(), NS);
    let mut tp = touchpoint("checkout", "web");
    tp.status = Some(serde_json::from_value(json!({"observedGeneration": 99})).unwrap());

    let created = tps.create(&PostParams::default(), &tp).await.unwrap();
    assert_eq!(created.status, None, "status is dropped on create");
    assert_eq!(created.metadata.generation, Some(1));

    // Status through the main resource is ignored (and a pure status change is a no-op).
    let mark = server.mark();
    let ignored = tps
        .patch(
            "checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(ignored.status, None);
    assert_eq!(rv(&ignored), rv(&created));
    assert!(server.changes_since(mark).is_empty());

    // A status write changes only status: no generation bump, new resourceVersion.
    let with_status = tps
        .patch_status(
            "checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1}, "spec": {"channel": "evil"}, "metadata": {"labels": {"no": "pe"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        with_status.status.as_ref().unwrap().observed_generation,
        Some(1)
    );
    assert_eq!(with_status.spec.channel, "web");
    assert_eq!(with_status.metadata.labels, None);
    assert_eq!(with_status.metadata.generation, Some(1));
    assert!(rv(&with_status) > rv(&created));
    assert_eq!(
        tps.get_status("checkout").await.unwrap().status,
        with_status.status
    );

    // A spec change bumps generation and keeps the stored status.
    let mut changed = with_status.clone();
    changed.spec.channel = "app".into();
    changed.status = None;
    let replaced = tps
        .replace("checkout", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(replaced.status, with_status.status);

    // Status apply and replace_status, via the status subresource.
    let applied = tps
        .patch_status(
            "checkout",
            &PatchParams::apply("cx-conductor"),
            &Patch::Apply(json!({
                "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
                "status": {"observedGeneration": 2},
            })),
        )
        .await
        .unwrap();
    assert_eq!(
        applied.status.as_ref().unwrap().observed_generation,
        Some(2)
    );
    assert_eq!(applied.metadata.generation, Some(2));
    let mut cleared = applied.clone();
    cleared.status = Some(Default::default());
    let cleared = tps
        .replace_status("checkout", &PostParams::default(), &cleared)
        .await
        .unwrap();
    assert_eq!(cleared.status.unwrap().observed_generation, None);

    // Direct helper: another controller writes status, generation stays.
    let helper = server
        .patch_status(
            "touchpoints.cx.conductor.dev",
            Some(NS),
            "checkout",
            json!({"observedGeneration": 7}),
        )
        .unwrap();
    assert_eq!(helper["status"]["observedGeneration"], 7);
    assert_eq!(helper["metadata"]["generation"], 2);
    let typed: Touchpoint = server.get_as(Some(NS), "checkout").unwrap();
    assert_eq!(typed.status.unwrap().observed_generation, Some(7));

    // Deployment status helper.
    let deploys: Api<Deployment> = Api::namespaced(server.client(), NS);
    deploys
        .create(&PostParams::default(), &deployment("d", 2, json!({})))
        .await
        .unwrap();
    server.set_deployment_available(NS, "d", 2).unwrap();
    let status = deploys.get_status("d").await.unwrap().status.unwrap();
    assert_eq!(status.ready_replicas, Some(2));
    assert_eq!(status.observed_generation, Some(1));
    let available = status.conditions.unwrap();
    assert_eq!(available[0].type_.as_deref(), Some("Available"));
    assert_eq!(available[0].status.as_deref(), Some("True"));
}

#[tokio::test]
async fn watcher_sees_added_modified_deleted() {
    let server = FakeApiServer::builder()
        .bookmark_interval(Duration::from_millis(50))
        .start()
        .await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    cms.create(&PostParams::default(), &configmap("before", &[]))
        .await
        .unwrap();

    let mut events = watcher(
        cms.clone(),
        watcher::Config::default().labels("watched=yes"),
    )
    .boxed();
    let mut next = async || {
        tokio::time::timeout(WAIT, events.try_next())
            .await
            .expect("a watcher event in time")
            .expect("no watcher error")
            .expect("the stream goes on")
    };
    assert!(matches!(next().await, watcher::Event::Init));
    assert!(
        matches!(next().await, watcher::Event::InitDone),
        "`before` is not labelled"
    );

    let mut cm = configmap("w", &[("v", "1")]);
    cm.metadata.labels = Some(BTreeMap::from([("watched".into(), "yes".into())]));
    cms.create(&PostParams::default(), &cm).await.unwrap();
    match next().await {
        watcher::Event::Apply(o) => assert_eq!(o.name_any(), "w"),
        other => panic!("expected ADDED as Apply, got {other:?}"),
    }
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    match next().await {
        watcher::Event::Apply(o) => assert_eq!(o.data.unwrap()["v"], "2"),
        other => panic!("expected MODIFIED as Apply, got {other:?}"),
    }
    // Leaving the selector is seen as a deletion; changes elsewhere are not seen at all.
    cms.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "y"}})),
    )
    .await
    .unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    match next().await {
        watcher::Event::Delete(o) => assert_eq!(o.name_any(), "w"),
        other => panic!("expected DELETED, got {other:?}"),
    }

    // Raw watch: replay from a resourceVersion, bookmarks, and 410 after compaction.
    let start = server.resource_version();
    cms.create(&PostParams::default(), &configmap("late", &[]))
        .await
        .unwrap();
    let wp = WatchParams::default().timeout(5);
    let mut raw = cms.watch(&wp, &start.to_string()).await.unwrap().boxed();
    match tokio::time::timeout(WAIT, raw.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Added(o)) => assert_eq!(o.name_any(), "late"),
        other => panic!("expected ADDED for late, got {other:?}"),
    }
    match tokio::time::timeout(WAIT, raw.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Bookmark(b)) => {
            assert_eq!(
                b.metadata.resource_version,
                server.resource_version().to_string()
            )
        }
        other => panic!("expected a BOOKMARK, got {other:?}"),
    }
    // The stream ends after timeoutSeconds (bookmarks keep coming until then).
    let started = tokio::time::Instant::now();
    let short = WatchParams::default().timeout(1);
    let mut ending = cms
        .watch(&short, &server.resource_version().to_string())
        .await
        .unwrap()
        .boxed();
    while let Some(event) = tokio::time::timeout(WAIT, ending.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        assert!(
            matches!(event, WatchEvent::Bookmark(_)),
            "only bookmarks: {event:?}"
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(900));

    server.compact_history();
    let mut expired = cms.watch(&wp, &start.to_string()).await.unwrap().boxed();
    match tokio::time::timeout(WAIT, expired.try_next())
        .await
        .unwrap()
    {
        Ok(Some(WatchEvent::Error(status))) => assert_eq!(status.code, 410),
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }

    // Streaming lists (sendInitialEvents) end the initial state with a bookmark.
    let mut streaming = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, streaming.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(watcher::Event::InitApply(o)) => seen.push(o.name_any()),
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => panic!("stream ended"),
        }
    }
    assert_eq!(seen, ["before", "late"]);
}

#[tokio::test]
async fn owner_reference_garbage_collection() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let tps: Api<Touchpoint> = Api::namespaced(client.clone(), NS);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let pp = PostParams::default();

    let owner = tps.create(&pp, &touchpoint("owner", "web")).await.unwrap();
    let owner_ref: OwnerReference = owner.controller_owner_ref(&()).unwrap();
    let mut child_cm = configmap("owned-config", &[]);
    child_cm.metadata.owner_references = Some(vec![owner_ref.clone()]);
    let child_cm = cms.create(&pp, &child_cm).await.unwrap();
    let mut child_deploy = deployment("owned-deploy", 1, json!({}));
    child_deploy.metadata.owner_references = Some(vec![owner_ref.clone()]);
    deploys.create(&pp, &child_deploy).await.unwrap();
    // A grandchild owned by the ConfigMap, and a child that keeps a finalizer.
    let mut grandchild = configmap("grandchild", &[]);
    grandchild.metadata.owner_references = Some(vec![child_cm.controller_owner_ref(&()).unwrap()]);
    cms.create(&pp, &grandchild).await.unwrap();
    let mut guarded = configmap("guarded", &[]);
    guarded.metadata.owner_references = Some(vec![owner_ref.clone()]);
    guarded.metadata.finalizers = Some(vec!["cx.conductor.dev/hold".into()]);
    cms.create(&pp, &guarded).await.unwrap();
    cms.create(&pp, &configmap("unrelated", &[])).await.unwrap();

    let gone = tps
        .delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert!(gone.is_right());
    assert_eq!(cms.get_opt("owned-config").await.unwrap(), None);
    assert_eq!(cms.get_opt("grandchild").await.unwrap(), None);
    assert_eq!(deploys.get_opt("owned-deploy").await.unwrap(), None);
    let guarded = cms.get("guarded").await.unwrap();
    assert!(guarded.metadata.deletion_timestamp.is_some());
    assert!(cms.get_opt("unrelated").await.unwrap().is_some());

    // Orphan propagation keeps dependents and strips the owner reference.
    let owner = tps.create(&pp, &touchpoint("owner2", "web")).await.unwrap();
    let mut orphan = configmap("orphan", &[]);
    orphan.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    cms.create(&pp, &orphan).await.unwrap();
    tps.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    let orphan = cms.get("orphan").await.unwrap();
    assert_eq!(orphan.metadata.owner_references, None);
}

#[tokio::test]
async fn finalizers_block_deletion() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let mut cm = configmap("held", &[]);
    cm.metadata.finalizers = Some(vec!["example.com/cleanup".into()]);
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();

    let pending = cms.delete("held", &DeleteParams::default()).await.unwrap();
    let terminating = pending.left().expect("deletion pending, object returned");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.generation, Some(2));
    assert!(rv(&terminating) > rv(&created));
    assert!(
        cms.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    // Deleting again changes nothing.
    let mark = server.mark();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(server.changes_since(mark).is_empty());

    // No new finalizers on a terminating object.
    let err = api_error(
        cms.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/cleanup", "another"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);

    // Removing the last finalizer completes the deletion.
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(cms.get_opt("held").await.unwrap(), None);
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[tokio::test]
async fn kube_finalizer_helper_works_against_the_fake() {
    let server = FakeApiServer::start().await;
    let tps: Api<Touchpoint> = Api::namespaced(server.client(), NS);
    tps.create(&PostParams::default(), &touchpoint("fin", "web"))
        .await
        .unwrap();
    const NAME: &str = "cx.conductor.dev/cleanup";

    // First pass adds the finalizer (JSON patch with a `test` against a missing path).
    let obj = Arc::new(tps.get("fin").await.unwrap());
    finalizer(&tps, NAME, obj, |_| async {
        Ok::<_, Never>(Action::await_change())
    })
    .await
    .unwrap();
    assert_eq!(tps.get("fin").await.unwrap().finalizers(), [NAME]);

    tps.delete("fin", &DeleteParams::default()).await.unwrap();
    let cleaned = Arc::new(Mutex::new(false));
    let obj = Arc::new(tps.get("fin").await.unwrap());
    let flag = cleaned.clone();
    finalizer(&tps, NAME, obj, |event| async move {
        if let FinalizerEvent::Cleanup(_) = event {
            *flag.lock().unwrap() = true;
        }
        Ok::<_, Never>(Action::await_change())
    })
    .await
    .unwrap();
    assert!(*cleaned.lock().unwrap());
    assert_eq!(tps.get_opt("fin").await.unwrap(), None);
}

#[tokio::test]
async fn fault_injection() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let pp = PostParams::default();

    // A 500 on the next create, then success.
    server.inject(
        FaultRule::new(Fault::internal_error())
            .method("POST")
            .path("/configmaps"),
    );
    let err = api_error(cms.create(&pp, &configmap("f", &[])).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    assert_eq!(
        cms.get_opt("f").await.unwrap(),
        None,
        "the faulted request did nothing"
    );
    let created = cms.create(&pp, &configmap("f", &[])).await.unwrap();
    assert!(server.pending_faults().is_empty());

    // A 409 on replace (twice), then success.
    server.inject(FaultRule::new(Fault::conflict()).method("PUT").times(2));
    for _ in 0..2 {
        assert!(api_error(cms.replace("f", &pp, &created).await.unwrap_err()).is_conflict());
    }
    cms.replace("f", &pp, &created).await.unwrap();

    // A delay longer than the client's read timeout fails the client; the write still lands.
    let impatient: Api<ConfigMap> = Api::namespaced(
        server.client_with_read_timeout(Duration::from_millis(200)),
        NS,
    );
    server.inject(FaultRule::new(Fault::Delay(Duration::from_millis(1500))).method("POST"));
    let err = impatient
        .create(&pp, &configmap("slow", &[]))
        .await
        .unwrap_err();
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "a transport error, got {err:?}"
    );
    assert!(
        server
            .wait_until(WAIT, |s| s.get("configmaps", Some(NS), "slow").is_some())
            .await
    );

    // A dropped connection, then success.
    server.inject(
        FaultRule::new(Fault::DropConnection)
            .method("GET")
            .path("/configmaps/f"),
    );
    let err = cms.get("f").await.unwrap_err();
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "a transport error, got {err:?}"
    );
    assert_eq!(cms.get("f").await.unwrap().name_any(), "f");

    let faulted: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.fault.is_some())
        .collect();
    assert_eq!(faulted.len(), 5);
    assert_eq!(faulted[0].status, 500);
}

#[tokio::test]
async fn request_log_counts_writes() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let ssa = PatchParams::apply("test");
    let mark = server.mark();

    cms.create(&PostParams::default(), &configmap("one", &[]))
        .await
        .unwrap();
    cms.patch("two", &ssa, &Patch::Apply(&configmap("two", &[("a", "1")])))
        .await
        .unwrap();
    cms.get("one").await.unwrap();
    cms.list(&ListParams::default()).await.unwrap();
    cms.patch("two", &ssa, &Patch::Apply(&configmap("two", &[("a", "1")])))
        .await
        .unwrap();
    cms.delete("one", &DeleteParams::default()).await.unwrap();

    let all = server.requests_since(mark);
    assert_eq!(all.len(), 6);
    let writes = server.writes_since(mark);
    assert_eq!(
        writes
            .iter()
            .map(|w| (w.method.as_str(), w.changed))
            .collect::<Vec<_>>(),
        [
            ("POST", true),
            ("PATCH", true),
            ("PATCH", false),
            ("DELETE", true)
        ]
    );
    assert_eq!(server.changes_since(mark).len(), 3);
    assert_eq!(all[1].body.as_ref().unwrap()["data"]["a"], "1");
    assert!(all[1].query.contains("fieldManager=test"));

    let later = server.mark();
    server.clear_log();
    assert!(server.requests().is_empty());
    cms.get_opt("one").await.unwrap();
    assert_eq!(server.requests_since(later).len(), 1);
    assert!(server.writes_since(later).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_reconciles_each_object_once() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    for name in ["a", "b", "c"] {
        cms.create(&PostParams::default(), &configmap(name, &[]))
            .await
            .unwrap();
    }

    type Counts = Arc<Mutex<HashMap<String, u32>>>;
    let counts: Counts = Arc::default();
    let controller = Controller::new(cms.clone(), watcher::Config::default())
        .run(
            |cm: Arc<ConfigMap>, counts: Arc<Counts>| async move {
                *counts.lock().unwrap().entry(cm.name_any()).or_default() += 1;
                Ok::<_, Never>(Action::await_change())
            },
            |_, _, _| Action::requeue(Duration::from_secs(60)),
            Arc::new(counts.clone()),
        )
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);

    let count = |name: &str| counts.lock().unwrap().get(name).copied().unwrap_or(0);
    assert!(
        server
            .wait_until(WAIT, |_| ["a", "b", "c"].iter().all(|n| count(n) == 1))
            .await,
        "each existing object reconciled: {:?}",
        counts.lock().unwrap()
    );
    // A new object arrives through the watch; nothing else is reconciled again.
    cms.create(&PostParams::default(), &configmap("d", &[]))
        .await
        .unwrap();
    assert!(server.wait_until(WAIT, |_| count("d") == 1).await);
    // A change is reconciled once more.
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    assert!(server.wait_until(WAIT, |_| count("a") == 2).await);
    assert_eq!((count("b"), count("c"), count("d")), (1, 1, 1));
    let watches = server
        .requests()
        .into_iter()
        .filter(|r| r.is_watch())
        .count();
    assert!(watches >= 1, "the controller watched");
    handle.abort();
}

#[tokio::test]
async fn discovery_custom_kinds_and_events() {
    let server = FakeApiServer::builder()
        .kind(ResourceKind::new(
            "monitoring.coreos.com",
            "v1",
            "ServiceMonitor",
            "servicemonitors",
            true,
            false,
        ))
        .start()
        .await;
    let client = server.client();

    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    assert!(discovery.has_group("monitoring.coreos.com"));
    let (tp, caps) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "cx.conductor.dev",
            "v1alpha1",
            "Touchpoint",
        ))
        .expect("touchpoints discovered");
    assert_eq!(tp.plural, "touchpoints");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(caps.subresources.iter().any(|(r, _)| r.plural == "status"));
    let aggregated = kube::discovery::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert!(aggregated.has_group("apps"));
    assert_eq!(client.apiserver_version().await.unwrap().major, "1");

    let monitors: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "monitoring.coreos.com",
            "v1",
            "ServiceMonitor",
        )),
    );
    let sm: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "collector"}, "spec": {"endpoints": [{"port": "metrics"}]},
    }))
    .unwrap();
    monitors.create(&PostParams::default(), &sm).await.unwrap();
    assert_eq!(
        server
            .list("servicemonitors.monitoring.coreos.com", Some(NS))
            .len(),
        1
    );

    // Creating a CRD object serves its kind.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "prometheusrules.monitoring.coreos.com"},
            "spec": {
                "group": "monitoring.coreos.com", "scope": "Namespaced",
                "names": {"kind": "PrometheusRule", "plural": "prometheusrules"},
                "versions": [{"name": "v1", "served": true, "storage": true}],
            },
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    assert!(
        discovery
            .resolve_gvk(&kube::api::GroupVersionKind::gvk(
                "monitoring.coreos.com",
                "v1",
                "PrometheusRule"
            ))
            .is_some()
    );

    // kube's event Recorder posts events.k8s.io/v1 Events.
    let tps: Api<Touchpoint> = Api::namespaced(client.clone(), NS);
    let tp = tps
        .create(&PostParams::default(), &touchpoint("evt", "web"))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "cx-conductor".into(),
            instance: None,
        },
    );
    recorder
        .publish(
            &KubeEvent {
                type_: EventType::Normal,
                reason: "Reconciled".into(),
                note: Some("ok".into()),
                action: "Reconcile".into(),
                secondary: None,
            },
            &tp.object_ref(&()),
        )
        .await
        .unwrap();
    let events = server.list("events.events.k8s.io", Some(NS));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "Reconciled");
    assert_eq!(events[0]["regarding"]["name"], "evt");
}
