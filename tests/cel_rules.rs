//! The CEL cross-field rules of the CRDs, evaluated client-side as the API server would.

use cx_conductor::api::{
    ConsistencyRule, ExperienceKPISpec, Indicator, Objective, Signals, SurveySignal,
};
use serde_json::json;

fn kpi(indicator: serde_json::Value, target: serde_json::Value) -> serde_json::Value {
    json!({
        "indicator": indicator,
        "objective": {"target": target, "direction": "atLeast"},
    })
}

#[test]
fn indicator_needs_exactly_one_of_builtin_or_promql() {
    assert!(Indicator::validate_cel(&json!({"builtin": "nps"}), None).is_ok());
    assert!(Indicator::validate_cel(&json!({"promql": "vector(1)"}), None).is_ok());
    let both = Indicator::validate_cel(&json!({"builtin": "nps", "promql": "vector(1)"}), None)
        .unwrap_err();
    assert_eq!(both[0].message, "set exactly one of builtin or promql");
    assert!(Indicator::validate_cel(&json!({}), None).is_err());
    let samples = Indicator::validate_cel(
        &json!({"builtin": "nps", "samplesPromql": "vector(1)"}),
        None,
    )
    .unwrap_err();
    assert_eq!(samples[0].field_path, ".samplesPromql");
}

#[test]
fn targets_stay_in_the_indicators_range() {
    let cases = [
        ("nps", json!(-100), true),
        ("nps", json!(100), true),
        ("nps", json!(40.5), true),
        ("nps", json!(150), false),
        ("nps", json!(-101), false),
        ("csat", json!(85), true),
        ("csat", json!(101), false),
        ("service-level", json!(-1), false),
        ("abandonment-rate", json!(20), true),
        ("ces", json!(5.5), true),
        ("ces", json!(0.5), false),
        ("ces", json!(8), false),
        ("first-response-time", json!(90), true),
        ("first-response-time", json!(-5), false),
        ("comment-rate", json!(30), true),
        ("comment-rate", json!(120), false),
        ("outcome-share", json!(12.5), true),
        ("outcome-share", json!(120), false),
    ];
    for (builtin, target, ok) in cases {
        let mut indicator = json!({"builtin": builtin});
        if builtin == "outcome-share" {
            indicator["outcomes"] = json!(["failed-attempt"]);
        }
        let result = ExperienceKPISpec::validate_cel(&kpi(indicator, target.clone()), None);
        assert_eq!(result.is_ok(), ok, "{builtin} target {target}: {result:?}");
        if let Err(errors) = result {
            assert!(
                errors.iter().all(|e| e.field_path == ".objective.target"),
                "{errors:?}"
            );
        }
    }
    // Custom PromQL indicators have no builtin range.
    assert!(
        ExperienceKPISpec::validate_cel(&kpi(json!({"promql": "vector(1)"}), json!(1e6)), None)
            .is_ok()
    );
}

