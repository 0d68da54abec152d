//! `cx-conductor run`: the operator process.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use std::collections::BTreeMap;

use crate::collector::config::{DEFAULT_QUEUE_EVENTS, Delivery};
use crate::core::plan::{ExportOptions, PlanOptions, PoolOptions, SecretKey};
use crate::kpi::{BearerToken, PrometheusClient, PrometheusConfig};
use crate::operator::KpiOptions;
use crate::operator::http::{HttpState, router};
use crate::operator::{LeaderElection, Metrics, OperatorOptions, run_as_leader, run_controllers};

/// Options of `cx-conductor run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Namespaces to watch (repeatable or comma-separated); none: all namespaces.
    #[arg(long = "namespace", env = "CX_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Image of collectors whose touchpoint names none (default: this version's image).
    #[arg(long, env = "CX_COLLECTOR_IMAGE")]
    pub collector_image: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "CX_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Deploy a ServiceMonitor per collector (needs the Prometheus Operator's CRDs).
    #[arg(long, env = "CX_SERVICE_MONITORS")]
    pub service_monitors: bool,
    /// Deploy a NetworkPolicy per collector admitting only event and scrape traffic.
    #[arg(long, env = "CX_NETWORK_POLICIES")]
    pub network_policies: bool,
    /// Elect a leader with a coordination.k8s.io Lease so several replicas can run safely.
    #[arg(long, env = "CX_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "CX_LEASE_NAME", default_value = "cx-conductor-leader")]
    pub lease_name: String,
    /// Identity of this replica in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds between full resyncs of every object (a safety net behind watches).
    #[arg(long, env = "CX_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,
    /// Prometheus HTTP API to evaluate ExperienceKPIs against (e.g. http://prometheus-operated.monitoring:9090); none: KPIs are not evaluated.
    #[arg(long, env = "CX_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// File holding a bearer token for Prometheus (re-read at every query, so rotation works).
    #[arg(long, env = "CX_PROMETHEUS_TOKEN_FILE")]
    pub prometheus_token_file: Option<std::path::PathBuf>,
    /// PEM file of CA certificates to trust for Prometheus, in addition to the system's.
    #[arg(long, env = "CX_PROMETHEUS_CA_FILE")]
    pub prometheus_ca_file: Option<std::path::PathBuf>,
    /// Longest time one Prometheus query may take, connection included (also sent to Prometheus
    /// as its `timeout`); a KPI whose query runs out of time is Unknown with reason
    /// PrometheusTimeout, never stale data.
    #[arg(long, env = "CX_PROMETHEUS_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub prometheus_timeout_seconds: u64,
    /// Apply one PrometheusRule per namespace with breach and at-risk alerts for every KPI
    /// (needs the Prometheus Operator's CRDs).
    #[arg(long, env = "CX_PROMETHEUS_RULES")]
    pub prometheus_rules: bool,
    /// Labels of those PrometheusRules, KEY=VALUE (repeatable or comma-separated), e.g. release=prometheus.
    #[arg(
        long = "prometheus-rule-label",
        env = "CX_PROMETHEUS_RULE_LABELS",
        value_delimiter = ','
    )]
    pub prometheus_rule_labels: Vec<String>,
    /// Images a dedicated collector may name besides the collector image: exact references or
    /// prefixes ending in `*` (repeatable or comma-separated). None: only the collector image.
    #[arg(
        long = "allowed-collector-image",
        env = "CX_ALLOWED_COLLECTOR_IMAGES",
        value_delimiter = ','
    )]
    pub allowed_collector_images: Vec<String>,
    /// Labels of collector ServiceMonitors, KEY=VALUE (repeatable or comma-separated), e.g.
    /// release=kube-prometheus-stack, so the platform's Prometheus selects them.
    #[arg(
        long = "collector-service-monitor-label",
        env = "CX_COLLECTOR_SERVICE_MONITOR_LABELS",
        value_delimiter = ','
    )]
    pub collector_service_monitor_labels: Vec<String>,
    /// Seconds between Prometheus scrapes of collectors (the ServiceMonitor interval).
    #[arg(long, env = "CX_SCRAPE_INTERVAL_SECONDS", default_value_t = 30)]
    pub scrape_interval_seconds: u32,
    /// Fewest pods of each namespace's collector pool.
    #[arg(long, env = "CX_POOL_MIN_REPLICAS", default_value_t = 1)]
    pub pool_min_replicas: i32,
    /// Most pods of each namespace's collector pool.
    #[arg(long, env = "CX_POOL_MAX_REPLICAS", default_value_t = 10)]
    pub pool_max_replicas: i32,
    /// Average CPU use (percent of the request) the pool's autoscaler keeps pods at.
    #[arg(long, env = "CX_POOL_TARGET_CPU_PERCENT", default_value_t = 70)]
    pub pool_target_cpu_percent: i32,
    /// CPU request of a pool pod.
    #[arg(long, env = "CX_POOL_CPU_REQUEST", default_value = "100m")]
    pub pool_cpu_request: String,
    /// Memory request of a pool pod.
    #[arg(long, env = "CX_POOL_MEMORY_REQUEST", default_value = "64Mi")]
    pub pool_memory_request: String,
    /// Memory limit of a pool pod.
    #[arg(long, env = "CX_POOL_MEMORY_LIMIT", default_value = "256Mi")]
    pub pool_memory_limit: String,
    /// Base URL of the OTLP/HTTP endpoint every collector exports its events to as log records
    /// (`<url>/v1/logs`), e.g. http://otel-collector.observability:4318; none: no export.
    #[arg(long, env = "CX_EXPORT_ENDPOINT")]
    pub export_endpoint: Option<String>,
    /// Longest wait, in milliseconds, for the endpoint to accept one export request; longer, the
    /// producers are answered 503 with Retry-After.
    #[arg(long, env = "CX_EXPORT_TIMEOUT_MILLIS", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub export_timeout_millis: u32,
    /// Secret holding a bearer token for the export endpoint, NAME/KEY; it must exist in every
    /// namespace with collectors.
    #[arg(long, env = "CX_EXPORT_TOKEN_SECRET")]
    pub export_token_secret: Option<String>,
    /// Secret holding the key that pseudonymises customerId and sessionId (HMAC-SHA256), NAME/KEY,
    /// at least 16 bytes; it must exist in every namespace with collectors.
    #[arg(long, env = "CX_EXPORT_PSEUDONYM_KEY_SECRET")]
    pub export_pseudonym_key_secret: Option<String>,
    /// What a collector's 2xx promises: guaranteed (only after the endpoint accepted the event;
    /// 503 with Retry-After otherwise) or bestEffort (at once; the event waits in a bounded
    /// in-memory queue, retried, and is dropped and counted when the queue is full).
    #[arg(long, env = "CX_EXPORT_DELIVERY", default_value = "guaranteed",
          value_parser = ["guaranteed", "bestEffort"])]
    pub export_delivery: String,
    /// Capacity of each collector's bestEffort export queue, in events.
    #[arg(long, env = "CX_EXPORT_QUEUE_EVENTS", default_value_t = DEFAULT_QUEUE_EVENTS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub export_queue_events: u32,
    /// Secret holding the PEM CA bundle that verifies an https export endpoint (instead of the
    /// system's roots), NAME/KEY; it must exist in every namespace with collectors.
    #[arg(long, env = "CX_EXPORT_CA_SECRET")]
    pub export_ca_secret: Option<String>,
    /// kubernetes.io/tls Secret whose tls.crt and tls.key the collectors present to an https
    /// export endpoint that asks for a client certificate; in every namespace with collectors.
    #[arg(long, env = "CX_EXPORT_CLIENT_CERT_SECRET")]
    pub export_client_cert_secret: Option<String>,
    /// Secret whose keys are header names and values header values, sent with every export
    /// request (e.g. a tenant id); in every namespace with collectors.
    #[arg(long, env = "CX_EXPORT_HEADERS_SECRET")]
    pub export_headers_secret: Option<String>,
    /// How long the first event of an export group waits for others, in milliseconds.
    #[arg(long, env = "CX_EXPORT_LINGER_MILLIS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub export_linger_millis: u32,
    /// Most log records in one export request.
    #[arg(long, env = "CX_EXPORT_MAX_BATCH_EVENTS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub export_max_batch_events: u32,
    /// Log as JSON lines.
    #[arg(long, env = "CX_LOG_JSON")]
    pub log_json: bool,
}

