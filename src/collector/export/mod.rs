//! OTLP/HTTP log export of accepted events, with group commit.
//!
//! - [`encode`]: an event as an OpenTelemetry log record (pure);
//! - [`response`]: what the endpoint's answer means (pure);
//! - this module: the [`Exporter`], one per endpoint and process, shared by the touchpoints of a
//!   pool, and its `cx_export_*` series.
//!
//! # Delivery `guaranteed`
//!
//! A request's events are handed to the exporter and the HTTP handler waits: it answers 2xx only
//! once the endpoint accepted the export request holding them, and counts them only then. Events
//! of concurrent requests share one export request (group commit): an idle collector sends at
//! once; while requests are in flight, what comes waits for their answers, or, once it holds
//! [`SLOT_GROUP_EVENTS`], takes a free slot of the [`MAX_IN_FLIGHT`]; a group holds every
//! event that waited (up to `maxBatchEvents`), so groups grow with the load; with a
//! `lingerMillis`, the first event of a group also waits that long for others. When the
//! endpoint is down, slow or refuses,
//! every request of the group is answered 503 with `Retry-After` and nothing of it is counted:
//! the producer retries with the same `eventId` (so the pipeline may see an event twice, never
//! zero times). A crash, an OOM-kill or a rollout loses no acknowledged event, since none is
//! acknowledged before it left; shutdown waits for in-flight requests, hence for their exports.
//!
//! # Delivery `bestEffort`
//!
//! The producer is answered before the export; the events wait in a bounded queue, retried while
//! the endpoint is down, and every one dropped is counted ([`queue`]).

pub mod encode;
pub mod queue;
pub mod response;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use std::path::Path;

use http::{HeaderName, HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::ConfigBuilderExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    proto::MetricFamily,
};
use prost::Message;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::{DEFAULT_QUEUE_EVENTS, Delivery, ExportConfig};
use super::event::InvalidConfig;
pub use queue::DropReason;
use queue::Queue;
pub use response::{Failure, FailureReason};

/// Export requests in flight at once, per exporter.
pub const MAX_IN_FLIGHT: usize = 4;
/// Requests waiting for a group at once, per exporter: beyond, they are refused (503) at once.
/// (Their events are bounded too: a request holds its body budget until it is answered.)
pub const MAX_QUEUED_REQUESTS: usize = 65_536;
/// Bucket boundaries (seconds) of `cx_export_duration_seconds`.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The settings that make an exporter: touchpoints with equal ones share it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExporterKey {
    endpoint: String,
    timeout_millis: u32,
    linger_millis: u32,
    max_batch_events: u32,
    token_file: Option<String>,
    ca_file: Option<String>,
    client_cert_file: Option<String>,
    client_key_file: Option<String>,
    headers_dir: Option<String>,
    delivery: Delivery,
    /// The `bestEffort` queue's capacity, in events.
    queue_events: u32,
}

impl ExporterKey {
    /// The exporter settings of a touchpoint's export configuration.
    pub fn of(config: &ExportConfig) -> ExporterKey {
        ExporterKey {
            endpoint: config.endpoint.clone(),
            timeout_millis: config.timeout_millis,
            linger_millis: config.linger_millis,
            max_batch_events: config.max_batch_events,
            token_file: config.token_file.clone(),
            ca_file: config.ca_file.clone(),
            client_cert_file: config.client_cert_file.clone(),
            client_key_file: config.client_key_file.clone(),
            headers_dir: config.headers_dir.clone(),
            delivery: config.delivery,
            queue_events: config.queue_events.unwrap_or(DEFAULT_QUEUE_EVENTS),
        }
    }
}

