//! Feedback events: the JSON wire format and its validation against the touchpoint's configuration.
//!
//! This is the collector's functional core: bytes in, a validated [`Event`] or a [`Rejection`]
//! out, with no I/O, no allocation on the accepted path for ordinary input, and no panic on any
//! input (it is fuzzed, see `fuzz/`). By concern:
//! - [`rejection`]: why something is refused ([`Reason`], a metric label, and [`Rejection`]);
//! - [`schema`]: the touchpoint's configuration compiled into arrays indexed by enum;
//! - [`wire`]: decoding, a permissive first pass that only fails on JSON syntax;
//! - [`validate`]: the decoded object against the schema, one precise rejection per rule;
//! - [`timestamp`]: RFC 3339 date-times;
//! - [`batch`]: NDJSON and JSON-array batches;
//! - this module: the [`Event`] and [`parse_event`].
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
//! - `outcome`: one of the touchpoint's declared outcomes: the builtin ones it lists
//!   (`completed`, `abandoned`, `error`, `resolved-first-contact`, `resolved`, `unresolved`,
//!   `escalated`) or one of its `customOutcomes` (`failed-attempt`);
//! - `waitSeconds`, `handleSeconds`: optional numbers of seconds, finite, 0 to one year, and only
//!   for timings the touchpoint declares (`wait`, `handle`).
//!
//! Both kinds may also carry:
//! - `comment`: what the customer wrote, UTF-8, at most `maxCommentBytes` bytes (default
//!   [`DEFAULT_MAX_COMMENT_BYTES`], a longer one is refused with `comment_too_long`); control
//!   characters other than `\n` and `\t` are refused (`invalid_comment`), and an empty or
//!   whitespace-only comment is no comment. It is kept on the [`Event`] for the export, counted in
//!   `cx_feedback_comments_total` and matched against the declared themes, and it never becomes a
//!   label, a log line or part of a rejection;
//! - `language`: the comment's BCP 47 language tag (`it`, `en-GB`, `zh-Hant-TW`): 1 to 35 ASCII
//!   letters, digits and hyphens, subtags of 1 to 8 characters, the first one letters only;
//! - `eventId`: the producer's idempotency key, 1 to [`MAX_EVENT_ID_BYTES`] bytes of printable
//!   ASCII without spaces. Absent, the collector assigns a random 128-bit one ([`EventId`]);
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
use std::cell::Cell;
use std::fmt;

use serde::de::DeserializeSeed;

use crate::api::SurveyMetric;

pub mod batch;
pub mod rejection;
pub mod schema;
pub mod timestamp;
pub mod validate;
pub mod wire;

pub use batch::{NdjsonStream, parse_json_array, parse_ndjson};
pub use rejection::{Reason, Rejection};
pub use schema::{
    ALL_METRICS, ALL_TIMINGS, EventSchema, InvalidConfig, MAX_EVENT_BYTES, METRIC_COUNT,
    MIN_EVENT_BYTES, OUTCOME_COUNT, OUTCOME_SLOTS, OutcomeId, TIMING_COUNT, metric_index,
    outcome_index, timing_index,
};
pub use timestamp::is_rfc3339;
pub use validate::is_language_tag;

/// Longest accepted `customerId` / `sessionId`, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest accepted `eventId`, in bytes.
pub const MAX_EVENT_ID_BYTES: usize = 128;
/// Longest accepted `language` tag, in bytes.
pub const MAX_LANGUAGE_BYTES: usize = 35;
/// `maxCommentBytes` when the touchpoint sets none.
pub const DEFAULT_MAX_COMMENT_BYTES: u32 = 4096;
/// Largest accepted `maxCommentBytes`.
pub const MAX_COMMENT_BYTES: u32 = 65536;
/// Longest accepted interaction duration, in seconds (one year): anything longer is a unit
/// mistake, and one absurd value would make the histogram's `_sum` meaningless forever.
pub const MAX_DURATION_SECONDS: f64 = 365.0 * 24.0 * 3600.0;
/// Longest field name echoed back in an `unknown_field` rejection.
const MAX_ECHOED_FIELD_CHARS: usize = 64;

