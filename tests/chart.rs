//! The Helm chart (`charts/cx-conductor`) and the plain install bundle (`deploy/cx-conductor.yaml`)
//! rendered and checked: objects, restricted Pod Security Standard, the operator binary accepting
//! what the Deployment passes it, `kubernetes-validate` against current Kubernetes schemas,
//! `values.schema.json`, NOTES.txt and `promtool` on the PrometheusRule; `helm lint`; and `helm
//! install --wait` on the real control plane of `scripts/cluster.sh`, with the chart's RBAC
//! checked by the real authorizer (`kubectl auth can-i`).
//!
//! Rendering and linting use the real `helm` (v3) built by `scripts/cluster.sh` (no cluster
//! needed); validation needs `kubernetes-validate` (PyPI) and `promtool` (Debian's
//! `prometheus`), which `scripts/test.sh` installs. A missing tool fails the test.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::{Value, json};

const RELEASE: &str = "cx-conductor";
const NAMESPACE: &str = "cx-system";
const ALL_ON: &str = "ci/all-on-values.yaml";
/// Kubernetes versions the manifests are validated against: the oldest and newest minor
/// `kubernetes-validate` knows schemas for among the releases supported today.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    root().join("charts/cx-conductor")
}

// ----------------------------------------------------------------------------------------------
// Tools

/// A required tool is missing: the test fails, saying how to get it.
fn missing(tool: &str, how: &str) -> ! {
    panic!("{tool} is required: {how}");
}

/// `helm template RELEASE CHART --namespace NS [-f values] [--set k=v]` with the real helm
/// (cached per arguments). The rendering error is Helm's message.
fn render_chart(chart: &Path, values: &[&str], sets: &[&str]) -> Result<String, String> {
    static CACHE: Mutex<Option<HashMap<String, Result<String, String>>>> = Mutex::new(None);
    let key = format!("{}|{values:?}|{sets:?}", chart.display());
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hit) = cache.get_or_insert_with(HashMap::new).get(&key) {
        return hit.clone();
    }
    let mut command = cluster::tool_command("helm");
    command.args(["template", RELEASE]).arg(chart).args([
        "--namespace",
        NAMESPACE,
        "--kube-version",
        "1.33.0",
    ]);
    for file in values {
        command.arg("-f").arg(chart.join(file));
    }
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command.output().expect("helm runs");
    let result = if output.status.success() {
        Ok(String::from_utf8(output.stdout).expect("UTF-8 output"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    };
    cache
        .get_or_insert_with(HashMap::new)
        .insert(key, result.clone());
    result
}

/// Renders the chart and panics on a rendering error.
fn render(values: &[&str], sets: &[&str]) -> Vec<Value> {
    let text = render_chart(&chart_dir(), values, sets)
        .unwrap_or_else(|e| panic!("the chart does not render with {values:?} {sets:?}: {e}"));
    documents(&text)
}

/// Every non-empty YAML document of a stream, as JSON values.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            let value: serde_yaml::Value =
                serde::Deserialize::deserialize(doc).expect("every document is YAML");
            serde_json::to_value(value).expect("YAML maps to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn kind_name(doc: &Value) -> (String, String) {
    (
        doc["kind"].as_str().unwrap_or_default().to_string(),
        doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = find(docs, kind);
    assert_eq!(found.len(), 1, "exactly one {kind}: {found:#?}");
    found[0]
}

fn env_of(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e.clone(),
            )
        })
        .collect()
}

fn env_value(container: &Value, name: &str) -> Option<String> {
    env_of(container)
        .get(name)
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

// ----------------------------------------------------------------------------------------------
// Chart metadata

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(chart["name"].as_str(), Some("cx-conductor"));
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion must be the crate version in Cargo.toml"
    );
    let version = chart["version"].as_str().unwrap();
    assert_eq!(
        version
            .split('.')
            .filter(|p| p.parse::<u64>().is_ok())
            .count(),
        3,
        "chart version {version} is semver"
    );
}

#[test]
fn chart_crds_are_byte_identical_to_the_committed_crds() {
    let committed = std::fs::read(root().join("crds/cx-conductor.crds.yaml")).unwrap();
    let in_chart = std::fs::read(chart_dir().join("crds/cx-conductor.crds.yaml")).unwrap();
    assert!(
        committed == in_chart,
        "charts/cx-conductor/crds/ is stale: cp crds/cx-conductor.crds.yaml charts/cx-conductor/crds/"
    );
    let files: Vec<String> = std::fs::read_dir(chart_dir().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["cx-conductor.crds.yaml"], "nothing else in crds/");
}

// ----------------------------------------------------------------------------------------------
// Rendered objects

#[test]
fn default_values_render_the_operator_and_nothing_optional() {
    let docs = render(&[], &[]);
    let objects: BTreeSet<(String, String)> = docs.iter().map(kind_name).collect();
    let expected: BTreeSet<(String, String)> = [
        ("ServiceAccount", "cx-conductor"),
        ("ClusterRole", "cx-conductor"),
        ("ClusterRole", "cx-conductor-edit"),
        ("ClusterRole", "cx-conductor-view"),
        ("ClusterRoleBinding", "cx-conductor"),
        ("Role", "cx-conductor-leader-election"),
        ("RoleBinding", "cx-conductor-leader-election"),
        ("Deployment", "cx-conductor"),
        ("Service", "cx-conductor-metrics"),
        ("ConfigMap", "cx-conductor-dashboard-overview"),
        ("ConfigMap", "cx-conductor-dashboard-journey"),
        ("ConfigMap", "cx-conductor-dashboard-collectors"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(objects, expected);
    for doc in &docs {
        let (kind, name) = kind_name(doc);
        let cluster_scoped = kind.starts_with("Cluster");
        assert_eq!(
            doc["metadata"]["namespace"].as_str(),
            (!cluster_scoped).then_some(NAMESPACE),
            "{kind}/{name} namespace"
        );
        let labels = &doc["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/instance"], RELEASE,
            "{kind}/{name}"
        );
        assert_eq!(
            labels["app.kubernetes.io/version"],
            env!("CARGO_PKG_VERSION")
        );
    }
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2, "two replicas by default");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"].as_str(),
        Some(
            format!(
                "ghcr.io/cx-conductor/cx-conductor:{}",
                env!("CARGO_PKG_VERSION")
            )
            .as_str()
        )
    );
    assert_eq!(
        env_value(container, "CX_COLLECTOR_IMAGE").as_deref(),
        container["image"].as_str(),
        "collectors run the operator's image"
    );
    assert_eq!(
        env_value(container, "CX_LEADER_ELECTION").as_deref(),
        Some("true")
    );
    assert_eq!(
        env_value(container, "CX_SERVICE_MONITORS").as_deref(),
        Some("false")
    );
    assert_eq!(
        env_value(container, "CX_NETWORK_POLICIES").as_deref(),
        Some("false")
    );
    assert_eq!(
        env_value(container, "CX_NAMESPACES"),
        None,
        "every namespace"
    );
}

