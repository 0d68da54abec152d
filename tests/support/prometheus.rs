//! Test support: a real Prometheus (the Debian package's `/usr/bin/prometheus`) on loopback,
//! scraping real collectors started in-process. Shared by `tests/kpi_prometheus.rs` and
//! `benches/kpi_cycle.rs` (`#[path]`-included, so not every item is used by both).
//!
//! # One scrape target for all collectors
//!
//! Prometheus scrapes a fan-in endpoint ([`FanIn`]) that fetches every collector's `/metrics` on
//! each scrape and serves them as one exposition. Every series then shares one scrape timestamp,
//! which makes `increase()` exact in a test that lives for seconds rather than days:
//! - at the start, every series is first scraped at zero (the collectors register all of them up
//!   front, and the tests post events only once Prometheus has that first sample), so
//!   `increase()` does not extrapolate before the first sample;
//! - at the end, evaluating at the timestamp of the last scrape ([`Prometheus::last_scrape`])
//!   leaves nothing to extrapolate after the last sample.
//!
//! With one target per collector, each would be scraped at its own offset within the interval,
//! and a KPI over two touchpoints would mix series extrapolated by different factors (up to one
//! scrape interval over the seconds of data a test has: tens of percent). In production the same
//! error is one scrape interval over days, which is why the operator's queries use `increase()`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use cx_conductor::collector::config::CollectorConfig;
use cx_conductor::collector::{Collector, ServeOptions};
use cx_conductor::kpi::{PrometheusClient, PrometheusConfig};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The Prometheus binary: `CX_PROMETHEUS` when set (`scripts/test.sh` runs the Prometheus tests
/// a second time with the Prometheus 3 server it builds), else Debian's 2.x on the `PATH`; or
/// `None` (after a loud message) when it is not installed and `CI` is not set. Under `CI` a
/// missing Prometheus is a failure: `scripts/test.sh` installs it.
pub fn prometheus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CX_PROMETHEUS").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CX_PROMETHEUS={} is not a file (scripts/prometheus.sh build makes it)",
            path.display()
        );
        return Some(path);
    }
    installed("prometheus")
}

/// `promtool`: `CX_PROMTOOL` when set (Prometheus 3's, built beside its server), else the Debian
/// package's, with the same rules as [`prometheus_binary`].
pub fn promtool_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CX_PROMTOOL").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CX_PROMTOOL={} is not a file (scripts/prometheus.sh build makes it)",
            path.display()
        );
        return Some(path);
    }
    installed("promtool")
}

fn installed(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        if ci {
            panic!(
                "`{name}` is not installed and CI is set: these tests need it (scripts/test.sh installs the Debian package `prometheus`)"
            );
        }
        eprintln!(
            "\n{bar}\n!!! SKIPPED: `{name}` is not installed, the KPI tests against a real Prometheus did not run.\n!!! Install it with `apt-get install -y prometheus` (scripts/test.sh does), or set CI=true to make this a failure.\n{bar}\n",
            bar = "!".repeat(100)
        );
    }
    found
}

/// A free loopback port (bound, then released for the child process to take).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server certificate for Prometheus' HTTPS, and the CA that signed it (PEM).
pub struct Tls {
    /// The CA certificate clients must trust.
    pub ca: &'static str,
    /// The server certificate (for 127.0.0.1).
    pub certificate: &'static str,
    /// Its private key.
    pub key: &'static str,
}

/// A Prometheus process with its own configuration and storage in a temporary directory.
pub struct Prometheus {
    binary: PathBuf,
    dir: PathBuf,
    https: bool,
    retention: &'static str,
    extra_args: Vec<String>,
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its base URL.
    pub url: String,
    /// A client for the tests' own polling.
    pub client: PrometheusClient,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (host:port) every `scrape_interval`, and waits until
    /// it is ready.
    pub async fn start(binary: PathBuf, targets: &[SocketAddr], scrape_interval: &str) -> Self {
        Prometheus::start_with(binary, targets, scrape_interval, None).await
    }

