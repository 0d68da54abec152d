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
    /// Where the field is written, when the manifest was read from a file.
    #[serde(flatten)]
    pub origin: Option<crate::core::Origin>,
}

impl SchemaViolation {
    /// A violation of `rule` at `field`, not located yet.
    pub fn new(
        field: impl Into<String>,
        rule: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
            message: message.into(),
            origin: None,
        }
    }
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
    openapi: Value,
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
            kinds.insert(
                crd.spec.names.kind.clone(),
                CompiledKind {
                    structure,
                    cel,
                    openapi,
                },
            );
        }
        Self { kinds }
    }

    /// Kinds this validator knows.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// `object` as the API server stores it when it is valid: a null of a defaulted field that is
    /// not `nullable` its default, null labels and annotations empty (see [`default_nulls`]).
    pub fn admitted(&self, object: &Value) -> Value {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match self.kinds.get(kind) {
            Some(compiled) => default_nulls(&compiled.openapi, object),
            None => object.clone(),
        }
    }

    /// Every schema violation of `object`, a whole manifest (`apiVersion`, `kind`, `metadata`, `spec`).
    /// Structural errors come first; CEL rules run only on structurally valid objects, as on the API server.
    pub fn validate(&self, object: &Value) -> Vec<SchemaViolation> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(compiled) = self.kinds.get(kind) else {
            return vec![SchemaViolation::new(
                "kind",
                "kind",
                format!(
                    "unknown kind {kind:?} in {API_VERSION}; expected one of {}",
                    self.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )];
        };
        let defaulted = default_nulls(&compiled.openapi, object);
        let object = &defaulted;
        let mut found: Vec<SchemaViolation> = compiled
            .structure
            .iter_errors(object)
            .flat_map(|e| violations_of(&e))
            .collect();
        // kubectl and the API server refuse a document without metadata for its name: "resource
        // name may not be empty".
        if object.get("metadata").is_none() {
            found.push(SchemaViolation::new(
                "metadata.name",
                "required",
                "required field \"name\" is missing (no metadata): a resource name may not be empty",
            ));
        }
        if object.get("apiVersion").and_then(Value::as_str) != Some(API_VERSION) {
            found.push(SchemaViolation::new(
                "apiVersion",
                "apiVersion",
                format!("must be {API_VERSION}"),
            ));
        }
        duplicates(&compiled.openapi, object, "", &mut found);
        if found.is_empty() {
            let validator = kube::core::cel::Validator::new();
            let object = nulls_absent(&compiled.openapi, object);
            if let Err(errors) = validator.validate_compiled(&compiled.cel, &object, None) {
                found.extend(errors.into_vec().into_iter().map(|e| {
                    SchemaViolation::new(e.field_path.trim_start_matches('.'), "cel", e.message)
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

/// `object` as server-side apply hands it to validation (measured with
/// `kubectl apply --server-side --dry-run=server`, Kubernetes 1.37): a null written for a field
/// that is not `nullable` but has a `default` becomes the default (structural defaulting treats
/// it as not written), and a null label or annotation is the empty string, as ObjectMeta decodes
/// it. Every other null stays and is validated as written: a null of a field that is not
/// `nullable` (required or not, object, list or scalar), of a map value or of a list item is
/// refused for its type, and a null of a `nullable` field with an `enum` is refused by the enum
/// (even when the enum lists null). Only `kubectl create` and client-side apply decode the body
/// through the CRD codec, which also drops nulls of non-nullable fields without a default.
fn default_nulls(openapi: &Value, object: &Value) -> Value {
    fn walk(schema: &Value, value: &mut Value) {
        match value {
            Value::Object(map) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                let values = schema.get("additionalProperties").filter(|a| a.is_object());
                for (key, item) in map.iter_mut() {
                    let Some(child) = properties.and_then(|p| p.get(key)).or(values) else {
                        continue;
                    };
                    let is_property = properties.is_some_and(|p| p.contains_key(key));
                    if item.is_null()
                        && is_property
                        && child.get("nullable") != Some(&Value::Bool(true))
                        && let Some(default) = child.get("default")
                    {
                        *item = default.clone();
                    }
                    walk(child, item);
                }
            }
            Value::Array(items) => {
                if let Some(schema) = schema.get("items") {
                    for item in items {
                        walk(schema, item);
                    }
                }
            }
            _ => {}
        }
    }
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        // `apiVersion: ~`, `kind: ~` and `metadata: ~` are not written, as kubectl reads them.
        map.retain(|key, item| {
            !(item.is_null() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata"))
        });
        if let Some(meta) = map.get_mut("metadata") {
            for part in ["labels", "annotations"] {
                if let Some(Value::Object(entries)) = meta.get_mut(part) {
                    for entry in entries.values_mut().filter(|v| v.is_null()) {
                        *entry = Value::String(String::new());
                    }
                }
            }
        }
    }
    let mut schema = openapi.clone();
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.remove("metadata");
    }
    walk(&schema, &mut object);
    object
}

/// `object` as CEL rules see it on the API server: a null field of an object with properties is
/// absent (`has()` is false), as a null map value or list item is not.
fn nulls_absent(openapi: &Value, object: &Value) -> Value {
    fn walk(schema: &Value, value: &mut Value) {
        match value {
            Value::Object(map) => {
                if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                    map.retain(|key, item| !(item.is_null() && properties.contains_key(key)));
                }
                let properties = schema.get("properties").and_then(Value::as_object);
                let values = schema.get("additionalProperties").filter(|a| a.is_object());
                for (key, item) in map.iter_mut() {
                    if let Some(child) = properties.and_then(|p| p.get(key)).or(values) {
                        walk(child, item);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(schema) = schema.get("items") {
                    for item in items {
                        walk(schema, item);
                    }
                }
            }
            _ => {}
        }
    }
    let mut object = object.clone();
    walk(openapi, &mut object);
    object
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
    let instance = error.instance();
    let got = render(instance);
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            vec![SchemaViolation::new(
                child(name),
                "required",
                format!("required field {name:?} is missing"),
            )]
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|name| {
                SchemaViolation::new(
                    child(name),
                    "additionalProperties",
                    format!(
                        "unknown field {name:?} (check the spelling; the API server would drop it)"
                    ),
                )
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
            let mut message = format!("{got} is not one of: {}", allowed.join(", "));
            if let Some(near) = instance
                .as_str()
                .and_then(|v| allowed.iter().find(|a| same_word(a, v)))
            {
                message.push_str(&format!(" (did you mean {near:?}?)"));
            }
            vec![SchemaViolation::new(parent, "enum", message)]
        }
        ValidationErrorKind::Pattern { pattern } => vec![SchemaViolation::new(
            parent,
            "pattern",
            describe_pattern(pattern, instance.as_str().unwrap_or_default()),
        )],
        ValidationErrorKind::Minimum { limit } => vec![SchemaViolation::new(
            parent,
            "minimum",
            format!("must be at least {} (got {got})", render(limit)),
        )],
        ValidationErrorKind::Maximum { limit } => vec![SchemaViolation::new(
            parent,
            "maximum",
            format!("must be at most {} (got {got})", render(limit)),
        )],
        ValidationErrorKind::MinLength { limit: 1 } => {
            vec![SchemaViolation::new(
                parent,
                "minLength",
                "must not be empty",
            )]
        }
        ValidationErrorKind::MinLength { limit } => vec![SchemaViolation::new(
            parent,
            "minLength",
            format!("must be at least {limit} characters long"),
        )],
        ValidationErrorKind::MaxLength { limit } => vec![SchemaViolation::new(
            parent,
            "maxLength",
            format!(
                "must be at most {limit} characters long (this one has {})",
                instance.as_str().map_or(0, |s| s.chars().count())
            ),
        )],
        ValidationErrorKind::MinItems { limit } => vec![SchemaViolation::new(
            parent,
            "minItems",
            format!("must list at least {}", plural(*limit, "item")),
        )],
        ValidationErrorKind::MaxItems { limit } => vec![SchemaViolation::new(
            parent,
            "maxItems",
            format!(
                "must list at most {} (this one has {})",
                plural(*limit, "item"),
                instance.as_array().map_or(0, Vec::len)
            ),
        )],
        ValidationErrorKind::MaxProperties { limit } => vec![SchemaViolation::new(
            parent,
            "maxProperties",
            format!("must have at most {}", plural(*limit, "entry")),
        )],
        ValidationErrorKind::Type { kind } => {
            let wanted = match kind {
                jsonschema::error::TypeKind::Single(t) => t.to_string(),
                jsonschema::error::TypeKind::Multiple(ts) => ts
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            let wanted = wanted
                .replace("object", "a mapping (key: value)")
                .replace("array", "a list")
                .replace("string", "a string")
                .replace("integer", "a whole number")
                .replace("number", "a number")
                .replace("boolean", "true or false")
                .replace("null", "empty");
            vec![SchemaViolation::new(
                parent,
                "type",
                format!("must be {wanted} (got {got})"),
            )]
        }
        kind => vec![SchemaViolation::new(
            parent,
            kind.keyword().to_string(),
            describe(error),
        )],
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

/// "1 item", "2 items", "1 entry", "3 entries".
fn plural(n: u64, word: &str) -> String {
    match (n, word.strip_suffix('y')) {
        (1, _) => format!("1 {word}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {word}s"),
    }
}

/// A value as written in YAML: strings quoted, numbers without a trailing `.0`.
fn render(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "a mapping".into(),
        Value::Array(_) => "a list".into(),
        other => other.to_string(),
    }
}

/// Whether two words are the same but for case and separators (`Purchase`, `mobile_app`).
fn same_word(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .flat_map(char::to_lowercase)
            .collect()
    };
    a != b && norm(a) == norm(b)
}

/// A pattern of the API, described in words with examples (never the regular expression).
struct Format {
    pattern: &'static str,
    what: &'static str,
    hint: fn(&str) -> Option<String>,
}

const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const DNS_SUBDOMAIN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const LABEL_VALUE: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
const SECRET_NAME: &str = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$";

/// Every pattern the CRDs (and manifest metadata) use; `tests` check none is missing.
const FORMATS: &[Format] = &[
    Format {
        pattern: crate::api::kpi::TIME_ZONE_PATTERN,
        what: "is not an IANA time zone name: Area/Location such as Europe/Rome, or UTC",
        hint: |_| None,
    },
    Format {
        pattern: crate::api::theme::KEYWORD_PATTERN,
        what: "is not a valid theme keyword: a word or phrase with no leading or trailing space, and no `*` except one at the end for a word stem, e.g. consegn*",
        hint: |v| {
            let trimmed = v.trim().replace('*', "");
            (!trimmed.is_empty()).then(|| trimmed + "*")
        },
    },
    Format {
        pattern: DNS_LABEL,
        what: "is not a valid name: names are lower case, made of letters a-z, digits and '-', and start and end with a letter or digit, e.g. web-checkout",
        hint: |v| name_hint(v, false),
    },
    Format {
        pattern: DNS_SUBDOMAIN,
        what: "is not a valid name: names are lower case, made of letters a-z, digits, '-' and '.', and start and end with a letter or digit, e.g. web-checkout",
        hint: |v| name_hint(v, true),
    },
    Format {
        pattern: LABEL_VALUE,
        what: "is not a valid label value: letters, digits, '-', '_' and '.', starting and ending with a letter or digit (or empty), e.g. retail",
        hint: |v| name_hint(v, true),
    },
    Format {
        pattern: SECRET_NAME,
        what: "is not a valid Secret name: lower-case letters a-z, digits, '-' and '.', starting and ending with a letter or digit, e.g. checkout-ingest",
        hint: |v| name_hint(v, true),
    },
    Format {
        pattern: "^[-._a-zA-Z0-9]+$",
        what: "is not a valid Secret key: letters, digits, '-', '_' and '.' only, e.g. token",
        hint: |_| None,
    },
    Format {
        pattern: crate::api::common::DURATION_PATTERN,
        what: "is not a duration: write a whole number and a unit, largest unit first and each unit once, e.g. 5m, 90m, 12h or 1h30m (units y, w, d, h, m, s, ms)",
        hint: duration_hint,
    },
    Format {
        pattern: crate::api::common::WINDOW_PATTERN,
        what: "is not a window: write a duration such as 7d, 28d or 12h (a whole number and a unit: ms, s, m, h, d, w, y), or calendar-month or calendar-quarter",
        hint: duration_hint,
    },
    Format {
        pattern: "^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$",
        what: "is not a language tag: write a BCP 47 tag such as it-IT, en-GB, zh-Hant-TW or es-419",
        hint: locale_hint,
    },
    Format {
        pattern: "^(type|displayName|owner|brand\\.(name|voice|styleGuideVersion)|content\\.(catalogVersion|pricingVersion)|privacy\\.(consentPolicyVersion|dataRetentionDays)|locales|serviceLevels\\.(firstResponseSeconds|resolutionHours)|attributes\\.[-._a-zA-Z0-9/]+)$",
        what: "is not a Channel field a rule can compare: type, displayName, owner, brand.name, brand.voice, brand.styleGuideVersion, content.catalogVersion, content.pricingVersion, privacy.consentPolicyVersion, privacy.dataRetentionDays, locales, serviceLevels.firstResponseSeconds, serviceLevels.resolutionHours or attributes.<key>",
        hint: rule_field_hint,
    },
    Format {
        pattern: crate::api::OUTCOME_PATTERN,
        what: "is not an outcome name: lower-case letters a-z, digits and '-', starting with a letter and ending with a letter or digit, e.g. failed-attempt",
        hint: |v| name_hint(v, false),
    },
    Format {
        pattern: crate::api::DATE_PATTERN,
        what: "is not a date: write it as YYYY-MM-DD, e.g. 2026-03-31",
        hint: |_| None,
    },
];

/// Whether a pattern of the schema has a description in words.
pub fn pattern_is_described(pattern: &str) -> bool {
    FORMATS.iter().any(|f| f.pattern == pattern)
}

/// What a value breaking `pattern` should look like, in words, with a suggestion when one is obvious.
fn describe_pattern(pattern: &str, value: &str) -> String {
    match FORMATS.iter().find(|f| f.pattern == pattern) {
        Some(format) => {
            let mut message = format!("{value:?} {}", format.what);
            if let Some(hint) = (format.hint)(value) {
                message.push_str(&format!(" (did you mean {hint:?}?)"));
            }
            message
        }
        None => {
            format!("{value:?} does not have the format this field takes (see kubectl explain)")
        }
    }
}

/// `Web Shop` → `web-shop`: lower case, other characters replaced by '-'.
fn name_hint(value: &str, dots: bool) -> Option<String> {
    let mut out = String::new();
    for c in value.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || (dots && c == '.') {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches(|c| c == '-' || c == '.').to_string();
    (!out.is_empty() && out != value).then_some(out)
}

/// `7 days` → `7d`, `90 minutes` → `90m`.
fn duration_hint(value: &str) -> Option<String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let [number, unit] = words[..] else {
        return None;
    };
    number.parse::<u64>().ok().filter(|n| *n > 0)?;
    let unit = match unit.to_lowercase().trim_end_matches('s') {
        "millisecond" | "m" => "ms",
        "second" | "sec" => "s",
        "minute" | "min" => "m",
        "hour" | "hr" | "h" => "h",
        "day" | "d" => "d",
        "week" | "wk" | "w" => "w",
        "year" | "yr" | "y" => "y",
        _ => return None,
    };
    Some(format!("{number}{unit}"))
}

/// `it_IT` → `it-IT`, `en-gb` → `en-GB`.
fn locale_hint(value: &str) -> Option<String> {
    let parts: Vec<&str> = value.split(['-', '_']).collect();
    let mut out = vec![parts.first()?.to_lowercase()];
    for part in &parts[1..] {
        out.push(match part.len() {
            2 => part.to_uppercase(),
            4 => {
                let mut c = part.chars();
                let first = c.next()?.to_uppercase().to_string();
                first + &c.as_str().to_lowercase()
            }
            _ => part.to_string(),
        });
    }
    let hint = out.join("-");
    (hint != value).then_some(hint)
}

/// `brand.Voice` → `brand.voice`, `attribute.returnPolicy` → `attributes.returnPolicy`.
fn rule_field_hint(value: &str) -> Option<String> {
    const FIELDS: [&str; 13] = [
        "type",
        "displayName",
        "owner",
        "brand.name",
        "brand.voice",
        "brand.styleGuideVersion",
        "content.catalogVersion",
        "content.pricingVersion",
        "privacy.consentPolicyVersion",
        "privacy.dataRetentionDays",
        "locales",
        "serviceLevels.firstResponseSeconds",
        "serviceLevels.resolutionHours",
    ];
    if let Some(field) = FIELDS.iter().find(|f| f.eq_ignore_ascii_case(value)) {
        return Some(field.to_string());
    }
    for prefix in ["attribute.", "attrs.", "attr.", "Attributes."] {
        if let Some(key) = value.strip_prefix(prefix) {
            return Some(format!("attributes.{key}"));
        }
    }
    None
}

/// Items repeated in lists the API server keeps as sets or maps (`x-kubernetes-list-type`): it
/// refuses them ("Duplicate value"), so `check` does too.
fn duplicates(schema: &Value, value: &Value, path: &str, found: &mut Vec<SchemaViolation>) {
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for (key, item) in map {
                let sub = properties
                    .and_then(|p| p.get(key))
                    .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()));
                if let Some(sub) = sub {
                    let here = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    duplicates(sub, item, &here, found);
                }
            }
        }
        Value::Array(items) => {
            let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut seen: Vec<Value> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let identity = match list_type {
                    Some("set") => item.clone(),
                    Some("map") => Value::Array(
                        keys.iter()
                            .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                            .collect(),
                    ),
                    _ => Value::Null,
                };
                if list_type.is_some_and(|t| t == "set" || t == "map") {
                    if seen.contains(&identity) {
                        let message = if list_type == Some("set") {
                            format!("{} is listed twice: each value appears once", render(item))
                        } else {
                            let described: Vec<String> = keys
                                .iter()
                                .map(|k| {
                                    format!("{k} {}", render(item.get(*k).unwrap_or(&Value::Null)))
                                })
                                .collect();
                            format!(
                                "a second entry with {}: one entry per {}",
                                described.join(" and "),
                                keys.join(" and ")
                            )
                        };
                        found.push(SchemaViolation::new(
                            format!("{path}[{i}]"),
                            "unique",
                            message,
                        ));
                    } else {
                        seen.push(identity);
                    }
                }
                if let Some(sub) = schema.get("items") {
                    duplicates(sub, item, &format!("{path}[{i}]"), found);
                }
            }
        }
        _ => {}
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
            // The API server refuses a null where an enum is declared, even a null it lists.
            "enum" => {
                let values = value
                    .as_array()
                    .map(|l| l.iter().filter(|v| !v.is_null()).cloned().collect())
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Array(values));
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
    if schema.get("nullable") == Some(&Value::Bool(true))
        && let Some(Value::String(t)) = out.get("type").cloned()
    {
        out.insert("type".into(), serde_json::json!([t, "null"]));
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
            // A missing metadata is refused for its name (see `SchemaValidator::validate`).
            serde_json::json!(["apiVersion", "kind", "spec"]),
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
            "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63,
                       "pattern": LABEL_VALUE}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
        }
    })
}

