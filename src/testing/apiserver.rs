//! An in-process, stateful fake Kubernetes API server for controller tests.
//!
//! A real [`kube::Client`] talks to it over real HTTP/1.1 on `127.0.0.1`, so everything the
//! operator does (typed `Api` calls, server-side apply, `kube::runtime::watcher`, `Controller`,
//! the finalizer helper, the event `Recorder`) is exercised end to end without a cluster.
//! It is test support: it models the API *semantics* controllers depend on, not the whole server.
//!
//! # What it models
//! - **Discovery**: `GET /version`, `/api`, `/apis`, `/apis/{group}`, `/api/v1` and
//!   `/apis/{group}/{version}` resource lists (with `*/status` entries), and the aggregated
//!   `apidiscovery.k8s.io/v2` form of `/api` and `/apis` when asked for by `Accept`.
//! - **Served resources** are configurable ([`ResourceKind`]: group, version, kind, plural,
//!   namespaced, status subresource). Defaults: core `v1` Namespace, ConfigMap, Secret, Service,
//!   Pod, Event; `events.k8s.io/v1` Event (what kube-runtime's `Recorder` posts to); `apps/v1`
//!   Deployment; `policy/v1` PodDisruptionBudget; `networking.k8s.io/v1` NetworkPolicy;
//!   `coordination.k8s.io/v1` Lease; `apiextensions.k8s.io/v1` CustomResourceDefinition; and the
//!   `cx.conductor.dev/v1alpha1` kinds. Creating a CRD object registers the kinds it serves
//!   (deleting it unregisters them and drops their objects without watch events).
//! - **Verbs**, namespaced and cluster-wide: create (`POST`, with `generateName`), get, list
//!   (`labelSelector` with `=`, `==`, `!=`, `in`, `notin`, exists, `!`; `fieldSelector` with
//!   `=`, `==`, `!=` on any dotted path such as `metadata.name`; `limit`/`continue` pagination;
//!   list `metadata.resourceVersion`), watch, replace (`PUT`), delete, deletecollection and patch:
//!   `application/merge-patch+json` (RFC 7386), `application/json-patch+json` (RFC 6902; `test` of
//!   a missing path against `null` succeeds, as in Kubernetes, which kube's finalizer helper relies
//!   on), `application/strategic-merge-patch+json` (treated as a merge patch) and
//!   `application/apply-patch+yaml` (server-side apply, see below). `PartialObjectMetadata`
//!   responses when the client asks for them (`Api::get_metadata`, metadata watchers).
//! - **Watch** (`?watch=true`): newline-delimited `{"type","object"}` events. From a given
//!   `resourceVersion` it replays the retained history, then streams live; without one (or with
//!   `"0"`) it first sends synthetic `ADDED` events for the current state. `sendInitialEvents=true`
//!   (streaming lists) sends the state then a `BOOKMARK` annotated `k8s.io/initial-events-end`.
//!   `allowWatchBookmarks=true` adds periodic `BOOKMARK`s (interval configurable). The stream ends
//!   after `timeoutSeconds`. Objects moving into/out of a selector appear as `ADDED`/`DELETED`.
//!   A `resourceVersion` older than the retained history (bounded, see
//!   [`FakeApiServerBuilder::history_limit`], or forced with [`FakeApiServer::compact_history`])
//!   gets an `ERROR` event with a 410 `Expired` status, as the real server sends.
//! - **resourceVersion** is one global counter bumped on every write that changes something; a
//!   write that changes nothing (no-op replace, patch or apply) keeps the object as it was: no new
//!   resourceVersion, no watch event, and the request log marks it `changed: false`.
//! - **metadata**: `uid` and `creationTimestamp` on create, server-owned fields ignored on writes;
//!   `generation` starts at 1 (on every kind, where the real server leaves it unset for a few
//!   built-ins such as ConfigMap) and grows when anything outside `metadata` (and `status`, for
//!   kinds with a status subresource) changes, and when deletion starts on an object with
//!   finalizers. PUT and non-apply patches of a missing object are 404.
//! - **Status subresource**: `/status` GET/PUT/PATCH change only `.status`; writes to the main
//!   resource keep the stored `.status`, and `.status` is dropped on create.
//! - **Preconditions and errors**: `metadata.resourceVersion` in a PUT, patch or apply body must
//!   match (409 `Conflict`); delete preconditions (`uid`, `resourceVersion`). Errors are real
//!   `Status` objects: 404 `NotFound`, 409 `AlreadyExists`/`Conflict`, 422 `Invalid` (missing or
//!   invalid `metadata.name`, a failing JSON patch, new finalizers on a terminating object),
//!   400 `BadRequest`, 405, 410, 415.
//! - **Finalizers**: deleting an object with finalizers sets `deletionTimestamp` (202 + object);
//!   it goes away on the write that removes the last finalizer.
//! - **Garbage collection**: when an object is removed, objects whose `ownerReferences` all point
//!   to removed objects are deleted too (recursively, honouring their finalizers) — synchronously
//!   within the same request, where the real collector is asynchronous. `propagationPolicy:
//!   Orphan` strips the owner reference instead; `Foreground` behaves like `Background`.
//! - **Server-side apply** (simplified): create if absent; otherwise remove the fields this
//!   `fieldManager` applied last time and no longer applies, then deep-merge the applied
//!   configuration (maps merge; lists and scalars replace). `fieldManager` is required; `force`
//!   is accepted.
//! - **Fault injection** ([`FaultRule`]): the next N requests matching a method and/or path/query
//!   substring get an error `Status` (500, 409, 503, ...), a delay before normal processing (longer
//!   than a client's read timeout makes the client fail while the write still lands), or a dropped
//!   connection (no complete response).
//! - **Request log** ([`RequestRecord`]) of every request: method, path, query, body, status,
//!   whether it was a write and whether it changed state; [`FakeApiServer::writes_since`] etc.
//! - **Direct state access** for tests: read objects, patch status as another controller would
//!   (with watch events), wait for conditions.
//!
//! # What it does not model
//! Authentication/authorization/RBAC (every request is allowed), admission (no webhooks, no CEL
//! or OpenAPI schema validation, no defaulting — a Deployment comes back exactly as written),
//! name validation beyond RFC 1123 subdomains, namespace existence and namespace deletion,
//! field-level apply ownership and apply conflicts (`managedFields` is never populated; list-map
//! merge keys are ignored), version conversion (all versions of a group/plural share one storage
//! and are only relabelled), the shared storage of core and `events.k8s.io` Events, list at an
//! exact past `resourceVersion` (lists always return the latest state; a continued list keeps the
//! first page's resourceVersion), `dryRun` (rejected with 400), subresources other than
//! `status`, `Table` output, protobuf/CBOR, HTTP/2, TLS, graceful deletion periods, and
//! controllers such as the Deployment controller (use the status helpers instead).

