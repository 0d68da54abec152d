//! Test support: a fault-injecting HTTP proxy in front of the real API server. The operator
//! under test talks plain HTTP to the proxy, which forwards over TLS to the API server (the
//! bearer token passes through, so RBAC still applies). Rules answer chosen requests with an
//! error status, delay them or drop the connection; `cut` severs every open connection (watches
//! included) and `outage` refuses everything for a while, as an API server restart does.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// What happens to a request a rule matches.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this HTTP status and a Kubernetes `Status` body.
    Status(u16),
    /// Wait, then forward normally.
    Delay(Duration),
    /// Close the connection without answering (the request never reaches the server).
    DropConnection,
}

/// Which requests a fault applies to, and how many times.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// Only this method (any when `None`).
    pub method: Option<Method>,
    /// Only paths containing this.
    pub path_contains: Option<String>,
    /// Only queries containing this (e.g. `watch=true`).
    pub query_contains: Option<String>,
    /// Remaining requests it applies to.
    pub times: usize,
    /// The fault.
    pub fault: Fault,
}

impl FaultRule {
    /// A fault for the next `times` requests with `method` whose path contains `path`.
    pub fn on(method: Method, path: &str, times: usize, fault: Fault) -> Self {
        Self {
            method: Some(method),
            path_contains: Some(path.to_string()),
            query_contains: None,
            times,
            fault,
        }
    }

    fn matches(&self, method: &Method, path: &str, query: &str) -> bool {
        self.times > 0
            && self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_ref()
                .is_none_or(|p| path.contains(p.as_str()))
            && self
                .query_contains
                .as_ref()
                .is_none_or(|q| query.contains(q.as_str()))
    }
}

#[derive(Default)]
struct State {
    rules: Vec<FaultRule>,
    connections: Vec<AbortHandle>,
    refuse_until: Option<Instant>,
    /// (method, path, query) of every request forwarded, for request counting.
    log: Vec<(Method, String, String)>,
    injected: usize,
    /// Whether list answers reach the client with their items in reverse order.
    reverse_lists: bool,
    /// List answers reversed so far.
    reversed: usize,
}

/// The running proxy.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

type Body = BoxBody<Bytes, hyper::Error>;

fn full(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("a header"),
    );
    response
}

fn status_body(code: u16) -> String {
    let reason = match code {
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("injected by the test proxy: {reason}"), "reason": reason, "code": code})
    .to_string()
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (https), trusting `ca_pem`.
    pub async fn start(upstream: &str, ca_pem: &[u8]) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.expect("a CA certificate")).expect("a CA");
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector: HttpsConnector<HttpConnector> = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address: SocketAddr = listener.local_addr().expect("an address");
        let state = Arc::new(Mutex::new(State::default()));
        let upstream = upstream.trim_end_matches('/').to_string();
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let refusing = {
                    let s = accept_state.lock().expect("state");
                    s.refuse_until.is_some_and(|t| Instant::now() < t)
                };
                if refusing {
                    drop(stream);
                    continue;
                }
                let (client, upstream, state) =
                    (client.clone(), upstream.clone(), accept_state.clone());
                let connection = tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (client, upstream, state) =
                            (client.clone(), upstream.clone(), state.clone());
                        async move { forward(request, client, &upstream, &state).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                let mut s = accept_state.lock().expect("state");
                s.connections.retain(|c| !c.is_finished());
                s.connections.push(connection.abort_handle());
            }
        });
        Self {
            url: format!("http://{address}"),
            state,
            task,
        }
    }

    /// Adds a fault rule.
    pub fn inject(&self, rule: FaultRule) {
        self.state.lock().expect("state").rules.push(rule);
    }

    /// Severs every open connection (watches included), as a restarting API server does.
    pub fn cut(&self) {
        let mut s = self.state.lock().expect("state");
        for connection in s.connections.drain(..) {
            connection.abort();
        }
    }

    /// Severs every connection and refuses new ones for `duration`.
    pub fn outage(&self, duration: Duration) {
        self.state.lock().expect("state").refuse_until = Some(Instant::now() + duration);
        self.cut();
    }

    /// From now on, every list answer (a GET that is not a watch) reaches the client with its
    /// items in reverse order, so the client's caches fill in another order than the server's.
    pub fn reverse_lists(&self) {
        self.state.lock().expect("state").reverse_lists = true;
    }

    /// How many list answers had their items reversed so far.
    pub fn lists_reversed(&self) -> usize {
        self.state.lock().expect("state").reversed
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> usize {
        self.state.lock().expect("state").injected
    }

    /// Whether every rule is used up.
    pub fn rules_used_up(&self) -> bool {
        self.state
            .lock()
            .expect("state")
            .rules
            .iter()
            .all(|r| r.times == 0)
    }

    /// Requests forwarded so far: (method, path, query).
    pub fn requests(&self) -> Vec<(Method, String, String)> {
        self.state.lock().expect("state").log.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn forward(
    request: Request<Incoming>,
    client: Client<HttpsConnector<HttpConnector>, Incoming>,
    upstream: &str,
    state: &Mutex<State>,
) -> Result<Response<Body>, std::io::Error> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let is_list =
        method == Method::GET && !query.contains("watch=true") && !query.contains("watch=1");
    let fault = {
        let mut s = state.lock().expect("state");
        if s.refuse_until.is_some_and(|t| Instant::now() < t) {
            return Err(std::io::Error::other("outage"));
        }
        s.log.push((method.clone(), path.clone(), query.clone()));
        let fault = s
            .rules
            .iter_mut()
            .find(|r| r.matches(&method, &path, &query))
            .map(|r| {
                r.times -= 1;
                r.fault.clone()
            });
        if fault.is_some() {
            s.injected += 1;
        }
        fault
    };
    match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).expect("a status");
            return Ok(full(status, status_body(code)));
        }
        Some(Fault::DropConnection) => return Err(std::io::Error::other("dropped by the test")),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let (mut parts, body) = request.into_parts();
    let target = format!(
        "{upstream}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    parts.uri = target.parse().map_err(std::io::Error::other)?;
    parts.headers.remove(http::header::HOST);
    let reverse = is_list && state.lock().expect("state").reverse_lists;
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) if reverse => {
            let (mut parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(mut list) if list.get("items").is_some_and(|i| i.is_array()) => {
                    if let Some(items) = list["items"].as_array_mut() {
                        items.reverse();
                    }
                    state.lock().expect("state").reversed += 1;
                    Bytes::from(serde_json::to_vec(&list).map_err(std::io::Error::other)?)
                }
                _ => bytes,
            };
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Ok(Response::from_parts(
                parts,
                Full::new(body).map_err(|n| match n {}).boxed(),
            ))
        }
        Ok(response) => Ok(response.map(|b| b.boxed())),
        Err(error) => Ok(full(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": format!("proxy: {error}"), "reason": "InternalError", "code": 502})
            .to_string(),
        )),
    }
}
