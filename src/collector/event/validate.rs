//! Validation: the decoded object against the touchpoint's schema, one precise rejection per
//! rule.

use super::schema::parse_metric;
use super::timestamp::is_rfc3339;
use super::wire::{Field, Json, RawEvent, Top};
use super::{
    Event, EventId, EventSchema, MAX_DURATION_SECONDS, MAX_ECHOED_FIELD_CHARS, MAX_EVENT_ID_BYTES,
    MAX_ID_BYTES, MAX_LANGUAGE_BYTES, Reason, Rejection, Signal,
};
use crate::api::Timing;
use std::borrow::Cow;

pub(super) fn validate<'a>(top: Top<'a>, schema: &EventSchema) -> Result<Event<'a>, Rejection> {
    let mut raw = match top {
        Top::Object(raw) => raw,
        Top::Other(kind) => {
            return Err(Rejection::whole(
                Reason::WrongType,
                format!("an event is a JSON object, got {kind}"),
            ));
        }
    };
    if let Some(name) = &raw.first_unknown {
        let shown: String = name.chars().take(MAX_ECHOED_FIELD_CHARS).collect();
        return Err(Rejection::field(
            Reason::UnknownField,
            shown.clone(),
            format!("unknown field {shown:?}"),
        ));
    }
    if let Some(field) = raw.first_duplicate {
        return Err(Rejection::field(
            Reason::DuplicateField,
            field.name(),
            format!("field {:?} appears more than once", field.name()),
        ));
    }
    let signal = match required_str(&raw, Field::Type)? {
        "survey" => validate_survey(&raw, schema)?,
        "interaction" => validate_interaction(&raw, schema)?,
        other => {
            return Err(Rejection::field(
                Reason::UnknownEventType,
                "type",
                format!(
                    "unknown event type {:?}: expected survey or interaction",
                    truncate(other)
                ),
            ));
        }
    };
    let customer_id = identifier(&mut raw, Field::CustomerId)?;
    let session_id = identifier(&mut raw, Field::SessionId)?;
    let timestamp = match raw.take(Field::Timestamp) {
        None => None,
        Some(Json::Str(text)) if is_rfc3339(&text) => Some(text),
        Some(Json::Str(_)) => {
            return Err(Rejection::field(
                Reason::InvalidTimestamp,
                "timestamp",
                "timestamp must be an RFC 3339 date-time such as 2026-11-03T10:15:00Z",
            ));
        }
        Some(value) => {
            return Err(wrong_type(
                Field::Timestamp,
                "an RFC 3339 date-time string",
                &value,
            ));
        }
    };
    let comment = comment(&mut raw, schema)?;
    let language = language(&mut raw)?;
    let id = event_id(&mut raw)?;
    Ok(Event {
        signal,
        comment,
        language,
        id,
        customer_id,
        session_id,
        timestamp,
    })
}

/// The comment, if there is one worth keeping. Its text never appears in a rejection.
fn comment<'a>(
    raw: &mut RawEvent<'a>,
    schema: &EventSchema,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    let text = match raw.take(Field::Comment) {
        None => return Ok(None),
        Some(Json::Str(text)) => text,
        Some(other) => return Err(wrong_type(Field::Comment, "a string", &other)),
    };
    let limit = schema.max_comment_bytes();
    if text.len() > limit {
        return Err(Rejection::field(
            Reason::CommentTooLong,
            "comment",
            format!(
                "comment is {} bytes, more than the {limit} this touchpoint accepts                  (maxCommentBytes)",
                text.len()
            ),
        ));
    }
    if has_control_character(&text) {
        return Err(Rejection::field(
            Reason::InvalidComment,
            "comment",
            "comment must not contain control characters other than newline and tab",
        ));
    }
    if text.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(text))
}

/// Whether `text` has a Unicode control character (C0, DEL, C1) other than `\n` and `\t`.
fn has_control_character(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Branch-free folds, so the compiler can vectorise them: comments are hundreds of bytes.
    let c0 = bytes.iter().fold(false, |seen, &b| {
        seen | ((b < 0x20) & (b != b'\n') & (b != b'\t')) | (b == 0x7f)
    });
    // C1 controls U+0080..U+009F are encoded 0xC2 0x80..=0x9F.
    c0 || (bytes.contains(&0xc2)
        && bytes
            .windows(2)
            .any(|pair| pair[0] == 0xc2 && (0x80..=0x9f).contains(&pair[1])))
}