mod patch;
mod routes;
mod select;
mod store;

use std::any::TypeId;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use store::Store;

/// One kind of object the fake serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceKind {
    /// API group, `""` for core.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Plural resource name used in URLs, e.g. `configmaps`.
    pub plural: String,
    /// Namespaced (true) or cluster-scoped (false).
    pub namespaced: bool,
    /// Whether the kind has a `/status` subresource.
    pub status_subresource: bool,
}

impl ResourceKind {
    /// A kind from its parts.
    pub fn new(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        status_subresource: bool,
    ) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
            status_subresource,
        }
    }

    /// The kind of a Rust resource type (scope taken from the type).
    pub fn of<K>(status_subresource: bool) -> Self
    where
        K: kube::Resource<DynamicType = ()>,
        K::Scope: 'static,
    {
        Self::new(
            &K::group(&()),
            &K::version(&()),
            &K::kind(&()),
            &K::plural(&()),
            TypeId::of::<K::Scope>() == TypeId::of::<k8s_openapi::NamespaceResourceScope>(),
            status_subresource,
        )
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` or `plural.group`, as in error messages and kubectl.
    pub fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// Built-in Kubernetes kinds served by default.
pub fn builtin_kinds() -> Vec<ResourceKind> {
    let k = ResourceKind::new;
    vec![
        k("", "v1", "Namespace", "namespaces", false, true),
        k("", "v1", "ConfigMap", "configmaps", true, false),
        k("", "v1", "Secret", "secrets", true, false),
        k("", "v1", "Service", "services", true, true),
        k("", "v1", "Pod", "pods", true, true),
        k("", "v1", "Event", "events", true, false),
        k("events.k8s.io", "v1", "Event", "events", true, false),
        k("apps", "v1", "Deployment", "deployments", true, true),
        k(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            true,
        ),
        k(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
            false,
        ),
        k("coordination.k8s.io", "v1", "Lease", "leases", true, false),
        k(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            true,
        ),
    ]
}

/// The `cx.conductor.dev/v1alpha1` custom resources (all namespaced, with status).
pub fn conductor_kinds() -> Vec<ResourceKind> {
    use crate::api::{Channel, CustomerJourney, ExperienceKPI, Touchpoint};
    vec![
        ResourceKind::of::<Channel>(true),
        ResourceKind::of::<Touchpoint>(true),
        ResourceKind::of::<ExperienceKPI>(true),
        ResourceKind::of::<CustomerJourney>(true),
    ]
}

/// An API error, rendered as a Kubernetes `Status` object.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiFailure {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound`.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// `Status.details`, if any.
    pub details: Option<Value>,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            details: None,
        }
    }

    fn with_object(mut self, kind: &ResourceKind, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": kind.group, "kind": kind.plural}));
        self
    }

    fn not_found(kind: &ResourceKind, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", kind.resource()),
        )
        .with_object(kind, name)
    }

    fn no_resource() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    fn already_exists(kind: &ResourceKind, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", kind.resource()),
        )
        .with_object(kind, name)
    }

    fn conflict(kind: &ResourceKind, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                kind.resource()
            ),
        )
        .with_object(kind, name)
    }

    fn invalid(kind: &ResourceKind, name: &str, detail: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {detail}", kind.kind),
        )
        .with_object(kind, name)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// The `Status` object the server sends.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// What an injected fault does to a matching request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer with this error `Status` instead of processing the request.
    Status {
        /// HTTP status code (kube's client retries 429, 503 and 504 by itself).
        code: u16,
        /// `Status.reason`.
        reason: String,
        /// `Status.message`.
        message: String,
    },
    /// Wait this long, then process the request normally (a client whose read timeout is
    /// shorter sees an error although the write lands).
    Delay(Duration),
    /// Close the connection without a complete response (the request is not processed).
    DropConnection,
}

