//! Serving: the accept loop with its connection limit, per-connection HTTP/1 limits, and the
//! graceful drain that makes every acknowledged event visible in the final metrics.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::config::{CollectorConfig, CollectorSetup};
use super::event::InvalidConfig;
use super::http::{App, router};
use super::pool::{PoolMetrics, ReloadResult, Routes};

/// Largest request head (request line and headers), in bytes; larger gets 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Operational limits of a collector (what is not in the touchpoint's configuration).
#[derive(Clone, Debug, PartialEq)]
pub struct ServeOptions {
    /// After the shutdown signal (and [`ServeOptions::shutdown_delay`]), how long in-flight
    /// requests have to finish before their connections are cut.
    pub grace_period: Duration,
    /// After the shutdown signal, how long to keep serving while `/readyz` answers 503, so load
    /// balancers stop sending traffic before the listener closes.
    pub shutdown_delay: Duration,
    /// Longest time for a request body to arrive (and for a batch to get a processing slot).
    pub request_timeout: Duration,
    /// Longest time for a request head to arrive; also closes idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Batches read and parsed at once; bounds memory to this many batch bodies.
    pub max_concurrent_batches: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            grace_period: Duration::from_secs(20),
            shutdown_delay: Duration::ZERO,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_concurrent_batches: 4,
        }
    }
}

/// Why a collector cannot start.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The configuration file cannot be read.
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not a collector configuration.
    #[error("cannot parse {path}: {source}")]
    ParseConfig {
        /// The file.
        path: String,
        /// The YAML error.
        source: serde_yaml::Error,
    },
    /// The configuration is inconsistent.
    #[error(transparent)]
    InvalidConfig(#[from] InvalidConfig),
    /// The bearer token file cannot be read.
    #[error("cannot read the token file {path}: {source}")]
    ReadToken {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bearer token file exists but this process may not read it: in a pod, the Secret
    /// volume is root-owned and only its group (the pod's `fsGroup`) may read it.
    #[error(
        "cannot read the token file {path} ({owner}): permission denied to uid {uid}, gid {gid}; \
         the collector must be able to read it: run the pod with securityContext.fsGroup \
         set to the collector's group (the operator's plan sets fsGroup {fs_group}) so the \
         Secret volume belongs to that group"
    )]
    TokenNotReadable {
        /// The file.
        path: String,
        /// Owner, group and mode of the file, e.g. `owner 0, group 0, mode 0440`.
        owner: String,
        /// This process's user.
        uid: String,
        /// This process's group.
        gid: String,
        /// The `fsGroup` of the collector pods the operator plans.
        fs_group: i64,
    },
    /// The bearer token file is empty: every producer would be refused, or worse.
    #[error("the token file {path} is empty")]
    EmptyToken {
        /// The file.
        path: String,
    },
    /// The metrics cannot be registered (a bug or an invalid label value).
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The listen address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Reads a collector configuration file (YAML, what the operator's ConfigMap holds).
pub fn load_config(path: &Path) -> Result<CollectorConfig, CollectorError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CollectorError::ReadConfig {
        path: shown.clone(),
        source,
    })?;
    serde_yaml::from_str(&text).map_err(|source| CollectorError::ParseConfig {
        path: shown,
        source,
    })
}

/// What a drained collector leaves behind.
#[derive(Clone, Debug)]
pub struct Drained {
    /// The metrics after the last request finished: every event acknowledged with a 2xx is in it.
    pub final_metrics: String,
    /// Events accepted over the collector's life.
    pub accepted_events: u64,
    /// Connections still busy when the grace period ended, and cut.
    pub aborted_connections: usize,
}

/// Reads a collector or pool configuration file.
pub fn load_setup(path: &Path) -> Result<CollectorSetup, CollectorError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CollectorError::ReadConfig {
        path: shown.clone(),
        source,
    })?;
    CollectorSetup::from_yaml(&text).map_err(|source| CollectorError::ParseConfig {
        path: shown,
        source,
    })
}

