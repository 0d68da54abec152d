//! The operator's KPI evaluation end to end on the real control plane: the API server holds
//! the resources, a real collector counts posted answers, a real Prometheus scrapes it, and the
//! operator (with the chart's ServiceAccount) writes the KPI's status, the journey's KPI counts
//! and the namespace's PrometheusRule, which the Prometheus Operator's own CRD validates.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/operator.rs"]
mod operator_support;
#[path = "support/otlp.rs"]
mod otlp;
#[path = "support/prometheus.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cluster::{apply, cluster, eventually, get};
use cx_conductor::api::{Channel, CustomerJourney, ExperienceKPI, KpiState, Touchpoint};
use cx_conductor::core::listening::{theme_sources, themes_of};
use cx_conductor::core::plan::collector_config;
use cx_conductor::kpi::rules::RULE_NAME;
use cx_conductor::kpi::{PrometheusClient, PrometheusConfig};
use cx_conductor::operator::kpi::prometheus_rule_resource;
use cx_conductor::operator::touchpoint::service_monitor_resource;
use cx_conductor::operator::{KpiOptions, OperatorOptions};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject};
use operator_support::{Operator, full_release, operator_client};
use serde_json::json;
use support::{Prometheus, RunningCollector, prometheus_binary};

const WAIT: Duration = Duration::from_secs(60);