    /// [`Prometheus::start`], serving HTTPS with `tls` when given (its `client` trusts the CA).
    pub async fn start_with(
        binary: PathBuf,
        targets: &[SocketAddr],
        scrape_interval: &str,
        tls: Option<&Tls>,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cx-kpi-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("create the Prometheus directory");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: {scrape_interval}\n  scrape_timeout: {scrape_interval}\n  evaluation_interval: {scrape_interval}\nscrape_configs:\n  - job_name: cx-collectors\n    honor_labels: true\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let port = free_port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let mut config = PrometheusConfig::new(url.clone());
        config.timeout = Duration::from_secs(10);
        if let Some(tls) = tls {
            for (file, pem) in [
                ("ca.pem", tls.ca),
                ("server.pem", tls.certificate),
                ("server.key", tls.key),
            ] {
                std::fs::write(dir.join(file), pem).expect("write a TLS file");
            }
            std::fs::write(
                dir.join("web.yml"),
                "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n",
            )
            .expect("write web.yml");
            config.ca_file = Some(dir.join("ca.pem"));
        }
        let client = PrometheusClient::new(config).expect("client");
        let mut prometheus = Prometheus {
            binary,
            https: tls.is_some(),
            retention: "1d",
            extra_args: Vec::new(),
            dir,
            child: None,
            port,
            url,
            client,
        };
        prometheus.spawn().await;
        prometheus
    }

    /// Starts Prometheus, scraping nothing, on storage `fill` writes first (its argument is the
    /// storage directory: backfilled blocks go there), with a retention long enough for them.
    pub async fn start_on_history(binary: PathBuf, fill: impl FnOnce(&Path)) -> Self {
        Prometheus::start_on_history_with(binary, &[], fill).await
    }

    /// [`Prometheus::start_on_history`] with extra command-line flags.
    pub async fn start_on_history_with(
        binary: PathBuf,
        args: &[&str],
        fill: impl FnOnce(&Path),
    ) -> Self {
        let mut prometheus = Prometheus::unstarted(binary);
        fill(&prometheus.dir.join("data"));
        prometheus.retention = "3650d";
        prometheus.extra_args = args.iter().map(|a| (*a).to_owned()).collect();
        prometheus.spawn().await;
        prometheus
    }

