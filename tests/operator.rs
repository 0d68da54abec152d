//! The operator against the in-process fake API server: a real `kube::Client` over real HTTP.

use std::sync::Arc;
use std::time::Duration;

use cx_conductor::api::{Channel, CustomerJourney, Touchpoint};
use cx_conductor::core::plan::{CONFIG_HASH_ANNOTATION, PlanOptions};
use cx_conductor::operator::{
    LeaderElection, Metrics, OperatorOptions, run_as_leader, run_controllers,
};
use cx_conductor::testing::{FakeApiServer, Fault, FaultRule};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{Value, json};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(20);

fn channel(name: &str, voice: &str) -> Value {
    json!({
        "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
        "metadata": {"name": name, "namespace": "shop", "labels": {"journey": "main"}},
        "spec": {"type": "web", "owner": "digital", "brand": {"voice": voice},
                 "privacy": {"consentPolicyVersion": "v7"}, "serviceLevels": {"firstResponseSeconds": 60}}
    })
}

fn touchpoint(name: &str, channel: &str, stage: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"channel": channel, "stage": stage, "signals": {"surveys": [{"metric": "csat"}]},
                 "collector": {"replicas": replicas, "maxEventBytes": 65536}}
    })
}

fn journey() -> Value {
    json!({
        "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "CustomerJourney",
        "metadata": {"name": "main", "namespace": "shop"},
        "spec": {"owner": "cx-office", "stages": ["purchase"], "channelSelector": {"matchLabels": {"journey": "main"}},
                 "consistency": {"rules": [{"field": "brand.voice", "policy": "equal"}]},
                 "coverage": {"kpiPerStage": false}}
    })
}

struct Operator {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
    stores: watch::Receiver<Option<cx_conductor::operator::Stores>>,
}

impl Operator {
    fn start(server: &FakeApiServer) -> Self {
        Self::start_with(
            server.client(),
            OperatorOptions {
                resync: Duration::from_millis(500),
                plan: PlanOptions::default(),
                ..Default::default()
            },
        )
    }

    fn start_with(client: kube::Client, options: OperatorOptions) -> Self {
        let metrics = Arc::new(Metrics::new());
        let (stop, stop_rx) = watch::channel(false);
        let (stores_tx, stores) = watch::channel(None);
        let task = tokio::spawn(run_controllers(
            client,
            options,
            metrics.clone(),
            stores_tx,
            stop_rx,
        ));
        Self {
            stop,
            task,
            stores,
            metrics,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(WAIT, self.task).await;
    }

    fn writes(&self) -> u64 {
        ["apply", "status", "delete"]
            .iter()
            .map(|w| {
                ["touchpoint", "channel", "journey"]
                    .iter()
                    .map(|c| self.metrics.writes.with_label_values(&[c, w]).get())
                    .sum::<u64>()
            })
            .sum()
    }
}

fn ready(server: &FakeApiServer, name: &str) -> bool {
    server
        .get_as::<Touchpoint>(Some("shop"), name)
        .and_then(|t| t.status)
        .is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

fn collector_exists(server: &FakeApiServer, name: &str) -> bool {
    let object = format!("collector-{name}");
    server.get_as::<Deployment>(Some("shop"), &object).is_some()
        && server.get_as::<Service>(Some("shop"), &object).is_some()
        && server.get_as::<ConfigMap>(Some("shop"), &object).is_some()
}

#[tokio::test]
async fn a_touchpoint_gets_its_collector_and_becomes_ready_when_the_deployment_is_available() {
    let server = FakeApiServer::start().await;
    server.create(channel("web", "friendly")).unwrap();
    server
        .create(touchpoint("checkout", "web", "purchase", 2))
        .unwrap();
    let operator = Operator::start(&server);

    assert!(
        server
            .wait_until(WAIT, |s| collector_exists(s, "checkout"))
            .await,
        "collector objects created"
    );
    let deployment = server
        .get_as::<Deployment>(Some("shop"), "collector-checkout")
        .unwrap();
    assert_eq!(deployment.spec.replicas, Some(2));
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Touchpoint", "checkout", Some(true))
    );
    assert!(
        server
            .wait_until(WAIT, |s| s
                .get_as::<PodDisruptionBudget>(Some("shop"), "collector-checkout")
                .is_some())
            .await,
        "2 replicas get a PDB"
    );
    let config = server
        .get_as::<ConfigMap>(Some("shop"), "collector-checkout")
        .unwrap();
    let data = config.data.unwrap()["collector.yaml"].clone();
    assert!(data.contains("\"touchpoint\": \"checkout\""), "{data}");

    // Not ready until the Deployment is; the reason says why.
    assert!(
        server
            .wait_until(WAIT, |s| s
                .get_as::<Touchpoint>(Some("shop"), "checkout")
                .and_then(|t| t.status)
                .is_some())
            .await
    );
    let status = server
        .get_as::<Touchpoint>(Some("shop"), "checkout")
        .unwrap()
        .status
        .unwrap();
    let ready_condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready_condition.status, "False");
    assert_eq!(
        status.collector.as_ref().unwrap().endpoint.as_deref(),
        Some("http://collector-checkout.shop.svc:80/v1/events")
    );
    assert_eq!(status.observed_generation, Some(1));