/// A collector ready to serve one touchpoint, or a pool of them.
pub struct Collector {
    app: Arc<App>,
    options: ServeOptions,
    /// The file a pool re-reads, and how often.
    reload: Option<(PathBuf, Duration)>,
}

impl Collector {
    /// Compiles the configuration, registers the metrics and reads the bearer token.
    pub fn new(config: &CollectorConfig, options: ServeOptions) -> Result<Self, CollectorError> {
        Self::with_setup(&CollectorSetup::Dedicated(config.clone()), options)
    }

    /// Compiles every touchpoint of `setup` (one, or a pool's).
    pub fn with_setup(
        setup: &CollectorSetup,
        options: ServeOptions,
    ) -> Result<Self, CollectorError> {
        let routes = Routes::build(setup, None)?;
        let namespace = match setup {
            CollectorSetup::Dedicated(config) => config.namespace.clone(),
            CollectorSetup::Pool(pool) => pool.namespace.clone(),
        };
        let pool = PoolMetrics::new(&namespace)?;
        pool.serving(routes.by_name.len());
        let app = App {
            routes: RwLock::new(Arc::new(routes)),
            pool,
            draining: AtomicBool::new(false),
            batch_permits: Semaphore::new(options.max_concurrent_batches.max(1)),
            request_timeout: options.request_timeout,
        };
        Ok(Collector {
            app: Arc::new(app),
            options,
            reload: None,
        })
    }

    /// Re-reads `path` every `every` while serving and serves what it holds, keeping the last
    /// good configuration when it cannot be used (a pool's Secret changes under a running pod).
    pub fn reloading_from(mut self, path: PathBuf, every: Duration) -> Self {
        self.reload = Some((path, every));
        self
    }

    /// Serves on `listener` until `shutdown` completes, then drains: `/readyz` turns 503, the
    /// listener closes after [`ServeOptions::shutdown_delay`], in-flight requests get
    /// [`ServeOptions::grace_period`] to finish, and the final metrics are returned.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> Drained
    where
        F: Future<Output = ()> + Send,
    {
        let Collector {
            app,
            options,
            reload,
        } = self;
        let reloader =
            reload.map(|(path, every)| tokio::spawn(reload_loop(app.clone(), path, every)));
        let router = router(app.clone());
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout)
            .max_header_size(MAX_HEADER_BYTES);
        let connection_slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();

        let stop_accepting = async {
            shutdown.await;
            app.draining.store(true, Ordering::SeqCst);
            tracing::info!(
                delay_seconds = options.shutdown_delay.as_secs_f64(),
                "shutdown requested: readiness off, draining"
            );
            tokio::time::sleep(options.shutdown_delay).await;
        };
        let mut stop_accepting = std::pin::pin!(stop_accepting);

