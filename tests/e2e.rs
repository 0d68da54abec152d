//! End-to-end tests against a real cluster (kind or k3d) where the CRDs and the operator are
//! installed (see `.github/workflows/e2e.yaml`). Ignored by default; run with
//! `cargo test --test e2e -- --ignored` while a kubeconfig points at the cluster.

use std::time::Duration;

use cx_conductor::api::{Channel, CustomerJourney, Touchpoint};
use cx_conductor::manifest::load_paths;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};

const NAMESPACE: &str = "retail";

async fn client() -> Client {
    Client::try_default()
        .await
        .expect("a kubeconfig pointing at a test cluster")
}

/// Applies every document of `examples/retail` with server-side apply.
async fn apply_examples(client: &Client) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/retail");
    for document in load_paths(&[root]).expect("examples load") {
        let value = document.value;
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let api: Api<DynamicObject> = match value["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            &name,
            &PatchParams::apply("cx-e2e").force(),
            &Patch::Apply(&value),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    panic!("timed out waiting for {what}");
}

fn is_ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster with cx-conductor installed"]
async fn examples_deploy_ready_collectors_and_journey_status() {
    let client = client().await;
    apply_examples(&client).await;
    let touchpoints: Api<Touchpoint> = Api::namespaced(client.clone(), NAMESPACE);
    eventually("every collector Ready", Duration::from_secs(300), || {
        let touchpoints = touchpoints.clone();
        async move {
            let list = touchpoints
                .list(&Default::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            !list.is_empty()
                && list
                    .iter()
                    .all(|t| t.status.as_ref().is_some_and(|s| is_ready(&s.conditions)))
        }
    })
    .await;

    let channels: Api<Channel> = Api::namespaced(client.clone(), NAMESPACE);
    let web = channels.get("web").await.expect("web channel");
    let status = web.status.expect("channel status written");
    assert!(status.touchpoints >= 4);
    assert_eq!(status.ready_touchpoints, status.touchpoints);
    assert_eq!(status.journeys, ["retail"]);

    let journeys: Api<CustomerJourney> = Api::namespaced(client.clone(), NAMESPACE);
    eventually("journey assessed", Duration::from_secs(120), || {
        let journeys = journeys.clone();
        async move {
            journeys
                .get("retail")
                .await
                .ok()
                .and_then(|j| j.status)
                .is_some_and(|s| s.violation_count == 0 && s.readiness.is_some() && s.channels == 6)
        }
    })
    .await;
    // The self-assessment in the status: in a cluster every evidenced question is answered from
    // the statuses; the example's declared answers fill the others but for question 23.
    let assessment = journeys
        .get("retail")
        .await
        .expect("retail journey")
        .status
        .and_then(|s| s.self_assessment)
        .expect("status.selfAssessment written");
    assert_eq!(assessment.evidenced, [7, 9, 10, 11, 14, 15, 17, 18, 22, 25]);
    assert_eq!(assessment.missing, [23]);
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster with cx-conductor installed"]
async fn events_posted_through_the_service_are_counted_by_the_collector() {
    let client = client().await;
    apply_examples(&client).await;
    let touchpoints: Api<Touchpoint> = Api::namespaced(client.clone(), NAMESPACE);
    eventually(
        "web-landing collector Ready",
        Duration::from_secs(300),
        || {
            let touchpoints = touchpoints.clone();
            async move {
                touchpoints
                    .get("web-landing")
                    .await
                    .ok()
                    .and_then(|t| t.status)
                    .is_some_and(|s| is_ready(&s.conditions))
            }
        },
    )
    .await;
    let tp = touchpoints.get("web-landing").await.unwrap();
    let service = format!("collector-{}", tp.name_any());
    let proxy = format!("/api/v1/namespaces/{NAMESPACE}/services/{service}:http/proxy");
    let post = http::Request::post(format!("{proxy}/v1/events"))
        .header("content-type", "application/json")
        .body(br#"{"type":"survey","metric":"csat","score":5}"#.to_vec())
        .unwrap();
    client.request_text(post).await.expect("event accepted");
    let metrics = client
        .request_text(
            http::Request::get(format!("{proxy}/metrics"))
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .expect("metrics scraped");
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("cx_survey_responses_total")
                && l.contains("score=\"5\"")
                && l.contains("metric=\"csat\"")
        })
        .expect("csat score 5 series");
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{line}");
}
