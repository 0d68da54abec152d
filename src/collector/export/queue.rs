//! Delivery `bestEffort`: the producer is answered before the export, and the events wait in a
//! bounded in-memory queue that one task empties in export requests of at most `maxBatchEvents`,
//! retrying a batch while the endpoint is unreachable, slow or answers a retryable status.
//!
//! Nothing is lost silently: every event that leaves the queue without the endpoint's acceptance
//! is counted in `cx_export_dropped_events_total{reason}` ([`DropReason`]) and logged (without
//! its content). Shutdown flushes the queue within the grace period; what is left then is dropped
//! and counted. A crash or an OOM-kill loses the queue uncounted: that is what `guaranteed` is
//! for.
//!
//! The bookkeeping ([`Queue`], [`retry_delay`]) is pure; the task is the shell around it.

use std::collections::VecDeque;
use std::time::Duration;

use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::response::Failure;

/// Longest wait before a failed batch is sent again, in seconds (an endpoint's longer
/// `Retry-After` is shortened to it).
pub const MAX_RETRY_DELAY_SECONDS: u32 = 30;
/// Shortest time between two warnings about dropped events.
pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Why `bestEffort` events were dropped: a closed set, the `reason` label of
/// `cx_export_dropped_events_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The queue was full when the event arrived.
    QueueFull,
    /// The endpoint refused the batch holding it for good (a status that is not retryable, a
    /// partial success, an answer that is not OTLP).
    Rejected,
    /// The grace period ended before the batch holding it was accepted.
    Shutdown,
}

impl DropReason {
    /// Every reason, so each has a zero series from the start.
    pub const ALL: [DropReason; 3] = [
        DropReason::QueueFull,
        DropReason::Rejected,
        DropReason::Shutdown,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::Shutdown => "shutdown",
        }
    }
}

/// The queue's contents: records waiting, and how many of the batch being sent are still
/// unresolved. Both count against the capacity.
#[derive(Debug, Default)]
pub struct Queue {
    waiting: VecDeque<LogRecord>,
    sending: usize,
    /// Set by the shutdown flush: the task sends what is left without lingering, then stops.
    pub closing: bool,
}

impl Queue {
    /// Queues what fits of `records` under `capacity` (waiting and sending together) and returns
    /// how many did not fit: those are dropped.
    pub fn push(&mut self, records: Vec<LogRecord>, capacity: usize) -> usize {
        let room = capacity.saturating_sub(self.waiting.len() + self.sending);
        let offered = records.len();
        self.waiting.extend(records.into_iter().take(room));
        offered.saturating_sub(room)
    }

    /// Takes the next batch, at most `max` records, which stays counted until [`Queue::resolved`].
    pub fn take(&mut self, max: usize) -> Vec<LogRecord> {
        let count = self.waiting.len().min(max);
        self.sending += count;
        self.waiting.drain(..count).collect()
    }

    /// The batch taken last was accepted or dropped.
    pub fn resolved(&mut self, count: usize) {
        self.sending = self.sending.saturating_sub(count);
    }

    /// Records waiting, not yet in a batch.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Events waiting or being sent.
    pub fn held(&self) -> usize {
        self.waiting.len() + self.sending
    }

    /// Everything still in the queue (waiting and sending), emptied: what a shutdown drops.
    pub fn abandon(&mut self) -> usize {
        let left = self.waiting.len() + self.sending;
        self.waiting.clear();
        self.sending = 0;
        left
    }
}

/// How long to wait before sending a batch again after `failure` (retryable): the endpoint's
/// `Retry-After` (or the default second), at most [`MAX_RETRY_DELAY_SECONDS`].
pub fn retry_delay(failure: &Failure) -> Duration {
    Duration::from_secs(u64::from(
        failure
            .retry_after_seconds
            .clamp(1, MAX_RETRY_DELAY_SECONDS),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::response::FailureReason;
    use super::*;

    fn records(count: usize) -> Vec<LogRecord> {
        (0..count)
            .map(|i| LogRecord {
                time_unix_nano: i as u64,
                ..LogRecord::default()
            })
            .collect()
    }

    #[test]
    fn the_capacity_counts_waiting_and_sending_records() {
        let mut queue = Queue::default();
        assert_eq!(queue.push(records(3), 5), 0);
        let batch = queue.take(2);
        assert_eq!(
            batch.iter().map(|r| r.time_unix_nano).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(queue.waiting(), 1);
        // 1 waiting + 2 sending: room for 2 of 4.
        assert_eq!(queue.push(records(4), 5), 2);
        assert_eq!(queue.waiting(), 3);
        queue.resolved(2);
        assert_eq!(queue.push(records(3), 5), 1);
        let batch = queue.take(10);
        assert_eq!(
            batch.iter().map(|r| r.time_unix_nano).collect::<Vec<_>>(),
            [2, 0, 1, 0, 1]
        );
        assert_eq!(queue.waiting(), 0);
        assert_eq!(queue.abandon(), 5);
        assert_eq!(queue.push(records(1), 5), 0);
        assert_eq!(queue.abandon(), 1);
        assert_eq!(queue.abandon(), 0);
    }

    #[test]
    fn retries_follow_retry_after_within_bounds() {
        let failure = |seconds| Failure {
            reason: FailureReason::Throttled,
            retryable: true,
            retry_after_seconds: seconds,
        };
        assert_eq!(retry_delay(&failure(7)), Duration::from_secs(7));
        assert_eq!(retry_delay(&failure(0)), Duration::from_secs(1));
        assert_eq!(retry_delay(&failure(300)), Duration::from_secs(30));
        assert_eq!(
            retry_delay(&Failure::transient(FailureReason::Unreachable)),
            Duration::from_secs(1)
        );
        let labels: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), DropReason::ALL.len());
    }
}
