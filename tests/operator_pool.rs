//! Collector pools on the real control plane: the operator (with the chart's RBAC) serves every
//! pooled touchpoint of a namespace from one autoscaled Deployment, reconfigures it in place when
//! touchpoints come, change and go, never fights the autoscaler over `replicas`, and refuses what
//! a Touchpoint author may not ask: an image outside the allowlist, an unmarked Secret.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/operator.rs"]
mod operator_support;

use std::time::{Duration, Instant};

use cluster::{cluster, create, eventually, get};
use cx_conductor::api::Touchpoint;
use cx_conductor::collector::config::{CollectorSetup, POOL_CONFIG_KEY, POOL_NAME};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};
use operator_support::{Operator, default_release, operator_client, options_for};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(60);

fn channel(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "web", "owner": "digital", "serviceLevels": {"firstResponseSeconds": 60}}
    })
}

fn touchpoint(ns: &str, name: &str, collector: Value) -> Value {
    json!({
        "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"channel": "web", "stage": "purchase", "signals": {"surveys": [{"metric": "csat"}]},
                 "collector": collector}
    })
}

/// The touchpoints the pool's configuration Secret lists, with their token digests.
async fn pool_members(admin: &Client, ns: &str) -> Option<Vec<(String, Option<String>)>> {
    let secret: Secret = get(admin, ns, POOL_NAME).await?;
    let data = secret.data?.get(POOL_CONFIG_KEY)?.0.clone();
    let setup = CollectorSetup::from_yaml(std::str::from_utf8(&data).ok()?).ok()?;
    Some(
        setup
            .touchpoints()
            .iter()
            .map(|t| (t.touchpoint.clone(), t.auth_token_sha256.clone()))
            .collect(),
    )
}

