//! HTTP routing: discovery, resource paths, query parameters, fault injection, the request log
//! and watch streaming.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::select::{FieldSelector, LabelSelector};
use super::store::{DeleteOpts, Deletion, PatchKind, WatchSpec, bookmark_line};
use super::{ApiFailure, Fault, RequestRecord, ResourceKind, Shared};

/// Largest request body accepted.
const BODY_LIMIT: usize = 64 << 20;

struct Reply {
    response: Response,
    changed: bool,
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

fn reply(code: StatusCode, value: &Value, changed: bool) -> Result<Reply, ApiFailure> {
    Ok(Reply {
        response: json_response(code, value),
        changed,
    })
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &self.to_status())
    }
}

/// A parsed request to a resource path.
struct Req<'a> {
    method: &'a Method,
    query: HashMap<String, String>,
    headers: &'a HeaderMap,
    body: Option<Value>,
}

impl Req<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn meta_only(&self) -> bool {
        self.header(header::ACCEPT)
            .contains("as=PartialObjectMetadata")
    }

    fn body(&self) -> Result<Value, ApiFailure> {
        self.body
            .clone()
            .ok_or_else(|| ApiFailure::bad_request("the request body is not valid JSON or YAML"))
    }
}

fn parse_body(bytes: &Bytes) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    serde_json::from_slice(bytes)
        .ok()
        .or_else(|| serde_yaml::from_slice(bytes).ok())
}

/// The single entry point: logs every request, applies injected faults, then dispatches.
///
/// Processing runs in its own task so that, as on a real server, a request that has been
/// received completes even if the client goes away (e.g. after its read timeout).
pub(super) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, BODY_LIMIT).await.unwrap_or_default();
    tokio::spawn(process(shared, parts, bytes))
        .await
        .unwrap_or_else(|e| {
            ApiFailure::new(500, "InternalError", format!("fake API server: {e}")).into_response()
        })
}

async fn process(shared: Arc<Shared>, parts: http::request::Parts, bytes: Bytes) -> Response {
    let method = parts.method;
    let path = parts.uri.path().to_string();
    let query_string = parts.uri.query().unwrap_or_default().to_string();
    let body = parse_body(&bytes);
    let mut record = RequestRecord {
        seq: 0,
        method: method.to_string(),
        path: path.clone(),
        query: query_string.clone(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: body.clone(),
        write: matches!(
            method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        ),
        changed: false,
        status: 0,
        fault: None,
    };

    let fault = shared.take_fault(&method, &path, &query_string);
    record.fault = fault.as_ref().map(Fault::to_string);
    match fault {
        Some(Fault::Status {
            code,
            reason,
            message,
        }) => {
            record.status = code;
            shared.record(record);
            return ApiFailure {
                code,
                reason,
                message,
                details: None,
            }
            .into_response();
        }
        Some(Fault::DropConnection) => {
            shared.record(record);
            // An error from the body makes hyper abort the connection without a complete response.
            let stream = futures::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("fault injection: connection dropped"))
            });
            return Response::new(Body::from_stream(stream));
        }
        Some(Fault::Delay(duration)) => {
            let mut shutdown = shared.shutdown.subscribe();
            tokio::select! {
                () = tokio::time::sleep(duration) => {}
                _ = shutdown.wait_for(|stopped| *stopped) => {}
            }
        }
        None => {}
    }

    let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let req = Req {
        method: &method,
        query,
        headers: &parts.headers,
        body,
    };
    let reply = dispatch(&shared, &path, &req).unwrap_or_else(|failure| Reply {
        response: failure.into_response(),
        changed: false,
    });
    record.status = reply.response.status().as_u16();
    record.changed = reply.changed;
    shared.record(record);
    reply.response
}

