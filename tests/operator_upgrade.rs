//! `helm upgrade` from the previous release on the real control plane: the previous chart
//! (`scripts/previous-release.sh`, the last commit that landed) is installed, its operator binary
//! runs as the release's process (the environment its Deployment gives it, a token of its
//! ServiceAccount) and populates a namespace; then the chart is upgraded to this one and this
//! operator starts. It must adopt every object it finds: nothing deleted or recreated, no
//! collector pod restarted, nothing rewritten that this version plans the same way, statuses
//! unchanged, no Event.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cluster::{cluster, create, eventually, ok, repo_path};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);
/// What the operator manages in a namespace, and the collector pods.
const KINDS: &str = "deployments.apps,services,configmaps,secrets,horizontalpodautoscalers.autoscaling,poddisruptionbudgets.policy,networkpolicies.networking.k8s.io,servicemonitors.monitoring.coreos.com";
/// The custom resources, whose status the operator writes.
const CUSTOM: &str = "channels.cx.conductor.dev,touchpoints.cx.conductor.dev,experiencekpis.cx.conductor.dev,customerjourneys.cx.conductor.dev";
/// The chart values of the release, before and after the upgrade.
const VALUES: &[&str] = &[
    "collectors.serviceMonitors=true",
    "collectors.networkPolicies=true",
    "resyncSeconds=10",
];

/// The previous release's folder (`cx-conductor`, `chart/`), built the first time on a machine.
fn previous_release() -> PathBuf {
    let script = repo_path("scripts/previous-release.sh");
    ok(
        Command::new("bash")
            .arg(&script)
            .arg("build")
            .output()
            .expect("scripts/previous-release.sh runs"),
        "scripts/previous-release.sh build",
    );
    PathBuf::from(
        ok(
            Command::new("bash")
                .arg(&script)
                .arg("dir")
                .output()
                .expect("scripts/previous-release.sh runs"),
            "scripts/previous-release.sh dir",
        )
        .trim(),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a port")
        .local_addr()
        .expect("an address")
        .port()
}

/// `helm upgrade --install` of `chart` as `release`, watching `watched` only.
fn install(chart: &Path, release: &str, namespace: &str, watched: &str) {
    let watch = format!("watchNamespaces={{{watched}}}");
    let mut args = vec![
        "upgrade",
        "--install",
        release,
        chart.to_str().expect("a UTF-8 path"),
        "--namespace",
        namespace,
        "--create-namespace",
        "--skip-crds",
        "--set",
        watch.as_str(),
    ];
    for value in VALUES {
        args.extend(["--set", value]);
    }
    cluster().helm_ok(&args);
}

/// The environment the release's operator Deployment gives its container (literal values only;
/// the downward-API ones are set by `OperatorProcess::start`).
fn release_environment(release: &str, namespace: &str) -> Vec<(String, String)> {
    let manifest = cluster().helm_ok(&["get", "manifest", release, "--namespace", namespace]);
    let deployment: Value = serde_yaml::Deserializer::from_str(&manifest)
        .filter_map(|doc| serde::Deserialize::deserialize(doc).ok())
        .find(|doc: &Value| doc["kind"] == "Deployment")
        .expect("the release has an operator Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("the operator container has an environment")
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect()
}

/// An operator binary running as the release's process.
struct OperatorProcess {
    child: Child,
    metrics_port: u16,
}

impl OperatorProcess {
    async fn start(binary: &Path, release: &str, namespace: &str) -> Self {
        let c = cluster();
        let service_account = format!("{release}-cx-conductor");
        let token = c.service_account_token(namespace, &service_account).await;
        let kubeconfig = c.kubeconfig_for(&c.server, &token, release);
        let metrics_port = free_port();
        let child = Command::new(binary)
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(release_environment(release, namespace))
            .env("POD_NAME", format!("{release}-operator"))
            .env("POD_NAMESPACE", namespace)
            .env("CX_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
        Self {
            child,
            metrics_port,
        }
    }

    /// The sum of the samples of `metric` whose labels contain `labels`; `None` while the
    /// metrics endpoint does not answer.
    fn metric(&self, metric: &str, labels: &str) -> Option<f64> {
        let output = Command::new("curl")
            .args([
                "-sf",
                &format!("http://127.0.0.1:{}/metrics", self.metrics_port),
            ])
            .output()
            .ok()?;
        output.status.success().then(|| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(labels))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        })
    }

    /// SIGTERM, as the kubelet stops a pod, and wait for the process to exit.
    fn terminate(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the API server holds for one object: its identity and whether it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    uid: String,
    resource_version: String,
    generation: Option<i64>,
    status: Value,
}

/// `kind/name` → what the API server holds, for `kinds` in `ns` (`selector` narrows).
fn snapshot(kinds: &str, ns: &str, selector: Option<&str>) -> BTreeMap<String, Seen> {
    let mut args = vec!["get", kinds, "-n", ns, "-o", "json"];
    if let Some(selector) = selector {
        args.extend(["-l", selector]);
    }
    let list: Value = serde_json::from_str(&cluster().kubectl_ok(&args)).expect("a JSON list");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or_default(),
                    o["metadata"]["name"].as_str().unwrap_or_default()
                ),
                Seen {
                    uid: o["metadata"]["uid"].as_str().unwrap_or_default().into(),
                    resource_version: o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .into(),
                    generation: o["metadata"]["generation"].as_i64(),
                    status: o["status"].clone(),
                },
            )
        })
        .collect()
}