/// The TLS settings of `key`: its CA bundle (else the system's roots) and client certificate.
/// `https`: whether the endpoint needs them (an image without a CA bundle still exports in clear
/// text inside the cluster).
fn tls_config(key: &ExporterKey, https: bool) -> Result<rustls::ClientConfig, InvalidConfig> {
    if !https
        && let Some(field) = [
            (&key.ca_file, "caFile"),
            (&key.client_cert_file, "clientCertFile"),
            (&key.client_key_file, "clientKeyFile"),
        ]
        .into_iter()
        .find_map(|(file, field)| file.as_ref().map(|_| field))
    {
        return Err(InvalidConfig(format!(
            "export.{field} is set but export.endpoint is not https://: TLS settings need an \
             https endpoint"
        )));
    }
    let builder = match &key.ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in read_certificates("caFile", path)? {
                roots.add(certificate).map_err(|error| {
                    InvalidConfig(format!(
                        "export.caFile {path}: a certificate is not a usable CA: {error}"
                    ))
                })?;
            }
            rustls::ClientConfig::builder().with_root_certificates(roots)
        }
        None => match rustls::ClientConfig::builder().with_native_roots() {
            Ok(builder) => builder,
            Err(error) if https => {
                return Err(InvalidConfig(format!(
                    "cannot load the system CA roots to verify the https export endpoint \
                     (name a CA bundle with export.caFile): {error}"
                )));
            }
            Err(_) => rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty()),
        },
    };
    match (&key.client_cert_file, &key.client_key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(private)) => {
            let chain = read_certificates("clientCertFile", cert)?;
            // The key's own error text is not echoed: it is about secret material.
            let private = PrivateKeyDer::from_pem_file(private).map_err(|_| {
                InvalidConfig(format!(
                    "export.clientKeyFile {private}: no readable PEM private key (PKCS#8, PKCS#1 \
                     or SEC1)"
                ))
            })?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|error| {
                    InvalidConfig(format!(
                        "export.clientCertFile and export.clientKeyFile do not make a usable \
                         client certificate: {error}"
                    ))
                })
        }
        (Some(_), None) => Err(InvalidConfig(
            "export.clientCertFile needs export.clientKeyFile".to_string(),
        )),
        (None, Some(_)) => Err(InvalidConfig(
            "export.clientKeyFile needs export.clientCertFile".to_string(),
        )),
    }
}

/// The certificates of the PEM file `path` (the `field` of the configuration): at least one.
fn read_certificates(
    field: &str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, InvalidConfig> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| InvalidConfig(format!("cannot read export.{field} {path}: {error}")))?;
    if certificates.is_empty() {
        return Err(InvalidConfig(format!(
            "export.{field} {path} holds no PEM certificate"
        )));
    }
    Ok(certificates)
}

/// Headers a `headersDir` may not set: the request's framing and type are the exporter's.
const RESERVED_HEADERS: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::HOST,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
];

/// The headers of `dir`: one per file, named after it, its content (without the final line
/// break) the value. `token`: whether a bearer token already sets `Authorization`. Errors name
/// the file, never its content.
fn read_headers(dir: &Path, token: bool) -> Result<Vec<(HeaderName, HeaderValue)>, InvalidConfig> {
    let shown = dir.display();
    let entries = std::fs::read_dir(dir).map_err(|error| {
        InvalidConfig(format!("cannot read export.headersDir {shown}: {error}"))
    })?;
    let mut headers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| {
            InvalidConfig(format!("cannot read export.headersDir {shown}: {error}"))
        })?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else {
            return Err(InvalidConfig(format!(
                "export.headersDir {shown}: a file name is not UTF-8"
            )));
        };
        // A mounted Secret's bookkeeping (`..data`, timestamped directories).
        if file.starts_with('.') {
            continue;
        }
        let name = HeaderName::from_bytes(file.as_bytes()).map_err(|_| {
            InvalidConfig(format!(
                "export.headersDir {shown}: {file:?} is not an HTTP header name"
            ))
        })?;
        if RESERVED_HEADERS.contains(&name) || (token && name == header::AUTHORIZATION) {
            return Err(InvalidConfig(format!(
                "export.headersDir {shown}: header {name} is set by the exporter{}",
                if token { " (or its token file)" } else { "" }
            )));
        }
        let path = entry.path();
        let text = std::fs::read_to_string(&path).map_err(|error| {
            InvalidConfig(format!(
                "cannot read export.headersDir {shown}, header {name}: {error}"
            ))
        })?;
        let mut value =
            HeaderValue::from_str(text.trim_end_matches(['\r', '\n'])).map_err(|_| {
                InvalidConfig(format!(
                    "export.headersDir {shown}: the value of header {name} is not a valid header \
                 value (visible ASCII, one line)"
                ))
            })?;
        value.set_sensitive(true);
        headers.push((name, value));
    }
    headers.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    Ok(headers)
}

