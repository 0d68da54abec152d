//! The stateful part of the fake: objects, resourceVersion, write semantics, garbage collection,
//! finalizers, watch fan-out and history. Everything here is synchronous and runs under one lock,
//! so every request is atomic and watch events are totally ordered by resourceVersion.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::patch::{apply_merge, json_patch, merge_patch};
use super::select::{FieldSelector, LabelSelector};
use super::{ApiFailure, ResourceKind};

/// Storage identity of a resource: versions of one group/plural share storage.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct ResId {
    group: String,
    plural: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    res: ResId,
    ns: String,
    name: String,
}

struct Entry {
    obj: Value,
    /// Last configuration applied by each (field manager, status subresource?) pair.
    applied: HashMap<(String, bool), Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

struct Change {
    rv: u64,
    res: ResId,
    ns: String,
    ty: EventType,
    old: Option<Value>,
    obj: Value,
}

/// What a watch request asks for.
pub(super) struct WatchSpec {
    pub(super) ns: Option<String>,
    pub(super) labels: LabelSelector,
    pub(super) fields: FieldSelector,
    pub(super) api_version: String,
    pub(super) meta_only: bool,
    pub(super) resource_version: Option<String>,
    pub(super) send_initial_events: bool,
}

impl WatchSpec {
    fn selects(&self, ns: &str, obj: &Value) -> bool {
        self.ns.as_deref().is_none_or(|n| n == ns)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }

    /// The event this watcher sees for a change, turning selector transitions into ADDED/DELETED.
    fn event_for(&self, c: &Change) -> Option<Bytes> {
        let is = self.selects(&c.ns, &c.obj);
        let ty = match c.ty {
            EventType::Modified => {
                let was = c.old.as_ref().is_some_and(|o| self.selects(&c.ns, o));
                match (was, is) {
                    (true, true) => EventType::Modified,
                    (false, true) => EventType::Added,
                    (true, false) => EventType::Deleted,
                    (false, false) => return None,
                }
            }
            ty => {
                if !is {
                    return None;
                }
                ty
            }
        };
        Some(event_line(
            ty.as_str(),
            &present(&c.obj, &self.api_version, self.meta_only),
        ))
    }
}

struct Sub {
    res: ResId,
    spec: WatchSpec,
    tx: UnboundedSender<Bytes>,
}

/// Result of a write.
pub(super) struct Outcome {
    pub(super) obj: Value,
    pub(super) changed: bool,
    pub(super) created: bool,
}

/// Result of a delete.
pub(super) enum Deletion {
    /// The object is gone (final state, with the deletion's resourceVersion).
    Removed(Value),
    /// The object has finalizers: it now carries a deletionTimestamp. `bool`: this call set it.
    Pending(Value, bool),
}

/// Delete options (from the `DeleteOptions` body).
#[derive(Default)]
pub(super) struct DeleteOpts {
    pub(super) orphan: bool,
    pub(super) uid: Option<String>,
    pub(super) resource_version: Option<String>,
}

/// The patch flavours the fake understands.
pub(super) enum PatchKind {
    Merge,
    Json,
    Apply { manager: String },
}

/// One page of a list.
pub(super) struct ListPage {
    pub(super) items: Vec<Value>,
    pub(super) resource_version: u64,
    pub(super) continue_token: Option<String>,
}

pub(super) struct Store {
    kinds: Vec<ResourceKind>,
    objects: BTreeMap<Key, Entry>,
    rv: u64,
    history: VecDeque<Change>,
    history_limit: usize,
    compacted_rv: u64,
    subs: Vec<Sub>,
    /// uids of objects that existed and were removed (owners whose dependents GC may collect).
    removed_uids: HashSet<String>,
    counter: u64,
    seed: u64,
}

/// Metadata fields only the server sets.
const SERVER_FIELDS: [&str; 8] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
    "managedFields",
    "selfLink",
];

pub(super) fn now() -> Value {
    let ts = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", ts)
        .map(Value::String)
        .unwrap_or(Value::Null)
}

