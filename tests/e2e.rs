//! The example organisation end to end on the real control plane: `kubectl apply --server-side`
//! of `examples/retail/`, the operator (with the chart's ServiceAccount) deploys every collector,
//! kwok makes the pods Ready, the journey is assessed; then what a user sees with `kubectl get`
//! and `kubectl explain` is exactly what the README's "What a user sees" shows.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/operator.rs"]
mod operator_support;

use std::time::Duration;

use cluster::{cluster, eventually, repo_path};
use cx_conductor::api::{Channel, CustomerJourney, ExperienceKPI, Touchpoint};
use kube::api::Api;
use operator_support::{Operator, default_release, operator_client};

const NAMESPACE: &str = "retail";
const WAIT: Duration = Duration::from_secs(120);

fn is_ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// `$ kubectl ...` commands of the README's "What a user sees" block, each with the output shown.
fn readme_commands() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README");
    let section = readme
        .split("### What a user sees")
        .nth(1)
        .expect("a What a user sees section");
    let block = section
        .split("```")
        .nth(1)
        .expect("a code block in What a user sees");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines().skip(1) {
        if let Some(command) = line.strip_prefix("$ ") {
            out.push((command.to_string(), String::new()));
        } else if let Some((_, output)) = out.last_mut() {
            output.push_str(line);
            output.push('\n');
        }
    }
    out
}

/// The AGE column changes with time; everything else must match.
fn without_ages(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_end();
            match trimmed.rsplit_once(char::is_whitespace) {
                Some((rest, last))
                    if !last.is_empty()
                        && last
                            .trim_end_matches(['s', 'm', 'h', 'd'])
                            .chars()
                            .all(|c| c.is_ascii_digit() || c == 'm' || c == 's' || c == 'h')
                        && last.chars().next().is_some_and(|c| c.is_ascii_digit()) =>
                {
                    format!("{} <age>", rest.trim_end())
                }
                _ => trimmed.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retail_example_on_a_real_cluster_is_what_the_readme_shows() {
    let cluster = cluster();
    let release = default_release();
    cluster.kubectl_ok(&["apply", "--server-side", "-f", "examples/retail/"]);
    let operator = Operator::start(
        operator_client(release, None).await,
        operator_support::options_for(NAMESPACE),
    );
    let admin = cluster.admin();
    let touchpoints: Api<Touchpoint> = Api::namespaced(admin.clone(), NAMESPACE);
    assert!(
        eventually(WAIT, || async {
            let list = touchpoints.list(&Default::default()).await.unwrap().items;
            list.len() == 15
                && list
                    .iter()
                    .all(|t| t.status.as_ref().is_some_and(|s| is_ready(&s.conditions)))
        })
        .await,
        "every collector Ready"
    );
    let channels: Api<Channel> = Api::namespaced(admin.clone(), NAMESPACE);
    let journeys: Api<CustomerJourney> = Api::namespaced(admin.clone(), NAMESPACE);
    assert!(
        eventually(WAIT, || async {
            let web_ready = channels
                .get("web")
                .await
                .ok()
                .and_then(|c| c.status)
                .is_some_and(|s| s.touchpoints >= 4 && s.ready_touchpoints == s.touchpoints);
            let assessed = journeys
                .get("retail")
                .await
                .ok()
                .and_then(|j| j.status)
                .is_some_and(|s| {
                    s.violation_count == 0 && s.channels == 6 && s.readiness.is_some()
                });
            web_ready && assessed
        })
        .await,
        "channels and the journey assessed"
    );
    // Without a Prometheus, every KPI says why it is not evaluated.
    let kpis: Api<ExperienceKPI> = Api::namespaced(admin.clone(), NAMESPACE);
    assert!(
        eventually(WAIT, || async {
            let list = kpis.list(&Default::default()).await.unwrap().items;
            list.len() == 15
                && list.iter().all(|k| {
                    k.status.as_ref().is_some_and(|s| {
                        s.conditions
                            .iter()
                            .any(|c| c.reason == "PrometheusNotConfigured")
                    })
                })
        })
        .await,
        "every KPI says why it is not evaluated"
    );
    // Let the last status writes settle before reading what a user sees.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let commands = readme_commands();
    assert!(commands.len() >= 3, "the README shows kubectl commands");
    for (command, shown) in commands {
        let args: Vec<&str> = command
            .strip_prefix("kubectl ")
            .expect("kubectl commands")
            .split_whitespace()
            .collect();
        let actual = cluster.kubectl_ok(&args);
        assert_eq!(
            without_ages(&actual),
            without_ages(&shown),
            "README output of `{command}` differs from the real one:\n{actual}"
        );
    }
    operator.stop().await;
}
