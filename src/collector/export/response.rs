//! What an OTLP/HTTP answer means for the events of the request (OTLP specification, "OTLP/HTTP
//! Response"). Pure.
//!
//! - 2xx: accepted, unless its `partial_success` rejected records: the answer does not say which,
//!   so no event of the request counts as exported (their producers retry, at least once);
//! - 429, 502, 503, 504: retryable, after the endpoint's `Retry-After` when it sends seconds;
//! - any other status: permanent for this request (a misconfiguration to fix: endpoint, token).
//!
//! The collector does not retry by itself: the producer still holds the event and is answered
//! 503 with `Retry-After`, so nothing waits in the collector's memory.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;

/// Longest `Retry-After` passed on to producers, in seconds.
pub const MAX_RETRY_AFTER_SECONDS: u32 = 300;
/// `Retry-After` for a retryable failure without one from the endpoint, in seconds.
pub const DEFAULT_RETRY_AFTER_SECONDS: u32 = 1;
/// `Retry-After` for a permanent failure (someone has to fix the configuration), in seconds.
pub const PERMANENT_RETRY_AFTER_SECONDS: u32 = 30;

/// Why an export request failed: a closed set, the `reason` label of `cx_export_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No connection to the endpoint.
    Unreachable,
    /// No answer within the timeout.
    Timeout,
    /// 429: the endpoint asks to slow down.
    Throttled,
    /// 502, 503, 504: the endpoint or what is behind it is unavailable.
    Unavailable,
    /// Another 4xx: the endpoint refuses the request (token, path, size).
    Rejected,
    /// Another 5xx.
    ServerError,
    /// 2xx with rejected records (OTLP partial success).
    PartialSuccess,
    /// A 2xx whose body is not an OTLP answer.
    BadResponse,
    /// The collector's export queue is full: more events wait than it may hold.
    QueueFull,
}

impl FailureReason {
    /// Every reason, so each has a zero series from the start.
    pub const ALL: [FailureReason; 9] = [
        FailureReason::Unreachable,
        FailureReason::Timeout,
        FailureReason::Throttled,
        FailureReason::Unavailable,
        FailureReason::Rejected,
        FailureReason::ServerError,
        FailureReason::PartialSuccess,
        FailureReason::BadResponse,
        FailureReason::QueueFull,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Unreachable => "unreachable",
            FailureReason::Timeout => "timeout",
            FailureReason::Throttled => "throttled",
            FailureReason::Unavailable => "unavailable",
            FailureReason::Rejected => "rejected",
            FailureReason::ServerError => "server_error",
            FailureReason::PartialSuccess => "partial_success",
            FailureReason::BadResponse => "bad_response",
            FailureReason::QueueFull => "queue_full",
        }
    }
}

/// A failed export request, as its events' producers are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Why.
    pub reason: FailureReason,
    /// Whether the same request may succeed later (OTLP's retryable statuses, transport errors).
    pub retryable: bool,
    /// Seconds the producers are told to wait.
    pub retry_after_seconds: u32,
}

impl Failure {
    /// A failure of the transport (no connection, no answer in time, full queue): retryable.
    pub fn transient(reason: FailureReason) -> Failure {
        Failure {
            reason,
            retryable: true,
            retry_after_seconds: DEFAULT_RETRY_AFTER_SECONDS,
        }
    }
}

