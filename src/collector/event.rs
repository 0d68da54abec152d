//! Feedback events: the JSON wire format and its validation against the touchpoint's configuration.
//!
//! This is the collector's functional core: bytes in, a validated [`Event`] or a [`Rejection`]
//! out, with no I/O, no allocation on the accepted path for ordinary input, and no panic on any
//! input (it is fuzzed, see `fuzz/`).
//!
//! # Wire format
//!
//! One event is one JSON object (UTF-8, at most `maxEventBytes` bytes). Field names are camelCase
//! and unknown fields are refused, so a typo never silently drops data.
//!
//! A survey response, explicit feedback:
//! ```json
//! {"type": "survey", "metric": "nps", "score": 9}
//! ```
//! - `metric`: `nps`, `csat` or `ces`, and declared by the touchpoint;
//! - `score`: an integer (`9` or `9.0`) within the metric's range: nps 0–10, csat 1–5 or 1–7 (the
//!   touchpoint's `scale`), ces 1–7.
//!
//! An interaction, implicit feedback:
//! ```json
//! {"type": "interaction", "outcome": "abandoned", "waitSeconds": 12.5, "handleSeconds": 300}
//! ```
//! - `outcome`: one of the touchpoint's declared outcomes (`completed`, `abandoned`, `error`,
//!   `resolved-first-contact`, `resolved`, `unresolved`, `escalated`);
//! - `waitSeconds`, `handleSeconds`: optional numbers of seconds, finite, 0 to one year, and only
//!   for timings the touchpoint declares (`wait`, `handle`).
//!
//! Both kinds may also carry:
//! - `customerId`, `sessionId`: strings of at most [`MAX_ID_BYTES`] bytes. They are checked and then
//!   dropped: they never become a metric label and are never logged;
//! - `timestamp`: an RFC 3339 date-time (`2026-11-03T10:15:00Z`). It is checked and dropped:
//!   Prometheus timestamps samples when it scrapes.
//!
//! `null` for an optional field means the field is absent.
//!
//! # Batches
//!
//! [`parse_ndjson`] reads one event per line (blank lines are skipped; the index of an event is its
//! zero-based line number) and [`parse_json_array`] a JSON array of events (the index is the array
//! position). Each event is accepted or rejected on its own.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::config::CollectorConfig;
use crate::api::{Outcome, SurveyMetric, Timing};

/// Longest accepted `customerId` / `sessionId`, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest accepted interaction duration, in seconds (one year): anything longer is a unit
/// mistake, and one absurd value would make the histogram's `_sum` meaningless forever.
pub const MAX_DURATION_SECONDS: f64 = 365.0 * 24.0 * 3600.0;
/// Longest field name echoed back in an `unknown_field` rejection.
const MAX_ECHOED_FIELD_CHARS: usize = 64;

/// A validated feedback event: only what becomes a metric, nothing personal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// An answer to a survey question.
    Survey {
        /// The question asked.
        metric: SurveyMetric,
        /// The answer, within the metric's range (0..=10 at most).
        score: u8,
    },
    /// How an interaction ended and how long it took.
    Interaction {
        /// How it ended.
        outcome: Outcome,
        /// Seconds until the first response, if measured.
        wait_seconds: Option<f64>,
        /// Seconds of active handling, if measured.
        handle_seconds: Option<f64>,
    },
}

