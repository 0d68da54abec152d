//! The repository's manifests on the real control plane of `scripts/cluster.sh`: `kubectl apply
//! --server-side` of `crds/`, `deploy/cx-conductor.yaml` and `examples/retail/` succeeds; every
//! short name lists its kind; every `examples/broken/` file the schema should refuse is refused
//! by the real API server with exactly the answer the READMEs quote, and the others are
//! accepted; the PrometheusRule generated from the example's KPIs is accepted by the Prometheus
//! Operator's CRD.
//!
//! Each test works in namespaces of its own (the example's `namespace: retail` is rewritten), so
//! the tests run in parallel with other test binaries on the shared control plane. A control
//! plane that cannot start fails the test.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use cx_conductor::api::ExperienceKPI;
use cx_conductor::kpi::recording::{Increase, RECORDED, STEPS_RECORDED};
use cx_conductor::kpi::rules::{alert_for, prometheus_rules};
use cx_conductor::manifest::{Inventory, load_paths};
use cx_conductor::schema::SchemaValidator;
use serde_json::{Value, json};

/// The `# expect:` line of a broken example, split into words.
fn expectation(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{} has no '# expect:' line", file.display()));
    line.split_whitespace().map(String::from).collect()
}

fn files_in(folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cluster::repo_path(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// `text` with the example's namespace `retail` replaced by `namespace` (the `namespace:` of
/// every object and the name of the Namespace object).
fn in_namespace(text: &str, namespace: &str) -> String {
    let mut out = String::new();
    let mut in_namespace_object = false;
    for line in text.lines() {
        if line.starts_with("kind: ") {
            in_namespace_object = line == "kind: Namespace";
        }
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if trimmed == "namespace: retail" || (in_namespace_object && trimmed == "name: retail") {
            let key = trimmed.split(':').next().unwrap();
            out.push_str(&format!("{indent}{key}: {namespace}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A folder of its own for this test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cx-cluster-manifests-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies of `files` in `dir`, in `namespace`, under their own names.
fn copies_in(dir: &Path, files: &[PathBuf], namespace: &str) -> Vec<PathBuf> {
    files
        .iter()
        .map(|file| {
            let copy = dir.join(file.file_name().unwrap());
            std::fs::write(
                &copy,
                in_namespace(&std::fs::read_to_string(file).unwrap(), namespace),
            )
            .unwrap();
            copy
        })
        .collect()
}

/// stdout and stderr of a command, each line without trailing blanks.
fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .lines()
    .map(str::trim_end)
    .collect::<Vec<_>>()
    .join("\n")
}

/// Installs the CRDs of `crds/` (server-side apply) and runs `check` until it passes, five times
/// at most: the control plane is shared, another test binary may re-apply an older copy of the
/// CRDs at any moment, and the API server takes a moment to serve a changed schema. A check that
/// our CRDs fail fails every time.
fn with_our_crds(what: &str, check: impl Fn() -> Result<(), String>) {
    let c = cluster::cluster();
    let mut last = String::new();
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        c.apply_crds();
        match check() {
            Ok(()) => return,
            Err(error) => last = error,
        }
    }
    panic!("{what}: {last}");
}

// ----------------------------------------------------------------------------------------------
// crds/, deploy/, examples/retail/

#[test]
fn crds_apply_server_side_and_are_established() {
    let c = cluster::cluster();
    let applied = c.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", "crds/"]);
    for crd in [
        "channels",
        "touchpoints",
        "experiencekpis",
        "customerjourneys",
    ] {
        assert!(
            applied.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{crd}.cx.conductor.dev serverside-applied"
            )),
            "{applied}"
        );
    }
    let established = c.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/channels.cx.conductor.dev",
        "crd/touchpoints.cx.conductor.dev",
        "crd/experiencekpis.cx.conductor.dev",
        "crd/customerjourneys.cx.conductor.dev",
    ]);
    assert_eq!(established.lines().count(), 4, "{established}");
}

#[test]
fn the_install_bundle_applies_server_side_and_the_operator_becomes_available() {
    let c = cluster::cluster();
    let applied = c.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "deploy/cx-conductor.yaml",
    ]);
    for object in [
        "namespace/cx-system serverside-applied",
        "customresourcedefinition.apiextensions.k8s.io/touchpoints.cx.conductor.dev serverside-applied",
        "serviceaccount/cx-conductor serverside-applied",
        "clusterrole.rbac.authorization.k8s.io/cx-conductor serverside-applied",
        "clusterrolebinding.rbac.authorization.k8s.io/cx-conductor serverside-applied",
        "deployment.apps/cx-conductor serverside-applied",
        "service/cx-conductor-metrics serverside-applied",
    ] {
        assert!(applied.contains(object), "{object}:\n{applied}");
    }
    let bundle = std::fs::read_to_string(cluster::repo_path("deploy/cx-conductor.yaml")).unwrap();
    let documents = bundle
        .split("\n---")
        .filter(|d| d.lines().any(|l| l.starts_with("kind: ")))
        .count();
    assert_eq!(
        applied.lines().count(),
        documents,
        "one line per object:\n{applied}"
    );
    c.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/cx-conductor",
        "--namespace",
        "cx-system",
        "--timeout=3m",
    ]);
    let available = c.kubectl_ok(&[
        "get",
        "deployment",
        "cx-conductor",
        "--namespace",
        "cx-system",
        "-o",
        "jsonpath={.status.availableReplicas}",
    ]);
    assert_eq!(available, "2");
}

