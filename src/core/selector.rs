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
}
