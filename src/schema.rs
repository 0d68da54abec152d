//! Validation of manifests against the generated CRD schemas: OpenAPI structure (JSON Schema) and
//! CEL `x-kubernetes-validations`, as the API server would apply them, without a cluster.
//!
//! Unknown fields are reported as errors (as `kubectl apply` does with strict field validation),
//! because the API server would otherwise silently prune them and the user's intent would be lost.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::API_VERSION;

/// One way a manifest breaks its CRD schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaViolation {
    /// Dotted path of the offending field, e.g. `spec.objective.target` (empty for the whole object).
    pub field: String,
    /// The schema rule broken: a JSON-Schema keyword (`enum`, `minimum`, `required`...) or `cel`.
    pub rule: String,
    /// What is wrong, in words.
    pub message: String,
}

impl std::fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let field = if self.field.is_empty() {
            "<object>"
        } else {
            &self.field
        };
        write!(f, "{field}: {} ({})", self.message, self.rule)
    }
}

/// Compiled schemas of every kind of the API, built once from the generated CRDs.
pub struct SchemaValidator {
    kinds: BTreeMap<String, CompiledKind>,
}

struct CompiledKind {
    structure: jsonschema::Validator,
    cel: kube::core::cel::CompiledSchema,
}

impl SchemaValidator {
    /// Compiles the schemas of every CRD `crate::crd::all()` generates.
    pub fn new() -> Self {
        let mut kinds = BTreeMap::new();
        for crd in crate::crd::all() {
            let openapi = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("every generated CRD has an openAPIV3Schema");
            let openapi = serde_json::to_value(openapi).expect("a schema serializes to JSON");
            let structure = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .build(&to_json_schema(&openapi, true))
                .expect("the generated CRD schema is a valid JSON Schema");
            let cel = kube::core::cel::compile_schema(&openapi);
            kinds.insert(crd.spec.names.kind.clone(), CompiledKind { structure, cel });
        }
        Self { kinds }
    }

    /// Kinds this validator knows.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Every schema violation of `object`, a whole manifest (`apiVersion`, `kind`, `metadata`, `spec`).
    /// Structural errors come first; CEL rules run only on structurally valid objects, as on the API server.
    pub fn validate(&self, object: &Value) -> Vec<SchemaViolation> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(compiled) = self.kinds.get(kind) else {
            return vec![SchemaViolation {
                field: "kind".into(),
                rule: "kind".into(),
                message: format!(
                    "unknown kind {kind:?} in {API_VERSION}; expected one of {}",
                    self.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            }];
        };
        let mut found: Vec<SchemaViolation> = compiled
            .structure
            .iter_errors(object)
            .flat_map(|e| violations_of(&e))
            .collect();
        if object.get("apiVersion").and_then(Value::as_str) != Some(API_VERSION) {
            found.push(SchemaViolation {
                field: "apiVersion".into(),
                rule: "apiVersion".into(),
                message: format!("must be {API_VERSION}"),
            });
        }
        if found.is_empty() {
            let validator = kube::core::cel::Validator::new();
            if let Err(errors) = validator.validate_compiled(&compiled.cel, object, None) {
                found.extend(errors.into_vec().into_iter().map(|e| SchemaViolation {
                    field: e.field_path.trim_start_matches('.').to_string(),
                    rule: "cel".into(),
                    message: e.message,
                }));
            }
        }
        found.sort_by(|a, b| (&a.field, &a.rule).cmp(&(&b.field, &b.rule)));
        found.dedup();
        found
    }
}

impl Default for SchemaValidator {
    fn default() -> Self {
        Self::new()
    }
}

/// The violations one JSON-Schema error stands for, each naming the precise field: a missing
/// required property or an unknown property is named itself, not its parent object.
fn violations_of(error: &jsonschema::ValidationError<'_>) -> Vec<SchemaViolation> {
    use jsonschema::error::ValidationErrorKind;
    let parent = pointer_to_dotted(&error.instance_path().to_string());
    let child = |name: &str| {
        if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        }
    };
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            vec![SchemaViolation {
                field: child(name),
                rule: "required".into(),
                message: format!("required field {name:?} is missing"),
            }]
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|name| SchemaViolation {
                field: child(name),
                rule: "additionalProperties".into(),
                message: format!(
                    "unknown field {name:?} (check the spelling; the API server would drop it)"
                ),
            })
            .collect(),
        ValidationErrorKind::Enum { options } => {
            let allowed: Vec<String> = options
                .as_array()
                .map(|o| {
                    o.iter()
                        .filter(|v| !v.is_null())
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
                        .collect()
                })
                .unwrap_or_default();
            vec![SchemaViolation {
                field: parent,
                rule: "enum".into(),
                message: format!("{} is not one of: {}", error.instance(), allowed.join(", ")),
            }]
        }
        kind => vec![SchemaViolation {
            field: parent,
            rule: kind.keyword().to_string(),
            message: describe(error),
        }],
    }
}

/// A readable message: jsonschema's own, without echoing whole sub-objects.
fn describe(error: &jsonschema::ValidationError<'_>) -> String {
    let message = error.to_string();
    if message.len() > 300 {
        format!("{}…", &message[..message.floor_char_boundary(300)])
    } else {
        message
    }
}

/// `/spec/signals/surveys/0/scale` -> `spec.signals.surveys[0].scale`.
fn pointer_to_dotted(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

/// Turns a CRD's OpenAPI v3 schema into the JSON Schema the API server effectively enforces:
/// `nullable` admits null, `x-kubernetes-int-or-string` admits both, unknown fields are refused,
/// and the root admits the standard `apiVersion`, `kind` and `metadata`.
fn to_json_schema(openapi: &Value, root: bool) -> Value {
    let Value::Object(schema) = openapi else {
        return openapi.clone();
    };
    let mut out = Map::new();
    for (key, value) in schema {
        match key.as_str() {
            "properties" => {
                let props = value
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(k, v)| (k.clone(), to_json_schema(v, false)))
                            .collect::<Map<_, _>>()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" if value.is_object() => {
                out.insert(key.clone(), to_json_schema(value, false));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let list = value
                    .as_array()
                    .map(|l| l.iter().map(|v| to_json_schema(v, false)).collect())
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Array(list));
            }
            // Defaults and formats are the API server's business, not a validation rule.
            "default" | "format" | "nullable" | "x-kubernetes-int-or-string" => {}
            k if k.starts_with("x-kubernetes-") => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.insert("type".into(), serde_json::json!(["integer", "string"]));
    }
    if schema.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(Value::String(t)) = out.get("type").cloned() {
            out.insert("type".into(), serde_json::json!([t, "null"]));
        }
        if let Some(Value::Array(values)) = out.get_mut("enum") {
            values.push(Value::Null);
        }
    }
    let preserves_unknown =
        schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if root {
        let props = out
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(props) = props {
            props.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
            props.insert("kind".into(), serde_json::json!({"type": "string"}));
            props.insert("metadata".into(), metadata_schema());
        }
        out.insert(
            "required".into(),
            serde_json::json!(["apiVersion", "kind", "metadata", "spec"]),
        );
    }
    if out.contains_key("properties")
        && !out.contains_key("additionalProperties")
        && !preserves_unknown
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

/// The parts of ObjectMeta a manifest may carry, with the name rules the API server applies.
fn metadata_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 253,
                     "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
            "namespace": {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
        }
    })
}