fn rules_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &prometheus_rule_resource())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpis_are_evaluated_against_prometheus_and_counted_by_their_journey() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let release = full_release();
    let ns = cluster().namespace("kpi").await;
    let admin = cluster().admin();
    let create = |object: serde_json::Value| {
        let admin = admin.clone();
        async move {
            apply(&admin, &object, "test").await.expect("created");
        }
    };
    create(
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"type": "web", "owner": "digital", "privacy": {"consentPolicyVersion": "v7"}}}),
    )
    .await;
    create(json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
        "metadata": {"name": "checkout", "namespace": ns},
        "spec": {"channel": "web", "stage": "purchase", "signals": {"surveys": [{"metric": "csat"}]},
                 "collector": {"mode": "dedicated", "replicas": 1, "maxEventBytes": 65536}}}))
    .await;
    let kpi = |name: &str, target: f64, min_samples: i64| {
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "ExperienceKPI",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"indicator": {"builtin": "csat"}, "scope": {"stage": "purchase"},
                     "objective": {"target": target, "direction": "atLeast"}, "window": "1h", "interval": "2s",
                     "minSamples": min_samples, "owner": "digital", "journey": "main"}})
    };
    create(kpi("checkout-csat", 75.0, 5)).await;
    create(kpi("ambitious-csat", 95.0, 5)).await;
    create(kpi("demanding-csat", 75.0, 1000)).await;
    create(
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "CustomerJourney",
        "metadata": {"name": "main", "namespace": ns},
        "spec": {"owner": "cx", "stages": ["purchase"]}}),
    )
    .await;

    // A real collector for the touchpoint, with the configuration the operator would deploy.
    let touchpoint: Touchpoint = get(&admin, &ns, "checkout").await.unwrap();
    let channel: Channel = get(&admin, &ns, "web").await.unwrap();
    let collector = RunningCollector::start(&collector_config(&touchpoint, Some(&channel))).await;
    let prometheus = Prometheus::start(binary.clone(), &[collector.addr], "1s").await;
    // Prometheus sees the zero-valued series first, as it would a new collector pod.
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
        namespaces: vec![ns.clone()],
        resync: Duration::from_secs(1),
        kpi: Some(KpiOptions {
            prometheus: Arc::new(client),
            prometheus_rules: Some(
                [("release".to_string(), "kube-prometheus-stack".to_string())].into(),
            ),
        }),
        ..Default::default()
    };
    let operator = Operator::start(operator_client(release, None).await, options);
    let metrics = operator.metrics.clone();

    let status = |name: &'static str| {
        let admin = admin.clone();
        let ns = ns.clone();
        async move {
            get::<ExperienceKPI>(&admin, &ns, name)
                .await
                .and_then(|k| k.status)
        }
    };
    assert!(
        eventually(WAIT, || async {
            let mut all = true;
            for name in ["checkout-csat", "ambitious-csat", "demanding-csat"] {
                all &= status(name).await.is_some_and(|st| st.state.is_some());
            }
            all
        })
        .await,
        "every KPI evaluated\n{}",
        metrics.encode()
    );
    let met = status("checkout-csat").await.unwrap();
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
    // Exactly the answers received, however young the data.
    assert_eq!(met.samples, Some(10), "{met:?}");
    // Nothing was posted an hour before: no previous cycle, no gap change.
    assert_eq!(
        (met.previous_value, met.gap_change),
        (None, None),
        "{met:?}"
    );
    assert!(
        met.conditions
            .iter()
            .any(|c| c.type_ == "QueryValid" && c.status == "True")
    );
    // The 1h window and its previous hour are within the harness Prometheus' 1d retention.
    assert!(
        met.conditions.iter().any(|c| c.type_ == "WindowValid"
            && c.status == "True"
            && c.message.ends_with("within Prometheus' retention (1d)")),
        "{:?}",
        met.conditions
    );
    assert_eq!(
        status("ambitious-csat").await.unwrap().state,
        Some(KpiState::Breached)
    );
    assert_eq!(
        status("demanding-csat").await.unwrap().state,
        Some(KpiState::InsufficientData)
    );

    // The journey counts its KPIs by state.
    assert!(
        eventually(WAIT, || async {
            get::<CustomerJourney>(&admin, &ns, "main")
                .await
                .and_then(|j| j.status)
                .is_some_and(|st| {
                    st.kpis.met == 1 && st.kpis.breached == 1 && st.kpis.insufficient_data == 1
                })
        })
        .await,
        "journey KPI counts"
    );
    // The gauges are exported with the KPI's labels.
    let text = metrics.encode();
    assert!(
        text.contains(&format!(r#"cx_kpi_value{{indicator="csat",journey="main",kpi="checkout-csat",namespace="{ns}",owner="digital",stage="purchase"}} 80"#)),
        "{text}"
    );
    assert!(text.contains(&format!(r#"cx_kpi_state{{indicator="csat",journey="main",kpi="ambitious-csat",namespace="{ns}",owner="digital",stage="purchase",state="Breached"}} 1"#)), "{text}");

    // No new feedback: the next cycles (every 2 s) measure the same windows and write nothing.
    let kpis: Api<ExperienceKPI> = Api::namespaced(admin.clone(), &ns);
    let before = kpis.get("checkout-csat").await.unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let after = kpis.get("checkout-csat").await.unwrap();
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "a status write without new feedback: {:?}",
        after.status
    );

    // A spec change (target 75 -> 85) is evaluated afresh: the gap of the new target, no
    // figure of the previous generation left in the status, and the gauges say the same.
    apply(&admin, &kpi("checkout-csat", 85.0, 5), "test")
        .await
        .expect("updated");
    assert!(
        eventually(WAIT, || async {
            status("checkout-csat")
                .await
                .is_some_and(|st| st.gap.is_some_and(|g| (g - 5.0).abs() < 1e-6))
        })
        .await,
        "the new target's gap"
    );
    let retargeted = status("checkout-csat").await.unwrap();
    assert_eq!(retargeted.state, Some(KpiState::Breached), "{retargeted:?}");
    assert_eq!(
        (retargeted.previous_value, retargeted.gap_change),
        (None, None)
    );
    assert_eq!(
        retargeted.observed_generation,
        after.metadata.generation.map(|g| g + 1)
    );
    let text = metrics.encode();
    let series = format!(
        r#"{{indicator="csat",journey="main",kpi="checkout-csat",namespace="{ns}",owner="digital",stage="purchase"}}"#
    );
    assert!(text.contains(&format!("cx_kpi_gap{series} 5\n")), "{text}");
    assert!(
        text.contains(&format!("cx_kpi_target{series} 85\n")),
        "{text}"
    );
    assert!(
        !text.contains(&format!("cx_kpi_gap_change{series}")),
        "{text}"
    );

    // The namespace's PrometheusRule passes the Prometheus Operator's own schema.
    let rules = rules_api(&admin, &ns);
    assert!(
        eventually(WAIT, || async {
            rules.get_opt(RULE_NAME).await.unwrap().is_some()
        })
        .await,
        "PrometheusRule applied"
    );
    let rule = rules.get(RULE_NAME).await.unwrap();
    assert_eq!(
        rule.metadata.labels.as_ref().unwrap()["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        rule.data["spec"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        6,
        "two alerts per KPI"
    );
    // The increments are recorded in the form this Prometheus evaluates: `anchored` on 3.x.
    let version = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .expect("prometheus --version");
    let prometheus_3 = String::from_utf8_lossy(&version.stdout).contains("version 3.");
    let recorded = rule.data["spec"]["groups"][1]["rules"][0]["expr"]
        .as_str()
        .expect("a recording rule")
        .to_string();
    assert_eq!(
        recorded.contains("[5m] anchored"),
        prometheus_3,
        "{recorded}"
    );

    // Deleting a KPI removes its series.
    kpis.delete("ambitious-csat", &DeleteParams::default())
        .await
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

    // The last KPI of the namespace goes: so does its PrometheusRule.
    for name in ["checkout-csat", "demanding-csat"] {
        kpis.delete(name, &DeleteParams::default()).await.unwrap();
    }
    assert!(
        eventually(WAIT, || async {
            rules.get_opt(RULE_NAME).await.unwrap().is_none()
        })
        .await,
        "PrometheusRule removed with the last KPI"
    );
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_objects_are_removed_when_their_option_is_turned_off() {
    let release = full_release();
    let ns = cluster().namespace("monitoring-off").await;
    let admin = cluster().admin();
    for object in [
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
            "metadata": {"name": "web", "namespace": ns}, "spec": {"type": "web"}}),
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
            "metadata": {"name": "checkout", "namespace": ns},
            "spec": {"channel": "web", "stage": "purchase", "signals": {"surveys": [{"metric": "csat"}]},
                     "collector": {"mode": "dedicated"}}}),
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "ExperienceKPI",
            "metadata": {"name": "csat", "namespace": ns},
            "spec": {"indicator": {"builtin": "csat"}, "objective": {"target": 80, "direction": "atLeast"},
                     "window": "1h", "interval": "1m"}}),
    ] {
        apply(&admin, &object, "test").await.expect("created");
    }
    let prometheus =
        Arc::new(PrometheusClient::new(PrometheusConfig::new("http://127.0.0.1:9")).unwrap());
    let options = |on: bool| OperatorOptions {
        namespaces: vec![ns.clone()],
        resync: Duration::from_secs(2),
        plan: cx_conductor::core::plan::PlanOptions {
            service_monitor: on,
            ..Default::default()
        },
        kpi: Some(KpiOptions {
            prometheus: prometheus.clone(),
            prometheus_rules: on.then(Default::default),
        }),
    };
    let monitors =
        Api::<DynamicObject>::namespaced_with(admin.clone(), &ns, &service_monitor_resource());
    let rules = rules_api(&admin, &ns);
    let on = Operator::start(operator_client(release, None).await, options(true));
    assert!(
        eventually(WAIT, || async {
            monitors.get_opt("cx-collectors").await.unwrap().is_some()
                && rules.get_opt(RULE_NAME).await.unwrap().is_some()
        })
        .await,
        "ServiceMonitor and PrometheusRule applied"
    );
    on.stop().await;
    let off = Operator::start(operator_client(release, None).await, options(false));
    assert!(
        eventually(WAIT, || async {
            monitors.get_opt("cx-collectors").await.unwrap().is_none()
                && rules.get_opt(RULE_NAME).await.unwrap().is_none()
        })
        .await,
        "both removed once turned off"
    );
    off.stop().await;
}