/// Why an event or a request was refused. A closed set, so it can be a metric label
/// (`cx_events_rejected_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not JSON, trailing bytes after the JSON, or an unreadable body (400).
    Malformed,
    /// Missing or wrong bearer token (401).
    Unauthorized,
    /// The body did not arrive within the request timeout (408).
    Timeout,
    /// Body larger than the limit (413).
    TooLarge,
    /// Content-Type other than the one the endpoint reads (415).
    UnsupportedMediaType,
    /// A field (or the event itself) has the wrong JSON type (422).
    WrongType,
    /// A required field is absent (422).
    MissingField,
    /// A field that this kind of event does not have (422).
    UnknownField,
    /// The same field twice in one object (422).
    DuplicateField,
    /// `type` is neither `survey` nor `interaction` (422).
    UnknownEventType,
    /// Survey metric unknown or not declared by the touchpoint (422).
    InvalidMetric,
    /// Survey score with a fractional part (422).
    ScoreNotInteger,
    /// Survey score outside the metric's range (422).
    ScoreOutOfRange,
    /// An interaction at a touchpoint that declares no interaction signals (422).
    InteractionsNotDeclared,
    /// Interaction outcome unknown or not declared by the touchpoint (422).
    UnknownOutcome,
    /// A duration for a timing the touchpoint does not declare (422).
    UndeclaredTiming,
    /// A duration that is negative, not finite or longer than a year (422).
    InvalidDuration,
    /// `customerId` or `sessionId` too long (422).
    InvalidIdentifier,
    /// `timestamp` is not an RFC 3339 date-time (422).
    InvalidTimestamp,
    /// The collector has no room for the request now: connection reserve or body memory budget
    /// exhausted, or no batch parser free (503 with `Retry-After`).
    Overloaded,
    /// The collector is shutting down and takes no new events; another replica does (503 with
    /// `Retry-After`).
    ShuttingDown,
}

impl Reason {
    /// Every reason, so metrics can pre-register a zero for each.
    pub const ALL: [Reason; 21] = [
        Reason::Malformed,
        Reason::Unauthorized,
        Reason::Timeout,
        Reason::TooLarge,
        Reason::UnsupportedMediaType,
        Reason::WrongType,
        Reason::MissingField,
        Reason::UnknownField,
        Reason::DuplicateField,
        Reason::UnknownEventType,
        Reason::InvalidMetric,
        Reason::ScoreNotInteger,
        Reason::ScoreOutOfRange,
        Reason::InteractionsNotDeclared,
        Reason::UnknownOutcome,
        Reason::UndeclaredTiming,
        Reason::InvalidDuration,
        Reason::InvalidIdentifier,
        Reason::InvalidTimestamp,
        Reason::Overloaded,
        Reason::ShuttingDown,
    ];

