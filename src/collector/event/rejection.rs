//! Why an event or a request is refused: a closed set of reasons (a metric label) and a message
//! a producer can act on.

use std::borrow::Cow;
use std::fmt;

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
    /// `comment` longer than the touchpoint's `maxCommentBytes` (422).
    CommentTooLong,
    /// `comment` with a control character other than newline and tab (422).
    InvalidComment,
    /// `language` is not a BCP 47 language tag (422).
    InvalidLanguage,
    /// `eventId` empty, longer than 128 bytes, or not printable ASCII without spaces (422).
    InvalidEventId,
    /// The collector has no room for the request now: connection reserve or body memory budget
    /// exhausted, or no batch parser free (503 with `Retry-After`).
    Overloaded,
    /// The collector is shutting down and takes no new events; another replica does (503 with
    /// `Retry-After`).
    ShuttingDown,
    /// The export endpoint did not accept the events (down, slow, refusing): nothing of the
    /// request was acknowledged or counted (503 with `Retry-After`).
    ExportUnavailable,
}

impl Reason {
    /// Every reason, so metrics can pre-register a zero for each.
    pub const ALL: [Reason; 26] = [
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
        Reason::CommentTooLong,
        Reason::InvalidComment,
        Reason::InvalidLanguage,
        Reason::InvalidEventId,
        Reason::Overloaded,
        Reason::ShuttingDown,
        Reason::ExportUnavailable,
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
            Reason::CommentTooLong => "comment_too_long",
            Reason::InvalidComment => "invalid_comment",
            Reason::InvalidLanguage => "invalid_language",
            Reason::InvalidEventId => "invalid_event_id",
            Reason::Overloaded => "overloaded",
            Reason::ShuttingDown => "shutting_down",
            Reason::ExportUnavailable => "export_unavailable",
        }
    }

    /// Position in [`Reason::ALL`], for array-indexed counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the refusal is about the collector's state rather than the request: the client
    /// should retry the same request later (`Retry-After`).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Reason::Overloaded | Reason::ShuttingDown | Reason::ExportUnavailable
        )
    }

    /// The HTTP status a request refused for this reason gets.
    pub fn http_status(self) -> u16 {
        match self {
            Reason::Malformed => 400,
            Reason::Unauthorized => 401,
            Reason::Timeout => 408,
            Reason::TooLarge => 413,
            Reason::UnsupportedMediaType => 415,
            Reason::Overloaded | Reason::ShuttingDown | Reason::ExportUnavailable => 503,
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