#[test]
fn every_optional_part_renders_when_switched_on() {
    let docs = render(&[ALL_ON], &[]);
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    for (name, value) in [
        ("CX_NAMESPACES", "retail"),
        ("CX_SERVICE_MONITORS", "true"),
        ("CX_NETWORK_POLICIES", "true"),
        (
            "CX_COLLECTOR_IMAGE",
            "registry.example.com/cx/cx-conductor:0.1.0",
        ),
        ("CX_EXTRA", "1"),
    ] {
        assert_eq!(env_value(container, name).as_deref(), Some(value), "{name}");
    }
    assert_eq!(pod["imagePullSecrets"][0]["name"], "registry-credentials");
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["team"],
        "platform"
    );

    // The ServiceMonitor scrapes the metrics Service, keeping the series' own namespace label.
    let service = one(&docs, "Service");
    let monitor = one(&docs, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    for (k, v) in selector {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "ServiceMonitor selects the Service by {k}"
        );
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["honorLabels"], true);
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!([NAMESPACE])
    );

    // The PrometheusRule has the four health alerts.
    let rule = one(&docs, "PrometheusRule");
    let alerts: BTreeSet<&str> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert_eq!(
        alerts,
        BTreeSet::from([
            "CxConductorReconcileErrors",
            "CxCollectorNotReady",
            "CxJourneyInconsistent",
            "CxJourneyReadinessDropped"
        ])
    );
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            assert_eq!(
                r["labels"]["team"], "cx-platform",
                "additional alert labels"
            );
            assert!(
                r["annotations"]["summary"]
                    .as_str()
                    .is_some_and(|s| s.contains("{{ $labels."))
            );
        }
    }

    // Watched namespaces: the operator's permissions are a Role in each of them, the very rules
    // the ClusterRole has without watchNamespaces; nothing cluster-wide but the aggregated roles.
    let cluster_wide = render(&[ALL_ON], &["watchNamespaces=null"]);
    let cluster_role = find(&cluster_wide, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == RELEASE)
        .expect("the operator's ClusterRole without watchNamespaces");
    let cluster_roles: BTreeSet<&str> = find(&docs, "ClusterRole")
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cluster_roles,
        BTreeSet::from(["cx-conductor-edit", "cx-conductor-view"])
    );
    assert!(find(&docs, "ClusterRoleBinding").is_empty());
    {
        let namespace = "retail";
        let in_namespace = |kind: &str| {
            find(&docs, kind)
                .into_iter()
                .find(|r| {
                    r["metadata"]["name"] == RELEASE && r["metadata"]["namespace"] == namespace
                })
                .unwrap_or_else(|| panic!("{kind} {RELEASE} in {namespace}"))
        };
        assert_eq!(
            in_namespace("Role")["rules"],
            cluster_role["rules"],
            "{namespace}"
        );
        let binding = in_namespace("RoleBinding");
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(binding["roleRef"]["name"], RELEASE);
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}])
        );
    }

    // The operator's NetworkPolicy admits scrapes from monitoring only and lets it reach the API.
    let policy = one(&docs, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        policy["spec"]["ingress"][0]["ports"][0]["port"],
        "http-metrics"
    );
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    let egress_ports: BTreeSet<i64> = policy["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_array().unwrap())
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(egress_ports, BTreeSet::from([53, 443, 6443, 9090]));

    // Dashboards go where the sidecar looks, with the configured labels and folder.
    for cm in find(&docs, "ConfigMap") {
        assert_eq!(cm["metadata"]["namespace"], "monitoring");
        assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
        assert_eq!(cm["metadata"]["labels"]["app"], "grafana");
        assert_eq!(
            cm["metadata"]["annotations"]["grafana_folder"],
            "Customer experience"
        );
    }
    // Three replicas keep one up during drains.
    assert_eq!(one(&docs, "PodDisruptionBudget")["spec"]["minAvailable"], 1);
}

#[test]
fn dashboard_config_maps_carry_the_dashboard_files_verbatim() {
    let docs = render(
        &[],
        &[
            "dashboards.label=my_dashboards",
            "dashboards.labelValue=yes",
        ],
    );
    let maps = find(&docs, "ConfigMap");
    let mut files: Vec<String> = std::fs::read_dir(chart_dir().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["collectors.json", "journey.json", "overview.json"]);
    assert_eq!(maps.len(), files.len());
    for file in &files {
        let stem = file.trim_end_matches(".json");
        let cm = maps
            .iter()
            .find(|m| m["metadata"]["name"] == format!("cx-conductor-dashboard-{stem}"))
            .unwrap_or_else(|| panic!("a ConfigMap for {file}"));
        assert_eq!(cm["metadata"]["labels"]["my_dashboards"], "yes");
        assert!(cm["metadata"]["labels"].get("grafana_dashboard").is_none());
        let embedded = cm["data"][format!("cx-conductor-{stem}.json")]
            .as_str()
            .unwrap();
        let on_disk = std::fs::read_to_string(chart_dir().join("dashboards").join(file)).unwrap();
        assert_eq!(
            embedded.trim_end(),
            on_disk.trim_end(),
            "{file} embedded verbatim"
        );
        let parsed: Value = serde_json::from_str(embedded).unwrap();
        assert!(parsed["uid"].as_str().is_some());
    }
    let off = render(&[], &["dashboards.enabled=false"]);
    assert!(
        find(&off, "ConfigMap").is_empty(),
        "dashboards.enabled=false renders none"
    );
}

// ----------------------------------------------------------------------------------------------
// The operator Deployment