    /// The label value and the `reason` of error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::Unauthorized => "unauthorized",
            Reason::Timeout => "timeout",
            Reason::TooLarge => "too_large",
            Reason::UnsupportedMediaType => "unsupported_media_type",
            Reason::WrongType => "wrong_type",
            Reason::MissingField => "missing_field",
            Reason::UnknownField => "unknown_field",
            Reason::DuplicateField => "duplicate_field",
            Reason::UnknownEventType => "unknown_event_type",
            Reason::InvalidMetric => "invalid_metric",
            Reason::ScoreNotInteger => "score_not_integer",
            Reason::ScoreOutOfRange => "score_out_of_range",
            Reason::InteractionsNotDeclared => "interactions_not_declared",
            Reason::UnknownOutcome => "unknown_outcome",
            Reason::UndeclaredTiming => "undeclared_timing",
            Reason::InvalidDuration => "invalid_duration",
            Reason::InvalidIdentifier => "invalid_identifier",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::Overloaded => "overloaded",
            Reason::ShuttingDown => "shutting_down",
        }
    }

    /// Position in [`Reason::ALL`], for array-indexed counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the refusal is about the collector's state rather than the request: the client
    /// should retry the same request later (`Retry-After`).
    pub fn retryable(self) -> bool {
        matches!(self, Reason::Overloaded | Reason::ShuttingDown)
    }

    /// The HTTP status a request refused for this reason gets.
    pub fn http_status(self) -> u16 {
        match self {
            Reason::Malformed => 400,
            Reason::Unauthorized => 401,
            Reason::Timeout => 408,
            Reason::TooLarge => 413,
            Reason::UnsupportedMediaType => 415,
            Reason::Overloaded | Reason::ShuttingDown => 503,
            _ => 422,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one event (or a whole request) was refused, in terms a producer can act on.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// The bounded reason (metric label).
    pub reason: Reason,
    /// The offending field, when there is one.
    pub field: Option<Cow<'static, str>>,
    /// A sentence for the producer's developers.
    pub message: Cow<'static, str>,
}

impl Rejection {
    /// A rejection about one field.
    pub fn field(
        reason: Reason,
        field: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Rejection {
            reason,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A rejection about the request or event as a whole.
    pub fn whole(reason: Reason, message: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            reason,
            field: None,
            message: message.into(),
        }
    }
}

/// The touchpoint's configuration compiled for fast validation: arrays indexed by enum instead of
/// list searches.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSchema {
    /// Inclusive score range per declared survey metric, indexed by [`metric_index`].
    score_ranges: [Option<(u8, u8)>; 3],
    /// Whether the touchpoint declares interaction signals at all.
    interactions: bool,
    /// Declared outcomes, indexed by [`outcome_index`].
    outcomes: [bool; 7],
    /// Declared timings, indexed by [`timing_index`].
    timings: [bool; 2],
    /// Largest single event, in bytes.
    max_event_bytes: usize,
}

/// A collector configuration that cannot be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid collector configuration: {0}")]
pub struct InvalidConfig(pub String);

/// Smallest accepted `maxEventBytes`: smaller could not hold a survey event with a session id.
pub const MIN_EVENT_BYTES: u64 = 256;
/// Largest accepted `maxEventBytes`.
pub const MAX_EVENT_BYTES: u64 = 1 << 20;

impl EventSchema {
    /// Compiles a configuration, refusing what the CRD schema would have refused (a collector may
    /// be started by hand with a hand-written file).
    pub fn from_config(config: &CollectorConfig) -> Result<Self, InvalidConfig> {
        let mut score_ranges = [None; 3];
        for survey in &config.surveys {
            let slot = &mut score_ranges[metric_index(survey.metric)];
            if slot.is_some() {
                return Err(InvalidConfig(format!(
                    "survey metric {} is declared twice",
                    survey.metric.as_str()
                )));
            }
            if let Some(scale) = survey.scale
                && (survey.metric != SurveyMetric::Csat || (scale != 5 && scale != 7))
            {
                return Err(InvalidConfig(format!(
                    "survey {}: scale {scale} is invalid (only csat has a scale, 5 or 7)",
                    survey.metric.as_str()
                )));
            }
            let (low, high) = survey.score_range();
            let low = u8::try_from(low).map_err(|_| InvalidConfig("bad score range".into()))?;
            let high = u8::try_from(high).map_err(|_| InvalidConfig("bad score range".into()))?;
            *slot = Some((low, high));
        }
        let mut outcomes = [false; 7];
        let mut timings = [false; 2];
        if let Some(interactions) = &config.interactions {
            if interactions.outcomes.is_empty() {
                return Err(InvalidConfig(
                    "interactions must declare at least one outcome".into(),
                ));
            }
            for outcome in &interactions.outcomes {
                outcomes[outcome_index(*outcome)] = true;
            }
            for timing in &interactions.timings {
                timings[timing_index(*timing)] = true;
            }
        }
        if config.surveys.is_empty() && config.interactions.is_none() {
            return Err(InvalidConfig(
                "the touchpoint declares no survey and no interactions: nothing to collect".into(),
            ));
        }
        if !(MIN_EVENT_BYTES..=MAX_EVENT_BYTES).contains(&config.max_event_bytes) {
            return Err(InvalidConfig(format!(
                "maxEventBytes {} is outside {MIN_EVENT_BYTES}..={MAX_EVENT_BYTES}",
                config.max_event_bytes
            )));
        }
        let max_event_bytes = usize::try_from(config.max_event_bytes)
            .map_err(|_| InvalidConfig("maxEventBytes does not fit in memory".into()))?;
        Ok(EventSchema {
            score_ranges,
            interactions: config.interactions.is_some(),
            outcomes,
            timings,
            max_event_bytes,
        })
    }

    /// Largest single event, in bytes.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Inclusive score range of a metric, or `None` when the touchpoint does not ask it.
    pub fn score_range(&self, metric: SurveyMetric) -> Option<(u8, u8)> {
        self.score_ranges[metric_index(metric)]
    }

    /// Whether interactions may end with this outcome here.
    pub fn declares_outcome(&self, outcome: Outcome) -> bool {
        self.outcomes[outcome_index(outcome)]
    }

    /// Whether interactions here measure this timing.
    pub fn declares_timing(&self, timing: Timing) -> bool {
        self.timings[timing_index(timing)]
    }

    fn declared_metrics(&self) -> String {
        let names: Vec<&str> = ALL_METRICS
            .iter()
            .filter(|m| self.score_range(**m).is_some())
            .map(|m| m.as_str())
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    fn declared_outcomes(&self) -> String {
        let names: Vec<&str> = Outcome::ALL
            .iter()
            .filter(|o| self.declares_outcome(**o))
            .map(|o| o.as_str())
            .collect();
        names.join(", ")
    }
}

/// Every survey metric, in [`metric_index`] order.
pub const ALL_METRICS: [SurveyMetric; 3] =
    [SurveyMetric::Nps, SurveyMetric::Csat, SurveyMetric::Ces];
/// Every timing, in [`timing_index`] order.
pub const ALL_TIMINGS: [Timing; 2] = [Timing::Wait, Timing::Handle];

/// Position of a metric in [`ALL_METRICS`].
pub fn metric_index(metric: SurveyMetric) -> usize {
    match metric {
        SurveyMetric::Nps => 0,
        SurveyMetric::Csat => 1,
        SurveyMetric::Ces => 2,
    }
}

/// Position of an outcome in [`Outcome::ALL`].
pub fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Completed => 0,
        Outcome::Abandoned => 1,
        Outcome::Error => 2,
        Outcome::ResolvedFirstContact => 3,
        Outcome::Resolved => 4,
        Outcome::Unresolved => 5,
        Outcome::Escalated => 6,
    }
}

