//! Gap math and state: a measurement (or why there is none) in, the next status out. Pure.
//!
//! Conventions (DESIGN.md §2):
//! - `gap > 0` is a shortfall: `target − value` for `atLeast`, `value − target` for `atMost`;
//! - `gapChange` is this gap minus the previous one: `> 0` means the experience got worse;
//! - `Met` when `gap ≤ 0`; otherwise `AtRisk` while the value has not crossed `warning`
//!   (a value exactly at `warning` is still AtRisk), `Breached` past it, or on any miss when no
//!   warning is set;
//! - `InsufficientData` when the window holds fewer than `minSamples` samples: never a silent
//!   pass, whatever the value;
//! - `Unknown` when there is no number to judge: Prometheus could not answer, the queries found no
//!   series, or the value is not a number.
//!
//! `value` is the KPI over its window; `previousValue` the KPI over the *previous cycle*, the
//! window before it (the previous 7 days of a `7d` window, the previous month of a
//! `calendar-month` one; see [`super::window::WindowSpec::previous`]), measured from Prometheus at
//! the same instant — not the value of the previous evaluation tick, which would make `gapChange`
//! move every interval for no new feedback. `gapChange` = gap − the previous cycle's gap, computed
//! only when both windows hold at least `minSamples` samples (a change between two windows too
//! small for a verdict is noise). With no new feedback, nothing changes, and nothing is written.
//!
//! A cycle that measures no number (Unknown, or no answer in the window) keeps the last measured
//! `value` and `gap`, so a Prometheus outage does not erase what the KPI last showed. Numbers are
//! rounded to [`DECIMALS`] decimals: a KPI reads like "NPS 42.8571", and the noise of
//! floating-point sums never causes a status write.

use crate::api::{Direction, ExperienceKPIStatus, KpiState, Objective};

use super::KpiError;

/// Decimals kept in value, gap and gap change.
pub const DECIMALS: i32 = 4;

/// How many samples stand behind a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SampleCount {
    /// The samples query returned this number.
    Counted(f64),
    /// The samples query found no series at all: the collectors are not (yet) scraped.
    NoSeries,
    /// The indicator has no samples query (custom PromQL without `samplesPromql`).
    NotDefined,
}

/// What Prometheus said about a KPI.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// The value query's number; `None` when it returned no series. May be NaN (0/0).
    pub value: Option<f64>,
    /// The samples behind it.
    pub samples: SampleCount,
    /// The same over the previous cycle; `None` when it could not be measured.
    pub previous: Option<Reading>,
    /// Where a builtin indicator's counts came from, per cycle; `None` for custom PromQL.
    pub sources: Option<CountSources>,
}

/// Where a builtin KPI's counts came from, in its current and its previous cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountSources {
    /// The current cycle.
    pub current: CountSource,
    /// The previous cycle.
    pub previous: CountSource,
}

/// Where one cycle's counts came from ([`super::promql::Counting`]), and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountSource {
    /// The recorded 5-minute increments, which cover the window.
    Recorded,
    /// The raw counters: no step of the window is recorded (the rules are not loaded).
    NotRecorded,
    /// The raw counters: some steps of the window are recorded, not all (the rules were loaded
    /// less than a window ago, or evaluations were missed).
    PartlyRecorded,
    /// The raw counters: Prometheus did not say how many steps are recorded.
    CoverageUnknown,
}

/// A KPI's value and samples over one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// As [`Measurement::value`].
    pub value: Option<f64>,
    /// As [`Measurement::samples`].
    pub samples: SampleCount,
}

/// The next status of a KPI, with the reason for its state.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Last measured value.
    pub value: Option<f64>,
    /// Value over the previous cycle (the previous window).
    pub previous_value: Option<f64>,
    /// Shortfall to target (`> 0` is worse than target).
    pub gap: Option<f64>,
    /// This gap minus the previous cycle's (both windows with at least `minSamples` samples).
    pub gap_change: Option<f64>,
    /// Samples in the window.
    pub samples: Option<i64>,
    /// The verdict.
    pub state: KpiState,
    /// CamelCase reason of the verdict: `Evaluated`, `InsufficientData`, `NoSampleCount`,
    /// `NoData`, `NotANumber`, or a [`KpiError::reason`].
    pub reason: &'static str,
    /// The verdict in words, for conditions and Events.
    pub message: String,
}