/// Nulls as `kubectl apply --server-side --dry-run=server` treats them (Kubernetes 1.37), one
/// test per case measured against the API server.
#[cfg(test)]
mod tests {
    use super::*;

    /// An ExperienceKPI with the given metadata line and extra `spec` lines.
    fn kpi(metadata: &str, spec: &str) -> Value {
        let text = format!(
            "apiVersion: cx.conductor.dev/v1alpha1\nkind: ExperienceKPI\n{metadata}\nspec:\n  indicator: {{builtin: csat}}\n  objective: {{direction: atLeast, target: 4}}\n{spec}\n"
        );
        serde_yaml::from_str(&text).unwrap()
    }

    fn fields(object: &Value) -> Vec<String> {
        SchemaValidator::new()
            .validate(object)
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    const META: &str = "metadata: {name: k1}";

    #[test]
    fn null_of_a_defaulted_field_is_its_default() {
        let object = kpi(META, "  interval: ~\n  scope: ~");
        assert_eq!(fields(&object), Vec::<String>::new());
        let admitted = SchemaValidator::new().admitted(&object);
        assert_eq!(admitted["spec"]["interval"], "5m");
        assert_eq!(admitted["spec"]["scope"], serde_json::json!({}));
    }

    #[test]
    fn null_of_a_field_without_default_is_refused_for_its_type() {
        let object = kpi(META, "  scope: {channels: ~}");
        assert_eq!(fields(&object), ["spec.scope.channels"]);
    }

    #[test]
    fn null_of_a_required_field_is_refused_for_its_type() {
        let mut object = kpi(META, "");
        object["spec"]["objective"]["target"] = Value::Null;
        let violations = SchemaValidator::new().validate(&object);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, "spec.objective.target");
        assert_eq!(violations[0].rule, "type");
    }