/// The object as a client sees it: `apiVersion` of the requested version, or only the metadata
/// when the client asked for `PartialObjectMetadata`.
pub(super) fn present(obj: &Value, api_version: &str, meta_only: bool) -> Value {
    if meta_only {
        return json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": obj["metadata"].clone(),
        });
    }
    let mut out = obj.clone();
    out["apiVersion"] = Value::String(api_version.to_string());
    out
}

pub(super) fn event_line(ty: &str, obj: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": ty, "object": obj})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

pub(super) fn bookmark_line(kind: &str, api_version: &str, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": kind, "apiVersion": api_version, "metadata": meta}),
    )
}

fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = Value::Object(Map::new());
    }
    match &mut obj["metadata"] {
        Value::Object(m) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)[field].as_str().filter(|s| !s.is_empty())
}

fn finalizers(obj: &Value) -> Vec<&str> {
    meta(obj)["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn owner_uids(obj: &Value) -> Vec<&str> {
    meta(obj)["ownerReferences"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["uid"].as_str()).collect())
        .unwrap_or_default()
}

fn terminating(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// Drops empty or null metadata collections, as the real server's typed encoding does.
fn normalize(obj: &mut Value) {
    let m = meta_mut(obj);
    m.retain(|k, v| {
        !(v.is_null()
            || (matches!(
                k.as_str(),
                "labels" | "annotations" | "finalizers" | "ownerReferences"
            ) && (v.as_object().is_some_and(Map::is_empty)
                || v.as_array().is_some_and(Vec::is_empty))))
    });
}

/// Whether something other than metadata (and status, with a status subresource) changed.
fn spec_changed(old: &Value, new: &Value, status_subresource: bool) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Value::Object(m) = &mut v {
            m.remove("metadata");
            if status_subresource {
                m.remove("status");
            }
        }
        v
    };
    strip(old) != strip(new)
}

fn validate_name(kind: &ResourceKind, name: &str) -> Result<(), ApiFailure> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ApiFailure::invalid(
            kind,
            name,
            "metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ))
    }
}

/// Rejects a body whose `kind`/`apiVersion` names another resource.
fn check_type(kind: &ResourceKind, body: &Value) -> Result<(), ApiFailure> {
    if !body.is_object() {
        return Err(ApiFailure::bad_request("the body must be a JSON object"));
    }
    if let Some(k) = body["kind"].as_str().filter(|k| *k != kind.kind) {
        return Err(ApiFailure::bad_request(format!(
            "the kind {k:?} of the body does not match the resource's kind {:?}",
            kind.kind
        )));
    }
    if let Some(av) = body["apiVersion"].as_str() {
        let group = av.rsplit_once('/').map_or("", |(g, _)| g);
        if group != kind.group {
            return Err(ApiFailure::bad_request(format!(
                "the apiVersion {av:?} of the body does not match the resource's group {:?}",
                kind.group
            )));
        }
    }
    Ok(())
}

/// Keeps only the part of a candidate object a request may change: `.status` through the status
/// subresource; everything but `.status` through the main resource of a kind with a status
/// subresource; everything otherwise.
fn restrict(kind: &ResourceKind, status: bool, old: &Value, mut candidate: Value) -> Value {
    let take_status = |target: &mut Value, from: &Value| match (target, from.get("status")) {
        (Value::Object(m), Some(s)) => {
            m.insert("status".into(), s.clone());
        }
        (Value::Object(m), None) => {
            m.remove("status");
        }
        _ => {}
    };
    if status {
        let mut out = old.clone();
        take_status(&mut out, &candidate);
        out
    } else if kind.status_subresource {
        take_status(&mut candidate, old);
        candidate
    } else {
        candidate
    }
}

/// The part of an applied configuration a request owns (see [`restrict`]).
fn scope_applied(kind: &ResourceKind, status: bool, applied: &Value) -> Value {
    let mut out = applied.clone();
    if let Value::Object(m) = &mut out {
        if status {
            m.retain(|k, _| k == "status");
        } else if kind.status_subresource {
            m.remove("status");
        }
    }
    out
}