/// The URL export requests go to: `<endpoint>/v1/logs`.
pub fn logs_url(endpoint: &str) -> Result<Uri, InvalidConfig> {
    let base = endpoint.trim_end_matches('/');
    if base.contains(['?', '#', '@']) {
        // Not echoed: it may hold a credential.
        return Err(InvalidConfig(
            "export.endpoint must have no query, fragment or credentials (a bearer token goes in \
             the token Secret)"
                .to_string(),
        ));
    }
    let uri: Uri = format!("{base}/v1/logs").parse().map_err(|_| {
        InvalidConfig(format!(
            "export.endpoint {endpoint:?} is not a URL such as http://otel-collector:4318"
        ))
    })?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err(InvalidConfig(format!(
            "export.endpoint {endpoint:?} must be an http:// or https:// URL with a host"
        ))),
    }
}

/// The logs URL of `endpoint` as status may show it: scheme, host, port and path, never user
/// information or a query. `None` when the endpoint is not a usable URL.
pub fn shown_logs_url(endpoint: &str) -> Option<String> {
    let url = logs_url(endpoint).ok()?;
    let port = url.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!(
        "{}://{}{port}{}",
        url.scheme_str()?,
        url.host()?,
        url.path()
    ))
}

/// One request's events waiting for their group's export.
struct Submission {
    records: Vec<LogRecord>,
    done: oneshot::Sender<Result<(), Failure>>,
}

/// Sends log records to one OTLP/HTTP endpoint, grouping those of concurrent requests.
#[derive(Clone)]
pub struct Exporter {
    inner: Arc<Inner>,
    /// Held by the handles only, not by [`Inner`] (which the grouping task holds): once every
    /// handle is gone (a pool reload replaced the exporter) the channel closes and the grouping
    /// task ends.
    queue: mpsc::Sender<Submission>,
}

struct Inner {
    url: Uri,
    authorization: Option<String>,
    /// Headers of `headersDir`, sent with every request (values marked sensitive).
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    linger: Duration,
    max_batch_events: usize,
    resource: Resource,
    client: Client<Connector, Full<Bytes>>,
    metrics: ExportMetrics,
    /// Taken by the grouping task, started with the first event (inside the runtime).
    receiver: Mutex<Option<mpsc::Receiver<Submission>>>,
    /// The queue of delivery `bestEffort`; `None`: `guaranteed`.
    best_effort: Option<BestEffort>,
}

/// A `bestEffort` exporter's queue and the task sending from it.
struct BestEffort {
    capacity: usize,
    queue: Mutex<Queue>,
    /// Wakes the sending task: records arrived, or the shutdown flush began.
    wake: Notify,
    task: Mutex<Task>,
    /// When dropped events were last logged, and how many were dropped since.
    warned: Mutex<(Option<Instant>, u64)>,
}

/// The sending task of a `bestEffort` exporter.
enum Task {
    NotStarted,
    Running(JoinHandle<()>),
    /// Flushed at shutdown.
    Stopped,
}

impl Exporter {
    /// An exporter to `key`'s endpoint, its records under `resource`, counted in `metrics`.
    pub fn new(
        key: &ExporterKey,
        resource: Resource,
        metrics: ExportMetrics,
    ) -> Result<Exporter, InvalidConfig> {
        let url = logs_url(&key.endpoint)?;
        let authorization = match &key.token_file {
            None => None,
            Some(path) => {
                let token = std::fs::read_to_string(path).map_err(|error| {
                    InvalidConfig(format!("cannot read export.tokenFile {path}: {error}"))
                })?;
                let token = token.trim();
                if token.is_empty() {
                    return Err(InvalidConfig(format!("export.tokenFile {path} is empty")));
                }
                Some(format!("Bearer {token}"))
            }
        };
        let headers = match &key.headers_dir {
            None => Vec::new(),
            Some(dir) => read_headers(Path::new(dir), authorization.is_some())?,
        };
        let tls = tls_config(key, url.scheme_str() == Some("https"))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let (queue, receiver) = mpsc::channel(MAX_QUEUED_REQUESTS);
        let best_effort = match key.delivery {
            Delivery::Guaranteed => None,
            Delivery::BestEffort if key.queue_events == 0 => {
                return Err(InvalidConfig(
                    "export.queueEvents must be at least 1 (the bestEffort queue's capacity)"
                        .to_string(),
                ));
            }
            Delivery::BestEffort => Some(BestEffort {
                capacity: key.queue_events as usize,
                queue: Mutex::new(Queue::default()),
                wake: Notify::new(),
                task: Mutex::new(Task::NotStarted),
                warned: Mutex::new((None, 0)),
            }),
        };
        Ok(Exporter {
            inner: Arc::new(Inner {
                url,
                authorization,
                headers,
                timeout: Duration::from_millis(u64::from(key.timeout_millis.max(1))),
                linger: Duration::from_millis(u64::from(key.linger_millis)),
                max_batch_events: key.max_batch_events.max(1) as usize,
                resource,
                client,
                metrics,
                receiver: Mutex::new(Some(receiver)),
                best_effort,
            }),
            queue,
        })
    }

