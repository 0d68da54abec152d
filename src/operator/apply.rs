//! Convergent server-side apply of the objects the operator owns.
//!
//! An object is applied when it is missing, when what the operator wants changed since its last
//! apply (an annotation carries the hash of the applied configuration, so a field the plan stops
//! sending is noticed and server-side apply removes it), or when someone changed a field the
//! operator sets (the cluster's copy no longer contains the desired fields). Values the API
//! server canonicalises (`0.5` CPU is stored as `500m`, an empty list may be dropped) compare
//! equal, so a steady state costs no write at all.
//!
//! `spec.replicas` of a Deployment is yielded to whoever scaled it last (`kubectl scale`, a
//! HorizontalPodAutoscaler) until the Touchpoint's own replica count changes.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::core::plan::{FIELD_MANAGER, hash};

use super::error::Result;

/// Annotation holding the hash of the configuration the operator applied last.
pub const APPLIED_HASH_ANNOTATION: &str = "cx.conductor.dev/applied-hash";
/// Annotation holding the replica count the Touchpoint asked for at the last apply.
pub const REPLICAS_ANNOTATION: &str = "cx.conductor.dev/replicas";

/// Whether `actual` already holds every field of `desired` (maps: each desired key, recursively;
/// lists: same length, item by item; scalars: equal, resource quantities by value). Fields the
/// API server adds are ignored; an empty desired list or map matches an absent one.
pub fn contains(actual: &Value, desired: &Value) -> bool {
    contains_at(actual, desired, "")
}

fn contains_at(actual: &Value, desired: &Value, key: &str) -> bool {
    match (actual, desired) {
        (Value::Object(a), Value::Object(d)) => {
            let quantities = matches!(key, "requests" | "limits" | "overhead");
            d.iter().all(|(k, dv)| match a.get(k) {
                Some(av) if quantities => same_quantity(av, dv),
                Some(av) => contains_at(av, dv, k),
                None => is_empty(dv),
            })
        }
        (Value::Array(a), Value::Array(d)) => {
            a.len() == d.len() && a.iter().zip(d).all(|(av, dv)| contains_at(av, dv, key))
        }
        (Value::Null, d) => is_empty(d),
        (a, d) => a == d,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn same_quantity(actual: &Value, desired: &Value) -> bool {
    match (
        actual.as_str().and_then(quantity),
        desired.as_str().and_then(quantity),
    ) {
        (Some(a), Some(d)) => (a - d).abs() <= f64::EPSILON * a.abs().max(d.abs()) * 4.0,
        _ => actual == desired,
    }
}

/// The value of a Kubernetes resource quantity (`500m`, `0.5`, `1Gi`, `1e3`), or `None`.
pub fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let e: i32 = exponent.strip_prefix(['e', 'E'])?.parse().ok()?;
            10f64.powi(e)
        }
    };
    Some(number * factor)
}

/// Whether a manager other than the operator owns `spec.replicas` of `observed`.
fn replicas_owned_by_someone_else(observed: &Value) -> bool {
    observed["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|entry| {
            entry["manager"].as_str() != Some(FIELD_MANAGER)
                && entry["fieldsV1"]["f:spec"]["f:replicas"].is_object()
        })
}

/// The object to apply for `desired`: stamped with the hash of the configuration, and without
/// `spec.replicas` while another manager scales the Deployment and the Touchpoint's count did
/// not change.
pub fn prepare(desired: &Value, observed: Option<&Value>) -> Value {
    let mut prepared = desired.clone();
    let is_deployment = desired["kind"] == "Deployment";
    if is_deployment {
        let wanted = desired["spec"]["replicas"]
            .as_i64()
            .unwrap_or(1)
            .to_string();
        let yield_replicas = observed.is_some_and(|o| {
            replicas_owned_by_someone_else(o)
                && o["metadata"]["annotations"][REPLICAS_ANNOTATION].as_str()
                    == Some(wanted.as_str())
        });
        if yield_replicas && let Some(spec) = prepared["spec"].as_object_mut() {
            spec.remove("replicas");
        }
        annotate(&mut prepared, REPLICAS_ANNOTATION, wanted);
    }
    let fingerprint = hash(&prepared.to_string());
    annotate(&mut prepared, APPLIED_HASH_ANNOTATION, fingerprint);
    prepared
}

fn annotate(object: &mut Value, key: &str, value: String) {
    let metadata = &mut object["metadata"];
    if !metadata["annotations"].is_object() {
        metadata["annotations"] = Value::Object(Default::default());
    }
    metadata["annotations"][key] = Value::String(value);
}

