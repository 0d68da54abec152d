//! The operator on the real control plane (kube-apiserver with RBAC, etcd, controller-manager,
//! scheduler, kwok): it runs in this process with a token of the chart's own ServiceAccount, so
//! the chart's RBAC authorises every request; Deployments become available because kwok makes
//! their pods Ready; garbage collection, server-side apply, field ownership, canonicalisation and
//! Event validation are the server's own. Every test works in a namespace of its own.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/operator.rs"]
mod operator_support;
#[path = "support/proxy.rs"]
mod proxy;

use std::time::Duration;

use cluster::{cluster, create, eventually, get};
use cx_conductor::api::{Channel, CustomerJourney, Touchpoint};
use cx_conductor::core::plan::{CONFIG_HASH_ANNOTATION, PlanOptions};
use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use operator_support::{Operator, default_release, full_release, operator_client, options_for};
use proxy::{Fault, FaultProxy, FaultRule};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn channel(ns: &str, name: &str, voice: &str) -> Value {
    json!({
        "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
        "metadata": {"name": name, "namespace": ns, "labels": {"journey": "main"}},
        "spec": {"type": "web", "owner": "digital", "brand": {"voice": voice},
                 "privacy": {"consentPolicyVersion": "v7"}, "serviceLevels": {"firstResponseSeconds": 60}}
    })
}

fn touchpoint(ns: &str, name: &str, channel: &str, stage: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"channel": channel, "stage": stage, "signals": {"surveys": [{"metric": "csat"}]},
                 "collector": {"mode": "dedicated", "replicas": replicas, "maxEventBytes": 65536}}
    })
}

fn journey(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "CustomerJourney",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"owner": "cx-office", "stages": ["purchase"], "channelSelector": {"matchLabels": {"journey": "main"}},
                 "consistency": {"rules": [{"field": "brand.voice", "policy": "equal"}]},
                 "coverage": {"kpiPerStage": false}}
    })
}

/// A test namespace, the admin client, and the operator's client (chart ServiceAccount).
async fn setup(prefix: &str) -> (String, Client, Client) {
    let release = default_release();
    let ns = cluster().namespace(prefix).await;
    let admin = cluster().admin();
    let operator = operator_client(release, None).await;
    (ns, admin, operator)
}

/// A fault proxy in front of the API server with `rules`, and an operator client of `release`
/// that goes through it.
async fn through_proxy(
    release: &operator_support::Release,
    rules: Vec<FaultRule>,
) -> (FaultProxy, Client) {
    let proxy = FaultProxy::start(&cluster().server, &cluster().ca_pem).await;
    for rule in rules {
        proxy.inject(rule);
    }
    let client = operator_client(release, Some(&proxy.url)).await;
    (proxy, client)
}

fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn touchpoint_ready(admin: &Client, ns: &str, name: &str) -> bool {
    get::<Touchpoint>(admin, ns, name)
        .await
        .and_then(|t| t.status)
        .is_some_and(|s| condition(&s.conditions, "Ready").is_some_and(|(st, _)| st == "True"))
}

async fn collector_exists(admin: &Client, ns: &str, name: &str) -> bool {
    let object = format!("collector-{name}");
    get::<Deployment>(admin, ns, &object).await.is_some()
        && get::<Service>(admin, ns, &object).await.is_some()
}

/// The configuration a dedicated collector's pods get, from its Deployment's pod template.
fn collector_config(deployment: &Deployment) -> String {
    let pod = deployment.spec.template.spec.as_ref().unwrap();
    let env = pod.containers[0].env.as_ref().unwrap();
    env.iter()
        .find(|e| e.name == "CX_COLLECTOR_CONFIG")
        .and_then(|e| e.value.clone())
        .expect("the configuration in the pod template")
}