fn dispatch(shared: &Arc<Shared>, path: &str, req: &Req) -> Result<Reply, ApiFailure> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let aggregated = req.header(header::ACCEPT).contains("apidiscovery.k8s.io");
    let discovery = !matches!(
        segments.as_slice(),
        ["api", _, _, ..] | ["apis", _, _, _, ..]
    );
    if discovery && *req.method != Method::GET {
        return Err(ApiFailure::method_not_allowed());
    }
    let kinds = shared.store().kinds().to_vec();
    match segments.as_slice() {
        ["version"] => reply(StatusCode::OK, &version_info(), false),
        ["healthz" | "livez" | "readyz"] => Ok(Reply {
            response: "ok".into_response(),
            changed: false,
        }),
        ["api"] if aggregated => reply(StatusCode::OK, &aggregated_discovery(&kinds, true), false),
        ["api"] => reply(
            StatusCode::OK,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}],
            }),
            false,
        ),
        ["apis"] if aggregated => {
            reply(StatusCode::OK, &aggregated_discovery(&kinds, false), false)
        }
        ["apis"] => reply(StatusCode::OK, &group_list(&kinds), false),
        ["apis", group] => {
            let found = group_list(&kinds)["groups"]
                .as_array()
                .and_then(|gs| gs.iter().find(|g| g["name"] == *group).cloned());
            match found {
                Some(mut g) => {
                    g["kind"] = "APIGroup".into();
                    g["apiVersion"] = "v1".into();
                    reply(StatusCode::OK, &g, false)
                }
                None => Err(ApiFailure::no_resource()),
            }
        }
        ["api", version] => resource_list(&kinds, "", version),
        ["apis", group, version] => resource_list(&kinds, group, version),
        ["api", version, rest @ ..] => resource_request(shared, req, "", version, rest),
        ["apis", group, version, rest @ ..] => resource_request(shared, req, group, version, rest),
        _ => Err(ApiFailure::no_resource()),
    }
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-cx-conductor-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: [&str; 3] = ["get", "patch", "update"];

/// Group versions in registration order: `(group, [versions])`, core group excluded.
fn groups(kinds: &[ResourceKind]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for k in kinds.iter().filter(|k| !k.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == k.group) {
            Some((_, versions)) if !versions.contains(&k.version) => {
                versions.push(k.version.clone())
            }
            Some(_) => {}
            None => out.push((k.group.clone(), vec![k.version.clone()])),
        }
    }
    out
}

fn group_list(kinds: &[ResourceKind]) -> Value {
    let groups: Vec<Value> = groups(kinds)
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({"name": group, "preferredVersion": versions[0].clone(), "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(kinds: &[ResourceKind], group: &str, version: &str) -> Result<Reply, ApiFailure> {
    let mut resources = Vec::new();
    for k in kinds
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        let singular = k.kind.to_lowercase();
        resources.push(json!({
            "name": k.plural, "singularName": singular, "namespaced": k.namespaced,
            "kind": k.kind, "verbs": VERBS,
        }));
        if k.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                "kind": k.kind, "verbs": STATUS_VERBS,
            }));
        }
    }
    if resources.is_empty() {
        return Err(ApiFailure::no_resource());
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    reply(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
        false,
    )
}