async fn names_in_pool(admin: &Client, ns: &str) -> Vec<String> {
    pool_members(admin, ns)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

async fn condition(
    admin: &Client,
    ns: &str,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let status = get::<Touchpoint>(admin, ns, name).await?.status?;
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn event_reasons(admin: &Client, ns: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(admin.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_touchpoints_share_one_autoscaled_collector_reconfigured_in_place() {
    let ns = cluster().namespace("pool").await;
    let admin = cluster().admin();
    let client = operator_client(default_release(), None).await;
    create(&admin, channel(&ns, "web")).await;
    // A token Secret marked for collector auth, with whitespace around the token.
    create(
        &admin,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "till-ingest", "namespace": ns,
                            "labels": {"cx.conductor.dev/collector-auth": "true"}},
               "stringData": {"token": "  till-token\n"}}),
    )
    .await;
    create(&admin, touchpoint(&ns, "checkout", json!({}))).await;
    create(
        &admin,
        touchpoint(
            &ns,
            "till",
            json!({"auth": {"secretRef": {"name": "till-ingest", "key": "token"}}}),
        ),
    )
    .await;
    let operator = Operator::start(client, options_for(&ns));

    assert!(
        eventually(WAIT, || async {
            names_in_pool(&admin, &ns).await == ["checkout", "till"]
                && get::<HorizontalPodAutoscaler>(&admin, &ns, POOL_NAME)
                    .await
                    .is_some()
        })
        .await,
        "one pool configuration with both touchpoints, and its autoscaler: {:?}",
        pool_members(&admin, &ns).await
    );
    let members = pool_members(&admin, &ns).await.unwrap();
    assert_eq!(members[0].1, None);
    assert_eq!(
        members[1].1.as_deref(),
        Some(sha256_hex("till-token").as_str())
    );
    let deployment: Deployment = get(&admin, &ns, POOL_NAME)
        .await
        .expect("the pool Deployment");
    let hpa: HorizontalPodAutoscaler = get(&admin, &ns, POOL_NAME).await.expect("an autoscaler");
    assert_eq!(
        (hpa.spec.min_replicas, hpa.spec.max_replicas),
        (Some(1), 10)
    );
    assert!(get::<Service>(&admin, &ns, POOL_NAME).await.is_some());
    // The operator does not own `replicas`: the autoscaler does.
    let managed = serde_json::to_value(&deployment.metadata.managed_fields).unwrap();
    let ours = managed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "cx-conductor")
        .expect("the operator's fields");
    assert!(ours["fieldsV1"]["f:spec"]["f:replicas"].is_null(), "{ours}");
    assert_eq!(
        deployment.metadata.owner_references.as_ref().map(Vec::len),
        Some(2)
    );

    // Status: the pool's endpoint and readiness, once kwok's pod is Ready.
    assert!(
        eventually(WAIT, || async {
            condition(&admin, &ns, "till", "Ready")
                .await
                .is_some_and(|(s, _, _)| s == "True")
        })
        .await,
        "Ready once the pool is: {:?}",
        condition(&admin, &ns, "till", "Ready").await
    );
    let status = get::<Touchpoint>(&admin, &ns, "till")
        .await
        .unwrap()
        .status
        .unwrap();
    let collector = status.collector.unwrap();
    assert_eq!(
        collector.endpoint.as_deref(),
        Some(format!("http://cx-collectors.{ns}.svc:80/v1/touchpoints/till/events").as_str())
    );
    assert_eq!(collector.pool.as_deref(), Some(POOL_NAME));
    let (_, _, message) = condition(&admin, &ns, "till", "Ready").await.unwrap();
    assert!(
        message.starts_with("collector pool cx-collectors:"),
        "{message}"
    );

    // The autoscaler (here: someone scaling like it) changes replicas; the operator lets it.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    deployments
        .patch(
            POOL_NAME,
            &kube::api::PatchParams::apply("horizontal-pod-autoscaler").force(),
            &kube::api::Patch::Apply(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 3}}),
            ),
        )
        .await
        .expect("scaled");

    // Adding a touchpoint reconfigures the pool in place: no new pod template.
    let template = deployment.spec.template.clone();
    let added = Instant::now();
    create(&admin, touchpoint(&ns, "search", json!({}))).await;
    assert!(
        eventually(WAIT, || async {
            names_in_pool(&admin, &ns).await == ["checkout", "search", "till"]
        })
        .await,
        "the new touchpoint joins the pool"
    );
    let joined = added.elapsed();
    let deployment: Deployment = get(&admin, &ns, POOL_NAME).await.unwrap();
    assert_eq!(
        deployment.spec.template, template,
        "the pool's pods are not rolled: they re-read their configuration"
    );
    let managed = serde_json::to_value(&deployment.metadata.managed_fields).unwrap();
    let replicas_owners: Vec<&Value> = managed
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["fieldsV1"]["f:spec"]["f:replicas"].is_null())
        .map(|m| &m["manager"])
        .collect();
    assert!(
        !replicas_owners.is_empty() && replicas_owners.iter().all(|m| *m != "cx-conductor"),
        "the scaler keeps replicas: {replicas_owners:?}"
    );
    println!(
        "touchpoint apply → pool configuration holds it: {} ms",
        joined.as_millis()
    );

    // A touchpoint that turns dedicated leaves the pool and gets its own collector; back to
    // pooled, its own collector is removed.
    create(
        &admin,
        touchpoint(&ns, "search", json!({"mode": "dedicated"})),
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            names_in_pool(&admin, &ns).await == ["checkout", "till"]
                && get::<Deployment>(&admin, &ns, "collector-search")
                    .await
                    .is_some()
        })
        .await,
        "dedicated: out of the pool, a collector of its own"
    );
    create(&admin, touchpoint(&ns, "search", json!({}))).await;
    assert!(
        eventually(WAIT, || async {
            names_in_pool(&admin, &ns).await == ["checkout", "search", "till"]
                && get::<Deployment>(&admin, &ns, "collector-search")
                    .await
                    .is_none()
                && get::<Service>(&admin, &ns, "collector-search")
                    .await
                    .is_none()
        })
        .await,
        "pooled again: back in the pool, its own collector removed"
    );

    // A deleted touchpoint leaves the pool (the garbage collector drops its owner reference,
    // which the operator sees).
    let touchpoints: Api<Touchpoint> = Api::namespaced(admin.clone(), &ns);
    touchpoints
        .delete("search", &DeleteParams::default())
        .await
        .expect("deleted");
    assert!(
        eventually(WAIT, || async {
            names_in_pool(&admin, &ns).await == ["checkout", "till"]
        })
        .await,
        "a deleted touchpoint leaves the pool: {:?}",
        names_in_pool(&admin, &ns).await
    );
    assert_eq!(operator.reconciles("touchpoint", "error"), 0);

    // The last pooled touchpoints gone: the pool goes with them.
    touchpoints
        .delete("checkout", &DeleteParams::default())
        .await
        .expect("deleted");
    touchpoints
        .delete("till", &DeleteParams::default())
        .await
        .expect("deleted");
    assert!(
        eventually(WAIT, || async {
            get::<Deployment>(&admin, &ns, POOL_NAME).await.is_none()
                && get::<Secret>(&admin, &ns, POOL_NAME).await.is_none()
        })
        .await,
        "no pooled touchpoint, no pool"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_cannot_pick_any_image_or_any_secret() {
    let ns = cluster().namespace("privilege").await;
    let admin = cluster().admin();
    let client = operator_client(default_release(), None).await;
    create(&admin, channel(&ns, "web")).await;
    create(
        &admin,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "database-password", "namespace": ns},
               "stringData": {"password": "hunter2"}}),
    )
    .await;
    create(
        &admin,
        touchpoint(
            &ns,
            "rogue-image",
            json!({"mode": "dedicated", "image": "evil.example/miner:1"}),
        ),
    )
    .await;
    create(
        &admin,
        touchpoint(
            &ns,
            "rogue-secret",
            json!({"auth": {"secretRef": {"name": "database-password", "key": "password"}}}),
        ),
    )
    .await;
    create(&admin, touchpoint(&ns, "fine", json!({}))).await;
    let mut options = options_for(&ns);
    options.plan.allowed_images = vec!["registry.example/cx/*".into()];
    let operator = Operator::start(client, options);

    assert!(
        eventually(WAIT, || async {
            condition(&admin, &ns, "rogue-image", "Admitted")
                .await
                .is_some_and(|(s, _, _)| s == "False")
                && condition(&admin, &ns, "rogue-secret", "Admitted")
                    .await
                    .is_some_and(|(s, _, _)| s == "False")
        })
        .await,
        "both refused"
    );
    let (_, reason, message) = condition(&admin, &ns, "rogue-image", "Admitted")
        .await
        .unwrap();
    assert_eq!(reason, "ImageNotAllowed");
    assert!(
        message.contains("evil.example/miner:1") && message.contains("registry.example/cx/*"),
        "{message}"
    );
    let (_, reason, message) = condition(&admin, &ns, "rogue-secret", "Admitted")
        .await
        .unwrap();
    assert_eq!(reason, "AuthSecretNotUsable");
    assert!(
        message.contains("database-password")
            && message.contains("cx.conductor.dev/collector-auth=true"),
        "{message}"
    );
    // Nothing deployed for the refused ones; the pool serves the admitted one only.
    assert!(
        get::<Deployment>(&admin, &ns, "collector-rogue-image")
            .await
            .is_none()
    );
    assert!(
        eventually(WAIT, || async {
            names_in_pool(&admin, &ns).await == ["fine"]
        })
        .await
    );
    assert!(
        eventually(WAIT, || async {
            event_reasons(&admin, &ns)
                .await
                .iter()
                .filter(|(reason, _)| reason == "CollectorRefused")
                .count()
                == 2
        })
        .await,
        "an Event for each refusal: {:?}",
        event_reasons(&admin, &ns).await
    );

    // Marking the Secret admits the touchpoint: it joins the pool with the password's digest.
    create(
        &admin,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "database-password", "namespace": ns,
                            "labels": {"cx.conductor.dev/collector-auth": "true"}},
               "stringData": {"password": "hunter2"}}),
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            names_in_pool(&admin, &ns).await == ["fine", "rogue-secret"]
        })
        .await,
        "a marked Secret admits it"
    );
    operator.stop().await;
}

