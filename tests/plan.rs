//! The deployment plan of a collector, from a YAML fixture: names, labels, security, probes,
//! configuration, owner reference and determinism.

use std::path::Path;

use cx_conductor::api::{Channel, Touchpoint};
use cx_conductor::collector::config::CollectorConfig;
use cx_conductor::core::plan::{
    CONFIG_HASH_ANNOTATION, CollectorPlan, PlanOptions, plan_collector,
};
use cx_conductor::core::pool::plan_shared;
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
    plan_collector(tp, Some(channel), &[], options)
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
    assert_eq!(kinds, ["Service", "Deployment", "PodDisruptionBudget"]);
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
fn the_pod_template_carries_the_touchpoint_configuration_and_the_token_is_mounted() {
    let (tp, channel) = fixture();
    let plan = plan(&tp, &channel, &PlanOptions::default());
    let container = &plan
        .deployment
        .spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let env = container.env.as_ref().unwrap();
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].name, "CX_COLLECTOR_CONFIG");
    let text = env[0].value.clone().unwrap();
    assert_eq!(text, plan.config);
    assert!(
        !container
            .args
            .as_ref()
            .unwrap()
            .contains(&"--config".into()),
        "no configuration file: it is in the environment"
    );
    let config: CollectorConfig = serde_yaml::from_str(&text).unwrap();
    assert_eq!(config.namespace, "shop");
    assert_eq!(config.touchpoint, "web-checkout");
    assert_eq!(config.channel, "web");
    assert_eq!(config.surveys.len(), 2);
    assert_eq!(config.surveys[1].scale, Some(7));
    assert_eq!(config.max_event_bytes, 4096);
    // The default comment limit is left out, so the configuration (and its hash) is as it was
    // before comments existed; another limit is carried.
    assert_eq!(config.max_comment_bytes, None);
    assert!(!text.contains("maxCommentBytes"));
    let mut limited = tp.clone();
    limited.spec.collector.max_comment_bytes = 500;
    let limited = cx_conductor::core::plan::collector_config(&limited, Some(&channel));
    assert_eq!(limited.max_comment_bytes, Some(500));
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
    more_replicas.spec.collector.replicas = Some(3);
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
    single.spec.collector.replicas = Some(1);
    let plan_single = plan(&single, &channel, &PlanOptions::default());
    assert!(
        plan_single.pod_disruption_budget.is_none(),
        "one replica cannot keep one available"
    );
    assert!(plan_shared("shop", &[&single], &PlanOptions::default()).is_none());

    let options = PlanOptions {
        service_monitor: true,
        network_policy: true,
        ..Default::default()
    };
    let full = plan(&tp, &channel, &options);
    // A dedicated collector has no NetworkPolicy or ServiceMonitor of its own: its namespace's
    // select every collector there.
    let kinds: Vec<String> = full
        .objects()
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["Service", "Deployment", "PodDisruptionBudget"]);
    let shared = plan_shared("shop", &[&tp, &single], &options).unwrap();
    let monitor = shared.service_monitor.as_ref().unwrap();
    assert_eq!(monitor["metadata"]["name"], "cx-collectors");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    let every_collector = serde_json::json!({"app.kubernetes.io/name": "cx-collector",
        "app.kubernetes.io/managed-by": "cx-conductor"});
    assert_eq!(monitor["spec"]["selector"]["matchLabels"], every_collector);
    let deployment = serde_json::to_value(&full.deployment).unwrap();
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let service_labels = serde_json::to_value(&full.service).unwrap()["metadata"]["labels"].clone();
    for (key, value) in every_collector.as_object().unwrap() {
        assert_eq!(&pod_labels[key], value, "the policy selects the pods");
        assert_eq!(
            &service_labels[key], value,
            "the monitor selects the Service"
        );
    }
    let policy = serde_json::to_value(shared.network_policy.as_ref().unwrap()).unwrap();
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        every_collector
    );
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

/// The retail example's touchpoints and channels, as the cluster would hold them (with uids).
fn retail() -> (Vec<Touchpoint>, Vec<Channel>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/retail");
    let documents = load_paths(&[path]).unwrap();
    let inventory = Inventory::from_documents(&documents, &SchemaValidator::new());
    assert!(inventory.rejected.is_empty(), "{:?}", inventory.rejected);
    let mut touchpoints = inventory.touchpoints.clone();
    for (i, t) in touchpoints.iter_mut().enumerate() {
        t.metadata.uid = Some(format!("uid-{i}"));
    }
    (touchpoints, inventory.channels.clone())
}

