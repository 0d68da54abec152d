//! Test support: the real control plane of `scripts/cluster.sh` (etcd, kube-apiserver with RBAC,
//! kube-controller-manager, kube-scheduler, kwok), started on first use and shared by every test
//! of the run; the real `kubectl` and `helm` built beside it; clients authenticated as the admin
//! or as a ServiceAccount, so the chart's own RBAC is what authorises the operator.
//!
//! Each test works in a namespace of its own ([`Cluster::namespace`]), so tests of one binary run
//! in parallel without seeing each other. A control plane that cannot start fails the test: there
//! is no silent skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use secrecy::SecretString;
use serde_json::{Value, json};

/// The running control plane.
pub struct Cluster {
    /// Admin kubeconfig (static token in `system:masters`).
    pub kubeconfig: PathBuf,
    /// Folder of the binaries built by `scripts/cluster.sh` (kubectl, helm, ...).
    pub bin: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// The cluster CA, PEM.
    pub ca_pem: Vec<u8>,
    /// The admin bearer token.
    pub admin_token: String,
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script(arg: &str) -> Output {
    Command::new("bash")
        .arg(root().join("scripts/cluster.sh"))
        .arg(arg)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/cluster.sh {arg}: {e}"))
}

/// The shared control plane, started (and built, the first time on a machine) when needed.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let started = script("start");
        assert!(
            started.status.success(),
            "the control plane did not start (scripts/cluster.sh start):\n{}",
            String::from_utf8_lossy(&started.stderr)
        );
        let kubeconfig = PathBuf::from(String::from_utf8_lossy(&started.stdout).trim().to_string());
        let bin = PathBuf::from(
            String::from_utf8_lossy(&script("bin").stdout)
                .trim()
                .to_string(),
        );
        let config = Kubeconfig::read_from(&kubeconfig).expect("the admin kubeconfig reads");
        let cluster = &config.clusters[0].cluster.as_ref().expect("a cluster");
        let server = cluster.server.clone().expect("a server URL");
        let ca_path = cluster.certificate_authority.clone().expect("a CA file");
        let ca_pem = std::fs::read(&ca_path).expect("the CA reads");
        let admin_token = std::fs::read_to_string(kubeconfig.with_file_name("admin.token"))
            .expect("the admin token reads")
            .trim()
            .to_string();
        Cluster {
            kubeconfig,
            bin,
            server,
            ca_pem,
            admin_token,
        }
    })
}

fn pem_to_der(pem: &[u8]) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem)
        .map(|c| c.expect("a PEM certificate").to_vec())
        .collect()
}

