//! Fuzzes the collector's functional core with arbitrary bytes, as a single event, as an NDJSON
//! batch and as a JSON-array batch. It must never panic, and whatever it accepts must satisfy
//! the touchpoint's rules (scores in range, declared outcomes, sane durations).

#![no_main]

use std::sync::LazyLock;

use cx_conductor::api::{InteractionSignals, Outcome, Stage, SurveyMetric, SurveySignal, Timing};
use cx_conductor::collector::config::CollectorConfig;
use cx_conductor::collector::event::{
    Event, EventId, EventSchema, MAX_DURATION_SECONDS, MAX_EVENT_ID_BYTES, NdjsonStream, Rejection,
    Signal, is_language_tag, is_rfc3339, parse_event, parse_json_array, parse_ndjson,
};
use libfuzzer_sys::fuzz_target;

static SCHEMA: LazyLock<EventSchema> = LazyLock::new(|| {
    let config = CollectorConfig {
        namespace: "fuzz".into(),
        touchpoint: "parser".into(),
        channel: "web".into(),
        stage: Stage::Support,
        surveys: vec![
            SurveySignal {
                metric: SurveyMetric::Nps,
                scale: None,
            },
            SurveySignal {
                metric: SurveyMetric::Csat,
                scale: Some(7),
            },
        ],
        interactions: Some(InteractionSignals {
            outcomes: vec![Outcome::Completed, Outcome::Abandoned, Outcome::Escalated],
            custom_outcomes: vec!["failed-attempt".into()],
            timings: vec![Timing::Wait],
        }),
        max_event_bytes: 4096,
        first_response_seconds: Some(60),
        auth: None,
        auth_token_sha256: None,
        max_comment_bytes: Some(64),
        themes: Vec::new(),
        export: None,
    };
    EventSchema::from_config(&config).expect("the fuzz configuration is valid")
});

fn check(result: Result<Event<'_>, Rejection>) {
    if let Ok(event) = &result {
        if let Some(comment) = &event.comment {
            assert!(comment.len() <= 64 && !comment.trim().is_empty());
            assert!(
                !comment
                    .chars()
                    .any(|c| c.is_control() && c != '\n' && c != '\t')
            );
        }
        if let Some(language) = &event.language {
            assert!(is_language_tag(language));
        }
        if let EventId::Given(id) = &event.id {
            assert!(!id.is_empty() && id.len() <= MAX_EVENT_ID_BYTES);
            assert!(id.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
    match result.map(|event| event.signal) {
        Ok(Signal::Survey { metric, score }) => {
            let (low, high) = SCHEMA
                .score_range(metric)
                .expect("accepted metrics are declared");
            assert!((low..=high).contains(&score), "{metric:?} {score}");
        }
        Ok(Signal::Interaction {
            outcome,
            wait_seconds,
            handle_seconds,
        }) => {
            let name = SCHEMA.outcome_name(outcome);
            assert_eq!(
                SCHEMA.outcome(name),
                Some(outcome),
                "{outcome:?} is declared"
            );
            assert!(handle_seconds.is_none(), "handle is not declared");
            if let Some(seconds) = wait_seconds {
                assert!(seconds.is_finite() && (0.0..=MAX_DURATION_SECONDS).contains(&seconds));
                assert!(seconds.is_sign_positive(), "no negative zero");
            }
        }
        Err(rejection) => {
            assert!(!rejection.message.is_empty());
            assert!(
                rejection
                    .field
                    .as_ref()
                    .is_none_or(|f| f.chars().count() <= 64)
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(parse_event(data, &SCHEMA));
    parse_ndjson(data, &SCHEMA, |_, result| check(result));
    // Streamed in chunks cut where the data says, NDJSON reads as it does whole (ids assigned at
    // random left out).
    let report = |index: usize, result: Result<Event<'_>, Rejection>| {
        let result = result.map(|e| (e.signal, e.comment, e.language, e.customer_id, e.session_id));
        format!("{index} {result:?}")
    };
    let mut whole = Vec::new();
    parse_ndjson(data, &SCHEMA, |index, result| {
        whole.push(report(index, result))
    });
    let mut streamed = Vec::new();
    let mut stream = NdjsonStream::default();
    let size = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for chunk in data.chunks(size) {
        stream.feed(chunk, &SCHEMA, |index, result| {
            streamed.push(report(index, result))
        });
    }
    stream.finish(&SCHEMA, |index, result| {
        streamed.push(report(index, result))
    });
    assert_eq!(streamed, whole);
    let _ = parse_json_array(data, &SCHEMA, |_, result| check(result));
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = is_rfc3339(text);
    }
});