/// A `NAME/KEY` Secret reference of a flag.
fn parse_secret_key(flag: &str, value: &str) -> Result<SecretKey, String> {
    match value.split_once('/') {
        Some((name, key)) if !name.trim().is_empty() && !key.trim().is_empty() => Ok(SecretKey {
            name: name.trim().to_string(),
            key: key.trim().to_string(),
        }),
        _ => Err(format!(
            "--{flag} {value:?}: expected NAME/KEY, the Secret and the key in it"
        )),
    }
}

/// The export settings of the flags.
fn export_options(args: &RunArgs) -> Result<Option<ExportOptions>, String> {
    let Some(endpoint) = args.export_endpoint.as_deref().filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    crate::collector::export::logs_url(endpoint)
        .map_err(|error| format!("--export-endpoint: {}", error.0))?;
    let name = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let ca_secret = name(&args.export_ca_secret)
        .map(|s| parse_secret_key("export-ca-secret", &s))
        .transpose()?;
    let client_cert_secret = name(&args.export_client_cert_secret);
    if !endpoint.starts_with("https://") {
        for (flag, set) in [
            ("export-ca-secret", ca_secret.is_some()),
            ("export-client-cert-secret", client_cert_secret.is_some()),
        ] {
            if set {
                return Err(format!(
                    "--{flag} needs an https:// --export-endpoint (TLS settings for a clear-text \
                     endpoint)"
                ));
            }
        }
    }
    Ok(Some(ExportOptions {
        endpoint: endpoint.to_string(),
        timeout_millis: args.export_timeout_millis,
        token_secret: args
            .export_token_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_secret_key("export-token-secret", s))
            .transpose()?,
        pseudonym_key_secret: args
            .export_pseudonym_key_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_secret_key("export-pseudonym-key-secret", s))
            .transpose()?,
        delivery: if args.export_delivery == "bestEffort" {
            Delivery::BestEffort
        } else {
            Delivery::Guaranteed
        },
        queue_events: args.export_queue_events,
        linger_millis: args.export_linger_millis,
        max_batch_events: args.export_max_batch_events,
        ca_secret,
        client_cert_secret,
        headers_secret: name(&args.export_headers_secret),
    }))
}

