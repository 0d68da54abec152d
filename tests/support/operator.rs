//! Test support: the operator as a local process of the test, authenticated with a token of the
//! chart's own ServiceAccount, so every request it makes is authorised by the chart's
//! Role/ClusterRole through the real API server's RBAC authorizer.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use cx_conductor::operator::{Metrics, OperatorOptions, Stores, run_controllers};
use kube::Client;
use tokio::sync::watch;

use super::cluster::{Cluster, cluster};

/// A release of the chart installed on the test control plane.
#[derive(Debug, Clone)]
pub struct Release {
    /// Helm release name.
    pub name: String,
    /// Its namespace (the operator's own).
    pub namespace: String,
    /// The operator's ServiceAccount.
    pub service_account: String,
}

/// Installs the chart as release `name` in its own namespace with `--set` values `sets`
/// (`helm upgrade --install`, so a re-run is fine). The operator Deployment's pods are kwok's:
/// they never run; the tests run the operator themselves with the release's ServiceAccount.
pub fn install_chart(name: &str, sets: &[&str]) -> Release {
    let cluster = cluster();
    cluster.install_crds();
    let namespace = format!("{name}-system");
    let mut args = vec![
        "upgrade",
        "--install",
        name,
        "charts/cx-conductor",
        "--namespace",
        namespace.as_str(),
        "--create-namespace",
        "--skip-crds",
    ];
    for set in sets {
        args.push("--set");
        args.push(set);
    }
    cluster.helm_ok(&args);
    Release {
        name: name.to_string(),
        service_account: format!("{name}-cx-conductor"),
        namespace,
    }
}

/// The chart installed with default values, once per test binary.
pub fn default_release() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(|| install_chart(&format!("op{}", std::process::id()), &[]))
}

/// The chart installed with every optional feature on, once per test binary.
pub fn full_release() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(|| {
        install_chart(
            &format!("full{}", std::process::id()),
            &[
                "collectors.serviceMonitors=true",
                "collectors.networkPolicies=true",
                "kpis.prometheusUrl=http://127.0.0.1:9",
                "kpis.prometheusRules=true",
            ],
        )
    })
}

/// A client for the operator: the release's ServiceAccount token, straight to the API server or
/// through `url` (a fault proxy).
pub async fn operator_client(release: &Release, url: Option<&str>) -> Client {
    let cluster: &Cluster = cluster();
    let token = cluster
        .service_account_token(&release.namespace, &release.service_account)
        .await;
    let url = url.unwrap_or(cluster.server.as_str());
    Client::try_from(cluster.config(url, &token)).expect("an operator client")
}

/// The operator's controllers running in this process.
pub struct Operator {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Its metrics (writes, reconciles, errors).
    pub metrics: Arc<Metrics>,
    /// Its caches, once synced.
    pub stores: watch::Receiver<Option<Stores>>,
}

impl Operator {
    /// Starts the controllers with `client` and `options`.
    pub fn start(client: Client, options: OperatorOptions) -> Self {
        let metrics = Arc::new(Metrics::new());
        let (stop, stop_rx) = watch::channel(false);
        let (stores_tx, stores) = watch::channel(None);
        let task = tokio::spawn(run_controllers(
            client,
            options,
            metrics.clone(),
            stores_tx,
            stop_rx,
        ));
        Self {
            stop,
            task,
            metrics,
            stores,
        }
    }

    /// Stops the controllers and waits for them to drain.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }

    /// Writes of `kind` (apply, status, delete, event) by every controller.
    pub fn writes_of(&self, kinds: &[&str]) -> u64 {
        kinds
            .iter()
            .map(|w| {
                ["touchpoint", "channel", "journey", "kpi"]
                    .iter()
                    .map(|c| self.metrics.writes.with_label_values(&[c, w]).get())
                    .sum::<u64>()
            })
            .sum()
    }

    /// Object writes (apply, status, delete).
    pub fn writes(&self) -> u64 {
        self.writes_of(&["apply", "status", "delete"])
    }

    /// Reconciles of `controller` that ended with `outcome` (ok, error).
    pub fn reconciles(&self, controller: &str, outcome: &str) -> u64 {
        self.metrics
            .reconciles
            .with_label_values(&[controller, outcome])
            .get()
    }
}

/// Operator options for one test namespace, with a short resync so tests see several.
pub fn options_for(namespace: &str) -> OperatorOptions {
    OperatorOptions {
        namespaces: vec![namespace.to_string()],
        resync: Duration::from_secs(2),
        ..Default::default()
    }
}