    /// Exports `records` with the next group and waits for the endpoint's answer. Must be called
    /// inside a Tokio runtime.
    pub async fn export(&self, records: Vec<LogRecord>) -> Result<(), Failure> {
        if records.is_empty() {
            return Ok(());
        }
        if let Some(best_effort) = &self.inner.best_effort {
            self.enqueue(best_effort, records);
            return Ok(());
        }
        self.start();
        let inner = &self.inner;
        let count = records.len() as i64;
        let (done, answer) = oneshot::channel();
        // Counted before the grouping task can take them out.
        inner.metrics.pending.add(count);
        if self.queue.try_send(Submission { records, done }).is_err() {
            inner.metrics.pending.sub(count);
            let failure = Failure::transient(FailureReason::QueueFull);
            inner.metrics.failed(failure.reason, count as u64);
            return Err(failure);
        }
        // The grouping task answers every submission; a closed channel means it is gone.
        answer
            .await
            .unwrap_or(Err(Failure::transient(FailureReason::Unavailable)))
    }

    /// Queues `records` (`bestEffort`), dropping and counting what does not fit.
    fn enqueue(&self, best_effort: &BestEffort, records: Vec<LogRecord>) {
        let offered = records.len();
        let metrics = &self.inner.metrics;
        let dropped = {
            let mut task = lock(&best_effort.task);
            match *task {
                Task::NotStarted => {
                    *task = Task::Running(tokio::spawn(send_queued(self.inner.clone())));
                }
                Task::Running(_) => {}
                // Flushed already: nothing would send them.
                Task::Stopped => {
                    metrics.dropped(DropReason::Shutdown, offered as u64);
                    best_effort.warn_dropped(DropReason::Shutdown, offered as u64);
                    return;
                }
            }
            lock(&best_effort.queue).push(records, best_effort.capacity)
        };
        metrics.queued.add((offered - dropped) as i64);
        best_effort.wake.notify_one();
        if dropped > 0 {
            metrics.dropped(DropReason::QueueFull, dropped as u64);
            best_effort.warn_dropped(DropReason::QueueFull, dropped as u64);
        }
    }

    /// Sends what the `bestEffort` queue holds until it is empty or `deadline` passes, then stops
    /// its task; what is left is dropped and counted (`shutdown`). Nothing for `guaranteed`,
    /// whose events are in requests the server waits for. Call it once no request can add events.
    pub async fn flush(&self, deadline: Instant) {
        let Some(best_effort) = &self.inner.best_effort else {
            return;
        };
        lock(&best_effort.queue).closing = true;
        best_effort.wake.notify_one();
        let task = std::mem::replace(&mut *lock(&best_effort.task), Task::Stopped);
        if let Task::Running(mut handle) = task
            && tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
        {
            handle.abort();
            let _ = handle.await;
        }
        let left = lock(&best_effort.queue).abandon();
        if left > 0 {
            self.inner.metrics.queued.sub(left as i64);
            self.inner
                .metrics
                .dropped(DropReason::Shutdown, left as u64);
            tracing::warn!(
                events = left,
                "grace period over before the export queue was sent; its events are dropped"
            );
        }
    }

    /// Whether a `bestEffort` queue still holds events (waiting or being sent): a pool reload
    /// that stops using this exporter keeps it until they are sent, so that the shutdown flush
    /// reaches them too.
    pub fn holds_events(&self) -> bool {
        self.inner
            .best_effort
            .as_ref()
            .is_some_and(|best_effort| lock(&best_effort.queue).held() > 0)
    }

    /// Starts the grouping task once.
    fn start(&self) {
        let receiver = self
            .inner
            .receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(receiver) = receiver {
            tokio::spawn(group_commit(self.inner.clone(), receiver));
        }
    }