/// The restricted Pod Security Standard (plus a read-only root filesystem), field by field.
fn assert_restricted(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(pod[host], true, "{name}: {host}");
    }
    assert!(
        pod["securityContext"]["sysctls"].is_null(),
        "{name}: no sysctls"
    );
    let allowed_volumes = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        let kinds: Vec<&String> = volume
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "name")
            .collect();
        assert!(
            kinds.iter().all(|k| allowed_volumes.contains(&k.as_str())),
            "{name}: volume types {kinds:?}"
        );
    }
    let pod_sc = &pod["securityContext"];
    let containers: Vec<&Value> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod[k].as_array().into_iter().flatten())
        .collect();
    assert!(!containers.is_empty());
    for c in containers {
        let sc = &c["securityContext"];
        let cname = c["name"].as_str().unwrap_or_default();
        assert_ne!(sc["privileged"], true, "{name}/{cname}: privileged");
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{name}/{cname}: allowPrivilegeEscalation"
        );
        let drop: Vec<&str> = sc["capabilities"]["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            drop.contains(&"ALL"),
            "{name}/{cname}: capabilities.drop ALL"
        );
        for add in sc["capabilities"]["add"].as_array().into_iter().flatten() {
            assert_eq!(
                add, "NET_BIND_SERVICE",
                "{name}/{cname}: only NET_BIND_SERVICE may be added"
            );
        }
        let non_root = sc["runAsNonRoot"]
            .as_bool()
            .or(pod_sc["runAsNonRoot"].as_bool());
        assert_eq!(non_root, Some(true), "{name}/{cname}: runAsNonRoot");
        let uid = sc["runAsUser"].as_i64().or(pod_sc["runAsUser"].as_i64());
        assert_ne!(uid, Some(0), "{name}/{cname}: runAsUser 0");
        let seccomp = sc["seccompProfile"]["type"]
            .as_str()
            .or(pod_sc["seccompProfile"]["type"].as_str());
        assert!(
            matches!(seccomp, Some("RuntimeDefault" | "Localhost")),
            "{name}/{cname}: seccompProfile {seccomp:?}"
        );
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{name}/{cname}: read-only root fs"
        );
        for port in c["ports"].as_array().into_iter().flatten() {
            assert!(
                port["hostPort"].as_i64().unwrap_or(0) == 0,
                "{name}/{cname}: hostPort"
            );
        }
        assert!(
            sc["seLinuxOptions"]["type"].is_null() && sc["procMount"].is_null(),
            "{name}/{cname}: no seLinux type nor procMount"
        );
        assert!(
            !c["resources"]["requests"]["memory"].is_null()
                && !c["resources"]["limits"]["memory"].is_null(),
            "{name}/{cname}: memory request and limit"
        );
    }
    assert_eq!(pod_sc["runAsUser"], 65532);
    assert_eq!(pod_sc["runAsGroup"], 65532);
}

#[test]
fn the_deployment_meets_the_restricted_pod_security_standard() {
    for values in [&[][..], &[ALL_ON][..]] {
        let docs = render(values, &[]);
        assert_restricted(one(&docs, "Deployment"));
    }
    // The check itself bites.
    let docs = render(&[], &[]);
    let mut broken = one(&docs, "Deployment").clone();
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] =
        json!(true);
    assert!(std::panic::catch_unwind(|| assert_restricted(&broken)).is_err());
}

#[test]
fn probes_ports_service_and_downward_api_fit_together() {
    for values in [&[][..], &[ALL_ON][..]] {
        let docs = render(values, &[]);
        let deployment = one(&docs, "Deployment");
        let template = &deployment["spec"]["template"];
        let container = &template["spec"]["containers"][0];
        assert_eq!(container["args"][0], "run");
        let port = &container["ports"][0];
        assert_eq!(port["name"], "http-metrics");
        let port_number = port["containerPort"].as_i64().unwrap();
        assert_eq!(
            env_value(container, "CX_METRICS_ADDR"),
            Some(format!("0.0.0.0:{port_number}")),
            "the operator listens where the probes and the Service look"
        );
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(
                container[probe]["httpGet"]["port"], "http-metrics",
                "{probe}"
            );
        }
        let env = env_of(container);
        assert_eq!(
            env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );
        assert_eq!(
            env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        // Selectors select the pods.
        let pod_labels = template["metadata"]["labels"].as_object().unwrap();
        let selected = |selector: &Value| {
            selector
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| pod_labels.get(k) == Some(v))
        };
        assert!(selected(&deployment["spec"]["selector"]["matchLabels"]));
        let service = one(&docs, "Service");
        assert!(selected(&service["spec"]["selector"]));
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "http-metrics");
        // The PDB is off by default (only the leader is Ready); when on, it selects the pods.
        for pdb in find(&docs, "PodDisruptionBudget") {
            assert!(selected(&pdb["spec"]["selector"]["matchLabels"]));
        }
        assert_eq!(
            find(&docs, "PodDisruptionBudget").len(),
            usize::from(!values.is_empty())
        );
        // The ServiceAccount the pods run as is the one the bindings name.
        let account = template["spec"]["serviceAccountName"].as_str().unwrap();
        assert_eq!(one(&docs, "ServiceAccount")["metadata"]["name"], account);
        for binding in find(&docs, "ClusterRoleBinding")
            .into_iter()
            .chain(find(&docs, "RoleBinding"))
        {
            assert_eq!(binding["subjects"][0]["name"], account);
            assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
        }
    }
}

#[test]
fn one_replica_without_leader_election_renders_and_two_are_refused() {
    let docs = render(&[], &["leaderElection.enabled=false", "replicaCount=1"]);
    let container = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_value(container, "CX_LEADER_ELECTION").as_deref(),
        Some("false")
    );
    assert!(
        find(&docs, "Role").is_empty(),
        "no Lease permissions without leader election"
    );
    assert!(
        find(&docs, "PodDisruptionBudget").is_empty(),
        "no PDB for one replica"
    );
    let refused = render_chart(&chart_dir(), &[], &["leaderElection.enabled=false"]);
    let error = refused.expect_err("two replicas without leader election must not render");
    // values.schema.json refuses it before the templates' own `fail` could.
    assert!(
        error.contains("at '/replicaCount': maximum: got 2, want 1"),
        "{error}"
    );
}

