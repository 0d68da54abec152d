//! Kubernetes API-convention conditions: one per type, `lastTransitionTime` kept while the status
//! does not change, so an unchanged world computes a byte-identical status (and writes nothing).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// What a controller concludes for one condition type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Condition type, e.g. Ready.
    pub type_: &'static str,
    /// True, False or Unknown.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Verdict {
    /// A condition that holds.
    pub fn yes(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn no(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The conditions after applying `verdicts` to `existing`: a condition whose status is unchanged
/// keeps its `lastTransitionTime`; a changed one gets `now`. Conditions of other types are kept.
pub fn merge(
    existing: &[Condition],
    verdicts: &[Verdict],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !verdicts.iter().any(|v| v.type_ == c.type_))
        .cloned()
        .collect();
    for v in verdicts {
        let status = if v.status { "True" } else { "False" };
        let previous = existing.iter().find(|c| c.type_ == v.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => now.clone(),
        };
        out.push(Condition {
            type_: v.type_.to_string(),
            status: status.to_string(),
            reason: v.reason.clone(),
            message: v.message.clone(),
            last_transition_time,
            observed_generation: generation,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Whether condition `type_` is True in `conditions`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t0 = time("2026-01-01T00:00:00Z");
        let t1 = time("2026-01-02T00:00:00Z");
        let first = merge(
            &[],
            &[Verdict::yes("Ready", "Available", "ok")],
            Some(1),
            &t0,
        );
        assert_eq!(first[0].last_transition_time, t0);
        let same = merge(
            &first,
            &[Verdict::yes("Ready", "Available", "still ok")],
            Some(2),
            &t1,
        );
        assert_eq!(
            same[0].last_transition_time, t0,
            "status unchanged keeps the time"
        );
        assert_eq!(same[0].message, "still ok");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(
            &same,
            &[Verdict::no("Ready", "Unavailable", "down")],
            Some(2),
            &t1,
        );
        assert_eq!(flipped[0].last_transition_time, t1);
        assert_eq!(flipped[0].status, "False");
    }

    #[test]
    fn other_types_are_kept_and_order_is_stable() {
        let t0 = time("2026-01-01T00:00:00Z");
        let both = merge(
            &[],
            &[
                Verdict::yes("Ready", "A", ""),
                Verdict::no("ChannelResolved", "B", ""),
            ],
            None,
            &t0,
        );
        let types: Vec<&str> = both.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["ChannelResolved", "Ready"]);
        let only_ready = merge(&both, &[Verdict::yes("Ready", "A", "")], None, &t0);
        assert_eq!(only_ready.len(), 2);
        assert!(is_true(&only_ready, "Ready"));
        assert!(!is_true(&only_ready, "ChannelResolved"));
    }
}
