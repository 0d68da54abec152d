//! The committed CRDs are exactly what the binary generates, and every schema property teaches `kubectl explain`.

use std::path::Path;

use cx_conductor::crd;
use serde_json::Value;

#[test]
fn committed_crds_equal_the_generated_ones() {
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/cx-conductor.crds.yaml"),
    )
    .unwrap();
    assert!(
        committed == crd::to_yaml(),
        "crds/cx-conductor.crds.yaml is stale: run `cargo run -- crd > crds/cx-conductor.crds.yaml`"
    );
}

/// Paths of schema properties that have no description.
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let here = format!("{path}.{name}");
            // The root `metadata` may carry nothing but `name`/`generateName` (the API server
            // refuses a description there); `kubectl explain` shows ObjectMeta's own.
            let root_metadata = !path.contains('.') && name == "metadata";
            if !root_metadata
                && prop
                    .get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                out.push(here.clone());
            }
            undocumented(prop, &here, out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = schema.get(key).filter(|s| s.is_object()) {
            undocumented(sub, &format!("{path}[]"), out);
        }
    }
}

#[test]
fn every_schema_property_has_a_description() {
    for crd in crd::all() {
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let mut missing = Vec::new();
        undocumented(&schema, &crd.spec.names.kind, &mut missing);
        assert!(
            missing.is_empty(),
            "properties without description: {missing:#?}"
        );
    }
}

#[test]
fn every_kind_has_short_name_category_status_and_printer_columns() {
    let expected = [
        ("Channel", "chan"),
        ("Touchpoint", "tp"),
        ("ExperienceKPI", "xkpi"),
        ("CustomerJourney", "cxj"),
    ];
    let crds = crd::all();
    assert_eq!(crds.len(), expected.len());
    for (crd, (kind, short)) in crds.iter().zip(expected) {
        assert_eq!(crd.spec.group, "cx.conductor.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_string()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["cx".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert!(columns.contains(&"Age"), "{kind}: {columns:?}");
        assert!(columns.len() >= 4, "{kind}: {columns:?}");
        // Every status carries observedGeneration and conditions keyed by type.
        let schema = serde_json::to_value(
            version
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let status = &schema["properties"]["status"]["properties"];
        assert_eq!(status["observedGeneration"]["type"], "integer", "{kind}");
        assert_eq!(
            status["conditions"]["x-kubernetes-list-type"], "map",
            "{kind}"
        );
        assert_eq!(
            status["conditions"]["x-kubernetes-list-map-keys"][0], "type",
            "{kind}"
        );
    }
}
