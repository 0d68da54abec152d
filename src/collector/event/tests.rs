//! Unit tests of the event parser: one per validation rule, asserting the exact reason and field.

use std::borrow::Cow;

use super::*;
use crate::api::Outcome;
use crate::collector::config::CollectorConfig;

/// A checkout-like touchpoint: nps and csat on 7 points, three outcomes, only the wait timing.
fn schema() -> EventSchema {
    let config: CollectorConfig = serde_yaml::from_str(
        r#"
namespace: retail
touchpoint: web-checkout
channel: web
stage: purchase
surveys: [{ metric: nps }, { metric: csat, scale: 7 }]
interactions: { outcomes: [completed, abandoned, error], timings: [wait] }
maxEventBytes: 512
"#,
    )
    .expect("test config");
    EventSchema::from_config(&config).expect("valid test config")
}

fn surveys_only() -> EventSchema {
    let config: CollectorConfig = serde_yaml::from_str(
        "{namespace: n, touchpoint: t, channel: c, stage: support, surveys: [{metric: ces}], maxEventBytes: 1024}",
    )
    .expect("test config");
    EventSchema::from_config(&config).expect("valid test config")
}

/// What the event counts (tests of comments, languages and ids use [`parse_event`]).
fn parse(json: &str) -> Result<Signal, Rejection> {
    parse_event(json.as_bytes(), &schema()).map(|event| event.signal)
}

/// Asserts a rejection's reason and field.
#[track_caller]
fn rejected(json: &str, reason: Reason, field: Option<&str>) -> Rejection {
    let rejection = parse(json).expect_err(json);
    assert_eq!(rejection.reason, reason, "{json}: {rejection:?}");
    assert_eq!(rejection.field.as_deref(), field, "{json}: {rejection:?}");
    assert!(!rejection.message.is_empty());
    rejection
}