    #[test]
    fn null_map_value_is_refused() {
        let object = kpi(META, "  scope: {touchpointSelector: {matchLabels: {a: ~}}}");
        assert_eq!(
            fields(&object),
            ["spec.scope.touchpointSelector.matchLabels.a"]
        );
    }

    #[test]
    fn null_list_item_is_refused() {
        let object = kpi(META, "  scope: {channels: [web, ~]}");
        assert_eq!(fields(&object), ["spec.scope.channels[1]"]);
    }

    #[test]
    fn null_of_a_nullable_field_is_kept_and_absent_for_cel() {
        // `warning` is read by a CEL rule of `objective`; a null is as if not written.
        let object = kpi(META, "  owner: ~");
        let mut object = object;
        object["spec"]["objective"]["warning"] = Value::Null;
        assert_eq!(fields(&object), Vec::<String>::new());
        assert_eq!(
            SchemaValidator::new().admitted(&object)["spec"]["owner"],
            Value::Null
        );
        // `has(self.promql)` is false for a null promql: exactly one of builtin or promql.
        let mut object = kpi(META, "");
        object["spec"]["indicator"] = serde_json::json!({"promql": null, "samplesPromql": null});
        assert_eq!(fields(&object), ["spec.indicator"]);
    }

    #[test]
    fn null_of_a_nullable_enum_is_refused_even_when_the_enum_lists_null() {
        let object = kpi(META, "  scope: {stage: ~}");
        let violations = SchemaValidator::new().validate(&object);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, "spec.scope.stage");
        assert_eq!(violations[0].rule, "enum");
    }

    #[test]
    fn null_label_is_the_empty_string() {
        let object = kpi("metadata: {name: k1, labels: {a: ~}}", "");
        assert_eq!(fields(&object), Vec::<String>::new());
        assert_eq!(
            SchemaValidator::new().admitted(&object)["metadata"]["labels"]["a"],
            ""
        );
    }

    #[test]
    fn no_metadata_is_refused_for_its_name() {
        for metadata in ["", "metadata: ~", "metadata: {}"] {
            assert_eq!(
                fields(&kpi(metadata, "")),
                ["metadata.name"],
                "{metadata:?}"
            );
        }
    }
}
