//! The HTTP shell around the event parser: routes, authentication, content types, body limits and
//! JSON answers. No validation logic lives here.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tower_http::timeout::TimeoutLayer;

use super::event::{Event, NdjsonStream, Reason, Rejection, parse_event, parse_json_array};
use super::export::{Failure, now_unix_nano};
use super::pool::{PoolMetrics, Routes, Served};

/// Path of the single-event endpoint.
pub const EVENTS_PATH: &str = "/v1/events";
/// Path of the batch endpoint (a literal `:` — axum 0.8 only treats `{...}` as a capture).
pub const BATCH_PATH: &str = "/v1/events:batch";
/// Largest batch body, whatever `maxEventBytes`: bounds memory per request.
pub const MAX_BATCH_BYTES: usize = 16 << 20;
/// A batch may be this many times `maxEventBytes` (then capped at [`MAX_BATCH_BYTES`]).
pub const BATCH_BYTES_FACTOR: usize = 1000;
/// Rejected events detailed in a batch answer; the rest are only counted.
pub const MAX_REPORTED_REJECTIONS: usize = 100;

/// Largest batch body for a touchpoint: `maxEventBytes × 1000`, capped at 16 MiB.
pub fn batch_limit(max_event_bytes: usize) -> usize {
    max_event_bytes
        .saturating_mul(BATCH_BYTES_FACTOR)
        .min(MAX_BATCH_BYTES)
        .max(max_event_bytes)
}

