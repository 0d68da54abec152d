//! Patch algorithms: JSON merge patch (RFC 7386), JSON patch (RFC 6902, with the Kubernetes
//! quirk that `test` of a missing path against `null` succeeds) and the simplified server-side
//! apply merge.

use serde_json::{Map, Value};

/// RFC 7386 JSON merge patch: objects merge recursively, `null` deletes, anything else replaces.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Splits a JSON pointer into its parent pointer and unescaped last token.
fn split_pointer(path: &str) -> Result<(&str, String), String> {
    if path.is_empty() {
        return Err("the root cannot be the target of this operation".into());
    }
    let idx = path
        .rfind('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((&path[..idx], unescape(&path[idx + 1..])))
}

fn array_index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if allow_end && token == "-" {
        return Ok(len);
    }
    let idx: usize = token
        .parse()
        .map_err(|_| format!("invalid array index {token:?}"))?;
    if idx > len || (!allow_end && idx == len) {
        return Err(format!("array index {idx} out of bounds"));
    }
    Ok(idx)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, token) = split_pointer(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(token, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let idx = array_index(&token, items.len(), true)?;
            items.insert(idx, value);
            Ok(())
        }
        _ => Err(format!("path {parent:?} does not exist")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, token) = split_pointer(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => map
            .remove(&token)
            .ok_or_else(|| format!("path {path:?} does not exist")),
        Some(Value::Array(items)) => {
            let idx = array_index(&token, items.len(), false)?;
            Ok(items.remove(idx))
        }
        _ => Err(format!("path {path:?} does not exist")),
    }
}

/// RFC 6902 JSON patch. On error the document is left unchanged.
pub(super) fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    let mut work = doc.clone();
    for op in ops {
        let kind = op["op"].as_str().ok_or("operation without \"op\"")?;
        let path = op["path"].as_str().ok_or("operation without \"path\"")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or("operation without \"value\"")
        };
        let from = || op["from"].as_str().ok_or("operation without \"from\"");
        match kind {
            "add" => add(&mut work, path, value()?)?,
            "remove" => {
                remove(&mut work, path)?;
            }
            "replace" => {
                let target = work
                    .pointer_mut(path)
                    .ok_or_else(|| format!("path {path:?} does not exist"))?;
                *target = value()?;
            }
            "move" => {
                let moved = remove(&mut work, from()?)?;
                add(&mut work, path, moved)?;
            }
            "copy" => {
                let copied = work
                    .pointer(from()?)
                    .cloned()
                    .ok_or("copy source does not exist")?;
                add(&mut work, path, copied)?;
            }
            "test" => {
                // As in Kubernetes (evanphx/json-patch): a missing path equals null.
                let actual = work.pointer(path).unwrap_or(&Value::Null);
                if *actual != value()? {
                    return Err(format!("test operation failed at {path:?}"));
                }
            }
            other => return Err(format!("unsupported JSON patch operation {other:?}")),
        }
    }
    *doc = work;
    Ok(())
}

/// Removes from `target` the fields that `prev` (this manager's previous apply) set and that
/// `applied` (its new apply) no longer sets: the part of server-side apply ownership we model.
fn remove_unapplied(target: &mut Value, prev: &Value, applied: &Value) {
    let (Value::Object(t), Value::Object(p)) = (target, prev) else {
        return;
    };
    for (k, pv) in p {
        match applied.get(k) {
            None => {
                t.remove(k);
            }
            Some(av) if pv.is_object() && av.is_object() => {
                if let Some(tv) = t.get_mut(k) {
                    remove_unapplied(tv, pv, av);
                }
            }
            Some(_) => {}
        }
    }
}

/// Simplified server-side apply: drop what the same field manager applied before and no longer
/// applies, then deep-merge the applied configuration (objects merge, lists and scalars replace).
pub(super) fn apply_merge(target: &mut Value, prev: Option<&Value>, applied: &Value) {
    if let Some(prev) = prev {
        remove_unapplied(target, prev, applied);
    }
    merge_patch(target, applied);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null, "h": 1}, "l": [3]}),
        );
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e", "h": 1}, "l": [3]}));
    }

    #[test]
    fn json_patch_ops_and_kubernetes_test_quirk() {
        let mut doc = json!({"metadata": {"name": "x"}});
        let ops = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["a"]},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "b"},
            {"op": "copy", "from": "/metadata/name", "path": "/metadata/generateName"},
            {"op": "replace", "path": "/metadata/name", "value": "y"},
            {"op": "move", "from": "/metadata/generateName", "path": "/g"},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ]);
        json_patch(&mut doc, &ops).unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"name": "y", "finalizers": ["b"]}, "g": "x"})
        );
        let before = doc.clone();
        let failing = json!([
            {"op": "remove", "path": "/g"},
            {"op": "test", "path": "/metadata/name", "value": "nope"}
        ]);
        assert!(json_patch(&mut doc, &failing).is_err());
        assert_eq!(doc, before, "a failed patch leaves the document unchanged");
    }

    #[test]
    fn apply_merge_drops_fields_no_longer_applied() {
        let prev = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": 1}});
        let mut target = json!({"metadata": {"labels": {"a": "1", "b": "2", "other": "3"}}, "spec": {"x": 1, "y": 2}});
        let applied = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 5}});
        apply_merge(&mut target, Some(&prev), &applied);
        assert_eq!(
            target,
            json!({"metadata": {"labels": {"a": "1", "other": "3"}}, "spec": {"x": 5, "y": 2}})
        );
    }
}