impl Fault {
    /// 500 `InternalError`.
    pub fn internal_error() -> Self {
        Self::status(500, "InternalError")
    }

    /// 409 `Conflict`, as for a stale resourceVersion.
    pub fn conflict() -> Self {
        Self::Status {
            code: 409,
            reason: "Conflict".into(),
            message: "fault injection: the object has been modified; please apply your changes to the latest version and try again".into(),
        }
    }

    /// Any error status.
    pub fn status(code: u16, reason: &str) -> Self {
        Self::Status {
            code,
            reason: reason.into(),
            message: format!("fault injection: {reason}"),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Status { code, reason, .. } => write!(f, "status {code} {reason}"),
            Fault::Delay(d) => write!(f, "delay {d:?}"),
            Fault::DropConnection => write!(f, "dropped connection"),
        }
    }
}

/// A fault applied to the next `times` requests that match every given filter.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    /// Only requests with this method (any when `None`).
    pub method: Option<Method>,
    /// Only requests whose path contains this.
    pub path_contains: Option<String>,
    /// Only requests whose raw query string contains this (e.g. `watch=true`).
    pub query_contains: Option<String>,
    /// How many more requests the rule applies to.
    pub times: usize,
    /// What happens to them.
    pub fault: Fault,
}

impl FaultRule {
    /// A rule for the next single request of any kind.
    pub fn new(fault: Fault) -> Self {
        Self {
            method: None,
            path_contains: None,
            query_contains: None,
            times: 1,
            fault,
        }
    }

    /// Restricts the rule to a method (`"PUT"`, `"PATCH"`, ...). An unknown method matches nothing.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(Method::from_bytes(method.as_bytes()).unwrap_or(Method::CONNECT));
        self
    }

    /// Restricts the rule to paths containing `part` (e.g. `"/configmaps/"`).
    pub fn path(mut self, part: &str) -> Self {
        self.path_contains = Some(part.into());
        self
    }

    /// Restricts the rule to query strings containing `part`.
    pub fn query(mut self, part: &str) -> Self {
        self.query_contains = Some(part.into());
        self
    }

    /// Applies the rule to the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }

    fn matches(&self, method: &Method, path: &str, query: &str) -> bool {
        self.times > 0
            && self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
            && self
                .query_contains
                .as_deref()
                .is_none_or(|q| query.contains(q))
    }
}