/// Whether `prepared` (from [`prepare`]) must be applied over `observed`.
pub fn needs_apply(prepared: &Value, observed: Option<&Value>) -> bool {
    let Some(observed) = observed else {
        return true;
    };
    observed["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
        != prepared["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
        || !contains(observed, prepared)
}

/// Applies `desired` (a whole object with apiVersion, kind and metadata) unless `observed`
/// already is what it would become. Returns whether a write was made.
pub async fn apply_if_drifted(
    client: &kube::Client,
    desired: &Value,
    observed: Option<&Value>,
) -> Result<bool> {
    let prepared = prepare(desired, observed);
    if !needs_apply(&prepared, observed) {
        return Ok(false);
    }
    let api_version = prepared["apiVersion"].as_str().unwrap_or_default();
    let kind = prepared["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let namespace = prepared["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let name = prepared["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(&prepared)).await?;
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
        assert!(
            contains(&actual, &json!({"spec": {"egress": []}})),
            "the server drops an empty list"
        );
    }

    #[test]
    fn quantities_compare_by_value() {
        let actual = json!({"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "128Mi"}}});
        assert!(contains(
            &actual,
            &json!({"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"memory": "134217728"}}})
        ));
        assert!(!contains(
            &actual,
            &json!({"resources": {"requests": {"cpu": "0.6"}}})
        ));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("2Ki"), Some(2048.0));
        assert_eq!(quantity("abc"), None);
    }

    #[test]
    fn a_removed_field_changes_the_applied_hash() {
        let with =
            json!({"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"x": "1", "y": "2"}});
        let without = json!({"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"x": "1"}});
        let applied = prepare(&with, None);
        // The server's copy after the first apply still holds `y`: containment alone would pass.
        assert!(contains(&applied["data"], &prepare(&without, None)["data"]));
        assert!(needs_apply(
            &prepare(&without, Some(&applied)),
            Some(&applied)
        ));
        assert!(!needs_apply(
            &prepare(&with, Some(&applied)),
            Some(&applied)
        ));
    }

    #[test]
    fn replicas_are_yielded_to_another_scaler_until_the_touchpoint_changes_them() {
        let desired =
            json!({"kind": "Deployment", "metadata": {"name": "a"}, "spec": {"replicas": 2}});
        let first = prepare(&desired, None);
        assert_eq!(first["spec"]["replicas"], 2);
        let mut scaled = first.clone();
        scaled["spec"]["replicas"] = json!(5);
        scaled["metadata"]["managedFields"] = json!([
            {"manager": "cx-conductor", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}}}},
            {"manager": "kubectl", "operation": "Update", "subresource": "scale", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        ]);
        let again = prepare(&desired, Some(&scaled));
        assert!(again["spec"].get("replicas").is_none(), "{again}");
        assert!(
            needs_apply(&again, Some(&scaled)),
            "one apply hands replicas over"
        );
        let mut handed_over = again.clone();
        handed_over["spec"]["replicas"] = json!(5);
        handed_over["metadata"]["managedFields"] = scaled["metadata"]["managedFields"].clone();
        assert!(!needs_apply(
            &prepare(&desired, Some(&handed_over)),
            Some(&handed_over)
        ));
        let changed =
            json!({"kind": "Deployment", "metadata": {"name": "a"}, "spec": {"replicas": 3}});
        let taken_back = prepare(&changed, Some(&scaled));
        assert_eq!(taken_back["spec"]["replicas"], 3);
        assert!(needs_apply(&taken_back, Some(&scaled)));
    }

    #[test]
    fn a_slimmed_cache_still_says_who_scales_a_deployment() {
        let desired =
            json!({"kind": "Deployment", "metadata": {"name": "a"}, "spec": {"replicas": 2}});
        let mut scaled = prepare(&desired, None);
        scaled["spec"]["replicas"] = json!(5);
        scaled["metadata"]["managedFields"] = json!([
            {"manager": "cx-conductor", "operation": "Apply", "fieldsV1": {"f:metadata": {"f:labels": {}}, "f:spec": {"f:template": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale", "fieldsV1": {"f:spec": {"f:replicas": {}}, "f:status": {"f:replicas": {}}}}
        ]);
        let mut meta: kube::api::ObjectMeta =
            serde_json::from_value(scaled["metadata"].clone()).unwrap();
        crate::operator::slim(&mut meta);
        let kept = serde_json::to_value(&meta.managed_fields).unwrap();
        assert_eq!(
            kept,
            json!([{"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale", "fieldsV1": {"f:spec": {"f:replicas": {}}}}])
        );
        let mut slimmed = scaled.clone();
        slimmed["metadata"] = serde_json::to_value(&meta).unwrap();
        assert_eq!(
            prepare(&desired, Some(&slimmed)),
            prepare(&desired, Some(&scaled)),
            "the same decision from the slimmed object"
        );
        let mut unscaled: kube::api::ObjectMeta = serde_json::from_value(json!({
            "name": "b",
            "managedFields": [{"manager": "cx-conductor", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}}}}]
        }))
        .unwrap();
        crate::operator::slim(&mut unscaled);
        assert_eq!(unscaled.managed_fields, None);
    }
}
