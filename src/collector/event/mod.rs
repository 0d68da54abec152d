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

use serde::Deserialize;

use crate::api::{Outcome, SurveyMetric};

pub mod batch;
pub mod rejection;
pub mod schema;
pub mod timestamp;
pub mod validate;
pub mod wire;

pub use batch::{parse_json_array, parse_ndjson};
pub use rejection::{Reason, Rejection};
pub use schema::{
    ALL_METRICS, ALL_TIMINGS, EventSchema, InvalidConfig, MAX_EVENT_BYTES, METRIC_COUNT,
    MIN_EVENT_BYTES, OUTCOME_COUNT, TIMING_COUNT, metric_index, outcome_index, timing_index,
};
pub use timestamp::is_rfc3339;

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

/// Parses and validates one event. Pure: the same bytes and schema always give the same answer.
pub fn parse_event(bytes: &[u8], schema: &EventSchema) -> Result<Event, Rejection> {
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
    let top = wire::Top::deserialize(&mut deserializer).map_err(malformed)?;
    deserializer.end().map_err(malformed)?;
    validate::validate(top, schema)
}

fn malformed(error: serde_json::Error) -> Rejection {
    Rejection::whole(Reason::Malformed, format!("malformed JSON: {error}"))
}

#[cfg(test)]
mod tests;