/// Runs the real binary with the Deployment's args and env (downward-API values filled in, no
/// cluster reachable): it must get past argument parsing to the point of contacting the API.
fn run_operator_like_the_deployment(deployment: &Value) -> (Option<i32>, String) {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let home = std::env::temp_dir().join(format!("cx-chart-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_cx-conductor"));
    command
        .env_clear()
        .env("HOME", &home)
        .env("KUBECONFIG", home.join("no-such-kubeconfig"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for arg in container["args"].as_array().unwrap() {
        command.arg(arg.as_str().unwrap());
    }
    for (name, entry) in env_of(container) {
        let value = match entry["value"].as_str() {
            Some(v) => v.to_string(),
            None => match entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => "cx-conductor-5d9f7-abcde".to_string(),
                Some("metadata.namespace") => NAMESPACE.to_string(),
                other => panic!("unexpected env source {other:?} for {name}"),
            },
        };
        command.env(name, value);
    }
    // 127.0.0.1:0 instead of the container's 0.0.0.0:8080, which may be taken on this machine.
    command.env("CX_METRICS_ADDR", "127.0.0.1:0");
    let output = command.output().expect("the operator binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn the_operator_binary_accepts_the_deployment_args_and_env() {
    for values in [&[][..], &[ALL_ON][..]] {
        let docs = render(values, &[]);
        let mut deployment = one(&docs, "Deployment").clone();
        // extraEnv may carry variables the binary does not know; they are not arguments.
        let (code, output) = run_operator_like_the_deployment(&deployment);
        assert_eq!(
            code,
            Some(1),
            "the operator must accept every flag and env var the chart sets and fail only for want of a cluster:\n{output}"
        );
        assert!(
            output.contains("cannot reach the Kubernetes API"),
            "{output}"
        );
        // And the check bites: a value the binary refuses is a usage error (exit 2).
        let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap();
        for e in env.iter_mut() {
            if e["name"] == "CX_LEADER_ELECTION" {
                e["value"] = json!("yes please");
            }
        }
        let (code, output) = run_operator_like_the_deployment(&deployment);
        assert_eq!(code, Some(2), "{output}");
    }
}

// ----------------------------------------------------------------------------------------------
// helm lint

#[test]
fn helm_lint_passes_with_default_values_and_every_option_on() {
    let lint = |args: &[&str]| {
        let output = cluster::tool_command("helm")
            .args(["lint", "--strict", "charts/cx-conductor"])
            .args(args)
            .output()
            .expect("helm runs");
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    for args in [
        &[][..],
        &["-f", "charts/cx-conductor/ci/all-on-values.yaml"][..],
        &["--set", "watchNamespaces={retail}"][..],
        &[
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "replicaCount=1",
        ][..],
    ] {
        let (ok, output) = lint(args);
        assert!(ok, "helm lint {args:?}:\n{output}");
        assert!(
            output.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{output}"
        );
        assert!(
            !output.contains("[WARNING]") && !output.contains("[ERROR]"),
            "helm lint {args:?}:\n{output}"
        );
    }
    // The check bites: a wrong value fails the lint, naming the value.
    let (ok, output) = lint(&["--set", "metrics.port=70000"]);
    assert!(!ok, "{output}");
    assert!(output.contains("/metrics/port"), "{output}");
}

// ----------------------------------------------------------------------------------------------
// helm install on the real control plane, RBAC through the real authorizer

/// A release installed by a test: uninstalled (cluster-scoped objects included) and its
/// namespaces deleted when the test ends, passed or not.
struct Release {
    name: String,
    namespace: String,
    namespaces: Vec<String>,
}

impl Drop for Release {
    fn drop(&mut self) {
        let c = cluster::cluster();
        let _ = c.helm(&["uninstall", &self.name, "--namespace", &self.namespace]);
        for namespace in &self.namespaces {
            let _ = c.kubectl(&["delete", "namespace", namespace, "--wait=false"]);
        }
    }
}

/// `helm install --wait --timeout 3m` of the chart into `namespace`; the printed NOTES.
fn helm_install(release: &Release, args: &[&str]) -> String {
    let c = cluster::cluster();
    c.install_crds();
    let mut all = vec![
        "install",
        &release.name,
        "charts/cx-conductor",
        "--namespace",
        &release.namespace,
        "--wait",
        "--timeout",
        "3m",
    ];
    all.extend_from_slice(args);
    c.helm_ok(&all)
}

/// The Deployment is available with every replica (kwok makes the pods Ready).
fn assert_available(namespace: &str, name: &str, replicas: i64) {
    let deployment: Value = serde_json::from_str(&cluster::cluster().kubectl_ok(&[
        "get",
        "deployment",
        name,
        "--namespace",
        namespace,
        "-o",
        "json",
    ]))
    .expect("JSON");
    let status = &deployment["status"];
    assert_eq!(status["availableReplicas"], replicas, "{status:#}");
    assert_eq!(status["readyReplicas"], replicas, "{status:#}");
    assert_eq!(
        status["observedGeneration"], deployment["metadata"]["generation"],
        "{status:#}"
    );
    let available = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Available")
        .unwrap_or_else(|| panic!("no Available condition: {status:#}"));
    assert_eq!(available["status"], "True", "{status:#}");
}

/// `kubectl get -o name` of `objects` (`kind/name`), which must all exist.
fn assert_exist(namespace: Option<&str>, objects: &[String]) {
    let mut args = vec!["get", "-o", "name"];
    if let Some(namespace) = namespace {
        args.extend(["--namespace", namespace]);
    }
    args.extend(objects.iter().map(String::as_str));
    let found: BTreeSet<String> = cluster::cluster()
        .kubectl_ok(&args)
        .lines()
        .map(str::to_string)
        .collect();
    let wanted: BTreeSet<String> = objects
        .iter()
        .map(|o| {
            let (kind, name) = o.split_once('/').unwrap();
            format!("{kind}/{name}")
        })
        .collect();
    assert_eq!(found, wanted);
}

/// `kubectl auth can-i VERB RESOURCE [--subresource S] (-n NS | -A) --as SUBJECT`: the real
/// authorizer's answer for `subject`.
fn can_i(subject: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
    let (resource, subresource) = match resource.split_once(' ') {
        Some((r, s)) => (r, Some(s)),
        None => (resource, None),
    };
    let mut args = vec!["auth", "can-i", verb, resource, "--as", subject];
    if let Some(subresource) = subresource {
        args.extend(["--subresource", subresource]);
    }
    match namespace {
        Some(namespace) => args.extend(["--namespace", namespace]),
        None => args.push("--all-namespaces"),
    }
    let output = cluster::cluster().kubectl(&args);
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_string();
    match (output.status.code(), answer.as_str()) {
        (Some(0), "yes") => true,
        (Some(1), "no") => false,
        other => panic!(
            "kubectl {}: {other:?} {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// What the operator does in a namespace it conducts (`RESOURCE [SUBRESOURCE]`), by option.
fn operator_grants(
    service_monitors: bool,
    prometheus_rules: bool,
) -> Vec<(&'static str, &'static str)> {
    let mut grants = vec![
        ("list", "touchpoints.cx.conductor.dev"),
        ("watch", "channels.cx.conductor.dev"),
        ("watch", "experiencekpis.cx.conductor.dev"),
        ("list", "customerjourneys.cx.conductor.dev"),
        ("patch", "touchpoints.cx.conductor.dev status"),
        ("patch", "customerjourneys.cx.conductor.dev status"),
        ("create", "configmaps"),
        ("patch", "services"),
        ("create", "deployments.apps"),
        ("patch", "deployments.apps"),
        ("delete", "poddisruptionbudgets.policy"),
        ("list", "networkpolicies.networking.k8s.io"),
        ("create", "events.events.k8s.io"),
        // Collector pools: their configuration Secret, their autoscaler, marked auth Secrets
        // (watched by label), and the dedicated objects a touchpoint turned pooled leaves.
        ("watch", "secrets"),
        ("patch", "secrets"),
        ("create", "horizontalpodautoscalers.autoscaling"),
        ("delete", "deployments.apps"),
    ];
    if service_monitors {
        grants.push(("create", "servicemonitors.monitoring.coreos.com"));
    }
    if prometheus_rules {
        grants.push(("patch", "prometheusrules.monitoring.coreos.com"));
    }
    grants
}

/// What the operator never gets, anywhere.
const NEVER: [(&str, &str); 5] = [
    ("update", "secrets"),
    ("update", "touchpoints.cx.conductor.dev"),
    ("delete", "pods"),
    ("create", "pods"),
    ("list", "namespaces"),
];

#[tokio::test]
async fn helm_install_waits_for_the_operator_with_default_values_and_rbac_is_cluster_wide() {
    let c = cluster::cluster();
    let namespace = c.namespace("chart-default").await;
    let elsewhere = c.namespace("chart-default-other").await;
    let release = Release {
        name: format!("cx-conductor-d{}", std::process::id()),
        namespace: namespace.clone(),
        namespaces: vec![namespace.clone(), elsewhere.clone()],
    };
    let notes = helm_install(&release, &[]);
    assert!(
        notes.contains(&format!(
            "kubectl -n {namespace} rollout status deployment/{}",
            release.name
        )),
        "{notes}"
    );
    let name = &release.name;
    assert_available(&namespace, name, 2);
    assert_exist(
        Some(&namespace),
        &[
            format!("serviceaccount/{name}"),
            format!("service/{name}-metrics"),
            format!("role.rbac.authorization.k8s.io/{name}-leader-election"),
            format!("rolebinding.rbac.authorization.k8s.io/{name}-leader-election"),
            format!("configmap/{name}-dashboard-overview"),
            format!("configmap/{name}-dashboard-journey"),
            format!("configmap/{name}-dashboard-collectors"),
        ],
    );
    assert_exist(
        None,
        &[
            format!("clusterrole.rbac.authorization.k8s.io/{name}"),
            format!("clusterrole.rbac.authorization.k8s.io/{name}-edit"),
            format!("clusterrole.rbac.authorization.k8s.io/{name}-view"),
            format!("clusterrolebinding.rbac.authorization.k8s.io/{name}"),
        ],
    );

    // Every namespace, and cluster-wide lists and watches: a ClusterRole.
    let operator = format!("system:serviceaccount:{namespace}:{name}");
    for (verb, resource) in operator_grants(false, false) {
        for scope in [Some(namespace.as_str()), Some(elsewhere.as_str()), None] {
            assert!(
                can_i(&operator, verb, resource, scope),
                "{verb} {resource} in {scope:?}"
            );
        }
    }
    for (verb, resource) in NEVER.iter().chain(&[
        ("create", "servicemonitors.monitoring.coreos.com"),
        ("create", "prometheusrules.monitoring.coreos.com"),
        ("create", "networkpolicies.networking.k8s.io"),
    ]) {
        assert!(
            !can_i(&operator, verb, resource, Some(&elsewhere)),
            "{verb} {resource}"
        );
    }
    // The Lease: created in the release namespace, then only the named one is read and renewed.
    assert!(can_i(
        &operator,
        "create",
        "leases.coordination.k8s.io",
        Some(&namespace)
    ));
    assert!(can_i(
        &operator,
        "patch",
        "leases.coordination.k8s.io/cx-conductor-leader",
        Some(&namespace)
    ));
    assert!(!can_i(
        &operator,
        "patch",
        "leases.coordination.k8s.io/another-lease",
        Some(&namespace)
    ));
    assert!(!can_i(
        &operator,
        "create",
        "leases.coordination.k8s.io",
        Some(&elsewhere)
    ));
    // Namespace users get the cx kinds through the roles aggregated into edit and view (bound
    // directly: the control plane runs no clusterrole-aggregation controller).
    let editor = format!("{elsewhere}-editor");
    c.kubectl_ok(&[
        "create",
        "rolebinding",
        &editor,
        &format!("--clusterrole={name}-edit"),
        &format!("--user={editor}"),
        "--namespace",
        &elsewhere,
    ]);
    assert!(can_i(
        &editor,
        "create",
        "touchpoints.cx.conductor.dev",
        Some(&elsewhere)
    ));
    assert!(!can_i(
        &editor,
        "patch",
        "touchpoints.cx.conductor.dev status",
        Some(&elsewhere)
    ));
}

#[tokio::test]
async fn helm_install_waits_for_the_operator_with_every_option_on_and_rbac_only_in_watched_namespaces()
 {
    let c = cluster::cluster();
    let namespace = c.namespace("chart-all-on").await;
    let watched = [c.namespace("chart-all-on-a").await];
    let unwatched = c.namespace("chart-all-on-c").await;
    let dashboards = c.namespace("chart-all-on-dash").await;
    let release = Release {
        name: format!("cx-conductor-a{}", std::process::id()),
        namespace: namespace.clone(),
        namespaces: [&namespace, &watched[0], &unwatched, &dashboards]
            .into_iter()
            .cloned()
            .collect(),
    };
    let watch_set = format!("watchNamespaces={{{}}}", watched[0]);
    let dashboards_set = format!("dashboards.namespace={dashboards}");
    // ci/all-on-values.yaml switches every option on; the namespaces it names are replaced with
    // this test's own.
    let notes = helm_install(
        &release,
        &[
            "-f",
            "charts/cx-conductor/ci/all-on-values.yaml",
            "--set",
            &watch_set,
            "--set",
            &dashboards_set,
        ],
    );
    assert!(
        notes.contains(&format!("the namespace {}", watched[0])),
        "{notes}"
    );
    let name = &release.name;
    assert_available(&namespace, name, 3);
    let deployment: Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "deployment",
        name,
        "--namespace",
        &namespace,
        "-o",
        "json",
    ]))
    .unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_value(container, "CX_NAMESPACES"),
        Some(watched[0].clone())
    );
    assert_eq!(
        env_value(container, "CX_PROMETHEUS_URL").as_deref(),
        Some("http://prometheus-operated.monitoring:9090")
    );
    assert_exist(
        Some(&namespace),
        &[
            format!("serviceaccount/{name}"),
            format!("service/{name}-metrics"),
            format!("poddisruptionbudget.policy/{name}"),
            format!("servicemonitor.monitoring.coreos.com/{name}"),
            format!("prometheusrule.monitoring.coreos.com/{name}"),
            format!("networkpolicy.networking.k8s.io/{name}"),
            format!("role.rbac.authorization.k8s.io/{name}-leader-election"),
            format!("rolebinding.rbac.authorization.k8s.io/{name}-leader-election"),
        ],
    );
    assert_exist(
        Some(&dashboards),
        &[
            format!("configmap/{name}-dashboard-overview"),
            format!("configmap/{name}-dashboard-journey"),
            format!("configmap/{name}-dashboard-collectors"),
        ],
    );
    for ns in &watched {
        assert_exist(
            Some(ns),
            &[
                format!("role.rbac.authorization.k8s.io/{name}"),
                format!("rolebinding.rbac.authorization.k8s.io/{name}"),
            ],
        );
    }
    // Only the aggregated roles are cluster-wide.
    assert_exist(
        None,
        &[
            format!("clusterrole.rbac.authorization.k8s.io/{name}-edit"),
            format!("clusterrole.rbac.authorization.k8s.io/{name}-view"),
        ],
    );
    for kind in ["clusterrole", "clusterrolebinding"] {
        let output = c.kubectl(&["get", kind, name]);
        assert!(!output.status.success(), "{kind}/{name} must not exist");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("NotFound"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // Allowed in the watched namespaces, refused anywhere else and cluster-wide.
    let operator = format!("system:serviceaccount:{namespace}:{name}");
    for (verb, resource) in operator_grants(true, true) {
        for ns in &watched {
            assert!(
                can_i(&operator, verb, resource, Some(ns)),
                "{verb} {resource} in {ns}"
            );
        }
        for scope in [Some(unwatched.as_str()), Some(namespace.as_str()), None] {
            assert!(
                !can_i(&operator, verb, resource, scope),
                "{verb} {resource} must be refused in {scope:?}"
            );
        }
    }
    assert!(can_i(
        &operator,
        "create",
        "networkpolicies.networking.k8s.io",
        Some(&watched[0])
    ));
    for (verb, resource) in NEVER {
        assert!(
            !can_i(&operator, verb, resource, Some(&watched[0])),
            "{verb} {resource}"
        );
    }
    assert!(can_i(
        &operator,
        "patch",
        "leases.coordination.k8s.io/cx-conductor-leader",
        Some(&namespace)
    ));
}

// ----------------------------------------------------------------------------------------------
// values.schema.json

fn schema_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap(),
    )
    .expect("values.schema.json is JSON");
    jsonschema::validator_for(&schema).expect("values.schema.json is a valid JSON schema")
}

fn yaml_file(path: &Path) -> Value {
    serde_json::to_value(
        serde_yaml::from_str::<serde_yaml::Value>(&std::fs::read_to_string(path).unwrap()).unwrap(),
    )
    .unwrap()
}

/// Helm merges user values over the defaults, then validates.
fn merged(mut base: Value, overlay: &Value) -> Value {
    if let (Some(b), Some(o)) = (base.as_object_mut(), overlay.as_object()) {
        for (k, v) in o {
            let merged_value = match b.remove(k) {
                Some(existing) if existing.is_object() && v.is_object() => merged(existing, v),
                _ => v.clone(),
            };
            b.insert(k.clone(), merged_value);
        }
        base
    } else {
        overlay.clone()
    }
}

#[test]
fn values_schema_accepts_the_shipped_values_and_rejects_wrong_ones() {
    let validator = schema_validator();
    let defaults = yaml_file(&chart_dir().join("values.yaml"));
    let errors = |v: &Value| -> Vec<String> {
        validator
            .iter_errors(v)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    };
    assert_eq!(errors(&defaults), Vec::<String>::new(), "values.yaml");
    let all_on = merged(defaults.clone(), &yaml_file(&chart_dir().join(ALL_ON)));
    assert_eq!(errors(&all_on), Vec::<String>::new(), "{ALL_ON}");
    let wrong = [
        (json!({"replicaCount": "two"}), "/replicaCount"),
        (json!({"replicaCount": 0}), "/replicaCount"),
        (json!({"replicas": 2}), ""),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (json!({"image": {"tag": 1}}), "/image/tag"),
        (
            json!({"leaderElection": {"enabled": false}}),
            "/replicaCount",
        ),
        (
            json!({"watchNamespaces": ["Retail_Shop"]}),
            "/watchNamespaces/0",
        ),
        (
            json!({"watchNamespaces": ["retail", "retail"]}),
            "/watchNamespaces",
        ),
        (json!({"resyncSeconds": 5}), "/resyncSeconds"),
        (
            json!({"collectors": {"serviceMonitor": true}}),
            "/collectors",
        ),
        (
            json!({"dashboards": {"labelValue": 1}}),
            "/dashboards/labelValue",
        ),
        (
            json!({"metrics": {"prometheusRule": {"reconcileErrors": {"severity": "page"}}}}),
            "/metrics/prometheusRule/reconcileErrors/severity",
        ),
        (
            json!({"metrics": {"prometheusRule": {"readinessDropped": {"lookback": "one day"}}}}),
            "/metrics/prometheusRule/readinessDropped/lookback",
        ),
        (json!({"metrics": {"port": 70000}}), "/metrics/port"),
        (
            json!({"resources": {"limits": {"memory": "a lot"}}}),
            "/resources/limits/memory",
        ),
        (
            json!({"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1"]}}}),
            "/networkPolicy/apiServer/cidrs/0",
        ),
    ];
    for (overlay, path) in wrong {
        let found = errors(&merged(defaults.clone(), &overlay));
        assert!(
            found.iter().any(|e| e.starts_with(&format!("{path}:"))),
            "{overlay} must be refused at {path:?}; errors: {found:?}"
        );
    }
    // One replica without leader election is fine.
    let single = merged(
        defaults,
        &json!({"leaderElection": {"enabled": false}, "replicaCount": 1}),
    );
    assert_eq!(errors(&single), Vec::<String>::new());
}