/// Judges a measurement against the objective. `previous` is the current status (`None` for a
/// new KPI, or to start afresh after the spec changed): its figures are kept when nothing could
/// be measured.
pub fn evaluate(
    objective: &Objective,
    min_samples: i64,
    previous: Option<&ExperienceKPIStatus>,
    measured: &Result<Measurement, KpiError>,
) -> Evaluation {
    let kept = |state, reason, message, samples| Evaluation {
        value: previous.and_then(|p| p.value),
        previous_value: previous.and_then(|p| p.previous_value),
        gap: previous.and_then(|p| p.gap),
        gap_change: previous.and_then(|p| p.gap_change),
        samples,
        state,
        reason,
        message,
    };
    let measurement = match measured {
        Ok(m) => m,
        Err(error) => {
            return kept(
                KpiState::Unknown,
                error.reason(),
                error.to_string(),
                previous.and_then(|p| p.samples),
            );
        }
    };
    let samples = match measurement.samples {
        SampleCount::Counted(n) if n.is_finite() => Some(round_count(n)),
        SampleCount::Counted(_) => Some(0),
        SampleCount::NoSeries => {
            return kept(
                KpiState::Unknown,
                "NoData",
                "Prometheus has no series for the touchpoints in scope: are their collectors running and scraped?".into(),
                None,
            );
        }
        SampleCount::NotDefined => None,
    };
    let enough = |samples: Option<i64>| samples.map_or(min_samples <= 0, |n| n >= min_samples);
    let before = measurement.previous.map(|p| {
        let samples = match p.samples {
            SampleCount::Counted(n) if n.is_finite() => Some(round_count(n)),
            SampleCount::Counted(_) => Some(0),
            SampleCount::NoSeries => Some(0),
            SampleCount::NotDefined => None,
        };
        (
            p.value.filter(|v| v.is_finite()).map(round),
            enough(samples),
        )
    });
    let previous_value = before.and_then(|(v, _)| v);
    let value = measurement.value.filter(|v| v.is_finite()).map(round);
    let Some(value) = value else {
        // No number: keep the last one, say why.
        let (state, reason, message) = match (samples, measurement.value) {
            (Some(n), _) if n < min_samples => insufficient(n, min_samples),
            (_, None) => (
                KpiState::Unknown,
                "NoData",
                "the value query returned no series".to_owned(),
            ),
            (_, Some(v)) => (
                KpiState::Unknown,
                "NotANumber",
                format!(
                    "the value query returned {v} (a division by zero when nothing was counted)"
                ),
            ),
        };
        if state == KpiState::Unknown {
            return kept(state, reason, message, samples);
        }
        // No answer in the window: the last value stays, the previous cycle is measured.
        return Evaluation {
            previous_value,
            gap_change: None,
            ..kept(state, reason, message, samples)
        };
    };

    let gap = round(gap(objective, value));
    let previous_gap = match before {
        Some((Some(v), true)) if enough(samples) => Some(round(self::gap(objective, v))),
        _ => None,
    };
    let (state, reason, message) = match samples {
        Some(n) if n < min_samples => insufficient(n, min_samples),
        None if min_samples > 0 => (
            KpiState::InsufficientData,
            "NoSampleCount",
            format!(
                "minSamples is {min_samples} but the indicator has no samplesPromql to count them: set samplesPromql, or minSamples: 0 to accept the value without a sample count"
            ),
        ),
        _ => {
            let state = state_of(objective, value);
            (state, "Evaluated", verdict(objective, value, gap, state))
        }
    };
    Evaluation {
        value: Some(value),
        previous_value,
        gap: Some(gap),
        gap_change: previous_gap.map(|g| round(gap - g)),
        samples,
        state,
        reason,
        message,
    }
}

