//! Two `cx-conductor run` processes on the real control plane, each with a token of the chart's
//! ServiceAccount in its kubeconfig: leader election on a real Lease (through the chart's
//! lease-scoped Role), only the leader writes and answers /readyz, and the standby takes over
//! when the leader stops.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/operator.rs"]
mod operator_support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cluster::{apply, cluster, eventually};
use cx_conductor::api::Touchpoint;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use operator_support::{Release, default_release};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A kubeconfig holding a token of the release's ServiceAccount, as a pod would have it.
async fn kubeconfig(release: &Release, identity: &str) -> PathBuf {
    let cluster = cluster();
    let token = cluster
        .service_account_token(&release.namespace, &release.service_account)
        .await;
    cluster.kubeconfig_for(&cluster.server, &token, identity)
}

struct Replica {
    child: Child,
    port: u16,
}

impl Replica {
    async fn start(release: &Release, identity: &str, namespace: &str) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
            .args([
                "run",
                "--namespace",
                namespace,
                "--lease-namespace",
                &release.namespace,
                "--identity",
                identity,
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--resync-seconds",
                "10",
            ])
            .env("KUBECONFIG", kubeconfig(release, identity).await)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the operator starts");
        Self { child, port }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let output = tokio::process::Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", &url])
            .output()
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n')?;
        Some((code.parse().ok()?, body.to_string()))
    }

    async fn ready(&self) -> bool {
        self.get("/readyz")
            .await
            .is_some_and(|(code, _)| code == 200)
    }

    async fn writes(&self) -> f64 {
        let Some((_, text)) = self.get("/metrics").await else {
            return -1.0;
        };
        text.lines()
            .filter(|l| l.starts_with("cx_api_writes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_writes_the_standby_is_unready_and_takes_over() {
    let release = default_release();
    let cluster = cluster();
    let ns = cluster.namespace("leader").await;
    let admin = cluster.admin();
    let create = |object: serde_json::Value| {
        let admin = admin.clone();
        async move { apply(&admin, &object, "test").await.expect("created") }
    };
    create(
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Channel",
        "metadata": {"name": "web", "namespace": ns}, "spec": {"type": "web"}}),
    )
    .await;
    let touchpoint = |name: &str| {
        json!({"apiVersion": "cx.conductor.dev/v1alpha1", "kind": "Touchpoint",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"channel": "web", "stage": "purchase", "signals": {"surveys": [{"metric": "csat"}]}}})
    };
    create(touchpoint("checkout")).await;
    let tps: Api<Touchpoint> = Api::namespaced(admin.clone(), &ns);
    let has_status = |name: &'static str| {
        let tps = tps.clone();
        async move {
            tps.get_opt(name)
                .await
                .unwrap()
                .and_then(|t| t.status)
                .is_some_and(|s| s.collector.is_some())
        }
    };

    let mut a = Replica::start(release, "replica-a", &ns).await;
    assert!(
        eventually(WAIT, || a.ready()).await,
        "the first replica leads"
    );
    assert!(eventually(WAIT, || has_status("checkout")).await);
    let mut b = Replica::start(release, "replica-b", &ns).await;
    // The standby serves /healthz and /metrics but is not ready.
    assert!(
        eventually(WAIT, || async { b.get("/healthz").await.is_some() }).await,
        "the standby is up"
    );
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &release.namespace);
    let holder = || async {
        leases
            .get_opt("cx-conductor-leader")
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    };
    assert_eq!(holder().await.as_deref(), Some("replica-a"));
    assert_eq!(
        b.get("/readyz").await.map(|(code, _)| code),
        Some(503),
        "a standby is not ready"
    );
    create(touchpoint("support")).await;
    assert!(eventually(WAIT, || has_status("support")).await);
    assert!(a.writes().await > 0.0, "the leader writes");
    assert_eq!(b.writes().await, 0.0, "the standby writes nothing");

    // The leader stops (SIGTERM releases the Lease): the standby takes over.
    a.terminate();
    assert!(
        eventually(WAIT, || async {
            holder().await.as_deref() == Some("replica-b")
        })
        .await,
        "the standby holds the Lease"
    );
    assert!(
        eventually(WAIT, || b.ready()).await,
        "the new leader is ready"
    );
    create(touchpoint("returns")).await;
    assert!(
        eventually(WAIT, || has_status("returns")).await,
        "the new leader reconciles"
    );
    b.terminate();
}