/// Position of a timing in [`ALL_TIMINGS`].
pub fn timing_index(timing: Timing) -> usize {
    match timing {
        Timing::Wait => 0,
        Timing::Handle => 1,
    }
}

fn parse_metric(name: &str) -> Option<SurveyMetric> {
    ALL_METRICS.into_iter().find(|m| m.as_str() == name)
}

fn parse_outcome(name: &str) -> Option<Outcome> {
    Outcome::ALL.into_iter().find(|o| o.as_str() == name)
}

/// Parses and validates one event. Pure: the same bytes and schema always give the same answer.
pub fn parse_event(bytes: &[u8], schema: &EventSchema) -> Result<Event, Rejection> {
    if bytes.len() > schema.max_event_bytes {
        return Err(Rejection::whole(
            Reason::TooLarge,
            format!(
                "the event is {} bytes, more than the {} allowed",
                bytes.len(),
                schema.max_event_bytes
            ),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let top = Top::deserialize(&mut deserializer).map_err(malformed)?;
    deserializer.end().map_err(malformed)?;
    validate(top, schema)
}

/// Parses an NDJSON batch, calling `on_event(line_index, result)` for every non-blank line, in
/// order. Lines may end with `\n` or `\r\n`.
pub fn parse_ndjson<F>(body: &[u8], schema: &EventSchema, mut on_event: F)
where
    F: FnMut(usize, Result<Event, Rejection>),
{
    for (index, line) in body.split(|byte| *byte == b'\n').enumerate() {
        let line = line.trim_ascii();
        if !line.is_empty() {
            on_event(index, parse_event(line, schema));
        }
    }
}

/// Parses a JSON-array batch, calling `on_event(array_index, result)` for every element, in order.
/// Returns a rejection for the whole batch when the body is not a well-formed JSON array; the
/// caller must then discard what `on_event` saw.
pub fn parse_json_array<F>(body: &[u8], schema: &EventSchema, on_event: F) -> Result<(), Rejection>
where
    F: FnMut(usize, Result<Event, Rejection>),
{
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let outcome = BatchSeed { schema, on_event }
        .deserialize(&mut deserializer)
        .map_err(malformed)?;
    deserializer.end().map_err(malformed)?;
    match outcome {
        BatchShape::Array => Ok(()),
        BatchShape::Other(kind) => Err(Rejection::whole(
            Reason::WrongType,
            format!("a JSON batch is an array of events, got {kind}"),
        )),
    }
}

fn malformed(error: serde_json::Error) -> Rejection {
    Rejection::whole(Reason::Malformed, format!("malformed JSON: {error}"))
}

// ---------------------------------------------------------------------------------------------
// Decoding: a permissive first pass that only fails on JSON syntax, so that every semantic problem
// becomes a precise rejection (field, reason) in `validate`.

/// The fields any event may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Type,
    Metric,
    Score,
    Outcome,
    WaitSeconds,
    HandleSeconds,
    CustomerId,
    SessionId,
    Timestamp,
}

impl Field {
    fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "type" => Field::Type,
            "metric" => Field::Metric,
            "score" => Field::Score,
            "outcome" => Field::Outcome,
            "waitSeconds" => Field::WaitSeconds,
            "handleSeconds" => Field::HandleSeconds,
            "customerId" => Field::CustomerId,
            "sessionId" => Field::SessionId,
            "timestamp" => Field::Timestamp,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Type => "type",
            Field::Metric => "metric",
            Field::Score => "score",
            Field::Outcome => "outcome",
            Field::WaitSeconds => "waitSeconds",
            Field::HandleSeconds => "handleSeconds",
            Field::CustomerId => "customerId",
            Field::SessionId => "sessionId",
            Field::Timestamp => "timestamp",
        }
    }
}