/// `apidiscovery.k8s.io/v2` aggregated discovery for `/api` (`core`) or `/apis`.
fn aggregated_discovery(kinds: &[ResourceKind], core: bool) -> Value {
    let group_names: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        groups(kinds)
    };
    let items: Vec<Value> = group_names
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = kinds
                        .iter()
                        .filter(|k| k.group == group && k.version == *version)
                        .map(|k| {
                            let response_kind = json!({"group": k.group, "version": k.version, "kind": k.kind});
                            let subresources: Vec<Value> = if k.status_subresource {
                                vec![json!({"subresource": "status", "responseKind": response_kind, "verbs": STATUS_VERBS})]
                            } else {
                                Vec::new()
                            };
                            json!({
                                "resource": k.plural,
                                "responseKind": response_kind,
                                "scope": if k.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": k.kind.to_lowercase(),
                                "verbs": VERBS,
                                "subresources": subresources,
                            })
                        })
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn resource_request(
    shared: &Arc<Shared>,
    req: &Req,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Reply, ApiFailure> {
    let (ns, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() && *tail != ["status"] => {
            (Some(*ns), tail)
        }
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiFailure::no_resource()),
    };
    let kind = shared
        .store()
        .find_kind(group, version, plural)
        .ok_or_else(ApiFailure::no_resource)?;
    if ns.is_some() && !kind.namespaced {
        return Err(ApiFailure::no_resource());
    }
    let status = match sub {
        None => false,
        Some("status") if kind.status_subresource => true,
        Some(_) => return Err(ApiFailure::no_resource()),
    };
    if req.param("dryRun").is_some() {
        return Err(ApiFailure::bad_request(
            "dryRun is not supported by the fake API server",
        ));
    }
    let api_version = kind.api_version();
    let ns_str = ns.unwrap_or("");
    let Some(name) = name else {
        return collection_request(shared, req, &kind, ns);
    };
    if kind.namespaced && ns.is_none() {
        return Err(ApiFailure::no_resource());
    }
    let meta_only = req.meta_only();
    let show = |obj: &Value| super::store::present(obj, &api_version, meta_only);
    match *req.method {
        Method::GET => {
            let obj = shared.store().get(&kind, ns_str, name)?;
            reply(StatusCode::OK, &show(&obj), false)
        }
        Method::PUT => {
            let out = shared.mutate(|s| s.replace(&kind, ns_str, name, req.body()?, status))?;
            reply(StatusCode::OK, &show(&out.obj), out.changed)
        }
        Method::PATCH => {
            let content_type = req.header(header::CONTENT_TYPE);
            let how = match content_type.split(';').next().unwrap_or("").trim() {
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    PatchKind::Merge
                }
                "application/json-patch+json" => PatchKind::Json,
                "application/apply-patch+yaml" => PatchKind::Apply {
                    manager: req
                        .param("fieldManager")
                        .filter(|m| !m.is_empty())
                        .ok_or_else(|| {
                            ApiFailure::invalid(
                                &kind,
                                name,
                                "fieldManager: Required value: is required for apply patch",
                            )
                        })?
                        .to_string(),
                },
                other => {
                    return Err(ApiFailure {
                        code: 415,
                        reason: "UnsupportedMediaType".into(),
                        message: format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
                        ),
                        details: None,
                    });
                }
            };
            let patch = req.body()?;
            let out = shared.mutate(|s| s.patch(&kind, ns_str, name, how, &patch, status))?;
            let code = if out.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            reply(code, &show(&out.obj), out.changed)
        }
        Method::DELETE if !status => {
            let opts = delete_opts(req.body.as_ref());
            match shared.mutate(|s| s.delete(&kind, ns_str, name, &opts))? {
                Deletion::Removed(obj) => reply(
                    StatusCode::OK,
                    &json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": kind.group, "kind": kind.plural, "uid": obj["metadata"]["uid"]},
                    }),
                    true,
                ),
                Deletion::Pending(obj, changed) => {
                    reply(StatusCode::ACCEPTED, &show(&obj), changed)
                }
            }
        }
        _ => Err(ApiFailure::method_not_allowed()),
    }
}

fn delete_opts(body: Option<&Value>) -> DeleteOpts {
    let Some(body) = body else {
        return DeleteOpts::default();
    };
    let text = |v: &Value| v.as_str().map(str::to_string);
    DeleteOpts {
        orphan: body["propagationPolicy"] == "Orphan" || body["orphanDependents"] == true,
        uid: text(&body["preconditions"]["uid"]),
        resource_version: text(&body["preconditions"]["resourceVersion"]),
    }
}

fn watch_spec(req: &Req, kind: &ResourceKind, ns: Option<&str>) -> Result<WatchSpec, ApiFailure> {
    Ok(WatchSpec {
        ns: ns.map(str::to_string),
        labels: LabelSelector::parse(req.param("labelSelector").unwrap_or(""))
            .map_err(ApiFailure::bad_request)?,
        fields: FieldSelector::parse(req.param("fieldSelector").unwrap_or(""))
            .map_err(ApiFailure::bad_request)?,
        api_version: kind.api_version(),
        meta_only: req.meta_only(),
        resource_version: req.param("resourceVersion").map(str::to_string),
        send_initial_events: req.flag("sendInitialEvents"),
    })
}