/// Resource kinds a CustomResourceDefinition object declares.
fn crd_kinds(crd: &Value) -> Vec<ResourceKind> {
    let spec = &crd["spec"];
    let (Some(group), Some(kind), Some(plural)) = (
        spec["group"].as_str(),
        spec["names"]["kind"].as_str(),
        spec["names"]["plural"].as_str(),
    ) else {
        return Vec::new();
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool() != Some(false))
        .filter_map(|v| {
            Some(ResourceKind::new(
                group,
                v["name"].as_str()?,
                kind,
                plural,
                namespaced,
                v["subresources"]["status"].is_object(),
            ))
        })
        .collect()
}

fn is_crd(kind: &ResourceKind) -> bool {
    kind.group == "apiextensions.k8s.io" && kind.plural == "customresourcedefinitions"
}

impl ResourceKind {
    pub(super) fn res_id(&self) -> ResId {
        ResId {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    fn key(&self, ns: &str, name: &str) -> Key {
        Key {
            res: self.res_id(),
            ns: if self.namespaced { ns } else { "" }.to_string(),
            name: name.to_string(),
        }
    }
}

impl Store {
    pub(super) fn new(kinds: Vec<ResourceKind>, history_limit: usize) -> Self {
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(std::process::id().into());
            h.finish()
        };
        let mut store = Store {
            kinds: Vec::new(),
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: 0,
            subs: Vec::new(),
            removed_uids: HashSet::new(),
            counter: 0,
            seed,
        };
        for k in kinds {
            store.register(k);
        }
        store
    }

    pub(super) fn kinds(&self) -> &[ResourceKind] {
        &self.kinds
    }

    /// Adds a kind, replacing one with the same group, version and plural.
    pub(super) fn register(&mut self, kind: ResourceKind) {
        match self
            .kinds
            .iter_mut()
            .find(|k| k.group == kind.group && k.version == kind.version && k.plural == kind.plural)
        {
            Some(existing) => *existing = kind,
            None => self.kinds.push(kind),
        }
    }

    pub(super) fn find_kind(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<ResourceKind> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
            .cloned()
    }

    /// Resolves `plural` or `plural.group` (kubectl's notation) to the first registered version.
    pub(super) fn find_resource(&self, resource: &str) -> Option<ResourceKind> {
        let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
        self.kinds
            .iter()
            .find(|k| k.group == group && k.plural == plural)
            .cloned()
    }

    pub(super) fn find_by_type(&self, api_version: &str, kind: &str) -> Option<ResourceKind> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == kind)
            .cloned()
    }

    pub(super) fn resource_version(&self) -> u64 {
        self.rv
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn new_uid(&mut self) -> String {
        self.counter += 1;
        format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            self.seed >> 32,
            self.seed & 0xffff,
            self.counter
        )
    }

    fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.counter += 1;
        let mut n = self.counter.wrapping_mul(2_654_435_761) ^ self.seed;
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % 27) as usize] as char;
                n /= 27;
                c
            })
            .collect()
    }

    pub(super) fn get(
        &self,
        kind: &ResourceKind,
        ns: &str,
        name: &str,
    ) -> Result<Value, ApiFailure> {
        self.objects
            .get(&kind.key(ns, name))
            .map(|e| e.obj.clone())
            .ok_or_else(|| ApiFailure::not_found(kind, name))
    }

    /// Objects of a kind (all namespaces when `ns` is `None`), ordered by namespace and name.
    pub(super) fn list_all(&self, kind: &ResourceKind, ns: Option<&str>) -> Vec<Value> {
        let res = kind.res_id();
        self.objects
            .iter()
            .filter(|(k, _)| k.res == res && ns.is_none_or(|n| n == k.ns))
            .map(|(_, e)| e.obj.clone())
            .collect()
    }

    pub(super) fn list(
        &self,
        kind: &ResourceKind,
        spec: &WatchSpec,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiFailure> {
        let res = kind.res_id();
        let (snapshot_rv, after) = match continue_token.filter(|t| !t.is_empty()) {
            None => (self.rv, None),
            Some(token) => {
                let mut parts = token.splitn(3, '|');
                match (
                    parts.next().and_then(|r| r.parse().ok()),
                    parts.next(),
                    parts.next(),
                ) {
                    (Some(rv), Some(ns), Some(name)) => (
                        rv,
                        Some(Key {
                            res: res.clone(),
                            ns: ns.to_string(),
                            name: name.to_string(),
                        }),
                    ),
                    _ => return Err(ApiFailure::bad_request("invalid continue token")),
                }
            }
        };
        let mut matching = self
            .objects
            .iter()
            .filter(|(k, e)| {
                k.res == res && after.as_ref().is_none_or(|a| *k > a) && spec.selects(&k.ns, &e.obj)
            })
            .map(|(k, e)| (k, present(&e.obj, &spec.api_version, spec.meta_only)));
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut last = None;
        for (k, obj) in matching.by_ref().take(limit) {
            items.push(obj);
            last = Some(k);
        }
        let continue_token = match (matching.next(), last) {
            (Some(_), Some(k)) => Some(format!("{snapshot_rv}|{}|{}", k.ns, k.name)),
            _ => None,
        };
        Ok(ListPage {
            items,
            resource_version: snapshot_rv,
            continue_token,
        })
    }

    pub(super) fn create(
        &mut self,
        kind: &ResourceKind,
        ns: &str,
        mut obj: Value,
    ) -> Result<Outcome, ApiFailure> {
        check_type(kind, &obj)?;
        obj["apiVersion"] = Value::String(kind.api_version());
        obj["kind"] = Value::String(kind.kind.clone());
        if kind.status_subresource
            && let Value::Object(m) = &mut obj
        {
            m.remove("status");
        }
        let suffix = self.name_suffix();
        let m = meta_mut(&mut obj);
        if kind.namespaced {
            match m.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiFailure::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    m.insert("namespace".into(), ns.into());
                }
            }
        } else {
            m.remove("namespace");
        }
        let name = match (
            m.get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty()),
            m.get("generateName").and_then(Value::as_str),
        ) {
            (Some(name), _) => name.to_string(),
            (None, Some(prefix)) => format!("{prefix}{suffix}"),
            (None, None) => {
                return Err(ApiFailure::invalid(
                    kind,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        validate_name(kind, &name)?;
        m.insert("name".into(), name.clone().into());
        for f in SERVER_FIELDS {
            m.remove(f);
        }
        let key = kind.key(ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiFailure::already_exists(kind, &name));
        }
        normalize(&mut obj);
        let uid = self.new_uid();
        let rv = self.next_rv();
        let m = meta_mut(&mut obj);
        m.insert("uid".into(), uid.into());
        m.insert("creationTimestamp".into(), now());
        m.insert("generation".into(), 1.into());
        m.insert("resourceVersion".into(), rv.to_string().into());
        self.objects.insert(
            key.clone(),
            Entry {
                obj: obj.clone(),
                applied: HashMap::new(),
            },
        );
        self.emit(EventType::Added, &key, None, obj.clone());
        if is_crd(kind) {
            for k in crd_kinds(&obj) {
                self.register(k);
            }
        }
        Ok(Outcome {
            obj,
            changed: true,
            created: true,
        })
    }

    /// PUT: replaces the object (or its status), honouring a `metadata.resourceVersion` precondition.
    pub(super) fn replace(
        &mut self,
        kind: &ResourceKind,
        ns: &str,
        name: &str,
        body: Value,
        status: bool,
    ) -> Result<Outcome, ApiFailure> {
        check_type(kind, &body)?;
        let old = self.get(kind, ns, name)?;
        if let Some(n) = meta_str(&body, "name").filter(|n| *n != name) {
            return Err(ApiFailure::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        self.check_precondition(kind, name, &old, meta_str(&body, "resourceVersion"))?;
        let candidate = restrict(kind, status, &old, body);
        self.commit(kind, &kind.key(ns, name), candidate)
    }

    pub(super) fn patch(
        &mut self,
        kind: &ResourceKind,
        ns: &str,
        name: &str,
        how: PatchKind,
        patch: &Value,
        status: bool,
    ) -> Result<Outcome, ApiFailure> {
        let key = kind.key(ns, name);
        let Some(entry) = self.objects.get(&key) else {
            return match how {
                PatchKind::Apply { manager } if !status => {
                    check_type(kind, patch)?;
                    if meta_str(patch, "name") != Some(name) {
                        return Err(ApiFailure::bad_request(
                            "an applied configuration must have metadata.name matching the URL",
                        ));
                    }
                    let out = self.create(kind, ns, patch.clone())?;
                    if let Some(e) = self.objects.get_mut(&key) {
                        e.applied
                            .insert((manager, false), scope_applied(kind, false, patch));
                    }
                    Ok(out)
                }
                _ => Err(ApiFailure::not_found(kind, name)),
            };
        };
        let old = entry.obj.clone();
        self.check_precondition(
            kind,
            name,
            &old,
            patch
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str),
        )?;
        let mut candidate = old.clone();
        let mut record = None;
        match how {
            PatchKind::Merge => merge_patch(&mut candidate, patch),
            PatchKind::Json => json_patch(&mut candidate, patch)
                .map_err(|e| ApiFailure::invalid(kind, name, &e))?,
            PatchKind::Apply { manager } => {
                check_type(kind, patch)?;
                if meta_str(patch, "name").is_some_and(|n| n != name) {
                    return Err(ApiFailure::bad_request(
                        "the name of the applied configuration does not match the name on the URL",
                    ));
                }
                let applied = scope_applied(kind, status, patch);
                apply_merge(
                    &mut candidate,
                    entry.applied.get(&(manager.clone(), status)),
                    &applied,
                );
                record = Some(((manager, status), applied));
            }
        }
        let candidate = restrict(kind, status, &old, candidate);
        let out = self.commit(kind, &key, candidate)?;
        if let (Some((k, v)), Some(e)) = (record, self.objects.get_mut(&key)) {
            e.applied.insert(k, v);
        }
        Ok(out)
    }

    fn check_precondition(
        &self,
        kind: &ResourceKind,
        name: &str,
        current: &Value,
        wanted_rv: Option<&str>,
    ) -> Result<(), ApiFailure> {
        match wanted_rv {
            Some(rv) if Some(rv) != meta_str(current, "resourceVersion") => {
                Err(ApiFailure::conflict(kind, name))
            }
            _ => Ok(()),
        }
    }

    /// Stores a new version of an existing object: restores server-owned fields, detects no-ops,
    /// bumps generation/resourceVersion, completes deletion when the last finalizer goes.
    fn commit(
        &mut self,
        kind: &ResourceKind,
        key: &Key,
        mut new: Value,
    ) -> Result<Outcome, ApiFailure> {
        let old = match self.objects.get(key) {
            Some(e) => e.obj.clone(),
            None => return Err(ApiFailure::not_found(kind, &key.name)),
        };
        if !new.is_object() {
            return Err(ApiFailure::bad_request("the object must be a JSON object"));
        }
        new["apiVersion"] = old["apiVersion"].clone();
        new["kind"] = old["kind"].clone();
        {
            let old_meta = meta(&old).as_object().cloned().unwrap_or_default();
            let m = meta_mut(&mut new);
            for f in ["name", "namespace"].into_iter().chain(SERVER_FIELDS) {
                match old_meta.get(f) {
                    Some(v) => m.insert(f.to_string(), v.clone()),
                    None => m.remove(f),
                };
            }
        }
        normalize(&mut new);
        let is_terminating = terminating(&old);
        if is_terminating {
            let before = finalizers(&old);
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiFailure::invalid(
                    kind,
                    &key.name,
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        if new == old {
            return Ok(Outcome {
                obj: old,
                changed: false,
                created: false,
            });
        }
        if spec_changed(&old, &new, kind.status_subresource) {
            let generation = meta(&old)["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut new).insert("generation".into(), generation.into());
        }
        let rv = self.next_rv();
        meta_mut(&mut new).insert("resourceVersion".into(), rv.to_string().into());
        if is_terminating && finalizers(&new).is_empty() {
            self.remove(key, new.clone());
            self.collect(true);
        } else {
            if let Some(e) = self.objects.get_mut(key) {
                e.obj = new.clone();
            }
            self.emit(EventType::Modified, key, Some(old), new.clone());
            if is_crd(kind) {
                for k in crd_kinds(&new) {
                    self.register(k);
                }
            }
        }
        Ok(Outcome {
            obj: new,
            changed: true,
            created: false,
        })
    }

    pub(super) fn delete(
        &mut self,
        kind: &ResourceKind,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Deletion, ApiFailure> {
        let out = self.delete_one(kind, &kind.key(ns, name), opts)?;
        self.collect(true);
        Ok(out)
    }

    fn delete_one(
        &mut self,
        kind: &ResourceKind,
        key: &Key,
        opts: &DeleteOpts,
    ) -> Result<Deletion, ApiFailure> {
        let old = self.get(kind, &key.ns, &key.name)?;
        let uid = meta_str(&old, "uid").unwrap_or_default().to_string();
        if opts.uid.as_deref().is_some_and(|u| u != uid)
            || opts
                .resource_version
                .as_deref()
                .is_some_and(|rv| Some(rv) != meta_str(&old, "resourceVersion"))
        {
            return Err(ApiFailure::conflict(kind, &key.name));
        }
        if opts.orphan {
            self.orphan_dependents(&uid);
        }
        if !finalizers(&old).is_empty() {
            if terminating(&old) {
                return Ok(Deletion::Pending(old, false));
            }
            let mut new = old.clone();
            let generation = meta(&old)["generation"].as_i64().unwrap_or(0) + 1;
            let rv = self.next_rv();
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), now());
            m.insert("deletionGracePeriodSeconds".into(), 0.into());
            m.insert("generation".into(), generation.into());
            m.insert("resourceVersion".into(), rv.to_string().into());
            if let Some(e) = self.objects.get_mut(key) {
                e.obj = new.clone();
            }
            self.emit(EventType::Modified, key, Some(old), new.clone());
            return Ok(Deletion::Pending(new, true));
        }
        let mut last = old;
        let rv = self.next_rv();
        meta_mut(&mut last).insert("resourceVersion".into(), rv.to_string().into());
        self.remove(key, last.clone());
        Ok(Deletion::Removed(last))
    }

    /// Removes an object for good and emits DELETED (garbage collection runs separately).
    fn remove(&mut self, key: &Key, last: Value) {
        self.objects.remove(key);
        if let Some(uid) = meta_str(&last, "uid") {
            self.removed_uids.insert(uid.to_string());
        }
        self.emit(EventType::Deleted, key, None, last.clone());
        if key.res.group == "apiextensions.k8s.io" && key.res.plural == "customresourcedefinitions"
        {
            for k in crd_kinds(&last) {
                self.kinds.retain(|r| {
                    !(r.group == k.group && r.version == k.version && r.plural == k.plural)
                });
                if !self.kinds.iter().any(|r| r.res_id() == k.res_id()) {
                    let res = k.res_id();
                    self.objects.retain(|key, _| key.res != res);
                }
            }
        }
    }

    fn orphan_dependents(&mut self, uid: &str) {
        let dependents: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, e)| owner_uids(&e.obj).contains(&uid))
            .map(|(k, _)| k.clone())
            .collect();
        for key in dependents {
            let Some(kind) = self.kind_of(&key) else {
                continue;
            };
            let mut obj = self.objects[&key].obj.clone();
            if let Some(Value::Array(refs)) = meta_mut(&mut obj).get_mut("ownerReferences") {
                refs.retain(|r| r["uid"].as_str() != Some(uid));
            }
            // An orphaned object is a valid object; the commit cannot fail.
            let _ = self.commit(&kind, &key, obj);
        }
    }

    fn kind_of(&self, key: &Key) -> Option<ResourceKind> {
        self.kinds.iter().find(|k| k.res_id() == key.res).cloned()
    }

    /// Background garbage collection: deletes objects none of whose owners exist any more.
    /// With `only_after_removal`, only dependents of owners that were stored and are now gone are
    /// considered (an owner that never existed is left alone, as after a request); without it,
    /// every object with only dangling owner references is collected.
    pub(super) fn collect(&mut self, only_after_removal: bool) {
        loop {
            let live: HashSet<String> = self
                .objects
                .values()
                .filter_map(|e| meta_str(&e.obj, "uid").map(str::to_string))
                .collect();
            let victims: Vec<Key> = self
                .objects
                .iter()
                .filter(|(_, e)| {
                    let owners = owner_uids(&e.obj);
                    !owners.is_empty()
                        && !terminating(&e.obj)
                        && owners.iter().all(|u| !live.contains(*u))
                        && (!only_after_removal
                            || owners.iter().any(|u| self.removed_uids.contains(*u)))
                })
                .map(|(k, _)| k.clone())
                .collect();
            if victims.is_empty() {
                return;
            }
            for key in victims {
                if let Some(kind) = self.kind_of(&key) {
                    let _ = self.delete_one(&kind, &key, &DeleteOpts::default());
                } else {
                    self.objects.remove(&key);
                }
            }
        }
    }

    /// Replaces part of an object directly (test helper): like a write by another client,
    /// with the same no-op, generation and watch semantics.
    pub(super) fn modify(
        &mut self,
        kind: &ResourceKind,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Outcome, ApiFailure> {
        let mut obj = self.get(kind, ns, name)?;
        f(&mut obj);
        self.commit(kind, &kind.key(ns, name), obj)
    }

    fn emit(&mut self, ty: EventType, key: &Key, old: Option<Value>, obj: Value) {
        let change = Change {
            rv: self.rv,
            res: key.res.clone(),
            ns: key.ns.clone(),
            ty,
            old,
            obj,
        };
        self.subs.retain(|sub| {
            if sub.res != change.res {
                return !sub.tx.is_closed();
            }
            match sub.spec.event_for(&change) {
                Some(line) => sub.tx.send(line).is_ok(),
                None => !sub.tx.is_closed(),
            }
        });
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            if let Some(c) = self.history.pop_front() {
                self.compacted_rv = c.rv;
            }
        }
    }

    /// Forgets the event history: watches from an older resourceVersion get 410 Gone.
    pub(super) fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    /// Ends every open watch stream.
    pub(super) fn close_watches(&mut self) {
        self.subs.clear();
    }

    /// Starts a watch: the initial lines to send, and the live feed.
    pub(super) fn watch(
        &mut self,
        kind: &ResourceKind,
        spec: WatchSpec,
    ) -> Result<(Vec<Bytes>, Option<UnboundedReceiver<Bytes>>), ApiFailure> {
        let res = kind.res_id();
        let mut lines = Vec::new();
        let from = spec
            .resource_version
            .as_deref()
            .filter(|rv| !rv.is_empty() && *rv != "0");
        match from {
            Some(rv) if !spec.send_initial_events => {
                let from: u64 = rv.parse().map_err(|_| {
                    ApiFailure::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?;
                if from < self.compacted_rv {
                    let status = ApiFailure::expired(format!(
                        "too old resource version: {from} ({})",
                        self.compacted_rv
                    ));
                    lines.push(event_line("ERROR", &status.to_status()));
                    return Ok((lines, None));
                }
                lines.extend(
                    self.history
                        .iter()
                        .filter(|c| c.rv > from && c.res == res)
                        .filter_map(|c| spec.event_for(c)),
                );
            }
            _ => {
                // No resourceVersion, "0", or sendInitialEvents: synthetic ADDED for the current state.
                for (k, e) in &self.objects {
                    if k.res == res && spec.selects(&k.ns, &e.obj) {
                        let obj = present(&e.obj, &spec.api_version, spec.meta_only);
                        lines.push(event_line("ADDED", &obj));
                    }
                }
                if spec.send_initial_events {
                    lines.push(bookmark_line(&kind.kind, &spec.api_version, self.rv, true));
                }
            }
        }
        let (tx, rx) = unbounded_channel();
        self.subs.push(Sub { res, spec, tx });
        Ok((lines, Some(rx)))
    }
}
