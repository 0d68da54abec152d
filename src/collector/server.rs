//! Serving: the accept loops with their connection budgets, per-connection HTTP/1 limits, and the
//! shutdown sequence that makes every acknowledged event visible to Prometheus.
//!
//! # Connections
//!
//! Events arrive on the main listener; probes and scrapes may use the health listener, whose own
//! small budget a flood of event connections cannot touch. Every connection is accepted at once:
//! - within [`ServeOptions::max_connections`], it is served;
//! - beyond, on a reserve of [`ServeOptions::overload_reserve`] connections, it gets 503 with
//!   `Retry-After` (and its head must arrive within [`OVERFLOW_HEADER_TIMEOUT`]);
//! - beyond that, it is closed at once.
//!
//! No client waits in the listen backlog for a slot.
//!
//! # Memory
//!
//! Request bodies held at once, single events and batches, are bounded by
//! [`ServeOptions::body_memory_bytes`] (default 4 × 16 MiB): each body reserves its declared
//! Content-Length, or each chunk as it arrives, and a request that does not fit is refused (503)
//! at once. An NDJSON batch is parsed chunk by chunk as it arrives, holding a chunk and an
//! unfinished line; a single event or a JSON array is held whole (a chunked body's buffer may
//! hold up to twice its size while it grows). A connection reads into at most
//! [`READ_BUFFER_BYTES`], and its request head takes at most [`MAX_HEADER_BYTES`].

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::config::{CollectorConfig, CollectorSetup};
use super::event::InvalidConfig;
use super::http::{
    App, MAX_BATCH_BYTES, Phase, error_body, health_router, overflow_router, router,
};
use super::pool::{PoolMetrics, ReloadResult, Routes};