fn language<'a>(raw: &mut RawEvent<'a>) -> Result<Option<Cow<'a, str>>, Rejection> {
    let tag = match raw.take(Field::Language) {
        None => return Ok(None),
        Some(Json::Str(tag)) => tag,
        Some(other) => return Err(wrong_type(Field::Language, "a string", &other)),
    };
    if !is_language_tag(&tag) {
        return Err(Rejection::field(
            Reason::InvalidLanguage,
            "language",
            format!(
                "language must be a BCP 47 tag such as it, en-GB or zh-Hant-TW (at most \
                 {MAX_LANGUAGE_BYTES} letters, digits and hyphens), got {:?}",
                truncate(&tag)
            ),
        ));
    }
    Ok(Some(tag))
}

/// The shape of a BCP 47 tag: 1–35 ASCII letters, digits and hyphens; subtags of 1–8 characters,
/// the first one letters only. (Whether the subtags are registered is not checked.)
pub fn is_language_tag(tag: &str) -> bool {
    if tag.is_empty() || tag.len() > MAX_LANGUAGE_BYTES {
        return false;
    }
    tag.split('-').enumerate().all(|(i, subtag)| {
        (1..=8).contains(&subtag.len())
            && if i == 0 {
                subtag.bytes().all(|b| b.is_ascii_alphabetic())
            } else {
                subtag.bytes().all(|b| b.is_ascii_alphanumeric())
            }
    })
}

fn event_id<'a>(raw: &mut RawEvent<'a>) -> Result<EventId<'a>, Rejection> {
    let id = match raw.take(Field::EventId) {
        None => return Ok(EventId::assign()),
        Some(Json::Str(id)) => id,
        Some(other) => return Err(wrong_type(Field::EventId, "a string", &other)),
    };
    if id.is_empty() || id.len() > MAX_EVENT_ID_BYTES || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Rejection::field(
            Reason::InvalidEventId,
            "eventId",
            format!(
                "eventId must be 1 to {MAX_EVENT_ID_BYTES} bytes of printable ASCII without spaces"
            ),
        ));
    }
    Ok(EventId::Given(id))
}

fn validate_survey(raw: &RawEvent<'_>, schema: &EventSchema) -> Result<Signal, Rejection> {
    for field in [Field::Outcome, Field::WaitSeconds, Field::HandleSeconds] {
        refuse_foreign_field(raw, field, "survey")?;
    }
    let name = required_str(raw, Field::Metric)?;
    let Some(metric) = parse_metric(name) else {
        return Err(Rejection::field(
            Reason::InvalidMetric,
            "metric",
            format!(
                "unknown survey metric {:?}: expected nps, csat or ces",
                truncate(name)
            ),
        ));
    };
    let Some((low, high)) = schema.score_range(metric) else {
        return Err(Rejection::field(
            Reason::InvalidMetric,
            "metric",
            format!(
                "this touchpoint does not ask {}; it asks: {}",
                metric.as_str(),
                schema.declared_metrics()
            ),
        ));
    };
    let score = match required(raw, Field::Score)? {
        Json::Unsigned(n) => *n as f64,
        Json::Signed(n) => *n as f64,
        Json::Float(n) => {
            if n.fract() != 0.0 {
                return Err(Rejection::field(
                    Reason::ScoreNotInteger,
                    "score",
                    format!("score must be a whole number, got {n}"),
                ));
            }
            *n
        }
        other => return Err(wrong_type(Field::Score, "an integer", other)),
    };
    if score < f64::from(low) || score > f64::from(high) {
        return Err(Rejection::field(
            Reason::ScoreOutOfRange,
            "score",
            format!(
                "{} scores range from {low} to {high}, got {score}",
                metric.as_str()
            ),
        ));
    }
    // In range 0..=10, so the conversion is exact.
    let score = score as u8;
    Ok(Signal::Survey { metric, score })
}