fn insufficient(samples: i64, min_samples: i64) -> (KpiState, &'static str, String) {
    (
        KpiState::InsufficientData,
        "InsufficientData",
        format!(
            "{samples} samples in the window, fewer than minSamples ({min_samples}): no verdict"
        ),
    )
}

fn verdict(objective: &Objective, value: f64, gap: f64, state: KpiState) -> String {
    let side = match objective.direction {
        Direction::AtLeast => "at least",
        Direction::AtMost => "at most",
    };
    let warning = objective
        .warning
        .map(|w| format!(", warning {w}"))
        .unwrap_or_default();
    format!(
        "value {value}, target {side} {}{warning}: gap {gap}, {}",
        objective.target,
        state.as_str()
    )
}

/// Shortfall of `value` to the target: `> 0` is worse than target.
pub fn gap(objective: &Objective, value: f64) -> f64 {
    match objective.direction {
        Direction::AtLeast => objective.target - value,
        Direction::AtMost => value - objective.target,
    }
}

/// Met, AtRisk or Breached for a value (see the module documentation).
pub fn state_of(objective: &Objective, value: f64) -> KpiState {
    if gap(objective, value) <= 0.0 {
        return KpiState::Met;
    }
    let past_warning = match (objective.direction, objective.warning) {
        (_, None) => true,
        (Direction::AtLeast, Some(w)) => value < w,
        (Direction::AtMost, Some(w)) => value > w,
    };
    if past_warning {
        KpiState::Breached
    } else {
        KpiState::AtRisk
    }
}

/// Rounds to [`DECIMALS`] decimals (and turns `-0` into `0`, so it never shows in a status).
pub fn round(value: f64) -> f64 {
    let scale = 10f64.powi(DECIMALS);
    (value * scale).round() / scale + 0.0
}

/// A sample count as an integer: the exact counts are whole numbers, but `increase()` (a series
/// whose counter reset, or a custom `samplesPromql`) can return fractions.
fn round_count(samples: f64) -> i64 {
    // Saturating conversion: absurd values cannot panic.
    samples.round().max(0.0) as i64
}

impl Evaluation {
    /// The status to write: `base` (the current status: conditions, observedGeneration and
    /// lastEvaluationTime are kept for the controller to update) with this evaluation's figures.
    pub fn to_status(&self, base: Option<&ExperienceKPIStatus>) -> ExperienceKPIStatus {
        let mut status = base.cloned().unwrap_or_default();
        status.value = self.value;
        status.previous_value = self.previous_value;
        status.gap = self.gap;
        status.gap_change = self.gap_change;
        status.samples = self.samples;
        status.state = Some(self.state);
        status
    }
}

