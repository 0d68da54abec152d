//! What `check` tells people when the schema refuses a manifest: formats in words with examples
//! (never a regular expression), suggestions for the obvious fix (lower case, `7d`), the line of
//! the offending field, and the duplicates the API server refuses in lists kept as sets or maps.

use cx_conductor::manifest::{Inventory, parse_documents};
use cx_conductor::schema::{SchemaValidator, SchemaViolation, pattern_is_described};
use serde_json::Value;

/// The violations of the one document in `yaml`, read as file `f.yaml`.
fn refused(yaml: &str) -> Vec<SchemaViolation> {
    let documents = parse_documents("f.yaml", yaml).unwrap();
    let inventory = Inventory::from_documents(&documents, &SchemaValidator::new());
    assert_eq!(inventory.rejected.len(), 1, "{yaml}");
    inventory.rejected[0].violations.clone()
}

/// (field, line, message) of each violation.
fn said(yaml: &str) -> Vec<(String, usize, String)> {
    refused(yaml)
        .into_iter()
        .map(|v| {
            let origin = v.origin.expect("every violation is located");
            assert_eq!(origin.file, "f.yaml");
            (v.field, origin.line, v.message)
        })
        .collect()
}

fn patterns(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(p)) = map.get("pattern") {
                out.push(p.clone());
            }
            map.values().for_each(|v| patterns(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| patterns(v, out)),
        _ => {}
    }
}

#[test]
fn every_pattern_of_the_api_is_described_in_words() {
    let mut found = Vec::new();
    for crd in cx_conductor::crd::all() {
        patterns(&serde_json::to_value(&crd).unwrap(), &mut found);
    }
    // The names of metadata, checked as the API server does.
    found.push(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$".into());
    found.push(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$".into());
    assert!(found.len() >= 8, "{found:?}");
    let missing: Vec<&String> = found.iter().filter(|p| !pattern_is_described(p)).collect();
    assert!(
        missing.is_empty(),
        "patterns without a description: {missing:#?}"
    );
}

const KPI: &str = "apiVersion: cx.conductor.dev/v1alpha1
kind: ExperienceKPI
metadata:
  name: weekly-chat-csat
  namespace: retail
spec:
  indicator: { builtin: csat }
  scope: { channels: [chat] }
  objective: { target: 85, direction: atLeast }
";

#[test]
fn durations_are_explained_with_examples_and_a_suggestion() {
    assert_eq!(
        said(&format!("{KPI}  window: 7 days\n")),
        [(
            "spec.window".to_string(),
            10,
            "\"7 days\" is not a window: write a duration such as 7d, 28d or 12h (a whole number and a unit: ms, s, m, h, d, w, y), or calendar-month or calendar-quarter (did you mean \"7d\"?)".to_string()
        )]
    );
    assert_eq!(
        said(&format!("{KPI}  interval: 90 minutes\n")),
        [(
            "spec.interval".to_string(),
            10,
            "\"90 minutes\" is not a duration: write a whole number and a unit, largest unit first and each unit once, e.g. 5m, 90m, 12h or 1h30m (units y, w, d, h, m, s, ms) (did you mean \"90m\"?)".to_string()
        )]
    );
    for (_, _, message) in said(&format!("{KPI}  window: monthly\n")) {
        assert!(
            !message.contains('^') && !message.contains("[0-9]"),
            "{message}"
        );
    }
}

#[test]
fn names_get_a_lower_case_hint() {
    let violations = said(
        "apiVersion: cx.conductor.dev/v1alpha1
kind: Touchpoint
metadata:
  name: Web_Checkout
  namespace: retail
spec:
  channel: Web Shop
  stage: Purchase
  signals:
    surveys: [ { metric: NPS } ]
",
    );
    assert_eq!(
        violations,
        [
            (
                "metadata.name".to_string(),
                4,
                "\"Web_Checkout\" is not a valid name: names are lower case, made of letters a-z, digits, '-' and '.', and start and end with a letter or digit, e.g. web-checkout (did you mean \"web-checkout\"?)".to_string()
            ),
            (
                "spec.channel".to_string(),
                7,
                "\"Web Shop\" is not a valid name: names are lower case, made of letters a-z, digits and '-', and start and end with a letter or digit, e.g. web-checkout (did you mean \"web-shop\"?)".to_string()
            ),
            (
                "spec.signals.surveys[0].metric".to_string(),
                10,
                "\"NPS\" is not one of: nps, csat, ces (did you mean \"nps\"?)".to_string()
            ),
            (
                "spec.stage".to_string(),
                8,
                "\"Purchase\" is not one of: awareness, consideration, purchase, delivery, usage, support, loyalty, advocacy (did you mean \"purchase\"?)".to_string()
            ),
        ]
    );
}

#[test]
fn locales_rule_fields_and_numbers_in_words() {
    let violations = said(
        "apiVersion: cx.conductor.dev/v1alpha1
kind: Channel
metadata: { name: web, namespace: retail }
spec:
  type: web
  locales:
    - it_IT
  privacy:
    dataRetentionDays: 0
",
    );
    assert_eq!(
        violations,
        [
            (
                "spec.locales[0]".to_string(),
                7,
                "\"it_IT\" is not a language tag: write a BCP 47 tag such as it-IT, en-GB, zh-Hant-TW or es-419 (did you mean \"it-IT\"?)".to_string()
            ),
            (
                "spec.privacy.dataRetentionDays".to_string(),
                9,
                "must be at least 1 (got 0)".to_string()
            ),
        ]
    );
    let violations = said(
        "apiVersion: cx.conductor.dev/v1alpha1
kind: CustomerJourney
metadata: { name: retail, namespace: retail }
spec:
  stages: [purchase]
  consistency:
    rules:
      - { field: brand.Voice, policy: equal }
",
    );
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].0, "spec.consistency.rules[0].field");
    assert_eq!(violations[0].1, 8);
    assert!(
        violations[0]
            .2
            .starts_with("\"brand.Voice\" is not a Channel field a rule can compare: type, displayName, owner, brand.name, brand.voice,"),
        "{}",
        violations[0].2
    );
    assert!(violations[0].2.ends_with("(did you mean \"brand.voice\"?)"));
}