/// Objects whose status other controllers keep writing (the Deployment, HPA and PDB
/// controllers): the operator's own writes show in their generation, not their resourceVersion.
fn status_written_by_others(key: &str) -> bool {
    [
        "Deployment/",
        "HorizontalPodAutoscaler/",
        "PodDisruptionBudget/",
    ]
    .iter()
    .any(|k| key.starts_with(k))
}

/// `kind/name` → the object `binary check --plan` plans for `manifests`, every option the
/// release has on.
fn plan(binary: &Path, manifests: &Path) -> BTreeMap<String, Value> {
    let output = Command::new(binary)
        .args(["check", "-f"])
        .arg(manifests)
        .args(["--plan", "--network-policy", "--service-monitor"])
        .output()
        .expect("check runs");
    // Exit status 1 is a finding (these manifests leave stages without KPIs); the plan is printed.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{} check --plan failed: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_yaml::Deserializer::from_str(&stdout)
        .filter_map(|doc| serde::Deserialize::deserialize(doc).ok())
        .filter_map(|doc: Value| {
            Some((
                format!(
                    "{}/{}",
                    doc["kind"].as_str()?,
                    doc["metadata"]["name"].as_str()?
                ),
                doc,
            ))
        })
        .collect()
}

fn manifests(ns: &str) -> Vec<Value> {
    let touchpoint = |name: &str, stage: &str, collector: Value| {
        json!({
            "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"channel": "web", "stage": stage,
                     "signals": {"surveys": [{"metric": "csat"}, {"metric": "nps"}]},
                     "collector": collector}
        })
    };
    vec![
        json!({
            "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
            "metadata": {"name": "web", "namespace": ns, "labels": {"journey": "main"}},
            "spec": {"type": "web", "owner": "digital", "brand": {"voice": "friendly"},
                     "privacy": {"consentPolicyVersion": "v7"}}
        }),
        touchpoint("checkout", "purchase", json!({"mode": "pooled"})),
        touchpoint("basket", "consideration", json!({"mode": "pooled"})),
        touchpoint("returns", "support", json!({"mode": "pooled"})),
        touchpoint(
            "kiosk",
            "delivery",
            json!({"mode": "dedicated", "replicas": 2}),
        ),
        json!({
            "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "ExperienceKPI",
            "metadata": {"name": "checkout-csat", "namespace": ns},
            "spec": {"indicator": {"builtin": "csat"}, "scope": {"stage": "purchase"},
                     "objective": {"target": 80, "direction": "atLeast"}, "window": "7d",
                     "owner": "digital"}
        }),
        json!({
            "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "CustomerJourney",
            "metadata": {"name": "main", "namespace": ns},
            "spec": {"owner": "cx-office", "stages": ["consideration", "purchase", "delivery", "support"],
                     "channelSelector": {"matchLabels": {"journey": "main"}},
                     "themes": [{"name": "delivery", "keywords": ["consegn*", "delivery", "courier"]}]}
        }),
    ]
}

