//! Kubernetes label-selector matching (matchLabels and matchExpressions), as the API server does it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy `selector`. An absent selector matches everything; an empty one too.
/// An unknown operator matches nothing, so a typo never widens a selection.
pub fn matches(
    selector: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|req| {
        let value = labels.get(&req.key);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// A selector as `kubectl get -l` writes it: `journey=retail,tier in (gold, silver),!legacy`.
/// An absent or empty selector is `everything`.
pub fn describe(selector: Option<&LabelSelector>) -> String {
    let Some(selector) = selector else {
        return "everything".into();
    };
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or_default().join(", ");
        parts.push(match req.operator.as_str() {
            "In" => format!("{} in ({values})", req.key),
            "NotIn" => format!("{} notin ({values})", req.key),
            "Exists" => req.key.clone(),
            "DoesNotExist" => format!("!{}", req.key),
            other => format!(
                "{} {other} ({values}) [unknown operator: matches nothing]",
                req.key
            ),
        });
    }
    if parts.is_empty() {
        "everything".into()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions() {
        let l = labels(&[("journey", "retail"), ("tier", "gold")]);
        let by_label = LabelSelector {
            match_labels: Some(labels(&[("journey", "retail")])),
            ..Default::default()
        };
        assert!(matches(Some(&by_label), Some(&l)));
        assert!(!matches(Some(&by_label), None));
        assert!(matches(None, None));
        let cases = [
            (expr("tier", "In", &["gold", "silver"]), true),
            (expr("tier", "In", &["bronze"]), false),
            (expr("tier", "NotIn", &["bronze"]), true),
            (expr("missing", "NotIn", &["x"]), true),
            (expr("tier", "Exists", &[]), true),
            (expr("tier", "DoesNotExist", &[]), false),
            (expr("tier", "Matches", &["gold"]), false),
        ];
        for (req, expected) in cases {
            let selector = LabelSelector {
                match_expressions: Some(vec![req.clone()]),
                ..Default::default()
            };
            assert_eq!(matches(Some(&selector), Some(&l)), expected, "{req:?}");
        }
    }

    #[test]
    fn selectors_are_described_as_kubectl_writes_them() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("journey", "retail")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["gold", "silver"]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        };
        assert_eq!(
            describe(Some(&selector)),
            "journey=retail,tier in (gold, silver),!legacy"
        );
        assert_eq!(describe(None), "everything");
        assert_eq!(describe(Some(&LabelSelector::default())), "everything");
    }
}
