//! The deployment plan of a collector, from a YAML fixture: names, labels, security, probes,
//! configuration, owner reference and determinism.

use std::path::Path;

use cx_conductor::api::{Channel, Touchpoint};
use cx_conductor::collector::config::CollectorConfig;
use cx_conductor::core::plan::{
    CONFIG_HASH_ANNOTATION, CollectorPlan, PlanOptions, plan_collector,
};
use cx_conductor::manifest::{Inventory, load_paths};
use cx_conductor::schema::SchemaValidator;

fn fixture() -> (Touchpoint, Channel) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan/checkout.yaml");
    let documents = load_paths(&[path]).unwrap();
    let mut inventory = Inventory::from_documents(&documents, &SchemaValidator::new());
    assert!(inventory.rejected.is_empty(), "{:?}", inventory.rejected);
    (
        inventory.touchpoints.remove(0),
        inventory.channels.remove(0),
    )
}

fn plan(tp: &Touchpoint, channel: &Channel, options: &PlanOptions) -> CollectorPlan {
    plan_collector(tp, Some(channel), options)
}

#[test]
fn objects_are_named_labelled_and_owned_by_the_touchpoint() {
    let (tp, channel) = fixture();
    let plan = plan(&tp, &channel, &PlanOptions::default());
    for object in plan.objects() {
        let meta = &object["metadata"];
        assert_eq!(meta["name"], "collector-web-checkout", "{object}");
        assert_eq!(meta["namespace"], "shop");
        let labels = &meta["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "cx-collector");
        assert_eq!(
            labels["app.kubernetes.io/instance"],
            "collector-web-checkout"
        );
        assert_eq!(labels["app.kubernetes.io/managed-by"], "cx-conductor");
        assert_eq!(labels["cx.conductor.dev/touchpoint"], "web-checkout");
        assert_eq!(labels["cx.conductor.dev/channel"], "web");
        assert_eq!(labels["cx.conductor.dev/stage"], "purchase");
        let owner = &meta["ownerReferences"][0];
        assert_eq!(owner["kind"], "Touchpoint");
        assert_eq!(owner["uid"], "0d6f4a52-7c1e-4f0e-9a51-2b7c6a1d9e10");
        assert_eq!(owner["controller"], true);
    }
    assert_eq!(
        plan.endpoint,
        "http://collector-web-checkout.shop.svc:80/v1/events"
    );
    let kinds: Vec<String> = plan
        .objects()
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "Service", "Deployment", "PodDisruptionBudget"]
    );
}

#[test]
fn the_pod_meets_the_restricted_pod_security_standard() {
    let (tp, channel) = fixture();
    let plan = plan(&tp, &channel, &PlanOptions::default());
    let pod = plan.deployment.spec.template.spec.as_ref().unwrap();
    let pod_security = pod.security_context.as_ref().unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(pod_security.run_as_group, Some(65532));
    assert_eq!(
        pod_security.fs_group,
        Some(65532),
        "the token Secret volume gets the collector's group"
    );
    assert_eq!(
        pod_security.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    let container = &pod.containers[0];
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(
        security.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert_eq!(
        security.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(
        container.image.as_deref(),
        Some("registry.example/cx-conductor:1.2.3")
    );
    assert_eq!(
        container
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        container
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/healthz")
    );
    let resources = serde_json::to_value(container.resources.as_ref().unwrap()).unwrap();
    assert_eq!(resources["requests"]["cpu"], "100m");
    assert_eq!(resources["limits"]["memory"], "96Mi");
    assert_eq!(plan.deployment.spec.replicas, Some(2));
}

#[test]
fn the_config_map_carries_the_touchpoint_configuration_and_the_token_is_mounted() {
    let (tp, channel) = fixture();
    let plan = plan(&tp, &channel, &PlanOptions::default());
    let data = plan.config_map.data.as_ref().unwrap();
    let config: CollectorConfig = serde_yaml::from_str(&data["collector.yaml"]).unwrap();
    assert_eq!(config.namespace, "shop");
    assert_eq!(config.touchpoint, "web-checkout");
    assert_eq!(config.channel, "web");
    assert_eq!(config.surveys.len(), 2);
    assert_eq!(config.surveys[1].scale, Some(7));
    assert_eq!(config.max_event_bytes, 4096);
    assert_eq!(
        config.first_response_seconds,
        Some(45),
        "the channel's service level becomes a bucket"
    );
    assert_eq!(
        config.auth.as_ref().unwrap().token_file,
        "/var/run/cx-conductor/token"
    );
    let pod = plan.deployment.spec.template.spec.as_ref().unwrap();
    let token = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "token")
        .unwrap();
    let secret = token.secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("checkout-ingest"));
    assert_eq!(secret.items.as_ref().unwrap()[0].key, "token");
}

#[test]
fn a_configuration_change_changes_the_pod_template_hash_and_nothing_else_does() {
    let (tp, channel) = fixture();
    let options = PlanOptions::default();
    let base = plan(&tp, &channel, &options);
    let annotation = |p: &CollectorPlan| {
        p.deployment
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    };
    assert_eq!(annotation(&base), base.config_hash);
    assert_eq!(base.config_hash.len(), 16);

    let mut relabelled = tp.clone();
    relabelled.metadata.labels = Some([("team".to_string(), "digital".to_string())].into());
    assert_eq!(
        plan(&relabelled, &channel, &options).config_hash,
        base.config_hash
    );

    let mut more_replicas = tp.clone();
    more_replicas.spec.collector.replicas = 3;
    assert_eq!(
        plan(&more_replicas, &channel, &options).config_hash,
        base.config_hash
    );

    let mut new_signal = tp.clone();
    new_signal.spec.signals.surveys.pop();
    assert_ne!(
        plan(&new_signal, &channel, &options).config_hash,
        base.config_hash
    );

    let mut slower = channel.clone();
    slower
        .spec
        .service_levels
        .as_mut()
        .unwrap()
        .first_response_seconds = Some(90);
    assert_ne!(plan(&tp, &slower, &options).config_hash, base.config_hash);
}

#[test]
fn optional_objects_follow_replicas_and_options() {
    let (tp, channel) = fixture();
    let mut single = tp.clone();
    single.spec.collector.replicas = 1;
    let plan_single = plan(&single, &channel, &PlanOptions::default());
    assert!(
        plan_single.pod_disruption_budget.is_none(),
        "one replica cannot keep one available"
    );
    assert!(plan_single.network_policy.is_none());
    assert!(plan_single.service_monitor.is_none());

    let options = PlanOptions {
        service_monitor: true,
        network_policy: true,
        ..Default::default()
    };
    let full = plan(&tp, &channel, &options);
    let monitor = full.service_monitor.as_ref().unwrap();
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        "collector-web-checkout"
    );
    let policy = serde_json::to_value(full.network_policy.as_ref().unwrap()).unwrap();
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 8080);
    assert_eq!(policy["spec"]["egress"], serde_json::json!([]));
    let pdb = serde_json::to_value(full.pod_disruption_budget.as_ref().unwrap()).unwrap();
    assert_eq!(pdb["spec"]["minAvailable"], 1);
}

#[test]
fn plans_are_byte_identical_for_the_same_input() {
    let (tp, channel) = fixture();
    let options = PlanOptions {
        service_monitor: true,
        network_policy: true,
        ..Default::default()
    };
    let render = || serde_yaml::to_string(&plan(&tp, &channel, &options).objects()).unwrap();
    assert_eq!(render(), render());
}