fn all_ready(ns: &str) -> bool {
    let touchpoints = snapshot("touchpoints.cx.conductor.dev", ns, None);
    touchpoints.len() == 4
        && touchpoints.values().all(|t| {
            t.status["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_upgrade_from_the_previous_release_adopts_everything_and_restarts_nothing() {
    let previous = previous_release();
    let c = cluster();
    c.install_crds();
    let admin = c.admin();
    let ns = c.namespace("upgrade").await;
    let release = format!("up{}", std::process::id());
    let release_ns = format!("{release}-system");

    // The previous chart and its operator populate the namespace.
    install(&previous.join("chart"), &release, &release_ns, &ns);
    let objects = manifests(&ns);
    for object in &objects {
        create(&admin, object.clone()).await;
    }
    let old = OperatorProcess::start(&previous.join("cx-conductor"), &release, &release_ns).await;
    assert!(
        eventually(WAIT, || async {
            all_ready(&ns)
                && snapshot("experiencekpis.cx.conductor.dev", &ns, None)
                    .values()
                    .all(|k| !k.status.is_null())
                && snapshot("pods", &ns, None).len() >= 3
        })
        .await,
        "the previous release converges"
    );
    // Several resyncs, so the last status writes and summaries have landed.
    tokio::time::sleep(Duration::from_secs(8)).await;
    old.terminate();

    let managed_selector = "app.kubernetes.io/managed-by=cx-conductor";
    let objects_before = snapshot(KINDS, &ns, Some(managed_selector));
    let pods_before = snapshot("pods", &ns, None);
    let custom_before = snapshot(CUSTOM, &ns, None);
    let events_before = snapshot("events", &ns, None);
    assert!(
        objects_before.contains_key("Deployment/cx-collectors")
            && objects_before.contains_key("Deployment/collector-kiosk")
            && objects_before.contains_key("ServiceMonitor/cx-collectors")
            && objects_before.contains_key("NetworkPolicy/collector-kiosk"),
        "{:?}",
        objects_before.keys()
    );

    // Which objects this version plans differently from the previous one: only those may be
    // written (and then in place).
    let dir = std::env::temp_dir().join(format!("cx-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a folder");
    let yaml: Vec<String> = objects
        .iter()
        .map(|m| serde_yaml::to_string(m).expect("yaml"))
        .collect();
    std::fs::write(dir.join("manifests.yaml"), yaml.join("---\n")).expect("manifests written");
    let previous_plan = plan(&previous.join("cx-conductor"), &dir);
    let current_plan = plan(Path::new(env!("CARGO_BIN_EXE_cx-conductor")), &dir);
    let replanned: BTreeSet<&String> = current_plan
        .iter()
        .filter(|(key, object)| previous_plan.get(*key) != Some(object))
        .map(|(key, _)| key)
        .collect();

    // The upgrade: this chart, the same values, this operator.
    install(
        &repo_path("charts/cx-conductor"),
        &release,
        &release_ns,
        &ns,
    );
    let new = OperatorProcess::start(
        Path::new(env!("CARGO_BIN_EXE_cx-conductor")),
        &release,
        &release_ns,
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            new.metric(
                "cx_reconciles_total",
                "controller=\"touchpoint\",result=\"ok\"",
            )
            .is_some_and(|n| n >= 12.0)
                && new
                    .metric("cx_reconciles_total", "controller=\"kpi\",result=\"ok\"")
                    .is_some_and(|n| n >= 2.0)
        })
        .await,
        "the upgraded operator leads and reconciles every touchpoint several times"
    );
    let writes = new.metric("cx_api_writes_total", "").expect("metrics");
    new.terminate();

    // What the previous version planned and this one does not goes; what this one adds comes.
    let objects_after = snapshot(KINDS, &ns, Some(managed_selector));
    let retired: BTreeSet<&String> = previous_plan
        .keys()
        .filter(|k| !current_plan.contains_key(*k))
        .collect();
    let expected: BTreeSet<&String> = objects_before
        .keys()
        .filter(|k| !retired.contains(k))
        .chain(
            current_plan
                .keys()
                .filter(|k| !previous_plan.contains_key(*k)),
        )
        .collect();
    assert_eq!(
        objects_after.keys().collect::<BTreeSet<_>>(),
        expected,
        "the objects this version plans (retired: {retired:?})"
    );
    for (key, before) in objects_before.iter().filter(|(k, _)| !retired.contains(k)) {
        let Some(after) = objects_after.get(key) else {
            continue;
        };
        assert_eq!(after.uid, before.uid, "{key} was deleted and recreated");
        if replanned.contains(key) {
            continue;
        }
        if status_written_by_others(key) {
            assert_eq!(after.generation, before.generation, "{key} was rewritten");
        } else {
            assert_eq!(
                after.resource_version, before.resource_version,
                "{key} was rewritten"
            );
        }
    }
    // A collector whose Deployment this version plans differently rolls (its pods are
    // replaced, its touchpoint's status and Events follow the rollout); every other stays as is.
    let rolled: Vec<&str> = replanned
        .iter()
        .filter_map(|k| k.strip_prefix("Deployment/"))
        .collect();
    let rolled_touchpoints: Vec<&str> = rolled
        .iter()
        .filter_map(|d| d.strip_prefix("collector-"))
        .collect();
    let pods_after = snapshot("pods", &ns, None);
    for (pod, before) in &pods_before {
        let name = pod.trim_start_matches("Pod/");
        if rolled.iter().any(|d| name.starts_with(&format!("{d}-"))) {
            continue;
        }
        assert_eq!(
            pods_after.get(pod).map(|p| &p.uid),
            Some(&before.uid),
            "{pod} was replaced"
        );
    }
    let custom_after = snapshot(CUSTOM, &ns, None);
    for (key, before) in &custom_before {
        if rolled_touchpoints
            .iter()
            .any(|t| *key == format!("Touchpoint/{t}"))
        {
            continue;
        }
        assert_eq!(
            custom_after.get(key),
            Some(before),
            "{key}: status rewritten"
        );
    }
    let new_events: Vec<String> = snapshot("events", &ns, None)
        .into_keys()
        .filter(|k| !events_before.contains_key(k))
        .collect();
    // The rollout's own Events (its Deployment, ReplicaSets, pods) and its touchpoint's.
    assert!(
        new_events.iter().all(|e| {
            rolled_touchpoints
                .iter()
                .any(|t| e.starts_with(&format!("Event/{t}.")))
                || rolled.iter().any(|d| e.starts_with(&format!("Event/{d}")))
        }),
        "Events about what did not change: {new_events:?}"
    );
    eprintln!("replanned by this version: {replanned:?}; retired: {retired:?}");
    if replanned.is_empty() && retired.is_empty() {
        assert_eq!(writes, 0.0, "the upgraded operator wrote");
    }
    assert!(all_ready(&ns), "every touchpoint is still ready");
    let _ = std::fs::remove_dir_all(&dir);
}