/// Any JSON value, keeping only what validation needs (strings borrowed when unescaped).
#[derive(Debug, PartialEq)]
enum Json<'a> {
    Str(Cow<'a, str>),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Bool,
    Null,
    Array,
    Object,
}

impl Json<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Json::Str(_) => "a string",
            Json::Unsigned(_) | Json::Signed(_) | Json::Float(_) => "a number",
            Json::Bool => "a boolean",
            Json::Null => "null",
            Json::Array => "an array",
            Json::Object => "an object",
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            Json::Unsigned(n) => Some(n as f64),
            Json::Signed(n) => Some(n as f64),
            Json::Float(n) => Some(n),
            _ => None,
        }
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool)
    }
    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Unsigned(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Signed(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        Ok(Json::Float(n))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s)))
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Json::Object)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// An object key: a known field, or the name of an unknown one.
enum Key<'a> {
    Known(Field),
    Unknown(Cow<'a, str>),
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(Field::from_name(s).map_or(Key::Unknown(Cow::Borrowed(s)), Key::Known))
    }
    fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(Field::from_name(s).map_or_else(|| Key::Unknown(Cow::Owned(s.to_owned())), Key::Known))
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// An event object as written, before validation.
#[derive(Default)]
struct RawEvent<'a> {
    values: [Option<Json<'a>>; 9],
    first_unknown: Option<Cow<'a, str>>,
    first_duplicate: Option<Field>,
}

impl<'a> RawEvent<'a> {
    fn get(&self, field: Field) -> Option<&Json<'a>> {
        self.values[field as usize].as_ref()
    }

    /// The value of an optional field; JSON `null` counts as absent.
    fn optional(&self, field: Field) -> Option<&Json<'a>> {
        self.get(field).filter(|value| **value != Json::Null)
    }
}