/// Each pooled touchpoint's export choices as the pool's configuration holds them: `None` when
/// its events are not exported, else whether comments are.
async fn pool_exports(admin: &Client, ns: &str) -> Option<Vec<(String, Option<bool>)>> {
    let secret: Secret = get(admin, ns, POOL_NAME).await?;
    let data = secret.data?.get(POOL_CONFIG_KEY)?.0.clone();
    let setup = CollectorSetup::from_yaml(std::str::from_utf8(&data).ok()?).ok()?;
    Some(
        setup
            .touchpoints()
            .iter()
            .map(|t| (t.touchpoint.clone(), t.export.as_ref().map(|e| e.comments)))
            .collect(),
    )
}

/// A journey's export choices reach the pooled touchpoints it holds, a touchpoint's own choice
/// overrides them, and a change to the journey reconfigures the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_choose_what_their_touchpoints_export() {
    let ns = cluster().namespace("journey-export").await;
    let admin = cluster().admin();
    let client = operator_client(default_release(), None).await;
    create(&admin, channel(&ns, "web")).await;
    create(&admin, touchpoint(&ns, "checkout", json!({}))).await;
    let mut feedback = touchpoint(&ns, "feedback", json!({}));
    feedback["spec"]["export"] = json!({"comments": true});
    create(&admin, feedback).await;
    let journey = |export: Value| {
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "CustomerJourney",
               "metadata": {"name": "main", "namespace": ns},
               "spec": {"owner": "cx", "stages": ["purchase"], "export": export}})
    };
    create(&admin, journey(json!({"comments": false}))).await;
    let mut options = options_for(&ns);
    options.plan.export = Some(cx_conductor::core::plan::ExportOptions {
        endpoint: "http://otel.observability:4318".into(),
        ..Default::default()
    });
    let operator = Operator::start(client, options);

    let expected = vec![
        ("checkout".to_string(), Some(false)),
        ("feedback".to_string(), Some(true)),
    ];
    assert!(
        eventually(WAIT, || async {
            pool_exports(&admin, &ns).await.as_ref() == Some(&expected)
        })
        .await,
        "the journey withholds the checkout's comments: {:?}",
        pool_exports(&admin, &ns).await
    );
    assert!(
        eventually(WAIT, || async {
            get::<Touchpoint>(&admin, &ns, "checkout")
                .await
                .and_then(|t| t.status)
                .and_then(|s| s.collector)
                .and_then(|c| c.export)
                .as_deref()
                == Some("http://otel.observability:4318/v1/logs")
        })
        .await,
        "status names the export endpoint"
    );
    // The journey opts out: neither touchpoint chose `enabled`, so neither exports.
    create(&admin, journey(json!({"enabled": false}))).await;
    let expected = vec![
        ("checkout".to_string(), None),
        ("feedback".to_string(), None),
    ];
    assert!(
        eventually(WAIT, || async {
            pool_exports(&admin, &ns).await.as_ref() == Some(&expected)
        })
        .await,
        "the journey opts both out: {:?}",
        pool_exports(&admin, &ns).await
    );
    assert!(
        eventually(WAIT, || async {
            get::<Touchpoint>(&admin, &ns, "checkout")
                .await
                .and_then(|t| t.status)
                .and_then(|s| s.collector)
                .is_some_and(|c| c.export.is_none())
        })
        .await,
        "status no longer names an export endpoint"
    );
    operator.stop().await;
}