/// Largest request head (request line and headers), in bytes; larger gets 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest read buffer of a connection. hyper grows it up to ~400 KiB while a large body
/// streams in, and a batch is parsed chunk by chunk as it arrives: a smaller buffer holds less
/// per connection for the same throughput.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Longest wait for the head of a request on a connection of the overload reserve.
pub const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for the head of a request on the health listener (probes send theirs at once).
pub const HEALTH_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Event connections served at once; further ones go to the overload reserve.
    pub max_connections: usize,
    /// Connections beyond [`ServeOptions::max_connections`] accepted only to be answered 503
    /// with `Retry-After`; beyond them, connections are closed at once.
    pub overload_reserve: usize,
    /// Connections the health listener serves at once; further ones are closed at once.
    pub health_max_connections: usize,
    /// Batches parsed at once.
    pub max_concurrent_batches: usize,
    /// Request body bytes held in memory at once, all requests together.
    pub body_memory_bytes: usize,
    /// After the in-flight requests finished, how long to keep serving `/metrics` (events
    /// refused) so Prometheus scrapes the final counts: at least two scrape intervals.
    pub final_scrape: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            grace_period: Duration::from_secs(20),
            shutdown_delay: Duration::ZERO,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            overload_reserve: 64,
            health_max_connections: 64,
            max_concurrent_batches: 4,
            body_memory_bytes: 4 * MAX_BATCH_BYTES,
            final_scrape: Duration::ZERO,
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
            phase: AtomicU8::new(Phase::Serving as u8),
            batch_permits: Semaphore::new(options.max_concurrent_batches.max(1)),
            body_budget: Semaphore::new(options.body_memory_bytes.clamp(1, Semaphore::MAX_PERMITS)),
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

    /// [`Collector::serve_with`] without a health listener.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> Drained
    where
        F: Future<Output = ()> + Send,
    {
        self.serve_with(listener, None, shutdown).await
    }

    /// Serves events on `listener` and probes and metrics on `health` (and on `listener` too)
    /// until `shutdown` completes, then shuts down so that no acknowledged event is lost:
    /// 1. `/readyz` answers 503 and events are still accepted for
    ///    [`ServeOptions::shutdown_delay`], while the endpoints drop this replica;
    /// 2. new events are refused (503, `Retry-After`, `Connection: close`) and in-flight
    ///    requests get [`ServeOptions::grace_period`] to finish (then their connections are cut),
    ///    and `bestEffort` export queues what is left of it to be sent;
    /// 3. `/metrics` keeps serving, on both listeners, for [`ServeOptions::final_scrape`], so
    ///    Prometheus scrapes the final counts;
    ///
    /// then the listeners close and the final metrics are returned.
    pub async fn serve_with<F>(
        self,
        listener: TcpListener,
        health: Option<TcpListener>,
        shutdown: F,
    ) -> Drained
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
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout)
            .max_header_size(MAX_HEADER_BYTES)
            .max_buf_size(READ_BUFFER_BYTES);
        let mut overflow_http = http.clone();
        overflow_http
            .header_read_timeout(OVERFLOW_HEADER_TIMEOUT)
            .keep_alive(false);
        let mut health_http = http.clone();
        health_http.header_read_timeout(HEALTH_HEADER_TIMEOUT);
        let events = Pool::new(http, router(app.clone()), options.max_connections);
        let overflow = Pool::new(
            overflow_http,
            overflow_router(app.clone()),
            options.overload_reserve,
        );
        let probes = Pool::new(
            health_http,
            health_router(app.clone()),
            options.health_max_connections,
        );
        // `true`: connections finish their current request and close.
        let (stop_events, stop_events_rx) = watch::channel(false);
        let (stop_health, stop_health_rx) = watch::channel(false);
        // Its own task: a flood on the event listener cannot delay its accepts.
        let health = health.map(|listener| tokio::spawn(probes.run(listener, stop_health_rx)));
        let mut connections = JoinSet::new();
        let mut in_flight = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut step = Step::Serving;
        let mut step_ends = Instant::now();
        let mut aborted_connections = 0;

        loop {
            let step_over = async {
                match step {
                    Step::Serving => shutdown.as_mut().await,
                    Step::Draining | Step::FinalScrape => {
                        tokio::time::sleep_until(step_ends).await;
                    }
                    Step::Refusing => {
                        let finished = async { while in_flight.join_next().await.is_some() {} };
                        let _ = tokio::time::timeout_at(step_ends, finished).await;
                    }
                }
            };
            tokio::select! {
                biased;
                () = step_over => {}
                accepted = listener.accept() => {
                    if let Some(stream) = accepted_stream(accepted).await {
                        let pool = [&events, &overflow].into_iter().find_map(|pool| {
                            pool.slots.clone().try_acquire_owned().ok().map(|slot| (pool, slot))
                        });
                        match pool {
                            Some((pool, slot)) => {
                                connections.spawn(pool.serve(stream, stop_events_rx.clone(), slot));
                            }
                            None => tracing::debug!("no connection slot left: connection closed"),
                        }
                    }
                    while connections.try_join_next().is_some() {}
                    continue;
                }
            }
            // The current step is over.
            match step {
                Step::Serving => {
                    step = Step::Draining;
                    app.set_phase(Phase::Draining);
                    step_ends = Instant::now() + options.shutdown_delay;
                    tracing::info!(
                        delay_seconds = options.shutdown_delay.as_secs_f64(),
                        "shutdown requested: readiness off, still accepting events"
                    );
                }
                Step::Draining => {
                    step = Step::Refusing;
                    app.set_phase(Phase::Refusing);
                    step_ends = Instant::now() + options.grace_period;
                    let _ = stop_events.send(true);
                    in_flight = std::mem::take(&mut connections);
                    tracing::info!(
                        connections = in_flight.len(),
                        grace_seconds = options.grace_period.as_secs_f64(),
                        "refusing new events, finishing in-flight requests"
                    );
                }
                Step::Refusing => {
                    aborted_connections = in_flight.len();
                    if aborted_connections > 0 {
                        in_flight.shutdown().await;
                        tracing::warn!(
                            connections = aborted_connections,
                            "grace period over, connections cut"
                        );
                    }
                    // No request can queue events any more: the bestEffort queues get what is
                    // left of the grace period to reach the endpoint.
                    let routes = app.routes();
                    futures::future::join_all(
                        routes.flushed_at_shutdown().map(|e| e.flush(step_ends)),
                    )
                    .await;
                    step = Step::FinalScrape;
                    step_ends = Instant::now() + options.final_scrape;
                    tracing::info!(
                        accepted_events = app.received(),
                        final_scrape_seconds = options.final_scrape.as_secs_f64(),
                        "in-flight requests finished; serving the final counts to Prometheus"
                    );
                }
                Step::FinalScrape => break,
            }
        }

        drop(listener);
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        let _ = stop_health.send(true);
        // What is left answers refusals and scrapes: a moment to finish, then cut.
        let _ = tokio::time::timeout(LAST_ANSWERS, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        connections.shutdown().await;
        if let Some(health) = health {
            let _ = health.await;
        }

        let final_metrics = app.pool.render(&app.routes()).unwrap_or_else(|error| {
            tracing::error!(%error, "cannot render the final metrics");
            String::new()
        });
        let accepted_events = app.received();
        tracing::info!(accepted_events, aborted_connections, "drained");
        Drained {
            final_metrics,
            accepted_events,
            aborted_connections,
        }
    }
}

