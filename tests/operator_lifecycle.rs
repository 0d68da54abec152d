//! The operator across its own lifecycle, on the real control plane with the chart's RBAC (every
//! option on: NetworkPolicies, ServiceMonitors, auth): a fresh process after a restart writes
//! nothing (also with its caches filled in the opposite order), and a touchpoint switched between dedicated and pooled, with and without a PDB and
//! auth, ends with exactly the objects `check --plan` gives for its new state, through deletes
//! the chart grants. Writes are counted from the requests the API server receives (a proxy in
//! front of it), not from the operator's own counters.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/operator.rs"]
mod operator_support;
#[path = "support/proxy.rs"]
mod proxy;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster::{apply, cluster, create, eventually, get, repo_path};
use cx_conductor::api::{ExperienceKPI, Touchpoint};
use cx_conductor::core::plan::PlanOptions;
use cx_conductor::operator::OperatorOptions;
use http::Method;
use kube::Client;
use operator_support::{Operator, Release, full_release, operator_client, options_for};
use proxy::FaultProxy;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
const KINDS: &str = "deployments.apps,services,configmaps,secrets,horizontalpodautoscalers.autoscaling,poddisruptionbudgets.policy,networkpolicies.networking.k8s.io,servicemonitors.monitoring.coreos.com";

fn every_option(ns: &str) -> OperatorOptions {
    let mut options = options_for(ns);
    options.plan = PlanOptions {
        service_monitor: true,
        network_policy: true,
        ..PlanOptions::default()
    };
    options
}

/// An operator client of `release` through a fresh proxy that records every request.
async fn through_proxy(release: &Release) -> (FaultProxy, Client) {
    let proxy = FaultProxy::start(&cluster().server, &cluster().ca_pem).await;
    let client = operator_client(release, Some(&proxy.url)).await;
    (proxy, client)
}

fn writes_seen(proxy: &FaultProxy) -> Vec<String> {
    proxy
        .requests()
        .iter()
        .filter(|(m, _, _)| *m != Method::GET)
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect()
}

fn channel(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
        "metadata": {"name": name, "namespace": ns, "labels": {"journey": "main"}},
        "spec": {"type": "web", "owner": "digital", "brand": {"voice": "friendly"},
                 "privacy": {"consentPolicyVersion": "v7"}, "serviceLevels": {"firstResponseSeconds": 60}}
    })
}

/// A touchpoint in one of the states the transition matrix walks through.
fn touchpoint(ns: &str, name: &str, state: &State) -> Value {
    let mut collector = json!({"mode": state.mode});
    if state.mode == "dedicated" {
        collector["replicas"] = json!(state.replicas);
    }
    if state.auth {
        collector["auth"] = json!({"secretRef": {"name": "ingest", "key": "token"}});
    }
    json!({
        "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"channel": "web", "stage": "purchase",
                 "signals": {"surveys": [{"metric": "csat"}]}, "collector": collector}
    })
}

fn marked_secret(ns: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "ingest", "namespace": ns,
                     "labels": {"cx.conductor.dev/collector-auth": "true"}},
        "stringData": {"token": "s3cret-token"}
    })
}