/// One request as the fake saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    /// Position in the log (monotonic, survives [`FakeApiServer::clear_log`]).
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// Request body parsed as JSON (or YAML), if any.
    pub body: Option<Value>,
    /// HTTP status answered (0 for a dropped connection).
    pub status: u16,
    /// POST, PUT, PATCH or DELETE.
    pub write: bool,
    /// Whether the request changed stored state.
    pub changed: bool,
    /// The injected fault, if any.
    pub fault: Option<String>,
}

impl RequestRecord {
    /// Whether this is a watch request.
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1")
    }
}

#[derive(Default)]
struct Log {
    next_seq: u64,
    records: Vec<RequestRecord>,
}

/// State shared between the HTTP handlers and the test-facing handle.
struct Shared {
    store: Mutex<Store>,
    log: Mutex<Log>,
    faults: Mutex<Vec<FaultRule>>,
    /// Bumped on every state change or log entry, to wake [`FakeApiServer::wait_until`].
    changes: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
    bookmark_interval: Duration,
    addr: SocketAddr,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    fn mutate<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let out = f(&mut self.store());
        self.changes.send_modify(|n| *n += 1);
        out
    }

    fn record(&self, mut record: RequestRecord) {
        {
            let mut log = lock(&self.log);
            record.seq = log.next_seq;
            log.next_seq += 1;
            log.records.push(record);
        }
        self.changes.send_modify(|n| *n += 1);
    }

    fn take_fault(&self, method: &Method, path: &str, query: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let rule = faults.iter_mut().find(|r| r.matches(method, path, query))?;
        rule.times -= 1;
        let fault = rule.fault.clone();
        faults.retain(|r| r.times > 0);
        Some(fault)
    }
}

/// Configures a [`FakeApiServer`] before starting it.
#[derive(Clone, Debug)]
pub struct FakeApiServerBuilder {
    kinds: Vec<ResourceKind>,
    bookmark_interval: Duration,
    history_limit: usize,
}

impl Default for FakeApiServerBuilder {
    fn default() -> Self {
        Self {
            kinds: builtin_kinds()
                .into_iter()
                .chain(conductor_kinds())
                .collect(),
            bookmark_interval: Duration::from_secs(1),
            history_limit: 10_000,
        }
    }
}

impl FakeApiServerBuilder {
    /// Serves one more kind (e.g. `monitoring.coreos.com/v1` ServiceMonitor).
    pub fn kind(mut self, kind: ResourceKind) -> Self {
        self.kinds.push(kind);
        self
    }

    /// Serves more kinds.
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = ResourceKind>) -> Self {
        self.kinds.extend(kinds);
        self
    }

    /// Serves only the kinds added afterwards (drops the defaults).
    pub fn no_default_kinds(mut self) -> Self {
        self.kinds.clear();
        self
    }

    /// Interval between watch bookmarks when a client allows them (default 1s).
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How many watch events are retained for watches from an old resourceVersion (default 10000).
    pub fn history_limit(mut self, events: usize) -> Self {
        self.history_limit = events;
        self
    }

    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn try_start(self) -> std::io::Result<FakeApiServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (shutdown, mut stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(self.kinds, self.history_limit)),
            log: Mutex::new(Log::default()),
            faults: Mutex::new(Vec::new()),
            changes: watch::channel(0).0,
            shutdown,
            bookmark_interval: self.bookmark_interval,
            addr,
        });
        let app = axum::Router::new()
            .fallback(routes::handle)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(error = %e, "fake API server stopped");
            }
        });
        Ok(FakeApiServer {
            shared,
            addr,
            task: Some(task),
        })
    }

    /// Like [`try_start`](Self::try_start), panicking if no port can be bound (test support).
    pub async fn start(self) -> FakeApiServer {
        self.try_start()
            .await
            .expect("bind the fake API server on 127.0.0.1")
    }
}

/// A running fake API server. Stops serving when dropped or on [`shutdown`](Self::shutdown).
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.shared.store().close_watches();
    }
}

impl FakeApiServer {
    /// Starts a server with the default kinds (see [`FakeApiServerBuilder`]).
    pub async fn start() -> Self {
        FakeApiServerBuilder::default().start().await
    }