/// Seconds a client is told to wait (`Retry-After`) before retrying a request refused because of
/// the collector's state (overload, shutdown).
pub const RETRY_AFTER_SECONDS: u32 = 1;
/// Longest wait for a batch parser once a body (or an NDJSON chunk) has arrived: parsing takes
/// milliseconds, so a longer queue means overload, answered 503 rather than a stall.
pub const PARSE_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Where a collector is in its life; see [`super::server::Collector::serve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Ready, events accepted.
    Serving = 0,
    /// Shutdown requested: `/readyz` answers 503, events are still accepted while the endpoints
    /// propagate.
    Draining = 1,
    /// Events refused (503, `Retry-After`, `Connection: close`); in-flight ones finish, then
    /// `/metrics` keeps serving for the final scrapes.
    Refusing = 2,
}

/// Path of a pool's single-event endpoint for one touchpoint.
pub const TOUCHPOINT_EVENTS_PATH: &str = "/v1/touchpoints/{touchpoint}/events";
/// Path of a pool's batch endpoint for one touchpoint.
pub const TOUCHPOINT_BATCH_PATH: &str = "/v1/touchpoints/{touchpoint}/events:batch";

/// State shared by every request.
pub(crate) struct App {
    /// The touchpoints served; a pool swaps them on reconfiguration.
    pub(crate) routes: RwLock<Arc<Routes>>,
    /// The pool's own series (reloads, unknown touchpoints, refusals of no touchpoint).
    pub(crate) pool: PoolMetrics,
    /// A [`Phase`]: changed on SIGTERM so `/readyz` answers 503 and then events are refused.
    pub(crate) phase: AtomicU8,
    /// Batches parsed at once (CPU, not memory: bodies are read before a permit is taken).
    pub(crate) batch_permits: Semaphore,
    /// One permit per byte of request body held in memory, single events and batches alike:
    /// bounds the memory of bodies being read or parsed whatever the number of connections.
    pub(crate) body_budget: Semaphore,
    /// Longest wait for a request body (and for a batch permit).
    pub(crate) request_timeout: Duration,
}

/// Extra time the whole-request timeout gives beyond the body deadline, so that the handler's own
/// 408 (JSON, counted) is what clients normally see.
const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// The collector's routes.
pub(crate) fn router(app: Arc<App>) -> Router {
    // Backstop for anything that could stall a request beyond the body deadline.
    let timeout = TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        app.request_timeout + REQUEST_TIMEOUT_MARGIN,
    );
    Router::new()
        .route(EVENTS_PATH, post(post_event))
        .route(BATCH_PATH, post(post_batch))
        .route(TOUCHPOINT_EVENTS_PATH, post(post_touchpoint_event))
        .route(TOUCHPOINT_BATCH_PATH, post(post_touchpoint_batch))
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(timeout)
        .layer(axum::middleware::map_response(json_for_bare_errors))
        .with_state(app)
}

/// Gives a JSON error body to an error answer that has none (the timeout backstop's 408), so
/// every refusal reads the same.
async fn json_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let reason = if status == StatusCode::REQUEST_TIMEOUT {
        "timeout"
    } else {
        "error"
    };
    let message = status.canonical_reason().unwrap_or("request refused");
    error_response(status, reason, None, message)
}

async fn post_event(State(app): State<Arc<App>>, request: Request) -> Response {
    match app.dedicated() {
        Ok(touchpoint) => event(&app, &touchpoint, request).await,
        Err(refusal) => *refusal,
    }
}

async fn post_batch(State(app): State<Arc<App>>, request: Request) -> Response {
    match app.dedicated() {
        Ok(touchpoint) => batch(&app, &touchpoint, request).await,
        Err(refusal) => *refusal,
    }
}

async fn post_touchpoint_event(
    State(app): State<Arc<App>>,
    name: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    match app.pooled(name) {
        Ok(touchpoint) => event(&app, &touchpoint, request).await,
        Err(refusal) => *refusal,
    }
}

async fn post_touchpoint_batch(
    State(app): State<Arc<App>>,
    name: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    match app.pooled(name) {
        Ok(touchpoint) => batch(&app, &touchpoint, request).await,
        Err(refusal) => *refusal,
    }
}

/// One event for `app`, a served touchpoint of `pool`.
async fn event(pool: &App, app: &Served, request: Request) -> Response {
    let deadline = Instant::now() + pool.request_timeout;
    let (parts, body) = request.into_parts();
    if let Err(rejection) = pool.admit().and_then(|()| app.authorize(&parts.headers)) {
        return app.refuse(rejection);
    }
    if media_type(&parts.headers) != Some(MediaType::Json) {
        return app.refuse(unsupported_media_type("application/json"));
    }
    let limit = app.schema.max_event_bytes();
    let (bytes, _memory) = match read_body(body, &parts.headers, limit, deadline, pool).await {
        Ok(read) => read,
        Err(rejection) => return app.refuse(rejection),
    };
    match parse_event(&bytes, &app.schema) {
        Ok(event) => {
            // Exported (when configured) before it is counted or answered: a 2xx is never sent
            // for an event the export endpoint has not accepted.
            if let Some(export) = &app.export
                && let Some(record) = app.log_record(&event, now_unix_nano())
                && let Err(failure) = export.exporter.export(vec![record]).await
            {
                return app.refuse_export(failure);
            }
            // Counted before the answer exists: a 2xx is never sent for an uncounted event.
            app.metrics.record(&event);
            accepted_one()
        }
        Err(rejection) => app.refuse(rejection),
    }
}

/// A batch of events for `app`, a served touchpoint of `pool`.
async fn batch(pool: &App, app: &Served, request: Request) -> Response {
    let deadline = Instant::now() + pool.request_timeout;
    let (parts, body) = request.into_parts();
    if let Err(rejection) = pool.admit().and_then(|()| app.authorize(&parts.headers)) {
        return app.refuse(rejection);
    }
    let Some(format) = media_type(&parts.headers).filter(|m| *m != MediaType::Other) else {
        return app.refuse(unsupported_media_type(
            "application/x-ndjson or application/json",
        ));
    };
    let mut tally = app.metrics.tally();
    let mut errors = Vec::new();
    let mut records = Vec::new();
    let observed = now_unix_nano();
    let mut on_event = |index: usize, result: Result<Event<'_>, Rejection>| match result {
        Ok(event) => {
            if let Some(record) = app.log_record(&event, observed) {
                records.push(record);
            }
            tally.record(&event)
        }
        Err(rejection) => {
            tally.reject(rejection.reason);
            if errors.len() < MAX_REPORTED_REJECTIONS {
                errors.push(EventError::new(index, rejection));
            }
        }
    };
    // A body and a parser are taken apart, so a slow upload holds only the memory it has sent and
    // never a parser; a parser is then free within milliseconds.
    let parsed = parse_batch(
        pool,
        app,
        format,
        body,
        &parts.headers,
        deadline,
        &mut on_event,
    )
    .await;
    // The body's memory stays reserved while its records are exported.
    let _memory = match parsed {
        Ok(memory) => memory,
        Err(rejection) => {
            // Nothing of a refused batch is counted but the refusal itself (the tally is dropped).
            drop(tally);
            return app.refuse(rejection);
        }
    };
    if let Some(export) = &app.export
        && let Err(failure) = export.exporter.export(records).await
    {
        // Nothing of the batch is counted but the refusal itself (the tally is dropped).
        drop(tally);
        return app.refuse_export(failure);
    }
    let accepted = tally.accepted();
    // The tally holds the exact count; `errors` may be truncated.
    let rejected = tally.rejected();
    tally.commit();
    tracing::debug!(accepted, rejected, "batch processed");

    let first_error = (accepted == 0 && rejected > 0)
        .then(|| errors.first())
        .flatten()
        .map(|first| ErrorDetail {
            reason: first.reason,
            field: first.field.as_deref(),
            message: "every event of the batch was rejected; see errors",
        });
    let status = if first_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let report = BatchReport {
        error: first_error,
        accepted,
        rejected,
        errors: &errors,
    };
    json_response(status, &report)
}

/// Waits for a batch parser, at most [`PARSE_QUEUE_WAIT`].
async fn batch_parser(pool: &App, deadline: Instant) -> Result<SemaphorePermit<'_>, Rejection> {
    let parse_deadline = deadline.min(Instant::now() + PARSE_QUEUE_WAIT);
    match tokio::time::timeout_at(parse_deadline, pool.batch_permits.acquire()).await {
        Ok(Ok(parser)) => Ok(parser),
        _ => Err(Rejection::whole(
            Reason::Overloaded,
            "the collector is busy with other batches; retry later",
        )),
    }
}

/// Parses a batch body: NDJSON chunk by chunk as it arrives (a chunk and an unfinished line
/// held, a parser taken per chunk), a JSON array whole once it has arrived (a broken one is
/// refused whole), each at most [`batch_limit`] bytes. Returns the body's memory reservation.
async fn parse_batch<'a, F>(
    pool: &'a App,
    app: &Served,
    format: MediaType,
    body: Body,
    headers: &HeaderMap,
    deadline: Instant,
    on_event: &mut F,
) -> Result<SemaphorePermit<'a>, Rejection>
where
    F: for<'b> FnMut(usize, Result<Event<'b>, Rejection>),
{
    let limit = batch_limit(app.schema.max_event_bytes());
    if format != MediaType::Ndjson {
        let (bytes, memory) = read_body(body, headers, limit, deadline, pool).await?;
        let _parser = batch_parser(pool, deadline).await?;
        parse_json_array(&bytes, &app.schema, on_event)?;
        return Ok(memory);
    }
    let mut chunks = BodyChunks::new(body, headers, limit, deadline, pool)?;
    let mut lines = NdjsonStream::default();
    while let Some(chunk) = chunks.next().await? {
        let _parser = batch_parser(pool, deadline).await?;
        lines.feed(&chunk, &app.schema, &mut *on_event);
    }
    let _parser = batch_parser(pool, deadline).await?;
    lines.finish(&app.schema, on_event);
    Ok(chunks.memory)
}

async fn get_metrics(State(app): State<Arc<App>>) -> Response {
    match app.pool.render(&app.routes()) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render metrics");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
                "cannot render metrics",
            )
        }
    }
}

async fn healthz() -> Response {
    json_static(StatusCode::OK, br#"{"status":"ok"}"#)
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.phase() != Phase::Serving {
        json_static(StatusCode::SERVICE_UNAVAILABLE, br#"{"status":"draining"}"#)
    } else {
        json_static(StatusCode::OK, br#"{"status":"ready"}"#)
    }
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
        "no such endpoint: events go to POST /v1/events or /v1/events:batch (a pool: \
         /v1/touchpoints/<touchpoint>/events or .../events:batch)",
    )
}

async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
        "method not allowed on this endpoint",
    )
}

/// The answer of a connection beyond the connection limit (see [`overflow_router`]).
async fn overloaded(State(app): State<Arc<App>>) -> Response {
    app.refuse(Rejection::whole(
        Reason::Overloaded,
        "the collector has no free connection; retry later",
    ))
}

/// Routes of the health listener: probes and metrics only, on their own port and connection
/// budget so a flood of event connections cannot starve them.
pub(crate) fn health_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found_health)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

/// Routes of a connection taken on the overload reserve: probes and metrics as usual, everything
/// else 503 with `Retry-After` at once, without reading the body.
pub(crate) fn overflow_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(overloaded)
        .with_state(app)
}

async fn not_found_health() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
        "no such endpoint: this port serves GET /healthz, /readyz and /metrics",
    )
}

impl App {
    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            0 => Phase::Serving,
            1 => Phase::Draining,
            _ => Phase::Refusing,
        }
    }

    /// Moves to `phase` (never back).
    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::SeqCst);
    }

    /// Refuses new events once the collector has started refusing them (shutdown).
    fn admit(&self) -> Result<(), Rejection> {
        if self.phase() >= Phase::Refusing {
            return Err(Rejection::whole(
                Reason::ShuttingDown,
                "this collector is shutting down; retry, another replica takes the event",
            ));
        }
        Ok(())
    }

    /// The touchpoints served now.
    pub(crate) fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serves `routes` from now on (requests already routed finish with the old ones).
    pub(crate) fn swap(&self, routes: Routes) {
        self.pool.serving(routes.by_name.len());
        *self.routes.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(routes);
    }

    /// Events accepted so far, over every touchpoint served.
    pub(crate) fn received(&self) -> u64 {
        self.routes()
            .by_name
            .values()
            .map(|t| t.metrics.received())
            .sum()
    }

    /// Counts and answers a refusal that no touchpoint is charged with (a dedicated
    /// collector charges its touchpoint).
    fn refuse(&self, rejection: Rejection) -> Response {
        match self.routes().only() {
            Some(touchpoint) => touchpoint.refuse(rejection),
            None => {
                self.pool.refused(rejection.reason);
                refusal_response(rejection)
            }
        }
    }

    /// The touchpoint of a dedicated collector; a pool answers 404 naming its own paths.
    fn dedicated(&self) -> Result<Arc<Served>, Box<Response>> {
        self.routes().only().cloned().ok_or_else(|| {
            self.pool.unknown_touchpoint.inc();
            Box::new(error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                None,
                "this collector is a pool serving several touchpoints: POST to \
                 /v1/touchpoints/<touchpoint>/events or /v1/touchpoints/<touchpoint>/events:batch",
            ))
        })
    }

    /// The pooled touchpoint a request names; 404 with its name when it is not served here.
    fn pooled(
        &self,
        name: Result<Path<String>, PathRejection>,
    ) -> Result<Arc<Served>, Box<Response>> {
        let unknown = |message: String| {
            self.pool.unknown_touchpoint.inc();
            Box::new(error_response(
                StatusCode::NOT_FOUND,
                "unknown_touchpoint",
                Some("touchpoint"),
                &message,
            ))
        };
        let Ok(Path(name)) = name else {
            return Err(unknown(
                "the touchpoint in the path is not a valid name".to_string(),
            ));
        };
        let routes = self.routes();
        match routes.by_name.get(&name) {
            Some(served) => Ok(served.clone()),
            None => {
                let namespace = routes
                    .by_name
                    .values()
                    .next()
                    .map(|s| format!(" of namespace {}", s.config.namespace))
                    .unwrap_or_default();
                // The name is echoed only when it is a plausible touchpoint name.
                let shown = if name.len() <= 63
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                {
                    format!("touchpoint {name}")
                } else {
                    "the touchpoint named in the path".to_string()
                };
                Err(unknown(format!(
                    "{shown} is not served by this collector{namespace}: check the name, or \
                     that the Touchpoint exists and is pooled (status.collector.endpoint)"
                )))
            }
        }
    }
}

impl Served {
    /// Checks `Authorization: Bearer <token>` when a token is configured.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let Some(expected) = &self.token_digest else {
            return Ok(());
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| bearer_token(value.as_bytes()));
        let Some(presented) = presented else {
            return Err(Rejection::whole(
                Reason::Unauthorized,
                "missing bearer token (Authorization: Bearer <token>)",
            ));
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        if bool::from(digest.ct_eq(expected)) {
            Ok(())
        } else {
            Err(Rejection::whole(Reason::Unauthorized, "wrong bearer token"))
        }
    }

    /// Counts a refused request and answers it.
    fn refuse(&self, rejection: Rejection) -> Response {
        self.metrics.reject(rejection.reason);
        refusal_response(rejection)
    }

    /// Counts and answers a request whose events the export endpoint did not accept: 503 with
    /// the `Retry-After` the failure calls for. The message names the bounded reason only.
    fn refuse_export(&self, failure: Failure) -> Response {
        let message = format!(
            "the events could not be delivered to the export pipeline ({}); nothing of this \
             request was accepted: retry it with the same eventId",
            failure.reason.as_str()
        );
        let mut response = self.refuse(Rejection::whole(Reason::ExportUnavailable, message));
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(failure.retry_after_seconds),
        );
        response
    }
}

/// The answer to a refused request: status, JSON body and the headers its reason calls for.
fn refusal_response(rejection: Rejection) -> Response {
    {
        tracing::debug!(
            reason = rejection.reason.as_str(),
            field = rejection.field.as_deref(),
            "request refused"
        );
        let status = StatusCode::from_u16(rejection.reason.http_status())
            .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        let mut response = error_response(
            status,
            rejection.reason.as_str(),
            rejection.field.as_deref(),
            &rejection.message,
        );
        if rejection.reason == Reason::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if rejection.reason.retryable() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if rejection.reason == Reason::ShuttingDown {
            // The retry should open a connection, which the Service sends to another replica.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Content types the collector reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MediaType {
    Json,
    Ndjson,
    Other,
}

/// The request's media type, ignoring parameters except a non-UTF-8 charset. `None` when absent.
fn media_type(headers: &HeaderMap) -> Option<MediaType> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let charset_ok = parts.all(|parameter| match parameter.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let value = value.trim().trim_matches('"');
            value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    });
    Some(if !charset_ok {
        MediaType::Other
    } else if essence.eq_ignore_ascii_case("application/json") {
        MediaType::Json
    } else if essence.eq_ignore_ascii_case("application/x-ndjson") {
        MediaType::Ndjson
    } else {
        MediaType::Other
    })
}

fn unsupported_media_type(expected: &'static str) -> Rejection {
    Rejection::field(
        Reason::UnsupportedMediaType,
        "Content-Type",
        format!("Content-Type must be {expected}"),
    )
}

fn too_large(limit: usize) -> Rejection {
    Rejection::whole(
        Reason::TooLarge,
        format!("the body is larger than the {limit} bytes allowed"),
    )
}

/// The request's Content-Length, when it has a valid one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
}

/// Refuses a body whose declared Content-Length exceeds `limit`, without reading it.
fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), Rejection> {
    match declared_length(headers) {
        Some(length) if length > limit as u64 => Err(too_large(limit)),
        _ => Ok(()),
    }
}

/// Refused when the body memory budget is spent.
fn no_memory() -> Rejection {
    Rejection::whole(
        Reason::Overloaded,
        "the collector holds too many request bodies; retry later",
    )
}

/// Reads the whole body (see [`BodyChunks`]), keeping it without a copy when it came as one
/// chunk, the usual case.
async fn read_body<'a>(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    deadline: Instant,
    app: &'a App,
) -> Result<(Bytes, SemaphorePermit<'a>), Rejection> {
    let mut chunks = BodyChunks::new(body, headers, limit, deadline, app)?;
    let mut buffer = bytes::BytesMut::with_capacity(chunks.declared.unwrap_or(0));
    let mut first: Option<Bytes> = None;
    while let Some(data) = chunks.next().await? {
        match first.take() {
            None if buffer.is_empty() => first = Some(data),
            None => buffer.extend_from_slice(&data),
            Some(previous) => {
                buffer.extend_from_slice(&previous);
                buffer.extend_from_slice(&data);
            }
        }
    }
    let bytes = first.unwrap_or_else(|| buffer.freeze());
    Ok((bytes, chunks.memory))
}

/// A request body chunk by chunk, refused as soon as it exceeds `limit` or misses `deadline`,
/// holding one permit of `app.body_budget` per byte received (all of a declared Content-Length
/// up front): when the budget is spent the request is refused (503) at once rather than queued.
/// A streamed batch holds less than it has received, but what its events become (a tally, the
/// records to export) grows with it, so the budget keeps counting every byte.
struct BodyChunks<'a> {
    body: Body,
    limit: usize,
    deadline: Instant,
    app: &'a App,
    declared: Option<usize>,
    received: usize,
    memory: SemaphorePermit<'a>,
}

impl<'a> BodyChunks<'a> {
    fn new(
        body: Body,
        headers: &HeaderMap,
        limit: usize,
        deadline: Instant,
        app: &'a App,
    ) -> Result<Self, Rejection> {
        check_declared_length(headers, limit)?;
        let declared = declared_length(headers).and_then(|l| usize::try_from(l).ok());
        let memory = Self::reserve(app, declared.unwrap_or(0))?;
        Ok(BodyChunks {
            body,
            limit,
            deadline,
            app,
            declared,
            received: 0,
            memory,
        })
    }

    fn reserve(app: &App, bytes: usize) -> Result<SemaphorePermit<'_>, Rejection> {
        u32::try_from(bytes)
            .ok()
            .and_then(|bytes| app.body_budget.try_acquire_many(bytes).ok())
            .ok_or_else(no_memory)
    }

    /// The next chunk of data, or `None` at the end of the body.
    async fn next(&mut self) -> Result<Option<Bytes>, Rejection> {
        loop {
            let frame = match tokio::time::timeout_at(self.deadline, self.body.frame()).await {
                Err(_) => {
                    return Err(Rejection::whole(
                        Reason::Timeout,
                        "the request body did not arrive in time",
                    ));
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(_))) => {
                    return Err(Rejection::whole(
                        Reason::Malformed,
                        "the request body could not be read",
                    ));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let received = self.received + data.len();
            if received > self.limit {
                return Err(too_large(self.limit));
            }
            let reserved = self.memory.num_permits();
            if received > reserved {
                self.memory
                    .merge(Self::reserve(self.app, received - reserved)?);
            }
            self.received = received;
            return Ok(Some(data));
        }
    }
}

fn accepted_one() -> Response {
    json_static(StatusCode::ACCEPTED, br#"{"accepted":1}"#)
}

fn json_static(status: StatusCode, body: &'static [u8]) -> Response {
    let mut response = Response::new(Body::from(Bytes::from_static(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(_) => json_static(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":{"reason":"internal","field":null,"message":"cannot encode the answer"}}"#,
        ),
    }
}

fn error_response(
    status: StatusCode,
    reason: &str,
    field: Option<&str>,
    message: &str,
) -> Response {
    json_response(
        status,
        &ErrorBody {
            error: ErrorDetail {
                reason,
                field,
                message,
            },
        },
    )
}

/// The JSON error body, for answers written outside axum.
pub(crate) fn error_body(reason: &str, field: Option<&str>, message: &str) -> String {
    serde_json::to_string(&ErrorBody {
        error: ErrorDetail {
            reason,
            field,
            message,
        },
    })
    .unwrap_or_default()
}

/// `{"error": {...}}`, the body of every 4xx and 5xx.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    reason: &'a str,
    field: Option<&'a str>,
    message: &'a str,
}

/// The answer to a batch.
#[derive(Serialize)]
struct BatchReport<'a> {
    /// Present only when every event was rejected (422).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorDetail<'a>>,
    accepted: u64,
    rejected: u64,
    /// The first [`MAX_REPORTED_REJECTIONS`] rejected events.
    errors: &'a [EventError],
}

#[derive(Serialize)]
struct EventError {
    index: usize,
    reason: &'static str,
    field: Option<Cow<'static, str>>,
    message: Cow<'static, str>,
}

impl EventError {
    fn new(index: usize, rejection: Rejection) -> Self {
        EventError {
            index,
            reason: rejection.reason.as_str(),
            field: rejection.field,
            message: rejection.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("test header"),
        );
        headers
    }

    #[test]
    fn media_types_ignore_case_and_utf8_charset() {
        assert_eq!(
            media_type(&headers("Application/JSON; charset=UTF-8")),
            Some(MediaType::Json)
        );
        assert_eq!(
            media_type(&headers("application/x-ndjson")),
            Some(MediaType::Ndjson)
        );
        assert_eq!(
            media_type(&headers("application/json; charset=latin1")),
            Some(MediaType::Other)
        );
        assert_eq!(media_type(&headers("text/plain")), Some(MediaType::Other));
        assert_eq!(media_type(&HeaderMap::new()), None);
    }

    #[test]
    fn bearer_tokens_are_extracted_strictly() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }

    #[tokio::test]
    async fn bare_error_answers_get_the_json_error_body() {
        let mut bare = Response::new(Body::empty());
        *bare.status_mut() = StatusCode::REQUEST_TIMEOUT;
        let answer = json_for_bare_errors(bare).await;
        assert_eq!(answer.status(), StatusCode::REQUEST_TIMEOUT);
        let body = answer.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(
            &body[..],
            br#"{"error":{"reason":"timeout","field":null,"message":"Request Timeout"}}"#
        );
        let ours = json_for_bare_errors(accepted_one()).await;
        assert_eq!(ours.status(), StatusCode::ACCEPTED);
        let json = error_response(StatusCode::NOT_FOUND, "not_found", None, "x");
        let kept = json_for_bare_errors(json).await;
        let body = kept.into_body().collect().await.expect("body").to_bytes();
        assert!(body.starts_with(br#"{"error":{"reason":"not_found""#));
    }

    #[test]
    fn batch_limit_scales_with_event_size_and_is_capped() {
        assert_eq!(batch_limit(256), 256_000);
        assert_eq!(batch_limit(65_536), MAX_BATCH_BYTES);
        assert_eq!(batch_limit(1 << 20), MAX_BATCH_BYTES);
    }
}
