//! The operator's KPI evaluation end to end without a cluster: the fake API server holds the
//! resources, a real collector counts posted answers, a real Prometheus scrapes it, and the
//! operator writes the KPI's status and the journey's KPI counts.

#[path = "support/prometheus.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use cx_conductor::api::{Channel, CustomerJourney, ExperienceKPI, KpiState, Touchpoint};
use cx_conductor::core::plan::collector_config;
use cx_conductor::kpi::{PrometheusClient, PrometheusConfig};
use cx_conductor::operator::kpi::KpiOptions;
use cx_conductor::operator::{Metrics, OperatorOptions, run_controllers};
use cx_conductor::testing::FakeApiServer;
use serde_json::json;
use support::{Prometheus, RunningCollector, prometheus_binary};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpis_are_evaluated_against_prometheus_and_counted_by_their_journey() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let server = FakeApiServer::start().await;
    server
        .create(json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"type": "web", "owner": "digital", "privacy": {"consentPolicyVersion": "v7"}}}))
        .unwrap();
    server
        .create(json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
            "metadata": {"name": "checkout", "namespace": "shop"},
            "spec": {"channel": "web", "stage": "purchase", "signals": {"surveys": [{"metric": "csat"}]},
                     "collector": {"replicas": 1, "maxEventBytes": 65536}}}))
        .unwrap();
    let kpi = |name: &str, target: f64, min_samples: i64| {
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "ExperienceKPI",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"indicator": {"builtin": "csat"}, "scope": {"stage": "purchase"},
                     "objective": {"target": target, "direction": "atLeast"}, "window": "1h", "interval": "2s",
                     "minSamples": min_samples, "owner": "digital", "journey": "main"}})
    };
    server.create(kpi("checkout-csat", 75.0, 5)).unwrap();
    server.create(kpi("ambitious-csat", 95.0, 5)).unwrap();
    server.create(kpi("demanding-csat", 75.0, 1000)).unwrap();
    server
        .create(
            json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "CustomerJourney",
            "metadata": {"name": "main", "namespace": "shop"},
            "spec": {"owner": "cx", "stages": ["purchase"]}}),
        )
        .unwrap();

    // A real collector for the touchpoint, with the configuration the operator would deploy.
    let touchpoint = server
        .get_as::<Touchpoint>(Some("shop"), "checkout")
        .unwrap();
    let channel = server.get_as::<Channel>(Some("shop"), "web").unwrap();
    let collector = RunningCollector::start(&collector_config(&touchpoint, Some(&channel))).await;
    let prometheus = Prometheus::start(binary, &[collector.addr], "1s").await;
    // Prometheus must see the zero-valued series first, or increase() cannot count the answers.
    prometheus
        .wait_for_value("sum(cx_survey_responses_total{metric=\"csat\"})", 0.0, WAIT)
        .await;
    // 10 answers: 8 in the top two boxes (4-5 of 5) -> CSAT 80%.
    let answers: Vec<String> = [5, 5, 5, 4, 4, 4, 4, 5, 2, 1]
        .iter()
        .map(|s| format!(r#"{{"type":"survey","metric":"csat","score":{s}}}"#))
        .collect();
    collector.post(&answers).await;
    prometheus
        .wait_for_value(
            "sum(cx_survey_responses_total{metric=\"csat\"})",
            10.0,
            WAIT,
        )
        .await;

    let client = PrometheusClient::new(PrometheusConfig::new(prometheus.url.clone())).unwrap();
    let options = OperatorOptions {
        resync: Duration::from_secs(1),
        kpi: Some(KpiOptions {
            prometheus: Arc::new(client),
            prometheus_rules: None,
        }),
        ..Default::default()
    };
    let metrics = Arc::new(Metrics::new());
    let (stop, stop_rx) = watch::channel(false);
    let (stores, _) = watch::channel(None);
    let task = tokio::spawn(run_controllers(
        server.client(),
        options,
        metrics.clone(),
        stores,
        stop_rx,
    ));

    let status = |s: &FakeApiServer, name: &str| {
        s.get_as::<ExperienceKPI>(Some("shop"), name)
            .and_then(|k| k.status)
    };
    assert!(
        server
            .wait_until(WAIT, |s| [
                "checkout-csat",
                "ambitious-csat",
                "demanding-csat"
            ]
            .iter()
            .all(|n| status(s, n).is_some_and(|st| st.state.is_some())))
            .await,
        "every KPI evaluated: {:?}\n{}\n{:?}",
        server.list("experiencekpis.cx.conductor.dev", Some("shop")),
        metrics.encode(),
        server
            .requests()
            .iter()
            .filter(|r| r.path.contains("experiencekpis"))
            .map(|r| format!("{} {} {}", r.method, r.path, r.status))
            .collect::<Vec<_>>()
    );
    let met = status(&server, "checkout-csat").unwrap();
    assert_eq!(met.state, Some(KpiState::Met), "{met:?}");
    let value = met.value.unwrap();
    assert!(
        (value - 80.0).abs() < 1e-6,
        "CSAT of the posted answers is 80%, got {value}"
    );
    assert!(
        (met.gap.unwrap() - -5.0).abs() < 1e-6,
        "gap = target - value = -5"
    );
    // increase() extrapolates over data only seconds old: the count may read one high.
    assert!(matches!(met.samples, Some(10 | 11)), "{met:?}");
    assert!(
        met.conditions
            .iter()
            .any(|c| c.type_ == "QueryValid" && c.status == "True")
    );
    assert_eq!(
        status(&server, "ambitious-csat").unwrap().state,
        Some(KpiState::Breached)
    );
    assert_eq!(
        status(&server, "demanding-csat").unwrap().state,
        Some(KpiState::InsufficientData)
    );

    // The journey counts its KPIs by state.
    assert!(
        server
            .wait_until(WAIT, |s| s
                .get_as::<CustomerJourney>(Some("shop"), "main")
                .and_then(|j| j.status)
                .is_some_and(|st| st.kpis.met == 1
                    && st.kpis.breached == 1
                    && st.kpis.insufficient_data == 1))
            .await,
        "journey KPI counts"
    );
    // The gauges are exported with the KPI's labels.
    let text = metrics.encode();
    assert!(
        text.contains(r#"cx_kpi_value{indicator="csat",journey="main",kpi="checkout-csat",namespace="shop",owner="digital",stage="purchase"} 80"#),
        "{text}"
    );
    assert!(text.contains(r#"cx_kpi_state{indicator="csat",journey="main",kpi="ambitious-csat",namespace="shop",owner="digital",stage="purchase",state="Breached"} 1"#), "{text}");

    // The next cycle keeps this one as the previous value, with no change of gap.
    assert!(
        server
            .wait_until(WAIT, |s| status(s, "checkout-csat")
                .is_some_and(|st| st.previous_value.is_some()))
            .await
    );
    let second = status(&server, "checkout-csat").unwrap();
    assert!((second.previous_value.unwrap() - 80.0).abs() < 1e-6);
    assert!(second.gap_change.unwrap().abs() < 1e-6, "{second:?}");
    assert!(
        server
            .wait_until(WAIT, |s| status(s, "ambitious-csat")
                .is_some_and(|st| st.previous_value.is_some()))
            .await
    );

    // Deleting a KPI removes its series.
    server
        .delete(
            "experiencekpis.cx.conductor.dev",
            Some("shop"),
            "ambitious-csat",
        )
        .unwrap();
    let gone = async {
        loop {
            if !metrics.encode().contains("kpi=\"ambitious-csat\"") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(WAIT, gone)
        .await
        .expect("series of a deleted KPI removed");
    let _ = stop.send(true);
    let _ = tokio::time::timeout(WAIT, task).await;
}