/// The top-level value: an event object or something else (named for the message).
// Not boxed: the object is the common case and a heap allocation per event costs more than moving
// a few hundred bytes.
#[allow(clippy::large_enum_variant)]
enum Top<'a> {
    Object(RawEvent<'a>),
    Other(&'static str),
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let mut raw = RawEvent::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value = map.next_value::<Json<'de>>()?;
            match key {
                Key::Known(field) => {
                    let slot = &mut raw.values[field as usize];
                    if slot.is_some() {
                        raw.first_duplicate.get_or_insert(field);
                    } else {
                        *slot = Some(value);
                    }
                }
                Key::Unknown(name) => {
                    raw.first_unknown.get_or_insert(name);
                }
            }
        }
        Ok(Top::Object(raw))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::Other("an array"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Top<'de>, E> {
        Ok(Top::Other("a boolean"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Top<'de>, E> {
        Ok(Top::Other("a number"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Top<'de>, E> {
        Ok(Top::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Top<'de>, E> {
        Ok(Top::Other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Top<'de>, E> {
        Ok(Top::Other("a string"))
    }
    fn visit_unit<E>(self) -> Result<Top<'de>, E> {
        Ok(Top::Other("null"))
    }
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopVisitor)
    }
}

enum BatchShape {
    Array,
    Other(&'static str),
}

/// Streams the elements of a JSON array through validation without collecting them.
struct BatchSeed<'s, F> {
    schema: &'s EventSchema,
    on_event: F,
}

impl<'de, F> DeserializeSeed<'de> for BatchSeed<'_, F>
where
    F: FnMut(usize, Result<Event, Rejection>),
{
    type Value = BatchShape;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<BatchShape, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, F> Visitor<'de> for BatchSeed<'_, F>
where
    F: FnMut(usize, Result<Event, Rejection>),
{
    type Value = BatchShape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<BatchShape, A::Error> {
        let mut index = 0;
        while let Some(top) = seq.next_element::<Top<'de>>()? {
            (self.on_event)(index, validate(top, self.schema));
            index += 1;
        }
        Ok(BatchShape::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BatchShape, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(BatchShape::Other("an object"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<BatchShape, E> {
        Ok(BatchShape::Other("a boolean"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<BatchShape, E> {
        Ok(BatchShape::Other("a number"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<BatchShape, E> {
        Ok(BatchShape::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<BatchShape, E> {
        Ok(BatchShape::Other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<BatchShape, E> {
        Ok(BatchShape::Other("a string"))
    }
    fn visit_unit<E>(self) -> Result<BatchShape, E> {
        Ok(BatchShape::Other("null"))
    }
}

// ---------------------------------------------------------------------------------------------
// Validation: the decoded object against the touchpoint's schema.

fn validate(top: Top<'_>, schema: &EventSchema) -> Result<Event, Rejection> {
    let raw = match top {
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
    let event = match required_str(&raw, Field::Type)? {
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
    validate_identifier(&raw, Field::CustomerId)?;
    validate_identifier(&raw, Field::SessionId)?;
    if let Some(value) = raw.optional(Field::Timestamp) {
        let Json::Str(text) = value else {
            return Err(wrong_type(
                Field::Timestamp,
                "an RFC 3339 date-time string",
                value,
            ));
        };
        if !is_rfc3339(text) {
            return Err(Rejection::field(
                Reason::InvalidTimestamp,
                "timestamp",
                "timestamp must be an RFC 3339 date-time such as 2026-11-03T10:15:00Z",
            ));
        }
    }
    Ok(event)
}

fn validate_survey(raw: &RawEvent<'_>, schema: &EventSchema) -> Result<Event, Rejection> {
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
    Ok(Event::Survey { metric, score })
}

fn validate_interaction(raw: &RawEvent<'_>, schema: &EventSchema) -> Result<Event, Rejection> {
    for field in [Field::Metric, Field::Score] {
        refuse_foreign_field(raw, field, "interaction")?;
    }
    if !schema.interactions {
        return Err(Rejection::field(
            Reason::InteractionsNotDeclared,
            "type",
            "this touchpoint does not collect interactions",
        ));
    }
    let name = required_str(raw, Field::Outcome)?;
    let outcome = match parse_outcome(name) {
        Some(outcome) if schema.declares_outcome(outcome) => outcome,
        _ => {
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
    Ok(Event::Interaction {
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

fn validate_identifier(raw: &RawEvent<'_>, field: Field) -> Result<(), Rejection> {
    match raw.optional(field) {
        None => Ok(()),
        Some(Json::Str(id)) if id.len() <= MAX_ID_BYTES => Ok(()),
        Some(Json::Str(_)) => Err(Rejection::field(
            Reason::InvalidIdentifier,
            field.name(),
            format!("{} is longer than {MAX_ID_BYTES} bytes", field.name()),
        )),
        Some(other) => Err(wrong_type(field, "a string", other)),
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

/// Whether `text` is an RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, with
/// real calendar days (leap years included) and a leap second allowed.
pub fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() < 20 || b.len() > 64 {
        return false;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let mut value = 0u32;
        for &byte in b.get(range)? {
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(byte - b'0');
        }
        Some(value)
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if count == 0 {
            return false;
        }
        rest = &fraction[count..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let all_digits = [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit());
            all_digits
                && (h1 - b'0') * 10 + (h2 - b'0') <= 23
                && (m1 - b'0') * 10 + (m2 - b'0') <= 59
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