#[tokio::test]
async fn the_retail_example_applies_server_side_and_every_short_name_lists_its_kind() {
    let c = cluster::cluster();
    let namespace = format!("retail-{}", std::process::id());
    let dir = scratch("retail");
    let files = copies_in(&dir, &files_in("examples/retail"), &namespace);
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for file in &files {
        for doc in serde_yaml::Deserializer::from_str(&std::fs::read_to_string(file).unwrap()) {
            let doc: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
            let kind = doc["kind"].as_str().unwrap().to_lowercase();
            let name = doc["metadata"]["name"].as_str().unwrap();
            if kind != "namespace" {
                expected.insert(format!("{kind}.cx.conductor.dev/{name}"));
            }
        }
    }
    let dir_arg = dir.display().to_string();
    with_our_crds("examples/retail/", || {
        let output = c.kubectl(&["apply", "--server-side", "-f", &dir_arg]);
        if !output.status.success() {
            return Err(text(&output));
        }
        Ok(())
    });
    let listed: BTreeSet<String> = c
        .kubectl_ok(&["get", "cx", "--namespace", &namespace, "-o", "name"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        listed, expected,
        "kubectl get cx (the category) lists every object"
    );
    assert_eq!(
        expected
            .iter()
            .filter(|o| o.starts_with("channel."))
            .count(),
        6
    );

    // Each short name lists its own kind; `cj` is CronJob's, which is why it is not ours.
    let lines = |args: &[&str]| -> Result<BTreeSet<String>, String> {
        let output = c.kubectl(args);
        if !output.status.success() {
            return Err(format!("kubectl {}: {}", args.join(" "), text(&output)));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    };
    with_our_crds("short names", || {
        for (short, kind) in [
            ("chan", "channel"),
            ("tp", "touchpoint"),
            ("xkpi", "experiencekpi"),
            ("cxj", "customerjourney"),
        ] {
            let listed = lines(&["get", short, "--namespace", &namespace, "-o", "name"])?;
            let of_kind: BTreeSet<String> = expected
                .iter()
                .filter(|o| o.starts_with(&format!("{kind}.")))
                .cloned()
                .collect();
            assert!(!of_kind.is_empty());
            if listed != of_kind {
                return Err(format!(
                    "kubectl get {short}: {listed:?}, expected {of_kind:?}"
                ));
            }
        }
        let journeys = lines(&["get", "cxj", "--namespace", &namespace])?;
        let header = journeys
            .iter()
            .find(|l| l.starts_with("NAME"))
            .cloned()
            .unwrap_or_default();
        if !header.contains("READINESS") || !journeys.iter().any(|l| l.starts_with("retail ")) {
            return Err(format!("kubectl get cxj: {journeys:?}"));
        }
        let kind_of = |short: &str| -> Result<String, String> {
            Ok(lines(&["explain", short])?
                .into_iter()
                .find_map(|l| l.strip_prefix("KIND:").map(|k| k.trim().to_string()))
                .unwrap_or_default())
        };
        for (short, kind) in [("cj", "CronJob"), ("cxj", "CustomerJourney")] {
            let found = kind_of(short)?;
            if found != kind {
                return Err(format!("kubectl explain {short}: {found}, expected {kind}"));
            }
        }
        Ok(())
    });
    c.kubectl_ok(&["delete", "namespace", &namespace, "--wait=false"]);
    let _ = std::fs::remove_dir_all(dir);
}

// ----------------------------------------------------------------------------------------------
// examples/broken/

/// The answers a README quotes in its code blocks: after a line
/// `$ kubectl apply --server-side -f examples/broken/FILE`, every line up to the next `$ `
/// line, blank line or the end of the block.
fn quoted_answers(readme: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(cluster::repo_path(readme)).unwrap();
    let mut answers = BTreeMap::new();
    let mut in_block = false;
    let mut current: Option<(String, Vec<String>)> = None;
    let mut finish = |current: &mut Option<(String, Vec<String>)>| {
        if let Some((file, lines)) = current.take() {
            let previous = answers.insert(file.clone(), lines.join("\n"));
            assert!(previous.is_none(), "{readme} quotes {file} twice");
        }
    };
    for line in text.lines() {
        if line.starts_with("```") {
            finish(&mut current);
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(file) = line.strip_prefix("$ kubectl apply --server-side -f examples/broken/") {
            finish(&mut current);
            current = Some((file.to_string(), Vec::new()));
        } else if line.starts_with("$ ") || line.trim().is_empty() {
            finish(&mut current);
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line.trim_end().to_string());
        }
    }
    finish(&mut current);
    answers
}

#[tokio::test]
async fn broken_examples_are_refused_by_the_server_as_the_readmes_show() {
    let c = cluster::cluster();
    let namespace = c.namespace("broken").await;
    let dir = scratch("broken");
    let broken = files_in("examples/broken");
    let copies = copies_in(&dir, &broken, &namespace);
    let documented = quoted_answers("examples/broken/README.md");
    let in_readme = quoted_answers("README.md");
    assert!(
        !in_readme.is_empty(),
        "README.md quotes at least one answer of the server"
    );
    let mut refused = BTreeSet::new();
    for (file, copy) in broken.iter().zip(&copies) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let expect = expectation(file);
        let copy_arg = copy.display().to_string();
        let dry_run = || {
            let output = c.kubectl(&[
                "apply",
                "--server-side",
                "--dry-run=server",
                "-f",
                &copy_arg,
            ]);
            (
                output.status.success(),
                text(&output).replace(&namespace, "retail"),
            )
        };
        match expect[0].as_str() {
            "schema" => {
                refused.insert(name.clone());
                let quoted = documented.get(&name).unwrap_or_else(|| {
                    panic!("examples/broken/README.md quotes no answer for {name}")
                });
                if let Some(also) = in_readme.get(&name) {
                    assert_eq!(
                        also, quoted,
                        "README.md and examples/broken/README.md quote {name} alike"
                    );
                }
                with_our_crds(&name, || {
                    let (ok, answer) = dry_run();
                    if ok {
                        return Err(format!("accepted:\n{answer}"));
                    }
                    if &answer != quoted {
                        return Err(format!(
                            "the server answers\n{answer}\nbut examples/broken/README.md quotes\n{quoted}"
                        ));
                    }
                    Ok(())
                });
                // The answer names the field the `# expect:` line names.
                assert!(quoted.contains(&expect[1]), "{name}: {quoted}");
            }
            "finding" => {
                assert!(
                    !documented.contains_key(&name),
                    "{name} is accepted: quote no refusal"
                );
                with_our_crds(&name, || {
                    let (ok, answer) = dry_run();
                    if !ok {
                        return Err(format!("refused:\n{answer}"));
                    }
                    if !answer
                        .lines()
                        .all(|l| l.ends_with(" serverside-applied (server dry run)"))
                    {
                        return Err(answer);
                    }
                    Ok(())
                });
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
    assert_eq!(
        documented.keys().cloned().collect::<BTreeSet<_>>(),
        refused,
        "examples/broken/README.md quotes an answer for exactly the files the schema refuses"
    );
    for name in in_readme.keys() {
        assert!(
            refused.contains(name),
            "README.md quotes {name}, which is not refused"
        );
    }
    assert!(refused.len() >= 10, "{refused:?}");
    c.kubectl_ok(&["delete", "namespace", &namespace, "--wait=false"]);
    let _ = std::fs::remove_dir_all(dir);
}

// ----------------------------------------------------------------------------------------------
// KPI alert rules and the Prometheus Operator's CRD

/// The `for` pattern of the Prometheus Operator's PrometheusRule CRD installed by
/// `scripts/cluster.sh`.
fn prometheus_operator_for_pattern() -> String {
    let c = cluster::cluster();
    let crd: Value = serde_json::to_value(
        serde_yaml::from_str::<serde_yaml::Value>(
            &std::fs::read_to_string(c.bin.join("monitoring.coreos.com_prometheusrules.yaml"))
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["groups"]["items"]["properties"]["rules"]["items"]["properties"]["for"]["pattern"]
        .as_str()
        .expect("the PrometheusRule CRD has a for pattern")
        .to_string()
}

/// Server-side applies `object` (JSON) with kubectl; the output.
fn kubectl_apply(object: &Value, file: &Path) -> Output {
    std::fs::write(file, serde_json::to_string_pretty(object).unwrap()).unwrap();
    cluster::cluster().kubectl(&["apply", "--server-side", "-f", &file.display().to_string()])
}

#[tokio::test]
async fn kpi_alert_rules_are_accepted_by_the_prometheus_operator_crd() {
    let c = cluster::cluster();
    let namespace = c.namespace("kpi-rules").await;
    let dir = scratch("kpi-rules");

    // Every `for` the rules can carry matches the Prometheus Operator's own pattern.
    let pattern = prometheus_operator_for_pattern();
    let validator =
        jsonschema::validator_for(&json!({"type": "string", "pattern": pattern})).unwrap();
    for interval in [
        "5m", "90m", "1h30m", "7d", "1500ms", "30m1h", "1m1m", "0s", "", "inf",
    ] {
        let value = alert_for(interval);
        assert!(
            validator.is_valid(&json!(value)),
            "for {value:?} (interval {interval:?}) does not match {pattern}"
        );
    }
    assert!(!validator.is_valid(&json!("30m1h")), "the check bites");

    // The example's KPIs, in this test's namespace: one PrometheusRule, applied for real.
    let documents = load_paths(&[cluster::repo_path("examples/retail")]).unwrap();
    let mut kpis: Vec<ExperienceKPI> =
        Inventory::from_documents(&documents, &SchemaValidator::new()).kpis;
    assert!(kpis.len() >= 8, "{}", kpis.len());
    for kpi in &mut kpis {
        kpi.metadata.namespace = Some(namespace.clone());
    }
    // One KPI stored before the CRD refused out-of-order intervals.
    kpis[0].spec.interval = "30m1h".into();
    let labels = BTreeMap::from([("release".to_string(), "prometheus".to_string())]);
    let rules = prometheus_rules(&kpis, &labels, Increase::Anchored);
    assert_eq!(rules.len(), 1);
    let rule = serde_json::to_value(&rules[0]).unwrap();
    let output = kubectl_apply(&rule, &dir.join("rule.json"));
    assert!(output.status.success(), "{}", text(&output));
    let stored: Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "prometheusrule",
        "cx-conductor-kpis",
        "--namespace",
        &namespace,
        "-o",
        "json",
    ]))
    .unwrap();
    // The recorded increments, in the Prometheus 3 form, are accepted too, and the marker of
    // the steps recorded.
    let recorded = stored["spec"]["groups"][1]["rules"].as_array().unwrap();
    assert_eq!(recorded.len(), RECORDED.len() + 1);
    assert_eq!(recorded[RECORDED.len()]["record"], STEPS_RECORDED);
    assert!(
        recorded[0]["expr"]
            .as_str()
            .unwrap()
            .contains("[5m] anchored"),
        "{recorded:?}"
    );
    assert_eq!(stored["spec"]["groups"][1]["interval"], "5m");
    let stored_rules = stored["spec"]["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(stored_rules.len(), 2 * kpis.len());
    let fors: BTreeSet<&str> = stored_rules
        .iter()
        .map(|r| r["for"].as_str().unwrap())
        .collect();
    assert!(fors.contains("5m"), "{fors:?}");
    assert!(!fors.contains("30m1h"), "{fors:?}");

    // The check bites: the interval written verbatim would have been refused, with the field.
    let mut verbatim = rule.clone();
    verbatim["metadata"]["name"] = json!("verbatim-for");
    verbatim["spec"]["groups"][0]["rules"][0]["for"] = json!("30m1h");
    let output = kubectl_apply(&verbatim, &dir.join("verbatim.json"));
    assert!(!output.status.success());
    let answer = text(&output);
    assert!(
        answer.contains("spec.groups[0].rules[0].for: Invalid value: \"30m1h\""),
        "{answer}"
    );

    // And the KPI CRD refuses such intervals up front, naming the field.
    for interval in ["30m1h", "1m1m"] {
        let kpi = json!({
            "apiVersion": "cx.conductor.dev/v1alpha1",
            "kind": "ExperienceKPI",
            "metadata": {"name": "odd-interval", "namespace": namespace},
            "spec": {
                "indicator": {"builtin": "nps"},
                "objective": {"target": 40, "direction": "atLeast"},
                "interval": interval,
            },
        });
        let file = dir.join("kpi.json");
        with_our_crds(interval, || {
            let output = kubectl_apply(&kpi, &file);
            let answer = text(&output);
            let wanted = format!(
                "The ExperienceKPI \"odd-interval\" is invalid: spec.interval: Invalid value: \"{interval}\": spec.interval in body should match"
            );
            if output.status.success() || !answer.contains(&wanted) {
                return Err(format!("{interval}: {answer}"));
            }
            Ok(())
        });
    }
    c.kubectl_ok(&["delete", "namespace", &namespace, "--wait=false"]);
    let _ = std::fs::remove_dir_all(dir);
}