/// `KEY=VALUE` pairs of a repeatable flag.
fn parse_labels(flag: &str, pairs: &[String]) -> Result<BTreeMap<String, String>, String> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("--{flag} {pair:?}: expected KEY=VALUE"))
        })
        .collect()
}

/// How collectors are planned, from the flags.
fn plan_options(args: &RunArgs) -> Result<PlanOptions, String> {
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let defaults = PlanOptions::default();
    Ok(PlanOptions {
        default_image: args
            .collector_image
            .clone()
            .unwrap_or(defaults.default_image),
        allowed_images: args.allowed_collector_images.clone(),
        service_monitor: args.service_monitors,
        service_monitor_labels: parse_labels(
            "collector-service-monitor-label",
            &args.collector_service_monitor_labels,
        )?,
        scrape_interval_seconds: args.scrape_interval_seconds.max(1),
        network_policy: args.network_policies,
        pool: PoolOptions {
            min_replicas: args.pool_min_replicas.max(1),
            max_replicas: args.pool_max_replicas.max(args.pool_min_replicas.max(1)),
            target_cpu_percent: args.pool_target_cpu_percent.clamp(1, 100),
            resources: ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity(args.pool_cpu_request.clone())),
                    (
                        "memory".to_string(),
                        Quantity(args.pool_memory_request.clone()),
                    ),
                ])),
                limits: Some(BTreeMap::from([(
                    "memory".to_string(),
                    Quantity(args.pool_memory_limit.clone()),
                )])),
                ..Default::default()
            },
        },
        export: export_options(args)?,
    })
}

/// Runs the operator until SIGTERM/SIGINT.
pub fn run(args: &RunArgs) -> ExitCode {
    init_logging(args.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn serve(args: &RunArgs) -> Result<(), String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let options = OperatorOptions {
        plan: plan_options(args)?,
        namespaces: args.namespaces.clone(),
        resync: Duration::from_secs(args.resync_seconds.max(10)),
        kpi: kpi_options(args)?,
    };
    let metrics = Arc::new(Metrics::new());
    let (stores_tx, stores_rx) = watch::channel(None);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.metrics_addr))?;
    let app = router(HttpState {
        metrics: metrics.clone(),
        stores: stores_rx,
    });
    let mut http_stop = shutdown_rx.clone();
    let http = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await;
    });
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    });

    let result = if args.leader_election {
        let identity = args
            .identity
            .clone()
            .unwrap_or_else(|| format!("cx-conductor-{}", std::process::id()));
        let election = LeaderElection {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity,
            duration_seconds: 15,
        };
        run_as_leader(client, options, metrics, election, stores_tx, shutdown_rx).await
    } else {
        run_controllers(client, options, metrics, stores_tx, shutdown_rx).await;
        Ok(())
    };
    let _ = http.await;
    result
}