    /// A builder to choose kinds, bookmark interval and history size.
    pub fn builder() -> FakeApiServerBuilder {
        FakeApiServerBuilder::default()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client configuration pointing at the fake (namespace `default`, no read timeout).
    pub fn config(&self) -> kube::Config {
        let uri = self.url().parse().expect("a socket address is a valid URI");
        kube::Config::new(uri)
    }

    /// A client for the fake.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("build a kube client for the fake API server")
    }

    /// A client whose reads time out after `read_timeout` (to observe [`Fault::Delay`]).
    pub fn client_with_read_timeout(&self, read_timeout: Duration) -> kube::Client {
        let mut config = self.config();
        config.read_timeout = Some(read_timeout);
        kube::Client::try_from(config).expect("build a kube client for the fake API server")
    }

    /// Stops serving: ends watch streams and pending delays, waits for connections to close.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        self.shared.store().close_watches();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    // ---- kinds ----------------------------------------------------------------------------

    /// Serves one more kind from now on.
    pub fn register(&self, kind: ResourceKind) {
        self.shared.mutate(|s| s.register(kind));
    }

    /// The kinds currently served.
    pub fn kinds(&self) -> Vec<ResourceKind> {
        self.shared.store().kinds().to_vec()
    }

    fn resolve(&self, resource: &str) -> Result<ResourceKind, ApiFailure> {
        self.shared
            .store()
            .find_resource(resource)
            .ok_or_else(ApiFailure::no_resource)
    }

    // ---- state ----------------------------------------------------------------------------

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// An object by resource (`"configmaps"`, `"deployments.apps"`,
    /// `"touchpoints.cx.conductor.dev"`), namespace (`None` for cluster-scoped) and name.
    pub fn get(&self, resource: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        let kind = self.resolve(resource).ok()?;
        self.shared.store().get(&kind, ns.unwrap_or(""), name).ok()
    }

    /// All objects of a resource, in one namespace or all (`None`), ordered by namespace and name.
    pub fn list(&self, resource: &str, ns: Option<&str>) -> Vec<Value> {
        match self.resolve(resource) {
            Ok(kind) => self.shared.store().list_all(&kind, ns),
            Err(_) => Vec::new(),
        }
    }

    /// An object as a typed resource (`None` if absent or not deserializable).
    pub fn get_as<K>(&self, ns: Option<&str>, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let resource = format!("{}.{}", K::plural(&()), K::group(&()));
        let obj = self.get(resource.trim_end_matches('.'), ns, name)?;
        serde_json::from_value(obj).ok()
    }