fn validate_interaction(raw: &RawEvent<'_>, schema: &EventSchema) -> Result<Signal, Rejection> {
    for field in [Field::Metric, Field::Score] {
        refuse_foreign_field(raw, field, "interaction")?;
    }
    if !schema.declares_interactions() {
        return Err(Rejection::field(
            Reason::InteractionsNotDeclared,
            "type",
            "this touchpoint does not collect interactions",
        ));
    }
    let name = required_str(raw, Field::Outcome)?;
    let outcome = match schema.outcome(name) {
        Some(outcome) => outcome,
        None => {
            return Err(Rejection::field(
                Reason::UnknownOutcome,
                "outcome",
                format!(
                    "outcome {:?} is not declared by this touchpoint; declared: {}",
                    truncate(name),
                    schema.declared_outcomes()
                ),
            ));
        }
    };
    let wait_seconds = duration(raw, schema, Field::WaitSeconds, Timing::Wait)?;
    let handle_seconds = duration(raw, schema, Field::HandleSeconds, Timing::Handle)?;
    Ok(Signal::Interaction {
        outcome,
        wait_seconds,
        handle_seconds,
    })
}

fn duration(
    raw: &RawEvent<'_>,
    schema: &EventSchema,
    field: Field,
    timing: Timing,
) -> Result<Option<f64>, Rejection> {
    let Some(value) = raw.optional(field) else {
        return Ok(None);
    };
    let Some(seconds) = value.as_f64() else {
        return Err(wrong_type(field, "a number of seconds", value));
    };
    if !schema.declares_timing(timing) {
        return Err(Rejection::field(
            Reason::UndeclaredTiming,
            field.name(),
            format!(
                "this touchpoint does not measure the {} timing",
                timing.as_str()
            ),
        ));
    }
    if !seconds.is_finite() || !(0.0..=MAX_DURATION_SECONDS).contains(&seconds) {
        return Err(Rejection::field(
            Reason::InvalidDuration,
            field.name(),
            format!(
                "{} must be between 0 and {MAX_DURATION_SECONDS} seconds, got {seconds}",
                field.name()
            ),
        ));
    }
    // Normalise -0.0, which the range check lets through.
    Ok(Some(seconds + 0.0))
}

/// A `customerId` or `sessionId`, kept for the export. Its text never appears in a rejection.
fn identifier<'a>(raw: &mut RawEvent<'a>, field: Field) -> Result<Option<Cow<'a, str>>, Rejection> {
    match raw.take(field) {
        None => Ok(None),
        Some(Json::Str(id)) if id.len() <= MAX_ID_BYTES => Ok(Some(id)),
        Some(Json::Str(_)) => Err(Rejection::field(
            Reason::InvalidIdentifier,
            field.name(),
            format!("{} is longer than {MAX_ID_BYTES} bytes", field.name()),
        )),
        Some(other) => Err(wrong_type(field, "a string", &other)),
    }
}

fn refuse_foreign_field(raw: &RawEvent<'_>, field: Field, kind: &str) -> Result<(), Rejection> {
    if raw.get(field).is_some() {
        return Err(Rejection::field(
            Reason::UnknownField,
            field.name(),
            format!("{kind} events have no field {:?}", field.name()),
        ));
    }
    Ok(())
}

fn required<'r, 'a>(raw: &'r RawEvent<'a>, field: Field) -> Result<&'r Json<'a>, Rejection> {
    raw.get(field).ok_or_else(|| {
        Rejection::field(
            Reason::MissingField,
            field.name(),
            format!("missing field {:?}", field.name()),
        )
    })
}

fn required_str<'r>(raw: &'r RawEvent<'_>, field: Field) -> Result<&'r str, Rejection> {
    match required(raw, field)? {
        Json::Str(text) => Ok(text),
        other => Err(wrong_type(field, "a string", other)),
    }
}

fn wrong_type(field: Field, expected: &str, got: &Json<'_>) -> Rejection {
    Rejection::field(
        Reason::WrongType,
        field.name(),
        format!("{} must be {expected}, got {}", field.name(), got.kind()),
    )
}

/// Producer-supplied text echoed in a message, cut to a readable length.
fn truncate(text: &str) -> String {
    text.chars().take(MAX_ECHOED_FIELD_CHARS).collect()
}