#[test]
fn lists_kept_as_sets_or_maps_refuse_duplicates_as_the_api_server_does() {
    let violations = said(
        "apiVersion: cx.conductor.dev/v1alpha1
kind: Touchpoint
metadata: { name: checkout, namespace: retail }
spec:
  channel: web
  stage: purchase
  signals:
    surveys:
      - metric: csat
      - metric: csat
        scale: 7
",
    );
    assert_eq!(
        violations,
        [(
            "spec.signals.surveys[1]".to_string(),
            10,
            "a second entry with metric \"csat\": one entry per metric".to_string()
        )]
    );
    let violations = said(
        "apiVersion: cx.conductor.dev/v1alpha1
kind: CustomerJourney
metadata: { name: retail, namespace: retail }
spec:
  stages: [purchase, support, purchase]
",
    );
    assert_eq!(
        violations,
        [(
            "spec.stages[2]".to_string(),
            5,
            "\"purchase\" is listed twice: each value appears once".to_string()
        )]
    );
}

#[test]
fn every_broken_example_is_explained_without_a_regular_expression() {
    let validator = SchemaValidator::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/broken");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let documents = cx_conductor::manifest::load_paths(std::slice::from_ref(&path)).unwrap();
        let inventory = Inventory::from_documents(&documents, &validator);
        for r in &inventory.rejected {
            for v in &r.violations {
                assert!(
                    !v.message.contains("does not match") && !v.message.contains('^'),
                    "{}: {}",
                    path.display(),
                    v.message
                );
                let origin = v.origin.as_ref().unwrap();
                assert!(
                    origin.line > r.origin.line || v.field.is_empty(),
                    "{}: {v:?}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn declared_self_assessment_answers_are_checked_by_the_schema() {
    let violations = said(
        "apiVersion: cx.conductor.dev/v1alpha1
kind: CustomerJourney
metadata: { name: retail, namespace: retail }
spec:
  stages: [purchase]
  selfAssessment:
    answers:
      - { question: 7, answer: true, answeredBy: giulia, answeredAt: \"2026-10-15\" }
      - { question: 7, answer: false, answeredBy: marco, answeredAt: \"2026-10-20\" }
      - { question: 26, answer: true, answeredBy: giulia, answeredAt: \"15/10/2026\" }
      - { question: 3, answer: \"yes\", answeredBy: giulia, answeredAt: \"2026-10-15\" }
",
    );
    assert_eq!(
        violations,
        [
            (
                "spec.selfAssessment.answers[1]".to_string(),
                9,
                "a second entry with question 7: one entry per question".to_string()
            ),
            (
                "spec.selfAssessment.answers[2].answeredAt".to_string(),
                10,
                "\"15/10/2026\" is not a date: write it as YYYY-MM-DD, e.g. 2026-03-31".to_string()
            ),
            (
                "spec.selfAssessment.answers[2].question".to_string(),
                10,
                "must be at most 25 (got 26)".to_string()
            ),
            (
                "spec.selfAssessment.answers[3].answer".to_string(),
                11,
                "must be true or false (got \"yes\")".to_string()
            ),
        ]
    );
}