/// Theme KPIs through the operator like any other: the share of detractors' comments about
/// delivery and the comment rate in status and gauges, their alerts in the PrometheusRule, and a
/// KPI naming a theme no journey declares told so in its conditions (`QueryValid=False`,
/// `ThemeNotDeclared`), Unknown rather than measured over nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn theme_kpis_get_status_gauges_alerts_and_a_condition_naming_an_undeclared_theme() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let release = full_release();
    let ns = cluster().namespace("theme-kpi").await;
    let admin = cluster().admin();
    let objects = [
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
            "metadata": {"name": "web", "namespace": ns, "labels": {"journey": "main"}},
            "spec": {"type": "web", "owner": "digital"}}),
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
            "metadata": {"name": "checkout", "namespace": ns},
            "spec": {"channel": "web", "stage": "purchase", "signals": {"surveys": [{"metric": "nps"}]},
                     "collector": {"mode": "dedicated", "replicas": 1}}}),
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "CustomerJourney",
            "metadata": {"name": "main", "namespace": ns},
            "spec": {"owner": "cx", "stages": ["purchase"],
                     "channelSelector": {"matchLabels": {"journey": "main"}},
                     "themes": [
                        {"name": "delivery", "keywords": ["consegn*", "corriere", "courier", "late"]},
                        {"name": "price", "keywords": ["prezz*", "price*"]}]}}),
    ];
    for object in objects {
        apply(&admin, &object, "test").await.expect("created");
    }
    let kpi = |name: &str, indicator: serde_json::Value, target: f64, direction: &str| {
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "ExperienceKPI",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"indicator": indicator, "scope": {"stage": "purchase"},
                     "objective": {"target": target, "direction": direction}, "window": "1h",
                     "interval": "2s", "minSamples": 4, "owner": "logistics", "journey": "main"}})
    };
    for object in [
        kpi(
            "detractors-on-delivery",
            json!({"builtin": "theme-share", "theme": "delivery", "metric": "nps", "segment": "detractor"}),
            25.0,
            "atMost",
        ),
        kpi(
            "nps-comment-rate",
            json!({"builtin": "comment-rate", "metric": "nps"}),
            50.0,
            "atLeast",
        ),
        kpi(
            "misspelt-theme",
            json!({"builtin": "theme-share", "theme": "delivry"}),
            25.0,
            "atMost",
        ),
    ] {
        apply(&admin, &object, "test").await.expect("created");
    }

    // The collector counts the journey's themes, as the operator configures it.
    let touchpoint: Touchpoint = get(&admin, &ns, "checkout").await.unwrap();
    let channel: Channel = get(&admin, &ns, "web").await.unwrap();
    let journey: CustomerJourney = get(&admin, &ns, "main").await.unwrap();
    let mut config = collector_config(&touchpoint, Some(&channel));
    config.themes = themes_of(&touchpoint, Some(&channel), &theme_sources(&[journey]));
    let collector = RunningCollector::start(&config).await;
    let prometheus = Prometheus::start(binary, &[collector.addr], "1s").await;
    prometheus
        .wait_for_value("count(cx_events_received_total)", 1.0, WAIT)
        .await;
    // 6 answers, 5 commented; 4 commented by detractors, 2 of them about delivery.
    let answers: Vec<String> = [
        (2, Some("il corriere non è mai arrivato")),
        (4, Some("the courier was late again")),
        (5, Some("prezzo alto")),
        (6, Some("sito lento")),
        (9, Some("consegna puntuale")),
        (10, None),
    ]
    .iter()
    .map(|(score, comment)| match comment {
        Some(c) => format!(r#"{{"type":"survey","metric":"nps","score":{score},"comment":"{c}"}}"#),
        None => format!(r#"{{"type":"survey","metric":"nps","score":{score}}}"#),
    })
    .collect();
    collector.post(&answers).await;
    prometheus
        .wait_for_value("sum(cx_feedback_comments_total)", 5.0, WAIT)
        .await;

    let client = PrometheusClient::new(PrometheusConfig::new(prometheus.url.clone())).unwrap();
    let options = OperatorOptions {
        namespaces: vec![ns.clone()],
        resync: Duration::from_secs(1),
        kpi: Some(KpiOptions {
            prometheus: Arc::new(client),
            prometheus_rules: Some(BTreeMap::new()),
        }),
        ..Default::default()
    };
    let operator = Operator::start(operator_client(release, None).await, options);
    let metrics = operator.metrics.clone();
    let status = |name: &'static str| {
        let admin = admin.clone();
        let ns = ns.clone();
        async move {
            get::<ExperienceKPI>(&admin, &ns, name)
                .await
                .and_then(|k| k.status)
        }
    };
    assert!(
        eventually(WAIT, || async {
            status("detractors-on-delivery")
                .await
                .is_some_and(|s| s.samples == Some(4))
                && status("nps-comment-rate")
                    .await
                    .is_some_and(|s| s.samples == Some(6))
                && status("misspelt-theme")
                    .await
                    .is_some_and(|s| s.state.is_some())
        })
        .await,
        "theme KPIs evaluated: {:?} {:?}",
        status("detractors-on-delivery").await,
        status("nps-comment-rate").await
    );
    let share = status("detractors-on-delivery").await.unwrap();
    assert_eq!(
        (share.value, share.gap, share.state),
        (Some(50.0), Some(25.0), Some(KpiState::Breached)),
        "{share:?}"
    );
    let rate = status("nps-comment-rate").await.unwrap();
    assert_eq!(rate.state, Some(KpiState::Met), "{rate:?}");
    assert!(
        (rate.value.unwrap() - 100.0 * 5.0 / 6.0).abs() < 1e-3,
        "{rate:?}"
    );

    let misspelt = status("misspelt-theme").await.unwrap();
    assert_eq!(misspelt.state, Some(KpiState::Unknown));
    let query_valid = misspelt
        .conditions
        .iter()
        .find(|c| c.type_ == "QueryValid")
        .expect("QueryValid");
    assert_eq!(
        (query_valid.status.as_str(), query_valid.reason.as_str()),
        ("False", "ThemeNotDeclared"),
        "{query_valid:?}"
    );
    assert!(
        query_valid.message.ends_with("they count delivery, price"),
        "{}",
        query_valid.message
    );

    // Gauges with the indicator's name, and a breach and an at-risk alert per KPI.
    let text = metrics.encode();
    assert!(
        text.contains(&format!(r#"cx_kpi_value{{indicator="theme-share",journey="main",kpi="detractors-on-delivery",namespace="{ns}",owner="logistics",stage="purchase"}} 50"#)),
        "{text}"
    );
    assert!(
        text.contains(&format!(r#"cx_kpi_state{{indicator="theme-share",journey="main",kpi="detractors-on-delivery",namespace="{ns}",owner="logistics",stage="purchase",state="Breached"}} 1"#)),
        "{text}"
    );
    assert!(
        text.contains(&format!(r#"cx_kpi_samples{{indicator="comment-rate",journey="main",kpi="nps-comment-rate",namespace="{ns}",owner="logistics",stage="purchase"}} 6"#)),
        "{text}"
    );
    let rules = rules_api(&admin, &ns);
    assert!(
        eventually(WAIT, || async {
            rules.get_opt(RULE_NAME).await.unwrap().is_some_and(|rule| {
                rule.data["spec"]["groups"][0]["rules"]
                    .as_array()
                    .is_some_and(|r| r.len() == 6)
            })
        })
        .await,
        "two alerts per theme KPI"
    );
    let rule = rules.get(RULE_NAME).await.unwrap();
    let routed = rule.data["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["labels"]["owner"] == "logistics")
        .count();
    assert_eq!(routed, 6, "alerts routed to the KPIs' owner");
    operator.stop().await;
}

/// An outcome-share KPI over a touchpoint's custom outcomes, through the operator on the real
/// control plane: the API server accepts the touchpoint's `customOutcomes`, the share of tracked
/// deliveries ending in a failed attempt is in status and gauges, its alerts in the
/// PrometheusRule routed to the owner, and a KPI naming an outcome no touchpoint declares is told
/// so (`QueryValid=False`, `OutcomeNotDeclared`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_share_kpis_get_status_gauges_alerts_and_a_condition_naming_an_undeclared_outcome()
{
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let release = full_release();
    let ns = cluster().namespace("outcome-kpi").await;
    let admin = cluster().admin();
    let objects = [
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
            "metadata": {"name": "app", "namespace": ns},
            "spec": {"type": "mobile-app", "owner": "digital"}}),
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
            "metadata": {"name": "tracking", "namespace": ns},
            "spec": {"channel": "app", "stage": "delivery",
                     "signals": {"interactions": {"outcomes": ["completed"],
                                                  "customOutcomes": ["failed-attempt", "rescheduled"]}},
                     "collector": {"mode": "dedicated", "replicas": 1}}}),
    ];
    for object in objects {
        apply(&admin, &object, "test").await.expect("created");
    }
    let kpi = |name: &str, outcomes: serde_json::Value| {
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "ExperienceKPI",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"indicator": {"builtin": "outcome-share", "outcomes": outcomes},
                     "scope": {"stage": "delivery"},
                     "objective": {"target": 10, "direction": "atMost"}, "window": "1h",
                     "interval": "2s", "minSamples": 4, "owner": "logistics"}})
    };
    for object in [
        kpi("failed-attempts", json!(["failed-attempt"])),
        kpi("misspelt-outcome", json!(["faild-attempt"])),
    ] {
        apply(&admin, &object, "test").await.expect("created");
    }

    // The collector the operator would configure, from the touchpoint as the API server stored it.
    let touchpoint: Touchpoint = get(&admin, &ns, "tracking").await.unwrap();
    assert_eq!(
        touchpoint
            .spec
            .signals
            .interactions
            .as_ref()
            .map(|i| i.custom_outcomes.clone()),
        Some(vec![
            "failed-attempt".to_string(),
            "rescheduled".to_string()
        ]),
        "the API server keeps customOutcomes"
    );
    let channel: Channel = get(&admin, &ns, "app").await.unwrap();
    let collector = RunningCollector::start(&collector_config(&touchpoint, Some(&channel))).await;
    let prometheus = Prometheus::start(binary, &[collector.addr], "1s").await;
    prometheus
        .wait_for_value("count(cx_events_received_total)", 1.0, WAIT)
        .await;
    // 8 tracked deliveries: 5 completed, 2 failed attempts, 1 rescheduled.
    let events: Vec<String> = [("completed", 5), ("failed-attempt", 2), ("rescheduled", 1)]
        .iter()
        .flat_map(|(outcome, n)| {
            std::iter::repeat_n(
                format!(r#"{{"type":"interaction","outcome":"{outcome}"}}"#),
                *n,
            )
        })
        .collect();
    collector.post(&events).await;
    prometheus
        .wait_for_value("sum(cx_interactions_total)", 8.0, WAIT)
        .await;

    let client = PrometheusClient::new(PrometheusConfig::new(prometheus.url.clone())).unwrap();
    let options = OperatorOptions {
        namespaces: vec![ns.clone()],
        resync: Duration::from_secs(1),
        kpi: Some(KpiOptions {
            prometheus: Arc::new(client),
            prometheus_rules: Some(BTreeMap::new()),
        }),
        ..Default::default()
    };
    let operator = Operator::start(operator_client(release, None).await, options);
    let metrics = operator.metrics.clone();
    let status = |name: &'static str| {
        let admin = admin.clone();
        let ns = ns.clone();
        async move {
            get::<ExperienceKPI>(&admin, &ns, name)
                .await
                .and_then(|k| k.status)
        }
    };
    assert!(
        eventually(WAIT, || async {
            status("failed-attempts")
                .await
                .is_some_and(|s| s.samples == Some(8))
                && status("misspelt-outcome")
                    .await
                    .is_some_and(|s| s.state.is_some())
        })
        .await,
        "outcome KPIs evaluated: {:?} {:?}",
        status("failed-attempts").await,
        status("misspelt-outcome").await
    );
    let share = status("failed-attempts").await.unwrap();
    assert_eq!(
        (share.value, share.gap, share.state),
        (Some(25.0), Some(15.0), Some(KpiState::Breached)),
        "{share:?}"
    );

    let misspelt = status("misspelt-outcome").await.unwrap();
    assert_eq!(misspelt.state, Some(KpiState::Unknown));
    let query_valid = misspelt
        .conditions
        .iter()
        .find(|c| c.type_ == "QueryValid")
        .expect("QueryValid");
    assert_eq!(
        (query_valid.status.as_str(), query_valid.reason.as_str()),
        ("False", "OutcomeNotDeclared"),
        "{query_valid:?}"
    );
    assert_eq!(
        query_valid.message,
        "outcome faild-attempt is declared by no touchpoint in scope (tracking), so no interaction can end with it; they declare completed, failed-attempt, rescheduled"
    );

    let text = metrics.encode();
    assert!(
        text.contains(&format!(r#"cx_kpi_value{{indicator="outcome-share",journey="",kpi="failed-attempts",namespace="{ns}",owner="logistics",stage="delivery"}} 25"#)),
        "{text}"
    );
    assert!(
        text.contains(&format!(r#"cx_kpi_state{{indicator="outcome-share",journey="",kpi="failed-attempts",namespace="{ns}",owner="logistics",stage="delivery",state="Breached"}} 1"#)),
        "{text}"
    );
    let rules = rules_api(&admin, &ns);
    assert!(
        eventually(WAIT, || async {
            rules.get_opt(RULE_NAME).await.unwrap().is_some_and(|rule| {
                rule.data["spec"]["groups"][0]["rules"]
                    .as_array()
                    .is_some_and(|r| {
                        r.iter()
                            .filter(|r| r["labels"]["kpi"] == "failed-attempts")
                            .count()
                            == 2
                    })
            })
        })
        .await,
        "two alerts for the outcome KPI"
    );
    let rule = rules.get(RULE_NAME).await.unwrap();
    assert!(
        rule.data["spec"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["labels"]["kpi"] == "failed-attempts")
            .all(|r| r["labels"]["owner"] == "logistics"),
        "alerts routed to the KPI's owner"
    );
    operator.stop().await;
}

/// The Exported condition from the namespace's export health in Prometheus: False naming the
/// reasons where the endpoint refuses, True where it accepts, absent where nothing is exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touchpoints_say_whether_their_exports_fail() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let release = full_release();
    let admin = cluster().admin();
    let failing_ns = cluster().namespace("export-failing").await;
    let healthy_ns = cluster().namespace("export-healthy").await;
    let refusing = otlp::Endpoint::start(otlp::Mode::Status(503, None)).await;
    let accepting = otlp::Endpoint::start(otlp::Mode::Accept).await;
    let mut collectors = Vec::new();
    for (ns, endpoint) in [(&failing_ns, &refusing), (&healthy_ns, &accepting)] {
        for object in [
            json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {"type": "web", "owner": "digital"}}),
            json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
                "metadata": {"name": "checkout", "namespace": ns},
                "spec": {"channel": "web", "stage": "purchase",
                         "signals": {"surveys": [{"metric": "nps"}]},
                         "collector": {"mode": "dedicated", "replicas": 1}}}),
            json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
                "metadata": {"name": "kiosk", "namespace": ns},
                "spec": {"channel": "web", "stage": "purchase",
                         "signals": {"surveys": [{"metric": "nps"}]},
                         "collector": {"mode": "dedicated", "replicas": 1},
                         "export": {"enabled": false}}}),
        ] {
            apply(&admin, &object, "test").await.expect("created");
        }
        // The checkout's collector, exporting to this namespace's endpoint.
        let touchpoint: Touchpoint = get(&admin, ns, "checkout").await.unwrap();
        let channel: Channel = get(&admin, ns, "web").await.unwrap();
        let mut config = collector_config(&touchpoint, Some(&channel));
        config.export = Some(
            serde_yaml::from_str(&format!(
                "{{endpoint: \"{}\", timeoutMillis: 500}}",
                endpoint.url()
            ))
            .expect("export settings"),
        );
        collectors.push(RunningCollector::start(&config).await);
    }
    let prometheus = Prometheus::start(
        binary,
        &collectors.iter().map(|c| c.addr).collect::<Vec<_>>(),
        "1s",
    )
    .await;
    prometheus
        .wait_for_value("count(cx_export_failures_total)", 2.0 * 9.0, WAIT)
        .await;
    let event = r#"{"type":"survey","metric":"nps","score":3,"comment":"lento"}"#.to_string();
    let (status, answer) = collectors[0]
        .post_report(std::slice::from_ref(&event))
        .await;
    assert_eq!(status, 503, "{answer}");
    collectors[1].post(&[event]).await;
    prometheus
        .wait_for_value(
            &format!(
                "sum(cx_export_failures_total{{namespace=\"{failing_ns}\", reason=\"unavailable\"}})"
            ),
            1.0,
            WAIT,
        )
        .await;

    let client = PrometheusClient::new(PrometheusConfig::new(prometheus.url.clone())).unwrap();
    let options = OperatorOptions {
        namespaces: vec![failing_ns.clone(), healthy_ns.clone()],
        resync: Duration::from_secs(1),
        plan: cx_conductor::core::plan::PlanOptions {
            export: Some(cx_conductor::core::plan::ExportOptions {
                endpoint: "https://otel.observability:4318".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        kpi: Some(KpiOptions {
            prometheus: Arc::new(client),
            prometheus_rules: None,
        }),
    };
    let operator = Operator::start(operator_client(release, None).await, options);
    let exported = |ns: String, name: &'static str| {
        let admin = admin.clone();
        async move {
            get::<Touchpoint>(&admin, &ns, name)
                .await
                .and_then(|t| t.status)
                .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Exported"))
        }
    };
    assert!(
        eventually(WAIT, || async {
            exported(failing_ns.clone(), "checkout").await.is_some()
                && exported(healthy_ns.clone(), "checkout").await.is_some()
        })
        .await,
        "Exported conditions written\n{}",
        operator.metrics.encode()
    );
    let failing = exported(failing_ns.clone(), "checkout").await.unwrap();
    assert_eq!(
        (failing.status.as_str(), failing.reason.as_str()),
        ("False", "ExportFailing")
    );
    assert!(
        failing
            .message
            .contains("export requests failed (unavailable)"),
        "{}",
        failing.message
    );
    assert!(!failing.message.contains("lento"));
    let healthy = exported(healthy_ns.clone(), "checkout").await.unwrap();
    assert_eq!(
        (
            healthy.status.as_str(),
            healthy.reason.as_str(),
            healthy.message.as_str()
        ),
        (
            "True",
            "Exporting",
            "events go to https://otel.observability:4318/v1/logs; no export request failed in \
             the last 5m"
        )
    );
    for ns in [&failing_ns, &healthy_ns] {
        assert_eq!(exported(ns.clone(), "kiosk").await, None, "kiosk opted out");
    }
    operator.stop().await;
}