// ----------------------------------------------------------------------------------------------
// NOTES.txt

#[test]
fn notes_tell_the_user_what_to_do_next() {
    // `helm template` renders no NOTES.txt: render it through a wrapper template in a copy of
    // the chart.
    let copy = std::env::temp_dir()
        .join(format!("cx-notes-{}", std::process::id()))
        .join("cx-conductor");
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(&chart_dir(), &copy);
    std::fs::write(
        copy.join("templates/zz-notes.yaml"),
        "notes: {{ include \"cx-conductor/templates/NOTES.txt\" . | toJson }}\n",
    )
    .unwrap();
    for (values, expect) in [
        (
            vec![],
            vec![
                "every namespace",
                "cx-conductor-metrics:8080",
                "grafana_dashboard=\"1\"",
            ],
        ),
        (
            vec![ALL_ON],
            vec![
                "the namespace retail",
                "A ServiceMonitor scrapes it",
                "PrometheusRule cx-system/cx-conductor",
                "namespace monitoring",
            ],
        ),
    ] {
        let text = render_chart(&copy, &values, &[]);
        let docs = documents(&text.expect("renders"));
        let notes = docs
            .iter()
            .find_map(|d| d["notes"].as_str())
            .expect("NOTES.txt rendered");
        for needle in [
            "kubectl apply -f examples/retail/",
            "kubectl get cx -A",
            "rollout status deployment/cx-conductor",
            "cx-conductor check -f",
        ]
        .iter()
        .chain(expect.iter())
        {
            assert!(
                notes.contains(needle),
                "NOTES.txt lacks {needle:?}:\n{notes}"
            );
        }
        assert!(!notes.contains("<no value>"), "{notes}");
    }
    let _ = std::fs::remove_dir_all(copy.parent().unwrap());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

// ----------------------------------------------------------------------------------------------
// deploy/cx-conductor.yaml

const REGENERATE: &str = "UPDATE_DEPLOY=1 cargo test --test chart deploy_bundle";

/// Helm's install order (pkg/releaseutil/kind_sorter.go), so the bundle applies top to bottom.
fn install_rank(kind: &str) -> usize {
    const ORDER: [&str; 36] = [
        "PriorityClass",
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "PodSecurityPolicy",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Secret",
        "SecretList",
        "ConfigMap",
        "StorageClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleList",
        "ClusterRoleBinding",
        "ClusterRoleBindingList",
        "Role",
        "RoleList",
        "RoleBinding",
        "RoleBindingList",
        "Service",
        "DaemonSet",
        "Pod",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "Job",
        "CronJob",
        "IngressClass",
        "Ingress",
        "APIService",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// The bundle: a Namespace, the CRDs, and the chart rendered with default values.
fn expected_bundle(rendered: &str) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut out = format!(
        "# cx-conductor {version}: everything `kubectl apply` needs to run the operator in namespace {NAMESPACE}:\n\
         # the Namespace, the CRDs, RBAC, the operator Deployment, its metrics Service and\n\
         # PodDisruptionBudget, and the Grafana dashboards as ConfigMaps.\n\
         #\n\
         #   kubectl apply --server-side -f deploy/cx-conductor.yaml\n\
         #\n\
         # Generated from charts/cx-conductor with its default values (release {RELEASE}); do not edit.\n\
         # Regenerate with: {REGENERATE}\n\
         ---\n\
         apiVersion: v1\n\
         kind: Namespace\n\
         metadata:\n\
         \x20 name: {NAMESPACE}\n\
         \x20 labels:\n\
         \x20   app.kubernetes.io/part-of: cx-conductor\n\
         \x20   pod-security.kubernetes.io/enforce: restricted\n\
         \x20   pod-security.kubernetes.io/enforce-version: latest\n"
    );
    let crds = std::fs::read_to_string(chart_dir().join("crds/cx-conductor.crds.yaml")).unwrap();
    for crd in crds
        .split("\n---\n")
        .map(|d| d.trim().trim_start_matches("---").trim())
    {
        if !crd.is_empty() {
            out.push_str("---\n# Source: cx-conductor/crds/cx-conductor.crds.yaml\n");
            out.push_str(crd);
            out.push('\n');
        }
    }
    let mut docs: Vec<(usize, usize, String)> = rendered
        .split("\n---")
        .map(|d| d.trim().trim_start_matches("---").trim().to_string())
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .enumerate()
        .map(|(i, d)| {
            let kind = d
                .lines()
                .find_map(|l| l.strip_prefix("kind: "))
                .unwrap_or_default()
                .trim()
                .to_string();
            (install_rank(&kind), i, d)
        })
        .collect();
    docs.sort();
    for (_, _, doc) in docs {
        out.push_str("---\n");
        out.push_str(&doc);
        out.push('\n');
    }
    out
}

#[test]
fn deploy_bundle_matches_the_chart() {
    let rendered = render_chart(&chart_dir(), &[], &[]);
    let expected = expected_bundle(&rendered.expect("the chart renders"));
    let path = root().join("deploy/cx-conductor.yaml");
    if std::env::var_os("UPDATE_DEPLOY").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("deploy/cx-conductor.yaml is missing: run {REGENERATE}"));
    // Compared as objects, so another renderer's whitespace does not matter.
    let (want, have) = (documents(&expected), documents(&committed));
    assert!(
        want == have,
        "deploy/cx-conductor.yaml is stale ({} documents expected, {} committed): run {REGENERATE}",
        want.len(),
        have.len()
    );
    assert!(
        committed.contains(REGENERATE),
        "the bundle names its regeneration command"
    );
    let kinds: Vec<String> = have.iter().map(|d| kind_name(d).0).collect();
    assert_eq!(kinds[0], "Namespace");
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "CustomResourceDefinition")
            .count(),
        4
    );
    let first_non_crd = kinds
        .iter()
        .skip(1)
        .position(|k| k != "CustomResourceDefinition")
        .unwrap()
        + 1;
    assert!(
        kinds[1..first_non_crd]
            .iter()
            .all(|k| k == "CustomResourceDefinition"),
        "CRDs come right after the Namespace: {kinds:?}"
    );
    assert!(
        kinds.contains(&"Deployment".to_string()) && kinds.contains(&"ClusterRole".to_string())
    );
    assert!(
        kinds.iter().position(|k| k == "ServiceAccount")
            < kinds.iter().position(|k| k == "Deployment"),
        "install order: {kinds:?}"
    );
}