impl Cluster {
    /// A client config for `url` (the API server, or a fault proxy in front of it) with `token`.
    pub fn config(&self, url: &str, token: &str) -> Config {
        let mut config = Config::new(url.parse().expect("a URL"));
        config.root_cert = Some(pem_to_der(&self.ca_pem));
        config.auth_info = AuthInfo {
            token: Some(SecretString::from(token.to_string())),
            ..Default::default()
        };
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(295));
        config
    }

    /// A client as the cluster admin.
    pub fn admin(&self) -> Client {
        Client::try_from(self.config(&self.server, &self.admin_token)).expect("an admin client")
    }

    /// A client with `token` straight to the API server.
    pub fn client_with_token(&self, token: &str) -> Client {
        Client::try_from(self.config(&self.server, token)).expect("a client")
    }

    /// A fresh namespace named after `prefix`, unique within this run.
    pub async fn namespace(&self, prefix: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let api: Api<Namespace> = Api::all(self.admin());
        let namespace: Namespace = serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"cx-test": "true"}}}),
        )
        .expect("a namespace");
        api.create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        name
    }

    /// A short-lived token of ServiceAccount `namespace/name` (TokenRequest), as a pod gets one.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: None,
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let answer = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("token for {namespace}/{name}: {e}"));
        answer
            .status
            .and_then(|s| s.token)
            .unwrap_or_else(|| panic!("no token for {namespace}/{name}"))
    }

    /// Runs a binary of the control plane (`kubectl`, `helm`) with the admin kubeconfig.
    pub fn tool(&self, tool: &str, args: &[&str]) -> Output {
        Command::new(self.bin.join(tool))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env(
                "HELM_CACHE_HOME",
                self.bin.parent().expect("cache").join("helm-cache"),
            )
            .env(
                "HELM_CONFIG_HOME",
                self.bin.parent().expect("cache").join("helm-config"),
            )
            .env(
                "HELM_DATA_HOME",
                self.bin.parent().expect("cache").join("helm-data"),
            )
            .current_dir(root())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
    }

    /// `kubectl ARGS` as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.tool("kubectl", args)
    }

    /// `helm ARGS` as the admin.
    pub fn helm(&self, args: &[&str]) -> Output {
        self.tool("helm", args)
    }

    /// `kubectl ARGS` that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        ok(self.kubectl(args), &format!("kubectl {}", args.join(" ")))
    }

    /// `helm ARGS` that must succeed; its stdout.
    pub fn helm_ok(&self, args: &[&str]) -> String {
        ok(self.helm(args), &format!("helm {}", args.join(" ")))
    }

    /// Applies the CRDs of `crds/` (server-side) and waits until they are established.
    pub fn apply_crds(&self) {
        self.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", "crds/"]);
        self.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/channels.cx.conductor.dev",
            "crd/touchpoints.cx.conductor.dev",
            "crd/experiencekpis.cx.conductor.dev",
            "crd/customerjourneys.cx.conductor.dev",
        ]);
    }

    /// [`Cluster::apply_crds`] once per test binary.
    pub fn install_crds(&self) {
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| self.apply_crds());
    }

    /// A kubeconfig file for `server` (the API server or a proxy) with a bearer `token`, as a
    /// pod's ServiceAccount would have it; `name` keeps files of one process apart.
    pub fn kubeconfig_for(&self, server: &str, token: &str, name: &str) -> PathBuf {
        let ca = self.kubeconfig.with_file_name("pki").join("ca.crt");
        let path =
            std::env::temp_dir().join(format!("cx-{name}-{}.kubeconfig", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
                ca.display()
            ),
        )
        .expect("kubeconfig written");
        path
    }
}

/// The stdout of a command that must succeed.
pub fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Server-side applies `object` (a whole object as JSON) as `manager`.
pub async fn apply(client: &Client, object: &Value, manager: &str) -> kube::Result<DynamicObject> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(object),
    )
    .await
}

/// Creates (server-side applies, as `test`) `object`, failing the test with its name otherwise.
pub async fn create(admin: &Client, object: Value) {
    apply(admin, &object, "test")
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", object["metadata"]["name"]));
}

/// The object `name` of kind `K` in `ns`, if it exists.
pub async fn get<K>(client: &Client, ns: &str, name: &str) -> Option<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("a read")
}

/// Polls `check` until it answers true or `timeout` passes; whether it did.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A path under the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    root().join(Path::new(relative))
}

/// The folder of the control plane's binaries (`kubectl`, `helm`, ...), built the first time on
/// a machine; starts nothing. For the tools that need no cluster (`helm template`, `helm lint`).
/// Tools that cannot be built fail the test.
pub fn tools() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let built = script("build");
        assert!(
            built.status.success(),
            "the control plane's tools did not build (scripts/cluster.sh build):\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let bin = PathBuf::from(
            String::from_utf8_lossy(&script("bin").stdout)
                .trim()
                .to_string(),
        );
        assert!(bin.join("helm").is_file(), "no helm in {}", bin.display());
        bin
    })
}

/// A command that runs `tool` of [`tools`] from the repository root, with Helm's cache, config
/// and data folders beside the binaries and no kubeconfig (nothing can reach a cluster).
pub fn tool_command(tool: &str) -> Command {
    let bin = tools();
    let cache = bin.parent().expect("the tools' folder has a parent");
    let mut command = Command::new(bin.join(tool));
    command
        .env("KUBECONFIG", cache.join("no-kubeconfig"))
        .env("HELM_CACHE_HOME", cache.join("helm-cache"))
        .env("HELM_CONFIG_HOME", cache.join("helm-config"))
        .env("HELM_DATA_HOME", cache.join("helm-data"))
        .current_dir(root());
    command
}