fn collection_request(
    shared: &Arc<Shared>,
    req: &Req,
    kind: &ResourceKind,
    ns: Option<&str>,
) -> Result<Reply, ApiFailure> {
    match *req.method {
        Method::GET if req.flag("watch") => start_watch(shared, req, kind, ns),
        Method::GET => {
            let spec = watch_spec(req, kind, ns)?;
            let limit = req.param("limit").and_then(|l| l.parse().ok());
            let page = shared
                .store()
                .list(kind, &spec, limit, req.param("continue"))?;
            let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
            if let Some(token) = page.continue_token {
                metadata["continue"] = token.into();
            }
            let (api_version, list_kind) = if spec.meta_only {
                (
                    "meta.k8s.io/v1".to_string(),
                    "PartialObjectMetadataList".to_string(),
                )
            } else {
                (kind.api_version(), format!("{}List", kind.kind))
            };
            reply(
                StatusCode::OK,
                &json!({"apiVersion": api_version, "kind": list_kind, "metadata": metadata, "items": page.items}),
                false,
            )
        }
        Method::POST => {
            let ns = match (kind.namespaced, ns) {
                (true, Some(ns)) => ns,
                (false, None) => "",
                _ => return Err(ApiFailure::method_not_allowed()),
            };
            let out = shared.mutate(|s| s.create(kind, ns, req.body()?))?;
            reply(
                StatusCode::CREATED,
                &super::store::present(&out.obj, &kind.api_version(), req.meta_only()),
                true,
            )
        }
        Method::DELETE => {
            let spec = watch_spec(req, kind, ns)?;
            let opts = delete_opts(req.body.as_ref());
            let (items, changed) = shared.mutate(|s| {
                let page = s.list(kind, &spec, None, None)?;
                let mut items = Vec::new();
                let mut changed = false;
                for obj in page.items {
                    let (ns, name) = (
                        obj["metadata"]["namespace"].as_str().unwrap_or(""),
                        obj["metadata"]["name"].as_str().unwrap_or(""),
                    );
                    match s.delete(kind, ns, name, &opts) {
                        Ok(Deletion::Removed(o)) => {
                            changed = true;
                            items.push(o);
                        }
                        Ok(Deletion::Pending(o, c)) => {
                            changed |= c;
                            items.push(o);
                        }
                        Err(_) => {}
                    }
                }
                Ok::<_, ApiFailure>((items, changed))
            })?;
            reply(
                StatusCode::OK,
                &json!({"apiVersion": kind.api_version(), "kind": format!("{}List", kind.kind), "metadata": {}, "items": items}),
                changed,
            )
        }
        _ => Err(ApiFailure::method_not_allowed()),
    }
}

fn start_watch(
    shared: &Arc<Shared>,
    req: &Req,
    kind: &ResourceKind,
    ns: Option<&str>,
) -> Result<Reply, ApiFailure> {
    let spec = watch_spec(req, kind, ns)?;
    let api_version = spec.api_version.clone();
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs);
    let bookmarks = req.flag("allowWatchBookmarks");
    let (initial, feed) = shared.mutate(|s| s.watch(kind, spec))?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let shared = Arc::clone(shared);
    let kind_name = kind.kind.clone();
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let Some(mut feed) = feed else { return };
        let deadline = async move {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut ticks = tokio::time::interval(shared.bookmark_interval);
        ticks.tick().await;
        loop {
            tokio::select! {
                line = feed.recv() => match line {
                    Some(line) => if tx.send(line).await.is_err() { return },
                    None => return,
                },
                () = &mut deadline => return,
                _ = ticks.tick(), if bookmarks => {
                    // Drain under the lock so the bookmark never overtakes an event it covers.
                    let mut lines = Vec::new();
                    {
                        let store = shared.store();
                        while let Ok(line) = feed.try_recv() {
                            lines.push(line);
                        }
                        lines.push(bookmark_line(&kind_name, &api_version, store.resource_version(), false));
                    }
                    for line in lines {
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|line| line.map(Ok::<_, Infallible>))
    }));
    Ok(Reply {
        response: Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        changed: false,
    })
}
