//! Cross-channel consistency: a journey's declared rules over Channel.spec fields.

use serde_json::Value;

use crate::api::{ConsistencyRule, Policy, Violation};

use super::world::Groups;

/// Label used for channels where a field is not set.
pub const UNSET: &str = "<unset>";

/// A channel's value for a rule's field: absent, one value, or a list (locales).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A single value, rendered as text.
    Scalar(String),
    /// A list of values, sorted.
    List(Vec<String>),
}

impl FieldValue {
    /// The value as one readable string (lists comma-separated).
    pub fn render(&self) -> String {
        match self {
            FieldValue::Scalar(s) => s.clone(),
            FieldValue::List(l) => l.join(", "),
        }
    }

    fn contains(&self, wanted: &str) -> bool {
        match self {
            FieldValue::Scalar(s) => s == wanted,
            FieldValue::List(l) => l.iter().any(|v| v == wanted),
        }
    }
}

/// Reads `field` (a path such as `brand.voice` or `attributes.return.policy`) from a Channel.spec
/// serialized as JSON. `attributes.` takes the whole rest as the key, since keys may contain dots.
pub fn field_value(spec: &Value, field: &str) -> Option<FieldValue> {
    let value = if let Some(key) = field.strip_prefix("attributes.") {
        spec.get("attributes")?.get(key)?
    } else {
        field.split('.').try_fold(spec, |v, part| v.get(part))?
    };
    match value {
        Value::Null => None,
        Value::String(s) => Some(FieldValue::Scalar(s.clone())),
        Value::Array(items) => {
            let mut list: Vec<String> = items.iter().map(render_json).collect();
            list.sort();
            Some(FieldValue::List(list))
        }
        other => Some(FieldValue::Scalar(render_json(other))),
    }
}

fn render_json(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A rule's identifier in reports: `<field> <policy>`.
pub fn rule_id(rule: &ConsistencyRule) -> String {
    format!("{} {}", rule.field, rule.policy.as_str())
}

/// Checks one rule across channels given as (name, spec as JSON), in name order. Returns the
/// violation, if any, with the channels grouped by value and a sentence a CX lead understands.
pub fn check_rule(rule: &ConsistencyRule, channels: &[(&str, &Value)]) -> Option<Violation> {
    let field = rule.field.as_str();
    let values: Vec<(&str, Option<FieldValue>)> = channels
        .iter()
        .map(|(name, spec)| (*name, field_value(spec, field)))
        .collect();
    let mut failing = Groups::new();
    let mut add =
        |key: String, channel: &str| failing.entry(key).or_default().push(channel.to_string());
    let message = match rule.policy {
        Policy::Equal => {
            let mut groups = Groups::new();
            for (name, value) in &values {
                if let Some(v) = value {
                    groups.entry(v.render()).or_default().push(name.to_string());
                }
            }
            if groups.len() <= 1 {
                return None;
            }
            failing = groups;
            format!("{field} differs: {}", describe_groups(&failing))
        }
        Policy::Present => {
            for (name, value) in &values {
                if value.is_none() {
                    add(UNSET.into(), name);
                }
            }
            format!("{field} is not set on {}", failing.get(UNSET)?.join(", "))
        }
        Policy::Includes => {
            for (name, value) in &values {
                if !rule
                    .values
                    .iter()
                    .all(|w| value.as_ref().is_some_and(|v| v.contains(w)))
                {
                    add(
                        value.as_ref().map_or(UNSET.into(), FieldValue::render),
                        name,
                    );
                }
            }
            let wanted = rule.values.join(", ");
            format!(
                "{field} must include {wanted}: {}",
                describe_groups(&failing)
            )
        }
        Policy::OneOf => {
            for (name, value) in &values {
                let ok = matches!(value, Some(FieldValue::Scalar(s)) if rule.values.contains(s));
                if !ok {
                    add(
                        value.as_ref().map_or(UNSET.into(), FieldValue::render),
                        name,
                    );
                }
            }
            format!(
                "{field} must be one of {}: {}",
                rule.values.join(", "),
                describe_groups(&failing)
            )
        }
        Policy::AtMost | Policy::AtLeast => {
            let bound: f64 = rule.values.first()?.parse().ok()?;
            let at_most = rule.policy == Policy::AtMost;
            for (name, value) in &values {
                let Some(value) = value else { continue };
                let ok = match value {
                    FieldValue::Scalar(s) => s
                        .parse::<f64>()
                        .is_ok_and(|n| if at_most { n <= bound } else { n >= bound }),
                    FieldValue::List(_) => false,
                };
                if !ok {
                    add(value.render(), name);
                }
            }
            let relation = if at_most { "at most" } else { "at least" };
            format!(
                "{field} must be {relation} {}: {}",
                rule.values[0],
                describe_groups(&failing)
            )
        }
    };
    if failing.is_empty() {
        return None;
    }
    Some(Violation {
        rule: rule_id(rule),
        severity: rule.severity.unwrap_or_default(),
        message,
        values: failing,
    })
}

/// A rule that compares values (`equal`, `atMost`, `atLeast`) over a field that no channel sets
/// passes whatever the channels say: a typo in an attribute key makes it check nothing. Such a
/// rule is reported with the rule's severity, naming the closest attribute key the channels do set.
pub fn checks_nothing(rule: &ConsistencyRule, channels: &[(&str, &Value)]) -> Option<Violation> {
    if channels.is_empty()
        || !matches!(
            rule.policy,
            Policy::Equal | Policy::AtMost | Policy::AtLeast
        )
    {
        return None;
    }
    let field = rule.field.as_str();
    if channels
        .iter()
        .any(|(_, spec)| field_value(spec, field).is_some())
    {
        return None;
    }
    let names: Vec<&str> = channels.iter().map(|(n, _)| *n).collect();
    let mut message = format!(
        "no channel of the journey sets {field} ({} checked), so rule `{}` checks nothing",
        names.join(", "),
        rule_id(rule)
    );
    let suggestion = field.strip_prefix("attributes.").and_then(|key| {
        let mut keys: Vec<&str> = channels
            .iter()
            .filter_map(|(_, spec)| spec.get("attributes")?.as_object())
            .flat_map(|m| m.keys().map(String::as_str))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .map(|k| (distance(&k.to_lowercase(), &key.to_lowercase()), k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 4))
            .min()
            .map(|(_, k)| k.to_string())
    });
    match suggestion {
        Some(key) => message.push_str(&format!(": did you mean attributes.{key}?")),
        None if rule.policy == Policy::Equal => message.push_str(&format!(
            ": set it on the channels, or require it with `{field} present`"
        )),
        None => message.push_str(": set it on the channels"),
    }
    Some(Violation {
        rule: rule_id(rule),
        severity: rule.severity.unwrap_or_default(),
        message,
        values: Groups::from([(
            UNSET.to_string(),
            names.iter().map(|n| n.to_string()).collect(),
        )]),
    })
}

/// Edit distance (insertions, deletions, substitutions) between two short strings.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(row[j + 1])
            };
            previous = current;
        }
    }
    row[b.len()]
}

/// "friendly-expert on web, app; formal on voice": largest group first, then by value.
pub fn describe_groups(groups: &Groups) -> String {
    let mut ordered: Vec<(&String, &Vec<String>)> = groups.iter().collect();
    ordered.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    ordered
        .iter()
        .map(|(value, channels)| format!("{value} on {}", channels.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}