/// KPI evaluation settings from the flags; a bad Prometheus URL or CA file stops the start-up.
fn kpi_options(args: &RunArgs) -> Result<Option<KpiOptions>, String> {
    let Some(url) = &args.prometheus_url else {
        return Ok(None);
    };
    let mut config = PrometheusConfig::new(url.clone());
    config.bearer_token = args.prometheus_token_file.clone().map(BearerToken::File);
    config.ca_file = args.prometheus_ca_file.clone();
    config.timeout = std::time::Duration::from_secs(args.prometheus_timeout_seconds);
    let client = PrometheusClient::new(config).map_err(|e| e.to_string())?;
    let labels = parse_labels("prometheus-rule-label", &args.prometheus_rule_labels)?;
    Ok(Some(KpiOptions {
        prometheus: Arc::new(client),
        prometheus_rules: args.prometheus_rules.then_some(labels),
    }))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn client_of(args: &[&str]) -> String {
        let cli = Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .expect("flags parse");
        let options = kpi_options(&cli.run)
            .expect("options")
            .expect("KPI options");
        format!("{:?}", options.prometheus)
    }

    #[test]
    fn the_query_timeout_is_a_setting_with_a_bounded_range() {
        let url = "--prometheus-url=http://prometheus:9090";
        assert!(client_of(&[url]).contains("timeout: 30s"), "the default");
        assert!(
            client_of(&[url, "--prometheus-timeout-seconds", "7"]).contains("timeout: 7s"),
            "the flag"
        );
        for out_of_range in ["0", "601"] {
            assert!(
                Cli::try_parse_from(["run", url, "--prometheus-timeout-seconds", out_of_range])
                    .is_err(),
                "{out_of_range} is refused"
            );
        }
    }

    fn export_of(args: &[&str]) -> Result<Option<ExportOptions>, String> {
        let cli = Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .expect("flags parse");
        plan_options(&cli.run).map(|options| options.export)
    }

    #[test]
    fn export_flags_name_the_endpoint_and_the_secrets() {
        assert_eq!(export_of(&[]), Ok(None));
        assert_eq!(
            export_of(&[
                "--export-endpoint=http://otel.observability:4318",
                "--export-timeout-millis=2500",
                "--export-token-secret=otel-ingest/token",
                "--export-pseudonym-key-secret=cx-pseudonyms/key",
            ]),
            Ok(Some(ExportOptions {
                endpoint: "http://otel.observability:4318".into(),
                timeout_millis: 2500,
                token_secret: Some(SecretKey {
                    name: "otel-ingest".into(),
                    key: "token".into()
                }),
                pseudonym_key_secret: Some(SecretKey {
                    name: "cx-pseudonyms".into(),
                    key: "key".into()
                }),
                ..ExportOptions::default()
            }))
        );
        assert_eq!(
            export_of(&[
                "--export-endpoint=http://otel.observability:4318",
                "--export-delivery=bestEffort",
                "--export-queue-events=2000",
                "--export-linger-millis=5",
                "--export-max-batch-events=1000",
            ]),
            Ok(Some(ExportOptions {
                endpoint: "http://otel.observability:4318".into(),
                delivery: Delivery::BestEffort,
                queue_events: 2000,
                linger_millis: 5,
                max_batch_events: 1000,
                ..ExportOptions::default()
            }))
        );
        assert_eq!(
            export_of(&[
                "--export-endpoint=https://otel.observability:4318",
                "--export-ca-secret=otel-ca/ca.crt",
                "--export-client-cert-secret=otel-client",
                "--export-headers-secret=otel-headers",
            ]),
            Ok(Some(ExportOptions {
                endpoint: "https://otel.observability:4318".into(),
                ca_secret: Some(SecretKey {
                    name: "otel-ca".into(),
                    key: "ca.crt".into()
                }),
                client_cert_secret: Some("otel-client".into()),
                headers_secret: Some("otel-headers".into()),
                ..ExportOptions::default()
            }))
        );
        let error = export_of(&[
            "--export-endpoint=http://otel:4318",
            "--export-client-cert-secret=otel-client",
        ])
        .unwrap_err();
        assert!(
            error.contains("--export-client-cert-secret") && error.contains("https://"),
            "{error}"
        );
        assert!(Cli::try_parse_from(["run", "--export-delivery=fast"]).is_err());
        assert!(Cli::try_parse_from(["run", "--export-queue-events=0"]).is_err());
        let error = export_of(&["--export-endpoint=otel:4318"]).unwrap_err();
        assert!(error.contains("--export-endpoint"), "{error}");
        let error = export_of(&[
            "--export-endpoint=http://otel:4318",
            "--export-token-secret=otel-ingest",
        ])
        .unwrap_err();
        assert!(
            error.contains("--export-token-secret") && error.contains("NAME/KEY"),
            "{error}"
        );
        assert!(Cli::try_parse_from(["run", "--export-timeout-millis=0"]).is_err());
    }
}