#[test]
fn a_namespace_pool_serves_every_pooled_touchpoint_from_one_autoscaled_deployment() {
    use cx_conductor::core::pool::{PoolMember, plan_pool, pool_endpoint};
    let (touchpoints, channels) = retail();
    let members: Vec<PoolMember<'_>> = touchpoints
        .iter()
        .map(|t| PoolMember {
            touchpoint: t,
            channel: channels
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(&t.spec.channel)),
            token_sha256: None,
            themes: &[],
        })
        .collect();
    let options = PlanOptions::default();
    let pool = plan_pool("retail", &members, &options).expect("a pool");
    assert_eq!(pool.members.len(), 15);
    let deployment = &pool.deployment;
    assert_eq!(deployment.metadata.name.as_deref(), Some("cx-collectors"));
    assert_eq!(
        deployment.spec.replicas, None,
        "the autoscaler owns replicas"
    );
    let template = &deployment.spec.template;
    let annotations = template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap();
    assert!(
        !annotations.contains_key(CONFIG_HASH_ANNOTATION),
        "a configuration change must not roll the pool's pods"
    );
    let hpa = &pool.autoscaler.spec;
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(1), 10));
    assert_eq!(hpa.scale_target_ref.name, "cx-collectors");
    // Owned by every member, controlled by none: deleted with the last one.
    let owners = deployment.metadata.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 15);
    assert!(
        owners
            .iter()
            .all(|o| o.kind == "Touchpoint" && o.controller.is_none())
    );
    assert_eq!(
        pool_endpoint("retail", "web-checkout"),
        "http://cx-collectors.retail.svc:80/v1/touchpoints/web-checkout/events"
    );
    // The configuration is what a pool collector reads, sorted, first-response buckets included.
    let data = &pool.secret.data.as_ref().unwrap()["collectors.yaml"].0;
    let setup = cx_conductor::collector::config::CollectorSetup::from_yaml(
        std::str::from_utf8(data).unwrap(),
    )
    .expect("a pool configuration");
    let names: Vec<&str> = setup
        .touchpoints()
        .iter()
        .map(|t| t.touchpoint.as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let hotline = setup
        .touchpoints()
        .iter()
        .find(|t| t.touchpoint == "call-centre-hotline")
        .unwrap();
    assert!(hotline.first_response_seconds.is_some());
    // A change of one member changes the configuration hash, not the pod template.
    let mut changed = touchpoints.clone();
    changed[0].spec.signals.surveys.clear();
    changed[0].spec.signals.interactions = Some(Default::default());
    let members2: Vec<PoolMember<'_>> = changed
        .iter()
        .map(|t| PoolMember {
            touchpoint: t,
            channel: channels
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(&t.spec.channel)),
            token_sha256: None,
            themes: &[],
        })
        .collect();
    let pool2 = plan_pool("retail", &members2, &options).expect("a pool");
    assert_ne!(pool.config_hash, pool2.config_hash);
    assert_eq!(pool.deployment, pool2.deployment);
    assert!(plan_pool("retail", &[], &options).is_none());
}