async fn ready(admin: &Client, ns: &str, name: &str) -> bool {
    get::<Touchpoint>(admin, ns, name)
        .await
        .and_then(|t| t.status)
        .is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// `kind/name` of every object the operator manages in `ns`, as the API server has them.
fn managed_objects(ns: &str) -> BTreeSet<String> {
    cluster()
        .kubectl_ok(&[
            "get",
            KINDS,
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/managed-by=cx-conductor",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}{\"\\n\"}{end}",
        ])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `kind/name` of every object `check --plan` plans for `manifests` (every option on).
fn planned_objects(manifests: &[Value]) -> BTreeSet<String> {
    let dir = std::env::temp_dir().join(format!(
        "cx-lifecycle-plan-{}-{}",
        std::process::id(),
        manifests.len()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("plan dir");
    let yaml: Vec<String> = manifests
        .iter()
        .map(|m| serde_yaml::to_string(m).expect("yaml"))
        .collect();
    std::fs::write(dir.join("manifests.yaml"), yaml.join("---\n")).expect("manifests written");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
        .args(["check", "-f"])
        .arg(&dir)
        .args(["--plan", "--network-policy", "--service-monitor"])
        .current_dir(repo_path("."))
        .output()
        .expect("check runs");
    assert!(
        output.status.success(),
        "check --plan failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_yaml::Deserializer::from_slice(&output.stdout)
        .filter_map(|doc| serde::Deserialize::deserialize(doc).ok())
        .filter_map(|doc: Value| {
            Some(format!(
                "{}/{}",
                doc["kind"].as_str()?,
                doc["metadata"]["name"].as_str()?
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_writes_nothing_and_kpis_say_why_they_are_not_evaluated() {
    let release = full_release();
    let c = cluster();
    let ns = c.namespace("restart-quiet").await;
    let admin = c.admin();
    create(&admin, marked_secret(&ns)).await;
    create(&admin, channel(&ns, "web")).await;
    // Pooled members named so that name order and any hash order are unlikely to agree, two
    // dedicated collectors (one with a PDB), auth on some.
    let pooled = ["zeta", "alpha", "mid", "beta", "omega"];
    for (i, name) in pooled.iter().enumerate() {
        let state = State {
            mode: "pooled",
            replicas: 1,
            auth: i % 2 == 0,
        };
        create(&admin, touchpoint(&ns, name, &state)).await;
    }
    for (name, replicas) in [("kiosk", 2), ("till", 1)] {
        let state = State {
            mode: "dedicated",
            replicas,
            auth: replicas == 2,
        };
        create(&admin, touchpoint(&ns, name, &state)).await;
    }
    create(
        &admin,
        json!({
            "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "ExperienceKPI",
            "metadata": {"name": "checkout-csat", "namespace": ns},
            "spec": {"indicator": {"builtin": "csat"}, "scope": {"stage": "purchase"},
                     "objective": {"target": 80, "direction": "atLeast"}, "window": "7d",
                     "owner": "digital"}
        }),
    )
    .await;
    create(
        &admin,
        json!({
            "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "CustomerJourney",
            "metadata": {"name": "main", "namespace": ns},
            "spec": {"owner": "cx-office", "stages": ["purchase"],
                     "channelSelector": {"matchLabels": {"journey": "main"}}}
        }),
    )
    .await;
    let all: Vec<&str> = pooled.iter().copied().chain(["kiosk", "till"]).collect();

    // The first process converges (no Prometheus configured: the chart's default).
    let (_first_proxy, client) = through_proxy(release).await;
    let first = Operator::start(client, every_option(&ns));
    assert!(
        eventually(WAIT, || async {
            let mut all_ready = true;
            for name in &all {
                all_ready &= ready(&admin, &ns, name).await;
            }
            all_ready
                && get::<ExperienceKPI>(&admin, &ns, "checkout-csat")
                    .await
                    .and_then(|k| k.status)
                    .is_some()
        })
        .await,
        "the first process converges"
    );
    // Let the summary debounce and the last status writes land.
    tokio::time::sleep(Duration::from_secs(4)).await;
    first.stop().await;

    // KPIs say why they are not evaluated, and kubectl shows it.
    let kpi = get::<ExperienceKPI>(&admin, &ns, "checkout-csat")
        .await
        .and_then(|k| k.status)
        .expect("a KPI status without Prometheus");
    let ready_condition = kpi
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition");
    assert_eq!(ready_condition.status, "False");
    assert_eq!(ready_condition.reason, "PrometheusNotConfigured");
    assert!(
        ready_condition.message.contains("kpis.prometheusUrl"),
        "{}",
        ready_condition.message
    );
    let table = c.kubectl_ok(&["get", "xkpi", "-n", &ns]);
    assert!(
        table.contains("REASON") && table.contains("PrometheusNotConfigured"),
        "{table}"
    );
    let before = managed_objects(&ns);
    assert!(
        before.contains("Deployment/cx-collectors")
            && before.contains("Deployment/collector-kiosk")
            && before.contains("PodDisruptionBudget/collector-kiosk")
            && before.contains("ServiceMonitor/cx-collectors"),
        "{before:?}"
    );

    // Fresh processes write nothing at all: no apply, no status, no Event, no delete. Each has
    // caches of its own (iterated in an order of their own); the last two get every list answer
    // with its items reversed, so their caches also fill in the opposite order.
    for restart in 1..=4 {
        let (proxy, client) = through_proxy(release).await;
        let reversed = restart > 2;
        if reversed {
            proxy.reverse_lists();
        }
        let operator = Operator::start(client, every_option(&ns));
        assert!(
            eventually(WAIT, || async {
                operator.reconciles("touchpoint", "ok") >= 3 * all.len() as u64
                    && operator.reconciles("kpi", "ok") >= 2
            })
            .await,
            "restart {restart}: several resyncs ran"
        );
        assert_eq!(
            writes_seen(&proxy),
            Vec::<String>::new(),
            "restart {restart} (lists reversed: {reversed}): the API server received writes"
        );
        if reversed {
            // The operator caches 12 kinds: each was listed through the proxy, reversed.
            assert!(proxy.lists_reversed() >= 12, "{}", proxy.lists_reversed());
        }
        assert_eq!(
            operator.writes_of(&["apply", "status", "delete", "event"]),
            0
        );
        operator.stop().await;
    }
    assert_eq!(managed_objects(&ns), before, "nothing was recreated");
}

/// One state of the touchpoint under test.
#[derive(Debug, Clone, Copy)]
struct State {
    mode: &'static str,
    replicas: i32,
    auth: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_and_option_switches_leave_exactly_the_planned_objects() {
    let release = full_release();
    let c = cluster();
    let ns = c.namespace("transitions").await;
    let admin = c.admin();

    // Every delete the operator may issue is granted by the chart, asked the way users ask.
    let operator_user = format!(
        "system:serviceaccount:{}:{}",
        release.namespace, release.service_account
    );
    for resource in [
        "deployments.apps",
        "services",
        "configmaps",
        "secrets",
        "horizontalpodautoscalers.autoscaling",
        "poddisruptionbudgets.policy",
        "networkpolicies.networking.k8s.io",
        "servicemonitors.monitoring.coreos.com",
    ] {
        let answer = c.kubectl(&[
            "auth",
            "can-i",
            "delete",
            resource,
            "-n",
            &ns,
            "--as",
            &operator_user,
        ]);
        assert_eq!(
            String::from_utf8_lossy(&answer.stdout).trim(),
            "yes",
            "the chart grants delete on {resource}"
        );
    }
    // And nothing else is deleted: not pods, not the cx resources, not other namespaces' objects.
    for resource in ["pods", "touchpoints.cx.conductor.dev", "namespaces"] {
        let answer = c.kubectl(&[
            "auth",
            "can-i",
            "delete",
            resource,
            "-n",
            &ns,
            "--as",
            &operator_user,
        ]);
        assert_eq!(
            String::from_utf8_lossy(&answer.stdout).trim(),
            "no",
            "the chart does not grant delete on {resource}"
        );
    }

    create(&admin, marked_secret(&ns)).await;
    create(&admin, channel(&ns, "web")).await;
    let states = [
        State {
            mode: "dedicated",
            replicas: 2,
            auth: true,
        },
        State {
            mode: "dedicated",
            replicas: 1,
            auth: false,
        },
        State {
            mode: "pooled",
            replicas: 1,
            auth: true,
        },
        State {
            mode: "pooled",
            replicas: 1,
            auth: false,
        },
    ];
    // A walk through every ordered pair of distinct states (an Eulerian circuit of the complete
    // directed graph on four states).
    let walk = [0, 1, 0, 2, 0, 3, 1, 2, 1, 3, 2, 3, 0];
    let mut covered = BTreeSet::new();
    for pair in walk.windows(2) {
        covered.insert((pair[0], pair[1]));
    }
    assert_eq!(covered.len(), 12, "every transition is walked");

    let (proxy, client) = through_proxy(release).await;
    let operator = Operator::start(client, every_option(&ns));
    let mut previous: Option<usize> = None;
    for &s in &walk {
        let state = states[s];
        let object = touchpoint(&ns, "tp", &state);
        apply(&admin, &object, "test").await.expect("applied");
        // Offline, check cannot plan a pooled touchpoint whose token only the cluster holds;
        // the token changes the pool's configuration, not which objects there are.
        let offline = State {
            auth: state.auth && state.mode == "dedicated",
            ..state
        };
        let planned = planned_objects(&[channel(&ns, "web"), touchpoint(&ns, "tp", &offline)]);
        assert!(!planned.is_empty(), "check plans objects for {state:?}");
        let converged = eventually(WAIT, || async {
            ready(&admin, &ns, "tp").await && managed_objects(&ns) == planned
        })
        .await;
        assert!(
            converged,
            "{previous:?} -> {s} ({state:?}): the namespace holds {:?}, check --plan gives {planned:?}",
            managed_objects(&ns)
        );
        previous = Some(s);
    }
    // No reconcile ended in an error (a refused delete would retry forever).
    assert_eq!(operator.reconciles("touchpoint", "error"), 0);
    let deleted: Vec<_> = proxy
        .requests()
        .iter()
        .filter(|(m, _, _)| *m == Method::DELETE)
        .map(|(_, p, _)| p.clone())
        .collect();
    for kind in [
        "/deployments/",
        "/services/",
        "/poddisruptionbudgets/",
        "/secrets/",
    ] {
        assert!(
            deleted.iter().any(|p| p.contains(kind)),
            "{kind} deleted on the way: {deleted:?}"
        );
    }
    // The NetworkPolicy and ServiceMonitor are the namespace's, shared by its collectors in
    // either mode: no switch touches them.
    assert!(
        !deleted
            .iter()
            .any(|p| p.contains("networkpolicies") || p.contains("servicemonitors")),
        "{deleted:?}"
    );
    operator.stop().await;
}

/// The themes a collector counts, from its configuration as the API server holds it: the pool's
/// Secret for a pooled touchpoint, the Deployment's pod template for a dedicated one.
async fn themes_in_config(admin: &Client, ns: &str, touchpoint: &str) -> Option<Vec<String>> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Secret;
    let dedicated = get::<Deployment>(admin, ns, &format!("collector-{touchpoint}")).await;
    let config: Value = match dedicated {
        Some(deployment) => {
            let pod = deployment.spec.template.spec?;
            let env = pod.containers.first()?.env.clone()?;
            let text = env
                .iter()
                .find(|e| e.name == "CX_COLLECTOR_CONFIG")?
                .value
                .clone()?;
            serde_json::from_str(&text).ok()?
        }
        None => {
            let secret = get::<Secret>(admin, ns, "cx-collectors").await?;
            let pool: Value =
                serde_json::from_slice(&secret.data?.get("collectors.yaml")?.0).ok()?;
            pool["touchpoints"]
                .as_array()?
                .iter()
                .find(|t| t["touchpoint"] == touchpoint)?
                .clone()
        }
    };
    Some(
        config["themes"]
            .as_array()
            .map(|themes| {
                themes
                    .iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_themes_reach_every_collector_of_the_journey_and_a_refused_set_none() {
    use cx_conductor::api::CustomerJourney;
    let release = full_release();
    let c = cluster();
    let ns = c.namespace("themes").await;
    let admin = c.admin();
    create(&admin, channel(&ns, "web")).await;
    let pooled = State {
        mode: "pooled",
        replicas: 1,
        auth: false,
    };
    let dedicated = State {
        mode: "dedicated",
        replicas: 1,
        auth: false,
    };
    create(&admin, touchpoint(&ns, "checkout", &pooled)).await;
    create(&admin, touchpoint(&ns, "kiosk", &dedicated)).await;
    let journey = |themes: Value| {
        json!({
            "apiVersion": "cx.conductor.dev/v1alpha1", "kind": "CustomerJourney",
            "metadata": {"name": "main", "namespace": ns},
            "spec": {"owner": "cx-office", "stages": ["purchase"],
                     "channelSelector": {"matchLabels": {"journey": "main"}},
                     "coverage": {"kpiPerStage": false},
                     "themes": themes}
        })
    };
    apply(
        &admin,
        &journey(json!([{"name": "delivery", "keywords": ["consegn*", "courier"]}])),
        "test",
    )
    .await
    .expect("journey applied");
    let (_proxy, client) = through_proxy(release).await;
    let operator = Operator::start(client, every_option(&ns));
    let themes_are = |expected: Vec<&'static str>| {
        let admin = admin.clone();
        let ns = ns.clone();
        async move {
            let mut all = true;
            for tp in ["checkout", "kiosk"] {
                all &= themes_in_config(&admin, &ns, tp).await
                    == Some(expected.iter().map(|s| s.to_string()).collect());
            }
            all
        }
    };
    assert!(
        eventually(WAIT, || themes_are(vec!["delivery"])).await,
        "the journey's theme reaches the pool and the dedicated collector"
    );
    let themes_valid = || async {
        get::<CustomerJourney>(&admin, &ns, "main")
            .await
            .and_then(|j| j.status)
            .and_then(|s| {
                s.conditions
                    .into_iter()
                    .find(|c| c.type_ == "ThemesValid")
                    .map(|c| (c.status, c.reason))
            })
    };
    assert!(
        eventually(WAIT, || async {
            themes_valid().await == Some(("True".into(), "Counted".into()))
        })
        .await
    );
    // A theme added to the journey reaches both, without restarting the pool's pods.
    apply(
        &admin,
        &journey(json!([
            {"name": "delivery", "keywords": ["consegn*", "courier"]},
            {"name": "price", "keywords": ["prezz*", "price"]}
        ])),
        "test",
    )
    .await
    .expect("journey applied");
    assert!(
        eventually(WAIT, || themes_are(vec!["delivery", "price"])).await,
        "the new theme reaches every collector"
    );
    // A set the collectors would refuse never reaches them; the journey says why.
    apply(
        &admin,
        &journey(json!([{"name": "symbols", "keywords": ["!!!"]}])),
        "test",
    )
    .await
    .expect("the schema admits it; the collectors would not");
    assert!(
        eventually(WAIT, || themes_are(vec![])).await,
        "a refused theme set is left out of every collector"
    );
    assert!(
        eventually(WAIT, || async {
            themes_valid().await == Some(("False".into(), "ThemesRefused".into()))
        })
        .await,
        "{:?}",
        themes_valid().await
    );
    assert_eq!(operator.reconciles("touchpoint", "error"), 0);
    operator.stop().await;
}