/// After the final scrape window, how long the connections still open get to finish.
const LAST_ANSWERS: Duration = Duration::from_secs(1);

/// Where [`Collector::serve_with`] is in its shutdown sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Serving,
    Draining,
    Refusing,
    FinalScrape,
}

/// The accepted stream, or `None` after a failed accept (typically EMFILE: back off a little
/// instead of spinning).
async fn accepted_stream(
    accepted: io::Result<(TcpStream, std::net::SocketAddr)>,
) -> Option<TcpStream> {
    match accepted {
        Ok((stream, _peer)) => Some(stream),
        Err(error) => {
            tracing::warn!(%error, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Connections served alike: their HTTP settings, routes and budget.
struct Pool {
    http: http1::Builder,
    router: axum::Router,
    slots: Arc<Semaphore>,
}

impl Pool {
    fn new(http: http1::Builder, router: axum::Router, connections: usize) -> Self {
        Pool {
            http,
            router,
            slots: Arc::new(Semaphore::new(connections.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }

    /// Accepts and serves connections on `listener` until `stop`, then gives them a moment to
    /// finish. Connections beyond the budget are closed at once.
    async fn run(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let stop_connections = stop.clone();
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                // Dropped sender or `true`: either way, time to stop.
                () = async { drop(stop.wait_for(|stop| *stop).await) } => break,
                accepted = listener.accept() => {
                    if let Some(stream) = accepted_stream(accepted).await {
                        match self.slots.clone().try_acquire_owned() {
                            Ok(slot) => {
                                connections.spawn(self.serve(stream, stop_connections.clone(), slot));
                            }
                            Err(_) => tracing::debug!("no health connection slot left: closed"),
                        }
                    }
                    while connections.try_join_next().is_some() {}
                }
            }
        }
        drop(listener);
        let _ = tokio::time::timeout(LAST_ANSWERS, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        connections.shutdown().await;
    }

    /// Serves one connection until it closes, or until `stop` asks it to finish its current
    /// request. A connection accepted after `stop` serves one request, and closes.
    fn serve(
        &self,
        stream: TcpStream,
        mut stop: watch::Receiver<bool>,
        slot: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        // Answers are small and written at once: do not let Nagle delay them.
        let _ = stream.set_nodelay(true);
        let mut http = self.http.clone();
        // A graceful shutdown would close it before its first request: answer that one instead.
        let late = *stop.borrow();
        if late {
            http.keep_alive(false);
        }
        let connection = http.serve_connection(
            TokioIo::new(AutomaticAnswers::new(stream)),
            TowerToHyperService::new(self.router.clone()),
        );
        async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            let finished = tokio::select! {
                result = connection.as_mut() => Some(result),
                // Dropped sender or `true`: either way, time to finish.
                _ = stop.wait_for(|stop| *stop), if !late => None,
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
    }
}

/// The connection's I/O, with hyper's automatic answers to unparsable requests (400, 414, 431,
/// written with an empty body before hyper closes the connection) replaced by the collector's
/// JSON error body, so every refusal reads the same.
struct AutomaticAnswers<T> {
    inner: T,
    /// The replacement being written, and how much of it is.
    replacing: Option<(Vec<u8>, usize)>,
}

impl<T> AutomaticAnswers<T> {
    fn new(inner: T) -> Self {
        AutomaticAnswers {
            inner,
            replacing: None,
        }
    }
}

/// The JSON answer replacing hyper's automatic answer `head`, or `None` when `head` is not one.
/// Hyper writes them with `content-length: 0`; the collector's own error answers always have a
/// body, so they never match.
pub fn replace_automatic_answer(head: &[u8]) -> Option<Vec<u8>> {
    let (status, reason, message) = if head.starts_with(b"HTTP/1.1 431 ") {
        (
            "431 Request Header Fields Too Large",
            "headers_too_large",
            format!(
                "the request head is larger than {MAX_HEADER_BYTES} bytes or has more than 100 headers"
            ),
        )
    } else if head.starts_with(b"HTTP/1.1 414 ") {
        (
            "414 URI Too Long",
            "uri_too_long",
            "the request URI is too long".to_owned(),
        )
    } else if head.starts_with(b"HTTP/1.1 400 ") {
        (
            "400 Bad Request",
            "malformed",
            "the request is not valid HTTP/1.1".to_owned(),
        )
    } else {
        return None;
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let head_end = head.windows(4).position(|w| w == b"\r\n\r\n")? + 2;
    let lowercase = head[..head_end].to_ascii_lowercase();
    if !contains(&lowercase, b"\r\ncontent-length: 0\r\n") {
        return None;
    }
    let body = error_body(reason, None, &message);
    Some(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for AutomaticAnswers<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AutomaticAnswers<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            // Not vectored (see below): a head arrives whole in one write.
            match replace_automatic_answer(buf) {
                Some(answer) => this.replacing = Some((answer, 0)),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        if let Some((answer, written)) = &mut this.replacing {
            while *written < answer.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &answer[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
        }
        this.replacing = None;
        // Hyper's answer counts as written: it was, in the collector's words.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each head (and small body) as one buffer, which is what
    // `replace_automatic_answer` reads.
}

/// Raises this process's open-file soft limit to its hard limit, so the connection limits and not
/// the default 1024 descriptors bound the collector. Returns the soft limit before and after, and
/// the hard limit.
#[cfg(unix)]
pub fn raise_open_file_limit() -> io::Result<(u64, u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads the struct it is given, which lives for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur, limit.rlim_max))
}

/// Without rlimits there is nothing to raise.
#[cfg(not(unix))]
pub fn raise_open_file_limit() -> io::Result<(u64, u64, u64)> {
    Err(io::Error::other("no open-file limit on this platform"))
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
                app.pool.reloaded(ReloadResult::Applied);
                tracing::info!(touchpoints = count, "configuration reloaded");
            }
            Err(error) => {
                app.pool.reloaded(ReloadResult::Failed);
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

/// The SHA-256 of the token in `path`, without the ASCII whitespace around it (a trailing newline,
/// an editor's indentation): producers send the token trimmed too.
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
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err(CollectorError::EmptyToken { path: shown });
    }
    Ok(Sha256::digest(token).into())
}