async fn events(admin: &Client, ns: &str) -> Vec<Event> {
    Api::<Event>::namespaced(admin.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_touchpoint_gets_its_collector_and_becomes_ready_when_its_pods_are() {
    let (ns, admin, client) = setup("ready").await;
    create(&admin, channel(&ns, "web", "friendly")).await;
    create(&admin, touchpoint(&ns, "checkout", "web", "purchase", 2)).await;
    let operator = Operator::start(client, options_for(&ns));

    assert!(
        eventually(WAIT, || touchpoint_ready(&admin, &ns, "checkout")).await,
        "Ready once kwok's pods are"
    );
    let deployment: Deployment = get(&admin, &ns, "collector-checkout").await.unwrap();
    assert_eq!(deployment.spec.replicas, Some(2));
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Touchpoint", "checkout", Some(true))
    );
    assert!(
        get::<PodDisruptionBudget>(&admin, &ns, "collector-checkout")
            .await
            .is_some(),
        "2 replicas get a PDB"
    );
    assert!(collector_config(&deployment).contains("\"touchpoint\":\"checkout\""));
    assert!(
        get::<ConfigMap>(&admin, &ns, "collector-checkout")
            .await
            .is_none(),
        "no ConfigMap: the configuration is in the pod template"
    );
    let status = get::<Touchpoint>(&admin, &ns, "checkout")
        .await
        .unwrap()
        .status
        .unwrap();
    let collector = status.collector.unwrap();
    assert_eq!(
        collector.endpoint.as_deref(),
        Some(format!("http://collector-checkout.{ns}.svc:80/v1/events").as_str())
    );
    assert_eq!(collector.replicas_summary.as_deref(), Some("2/2"));
    let template_hash = deployment
        .spec
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()[CONFIG_HASH_ANNOTATION]
        .clone();
    assert_eq!(collector.config_hash, Some(template_hash));
    assert_eq!(status.observed_generation, Some(1));
    assert!(
        eventually(WAIT, || async {
            events(&admin, &ns)
                .await
                .iter()
                .any(|e| e.reason.as_deref() == Some("CollectorReady"))
        })
        .await,
        "a CollectorReady Event"
    );
    assert_eq!(operator.reconciles("touchpoint", "error"), 0);
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_converge_both_ways_and_deletion_collects_the_collector() {
    let (ns, admin, client) = setup("edits").await;
    create(&admin, channel(&ns, "web", "friendly")).await;
    let mut tp = touchpoint(&ns, "checkout", "web", "purchase", 2);
    // Values the server canonicalises: 0.5 → 500m, 1024Mi → 1Gi.
    tp["spec"]["collector"]["resources"] =
        json!({"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"memory": "2Gi"}});
    create(&admin, tp.clone()).await;
    let operator = Operator::start(client, options_for(&ns));
    assert!(eventually(WAIT, || touchpoint_ready(&admin, &ns, "checkout")).await);
    let resources = |d: &Deployment| {
        d.spec.template.spec.as_ref().unwrap().containers[0]
            .resources
            .clone()
            .unwrap()
    };
    let deployment: Deployment = get(&admin, &ns, "collector-checkout").await.unwrap();
    assert_eq!(resources(&deployment).requests.unwrap()["cpu"].0, "500m");
    let hash_of = |d: &Deployment| {
        d.spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let before = hash_of(&deployment);

    // A new survey question rolls the pods; one replica drops the PDB; the memory limit the
    // touchpoint no longer sets is removed from the Deployment.
    tp["spec"]["signals"]["surveys"] = json!([{"metric": "csat"}, {"metric": "nps"}]);
    tp["spec"]["collector"]["replicas"] = json!(1);
    tp["spec"]["collector"]["resources"] = json!({"requests": {"cpu": "0.5", "memory": "1024Mi"}});
    create(&admin, tp.clone()).await;
    assert!(
        eventually(WAIT, || async {
            let d: Option<Deployment> = get(&admin, &ns, "collector-checkout").await;
            d.is_some_and(|d| {
                hash_of(&d) != before && resources(&d).limits.is_none_or(|l| l.is_empty())
            })
        })
        .await,
        "config hash rolled and the removed limit is gone"
    );
    assert!(
        eventually(WAIT, || async {
            get::<PodDisruptionBudget>(&admin, &ns, "collector-checkout")
                .await
                .is_none()
        })
        .await,
        "the PDB goes with the second replica"
    );
    let deployment: Deployment = get(&admin, &ns, "collector-checkout").await.unwrap();
    assert!(collector_config(&deployment).contains("\"nps\""));
    assert!(eventually(WAIT, || touchpoint_ready(&admin, &ns, "checkout")).await);

    // Drift on a field the operator sets is repaired.
    Api::<Service>::namespaced(admin.clone(), &ns)
        .patch(
            "collector-checkout",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"cx.conductor.dev/stage": "support"}}})),
        )
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            let s: Option<Service> = get(&admin, &ns, "collector-checkout").await;
            s.is_some_and(|s| s.metadata.labels.unwrap()["cx.conductor.dev/stage"] == "purchase")
        })
        .await,
        "drift repaired"
    );

    // Deleting the touchpoint lets the garbage collector take its collector.
    Api::<Touchpoint>::namespaced(admin.clone(), &ns)
        .delete("checkout", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            !collector_exists(&admin, &ns, "checkout").await
        })
        .await,
        "garbage collected"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_collector_is_not_fought_until_the_touchpoint_changes_its_replicas() {
    let (ns, admin, client) = setup("scale").await;
    create(&admin, channel(&ns, "web", "friendly")).await;
    let mut tp = touchpoint(&ns, "checkout", "web", "purchase", 1);
    create(&admin, tp.clone()).await;
    let operator = Operator::start(client, options_for(&ns));
    assert!(eventually(WAIT, || touchpoint_ready(&admin, &ns, "checkout")).await);
    // `kubectl scale`: the scale subresource, as a person or an autoscaler does it.
    cluster().kubectl_ok(&[
        "-n",
        &ns,
        "scale",
        "deployment/collector-checkout",
        "--replicas=3",
    ]);
    let replicas = || async {
        get::<Deployment>(&admin, &ns, "collector-checkout")
            .await
            .and_then(|d| d.spec.replicas)
    };
    assert!(
        eventually(WAIT, || async {
            get::<Touchpoint>(&admin, &ns, "checkout")
                .await
                .and_then(|t| t.status)
                .and_then(|s| s.collector)
                .is_some_and(|c| c.replicas_summary.as_deref() == Some("3/3"))
        })
        .await,
        "status follows the scaled Deployment"
    );
    let writes = operator.writes_of(&["apply"]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        replicas().await,
        Some(3),
        "the scale is respected over resyncs"
    );
    assert_eq!(
        operator.writes_of(&["apply"]),
        writes,
        "no apply in between"
    );
    // The touchpoint's own count changes: it is applied again.
    tp["spec"]["collector"]["replicas"] = json!(2);
    create(&admin, tp).await;
    assert!(
        eventually(WAIT, || async { replicas().await == Some(2) }).await,
        "the touchpoint's new count wins"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_state_costs_no_writes_with_every_option_on() {
    let (ns, admin, client) = setup("steady").await;
    create(&admin, channel(&ns, "web", "friendly")).await;
    create(&admin, channel(&ns, "app", "friendly")).await;
    let mut tp = touchpoint(&ns, "checkout", "web", "purchase", 2);
    tp["spec"]["collector"]["resources"] =
        json!({"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"memory": "1Gi"}});
    create(&admin, tp).await;
    create(
        &admin,
        touchpoint(&ns, "app-checkout", "app", "purchase", 1),
    )
    .await;
    create(&admin, journey(&ns, "main")).await;
    let (proxy, client_via_proxy) = through_proxy(full_release(), vec![]).await;
    drop(client);
    let mut options = options_for(&ns);
    options.plan = PlanOptions {
        service_monitor: true,
        network_policy: true,
        ..PlanOptions::default()
    };
    let operator = Operator::start(client_via_proxy, options);
    assert!(
        eventually(WAIT, || async {
            touchpoint_ready(&admin, &ns, "checkout").await
                && touchpoint_ready(&admin, &ns, "app-checkout").await
                && get::<NetworkPolicy>(&admin, &ns, "cx-collectors")
                    .await
                    .is_some()
                && get::<Channel>(&admin, &ns, "web")
                    .await
                    .and_then(|c| c.status)
                    .is_some_and(|s| s.ready_touchpoints == 1)
                && get::<CustomerJourney>(&admin, &ns, "main")
                    .await
                    .and_then(|j| j.status)
                    .is_some_and(|s| s.touchpoints == 2)
        })
        .await,
        "converged"
    );
    // Let the last status writes land, then watch several resyncs (resync = 2 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mark = proxy.requests().len();
    let writes = operator.writes();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let written: Vec<String> = proxy.requests()[mark..]
        .iter()
        .filter(|(m, _, _)| *m != Method::GET)
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert_eq!(written, Vec::<String>::new(), "no write in steady state");
    assert_eq!(operator.writes(), writes);
    assert!(operator.reconciles("touchpoint", "ok") >= 6, "resyncs ran");

    // The gauges of the metrics contract come from the cached statuses.
    assert!(
        eventually(WAIT, || async { operator.stores.borrow().is_some() }).await,
        "the caches are reported synced"
    );
    let stores = operator.stores.borrow().clone().expect("synced caches");
    cx_conductor::operator::http::refresh_gauges(&operator.metrics, &stores);
    let text = operator.metrics.encode();
    assert!(
        text.contains(&format!(r#"cx_touchpoint_collector_ready{{channel="web",namespace="{ns}",stage="purchase",touchpoint="checkout"}} 1"#)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"cx_consistency_violations{{journey="main",namespace="{ns}"}} 0"#
        )),
        "{text}"
    );
    // In a cluster every evidenced question of the self-assessment is answered from the statuses
    // (collector readiness, KPI states); none is left "not evaluated".
    let assessment = get::<CustomerJourney>(&admin, &ns, "main")
        .await
        .and_then(|j| j.status)
        .and_then(|s| s.self_assessment)
        .expect("the journey status carries the self-assessment");
    assert_eq!(assessment.evidenced, [7, 9, 10, 11, 14, 15, 17, 18, 22, 25]);
    assert!(assessment.declared.is_empty());
    assert_eq!(assessment.missing.len(), 15);
    assert!(
        text.contains(&format!(
            r#"cx_journey_self_assessment_score{{journey="main",namespace="{ns}"}} {}"#,
            assessment.score
        )),
        "{text}"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_converges_exactly_when_a_journey_is_fixed() {
    let (ns, admin, client) = setup("converge").await;
    create(&admin, channel(&ns, "web", "friendly")).await;
    create(&admin, channel(&ns, "app", "formal")).await;
    create(&admin, touchpoint(&ns, "checkout", "web", "purchase", 1)).await;
    create(
        &admin,
        touchpoint(&ns, "app-checkout", "app", "purchase", 1),
    )
    .await;
    create(&admin, journey(&ns, "main")).await;
    let operator = Operator::start(client, options_for(&ns));
    let status = || async {
        get::<CustomerJourney>(&admin, &ns, "main")
            .await
            .and_then(|j| j.status)
    };
    assert!(
        eventually(WAIT, || async {
            status().await.is_some_and(|s| s.violation_count == 1)
        })
        .await
    );
    let broken = status().await.unwrap();
    assert_eq!(
        broken.violations[0].message,
        "brand.voice differs: formal on app; friendly on web"
    );
    assert_eq!(
        condition(&broken.conditions, "Consistent"),
        Some(("False".into(), "RulesBroken".into()))
    );
    assert!(
        eventually(WAIT, || async {
            events(&admin, &ns)
                .await
                .iter()
                .any(|e| e.reason.as_deref() == Some("Inconsistent"))
        })
        .await,
        "an Inconsistent Event"
    );
    let channel_status = get::<Channel>(&admin, &ns, "app")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(channel_status.journeys, ["main"]);

    // Fixed: the violation list is empty on the server, not left over from before.
    create(&admin, channel(&ns, "app", "friendly")).await;
    assert!(
        eventually(WAIT, || async {
            status()
                .await
                .is_some_and(|s| s.violation_count == 0 && s.violations.is_empty())
        })
        .await,
        "violations cleared"
    );
    let raw = Api::<DynamicObject>::namespaced_with(
        admin.clone(),
        &ns,
        &kube::core::ApiResource::erase::<CustomerJourney>(&()),
    )
    .get("main")
    .await
    .unwrap();
    let violations = &raw.data["status"]["violations"];
    assert!(
        violations.is_null() || violations.as_array().is_some_and(|v| v.is_empty()),
        "{violations}"
    );
    // A touchpoint whose channel goes loses its collector status.
    Api::<Channel>::namespaced(admin.clone(), &ns)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            get::<Touchpoint>(&admin, &ns, "app-checkout")
                .await
                .and_then(|t| t.status)
                .is_some_and(|s| {
                    s.collector.is_none()
                        && condition(&s.conditions, "ChannelResolved")
                            == Some(("False".into(), "ChannelNotFound".into()))
                })
        })
        .await,
        "collector status removed with the channel"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_channel_is_a_condition_not_an_error_loop() {
    let (ns, admin, client) = setup("missing").await;
    create(&admin, touchpoint(&ns, "kiosk", "kiosk", "usage", 1)).await;
    let operator = Operator::start(client, options_for(&ns));
    assert!(
        eventually(WAIT, || async {
            get::<Touchpoint>(&admin, &ns, "kiosk")
                .await
                .and_then(|t| t.status)
                .is_some_and(|s| {
                    condition(&s.conditions, "ChannelResolved")
                        == Some(("False".into(), "ChannelNotFound".into()))
                })
        })
        .await
    );
    assert!(!collector_exists(&admin, &ns, "kiosk").await);
    assert_eq!(operator.reconciles("touchpoint", "error"), 0);
    create(&admin, channel(&ns, "kiosk", "friendly")).await;
    assert!(eventually(WAIT, || touchpoint_ready(&admin, &ns, "kiosk")).await);
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_outages_are_retried_until_convergence() {
    let (ns, admin, _) = setup("faults").await;
    create(&admin, channel(&ns, "web", "friendly")).await;
    create(&admin, touchpoint(&ns, "checkout", "web", "purchase", 1)).await;
    let (proxy, client) = through_proxy(
        default_release(),
        vec![
            FaultRule::on(Method::PATCH, "/deployments/", 2, Fault::Status(500)),
            FaultRule::on(Method::PATCH, "/status", 2, Fault::Status(409)),
            FaultRule::on(Method::PATCH, "/services/", 1, Fault::DropConnection),
            FaultRule::on(
                Method::PATCH,
                "/status",
                1,
                Fault::Delay(Duration::from_secs(3)),
            ),
        ],
    )
    .await;
    let operator = Operator::start(client, options_for(&ns));
    assert!(
        eventually(WAIT, || touchpoint_ready(&admin, &ns, "checkout")).await,
        "converged despite faults"
    );
    assert!(proxy.rules_used_up(), "every fault was hit");
    assert!(operator.reconciles("touchpoint", "error") >= 2);

    // An outage (every connection, watches included, cut; new ones refused for 3 s), then a
    // change made during it: the operator reconnects and catches up.
    proxy.outage(Duration::from_secs(3));
    create(&admin, touchpoint(&ns, "support", "web", "support", 1)).await;
    assert!(
        eventually(WAIT, || touchpoint_ready(&admin, &ns, "support")).await,
        "caught up after the outage"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_the_server_refuses_is_a_condition_and_an_event() {
    let (ns, admin, _) = setup("refused").await;
    create(&admin, channel(&ns, "web", "friendly")).await;
    create(&admin, touchpoint(&ns, "checkout", "web", "purchase", 1)).await;
    let (_proxy, client) = through_proxy(
        default_release(),
        vec![FaultRule::on(
            Method::PATCH,
            "/deployments/",
            3,
            Fault::Status(422),
        )],
    )
    .await;
    let operator = Operator::start(client, options_for(&ns));
    assert!(
        eventually(WAIT, || async {
            get::<Touchpoint>(&admin, &ns, "checkout")
                .await
                .and_then(|t| t.status)
                .is_some_and(|s| {
                    condition(&s.conditions, "Ready")
                        == Some(("False".into(), "ApplyFailed".into()))
                })
        })
        .await,
        "ApplyFailed in the Ready condition"
    );
    assert!(
        eventually(WAIT, || async {
            events(&admin, &ns).await.iter().any(|e| {
                e.reason.as_deref() == Some("ApplyFailed")
                    && e.note.as_deref().is_some_and(|n| {
                        n.contains("422") || n.contains("Invalid") || n.contains("injected")
                    })
            })
        })
        .await,
        "an ApplyFailed Event naming the refusal"
    );
    assert!(
        eventually(WAIT, || touchpoint_ready(&admin, &ns, "checkout")).await,
        "recovered once the server accepts"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_cannot_finish_is_not_ready_and_keeps_the_deployed_hash() {
    let (ns, admin, client) = setup("rollout").await;
    create(&admin, channel(&ns, "web", "friendly")).await;
    let mut tp = touchpoint(&ns, "checkout", "web", "purchase", 1);
    create(&admin, tp.clone()).await;
    let operator = Operator::start(client, options_for(&ns));
    assert!(eventually(WAIT, || touchpoint_ready(&admin, &ns, "checkout")).await);
    let deployed = get::<Touchpoint>(&admin, &ns, "checkout")
        .await
        .unwrap()
        .status
        .unwrap()
        .collector
        .unwrap()
        .config_hash;
    // A new configuration whose pods no node can take: the new ReplicaSet never becomes ready.
    tp["spec"]["signals"]["surveys"] = json!([{"metric": "nps"}]);
    tp["spec"]["collector"]["resources"] = json!({"requests": {"cpu": "5000"}});
    create(&admin, tp).await;
    assert!(
        eventually(WAIT, || async {
            get::<Touchpoint>(&admin, &ns, "checkout")
                .await
                .and_then(|t| t.status)
                .is_some_and(|s| {
                    s.observed_generation == Some(2)
                        && condition(&s.conditions, "Ready")
                            == Some(("False".into(), "CollectorRollingOut".into()))
                })
        })
        .await,
        "not Ready while the new pods cannot start"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = get::<Touchpoint>(&admin, &ns, "checkout")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        condition(&status.conditions, "Ready").map(|c| c.1),
        Some("CollectorRollingOut".to_string())
    );
    assert_eq!(
        status.collector.unwrap().config_hash,
        deployed,
        "the deployed hash stays"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_event_notes_are_shortened_not_lost() {
    let (ns, admin, client) = setup("notes").await;
    // 40 channels with long names and three brand voices: the Inconsistent note is long.
    for i in 0..40 {
        let name = format!("channel-with-a-rather-long-descriptive-name-{i:02}");
        create(
            &admin,
            channel(&ns, &name, ["friendly", "formal", "playful"][i % 3]),
        )
        .await;
    }
    let name = "j".repeat(63);
    create(&admin, journey(&ns, &name)).await;
    let operator = Operator::start(client, options_for(&ns));
    assert!(
        eventually(WAIT, || async {
            events(&admin, &ns).await.iter().any(|e| {
                e.reason.as_deref() == Some("Inconsistent")
                    && e.note
                        .as_ref()
                        .is_some_and(|n| n.len() <= 1024 && n.ends_with('…'))
            })
        })
        .await,
        "the Inconsistent Event was published with a shortened note"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_way_creates_no_duplicates() {
    let (ns, admin, client) = setup("restart").await;
    create(&admin, channel(&ns, "web", "friendly")).await;
    for i in 0..10 {
        create(
            &admin,
            touchpoint(&ns, &format!("tp-{i}"), "web", "purchase", 1),
        )
        .await;
    }
    let first = Operator::start(client.clone(), options_for(&ns));
    let deployments = Api::<Deployment>::namespaced(admin.clone(), &ns);
    assert!(
        eventually(WAIT, || async {
            deployments
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len()
                >= 3
        })
        .await
    );
    first.stop().await;
    let second = Operator::start(client, options_for(&ns));
    assert!(
        eventually(WAIT, || async {
            let mut all = true;
            for i in 0..10 {
                all &= touchpoint_ready(&admin, &ns, &format!("tp-{i}")).await;
            }
            all
        })
        .await
    );
    assert_eq!(
        deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        10
    );
    assert_eq!(
        Api::<Service>::namespaced(admin.clone(), &ns)
            .list(&ListParams::default().labels("app.kubernetes.io/name=cx-collector"))
            .await
            .unwrap()
            .items
            .len(),
        10
    );
    second.stop().await;
}