#[test]
fn theme_kpis_name_their_theme_metric_and_segment_where_they_apply() {
    let theme_share = |extra: serde_json::Value| {
        let mut indicator = json!({"builtin": "theme-share"});
        if let (Some(o), Some(e)) = (indicator.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        indicator
    };
    let cases = [
        (theme_share(json!({"theme": "delivery"})), None),
        (
            theme_share(json!({"theme": "delivery", "metric": "nps", "segment": "detractor"})),
            None,
        ),
        (
            theme_share(json!({"theme": "price", "metric": "csat", "segment": "low"})),
            None,
        ),
        (
            theme_share(json!({"theme": "staff", "metric": "interaction", "segment": "abandoned"})),
            None,
        ),
        (
            json!({"builtin": "comment-rate", "metric": "interaction"}),
            None,
        ),
        (json!({"builtin": "comment-rate"}), None),
        // theme-share names its theme, and only theme-share takes one.
        (theme_share(json!({})), Some(".theme")),
        (
            json!({"builtin": "nps", "theme": "delivery"}),
            Some(".theme"),
        ),
        (
            json!({"builtin": "csat", "metric": "csat"}),
            Some(".metric"),
        ),
        // A segment is the band of a metric: it needs one, and one it belongs to.
        (
            theme_share(json!({"theme": "delivery", "segment": "detractor"})),
            Some(".segment"),
        ),
        (
            theme_share(json!({"theme": "delivery", "metric": "csat", "segment": "detractor"})),
            Some(".segment"),
        ),
        (
            theme_share(json!({"theme": "delivery", "metric": "nps", "segment": "low"})),
            Some(".segment"),
        ),
        (
            json!({"builtin": "comment-rate", "metric": "nps", "segment": "detractor"}),
            Some(".segment"),
        ),
    ];
    for (indicator, refused_at) in cases {
        let result = Indicator::validate_cel(&indicator, None);
        match refused_at {
            None => assert!(result.is_ok(), "{indicator}: {result:?}"),
            Some(field) => {
                let errors = result.expect_err(&indicator.to_string());
                assert!(
                    errors.iter().any(|e| e.field_path == field),
                    "{indicator}: {errors:?}"
                );
            }
        }
    }
    // Shares and rates are percentages.
    let share = |target: serde_json::Value| {
        ExperienceKPISpec::validate_cel(
            &kpi(theme_share(json!({"theme": "delivery"})), target),
            None,
        )
    };
    assert!(share(json!(25)).is_ok());
    assert!(share(json!(-1)).is_err());
}

#[test]
fn warning_sits_on_the_failing_side_of_the_target() {
    let objective = |direction: &str, target: f64, warning: f64| json!({"target": target, "direction": direction, "warning": warning});
    assert!(Objective::validate_cel(&objective("atLeast", 40.0, 30.0), None).is_ok());
    assert!(Objective::validate_cel(&objective("atLeast", 40.0, 40.0), None).is_ok());
    assert!(Objective::validate_cel(&objective("atLeast", 40.0, 50.0), None).is_err());
    assert!(Objective::validate_cel(&objective("atMost", 90.0, 120.0), None).is_ok());
    let wrong = Objective::validate_cel(&objective("atMost", 90.0, 60.0), None).unwrap_err();
    assert_eq!(wrong[0].field_path, ".warning");
    assert!(Objective::validate_cel(&json!({"target": 5, "direction": "atMost"}), None).is_ok());
    // Integers and decimals compare alike.
    assert!(
        Objective::validate_cel(
            &json!({"target": 40, "direction": "atLeast", "warning": 39.5}),
            None
        )
        .is_ok()
    );
}

#[test]
fn csat_scale_is_five_or_seven_and_only_for_csat() {
    for (signal, ok) in [
        (json!({"metric": "csat"}), true),
        (json!({"metric": "csat", "scale": 5}), true),
        (json!({"metric": "csat", "scale": 7}), true),
        (json!({"metric": "csat", "scale": 10}), false),
        (json!({"metric": "nps", "scale": 5}), false),
        (json!({"metric": "ces"}), true),
    ] {
        let result = SurveySignal::validate_cel(&signal, None);
        assert_eq!(result.is_ok(), ok, "{signal}: {result:?}");
    }
}

#[test]
fn a_touchpoint_listens_to_something() {
    assert!(Signals::validate_cel(&json!({"surveys": [{"metric": "nps"}]}), None).is_ok());
    assert!(
        Signals::validate_cel(
            &json!({"surveys": [], "interactions": {"outcomes": ["completed"]}}),
            None
        )
        .is_ok()
    );
    let silent = Signals::validate_cel(&json!({"surveys": []}), None).unwrap_err();
    assert_eq!(
        silent[0].message,
        "signals must declare at least one survey or interactions"
    );
}

#[test]
fn outcome_share_and_only_outcome_share_names_its_outcomes() {
    let ok = json!({"builtin": "outcome-share", "outcomes": ["failed-attempt", "abandoned"]});
    assert!(Indicator::validate_cel(&ok, None).is_ok());
    let message = "outcome-share names the outcomes whose share of interactions it measures (outcomes: [failed-attempt]), and only outcome-share takes outcomes";
    for wrong in [
        json!({"builtin": "outcome-share"}),
        json!({"builtin": "abandonment-rate", "outcomes": ["abandoned"]}),
        json!({"promql": "vector(1)", "outcomes": ["abandoned"]}),
    ] {
        let errors = Indicator::validate_cel(&wrong, None).unwrap_err();
        assert_eq!(
            (errors[0].message.as_str(), errors[0].field_path.as_str()),
            (message, ".outcomes"),
            "{wrong}"
        );
    }
}

/// A touchpoint with `interactions` as its interaction signals.
fn interacting(interactions: serde_json::Value) -> serde_json::Value {
    object(
        "Touchpoint",
        "courier",
        json!({"channel": "courier", "stage": "delivery", "signals": {"interactions": interactions}}),
    )
}

#[test]
fn custom_outcomes_are_bounded_kebab_case_names_that_never_repeat_a_builtin_one() {
    assert_eq!(
        violations(interacting(
            json!({"outcomes": ["completed"], "customOutcomes": ["failed-attempt", "rescheduled"]})
        )),
        []
    );
    let builtin = violations(interacting(
        json!({"outcomes": ["completed"], "customOutcomes": ["failed-attempt", "abandoned"]}),
    ));
    assert_eq!(
        builtin,
        [(
            "spec.signals.interactions.customOutcomes".to_string(),
            "cel".to_string(),
            "a custom outcome cannot repeat a builtin outcome (completed, abandoned, error, resolved-first-contact, resolved, unresolved, escalated): list the builtin one in outcomes instead".to_string()
        )]
    );
    let shape = violations(interacting(
        json!({"outcomes": ["completed"], "customOutcomes": ["Failed_Attempt", "9lives", "late-"]}),
    ));
    assert_eq!(
        shape
            .iter()
            .map(|(f, r, _)| (f.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        [
            ("spec.signals.interactions.customOutcomes[0]", "pattern"),
            ("spec.signals.interactions.customOutcomes[1]", "pattern"),
            ("spec.signals.interactions.customOutcomes[2]", "pattern"),
        ],
        "{shape:?}"
    );
    let long = "a".repeat(41);
    let too_long = violations(interacting(
        json!({"outcomes": ["completed"], "customOutcomes": [long]}),
    ));
    assert_eq!(
        too_long
            .iter()
            .map(|(f, r, _)| (f.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        [("spec.signals.interactions.customOutcomes[0]", "maxLength")],
        "{too_long:?}"
    );
    let seventeen: Vec<String> = (0..17).map(|i| format!("o{i}")).collect();
    let many = violations(interacting(
        json!({"outcomes": ["completed"], "customOutcomes": seventeen}),
    ));
    assert_eq!(
        many.iter()
            .map(|(f, r, _)| (f.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        [("spec.signals.interactions.customOutcomes", "maxItems")],
        "{many:?}"
    );
}

#[test]
fn consistency_rules_take_values_only_where_the_policy_needs_them() {
    let rule = |policy: &str, values: serde_json::Value| json!({"field": "brand.voice", "policy": policy, "values": values});
    assert!(ConsistencyRule::validate_cel(&rule("equal", json!([])), None).is_ok());
    assert!(ConsistencyRule::validate_cel(&rule("equal", json!(["x"])), None).is_err());
    assert!(ConsistencyRule::validate_cel(&rule("present", json!(["x"])), None).is_err());
    assert!(ConsistencyRule::validate_cel(&rule("includes", json!(["it-IT"])), None).is_ok());
    assert!(ConsistencyRule::validate_cel(&rule("includes", json!([])), None).is_err());
    assert!(ConsistencyRule::validate_cel(&rule("oneOf", json!(["a", "b"])), None).is_ok());
    assert!(ConsistencyRule::validate_cel(&rule("atMost", json!(["3600"])), None).is_ok());
    assert!(ConsistencyRule::validate_cel(&rule("atLeast", json!(["2.5"])), None).is_ok());
    assert!(ConsistencyRule::validate_cel(&rule("atMost", json!(["an hour"])), None).is_err());
    assert!(ConsistencyRule::validate_cel(&rule("atMost", json!(["1", "2"])), None).is_err());
}

/// The violations the API server would report for a whole object, as `(field, rule, message)`.
fn violations(object: serde_json::Value) -> Vec<(String, String, String)> {
    cx_conductor::schema::SchemaValidator::new()
        .validate(&object)
        .into_iter()
        .map(|v| (v.field, v.rule, v.message))
        .collect()
}

fn object(kind: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "cx.conductor.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "retail"},
        "spec": spec,
    })
}

fn touchpoint(name: &str) -> serde_json::Value {
    object(
        "Touchpoint",
        name,
        json!({"channel": "web", "stage": "purchase", "signals": {"surveys": [{"metric": "nps"}]}}),
    )
}

const SERVICE_NAME_MESSAGE: &str = "touchpoint names must be valid Service names: lower-case letters, digits and '-', starting with a letter, e.g. web-checkout";

#[test]
fn touchpoint_names_are_valid_service_names() {
    for ok in ["web-checkout", "a", "hotline2", &"a".repeat(53)] {
        assert_eq!(violations(touchpoint(ok)), vec![], "{ok}");
    }
    // A dot and a leading digit are fine object names but not Service names (DNS-1035 labels).
    for bad in ["web.checkout", "2nd-hotline"] {
        assert_eq!(
            violations(touchpoint(bad)),
            vec![(
                "metadata.name".into(),
                "cel".into(),
                SERVICE_NAME_MESSAGE.into()
            )],
            "{bad}"
        );
    }
    let long = violations(touchpoint(&"a".repeat(54)));
    assert_eq!(long.len(), 1, "{long:?}");
    assert!(long[0].2.contains("at most 53 characters"), "{long:?}");
}

#[test]
fn channel_journey_and_kpi_names_are_label_values() {
    let channel = |name: &str| object("Channel", name, json!({"type": "web"}));
    assert_eq!(violations(channel("web-shop")), vec![]);
    assert_eq!(violations(channel(&"w".repeat(63))), vec![]);
    let dotted = violations(channel("web.shop"));
    assert_eq!(dotted.len(), 1, "{dotted:?}");
    assert!(
        dotted[0].2.starts_with("channel names are label values"),
        "{dotted:?}"
    );
    let long = violations(channel(&"w".repeat(64)));
    assert!(
        long.iter().any(|v| v.2.contains("at most 63 characters")),
        "{long:?}"
    );

    let journey = |name: &str| object("CustomerJourney", name, json!({"stages": ["purchase"]}));
    assert_eq!(violations(journey(&"j".repeat(63))), vec![]);
    assert_eq!(
        violations(journey(&"j".repeat(64))),
        vec![(
            "metadata.name".into(),
            "cel".into(),
            "CustomerJourney names are at most 63 characters: they are label values of the journey's metrics and alerts".into()
        )]
    );
    let kpi = |name: &str| {
        object(
            "ExperienceKPI",
            name,
            json!({"indicator": {"builtin": "nps"}, "objective": {"target": 40, "direction": "atLeast"}}),
        )
    };
    assert_eq!(violations(kpi(&"k".repeat(63))), vec![]);
    assert_eq!(
        violations(kpi(&"k".repeat(64))),
        vec![(
            "metadata.name".into(),
            "cel".into(),
            "ExperienceKPI names are at most 63 characters: they are label values of the KPI's metrics and alerts".into()
        )]
    );
}

#[test]
fn intervals_and_windows_are_durations_prometheus_reads() {
    let kpi = |window: &str, interval: &str| {
        object(
            "ExperienceKPI",
            "checkout-nps",
            json!({
                "indicator": {"builtin": "nps"},
                "objective": {"target": 40, "direction": "atLeast"},
                "window": window,
                "interval": interval,
            }),
        )
    };
    for ok in ["5m", "1h30m", "90m", "1d12h", "1w2d", "30s", "500ms", "1y"] {
        assert_eq!(violations(kpi("28d", ok)), vec![], "interval {ok}");
        assert_eq!(violations(kpi(ok, "5m")), vec![], "window {ok}");
    }
    for ok in ["calendar-month", "calendar-quarter"] {
        assert_eq!(violations(kpi(ok, "5m")), vec![], "window {ok}");
    }
    // Units out of order or repeated: Prometheus (and the Prometheus Operator's CRD) refuse them.
    for bad in ["30m1h", "1m1m", "5M", "5 m", "1h-30m", "calendar-month"] {
        let found = violations(kpi("28d", bad));
        assert_eq!(found.len(), 1, "interval {bad}: {found:?}");
        assert_eq!(
            (found[0].0.as_str(), found[0].1.as_str()),
            ("spec.interval", "pattern"),
            "{bad}"
        );
    }
    for bad in ["30m1h", "7 days", "calendar-year"] {
        let found = violations(kpi(bad, "5m"));
        assert_eq!(found.len(), 1, "window {bad}: {found:?}");
        assert_eq!(
            (found[0].0.as_str(), found[0].1.as_str()),
            ("spec.window", "pattern"),
            "{bad}"
        );
    }
    // Zero and empty durations match the pattern; a CEL rule refuses them with a message.
    for zero in ["0s", "0m0s", ""] {
        assert_eq!(
            violations(kpi("28d", zero)),
            vec![(
                "spec.interval".into(),
                "cel".into(),
                "interval must be longer than zero, e.g. 5m".into()
            )],
            "interval {zero:?}"
        );
        assert_eq!(
            violations(kpi(zero, "5m")),
            vec![(
                "spec.window".into(),
                "cel".into(),
                "window must be longer than zero, e.g. 28d, or calendar-month / calendar-quarter"
                    .into()
            )],
            "window {zero:?}"
        );
    }
}