/// The meaning of an answer: `Ok` when every record of the request was accepted.
pub fn classify(status: u16, retry_after: Option<&str>, body: &[u8]) -> Result<(), Failure> {
    match status {
        200..=299 => {
            // An empty body is an empty (fully successful) message.
            let answer = ExportLogsServiceResponse::decode(body).map_err(|_| Failure {
                reason: FailureReason::BadResponse,
                retryable: false,
                retry_after_seconds: PERMANENT_RETRY_AFTER_SECONDS,
            })?;
            match answer.partial_success {
                Some(partial) if partial.rejected_log_records > 0 => Err(Failure {
                    reason: FailureReason::PartialSuccess,
                    retryable: false,
                    retry_after_seconds: DEFAULT_RETRY_AFTER_SECONDS,
                }),
                _ => Ok(()),
            }
        }
        429 | 502 | 503 | 504 => Err(Failure {
            reason: if status == 429 {
                FailureReason::Throttled
            } else {
                FailureReason::Unavailable
            },
            retryable: true,
            retry_after_seconds: retry_after
                .and_then(retry_after_seconds)
                .unwrap_or(DEFAULT_RETRY_AFTER_SECONDS),
        }),
        400..=499 => Err(Failure {
            reason: FailureReason::Rejected,
            retryable: false,
            retry_after_seconds: PERMANENT_RETRY_AFTER_SECONDS,
        }),
        _ => Err(Failure {
            reason: FailureReason::ServerError,
            retryable: false,
            retry_after_seconds: PERMANENT_RETRY_AFTER_SECONDS,
        }),
    }
}

/// A `Retry-After` of delay-seconds, clamped to 1..=[`MAX_RETRY_AFTER_SECONDS`]; an HTTP date
/// is not followed (`None`).
pub fn retry_after_seconds(value: &str) -> Option<u32> {
    let seconds: u64 = value.trim().parse().ok()?;
    Some(seconds.clamp(1, u64::from(MAX_RETRY_AFTER_SECONDS)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;

    fn answer(rejected: i64, message: &str) -> Vec<u8> {
        ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: message.into(),
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn success_partial_success_and_bad_bodies() {
        assert_eq!(classify(200, None, b""), Ok(()));
        assert_eq!(classify(200, None, &answer(0, "")), Ok(()));
        // A warning without rejected records is a success.
        assert_eq!(classify(200, None, &answer(0, "deprecated field")), Ok(()));
        let partial = classify(200, None, &answer(2, "bad records")).unwrap_err();
        assert_eq!(partial.reason, FailureReason::PartialSuccess);
        assert!(!partial.retryable);
        let bad = classify(200, None, b"\xff\xff\xff").unwrap_err();
        assert_eq!(bad.reason, FailureReason::BadResponse);
    }

    #[test]
    fn retryable_statuses_follow_retry_after() {
        let throttled = classify(429, Some("7"), b"").unwrap_err();
        assert_eq!(
            throttled,
            Failure {
                reason: FailureReason::Throttled,
                retryable: true,
                retry_after_seconds: 7
            }
        );
        for status in [502, 503, 504] {
            let failure = classify(status, None, b"").unwrap_err();
            assert_eq!(failure.reason, FailureReason::Unavailable);
            assert!(failure.retryable);
            assert_eq!(failure.retry_after_seconds, DEFAULT_RETRY_AFTER_SECONDS);
        }
        assert_eq!(
            classify(503, Some("100000"), b"")
                .unwrap_err()
                .retry_after_seconds,
            MAX_RETRY_AFTER_SECONDS
        );
        // An HTTP date is not followed; zero still waits a second.
        assert_eq!(
            classify(503, Some("Wed, 21 Oct 2026 07:28:00 GMT"), b"")
                .unwrap_err()
                .retry_after_seconds,
            DEFAULT_RETRY_AFTER_SECONDS
        );
        assert_eq!(retry_after_seconds("0"), Some(1));
    }

    #[test]
    fn other_statuses_are_permanent() {
        for (status, reason) in [
            (400, FailureReason::Rejected),
            (401, FailureReason::Rejected),
            (404, FailureReason::Rejected),
            (413, FailureReason::Rejected),
            (500, FailureReason::ServerError),
            (501, FailureReason::ServerError),
        ] {
            let failure = classify(status, Some("5"), b"").unwrap_err();
            assert_eq!(failure.reason, reason, "{status}");
            assert!(!failure.retryable, "{status}");
            assert_eq!(failure.retry_after_seconds, PERMANENT_RETRY_AFTER_SECONDS);
        }
        let labels: std::collections::HashSet<_> =
            FailureReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), FailureReason::ALL.len());
    }
}