    /// The exporter's series.
    pub fn metrics(&self) -> &ExportMetrics {
        &self.inner.metrics
    }
}

/// `m`'s guard, even if a thread panicked holding it (the data stay consistent: every update is
/// one statement).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BestEffort {
    /// Logs drops at most every [`queue::DROP_WARNING_INTERVAL`], with how many since the last.
    fn warn_dropped(&self, reason: DropReason, events: u64) {
        let now = Instant::now();
        let mut warned = lock(&self.warned);
        warned.1 += events;
        if warned
            .0
            .is_none_or(|last| now.duration_since(last) >= queue::DROP_WARNING_INTERVAL)
        {
            tracing::warn!(
                reason = reason.as_str(),
                events = warned.1,
                "export events dropped (bestEffort delivery); see cx_export_dropped_events_total"
            );
            *warned = (Some(now), 0);
        }
    }
}

/// The task of a `bestEffort` exporter: sends the queue's records in batches, each retried until
/// accepted or refused for good. Ends once the queue is empty and either the flush began or every
/// [`Exporter`] handle is gone (a pool reload replaced it).
async fn send_queued(inner: Arc<Inner>) {
    let Some(best_effort) = &inner.best_effort else {
        return;
    };
    loop {
        // Records to send, or the end.
        loop {
            {
                let queue = lock(&best_effort.queue);
                if queue.waiting() > 0 {
                    break;
                }
                if queue.closing {
                    return;
                }
            }
            if Arc::strong_count(&inner) == 1 {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), best_effort.wake.notified()).await;
        }
        let lingering = {
            let queue = lock(&best_effort.queue);
            !queue.closing && queue.waiting() < inner.max_batch_events
        };
        if lingering {
            tokio::time::sleep(inner.linger).await;
        }
        let batch = lock(&best_effort.queue).take(inner.max_batch_events);
        let events = batch.len();
        let body = Bytes::from(encode::request(&inner.resource, batch).encode_to_vec());
        loop {
            match inner.send_body(body.clone()).await {
                Ok(()) => {
                    inner.metrics.exported(events as u64);
                    break;
                }
                Err(failure) => {
                    inner.metrics.failed(failure.reason, events as u64);
                    if !failure.retryable {
                        inner.metrics.dropped(DropReason::Rejected, events as u64);
                        tracing::warn!(
                            reason = failure.reason.as_str(),
                            events,
                            "export request refused for good; its events are dropped \
                             (bestEffort delivery)"
                        );
                        break;
                    }
                    tracing::debug!(
                        reason = failure.reason.as_str(),
                        events,
                        "export request failed; retrying"
                    );
                    tokio::time::sleep(queue::retry_delay(&failure)).await;
                }
            }
        }
        lock(&best_effort.queue).resolved(events);
        inner.metrics.queued.sub(events as i64);
    }
}