#[test]
fn touchpoint_authors_get_only_allowed_images_and_marked_secrets() {
    use cx_conductor::core::pool::admit;
    use k8s_openapi::api::core::v1::Secret;
    let (tp, _) = fixture();
    let mut options = PlanOptions::default();
    // registry.example/cx-conductor:1.2.3 is not the collector image and nothing else is allowed.
    let refusal = admit(&tp, None, &options).unwrap_err();
    assert_eq!(refusal.reason, "ImageNotAllowed");
    assert!(
        refusal
            .message
            .starts_with("spec.collector.image: registry.example/cx-conductor:1.2.3"),
        "{}",
        refusal.message
    );
    options.allowed_images = vec!["registry.example/*".into()];
    // Now the image passes, and the Secret is the problem: not marked (not in the cache).
    let refusal = admit(&tp, None, &options).unwrap_err();
    assert_eq!(refusal.reason, "AuthSecretNotUsable");
    assert!(
        refusal
            .message
            .contains("cx.conductor.dev/collector-auth=true"),
        "{}",
        refusal.message
    );
    let secret: Secret = serde_yaml::from_str(
        "metadata: {name: checkout-ingest, labels: {cx.conductor.dev/collector-auth: 'true'}}\ndata: {token: IHMzY3JldAo=}\n",
    )
    .unwrap();
    // " s3cret\n": surrounding whitespace is not part of the token.
    let digest = admit(&tp, Some(&secret), &options).unwrap().unwrap();
    let expected: String = {
        use sha2::{Digest, Sha256};
        Sha256::digest(b"s3cret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(digest, expected);
    let keyless: Secret = serde_yaml::from_str(
        "metadata: {name: checkout-ingest, labels: {cx.conductor.dev/collector-auth: 'true'}}\ndata: {other: eA==}\n",
    )
    .unwrap();
    let refusal = admit(&tp, Some(&keyless), &options).unwrap_err();
    assert!(
        refusal.message.contains("no non-empty key token"),
        "{}",
        refusal.message
    );
    // What the collector could not load never reaches a pool's configuration (a hand-made
    // object past the schema, here an event limit below the collector's minimum).
    let mut tiny = tp.clone();
    tiny.spec.collector.max_event_bytes = 10;
    let refusal = admit(&tiny, Some(&secret), &options).unwrap_err();
    assert_eq!(refusal.reason, "InvalidCollectorConfig");
    assert!(
        refusal.message.contains("maxEventBytes"),
        "{}",
        refusal.message
    );
}

#[test]
fn pods_stop_without_losing_a_count_and_monitors_carry_the_platform_labels() {
    let (tp, channel) = fixture();
    let mut options = PlanOptions {
        service_monitor: true,
        scrape_interval_seconds: 15,
        ..PlanOptions::default()
    };
    options
        .service_monitor_labels
        .insert("release".into(), "kube-prometheus-stack".into());
    let plan = plan(&tp, &channel, &options);
    let pod = plan.deployment.spec.template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap().join(" ");
    // 2 × 15 s + 5 s of /metrics after the last event, so Prometheus scrapes the final counts.
    assert!(args.contains("--final-scrape-seconds 35"), "{args}");
    assert!(
        args.contains("--shutdown-delay-seconds 5") && args.contains("--grace-period-seconds 20"),
        "{args}"
    );
    assert!(args.contains("--health-listen 0.0.0.0:8081"), "{args}");
    // The kubelet waits for the whole sequence before it kills the pod.
    assert_eq!(pod.termination_grace_period_seconds, Some(5 + 20 + 35 + 10));
    for probe in [&container.readiness_probe, &container.liveness_probe] {
        let port = &probe.as_ref().unwrap().http_get.as_ref().unwrap().port;
        assert_eq!(
            *port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("health".into()),
            "probes use the health listener, which event floods cannot starve"
        );
    }
    let shared = plan_shared("shop", &[&tp], &options).unwrap();
    let monitor = shared.service_monitor.as_ref().unwrap();
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
}

/// A fresh operator process fills its caches in another order: the pool it plans must not
/// depend on that order, or every restart re-applies the whole pool.
#[test]
fn a_pool_plan_is_the_same_whatever_order_its_members_come_in() {
    use cx_conductor::core::pool::{PoolMember, plan_pool};
    let (touchpoints, channels) = retail();
    let members: Vec<PoolMember<'_>> = touchpoints
        .iter()
        .map(|t| PoolMember {
            touchpoint: t,
            channel: channels
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(&t.spec.channel)),
            token_sha256: None,
            themes: &[],
        })
        .collect();
    let options = PlanOptions {
        network_policy: true,
        service_monitor: true,
        ..Default::default()
    };
    let render = |members: &[PoolMember<'_>]| {
        serde_json::to_string(&plan_pool("retail", members, &options).unwrap().objects()).unwrap()
    };
    let canonical = render(&members);
    let mut reversed = members.clone();
    reversed.reverse();
    assert_eq!(render(&reversed), canonical, "reversed");
    // Every rotation as well (a cache order is any permutation; rotations and the reversal
    // move every member).
    for shift in 1..members.len() {
        let mut rotated = members.clone();
        rotated.rotate_left(shift);
        assert_eq!(render(&rotated), canonical, "rotated by {shift}");
    }
    // Owner references are in name order.
    let pool = plan_pool("retail", &reversed, &options).unwrap();
    let owners: Vec<String> = pool
        .deployment
        .metadata
        .owner_references
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    let mut sorted = owners.clone();
    sorted.sort();
    assert_eq!(owners, sorted);
}

/// The platform team's export settings reach every collector's configuration and pods; a
/// touchpoint opts out or keeps its comments and identifiers in the cluster.
#[test]
fn export_settings_reach_the_collector_configuration_and_pods() {
    use cx_conductor::api::TouchpointExport;
    use cx_conductor::collector::config::Delivery;
    use cx_conductor::core::plan::{ExportOptions, SecretKey};
    use cx_conductor::core::pool::{PoolMember, plan_pool};
    let (mut tp, channel) = fixture();
    let options = PlanOptions {
        export: Some(ExportOptions {
            endpoint: "http://otel.observability:4318".into(),
            timeout_millis: 2500,
            token_secret: Some(SecretKey {
                name: "otel-ingest".into(),
                key: "token".into(),
            }),
            pseudonym_key_secret: Some(SecretKey {
                name: "cx-pseudonyms".into(),
                key: "key".into(),
            }),
            ..ExportOptions::default()
        }),
        ..Default::default()
    };
    let config_of = |plan: &CollectorPlan| -> CollectorConfig {
        serde_json::from_str(&plan.config).expect("config")
    };
    let without = plan(&tp, &channel, &PlanOptions::default());
    assert_eq!(config_of(&without).export, None);

    let planned = plan(&tp, &channel, &options);
    let export = config_of(&planned).export.expect("exported");
    assert_eq!(export.endpoint, "http://otel.observability:4318");
    assert_eq!(export.timeout_millis, 2500);
    assert_eq!(export.delivery, Delivery::Guaranteed);
    assert_eq!(
        export.queue_events, None,
        "no queue under guaranteed delivery"
    );
    assert_eq!((export.linger_millis, export.max_batch_events), (0, 512));
    assert!(export.comments);
    assert!(!export.raw_identifiers);
    assert_eq!(
        export.token_file.as_deref(),
        Some("/var/run/cx-conductor/export/token")
    );
    assert_eq!(
        export.pseudonym_key_file.as_deref(),
        Some("/var/run/cx-conductor/export/pseudonym-key")
    );
    let pod = serde_json::to_value(&planned.deployment).expect("json");
    let pod = &pod["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "export")
        .expect("export volume");
    assert_eq!(
        volume["projected"]["sources"][0]["secret"]["name"],
        "otel-ingest"
    );
    assert_eq!(
        volume["projected"]["sources"][1]["secret"]["items"][0],
        serde_json::json!({"key": "key", "path": "pseudonym-key"})
    );
    assert!(
        pod["containers"][0]["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["name"] == "export" && m["mountPath"] == "/var/run/cx-conductor/export")
    );
    assert_ne!(planned.config_hash, without.config_hash, "the pods roll");

    // The platform's delivery and group-commit settings reach the collector.
    let mut best_effort = options.clone();
    if let Some(export) = best_effort.export.as_mut() {
        export.delivery = Delivery::BestEffort;
        export.queue_events = 2000;
        export.linger_millis = 7;
        export.max_batch_events = 100;
    }
    let export = config_of(&plan(&tp, &channel, &best_effort))
        .export
        .expect("exported");
    assert_eq!(export.delivery, Delivery::BestEffort);
    assert_eq!(export.queue_events, Some(2000));
    assert_eq!((export.linger_millis, export.max_batch_events), (7, 100));

    // TLS and headers: files in the collector, the Secrets mounted, no secret in the config.
    let mut tls = options.clone();
    if let Some(export) = tls.export.as_mut() {
        export.endpoint = "https://otel.observability:4318".into();
        export.ca_secret = Some(SecretKey {
            name: "otel-ca".into(),
            key: "bundle.pem".into(),
        });
        export.client_cert_secret = Some("otel-client".into());
        export.headers_secret = Some("otel-headers".into());
    }
    let tls_plan = plan(&tp, &channel, &tls);
    let export = config_of(&tls_plan).export.expect("exported");
    assert_eq!(
        (
            export.ca_file.as_deref(),
            export.client_cert_file.as_deref(),
            export.client_key_file.as_deref(),
            export.headers_dir.as_deref(),
        ),
        (
            Some("/var/run/cx-conductor/export/ca.crt"),
            Some("/var/run/cx-conductor/export/client.crt"),
            Some("/var/run/cx-conductor/export/client.key"),
            Some("/var/run/cx-conductor/export-headers"),
        )
    );
    let pod = serde_json::to_value(&tls_plan.deployment).expect("json");
    let pod = &pod["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().expect("volumes");
    let sources = volumes
        .iter()
        .find(|v| v["name"] == "export")
        .expect("export volume")["projected"]["sources"]
        .as_array()
        .expect("sources")
        .clone();
    let items: Vec<(String, String, String)> = sources
        .iter()
        .map(|source| {
            let secret = &source["secret"];
            (
                secret["name"].as_str().expect("name").to_string(),
                secret["items"][0]["key"].as_str().expect("key").to_string(),
                secret["items"][0]["path"]
                    .as_str()
                    .expect("path")
                    .to_string(),
            )
        })
        .collect();
    let item = |name: &str, key: &str, path: &str| (name.into(), key.into(), path.into());
    assert_eq!(
        items,
        [
            item("otel-ingest", "token", "token"),
            item("cx-pseudonyms", "key", "pseudonym-key"),
            item("otel-ca", "bundle.pem", "ca.crt"),
            item("otel-client", "tls.crt", "client.crt"),
            item("otel-client", "tls.key", "client.key"),
        ]
    );
    let headers = volumes
        .iter()
        .find(|v| v["name"] == "export-headers")
        .expect("headers volume");
    assert_eq!(headers["secret"]["secretName"], "otel-headers");
    assert_eq!(headers["secret"]["defaultMode"], 0o440);
    assert!(
        pod["containers"][0]["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["name"] == "export-headers"
                && m["mountPath"] == "/var/run/cx-conductor/export-headers"
                && m["readOnly"] == true)
    );
    let pool = plan_pool(
        "shop",
        &[PoolMember {
            touchpoint: &tp,
            channel: Some(&channel),
            token_sha256: None,
            themes: &[],
        }],
        &tls,
    )
    .expect("a pool");
    let pod = serde_json::to_value(&pool.deployment).expect("json");
    assert!(pod.to_string().contains("otel-headers") && pod.to_string().contains("otel-client"));

    // The touchpoint's own choices.
    tp.spec.export = Some(TouchpointExport {
        enabled: Some(true),
        comments: Some(false),
        raw_identifiers: true,
    });
    let export = config_of(&plan(&tp, &channel, &options))
        .export
        .expect("exported");
    assert!(!export.comments);
    assert!(export.raw_identifiers);
    tp.spec.export = Some(TouchpointExport {
        enabled: Some(false),
        ..TouchpointExport::default()
    });
    let opted_out = plan(&tp, &channel, &options);
    assert_eq!(config_of(&opted_out).export, None);
    let pod = serde_json::to_value(&opted_out.deployment).expect("json");
    assert!(!pod.to_string().contains("otel-ingest"));

    // A pool: the same settings per member, the Secrets mounted on its pods.
    tp.spec.export = None;
    let members = [PoolMember {
        touchpoint: &tp,
        channel: Some(&channel),
        token_sha256: None,
        themes: &[],
    }];
    let pool = plan_pool("shop", &members, &options).expect("a pool");
    let data = pool.secret.data.as_ref().expect("data");
    let text = String::from_utf8(data["collectors.yaml"].0.clone()).expect("UTF-8");
    let setup = cx_conductor::collector::config::CollectorSetup::from_yaml(&text).expect("pool");
    assert_eq!(
        setup.touchpoints()[0]
            .export
            .as_ref()
            .map(|e| e.endpoint.as_str()),
        Some("http://otel.observability:4318")
    );
    let pod = serde_json::to_value(&pool.deployment).expect("json");
    assert!(pod.to_string().contains("cx-pseudonyms"));
}

/// With NetworkPolicies on, collectors may open only the connections export needs: the
/// endpoint's port and DNS; without export, none.
#[test]
fn the_shared_network_policy_lets_collectors_reach_only_the_export_endpoint() {
    use cx_conductor::core::plan::ExportOptions;
    let (tp, _) = fixture();
    let mut options = PlanOptions {
        network_policy: true,
        ..Default::default()
    };
    let egress = |options: &PlanOptions| {
        let shared = plan_shared("shop", &[&tp], options).unwrap();
        serde_json::to_value(shared.network_policy.unwrap()).unwrap()["spec"]["egress"].clone()
    };
    assert_eq!(egress(&options), serde_json::json!([]));
    options.export = Some(ExportOptions {
        endpoint: "https://otel.observability:4318".into(),
        timeout_millis: 2500,
        ..ExportOptions::default()
    });
    assert_eq!(
        egress(&options),
        serde_json::json!([
            {"ports": [{"port": 4318, "protocol": "TCP"}]},
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        ])
    );
    options.export.as_mut().unwrap().endpoint = "https://otel.example.com".into();
    assert_eq!(egress(&options)[0]["ports"][0]["port"], 443);
}