    /// All objects of a typed resource in one namespace or all.
    pub fn list_as<K>(&self, ns: Option<&str>) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let resource = format!("{}.{}", K::plural(&()), K::group(&()));
        self.list(resource.trim_end_matches('.'), ns)
            .into_iter()
            .filter_map(|o| serde_json::from_value(o).ok())
            .collect()
    }

    /// Creates an object directly (kind from `apiVersion`/`kind`, namespace from metadata,
    /// `default` when a namespaced object has none). Emits ADDED; not in the request log.
    pub fn create(&self, obj: Value) -> Result<Value, ApiFailure> {
        let kind = self
            .shared
            .store()
            .find_by_type(
                obj["apiVersion"].as_str().unwrap_or(""),
                obj["kind"].as_str().unwrap_or(""),
            )
            .ok_or_else(ApiFailure::no_resource)?;
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        self.shared
            .mutate(|s| s.create(&kind, &ns, obj))
            .map(|o| o.obj)
    }

    /// Replaces `.status` as another controller would: MODIFIED event and new resourceVersion
    /// unless nothing changed.
    pub fn put_status(
        &self,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiFailure> {
        self.modify(resource, ns, name, |obj| obj["status"] = status)
    }

    /// Merge-patches `.status` (RFC 7386) as another controller would.
    pub fn patch_status(
        &self,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        patch: Value,
    ) -> Result<Value, ApiFailure> {
        self.modify(resource, ns, name, |obj| {
            patch::merge_patch(&mut obj["status"], &patch);
        })
    }

    /// Merge-patches the whole object, `.status` included, as another client would (generation,
    /// finalizer and no-op rules apply).
    pub fn merge_patch(
        &self,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        patch: Value,
    ) -> Result<Value, ApiFailure> {
        self.modify(resource, ns, name, |obj| patch::merge_patch(obj, &patch))
    }

    fn modify(
        &self,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiFailure> {
        let kind = self.resolve(resource)?;
        self.shared
            .mutate(|s| s.modify(&kind, ns.unwrap_or(""), name, f))
            .map(|o| o.obj)
    }

    /// Deletes an object directly, with the server's finalizer and garbage-collection rules.
    /// Returns whether the object is gone (false: it is now terminating).
    pub fn delete(&self, resource: &str, ns: Option<&str>, name: &str) -> Result<bool, ApiFailure> {
        let kind = self.resolve(resource)?;
        let out = self
            .shared
            .mutate(|s| s.delete(&kind, ns.unwrap_or(""), name, &store::DeleteOpts::default()))?;
        Ok(matches!(out, store::Deletion::Removed(_)))
    }

    /// Plays the Deployment controller: sets `.status` of Deployment `ns/name` to `ready` ready
    /// and available replicas out of `spec.replicas` (default 1), observedGeneration current, and
    /// `Available`/`Progressing` conditions.
    pub fn set_deployment_available(
        &self,
        ns: &str,
        name: &str,
        ready: i32,
    ) -> Result<Value, ApiFailure> {
        self.modify("deployments.apps", Some(ns), name, |obj| {
            let desired = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            let available = i64::from(ready) >= desired;
            obj["status"] = json!({
                "observedGeneration": obj["metadata"]["generation"],
                "replicas": desired,
                "updatedReplicas": desired,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": (desired - i64::from(ready)).max(0),
                "conditions": [
                    {
                        "type": "Available",
                        "status": if available { "True" } else { "False" },
                        "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                    },
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                ],
            });
        })
    }

    /// Runs a full garbage-collection pass: deletes every object whose owner references all
    /// point to objects that do not exist (also owners that never existed).
    pub fn collect_garbage(&self) {
        self.shared.mutate(|s| s.collect(false));
    }

    /// Forgets the watch history: watches from an older resourceVersion get 410 Gone.
    pub fn compact_history(&self) {
        self.shared.mutate(Store::compact);
    }

    // ---- fault injection --------------------------------------------------------------------

    /// Adds a fault rule (rules are tried in insertion order; the first match applies).
    pub fn inject(&self, rule: FaultRule) {
        lock(&self.shared.faults).push(rule);
    }

    /// Removes all fault rules.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Rules that still have requests to fault.
    pub fn pending_faults(&self) -> Vec<FaultRule> {
        lock(&self.shared.faults).clone()
    }

    // ---- request log ------------------------------------------------------------------------

    /// A mark for [`requests_since`](Self::requests_since) and friends: the next request's seq.
    pub fn mark(&self) -> u64 {
        lock(&self.shared.log).next_seq
    }

    /// Every logged request.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).records.clone()
    }

    /// Requests logged at or after `mark`.
    pub fn requests_since(&self, mark: u64) -> Vec<RequestRecord> {
        lock(&self.shared.log)
            .records
            .iter()
            .filter(|r| r.seq >= mark)
            .cloned()
            .collect()
    }

    /// Write requests (POST, PUT, PATCH, DELETE) since `mark`, whether or not they changed anything.
    pub fn writes_since(&self, mark: u64) -> Vec<RequestRecord> {
        let mut writes = self.requests_since(mark);
        writes.retain(|r| r.write);
        writes
    }

    /// Write requests since `mark` that changed stored state.
    pub fn changes_since(&self, mark: u64) -> Vec<RequestRecord> {
        let mut changes = self.requests_since(mark);
        changes.retain(|r| r.write && r.changed);
        changes
    }

    /// Empties the log (seq numbers keep growing, so old marks stay meaningful).
    pub fn clear_log(&self) {
        lock(&self.shared.log).records.clear();
    }

    // ---- waiting ------------------------------------------------------------------------------

    /// Waits until `condition` holds, re-checking on every state change or request and at least
    /// every 20ms (for conditions on state outside the server). Returns false on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Self) -> bool,
    ) -> bool {
        let mut changes = self.shared.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if condition(self) {
                return true;
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
                () = tokio::time::sleep_until(deadline) => return condition(self),
            }
        }
    }
}