        loop {
            let permit = tokio::select! {
                biased;
                () = &mut stop_accepting => break,
                permit = connection_slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                biased;
                () = &mut stop_accepting => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            connections.spawn(serve_connection(
                stream,
                http.clone(),
                router.clone(),
                stop_rx.clone(),
                permit,
            ));
            while connections.try_join_next().is_some() {}
        }

        drop(listener);
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        let _ = stop_tx.send(true);
        let in_flight = connections.len();
        tracing::info!(
            connections = in_flight,
            "listener closed, finishing in-flight requests"
        );
        let finished = tokio::time::timeout(options.grace_period, async {
            while connections.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        let aborted_connections = if finished {
            0
        } else {
            let cut = connections.len();
            connections.shutdown().await;
            tracing::warn!(connections = cut, "grace period over, connections cut");
            cut
        };

        let routes = app.routes();
        let final_metrics = app.pool.render(&routes).unwrap_or_else(|error| {
            tracing::error!(%error, "cannot render the final metrics");
            String::new()
        });
        let accepted_events = routes.by_name.values().map(|t| t.metrics.received()).sum();
        tracing::info!(accepted_events, aborted_connections, "drained");
        Drained {
            final_metrics,
            accepted_events,
            aborted_connections,
        }
    }
}

/// Serves one connection until it closes, or until shutdown asks it to finish its current request.
async fn serve_connection(
    stream: TcpStream,
    http: http1::Builder,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    // Answers are small and written at once: do not let Nagle delay them.
    let _ = stream.set_nodelay(true);
    let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut connection = std::pin::pin!(connection);
    let finished = tokio::select! {
        result = connection.as_mut() => Some(result),
        // Dropped sender or `true`: either way, time to finish.
        _ = stop.wait_for(|stop| *stop) => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Why `path` cannot be read by this process: its owner, group and mode, and this process's
/// user and group (from `/proc/self/status`); `None` when they cannot be told.
#[cfg(unix)]
fn not_readable(path: &Path, shown: &str) -> Option<CollectorError> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    // `Uid:` and `Gid:` list the real, effective, saved and filesystem ids: the effective one
    // is what the kernel checks.
    let effective = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .map(str::to_string)
    };
    Some(CollectorError::TokenNotReadable {
        path: shown.to_owned(),
        owner: format!(
            "owner {}, group {}, mode {:04o}",
            metadata.uid(),
            metadata.gid(),
            metadata.mode() & 0o7777
        ),
        uid: effective("Uid:")?,
        gid: effective("Gid:")?,
        fs_group: crate::core::plan::COLLECTOR_GID,
    })
}

#[cfg(not(unix))]
fn not_readable(_path: &Path, _shown: &str) -> Option<CollectorError> {
    None
}

/// Polls the configuration file and swaps in what changed. Polling (not inotify) because the
/// kubelet replaces a Secret volume's files through a symlink swap, which a poll sees as is.
async fn reload_loop(app: Arc<App>, path: PathBuf, every: Duration) {
    let mut last = std::fs::read(&path).ok();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Ok(bytes) = tokio::fs::read(&path).await else {
            continue;
        };
        if last.as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        last = Some(bytes);
        match reload(&app, &path) {
            Ok(count) => {
                app.pool.reloaded(ReloadResult::Applied, count);
                tracing::info!(touchpoints = count, "configuration reloaded");
            }
            Err(error) => {
                app.pool.reloaded(ReloadResult::Failed, 0);
                tracing::error!(%error, "configuration refused; the last good one keeps serving");
            }
        }
    }
}

/// Compiles the file at `path` against what is served and swaps it in.
fn reload(app: &App, path: &Path) -> Result<usize, CollectorError> {
    let setup = load_setup(path)?;
    let current = app.routes();
    let pooled = matches!(setup, CollectorSetup::Pool(_));
    if pooled != current.pooled {
        return Err(InvalidConfig(
            "a running collector cannot switch between dedicated and pool: restart it".into(),
        )
        .into());
    }
    let routes = Routes::build(&setup, Some(&current))?;
    let count = routes.by_name.len();
    app.swap(routes);
    Ok(count)
}

/// The SHA-256 of the token in `path`, without its trailing newline.
pub(crate) fn read_token_digest(path: &Path) -> Result<[u8; 32], CollectorError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            not_readable(path, &shown).unwrap_or(CollectorError::ReadToken {
                path: shown.clone(),
                source,
            })
        } else {
            CollectorError::ReadToken {
                path: shown.clone(),
                source,
            }
        }
    })?;
    let token = bytes
        .strip_suffix(b"\n")
        .map(|rest| rest.strip_suffix(b"\r").unwrap_or(rest))
        .unwrap_or(&bytes);
    if token.trim_ascii().is_empty() {
        return Err(CollectorError::EmptyToken { path: shown });
    }
    Ok(Sha256::digest(token).into())
}
