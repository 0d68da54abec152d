//! The touchpoint collector (`cx-conductor collector`): HTTP ingest of feedback events.
//!
//! - [`event`]: the wire format and its validation, a pure function (`parse_event`);
//! - [`metrics`]: the Prometheus series of DESIGN.md §4;
//! - [`http`]: routes and answers; [`server`]: limits, accept loop and graceful drain;
//! - this module: the command-line entry point.
//!
//! HTTP API:
//! - `POST /v1/events` — one event, `application/json`: 202 `{"accepted":1}`;
//! - `POST /v1/events:batch` — `application/x-ndjson` (one event per line) or `application/json`
//!   (an array): 200 `{"accepted":n,"rejected":m,"errors":[{"index","reason","field","message"}]}`
//!   (422 with the same body plus `error` when every event was rejected);
//! - a pool (a configuration listing `touchpoints`) serves the same two endpoints per touchpoint
//!   at `POST /v1/touchpoints/{touchpoint}/events` and `.../events:batch`, 404 with a JSON body
//!   naming an unknown touchpoint, and follows changes of its configuration file without a
//!   restart ([`pool`]);
//! - `GET /metrics` (Prometheus text), `GET /healthz` (alive), `GET /readyz` (503 while draining),
//!   on the event port and on the health port (`--health-listen`), whose own connection budget
//!   event floods cannot starve.
//!
//! Refusals answer `{"error":{"reason","field","message"}}`: 400 malformed JSON or HTTP, 401
//! missing or wrong bearer token, 408 body too slow, 413 body over `maxEventBytes` (batches: 1000
//! × `maxEventBytes`, at most 16 MiB), 414 URI too long, 415 wrong Content-Type, 422 invalid
//! event, 431 request head over 16 KiB, 503 with `Retry-After` when overloaded or shutting down,
//! or when the export endpoint did not accept the events (`export_unavailable`, see [`export`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use config::{COLLECTOR_PORT, CONFIG_ENV, HEALTH_PORT};

pub mod config;

use config::CollectorSetup;
pub mod event;
pub mod export;
pub mod http;
pub mod metrics;
pub mod pool;
pub mod server;

pub use event::{Event, EventId, EventSchema, Reason, Rejection, Signal, parse_event};
pub use server::{
    Collector, CollectorError, Drained, ServeOptions, load_config, load_setup,
    raise_open_file_limit,
};

/// Options of `cx-conductor collector`.
#[derive(clap::Args, Debug, Clone)]
pub struct CollectorArgs {
    /// The collector configuration (YAML) as a file: a pool's, which the operator mounts from
    /// the pool's Secret and the collector follows while serving.
    #[arg(long, value_name = "FILE", required_unless_present = "config_inline")]
    pub config: Option<PathBuf>,
    /// The configuration itself (JSON or YAML): how the operator configures a dedicated
    /// collector, in its pod template, so the pods of each rollout carry their own.
    #[arg(
        long,
        env = CONFIG_ENV,
        value_name = "YAML",
        hide_env_values = true,
        conflicts_with = "config"
    )]
    pub config_inline: Option<String>,
    /// Address to listen on for events.
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], COLLECTOR_PORT)))]
    pub listen: SocketAddr,
    /// Address of the health listener: `/healthz`, `/readyz` and `/metrics` with their own small
    /// connection budget, for probes and scrapes.
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], HEALTH_PORT)))]
    pub health_listen: SocketAddr,
    /// Log JSON lines instead of text (filter with RUST_LOG, default `info`).
    #[arg(long)]
    pub log_json: bool,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 20)]
    pub grace_period_seconds: u64,
    /// Seconds to keep accepting events after SIGTERM with readiness off (while endpoints
    /// propagate), before refusing new events with 503.
    #[arg(long, default_value_t = 0)]
    pub shutdown_delay_seconds: u64,
    /// Seconds to keep serving `/metrics` after the in-flight requests finished, so Prometheus
    /// scrapes the final counts: at least 2 × the scrape interval plus a margin.
    #[arg(long, default_value_t = 0)]
    pub final_scrape_seconds: u64,
    /// Seconds a request body has to arrive.
    #[arg(long, default_value_t = 30)]
    pub request_timeout_seconds: u64,
    /// Connections served at once.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds between checks of a pool's configuration file for changes.
    #[arg(long, default_value_t = 2)]
    pub reload_interval_seconds: u64,
}