/// A validated feedback event: what becomes a metric, and what the customer wrote.
///
/// Strings borrow from the request body when they have no JSON escape.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    /// What becomes a metric.
    pub signal: Signal,
    /// What the customer wrote: never empty or whitespace-only, at most `maxCommentBytes`, no
    /// control character but `\n` and `\t`.
    pub comment: Option<Cow<'a, str>>,
    /// The BCP 47 tag of the comment's language, as sent.
    pub language: Option<Cow<'a, str>>,
    /// The idempotency key of the event.
    pub id: EventId<'a>,
    /// The producer's customer identifier, as sent (for the export only).
    pub customer_id: Option<Cow<'a, str>>,
    /// The producer's session identifier, as sent (for the export only).
    pub session_id: Option<Cow<'a, str>>,
    /// When the event happened, an RFC 3339 date-time as sent.
    pub timestamp: Option<Cow<'a, str>>,
}

impl Event<'_> {
    /// The event with every string owned, to outlive the request body.
    pub fn into_owned(self) -> Event<'static> {
        Event {
            signal: self.signal,
            comment: self.comment.map(|c| Cow::Owned(c.into_owned())),
            language: self.language.map(|l| Cow::Owned(l.into_owned())),
            id: match self.id {
                EventId::Given(id) => EventId::Given(Cow::Owned(id.into_owned())),
                EventId::Assigned(id) => EventId::Assigned(id),
            },
            customer_id: self.customer_id.map(|c| Cow::Owned(c.into_owned())),
            session_id: self.session_id.map(|c| Cow::Owned(c.into_owned())),
            timestamp: self.timestamp.map(|c| Cow::Owned(c.into_owned())),
        }
    }
}

impl From<Signal> for Event<'static> {
    /// An event without comment or language, with an assigned id.
    fn from(signal: Signal) -> Self {
        Event {
            signal,
            comment: None,
            language: None,
            id: EventId::assign(),
            customer_id: None,
            session_id: None,
            timestamp: None,
        }
    }
}

/// The idempotency key of an event: the producer's `eventId`, or one the collector assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventId<'a> {
    /// The producer's `eventId`.
    Given(Cow<'a, str>),
    /// A random 128-bit key, shown as 32 lower-case hex digits (drawn from a per-thread
    /// generator, as cheap as an add: not a secret, only unique).
    Assigned(u128),
}

impl EventId<'_> {
    /// A new random key.
    pub fn assign() -> EventId<'static> {
        EventId::Assigned(fastrand::u128(..))
    }
}

impl fmt::Display for EventId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventId::Given(id) => f.write_str(id),
            EventId::Assigned(id) => write!(f, "{id:032x}"),
        }
    }
}

/// What an event counts: a survey answer or an interaction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Signal {
    /// An answer to a survey question.
    Survey {
        /// The question asked.
        metric: SurveyMetric,
        /// The answer, within the metric's range (0..=10 at most).
        score: u8,
    },
    /// How an interaction ended and how long it took.
    Interaction {
        /// How it ended: one of the touchpoint's builtin or custom outcomes.
        outcome: OutcomeId,
        /// Seconds until the first response, if measured.
        wait_seconds: Option<f64>,
        /// Seconds of active handling, if measured.
        handle_seconds: Option<f64>,
    },
}

/// Parses and validates one event. Pure: the same bytes and schema always give the same answer.
///
/// (An absent `eventId` is assigned at random: the only part of the answer that varies.)
pub fn parse_event<'a>(bytes: &'a [u8], schema: &EventSchema) -> Result<Event<'a>, Rejection> {
    if bytes.len() > schema.max_event_bytes() {
        return Err(Rejection::whole(
            Reason::TooLarge,
            format!(
                "the event is {} bytes, more than the {} allowed",
                bytes.len(),
                schema.max_event_bytes()
            ),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let reading = Cell::new(None);
    let top = wire::TopVisitor {
        reading: Some(&reading),
    }
    .deserialize(&mut deserializer)
    .map_err(|error| match reading.get() {
        // A value that is not JSON, invalid UTF-8 in a string included: its field is named (the
        // parser's message names a position, never the text).
        Some(field) => Rejection::field(
            Reason::Malformed,
            field.name(),
            format!("malformed JSON in {}: {error}", field.name()),
        ),
        None => malformed(error),
    })?;
    deserializer.end().map_err(malformed)?;
    validate::validate(top, schema)
}

fn malformed(error: serde_json::Error) -> Rejection {
    Rejection::whole(Reason::Malformed, format!("malformed JSON: {error}"))
}

#[cfg(test)]
mod tests;