/// Groups submissions and sends each group as one export request: a group holds what waited
/// while the previous requests were in flight (and, with a linger, what came during it), so it
/// grows with the load and an idle collector sends at once.
async fn group_commit(inner: Arc<Inner>, mut receiver: mpsc::Receiver<Submission>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Told whenever an export request was answered (its permit is released just before).
    let answered = Arc::new(Notify::new());
    while let Some(first) = receiver.recv().await {
        let mut events = first.records.len();
        let mut group = vec![first];
        if !inner.linger.is_zero() {
            let deadline = Instant::now() + inner.linger;
            while events < inner.max_batch_events {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(next)) => {
                        events += next.records.len();
                        group.push(next);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // What came while every request was in flight joins this one.
        while events < inner.max_batch_events {
            let Ok(next) = receiver.try_recv() else {
                break;
            };
            events += next.records.len();
            group.push(next);
        }
        // While other requests are in flight, a small group waits for more events or for
        // them to be answered: a few large requests cost the endpoint (and this process) far
        // less than many small ones, and the wait is at most one request's round trip.
        let small_group = group_threshold(inner.max_batch_events);
        while events < small_group && in_flight.available_permits() < MAX_IN_FLIGHT - 1 {
            tokio::select! {
                next = receiver.recv() => match next {
                    Some(next) => {
                        events += next.records.len();
                        group.push(next);
                    }
                    None => break,
                },
                () = answered.notified() => {}
            }
        }
        let inner = inner.clone();
        let answered = answered.clone();
        tokio::spawn(async move {
            let _answered = NotifyOnDrop(answered);
            let _permit = permit;
            inner.metrics.pending.sub(events as i64);
            let mut records = Vec::with_capacity(events);
            let mut waiting = Vec::with_capacity(group.len());
            for submission in group {
                records.extend(submission.records);
                waiting.push(submission.done);
            }
            let result = inner.send(records).await;
            match result {
                Ok(()) => inner.metrics.exported(events as u64),
                Err(failure) => {
                    tracing::warn!(
                        reason = failure.reason.as_str(),
                        retryable = failure.retryable,
                        events,
                        "export request failed; its events are answered 503"
                    );
                    inner.metrics.failed(failure.reason, events as u64);
                }
            }
            for done in waiting {
                // A producer that went away has nothing to be told.
                let _ = done.send(result);
            }
        });
    }
}

/// The fewest events a group holds to be sent while other export requests are in flight (or
/// `maxBatchEvents`, when smaller). At 64 single-event connections to the file-only
/// OpenTelemetry Collector of `benches/export-load.sh`, 32 made groups of 23 events and the most
/// requests/s: 8 made groups of 10, 64 and 128 made groups of 28 but left the endpoint idle
/// between them.
pub const SLOT_GROUP_EVENTS: usize = 32;

/// The fewest events a group holds to be sent while other export requests are in flight.
fn group_threshold(max_batch_events: usize) -> usize {
    SLOT_GROUP_EVENTS.min(max_batch_events)
}

/// Wakes the grouping task once an export request's permit is released (locals drop in reverse
/// order of declaration: declared before the permit, this drops after it).
struct NotifyOnDrop(Arc<Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

impl Inner {
    /// One export request and the meaning of its answer.
    async fn send(&self, records: Vec<LogRecord>) -> Result<(), Failure> {
        let body = encode::request(&self.resource, records).encode_to_vec();
        self.send_body(Bytes::from(body)).await
    }

    /// One export request of an encoded body and the meaning of its answer.
    async fn send_body(&self, body: Bytes) -> Result<(), Failure> {
        let mut request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                header::USER_AGENT,
                concat!("cx-conductor/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let Ok(request) = request.body(Full::new(body)) else {
            return Err(Failure::transient(FailureReason::Unreachable));
        };
        let started = Instant::now();
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|_| Failure::transient(FailureReason::Unreachable))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|_| Failure::transient(FailureReason::Unreachable))?
                .to_bytes();
            response::classify(status, retry_after.as_deref(), &body)
        };
        let result = tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(Failure::transient(FailureReason::Timeout)));
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The `cx_export_*` series of a collector, labelled with its namespace only.
#[derive(Clone)]
pub struct ExportMetrics {
    registry: Registry,
    batches: [IntCounter; 2],
    events: [IntCounter; 2],
    failures: HashMap<FailureReason, IntCounter>,
    duration: Histogram,
    pending: IntGauge,
    queued: IntGauge,
    dropped: HashMap<DropReason, IntCounter>,
}

impl ExportMetrics {
    /// Registers the series, zero.
    pub fn new(namespace: &str) -> Result<ExportMetrics, prometheus::Error> {
        let registry = Registry::new();
        let labels = HashMap::from([("namespace".to_string(), namespace.to_string())]);
        let opts = |name: &str, help: &str| Opts::new(name, help).const_labels(labels.clone());
        let batches = IntCounterVec::new(
            opts(
                "cx_export_batches_total",
                "OTLP export requests, by result (exported: the endpoint accepted every record; \
                 failed: under guaranteed delivery their events were answered 503, under bestEffort they are \
                 retried or dropped).",
            ),
            &["result"],
        )?;
        let events = IntCounterVec::new(
            opts(
                "cx_export_events_total",
                "Events in OTLP export requests, by result (exported, failed).",
            ),
            &["result"],
        )?;
        let failures = IntCounterVec::new(
            opts(
                "cx_export_failures_total",
                "Failed OTLP export requests (and events refused for a full export queue), by \
                 reason.",
            ),
            &["reason"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "cx_export_duration_seconds",
                "Time from sending an OTLP export request to its answer, in seconds.",
            )
            .const_labels(labels.clone())
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        let pending = IntGauge::with_opts(opts(
            "cx_export_pending_events",
            "Events handed to the exporter and not yet in an export request.",
        ))?;
        let queued = IntGauge::with_opts(opts(
            "cx_export_queued_events",
            "Events in bestEffort export queues (answered, not yet accepted by the endpoint), \
             those being sent included.",
        ))?;
        let dropped = IntCounterVec::new(
            opts(
                "cx_export_dropped_events_total",
                "Events answered 2xx under bestEffort delivery and never exported, by reason \
                 (queue_full, rejected, shutdown).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(queued.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(batches.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        Ok(ExportMetrics {
            registry,
            batches: [
                batches.with_label_values(&["exported"]),
                batches.with_label_values(&["failed"]),
            ],
            events: [
                events.with_label_values(&["exported"]),
                events.with_label_values(&["failed"]),
            ],
            failures: FailureReason::ALL
                .iter()
                .map(|reason| (*reason, failures.with_label_values(&[reason.as_str()])))
                .collect(),
            duration,
            pending,
            queued,
            dropped: DropReason::ALL
                .iter()
                .map(|reason| (*reason, dropped.with_label_values(&[reason.as_str()])))
                .collect(),
        })
    }

    fn dropped(&self, reason: DropReason, events: u64) {
        if let Some(counter) = self.dropped.get(&reason) {
            counter.inc_by(events);
        }
    }

    fn exported(&self, events: u64) {
        self.batches[0].inc();
        self.events[0].inc_by(events);
    }

    fn failed(&self, reason: FailureReason, events: u64) {
        if reason != FailureReason::QueueFull {
            self.batches[1].inc();
        }
        self.events[1].inc_by(events);
        if let Some(counter) = self.failures.get(&reason) {
            counter.inc();
        }
    }

    /// Events exported so far.
    pub fn exported_events(&self) -> u64 {
        self.events[0].get()
    }

    /// Every series.
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_base_urls() {
        assert_eq!(
            logs_url("http://otel:4318").expect("valid").to_string(),
            "http://otel:4318/v1/logs"
        );
        assert_eq!(
            logs_url("https://otel.example/prefix/")
                .expect("valid")
                .to_string(),
            "https://otel.example/prefix/v1/logs"
        );
        for bad in ["otel:4318", "ftp://otel", "", "http://"] {
            assert!(logs_url(bad).is_err(), "{bad}");
            assert_eq!(shown_logs_url(bad), None);
        }
        assert_eq!(
            shown_logs_url("https://otel.example:4318/base/").as_deref(),
            Some("https://otel.example:4318/base/v1/logs")
        );
        for refused in [
            "https://user:s3cret@otel.example:4318",
            "https://otel.example:4318/base?token=x",
            "https://otel.example#frag",
        ] {
            let error = logs_url(refused).unwrap_err().0;
            assert!(
                error.contains("no query, fragment or credentials"),
                "{error}"
            );
            assert!(
                !error.contains("s3cret") && !error.contains("token=x"),
                "{error}"
            );
            assert_eq!(shown_logs_url(refused), None);
        }
    }

    /// An exporter of the collector's export `config` (JSON), for namespace `retail`.
    fn exporter_of(config: serde_json::Value) -> Exporter {
        let config: crate::collector::config::ExportConfig =
            serde_json::from_value(config).expect("config");
        Exporter::new(
            &ExporterKey::of(&config),
            encode::resource("retail", "pod-0", true),
            ExportMetrics::new("retail").expect("metrics"),
        )
        .expect("exporter")
    }

    /// An endpoint on loopback that holds every export request until `release` is notified,
    /// and reports each request's record count as it arrives.
    async fn holding_endpoint() -> (
        String,
        tokio::sync::mpsc::UnboundedReceiver<usize>,
        Arc<tokio::sync::Semaphore>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let address = listener.local_addr().expect("address");
        let (arrived, requests) = tokio::sync::mpsc::unbounded_channel();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let gate = release.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (arrived, gate) = (arrived.clone(), gate.clone());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    loop {
                        let mut chunk = [0_u8; 4096];
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buffer).to_lowercase();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buffer.len() < end + 4 + length {
                            continue;
                        }
                        let body = &buffer[end + 4..end + 4 + length];
                        let request = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(body)
                            .expect("an OTLP request");
                        let records = request.resource_logs[0].scope_logs[0].log_records.len();
                        let _ = arrived.send(records);
                        gate.acquire().await.expect("gate").forget();
                        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        buffer.drain(..end + 4 + length);
                    }
                });
            }
        });
        (format!("http://{address}"), requests, release)
    }

    /// Group commit without a linger: a group goes at once when nothing is in flight; while
    /// requests are in flight, a small group waits for their answers (a few large requests cost
    /// the endpoint far less than many small ones: at 64 single-event connections this made
    /// groups of 23 events instead of 8), and a group of [`SLOT_GROUP_EVENTS`] takes a free slot.
    #[tokio::test]
    async fn small_groups_wait_for_the_requests_in_flight_and_large_ones_take_a_free_slot() {
        let (endpoint, mut requests, release) = holding_endpoint().await;
        let exporter = exporter_of(serde_json::json!({
            "endpoint": endpoint,
            "timeoutMillis": 10_000,
            "lingerMillis": 0,
            "maxBatchEvents": 2 * SLOT_GROUP_EVENTS,
        }));
        let submit = |events: usize| {
            let exporter = exporter.clone();
            tokio::spawn(async move { exporter.export(vec![LogRecord::default(); events]).await })
        };
        let pending = |events: usize| {
            let exporter = exporter.clone();
            async move {
                while exporter.inner.metrics.pending.get() < events as i64 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        let mut answers = vec![submit(1)];
        assert_eq!(requests.recv().await, Some(1), "nothing in flight: at once");
        let small = SLOT_GROUP_EVENTS - 1;
        for _ in 0..small {
            answers.push(submit(1));
        }
        pending(small).await;
        let early = tokio::time::timeout(Duration::from_millis(200), requests.recv()).await;
        assert!(
            early.is_err(),
            "{small} events went while a request was in flight: {early:?}"
        );
        // One more makes the group large enough for a free slot.
        answers.push(submit(1));
        assert_eq!(
            requests.recv().await,
            Some(SLOT_GROUP_EVENTS),
            "those waiting, in one request"
        );
        for _ in 2..MAX_IN_FLIGHT {
            answers.push(submit(SLOT_GROUP_EVENTS));
            assert_eq!(
                requests.recv().await,
                Some(SLOT_GROUP_EVENTS),
                "a large group, at once"
            );
        }
        // Every slot busy: what comes waits, and goes as one request once a slot is free.
        let waiting = SLOT_GROUP_EVENTS + 8;
        for _ in 0..waiting {
            answers.push(submit(1));
        }
        pending(waiting).await;
        release.add_permits(1);
        assert_eq!(
            requests.recv().await,
            Some(waiting),
            "those waiting, in one request"
        );
        // The last small group goes once the requests in flight are answered.
        answers.push(submit(1));
        pending(1).await;
        release.add_permits(MAX_IN_FLIGHT);
        assert_eq!(requests.recv().await, Some(1));
        release.add_permits(1);
        for answer in answers {
            assert!(answer.await.expect("joined").is_ok());
        }
        let exported = 1 + SLOT_GROUP_EVENTS * (MAX_IN_FLIGHT - 1) + waiting + 1;
        assert_eq!(exporter.inner.metrics.exported_events(), exported as u64);
    }

    /// A pool reload replaces an exporter: once its handles are dropped, its grouping task ends
    /// and releases it (before, the task held the channel's sender through the exporter's state
    /// and waited on it forever, one task and one HTTP client leaked per reload).
    #[tokio::test]
    async fn a_replaced_exporter_ends_its_grouping_task() {
        let exporter = exporter_of(serde_json::json!({
            "endpoint": "http://127.0.0.1:9",
            "timeoutMillis": 200,
            "lingerMillis": 1,
            "maxBatchEvents": 10,
        }));
        // Nothing listens: the export fails, but the grouping task has started and holds it.
        let answer = exporter.export(vec![LogRecord::default()]).await;
        assert!(answer.is_err(), "{answer:?}");
        let state = Arc::downgrade(&exporter.inner);
        let copy = exporter.clone();
        drop(exporter);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(state.upgrade().is_some(), "a handle is left");
        drop(copy);
        let released = tokio::time::timeout(Duration::from_secs(5), async {
            while state.upgrade().is_some() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            released.is_ok(),
            "the grouping task still holds the exporter"
        );
    }
}