impl CollectorArgs {
    /// The serving limits these options describe.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            grace_period: Duration::from_secs(self.grace_period_seconds),
            shutdown_delay: Duration::from_secs(self.shutdown_delay_seconds),
            request_timeout: Duration::from_secs(self.request_timeout_seconds.max(1)),
            max_connections: self.max_connections.max(1),
            final_scrape: Duration::from_secs(self.final_scrape_seconds),
            ..ServeOptions::default()
        }
    }
}

/// Runs `cx-conductor collector` until SIGTERM or SIGINT and a drain. Exit codes: 0 after a
/// drain, 1 when it cannot serve (address in use, runtime), 2 when the configuration is unusable.
pub fn run(args: &CollectorArgs) -> ExitCode {
    init_logging(args.log_json);
    match raise_open_file_limit() {
        Ok((before, soft, hard)) => {
            tracing::info!(before, soft, hard, "open-file limit");
            let options = args.serve_options();
            // Both listeners, every connection budget, and a margin for files and the runtime.
            let needed = (options.max_connections
                + options.overload_reserve
                + options.health_max_connections
                + 64) as u64;
            if soft < needed {
                tracing::warn!(
                    soft,
                    needed,
                    "the open-file limit is below the connections the collector may hold"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
    let setup =
        match (&args.config, &args.config_inline) {
            (Some(path), _) => load_setup(path),
            (None, inline) => CollectorSetup::from_yaml(inline.as_deref().unwrap_or_default())
                .map_err(|source| CollectorError::ParseConfig {
                    path: CONFIG_ENV.into(),
                    source,
                }),
        };
    let collector = match setup
        .and_then(|setup| Collector::with_setup(&setup, args.serve_options()).map(|c| (setup, c)))
    {
        Ok((setup, collector)) => {
            let touchpoints: Vec<&str> = setup
                .touchpoints()
                .iter()
                .map(|t| t.touchpoint.as_str())
                .collect();
            tracing::info!(
                pool = matches!(setup, CollectorSetup::Pool(_)),
                touchpoints = touchpoints.join(","),
                "collector configured"
            );
            match (setup, &args.config) {
                // A pool follows its configuration file while serving.
                (CollectorSetup::Pool(_), Some(path)) => collector.reloading_from(
                    path.clone(),
                    Duration::from_secs(args.reload_interval_seconds.max(1)),
                ),
                _ => collector,
            }
        }
        Err(error) => {
            tracing::error!(%error, "cannot start the collector");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let mut listeners = Vec::new();
        for address in [args.listen, args.health_listen] {
            match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => listeners.push(listener),
                Err(source) => {
                    let error = CollectorError::Bind {
                        address: address.to_string(),
                        source,
                    };
                    tracing::error!(%error, "cannot start the collector");
                    return ExitCode::FAILURE;
                }
            }
        }
        let health = listeners.pop();
        let Some(listener) = listeners.pop() else {
            return ExitCode::FAILURE;
        };
        tracing::info!(
            address = %args.listen,
            health_address = %args.health_listen,
            "collector listening"
        );
        collector
            .serve_with(listener, health, termination_signal())
            .await;
        ExitCode::SUCCESS
    })
}

/// Completes on SIGTERM (Kubernetes) or SIGINT (a terminal).
async fn termination_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour);
    // A subscriber may already be installed (tests); keeping it is fine.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