    server
        .set_deployment_available("shop", "collector-checkout", 1)
        .unwrap();
    assert!(
        server
            .wait_until(WAIT, |s| {
                s.get_as::<Touchpoint>(Some("shop"), "checkout")
                    .and_then(|t| t.status)
                    .and_then(|st| st.collector)
                    .is_some_and(|c| c.replicas_summary.as_deref() == Some("1/2"))
            })
            .await,
        "partial readiness reported"
    );
    assert!(!ready(&server, "checkout"));
    server
        .set_deployment_available("shop", "collector-checkout", 2)
        .unwrap();
    assert!(
        server.wait_until(WAIT, |s| ready(s, "checkout")).await,
        "Ready once every replica is"
    );
    operator.stop().await;
}

#[tokio::test]
async fn edits_update_the_collector_and_deletion_collects_it() {
    let server = FakeApiServer::start().await;
    server.create(channel("web", "friendly")).unwrap();
    server
        .create(touchpoint("checkout", "web", "purchase", 2))
        .unwrap();
    let operator = Operator::start(&server);
    assert!(
        server
            .wait_until(WAIT, |s| collector_exists(s, "checkout"))
            .await
    );
    let hash = |s: &FakeApiServer| {
        s.get_as::<Deployment>(Some("shop"), "collector-checkout")
            .and_then(|d| d.spec.template.metadata)
            .and_then(|m| m.annotations)
            .map(|a| a[CONFIG_HASH_ANNOTATION].clone())
    };
    let before = hash(&server).unwrap();

    // A new survey question changes the configuration and rolls the pods; one replica drops the PDB.
    server
        .merge_patch(
            "touchpoints.cx.conductor.dev",
            Some("shop"),
            "checkout",
            json!({"spec": {"signals": {"surveys": [{"metric": "csat"}, {"metric": "nps"}]}, "collector": {"replicas": 1}}}),
        )
        .unwrap();
    assert!(
        server
            .wait_until(WAIT, |s| hash(s).is_some_and(|h| h != before))
            .await,
        "config hash rolled"
    );
    assert!(
        server
            .wait_until(WAIT, |s| s
                .get_as::<PodDisruptionBudget>(Some("shop"), "collector-checkout")
                .is_none())
            .await
    );
    let config = server
        .get_as::<ConfigMap>(Some("shop"), "collector-checkout")
        .unwrap();
    assert!(config.data.unwrap()["collector.yaml"].contains("\"nps\""));

    // Drift is repaired: someone scales the collector by hand.
    server
        .merge_patch(
            "deployments.apps",
            Some("shop"),
            "collector-checkout",
            json!({"spec": {"replicas": 5}}),
        )
        .unwrap();
    assert!(
        server
            .wait_until(WAIT, |s| {
                s.get_as::<Deployment>(Some("shop"), "collector-checkout")
                    .is_some_and(|d| d.spec.replicas == Some(1))
            })
            .await,
        "drift repaired"
    );

    server
        .delete("touchpoints.cx.conductor.dev", Some("shop"), "checkout")
        .unwrap();
    assert!(
        server
            .wait_until(WAIT, |s| !collector_exists(s, "checkout")
                && s.get_as::<ConfigMap>(Some("shop"), "collector-checkout")
                    .is_none())
            .await
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_steady_state_costs_no_writes_over_several_resyncs() {
    let server = FakeApiServer::start().await;
    server.create(channel("web", "friendly")).unwrap();
    server.create(channel("app", "friendly")).unwrap();
    server
        .create(touchpoint("checkout", "web", "purchase", 1))
        .unwrap();
    server
        .create(touchpoint("app-checkout", "app", "purchase", 1))
        .unwrap();
    server.create(journey()).unwrap();
    let operator = Operator::start(&server);
    assert!(
        server
            .wait_until(WAIT, |s| collector_exists(s, "checkout")
                && collector_exists(s, "app-checkout"))
            .await
    );
    server
        .set_deployment_available("shop", "collector-checkout", 1)
        .unwrap();
    server
        .set_deployment_available("shop", "collector-app-checkout", 1)
        .unwrap();
    assert!(
        server
            .wait_until(WAIT, |s| {
                ready(s, "checkout")
                    && ready(s, "app-checkout")
                    && s.get_as::<CustomerJourney>(Some("shop"), "main")
                        .and_then(|j| j.status)
                        .is_some_and(|st| {
                            st.conditions
                                .iter()
                                .any(|c| c.type_ == "Ready" && c.status == "False")
                                && st.touchpoints == 2
                        })
                    && s.get_as::<Channel>(Some("shop"), "web")
                        .and_then(|c| c.status)
                        .is_some_and(|st| st.ready_touchpoints == 1)
            })
            .await,
        "converged"
    );
    // Let in-flight reconciles settle, then watch several resync periods (resync = 500ms).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mark = server.mark();
    let writes_before = operator.writes();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let writes: Vec<String> = server
        .writes_since(mark)
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "no write in steady state");
    assert_eq!(operator.writes(), writes_before);
    let reconciles = operator
        .metrics
        .reconciles
        .with_label_values(&["touchpoint", "ok"])
        .get();
    assert!(reconciles >= 4, "resyncs did run ({reconciles} reconciles)");

    // The gauges of the metrics contract are derived from the cached statuses at scrape time.
    let stores = operator
        .stores
        .borrow()
        .clone()
        .expect("stores published while running");
    cx_conductor::operator::http::refresh_gauges(&operator.metrics, &stores);
    let text = operator.metrics.encode();
    assert!(
        text.contains(r#"cx_touchpoint_collector_ready{channel="web",namespace="shop",stage="purchase",touchpoint="checkout"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"cx_consistency_violations{journey="main",namespace="shop"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"cx_journey_coverage_gaps{journey="main",kind="stage_without_listening",namespace="shop"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"cx_journey_readiness_score{journey="main",namespace="shop"}"#),
        "{text}"
    );
    // In a cluster every evidenced question of the self-assessment is answered from the statuses
    // (collector readiness, KPI states); none is left "not evaluated".
    let assessment = server
        .get_as::<CustomerJourney>(Some("shop"), "main")
        .and_then(|j| j.status)
        .and_then(|s| s.self_assessment)
        .expect("the journey status carries the self-assessment");
    assert_eq!(assessment.evidenced, [7, 9, 10, 11, 14, 15, 17, 18, 22, 25]);
    assert!(assessment.declared.is_empty());
    assert_eq!(assessment.missing.len(), 15);
    assert!(
        text.contains(&format!(
            r#"cx_journey_self_assessment_score{{journey="main",namespace="shop"}} {}"#,
            assessment.score
        )),
        "{text}"
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_channel_edit_re_evaluates_the_journeys_that_select_it() {
    let server = FakeApiServer::start().await;
    server.create(channel("web", "friendly")).unwrap();
    server.create(channel("app", "friendly")).unwrap();
    server
        .create(touchpoint("checkout", "web", "purchase", 1))
        .unwrap();
    server
        .create(touchpoint("app-checkout", "app", "purchase", 1))
        .unwrap();
    server.create(journey()).unwrap();
    let operator = Operator::start(&server);
    let consistent = |s: &FakeApiServer| {
        s.get_as::<CustomerJourney>(Some("shop"), "main")
            .and_then(|j| j.status)
            .map(|st| st.violation_count)
    };
    assert!(server.wait_until(WAIT, |s| consistent(s) == Some(0)).await);
    server
        .merge_patch(
            "channels.cx.conductor.dev",
            Some("shop"),
            "app",
            json!({"spec": {"brand": {"voice": "formal"}}}),
        )
        .unwrap();
    assert!(
        server.wait_until(WAIT, |s| consistent(s) == Some(1)).await,
        "violation found after the channel edit"
    );
    let status = server
        .get_as::<CustomerJourney>(Some("shop"), "main")
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        status.violations[0].message,
        "brand.voice differs: formal on app; friendly on web"
    );
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Consistent")
        .unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "RulesBroken")
    );
    let channel = server
        .get_as::<Channel>(Some("shop"), "app")
        .unwrap()
        .status
        .unwrap();
    assert_eq!(channel.journeys, ["main"]);
    // An Event says so, once.
    assert!(
        server
            .wait_until(WAIT, |s| {
                s.list("events.events.k8s.io", Some("shop"))
                    .iter()
                    .any(|e| e["reason"] == "Inconsistent")
            })
            .await,
        "Inconsistent event published"
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_missing_channel_is_a_condition_not_an_error_loop() {
    let server = FakeApiServer::start().await;
    server
        .create(touchpoint("kiosk", "kiosk", "usage", 1))
        .unwrap();
    let operator = Operator::start(&server);
    assert!(
        server
            .wait_until(WAIT, |s| {
                s.get_as::<Touchpoint>(Some("shop"), "kiosk")
                    .and_then(|t| t.status)
                    .is_some_and(|st| {
                        st.conditions.iter().any(|c| {
                            c.type_ == "ChannelResolved"
                                && c.status == "False"
                                && c.reason == "ChannelNotFound"
                        })
                    })
            })
            .await
    );
    assert!(
        !collector_exists(&server, "kiosk"),
        "nothing deployed for a dangling channel"
    );
    assert_eq!(
        operator
            .metrics
            .reconciles
            .with_label_values(&["touchpoint", "error"])
            .get(),
        0
    );
    // Creating the channel resolves it.
    server.create(channel("kiosk", "friendly")).unwrap();
    assert!(
        server
            .wait_until(WAIT, |s| collector_exists(s, "kiosk"))
            .await
    );
    operator.stop().await;
}

#[tokio::test]
async fn injected_failures_and_conflicts_are_retried_until_convergence() {
    let server = FakeApiServer::start().await;
    server.create(channel("web", "friendly")).unwrap();
    server
        .create(touchpoint("checkout", "web", "purchase", 1))
        .unwrap();
    server.inject(
        FaultRule::new(Fault::internal_error())
            .method("PATCH")
            .path("/deployments/")
            .times(2),
    );
    server.inject(
        FaultRule::new(Fault::conflict())
            .method("PATCH")
            .path("/status")
            .times(2),
    );
    server.inject(
        FaultRule::new(Fault::DropConnection)
            .method("PATCH")
            .path("/services/")
            .times(1),
    );
    let operator = Operator::start(&server);
    assert!(
        server
            .wait_until(WAIT, |s| collector_exists(s, "checkout"))
            .await,
        "converged despite faults"
    );
    server
        .set_deployment_available("shop", "collector-checkout", 1)
        .unwrap();
    assert!(server.wait_until(WAIT, |s| ready(s, "checkout")).await);
    assert!(server.pending_faults().is_empty(), "every fault was hit");
    let errors = operator
        .metrics
        .reconciles
        .with_label_values(&["touchpoint", "error"])
        .get();
    assert!(errors >= 2, "failures were seen and retried ({errors})");
    operator.stop().await;
}

#[tokio::test]
async fn a_restart_mid_way_creates_no_duplicates() {
    let server = FakeApiServer::start().await;
    server.create(channel("web", "friendly")).unwrap();
    for i in 0..10 {
        server
            .create(touchpoint(&format!("tp-{i}"), "web", "purchase", 1))
            .unwrap();
    }
    let first = Operator::start(&server);
    assert!(
        server
            .wait_until(WAIT, |s| s.list("deployments.apps", Some("shop")).len()
                >= 3)
            .await
    );
    first.stop().await;
    let second = Operator::start(&server);
    assert!(
        server
            .wait_until(WAIT, |s| (0..10)
                .all(|i| collector_exists(s, &format!("tp-{i}"))))
            .await
    );
    assert_eq!(server.list("deployments.apps", Some("shop")).len(), 10);
    assert_eq!(server.list("services", Some("shop")).len(), 10);
    assert_eq!(server.list("configmaps", Some("shop")).len(), 10);
    second.stop().await;
}

#[tokio::test]
async fn one_invalid_object_does_not_block_the_valid_ones() {
    let server = FakeApiServer::start().await;
    server.create(channel("web", "friendly")).unwrap();
    // The fake does not validate schemas, like a cluster whose CRD is older than the object.
    let mut broken = touchpoint("broken", "web", "purchase", 1);
    broken["spec"]["stage"] = json!("checkout");
    server.create(broken).unwrap();
    server
        .create(touchpoint("valid-a", "web", "purchase", 1))
        .unwrap();
    server
        .create(touchpoint("valid-b", "web", "support", 1))
        .unwrap();
    let operator = Operator::start(&server);
    assert!(
        server
            .wait_until(WAIT, |s| collector_exists(s, "valid-a")
                && collector_exists(s, "valid-b"))
            .await
    );
    assert!(!collector_exists(&server, "broken"));
    assert!(
        server
            .wait_until(WAIT, |s| {
                s.list("events.events.k8s.io", Some("shop"))
                    .iter()
                    .any(|e| e["reason"] == "InvalidObject" && e["regarding"]["name"] == "broken")
            })
            .await,
        "the invalid object is reported with an Event"
    );
    operator.stop().await;
}

#[tokio::test]
async fn with_leader_election_only_the_leader_writes() {
    let server = FakeApiServer::start().await;
    server.create(channel("web", "friendly")).unwrap();
    server
        .create(touchpoint("checkout", "web", "purchase", 1))
        .unwrap();
    let options = OperatorOptions {
        resync: Duration::from_millis(500),
        ..Default::default()
    };
    let start = |identity: &str| {
        let metrics = Arc::new(Metrics::new());
        let (stop, stop_rx) = watch::channel(false);
        let (stores, _) = watch::channel(None);
        let election = LeaderElection {
            namespace: "default".into(),
            name: "cx-conductor-leader".into(),
            identity: identity.into(),
            duration_seconds: 15,
        };
        let task = tokio::spawn(run_as_leader(
            server.client(),
            options.clone(),
            metrics.clone(),
            election,
            stores,
            stop_rx,
        ));
        (stop, task, metrics)
    };
    let (stop_a, task_a, metrics_a) = start("replica-a");
    assert!(
        server
            .wait_until(WAIT, |s| collector_exists(s, "checkout"))
            .await
    );
    let (stop_b, task_b, metrics_b) = start("replica-b");
    server
        .create(touchpoint("support", "web", "support", 1))
        .unwrap();
    assert!(
        server
            .wait_until(WAIT, |s| collector_exists(s, "support"))
            .await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let total = |m: &Metrics| -> u64 {
        ["touchpoint", "channel", "journey"]
            .iter()
            .flat_map(|c| ["apply", "status"].map(|w| m.writes.with_label_values(&[c, w]).get()))
            .sum()
    };
    assert!(total(&metrics_a) > 0, "the leader writes");
    assert_eq!(total(&metrics_b), 0, "the standby replica writes nothing");
    let lease = server
        .get(
            "leases.coordination.k8s.io",
            Some("default"),
            "cx-conductor-leader",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");
    let _ = stop_b.send(true);
    let _ = stop_a.send(true);
    assert!(
        tokio::time::timeout(WAIT, task_b)
            .await
            .unwrap()
            .unwrap()
            .is_ok()
    );
    assert!(
        tokio::time::timeout(WAIT, task_a)
            .await
            .unwrap()
            .unwrap()
            .is_ok()
    );
}
