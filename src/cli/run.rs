//! `cx-conductor run`: the operator process.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use std::collections::BTreeMap;

use crate::core::plan::PlanOptions;
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
    /// Log as JSON lines.
    #[arg(long, env = "CX_LOG_JSON")]
    pub log_json: bool,
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
        plan: PlanOptions {
            default_image: args
                .collector_image
                .clone()
                .unwrap_or_else(|| PlanOptions::default().default_image),
            service_monitor: args.service_monitors,
            network_policy: args.network_policies,
        },
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
    let client = PrometheusClient::new(config).map_err(|e| e.to_string())?;
    let labels = args
        .prometheus_rule_labels
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("--prometheus-rule-label {pair:?}: expected KEY=VALUE"))
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
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