/// Whether `new` differs from `old` in anything but `lastEvaluationTime` (and the conditions'
/// `lastTransitionTime`, which only moves when a condition's status does): the status is written
/// only when this is true, so a steady KPI costs no API write.
pub fn status_changed(old: Option<&ExperienceKPIStatus>, new: &ExperienceKPIStatus) -> bool {
    let Some(old) = old else {
        return true;
    };
    let comparable = |s: &ExperienceKPIStatus| {
        let mut s = s.clone();
        s.last_evaluation_time = None;
        for condition in &mut s.conditions {
            condition.last_transition_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            );
        }
        s
    };
    comparable(old) != comparable(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn at_least(target: f64, warning: Option<f64>) -> Objective {
        Objective {
            target,
            direction: Direction::AtLeast,
            warning,
        }
    }

    fn at_most(target: f64, warning: Option<f64>) -> Objective {
        Objective {
            target,
            direction: Direction::AtMost,
            warning,
        }
    }

    fn counted(value: f64, samples: f64) -> Result<Measurement, KpiError> {
        Ok(Measurement {
            value: Some(value),
            samples: SampleCount::Counted(samples),
            previous: None,
            sources: None,
        })
    }

    /// A measurement with its previous cycle's value and samples.
    fn with_previous(
        value: f64,
        samples: f64,
        previous: f64,
        previous_samples: f64,
    ) -> Result<Measurement, KpiError> {
        Ok(Measurement {
            previous: Some(Reading {
                value: Some(previous),
                samples: SampleCount::Counted(previous_samples),
            }),
            ..counted(value, samples).expect("ok")
        })
    }

    #[test]
    fn states_from_table_cases() {
        use KpiState::*;
        let cases: [(Objective, f64, KpiState, f64); 16] = [
            // atLeast 40, warning 30
            (at_least(40.0, Some(30.0)), 45.0, Met, -5.0),
            (at_least(40.0, Some(30.0)), 40.0, Met, 0.0),
            (at_least(40.0, Some(30.0)), 39.9, AtRisk, 0.1),
            (at_least(40.0, Some(30.0)), 30.0, AtRisk, 10.0),
            (at_least(40.0, Some(30.0)), 29.99, Breached, 10.01),
            // atLeast without warning: any miss is a breach
            (at_least(40.0, None), 40.0, Met, 0.0),
            (at_least(40.0, None), 39.0, Breached, 1.0),
            // atMost 20, warning 25
            (at_most(20.0, Some(25.0)), 10.0, Met, -10.0),
            (at_most(20.0, Some(25.0)), 20.0, Met, 0.0),
            (at_most(20.0, Some(25.0)), 22.5, AtRisk, 2.5),
            (at_most(20.0, Some(25.0)), 25.0, AtRisk, 5.0),
            (at_most(20.0, Some(25.0)), 25.5, Breached, 5.5),
            (at_most(20.0, None), 20.0001, Breached, 0.0001),
            // warning equal to target: no AtRisk band
            (at_least(40.0, Some(40.0)), 39.0, Breached, 1.0),
            // negative NPS targets
            (at_least(-10.0, Some(-20.0)), -15.0, AtRisk, 5.0),
            // rounding: 39.99999 reads as 40 and meets 40
            (at_least(40.0, None), 39.99999, Met, 0.0),
        ];
        for (objective, value, state, gap) in cases {
            let e = evaluate(&objective, 30, None, &counted(value, 100.0));
            assert_eq!(e.state, state, "{objective:?} value {value}");
            assert_eq!(e.gap, Some(gap), "{objective:?} value {value}");
            assert_eq!(e.reason, "Evaluated");
            assert_eq!(e.samples, Some(100));
            assert_eq!(e.previous_value, None);
            assert_eq!(e.gap_change, None);
        }
    }

    #[test]
    fn previous_value_and_gap_change_come_from_the_previous_window() {
        let objective = at_least(40.0, Some(30.0));
        // This window 42 on 120 answers, the previous one 35 on 100: the gap shrank by 7.
        let e = evaluate(
            &objective,
            30,
            None,
            &with_previous(42.0, 120.0, 35.0, 100.0),
        );
        assert_eq!(e.value, Some(42.0));
        assert_eq!(e.previous_value, Some(35.0));
        assert_eq!(e.gap, Some(-2.0));
        assert_eq!(e.gap_change, Some(-7.0));
        assert_eq!(e.state, KpiState::Met);
        let first = e.to_status(None);

        // The same windows measured again (no new feedback): the same status, nothing to write.
        let again = evaluate(
            &objective,
            30,
            Some(&first),
            &with_previous(42.0, 120.0, 35.0, 100.0),
        )
        .to_status(Some(&first));
        assert!(!status_changed(Some(&first), &again));

        // The previous status plays no part: previousValue is not the last tick's value.
        let third = evaluate(
            &objective,
            30,
            Some(&first),
            &with_previous(33.3333333, 130.0, 40.0, 90.0),
        );
        assert_eq!(third.previous_value, Some(40.0));
        assert_eq!(third.value, Some(33.3333));
        assert_eq!(third.gap, Some(6.6667));
        assert_eq!(third.gap_change, Some(6.6667));
        assert_eq!(third.state, KpiState::AtRisk);
        assert_eq!(
            third.message,
            "value 33.3333, target at least 40, warning 30: gap 6.6667, AtRisk"
        );

        // A previous window with fewer than minSamples answers: its value is shown, but no gap
        // change is computed from it; nor when the current window is short.
        let few = evaluate(
            &objective,
            30,
            None,
            &with_previous(42.0, 120.0, 35.0, 29.0),
        );
        assert_eq!((few.previous_value, few.gap_change), (Some(35.0), None));
        let short = evaluate(
            &objective,
            30,
            None,
            &with_previous(42.0, 20.0, 35.0, 100.0),
        );
        assert_eq!(short.state, KpiState::InsufficientData);
        assert_eq!((short.previous_value, short.gap_change), (Some(35.0), None));
        // No previous data at all (a new touchpoint, or a NaN): no previous value.
        let none = evaluate(
            &objective,
            30,
            None,
            &Ok(Measurement {
                previous: Some(Reading {
                    value: Some(f64::NAN),
                    samples: SampleCount::Counted(0.0),
                }),
                ..counted(42.0, 120.0).expect("ok")
            }),
        );
        assert_eq!((none.previous_value, none.gap_change), (None, None));
    }

    #[test]
    fn too_few_samples_is_insufficient_data_whatever_the_value() {
        let objective = at_most(20.0, None);
        // A perfect value on 29 samples is not a pass.
        let e = evaluate(&objective, 30, None, &counted(0.0, 29.0));
        assert_eq!(e.state, KpiState::InsufficientData);
        assert_eq!(e.reason, "InsufficientData");
        assert_eq!(e.value, Some(0.0), "the value is still reported");
        assert_eq!(e.samples, Some(29));
        assert!(e.message.contains("29 samples"), "{}", e.message);
        // Exactly minSamples is enough; fractional counts from increase() are rounded.
        assert_eq!(
            evaluate(&objective, 30, None, &counted(0.0, 29.6)).state,
            KpiState::Met
        );
        // No answer at all: 0/0 is NaN; the last value stays, the state says why.
        let previous = ExperienceKPIStatus {
            value: Some(12.0),
            gap: Some(-8.0),
            samples: Some(50),
            state: Some(KpiState::Met),
            ..Default::default()
        };
        let e = evaluate(&objective, 30, Some(&previous), &counted(f64::NAN, 0.0));
        assert_eq!(e.state, KpiState::InsufficientData);
        assert_eq!(
            (e.value, e.gap, e.samples),
            (Some(12.0), Some(-8.0), Some(0))
        );
        // minSamples 0 accepts any count, but not a NaN.
        let e = evaluate(&objective, 0, None, &counted(f64::NAN, 0.0));
        assert_eq!((e.state, e.reason), (KpiState::Unknown, "NotANumber"));
    }

    #[test]
    fn custom_promql_without_a_sample_count_needs_min_samples_zero() {
        let objective = at_most(1.0, Some(2.0));
        let measured = Ok(Measurement {
            value: Some(0.5),
            samples: SampleCount::NotDefined,
            previous: None,
            sources: None,
        });
        let e = evaluate(&objective, 30, None, &measured);
        assert_eq!(
            (e.state, e.reason),
            (KpiState::InsufficientData, "NoSampleCount")
        );
        assert!(e.message.contains("samplesPromql"), "{}", e.message);
        assert_eq!(e.samples, None);
        let e = evaluate(&objective, 0, None, &measured);
        assert_eq!((e.state, e.value), (KpiState::Met, Some(0.5)));
    }

    #[test]
    fn unknown_keeps_the_last_measurement_and_says_why() {
        let objective = at_least(40.0, None);
        let previous = ExperienceKPIStatus {
            value: Some(45.0),
            previous_value: Some(44.0),
            gap: Some(-5.0),
            gap_change: Some(-1.0),
            samples: Some(200),
            state: Some(KpiState::Met),
            ..Default::default()
        };
        let cases: [(Result<Measurement, KpiError>, &str, &str); 5] = [
            (
                Err(KpiError::Unavailable("connection refused".into())),
                "PrometheusUnavailable",
                "connection refused",
            ),
            (
                Err(KpiError::Timeout(std::time::Duration::from_secs(10))),
                "PrometheusTimeout",
                "10s",
            ),
            (
                Ok(Measurement {
                    value: None,
                    samples: SampleCount::NoSeries,
                    previous: None,
                    sources: None,
                }),
                "NoData",
                "scraped",
            ),
            (
                Ok(Measurement {
                    value: None,
                    samples: SampleCount::Counted(100.0),
                    previous: None,
                    sources: None,
                }),
                "NoData",
                "no series",
            ),
            (
                Ok(Measurement {
                    value: Some(f64::INFINITY),
                    samples: SampleCount::Counted(100.0),
                    previous: None,
                    sources: None,
                }),
                "NotANumber",
                "inf",
            ),
        ];
        for (measured, reason, needle) in cases {
            let e = evaluate(&objective, 30, Some(&previous), &measured);
            assert_eq!(e.state, KpiState::Unknown, "{reason}");
            assert_eq!(e.reason, reason);
            assert!(e.message.contains(needle), "{}", e.message);
            assert_eq!(
                (e.value, e.previous_value, e.gap, e.gap_change),
                (Some(45.0), Some(44.0), Some(-5.0), Some(-1.0)),
                "{reason}"
            );
        }
        // After the outage, both windows are measured afresh.
        let during = evaluate(
            &objective,
            30,
            Some(&previous),
            &Err(KpiError::Unavailable("down".into())),
        )
        .to_status(Some(&previous));
        let after = evaluate(
            &objective,
            30,
            Some(&during),
            &with_previous(38.0, 210.0, 45.0, 200.0),
        );
        assert_eq!(
            (
                after.value,
                after.previous_value,
                after.gap_change,
                after.state
            ),
            (Some(38.0), Some(45.0), Some(7.0), KpiState::Breached)
        );
        // A new KPI that cannot be measured has nothing to show but the reason.
        let e = evaluate(
            &objective,
            30,
            None,
            &Err(KpiError::EmptyScope("nothing".into())),
        );
        assert_eq!(
            (e.state, e.value, e.samples),
            (KpiState::Unknown, None, None)
        );
    }

    #[test]
    fn status_changes_ignore_the_evaluation_time_only() {
        let objective = at_least(40.0, None);
        let old = ExperienceKPIStatus {
            observed_generation: Some(3),
            last_evaluation_time: Some(Time("2026-11-03T10:00:00Z".parse().expect("time"))),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "Evaluated".into(),
                message: String::new(),
                last_transition_time: Time("2026-11-01T00:00:00Z".parse().expect("time")),
                observed_generation: Some(3),
            }],
            ..Default::default()
        };
        assert!(status_changed(None, &old));
        let first =
            evaluate(&objective, 30, Some(&old), &counted(42.0, 100.0)).to_status(Some(&old));
        assert_eq!(
            first.observed_generation,
            Some(3),
            "kept for the controller"
        );
        assert_eq!(first.conditions, old.conditions);
        assert!(status_changed(Some(&old), &first));
        // Same measurement again: nothing changes (previousValue is the previous window's, not
        // the last tick's).
        let second =
            evaluate(&objective, 30, Some(&first), &counted(42.0, 100.0)).to_status(Some(&first));
        assert!(!status_changed(Some(&first), &second));
        let third = evaluate(&objective, 30, Some(&second), &counted(42.00001, 100.0))
            .to_status(Some(&second));
        assert!(!status_changed(Some(&second), &third));
        let mut later = third.clone();
        later.last_evaluation_time = Some(Time("2026-11-03T11:00:00Z".parse().expect("time")));
        later.conditions[0].last_transition_time =
            Time("2026-11-03T11:00:00Z".parse().expect("time"));
        assert!(!status_changed(Some(&third), &later));
        later.samples = Some(101);
        assert!(status_changed(Some(&third), &later));
        let mut reasoned = third.clone();
        reasoned.conditions[0].reason = "Other".into();
        assert!(status_changed(Some(&third), &reasoned));
    }

    #[test]
    fn rounding_is_to_four_decimals_without_negative_zero() {
        assert_eq!(round(42.857142857), 42.8571);
        assert_eq!(round(-0.00001).to_string(), "0");
        assert_eq!(round(64.28571428571429), 64.2857);
        assert_eq!(round_count(f64::MAX), i64::MAX);
        assert_eq!(round_count(-3.0), 0);
    }
}
