//! Unit tests of the event parser: one per validation rule, asserting the exact reason and field.

use super::*;
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

fn parse(json: &str) -> Result<Event, Rejection> {
    parse_event(json.as_bytes(), &schema())
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
        Ok(Event::Survey {
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
            Ok(Event::Survey {
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
        Ok(Event::Survey {
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
        Ok(Event::Interaction {
            outcome: Outcome::Abandoned,
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
        Ok(Event::Interaction {
            outcome: Outcome::Error,
            wait_seconds: None,
            handle_seconds: None
        })
    );
}

#[test]
fn field_order_and_whitespace_do_not_matter() {
    assert_eq!(
        parse("\n { \"score\" : 3 , \"metric\" : \"csat\" , \"type\" : \"survey\" } \n"),
        Ok(Event::Survey {
            metric: SurveyMetric::Csat,
            score: 3
        })
    );
}

#[test]
fn escaped_strings_are_understood() {
    assert_eq!(
        parse(r#"{"type":"surv\u0065y","metric":"nps","score":1,"customerId":"a\"b"}"#),
        Ok(Event::Survey {
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
    let Ok(Event::Interaction {
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
        r#"{"type":"survey","metric":"nps","score":9,"comment":"great"}"#,
        Reason::UnknownField,
        Some("comment"),
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
        seen.push((index, result.map_err(|r| r.reason)))
    });
    assert_eq!(
        seen,
        vec![
            (
                0,
                Ok(Event::Survey {
                    metric: SurveyMetric::Nps,
                    score: 9
                })
            ),
            (3, Err(Reason::ScoreOutOfRange)),
            (4, Err(Reason::Malformed)),
            (
                5,
                Ok(Event::Interaction {
                    outcome: Outcome::Completed,
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
        reasons.push(result.map_err(|r| r.reason))
    });
    assert_eq!(reasons, vec![Err(Reason::TooLarge)]);
}

#[test]
fn json_array_batches_validate_each_element() {
    let body = br#"[{"type":"survey","metric":"nps","score":9}, 42, {"type":"survey","metric":"nps","score":"x"}]"#;
    let mut seen = Vec::new();
    let result = parse_json_array(body, &schema(), |index, result| {
        seen.push((index, result.map_err(|r| (r.reason, r.field))))
    });
    assert_eq!(result, Ok(()));
    assert_eq!(
        seen,
        vec![
            (
                0,
                Ok(Event::Survey {
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