// ----------------------------------------------------------------------------------------------
// kubernetes-validate

/// `python3 -m kubernetes_validate`, so no console-script shim needs to be on PATH.
fn kubernetes_validate_command() -> Command {
    let mut command = Command::new("python3");
    command.args(["-m", "kubernetes_validate"]);
    command
}

fn kubernetes_validate_available() -> bool {
    kubernetes_validate_command()
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Validates a multi-document file; returns the lines it printed that are not INFO.
fn kubernetes_validate(file: &Path, version: &str) -> (bool, Vec<String>) {
    let output = kubernetes_validate_command()
        .args(["--strict", "-k", version])
        .arg(file)
        .output()
        .expect("kubernetes-validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let notes = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("INFO"))
        .map(str::to_string)
        .collect();
    (output.status.success(), notes)
}

#[test]
fn every_manifest_passes_kubernetes_validate() {
    if !kubernetes_validate_available() {
        missing(
            "kubernetes-validate",
            "pip install kubernetes-validate (scripts/test.sh does)",
        );
    }
    let dir = std::env::temp_dir().join(format!("cx-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = vec![root().join("deploy/cx-conductor.yaml")];
    for (name, values) in [("defaults", &[][..]), ("all-on", &[ALL_ON][..])] {
        let text = render_chart(&chart_dir(), values, &[]);
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, text.expect("renders")).unwrap();
        files.push(file);
    }
    // The check bites: a typo in a field is refused.
    let typo = dir.join("typo.yaml");
    std::fs::write(
        &typo,
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80, targetPorts: 8080}]}\n",
    )
    .unwrap();
    let (ok, notes) = kubernetes_validate(&typo, KUBERNETES_VERSIONS[1]);
    assert!(
        !ok && notes.iter().any(|n| n.contains("targetPorts")),
        "{notes:?}"
    );

    for file in &files {
        for version in KUBERNETES_VERSIONS {
            let (ok, notes) = kubernetes_validate(file, version);
            // The Prometheus Operator's kinds have no schema there (their fields are checked
            // in every_optional_part_renders_when_switched_on and by promtool).
            let unexpected: Vec<&String> = notes
                .iter()
                .filter(|n| {
                    !(n.starts_with("WARN")
                        && n.contains("Couldn't find schema for kind")
                        && (n.contains(
                            "kind ServiceMonitor with api version monitoring.coreos.com/v1",
                        ) || n.contains(
                            "kind PrometheusRule with api version monitoring.coreos.com/v1",
                        )))
                })
                .collect();
            assert!(
                ok && unexpected.is_empty(),
                "{} against Kubernetes {version}: {unexpected:#?}",
                file.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

// ----------------------------------------------------------------------------------------------
// promtool

fn promtool_available() -> bool {
    Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Unit tests of the alerts (promtool test rules): each fires on the situation it describes,
/// with the labels the description uses, and stays silent otherwise.
const RULE_TESTS: &str = r#"
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'cx_touchpoint_collector_ready{namespace="retail", touchpoint="checkout", channel="web", stage="purchase"}'
        values: '0x20'
      - series: 'cx_touchpoint_collector_ready{namespace="retail", touchpoint="hotline", channel="voice", stage="support"}'
        values: '1x20'
      - series: 'cx_consistency_violations{namespace="retail", journey="retail"}'
        values: '2x40'
      - series: 'cx_consistency_violations{namespace="retail", journey="b2b"}'
        values: '0x40'
      - series: 'cx_journey_readiness_score{namespace="retail", journey="retail"}'
        values: '80x30 60x40'
      - series: 'cx_journey_readiness_score{namespace="retail", journey="b2b"}'
        values: '50x70'
      - series: 'cx_reconciles_total{controller="touchpoint", result="ok"}'
        values: '0+10x30'
      - series: 'cx_reconciles_total{controller="touchpoint", result="error"}'
        values: '0+5x30'
      - series: 'cx_reconcile_errors_total{controller="touchpoint", reason="kube"}'
        values: '0+5x30'
      - series: 'cx_reconciles_total{controller="journey", result="ok"}'
        values: '0+10x30'
      - series: 'cx_reconcile_errors_total{controller="journey", reason="kube"}'
        values: '0+0x30'
    alert_rule_test:
      - eval_time: 5m
        alertname: CxCollectorNotReady
        exp_alerts: []
      - eval_time: 15m
        alertname: CxCollectorNotReady
        exp_alerts:
          - exp_labels: {severity: warning, team: cx-platform, namespace: retail, touchpoint: checkout, channel: web, stage: purchase}
            exp_annotations:
              summary: Nobody listens at touchpoint retail/checkout.
              description: "The collector of touchpoint checkout (web, stage purchase) in namespace retail has not had every replica ready: its feedback events are lost or delayed. `kubectl describe touchpoint checkout -n retail` gives the reason."
      - eval_time: 20m
        alertname: CxJourneyInconsistent
        exp_alerts: []
      - eval_time: 35m
        alertname: CxJourneyInconsistent
        exp_alerts:
          - exp_labels: {severity: warning, team: cx-platform, namespace: retail, journey: retail}
            exp_annotations:
              summary: Journey retail/retail tells different stories on different channels.
              description: "2 consistency rule(s) of journey retail are broken. `kubectl get customerjourney retail -n retail -o yaml` lists each violation with the channels on each side."
      - eval_time: 29m
        alertname: CxJourneyReadinessDropped
        exp_alerts: []
      - eval_time: 65m
        alertname: CxJourneyReadinessDropped
        exp_alerts:
          - exp_labels: {severity: warning, team: cx-platform, namespace: retail, journey: retail}
            exp_annotations:
              summary: Readiness of journey retail/retail dropped by 10 points or more.
              description: "The readiness score of journey retail is 20 points below its highest value over the last 1d. The journey's conditions (Consistent, Covered, KPIsMet) say which criteria it lost."
      - eval_time: 10m
        alertname: CxConductorReconcileErrors
        exp_alerts: []
      - eval_time: 28m
        alertname: CxConductorReconcileErrors
        exp_alerts:
          - exp_labels: {severity: warning, team: cx-platform, controller: touchpoint}
            exp_annotations:
              summary: The touchpoint controller fails 33.33% of its reconciles.
              description: "33.33% of the touchpoint controller's reconciles failed over the last 10 minutes. cx_reconcile_errors_total{controller=\"touchpoint\"} says why (label reason); the operator's logs name the objects."
"#;

#[test]
fn prometheus_rules_pass_promtool_check_and_unit_tests() {
    let docs = render(&[ALL_ON], &[]);
    if !promtool_available() {
        missing(
            "promtool",
            "apt-get install -y prometheus (scripts/test.sh does)",
        );
    }
    let rule = one(&docs, "PrometheusRule");
    let dir = std::env::temp_dir().join(format!("cx-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = serde_yaml::to_string(&rule["spec"]).unwrap();
    std::fs::write(dir.join("rules.yaml"), &rules).unwrap();
    std::fs::write(dir.join("rules_test.yaml"), RULE_TESTS).unwrap();
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(dir.join("rules.yaml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}\n{rules}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new("promtool")
        .args(["test", "rules", "rules_test.yaml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `collectors.export` becomes the operator's export settings; by default there is none.
#[test]
fn export_values_become_the_operator_export_settings() {
    let docs = render(&[], &[]);
    let container = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        env_of(container)
            .keys()
            .all(|name| !name.starts_with("CX_EXPORT_")),
        "no export by default"
    );
    let docs = render(&[ALL_ON], &[]);
    let container = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    for (name, value) in [
        (
            "CX_EXPORT_ENDPOINT",
            "http://otel-collector.observability:4318",
        ),
        ("CX_EXPORT_TIMEOUT_MILLIS", "3000"),
        ("CX_EXPORT_DELIVERY", "bestEffort"),
        ("CX_EXPORT_QUEUE_EVENTS", "20000"),
        ("CX_EXPORT_LINGER_MILLIS", "5"),
        ("CX_EXPORT_MAX_BATCH_EVENTS", "512"),
        ("CX_EXPORT_TOKEN_SECRET", "otel-ingest/token"),
        ("CX_EXPORT_PSEUDONYM_KEY_SECRET", "cx-pseudonyms/key"),
        ("CX_EXPORT_HEADERS_SECRET", "otel-headers"),
    ] {
        assert_eq!(env_value(container, name).as_deref(), Some(value), "{name}");
    }
    let refused = render_chart(
        &chart_dir(),
        &[],
        &["collectors.export.endpoint=otel-collector:4318"],
    );
    assert!(
        refused.is_err(),
        "the schema refuses an endpoint without scheme"
    );
    let refused = render_chart(
        &chart_dir(),
        &[],
        &[
            "collectors.export.endpoint=http://otel:4318",
            "collectors.export.delivery=fast",
        ],
    );
    assert!(refused.is_err(), "the schema refuses an unknown delivery");
    // TLS Secrets for an https endpoint.
    let docs = render(
        &[],
        &[
            "collectors.export.endpoint=https://otel.observability:4318",
            "collectors.export.caSecret.name=otel-ca",
            "collectors.export.clientCertSecret.name=otel-client",
        ],
    );
    let container = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_value(container, "CX_EXPORT_CA_SECRET").as_deref(),
        Some("otel-ca/ca.crt")
    );
    assert_eq!(
        env_value(container, "CX_EXPORT_CLIENT_CERT_SECRET").as_deref(),
        Some("otel-client")
    );
    assert_eq!(env_value(container, "CX_EXPORT_HEADERS_SECRET"), None);
}