    fn unstarted(binary: PathBuf) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cx-kpi-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("create the Prometheus directory");
        std::fs::write(
            dir.join("prometheus.yml"),
            "global:\n  evaluation_interval: 1m\n",
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut config = PrometheusConfig::new(url.clone());
        config.timeout = Duration::from_secs(30);
        Prometheus {
            binary,
            dir,
            https: false,
            retention: "1d",
            extra_args: Vec::new(),
            child: None,
            port,
            url,
            client: PrometheusClient::new(config).expect("client"),
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its storage directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("prometheus.log")).expect("log file");
        let mut command = Command::new(&self.binary);
        if self.https {
            command.arg(format!(
                "--web.config.file={}",
                self.dir.join("web.yml").display()
            ));
        }
        let child = command
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg(format!("--storage.tsdb.retention.time={}", self.retention))
            .args(&self.extra_args)
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            // Answers once the storage is open (503 before), over HTTP or HTTPS.
            if self
                .client
                .query("vector(1)", Timestamp::now())
                .await
                .is_ok()
            {
                break;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("prometheus exited with {status}: {}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "prometheus not ready after 60 s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Prometheus' log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Stops Prometheus (SIGTERM to the process started here, then a wait for its exit).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Prometheus again on the same port with the same storage.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Starts Prometheus again with the blocks of `dirs` (backfilled by promtool) added to its
    /// storage while it is stopped, so that no compaction or reload of the running server sees
    /// them arrive.
    pub async fn restart_adding(&mut self, dirs: &[PathBuf]) {
        self.stop();
        for dir in dirs {
            for block in std::fs::read_dir(dir).expect("a folder of blocks") {
                let block = block.expect("a block").path();
                let name = block.file_name().expect("a name").to_owned();
                std::fs::rename(&block, self.data_dir().join(name)).expect("block moved in");
            }
        }
        self.spawn().await;
    }

    /// A number from Prometheus at `time` (now when `None`), or `None` when the query has no
    /// answer (yet).
    pub async fn number(&self, query: &str, time: Option<Timestamp>) -> Option<f64> {
        self.client
            .query_number(query, time.unwrap_or_else(Timestamp::now))
            .await
            .ok()
            .flatten()
    }

    /// Waits until `query` equals `expected`.
    pub async fn wait_for_value(&self, query: &str, expected: f64, timeout: Duration) {
        wait_until(&format!("{query} == {expected}"), timeout, || async {
            self.number(query, None)
                .await
                .filter(|v| *v == expected)
                .map(|_| ())
        })
        .await;
    }

    /// The timestamp of the latest scrape: evaluating at it makes `increase()` exact (see the
    /// module documentation).
    pub async fn last_scrape(&self) -> Timestamp {
        let seconds = self
            .number("max(timestamp(cx_events_received_total))", None)
            .await
            .expect("a scraped series");
        Timestamp::from_millisecond((seconds * 1000.0).round() as i64).expect("timestamp")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A collector serving on loopback until dropped.
pub struct RunningCollector {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl RunningCollector {
    /// Starts a collector for `config` on a free loopback port.
    pub async fn start(config: &CollectorConfig) -> RunningCollector {
        RunningCollector::start_at(config, "127.0.0.1:0".parse().expect("address")).await
    }

    /// Starts a collector for `config` on `addr` (a restarted collector keeps its address, so
    /// Prometheus sees its counters reset rather than a new target).
    pub async fn start_at(config: &CollectorConfig, addr: SocketAddr) -> RunningCollector {
        let collector = Collector::new(config, ServeOptions::default()).expect("collector");
        // A stopped collector on the same address may still be closing its connections.
        let deadline = Instant::now() + Duration::from_secs(30);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("bind {addr}: {error}"),
            }
        };
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(collector.serve(listener, async {
            let _ = stopped.await;
        }));
        RunningCollector {
            addr,
            stop: Some(stop),
        }
    }

    /// Posts NDJSON events; panics unless every one is accepted.
    pub async fn post(&self, events: &[String]) {
        for chunk in events.chunks(1000) {
            let (status, answer) = self.post_report(chunk).await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["rejected"], 0, "{answer}");
            assert_eq!(answer["accepted"], chunk.len(), "{answer}");
        }
    }

    /// Posts one NDJSON batch and returns the HTTP status and the collector's report
    /// (`accepted`, `rejected`, `errors`).
    pub async fn post_report(&self, events: &[String]) -> (u16, serde_json::Value) {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}/v1/events:batch", self.addr))
            .header("content-type", "application/x-ndjson")
            .body(Full::new(Bytes::from(events.join("\n"))))
            .expect("request");
        let response = client().request(request).await.expect("collector answers");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
        (status.as_u16(), answer)
    }
}

impl Drop for RunningCollector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A collector's `/metrics` exposition.
pub async fn exposition(addr: SocketAddr) -> String {
    let (status, body) = http_get(&format!("http://{addr}/metrics"))
        .await
        .expect("the collector answers /metrics");
    assert_eq!(status, 200);
    String::from_utf8_lossy(&body).into_owned()
}

/// POSTs a form to `url` and returns the answer's body.
pub async fn post_form(url: &str, form: String) -> String {
    let request = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .expect("request");
    let response = client().request(request).await.expect("an answer");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

async fn http_get(url: &str) -> Option<(u16, Bytes)> {
    let request = Request::builder()
        .uri(url)
        .body(Full::new(Bytes::new()))
        .ok()?;
    let response = client().request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, body))
}

/// One `/metrics` endpoint serving the expositions of several collectors, fetched at each scrape
/// and merged family by family (one `# HELP`/`# TYPE` header each, as the text format wants).
pub struct FanIn {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl FanIn {
    /// Serves the merged `/metrics` of `collectors` on a free loopback port.
    pub async fn start(collectors: Vec<SocketAddr>) -> FanIn {
        let router = Router::new()
            .route("/metrics", get(fan_in))
            .with_state(Arc::new(collectors));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        FanIn {
            addr,
            stop: Some(stop),
        }
    }
}

impl Drop for FanIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn fan_in(State(collectors): State<Arc<Vec<SocketAddr>>>) -> (http::StatusCode, String) {
    let mut texts = Vec::new();
    for addr in collectors.iter() {
        match http_get(&format!("http://{addr}/metrics")).await {
            Some((200, body)) => texts.push(String::from_utf8_lossy(&body).into_owned()),
            _ => {
                return (
                    http::StatusCode::BAD_GATEWAY,
                    format!("collector {addr} did not answer"),
                );
            }
        }
    }
    (http::StatusCode::OK, merge_expositions(&texts))
}

/// Merges Prometheus text expositions: samples of a family from every input under one header.
pub fn merge_expositions(texts: &[String]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: std::collections::HashMap<String, (Vec<String>, Vec<String>)> =
        std::collections::HashMap::new();
    for text in texts {
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                current = rest.split(' ').next().unwrap_or_default().to_owned();
                let entry = families.entry(current.clone()).or_insert_with(|| {
                    order.push(current.clone());
                    (Vec::new(), Vec::new())
                });
                if entry.0.is_empty() {
                    entry.0.push(line.to_owned());
                }
            } else if line.starts_with("# TYPE ") {
                let entry = families.entry(current.clone()).or_default();
                if entry.0.len() == 1 {
                    entry.0.push(line.to_owned());
                }
            } else if !line.trim().is_empty() {
                families
                    .entry(current.clone())
                    .or_default()
                    .1
                    .push(line.to_owned());
            }
        }
    }
    let mut out = String::new();
    for name in order {
        if let Some((header, samples)) = families.get(&name) {
            for line in header.iter().chain(samples) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The path of a file of the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}
