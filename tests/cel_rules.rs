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
    ];
    for (builtin, target, ok) in cases {
        let result = ExperienceKPISpec::validate_cel(
            &kpi(json!({"builtin": builtin}), target.clone()),
            None,
        );
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