#[test]
fn accepts_a_survey_answer() {
    assert_eq!(
        parse(r#"{"type":"survey","metric":"nps","score":9}"#),
        Ok(Signal::Survey {
            metric: SurveyMetric::Nps,
            score: 9
        })
    );
}

#[test]
fn accepts_every_score_of_the_declared_ranges_and_their_bounds() {
    for score in 0..=10 {
        let event = parse(&format!(
            r#"{{"type":"survey","metric":"nps","score":{score}}}"#
        ));
        assert_eq!(
            event,
            Ok(Signal::Survey {
                metric: SurveyMetric::Nps,
                score
            })
        );
    }
    for score in 1..=7 {
        assert!(
            parse(&format!(
                r#"{{"type":"survey","metric":"csat","score":{score}}}"#
            ))
            .is_ok()
        );
    }
}

#[test]
fn accepts_an_integral_float_score() {
    assert_eq!(
        parse(r#"{"type":"survey","metric":"csat","score":7.0}"#),
        Ok(Signal::Survey {
            metric: SurveyMetric::Csat,
            score: 7
        })
    );
}

#[test]
fn accepts_an_interaction_with_declared_timing_and_optional_fields() {
    let json = r#"{"type":"interaction","outcome":"abandoned","waitSeconds":12.5,
        "customerId":"c-42","sessionId":"s-1","timestamp":"2026-11-03T10:15:00.123+01:00"}"#;
    assert_eq!(
        parse(json),
        Ok(Signal::Interaction {
            outcome: Outcome::Abandoned.into(),
            wait_seconds: Some(12.5),
            handle_seconds: None
        })
    );
}

#[test]
fn null_optional_fields_count_as_absent() {
    assert_eq!(
        parse(
            r#"{"type":"interaction","outcome":"error","waitSeconds":null,"handleSeconds":null,"customerId":null}"#
        ),
        Ok(Signal::Interaction {
            outcome: Outcome::Error.into(),
            wait_seconds: None,
            handle_seconds: None
        })
    );
}

#[test]
fn field_order_and_whitespace_do_not_matter() {
    assert_eq!(
        parse("\n { \"score\" : 3 , \"metric\" : \"csat\" , \"type\" : \"survey\" } \n"),
        Ok(Signal::Survey {
            metric: SurveyMetric::Csat,
            score: 3
        })
    );
}

#[test]
fn escaped_strings_are_understood() {
    assert_eq!(
        parse(r#"{"type":"surv\u0065y","metric":"nps","score":1,"customerId":"a\"b"}"#),
        Ok(Signal::Survey {
            metric: SurveyMetric::Nps,
            score: 1
        })
    );
}

#[test]
fn undeclared_metric_is_refused() {
    let rejection = rejected(
        r#"{"type":"survey","metric":"ces","score":5}"#,
        Reason::InvalidMetric,
        Some("metric"),
    );
    assert!(
        rejection.message.contains("nps, csat"),
        "{}",
        rejection.message
    );
}

#[test]
fn unknown_metric_is_refused() {
    rejected(
        r#"{"type":"survey","metric":"NPS","score":5}"#,
        Reason::InvalidMetric,
        Some("metric"),
    );
}

#[test]
fn scores_out_of_range_are_refused() {
    rejected(
        r#"{"type":"survey","metric":"nps","score":11}"#,
        Reason::ScoreOutOfRange,
        Some("score"),
    );
    rejected(
        r#"{"type":"survey","metric":"nps","score":-1}"#,
        Reason::ScoreOutOfRange,
        Some("score"),
    );
    rejected(
        r#"{"type":"survey","metric":"csat","score":0}"#,
        Reason::ScoreOutOfRange,
        Some("score"),
    );
    rejected(
        r#"{"type":"survey","metric":"csat","score":8}"#,
        Reason::ScoreOutOfRange,
        Some("score"),
    );
    rejected(
        r#"{"type":"survey","metric":"nps","score":18446744073709551615}"#,
        Reason::ScoreOutOfRange,
        Some("score"),
    );
}

#[test]
fn csat_defaults_to_five_points_and_ces_to_seven() {
    let config: CollectorConfig = serde_yaml::from_str(
        "{namespace: n, touchpoint: t, channel: c, stage: support, surveys: [{metric: csat}, {metric: ces}], maxEventBytes: 1024}",
    )
    .expect("test config");
    let schema = EventSchema::from_config(&config).expect("valid");
    let answer = |metric: &str, score: u8| {
        parse_event(
            format!(r#"{{"type":"survey","metric":"{metric}","score":{score}}}"#).as_bytes(),
            &schema,
        )
        .map(|event| event.signal)
    };
    assert!(answer("csat", 5).is_ok());
    assert_eq!(
        answer("csat", 6).map_err(|r| r.reason),
        Err(Reason::ScoreOutOfRange)
    );
    assert!(answer("ces", 7).is_ok());
    assert_eq!(
        answer("ces", 0).map_err(|r| r.reason),
        Err(Reason::ScoreOutOfRange)
    );
    assert_eq!(
        answer("ces", 8).map_err(|r| r.reason),
        Err(Reason::ScoreOutOfRange)
    );
}

#[test]
fn non_integer_score_is_refused() {
    rejected(
        r#"{"type":"survey","metric":"nps","score":7.5}"#,
        Reason::ScoreNotInteger,
        Some("score"),
    );
}

#[test]
fn score_of_the_wrong_type_is_refused() {
    rejected(
        r#"{"type":"survey","metric":"nps","score":"9"}"#,
        Reason::WrongType,
        Some("score"),
    );
    rejected(
        r#"{"type":"survey","metric":"nps","score":null}"#,
        Reason::WrongType,
        Some("score"),
    );
    rejected(
        r#"{"type":"survey","metric":"nps","score":[9]}"#,
        Reason::WrongType,
        Some("score"),
    );
    rejected(
        r#"{"type":"survey","metric":9,"score":9}"#,
        Reason::WrongType,
        Some("metric"),
    );
    rejected(r#"{"type":true}"#, Reason::WrongType, Some("type"));
}

#[test]
fn unknown_outcome_is_refused() {
    rejected(
        r#"{"type":"interaction","outcome":"teleported"}"#,
        Reason::UnknownOutcome,
        Some("outcome"),
    );
}

#[test]
fn known_but_undeclared_outcome_is_refused() {
    let rejection = rejected(
        r#"{"type":"interaction","outcome":"escalated"}"#,
        Reason::UnknownOutcome,
        Some("outcome"),
    );
    assert!(
        rejection.message.contains("completed, abandoned, error"),
        "{}",
        rejection.message
    );
}

/// A courier's delivery touchpoint: two builtin outcomes and two of its own.
fn courier() -> EventSchema {
    let config: CollectorConfig = serde_yaml::from_str(
        "{namespace: n, touchpoint: courier, channel: c, stage: delivery, maxEventBytes: 1024, \
         interactions: {outcomes: [completed, abandoned], customOutcomes: [failed-attempt, rescheduled]}}",
    )
    .expect("test config");
    EventSchema::from_config(&config).expect("valid test config")
}

#[test]
fn a_custom_outcome_is_accepted_where_declared_and_named_by_its_id() {
    let schema = courier();
    let signal = |outcome: &str| {
        parse_event(
            format!(r#"{{"type":"interaction","outcome":"{outcome}"}}"#).as_bytes(),
            &schema,
        )
        .map(|event| event.signal)
    };
    let Ok(Signal::Interaction { outcome, .. }) = signal("rescheduled") else {
        panic!("rescheduled is declared");
    };
    assert_eq!(outcome.index(), OUTCOME_COUNT + 1);
    assert_eq!(outcome.builtin(), None);
    assert_eq!(schema.outcome_name(outcome), "rescheduled");
    let Ok(Signal::Interaction { outcome, .. }) = signal("abandoned") else {
        panic!("abandoned is declared");
    };
    assert_eq!(outcome, Outcome::Abandoned);
    assert_eq!(schema.outcome_name(outcome), "abandoned");
    // Declared by the courier, not by the checkout.
    let rejection = rejected(
        r#"{"type":"interaction","outcome":"failed-attempt"}"#,
        Reason::UnknownOutcome,
        Some("outcome"),
    );
    assert_eq!(
        rejection.message,
        r#"outcome "failed-attempt" is not declared by this touchpoint; declared: completed, abandoned, error"#
    );
    let rejection = signal("failed_attempt").expect_err("not declared");
    assert_eq!(
        (rejection.reason, rejection.field.as_deref()),
        (Reason::UnknownOutcome, Some("outcome"))
    );
    assert_eq!(
        rejection.message,
        r#"outcome "failed_attempt" is not declared by this touchpoint; declared: completed, abandoned, failed-attempt, rescheduled"#
    );
}

#[test]
fn a_configuration_with_a_bad_custom_outcome_is_refused_naming_it() {
    let refused = |outcomes: &str| {
        let config: CollectorConfig = serde_yaml::from_str(&format!(
            "{{namespace: n, touchpoint: t, channel: c, stage: delivery, maxEventBytes: 1024, \
             interactions: {{outcomes: [completed], customOutcomes: {outcomes}}}}}"
        ))
        .expect("test config");
        EventSchema::from_config(&config)
            .expect_err(outcomes)
            .to_string()
    };
    assert_eq!(
        refused("[rescheduled, abandoned]"),
        "invalid collector configuration: interactions.customOutcomes[1]: custom outcome abandoned repeats a builtin outcome: list it in outcomes instead"
    );
    assert_eq!(
        refused("[Failed-Attempt]"),
        r#"invalid collector configuration: interactions.customOutcomes[0]: custom outcome "Failed-Attempt" is not a lower-case kebab-case name of 1 to 40 characters starting with a letter, e.g. failed-attempt"#
    );
    assert_eq!(
        refused("[late, late]"),
        "invalid collector configuration: interactions.customOutcomes[1]: custom outcome late is declared twice"
    );
    let seventeen: Vec<String> = (0..17).map(|i| format!("o{i}")).collect();
    assert_eq!(
        refused(&format!("[{}]", seventeen.join(", "))),
        "invalid collector configuration: interactions.customOutcomes: 17 custom outcomes, more than the 16 allowed"
    );
}

#[test]
fn undeclared_timing_is_refused() {
    rejected(
        r#"{"type":"interaction","outcome":"completed","handleSeconds":30}"#,
        Reason::UndeclaredTiming,
        Some("handleSeconds"),
    );
}

#[test]
fn negative_or_absurd_durations_are_refused() {
    rejected(
        r#"{"type":"interaction","outcome":"completed","waitSeconds":-0.5}"#,
        Reason::InvalidDuration,
        Some("waitSeconds"),
    );
    rejected(
        r#"{"type":"interaction","outcome":"completed","waitSeconds":1e12}"#,
        Reason::InvalidDuration,
        Some("waitSeconds"),
    );
    rejected(
        r#"{"type":"interaction","outcome":"completed","waitSeconds":"12"}"#,
        Reason::WrongType,
        Some("waitSeconds"),
    );
}

#[test]
fn nan_and_infinity_are_not_json() {
    // JSON has no NaN or Infinity literal: they are malformed, never a duration.
    for literal in ["NaN", "Infinity", "-Infinity", "1e400"] {
        let json =
            format!(r#"{{"type":"interaction","outcome":"completed","waitSeconds":{literal}}}"#);
        rejected(&json, Reason::Malformed, None);
    }
}

#[test]
fn negative_zero_duration_becomes_zero() {
    let event = parse(r#"{"type":"interaction","outcome":"completed","waitSeconds":-0.0}"#);
    let Ok(Signal::Interaction {
        wait_seconds: Some(seconds),
        ..
    }) = event
    else {
        panic!("expected an interaction, got {event:?}");
    };
    assert!(seconds == 0.0 && seconds.is_sign_positive());
}

#[test]
fn interactions_at_a_survey_only_touchpoint_are_refused() {
    let rejection = parse_event(
        br#"{"type":"interaction","outcome":"completed"}"#,
        &surveys_only(),
    )
    .expect_err("no interactions declared");
    assert_eq!(rejection.reason, Reason::InteractionsNotDeclared);
    assert_eq!(rejection.field.as_deref(), Some("type"));
}

#[test]
fn missing_fields_are_named() {
    rejected(
        r#"{"metric":"nps","score":9}"#,
        Reason::MissingField,
        Some("type"),
    );
    rejected(
        r#"{"type":"survey","score":9}"#,
        Reason::MissingField,
        Some("metric"),
    );
    rejected(
        r#"{"type":"survey","metric":"nps"}"#,
        Reason::MissingField,
        Some("score"),
    );
    rejected(
        r#"{"type":"interaction"}"#,
        Reason::MissingField,
        Some("outcome"),
    );
}

#[test]
fn unknown_fields_are_named() {
    rejected(
        r#"{"type":"survey","metric":"nps","score":9,"comments":"great"}"#,
        Reason::UnknownField,
        Some("comments"),
    );
    rejected(
        r#"{"type":"survey","metric":"nps","score":9,"Score":9}"#,
        Reason::UnknownField,
        Some("Score"),
    );
}

#[test]
fn fields_of_the_other_event_kind_are_unknown() {
    rejected(
        r#"{"type":"survey","metric":"nps","score":9,"outcome":"completed"}"#,
        Reason::UnknownField,
        Some("outcome"),
    );
    rejected(
        r#"{"type":"interaction","outcome":"completed","score":9}"#,
        Reason::UnknownField,
        Some("score"),
    );
}

#[test]
fn echoed_unknown_field_names_are_truncated() {
    let long = "x".repeat(300);
    let rejection = rejected(
        &format!(r#"{{"type":"survey","{long}":1}}"#),
        Reason::UnknownField,
        Some(&long[..64]),
    );
    assert!(rejection.message.len() < 100);
}

#[test]
fn duplicate_fields_are_refused() {
    rejected(
        r#"{"type":"survey","metric":"nps","score":1,"score":10}"#,
        Reason::DuplicateField,
        Some("score"),
    );
}

#[test]
fn unknown_event_type_is_refused() {
    rejected(
        r#"{"type":"complaint"}"#,
        Reason::UnknownEventType,
        Some("type"),
    );
}

#[test]
fn an_event_must_be_an_object() {
    for json in ["[]", "[1,2]", "42", "\"survey\"", "null", "true"] {
        rejected(json, Reason::WrongType, None);
    }
}

#[test]
fn malformed_json_is_refused() {
    for json in [
        "",
        "   ",
        "{",
        r#"{"type":"survey""#,
        r#"{"type":"survey",}"#,
        r#"{'type':'survey'}"#,
        "{\"type\":\"surv\u{1}ey\"}",
    ] {
        rejected(json, Reason::Malformed, None);
    }
}

#[test]
fn invalid_utf8_is_malformed() {
    let rejection =
        parse_event(b"{\"type\":\"surv\xffey\"}", &schema()).expect_err("invalid UTF-8");
    assert_eq!(rejection.reason, Reason::Malformed);
}

#[test]
fn trailing_garbage_is_refused() {
    rejected(
        r#"{"type":"survey","metric":"nps","score":9} x"#,
        Reason::Malformed,
        None,
    );
    rejected(
        r#"{"type":"survey","metric":"nps","score":9}{"type":"survey","metric":"nps","score":9}"#,
        Reason::Malformed,
        None,
    );
}

#[test]
fn syntax_errors_win_over_semantic_ones() {
    // An unknown field followed by a syntax error is malformed, not unknown_field.
    rejected(r#"{"nope":1,"type":}"#, Reason::Malformed, None);
}

#[test]
fn deep_nesting_neither_overflows_the_stack_nor_hides_the_real_problem() {
    let schema = {
        let mut s = schema();
        s.max_event_bytes = 1 << 20;
        s
    };
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_unknown = format!(r#"{{"type":"survey","x":{nested}}}"#);
    let rejection = parse_event(deep_unknown.as_bytes(), &schema).expect_err("unknown field");
    assert_eq!(rejection.reason, Reason::UnknownField);
    let deep_score = format!(r#"{{"type":"survey","metric":"nps","score":{nested}}}"#);
    let rejection = parse_event(deep_score.as_bytes(), &schema).expect_err("wrong type");
    assert_eq!(rejection.reason, Reason::WrongType);
    let unbalanced = format!(r#"{{"type":"survey","x":{}}}"#, "[".repeat(100_000));
    let rejection = parse_event(unbalanced.as_bytes(), &schema).expect_err("malformed");
    assert_eq!(rejection.reason, Reason::Malformed);
    let rejection = parse_event("[".repeat(100_000).as_bytes(), &schema).expect_err("malformed");
    assert_eq!(rejection.reason, Reason::Malformed);
}

#[test]
fn events_larger_than_max_event_bytes_are_refused() {
    let padding = "a".repeat(500);
    rejected(
        &format!(r#"{{"type":"survey","metric":"nps","score":9,"sessionId":"{padding}"}}"#),
        Reason::TooLarge,
        None,
    );
}

#[test]
fn identifiers_are_bounded_strings() {
    let config: CollectorConfig = serde_yaml::from_str(
        "{namespace: n, touchpoint: t, channel: c, stage: support, surveys: [{metric: nps}], maxEventBytes: 4096}",
    )
    .expect("test config");
    let schema = EventSchema::from_config(&config).expect("valid");
    let with_id = |id: &str| {
        parse_event(
            format!(r#"{{"type":"survey","metric":"nps","score":1,"customerId":{id}}}"#).as_bytes(),
            &schema,
        )
        .map(|event| event.signal)
    };
    assert!(with_id(&format!("\"{}\"", "c".repeat(MAX_ID_BYTES))).is_ok());
    let too_long = with_id(&format!("\"{}\"", "c".repeat(MAX_ID_BYTES + 1))).expect_err("too long");
    assert_eq!(too_long.reason, Reason::InvalidIdentifier);
    assert_eq!(too_long.field.as_deref(), Some("customerId"));
    let number = with_id("42").expect_err("not a string");
    assert_eq!(number.reason, Reason::WrongType);
    assert_eq!(number.field.as_deref(), Some("customerId"));
}

#[test]
fn identifiers_never_appear_in_rejections() {
    let rejection = rejected(
        r#"{"type":"survey","metric":"nps","score":99,"customerId":"alice@example.com","sessionId":"secret-session"}"#,
        Reason::ScoreOutOfRange,
        Some("score"),
    );
    assert!(!rejection.message.contains("alice"));
    assert!(!rejection.message.contains("secret-session"));
}

#[test]
fn timestamps_must_be_rfc3339() {
    rejected(
        r#"{"type":"survey","metric":"nps","score":1,"timestamp":"yesterday"}"#,
        Reason::InvalidTimestamp,
        Some("timestamp"),
    );
    rejected(
        r#"{"type":"survey","metric":"nps","score":1,"timestamp":1730000000}"#,
        Reason::WrongType,
        Some("timestamp"),
    );
}

#[test]
fn rfc3339_validator_knows_the_calendar() {
    for valid in [
        "2026-11-03T10:15:00Z",
        "2026-11-03t10:15:00z",
        "2024-02-29T00:00:00+00:00",
        "2026-12-31T23:59:60-05:30",
        "2026-01-01T00:00:00.123456789Z",
    ] {
        assert!(is_rfc3339(valid), "{valid}");
    }
    for invalid in [
        "2025-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-11-03 10:15:00Z",
        "2026-11-03T24:00:00Z",
        "2026-11-03T10:15:00",
        "2026-11-03T10:15:00.Z",
        "2026-11-03T10:15:00+0100",
        "2026-11-03T10:15:00+24:00",
        "2026-11-03T10:15:00Zjunk",
        "٢٠٢٦-11-03T10:15:00Z",
    ] {
        assert!(!is_rfc3339(invalid), "{invalid}");
    }
}

#[test]
fn ndjson_batches_report_line_numbers_and_skip_blank_lines() {
    let body = b"{\"type\":\"survey\",\"metric\":\"nps\",\"score\":9}\r\n\n  \n{\"type\":\"survey\",\"metric\":\"nps\",\"score\":99}\nnot json\n{\"type\":\"interaction\",\"outcome\":\"completed\"}\n";
    let mut seen = Vec::new();
    parse_ndjson(body, &schema(), |index, result| {
        seen.push((index, result.map(|e| e.signal).map_err(|r| r.reason)))
    });
    assert_eq!(
        seen,
        vec![
            (
                0,
                Ok(Signal::Survey {
                    metric: SurveyMetric::Nps,
                    score: 9
                })
            ),
            (3, Err(Reason::ScoreOutOfRange)),
            (4, Err(Reason::Malformed)),
            (
                5,
                Ok(Signal::Interaction {
                    outcome: Outcome::Completed.into(),
                    wait_seconds: None,
                    handle_seconds: None
                })
            ),
        ]
    );
}

#[test]
fn ndjson_lines_are_limited_to_max_event_bytes() {
    let long = format!(
        "{{\"type\":\"survey\",\"metric\":\"nps\",\"score\":9,\"sessionId\":\"{}\"}}\n",
        "s".repeat(600)
    );
    let mut reasons = Vec::new();
    parse_ndjson(long.as_bytes(), &schema(), |_, result| {
        reasons.push(result.map(|e| e.signal).map_err(|r| r.reason))
    });
    assert_eq!(reasons, vec![Err(Reason::TooLarge)]);
}

#[test]
fn json_array_batches_validate_each_element() {
    let body = br#"[{"type":"survey","metric":"nps","score":9}, 42, {"type":"survey","metric":"nps","score":"x"}]"#;
    let mut seen = Vec::new();
    let result = parse_json_array(body, &schema(), |index, result| {
        seen.push((
            index,
            result.map(|e| e.signal).map_err(|r| (r.reason, r.field)),
        ))
    });
    assert_eq!(result, Ok(()));
    assert_eq!(
        seen,
        vec![
            (
                0,
                Ok(Signal::Survey {
                    metric: SurveyMetric::Nps,
                    score: 9
                })
            ),
            (1, Err((Reason::WrongType, None))),
            (2, Err((Reason::WrongType, Some("score".into())))),
        ]
    );
}

#[test]
fn broken_json_arrays_are_refused_as_a_whole() {
    let ignore = |_: usize, _: Result<Event, Rejection>| {};
    let broken = parse_json_array(
        br#"[{"type":"survey","metric":"nps","score":9},"#,
        &schema(),
        ignore,
    );
    assert_eq!(broken.map_err(|r| r.reason), Err(Reason::Malformed));
    let trailing = parse_json_array(b"[] []", &schema(), ignore);
    assert_eq!(trailing.map_err(|r| r.reason), Err(Reason::Malformed));
    let object = parse_json_array(br#"{"type":"survey"}"#, &schema(), ignore);
    assert_eq!(object.map_err(|r| r.reason), Err(Reason::WrongType));
    assert_eq!(parse_json_array(b"[]", &schema(), ignore), Ok(()));
}

#[test]
fn configurations_that_cannot_be_served_are_refused() {
    let refuse = |yaml: &str| {
        let config: CollectorConfig = serde_yaml::from_str(yaml).expect("test config");
        EventSchema::from_config(&config).expect_err(yaml)
    };
    refuse("{namespace: n, touchpoint: t, channel: c, stage: support, maxEventBytes: 1024}");
    refuse(
        "{namespace: n, touchpoint: t, channel: c, stage: support, surveys: [{metric: nps}, {metric: nps}], maxEventBytes: 1024}",
    );
    refuse(
        "{namespace: n, touchpoint: t, channel: c, stage: support, surveys: [{metric: csat, scale: 10}], maxEventBytes: 1024}",
    );
    refuse(
        "{namespace: n, touchpoint: t, channel: c, stage: support, surveys: [{metric: nps, scale: 5}], maxEventBytes: 1024}",
    );
    refuse(
        "{namespace: n, touchpoint: t, channel: c, stage: support, interactions: {outcomes: []}, maxEventBytes: 1024}",
    );
    refuse(
        "{namespace: n, touchpoint: t, channel: c, stage: support, surveys: [{metric: nps}], maxEventBytes: 10}",
    );
}

#[test]
fn reasons_are_distinct_snake_case_labels_with_statuses() {
    let mut names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    for (index, reason) in Reason::ALL.iter().enumerate() {
        assert_eq!(reason.index(), index);
        let status = reason.http_status();
        assert!(
            (400..500).contains(&status) || (reason.retryable() && status == 503),
            "{reason}: {status}"
        );
    }
    assert!(
        names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    );
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Reason::ALL.len());
    assert_eq!(Reason::Malformed.http_status(), 400);
    assert_eq!(Reason::Unauthorized.http_status(), 401);
    assert_eq!(Reason::TooLarge.http_status(), 413);
    assert_eq!(Reason::UnsupportedMediaType.http_status(), 415);
    assert_eq!(Reason::ScoreOutOfRange.http_status(), 422);
    assert_eq!(Reason::Overloaded.http_status(), 503);
    assert_eq!(Reason::ShuttingDown.http_status(), 503);
}

#[test]
fn every_field_decodes_from_its_own_name() {
    for (index, field) in wire::Field::ALL.into_iter().enumerate() {
        assert_eq!(wire::Field::from_name(field.name()), Some(field));
        assert_eq!(field as usize, index);
    }
    assert_eq!(wire::Field::from_name("Type"), None);
}

fn full(json: &str) -> Event<'_> {
    parse_event(json.as_bytes(), &comments()).expect(json)
}

/// A touchpoint with comments of at most 64 bytes.
fn comments() -> EventSchema {
    let config: CollectorConfig = serde_yaml::from_str(
        r#"
namespace: retail
touchpoint: web-checkout
channel: web
stage: purchase
surveys: [{ metric: nps }]
interactions: { outcomes: [completed, abandoned] }
maxEventBytes: 1024
maxCommentBytes: 64
"#,
    )
    .expect("test config");
    EventSchema::from_config(&config).expect("valid test config")
}

#[track_caller]
fn comment_rejected(json: &str, reason: Reason, field: &str) -> Rejection {
    let rejection = parse_event(json.as_bytes(), &comments()).expect_err(json);
    assert_eq!(rejection.reason, reason, "{json}: {rejection:?}");
    assert_eq!(
        rejection.field.as_deref(),
        Some(field),
        "{json}: {rejection:?}"
    );
    rejection
}

#[test]
fn comments_and_languages_are_kept_on_the_event() {
    let event = full(
        r#"{"type":"survey","metric":"nps","score":3,"comment":"Il corriere è arrivato in ritardo","language":"it-IT"}"#,
    );
    assert_eq!(
        event.signal,
        Signal::Survey {
            metric: SurveyMetric::Nps,
            score: 3
        }
    );
    assert_eq!(
        event.comment.as_deref(),
        Some("Il corriere è arrivato in ritardo")
    );
    // Unescaped strings are borrowed from the body, not copied.
    assert!(matches!(event.comment, Some(Cow::Borrowed(_))));
    assert_eq!(event.language.as_deref(), Some("it-IT"));
    // Escapes are decoded; newlines and tabs are text.
    let event = full(
        r#"{"type":"interaction","outcome":"abandoned","comment":"line one\n\tline two \u00e8"}"#,
    );
    assert_eq!(event.comment.as_deref(), Some("line one\n\tline two è"));
    assert_eq!(event.language, None);
    // null is absent.
    let event =
        full(r#"{"type":"survey","metric":"nps","score":3,"comment":null,"language":null}"#);
    assert_eq!((event.comment, event.language), (None, None));
}

#[test]
fn empty_or_blank_comments_are_no_comment() {
    for blank in ["", " ", "\\n\\t  ", "\u{a0}\u{2003}"] {
        let json = format!(r#"{{"type":"survey","metric":"nps","score":3,"comment":"{blank}"}}"#);
        assert_eq!(full(&json).comment, None, "{json}");
    }
}

#[test]
fn comments_over_the_limit_are_refused_naming_the_field_and_limit_only() {
    let at_limit = "é".repeat(32);
    let json = format!(r#"{{"type":"survey","metric":"nps","score":3,"comment":"{at_limit}"}}"#);
    assert_eq!(full(&json).comment.as_deref(), Some(at_limit.as_str()));
    let over = format!("{at_limit}x MARKER");
    let json = format!(r#"{{"type":"survey","metric":"nps","score":3,"comment":"{over}"}}"#);
    let rejection = comment_rejected(&json, Reason::CommentTooLong, "comment");
    assert!(rejection.message.contains("64"), "{}", rejection.message);
    assert!(!rejection.message.contains("MARKER"));
    assert_eq!(Reason::CommentTooLong.http_status(), 422);
    // The default limit is 4096 bytes.
    let long = "a".repeat(4097);
    let json = format!(r#"{{"type":"survey","metric":"nps","score":3,"comment":"{long}"}}"#);
    let schema = surveys_only_with_big_events();
    let rejection = parse_event(json.as_bytes(), &schema).expect_err("over 4096");
    assert_eq!(rejection.reason, Reason::CommentTooLong);
    assert!(rejection.message.contains("4096"));
}

fn surveys_only_with_big_events() -> EventSchema {
    let config: CollectorConfig = serde_yaml::from_str(
        "{namespace: n, touchpoint: t, channel: c, stage: support, surveys: [{metric: nps}], maxEventBytes: 65536}",
    )
    .expect("test config");
    EventSchema::from_config(&config).expect("valid test config")
}

#[test]
fn control_characters_in_comments_are_refused() {
    for control in [
        r"\u0000",
        r"\u0007",
        r"\r",
        r"\u001b[31m",
        r"\u007f",
        r"\u0085",
        r"\u009f",
    ] {
        let json =
            format!(r#"{{"type":"survey","metric":"nps","score":3,"comment":"MARKER {control}"}}"#);
        let rejection = comment_rejected(&json, Reason::InvalidComment, "comment");
        assert!(!rejection.message.contains("MARKER"));
    }
    // A raw control character is not even JSON.
    let rejection = parse_event(
        b"{\"type\":\"survey\",\"metric\":\"nps\",\"score\":3,\"comment\":\"a\x07b\"}",
        &comments(),
    )
    .expect_err("raw control");
    assert_eq!(rejection.reason, Reason::Malformed);
}

#[test]
fn comments_of_the_wrong_type_are_refused() {
    comment_rejected(
        r#"{"type":"survey","metric":"nps","score":3,"comment":42}"#,
        Reason::WrongType,
        "comment",
    );
    comment_rejected(
        r#"{"type":"survey","metric":"nps","score":3,"language":["it"]}"#,
        Reason::WrongType,
        "language",
    );
}

#[test]
fn invalid_utf8_in_a_comment_is_refused_never_replaced() {
    let rejection = parse_event(
        b"{\"type\":\"survey\",\"metric\":\"nps\",\"score\":3,\"comment\":\"caf\xe9\"}",
        &comments(),
    )
    .expect_err("invalid UTF-8");
    assert_eq!(rejection.reason, Reason::Malformed);
    assert_eq!(rejection.field.as_deref(), Some("comment"), "{rejection:?}");
    assert!(!rejection.message.contains("caf"), "{rejection:?}");
    assert_eq!(rejection.reason.http_status(), 400);
    // A lone surrogate escape is not a character either.
    let rejection = parse_event(
        br#"{"type":"survey","metric":"nps","score":3,"comment":"\ud800"}"#,
        &comments(),
    )
    .expect_err("lone surrogate");
    assert_eq!(rejection.reason, Reason::Malformed);
    assert_eq!(rejection.field.as_deref(), Some("comment"));
}

#[test]
fn language_tags_are_checked_for_shape() {
    for tag in [
        "it",
        "en-GB",
        "zh-Hant-TW",
        "es-419",
        "de-CH-1901",
        "x-klingon",
    ] {
        let json = format!(r#"{{"type":"survey","metric":"nps","score":3,"language":"{tag}"}}"#);
        assert_eq!(full(&json).language.as_deref(), Some(tag), "{tag}");
    }
    for tag in [
        "",
        "i t",
        "it_IT",
        "1t",
        "it-",
        "-it",
        "it--IT",
        "italiano9",
        "en-GB-oxendict-abcdefghi",
        "é",
        &"a-b".repeat(12),
    ] {
        let json = format!(r#"{{"type":"survey","metric":"nps","score":3,"language":"{tag}"}}"#);
        comment_rejected(&json, Reason::InvalidLanguage, "language");
    }
}

#[test]
fn event_ids_are_kept_or_assigned() {
    let event = full(r#"{"type":"survey","metric":"nps","score":3,"eventId":"ord-42:7/a"}"#);
    assert_eq!(event.id, EventId::Given(Cow::Borrowed("ord-42:7/a")));
    assert_eq!(event.id.to_string(), "ord-42:7/a");
    let max = "x".repeat(MAX_EVENT_ID_BYTES);
    let json = format!(r#"{{"type":"survey","metric":"nps","score":3,"eventId":"{max}"}}"#);
    assert_eq!(full(&json).id.to_string(), max);
    // Absent: a random 128-bit id, 32 hex digits, different every time.
    let a = full(r#"{"type":"survey","metric":"nps","score":3}"#).id;
    let b = full(r#"{"type":"survey","metric":"nps","score":3,"eventId":null}"#).id;
    assert!(matches!(a, EventId::Assigned(_)));
    let shown = a.to_string();
    assert_eq!(shown.len(), 32);
    assert!(shown.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
    let too_long = "x".repeat(MAX_EVENT_ID_BYTES + 1);
    for bad in ["", "has space", "tab\\there", "é", too_long.as_str()] {
        let json = format!(r#"{{"type":"survey","metric":"nps","score":3,"eventId":"{bad}"}}"#);
        comment_rejected(&json, Reason::InvalidEventId, "eventId");
    }
    comment_rejected(
        r#"{"type":"survey","metric":"nps","score":3,"eventId":7}"#,
        Reason::WrongType,
        "eventId",
    );
}

#[test]
fn other_unknown_fields_are_still_refused_with_comments() {
    comment_rejected(
        r#"{"type":"survey","metric":"nps","score":3,"comment":"ok","text":"x"}"#,
        Reason::UnknownField,
        "text",
    );
    comment_rejected(
        r#"{"type":"survey","metric":"nps","score":3,"comment":"a","comment":"b"}"#,
        Reason::DuplicateField,
        "comment",
    );
}

#[test]
fn a_bad_comment_refuses_only_its_event_in_a_batch() {
    let over = "o".repeat(65);
    let body = format!(
        "{{\"type\":\"survey\",\"metric\":\"nps\",\"score\":3,\"comment\":\"fine\"}}\n\
         {{\"type\":\"survey\",\"metric\":\"nps\",\"score\":3,\"comment\":\"{over}\"}}\n\
         {{\"type\":\"survey\",\"metric\":\"nps\",\"score\":9,\"comment\":\"bell\\u0007\"}}\n\
         {{\"type\":\"interaction\",\"outcome\":\"completed\",\"comment\":\"ok\"}}\n"
    );
    let mut seen = Vec::new();
    parse_ndjson(body.as_bytes(), &comments(), |index, result| {
        seen.push((
            index,
            result
                .map(|e| e.comment.map(Cow::into_owned))
                .map_err(|r| (r.reason, r.field)),
        ))
    });
    assert_eq!(
        seen,
        vec![
            (0, Ok(Some("fine".to_owned()))),
            (1, Err((Reason::CommentTooLong, Some("comment".into())))),
            (2, Err((Reason::InvalidComment, Some("comment".into())))),
            (3, Ok(Some("ok".to_owned()))),
        ]
    );
    let array = format!(
        r#"[{{"type":"survey","metric":"nps","score":3,"comment":"{over}"}},{{"type":"survey","metric":"nps","score":3,"comment":"kept"}}]"#
    );
    let mut seen = Vec::new();
    let whole = parse_json_array(array.as_bytes(), &comments(), |index, result| {
        seen.push((
            index,
            result
                .map(|e| e.comment.map(Cow::into_owned))
                .map_err(|r| r.reason),
        ))
    });
    assert_eq!(whole, Ok(()));
    assert_eq!(
        seen,
        vec![
            (0, Err(Reason::CommentTooLong)),
            (1, Ok(Some("kept".to_owned())))
        ]
    );
}

#[test]
fn comment_limits_and_themes_are_checked_in_the_configuration() {
    let refuse = |extra: &str| {
        let yaml = format!(
            "{{namespace: n, touchpoint: t, channel: c, stage: support, surveys: [{{metric: nps}}], maxEventBytes: 1024, {extra}}}"
        );
        let config: CollectorConfig = serde_yaml::from_str(&yaml).expect("test config");
        EventSchema::from_config(&config).expect_err(&yaml)
    };
    refuse("maxCommentBytes: 0");
    refuse("maxCommentBytes: 65537");
    let error = refuse("themes: [{name: delivery, keywords: ['con*segna']}]");
    assert!(error.0.contains("themes[0].keywords[0]"), "{error}");
}

/// What a batch parser reports, owned so that runs over different buffers compare equal (the ids
/// the collector assigns are random, so they are left out).
fn ndjson_reports(
    feed: impl FnOnce(&mut dyn FnMut(usize, Result<Event, Rejection>)),
) -> Vec<String> {
    let mut seen = Vec::new();
    feed(&mut |index, result| {
        let report = result.map(|e| (e.signal, e.comment, e.language));
        seen.push(format!("{index} {report:?}"))
    });
    seen
}

#[test]
fn a_streamed_ndjson_batch_reads_like_the_whole_body_whatever_its_chunks() {
    let over = "o".repeat(65);
    let body = format!(
        "{{\"type\":\"survey\",\"metric\":\"nps\",\"score\":3,\"comment\":\"il corriere è in ritardo 🚚\"}}\r\n\
         \n  \n\
         {{\"type\":\"survey\",\"metric\":\"nps\",\"score\":3,\"comment\":\"{over}\"}}\n\
         not json\n\
         {{\"type\":\"interaction\",\"outcome\":\"completed\",\"comment\":\"ok\",\"language\":\"it\"}}\n\
         {{\"type\":\"survey\",\"metric\":\"nps\",\"score\":10}}"
    );
    let body = body.as_bytes();
    let schema = comments();
    let whole = ndjson_reports(|on_event| parse_ndjson(body, &schema, on_event));
    assert_eq!(whole.len(), 5, "{whole:#?}");
    let streamed = |chunks: &mut dyn Iterator<Item = &[u8]>| {
        ndjson_reports(|on_event| {
            let mut stream = NdjsonStream::default();
            for chunk in chunks {
                stream.feed(chunk, &schema, &mut *on_event);
            }
            stream.finish(&schema, on_event);
        })
    };
    for cut in 0..=body.len() {
        let (head, tail) = body.split_at(cut);
        assert_eq!(
            streamed(&mut [head, tail].into_iter()),
            whole,
            "cut at {cut}"
        );
    }
    for size in 1..=17 {
        assert_eq!(streamed(&mut body.chunks(size)), whole, "chunks of {size}");
    }
    // A body ending with its line end reads the same as one without.
    let mut ended = body.to_vec();
    ended.push(b'\n');
    assert_eq!(streamed(&mut ended.chunks(5)), whole);
}
