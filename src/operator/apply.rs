//! Drift-aware server-side apply: an object is applied only when the cluster's copy does not
//! already contain every field we want, so a steady state costs no write at all.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::core::plan::FIELD_MANAGER;

use super::error::Result;

/// Whether `actual` already holds every field of `desired` (maps: each desired key, recursively;
/// lists: same length, item by item; scalars: equal). Fields the API server adds are ignored.
pub fn contains(actual: &Value, desired: &Value) -> bool {
    match (actual, desired) {
        (Value::Object(a), Value::Object(d)) => d.iter().all(|(k, dv)| match a.get(k) {
            Some(av) => contains(av, dv),
            None => dv.is_null() || dv.as_object().is_some_and(|o| o.is_empty()),
        }),
        (Value::Array(a), Value::Array(d)) => {
            a.len() == d.len() && a.iter().zip(d).all(|(av, dv)| contains(av, dv))
        }
        (a, d) => a == d,
    }
}

/// Applies `desired` (a whole object with apiVersion, kind and metadata) unless `observed`
/// already contains it. Returns whether a write was made.
pub async fn apply_if_drifted(
    client: &kube::Client,
    desired: &Value,
    observed: Option<&Value>,
) -> Result<bool> {
    if observed.is_some_and(|o| contains(o, desired)) {
        return Ok(false);
    }
    let api_version = desired["apiVersion"].as_str().unwrap_or_default();
    let kind = desired["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let namespace = desired["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let name = desired["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(desired)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containment_ignores_server_added_fields_but_not_changes() {
        let actual = json!({"metadata": {"name": "a", "uid": "x", "labels": {"k": "v", "extra": "1"}},
                            "spec": {"replicas": 2, "ports": [{"port": 80, "protocol": "TCP"}]}});
        assert!(contains(
            &actual,
            &json!({"metadata": {"name": "a", "labels": {"k": "v"}}, "spec": {"ports": [{"port": 80}]}})
        ));
        assert!(!contains(&actual, &json!({"spec": {"replicas": 3}})));
        assert!(!contains(
            &actual,
            &json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}})
        ));
        assert!(!contains(
            &actual,
            &json!({"metadata": {"labels": {"missing": "v"}}})
        ));
        assert!(
            contains(&actual, &json!({"spec": {"selector": {}}})),
            "an empty map is what an absent one means"
        );
    }
}
