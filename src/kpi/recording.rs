//! Recorded increments: each touchpoint's exact increase of every counter the KPIs read, every
//! [`STEP`], with the collector pods summed away. A month-long window then reads one recorded
//! sample per step and touchpoint (`sum_over_time(touchpoint:cx_survey_responses_total:increase5m
//! {...}[28d])`) instead of every raw sample of every pod: the shape Sloth and Pyrra use for
//! SLOs. Pool pods, rollouts and restarts disappear from the long-window query, because each
//! step's increase is taken per raw series before the sum.
//!
//! Consecutive evaluations of the group, [`STEP`] apart, each cover the [`STEP`] before them, so
//! the recorded samples tile time: their sum over a window is the increase over it. Each step's
//! increase, per raw series, in one of two exact forms ([`Increase`]):
//! - Prometheus 3.x: its last value in the step minus its value at the step's start; its last
//!   value when it is new (counters start at zero); and, when it reset in the step or between
//!   the start value and the step's first sample (a collector restarted in place),
//!   `increase(x[5m] anchored)` (exact, never extrapolated);
//! - any Prometheus (2.x has no `anchored`): the sum over the step of its [`DIFFERENCE`]-apart
//!   differences, `sum_over_time(((x - last_over_time(x[1h] offset 30s)) >= 0 or x + 0)[299999ms:30s])`
//!   (`+ 0` drops the name, so both sides are one series):
//!   each difference is the value minus the last value before it, or the whole value after a
//!   reset (a negative difference) or for a new series. The subquery's points are fixed in time,
//!   so consecutive steps share none.
//!
//! The start value (and resets) are looked up over [`START_LOOKBACK`] before, not the 5-minute
//! default lookback, so a scrape gap longer than 5 minutes is not mistaken for a new series:
//! `anchored` alone takes its anchor from the 5-minute lookback and loses what a longer gap
//! holds.
//!
//! Each evaluation also records [`STEPS_RECORDED`] for the namespace, so that how many steps of
//! a window are recorded can be counted: the KPIs read the recorded increments only over a
//! window the rules covered whole ([`coverage_query`]), and the raw counters otherwise.

use super::promql::string_literal;
use super::rules::{RecordingRule, Rule, RuleGroup};

/// How often increments are recorded, and the range each recorded increase covers.
pub const STEP: &str = "5m";
/// How far back before a range the value at its start is looked for, and resets too (a counter
/// that restarted between that value and the range's first sample is a reset): an hour, not the
/// 5-minute default lookback, so a scrape gap across the start is not taken for a new series.
pub const START_LOOKBACK: std::time::Duration = std::time::Duration::from_secs(3600);
/// [`STEP`] plus [`START_LOOKBACK`]: the range a step's resets are looked for in.
pub const STEP_RESETS_RANGE: &str = "65m";
/// The labels every collector series carries (its constant labels), kept by every recorded series.
pub const IDENTITY_LABELS: [&str; 4] = ["namespace", "channel", "stage", "touchpoint"];

/// A counter the KPIs read, and its own labels besides [`IDENTITY_LABELS`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecordedCounter {
    /// The raw series name.
    pub metric: &'static str,
    /// Its own labels, kept.
    pub labels: &'static [&'static str],
}

/// Every counter the builtin KPIs read, in the order they are recorded.
pub const RECORDED: [RecordedCounter; 8] = [
    RecordedCounter {
        metric: "cx_survey_responses_total",
        labels: &["metric", "score"],
    },
    RecordedCounter {
        metric: "cx_interactions_total",
        labels: &["outcome"],
    },
    RecordedCounter {
        metric: "cx_interaction_duration_seconds_bucket",
        labels: &["timing", "le"],
    },
    RecordedCounter {
        metric: "cx_interaction_duration_seconds_count",
        labels: &["timing"],
    },
    RecordedCounter {
        metric: "cx_first_response_seconds_bucket",
        labels: &["le"],
    },
    RecordedCounter {
        metric: "cx_first_response_seconds_count",
        labels: &[],
    },
    RecordedCounter {
        metric: "cx_feedback_comments_total",
        labels: &["metric", "segment"],
    },
    RecordedCounter {
        metric: "cx_feedback_themes_total",
        labels: &["theme", "metric", "segment"],
    },
];

/// How the server computes a step's exact increase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Increase {
    /// The last value minus the start value, `increase(x[5m] anchored)` for a series that
    /// reset: Prometheus 3.x.
    Anchored,
    /// The sum of the step's [`DIFFERENCE`]-apart differences, each a series' value minus its
    /// last value before (up to an hour back), its whole value after a reset or when new: a
    /// subquery any Prometheus evaluates.
    Differences,
}

/// The resolution of the [`Increase::Differences`] form: a counter that reset and climbed back
/// above its old value within it would be undercounted (a collector restarted and answering
/// more than it had counted in 30 seconds).
pub const DIFFERENCE: &str = "30s";
/// The range of the [`Increase::Differences`] subquery: [`STEP`] less a millisecond. Prometheus
/// 2.x ranges include both ends, so a 5-minute range evaluated on a multiple of 30 seconds would
/// hold the point its previous step ended on too; a millisecond less, consecutive steps (5
/// minutes apart, millisecond timestamps) share no point and miss none.
pub const DIFFERENCES_RANGE: &str = "299999ms";

/// The series each evaluation of a namespace's group records (label `namespace`, value the
/// evaluation's time): `count_over_time` of it over a window is the number of steps recorded in
/// the window, `min_over_time` and `max_over_time` the first and the last.
pub const STEPS_RECORDED: &str = "namespace:cx_increments:recorded";
/// The label telling a [`coverage_query`]'s rows apart: the index of their span.
pub const SPAN_LABEL: &str = "cx_conductor_span";

/// How many recorded steps a window of `length` holds when every evaluation happened.
pub fn steps_in(length: std::time::Duration) -> u64 {
    length.as_secs() / STEP_SECONDS
}

/// [`STEP`] in seconds.
pub const STEP_SECONDS: u64 = 300;

/// The [`SPAN_LABEL`] of the [`coverage_query`] row telling which ends of a range the server
/// includes: value 1 on left-open ranges (3.x), 2 on closed ones (2.x).
pub const RANGE_ENDS_ROW: &str = "ends";

/// The steps recorded in each of `spans`, per namespace of `namespaces`: one query, rows
/// labelled `namespace` and [`SPAN_LABEL`] (the span's index), value the step count (`max`: a
/// namespace's marker recorded twice, by two Prometheus replicas behind one URL, is one). And
/// one row ([`RANGE_ENDS_ROW`]) counting the whole minutes in the minute up to `@ 60`: 1 where
/// ranges are left-open, 2 where they are closed. And, for each span with hourly sums
/// (`hours[i]`), the hours recorded in it ([`HOURS_RECORDED`]) in rows [`hours_row`] for both
/// range ends (which ones the server has is known only from the same answer).
pub fn coverage_query<S: AsRef<str>>(
    namespaces: &[S],
    spans: &[super::window::Span],
    hours: &[Option<super::promql::HourParts>],
) -> String {
    use super::promql::{RangeEnds, at_modifier};
    let namespaces = super::promql::label_in("namespace", namespaces);
    let selector = format!("{STEPS_RECORDED}{{{namespaces}}}");
    let hours_selector = format!("{HOURS_RECORDED}{{{namespaces}}}");
    let row = |count: String, span: String| {
        format!(
            "label_replace(max by (namespace) ({count}), \"{SPAN_LABEL}\", \"{span}\", \"\", \"\")"
        )
    };
    let steps = spans.iter().enumerate().map(|(i, span)| {
        row(
            format!(
                "count_over_time({selector}[{}]{})",
                span.range,
                span.offset_modifier()
            ),
            i.to_string(),
        )
    });
    let mut hour_rows = Vec::new();
    for (i, parts) in hours.iter().enumerate() {
        let Some(parts) = parts else { continue };
        for ends in [RangeEnds::LeftOpen, RangeEnds::Closed] {
            let (length, at) = parts.selection(ends);
            hour_rows.push(row(
                format!(
                    "count_over_time({hours_selector}[{}]{})",
                    super::window::promql_duration(length),
                    at_modifier(at)
                ),
                hours_row(i, ends),
            ));
        }
    }
    steps
        .chain(hour_rows)
        .chain([format!(
            "label_replace(count_over_time(vector(1)[1m:1m] @ 60), \"{SPAN_LABEL}\", \"{RANGE_ENDS_ROW}\", \"\", \"\")"
        )])
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The [`SPAN_LABEL`] of the [`coverage_query`] row counting span `i`'s hourly sums on a server
/// with `ends`.
pub fn hours_row(i: usize, ends: super::promql::RangeEnds) -> String {
    match ends {
        super::promql::RangeEnds::LeftOpen => format!("h{i}-open"),
        super::promql::RangeEnds::Closed => format!("h{i}-closed"),
    }
}

/// The range ends the [`RANGE_ENDS_ROW`] value says.
pub fn range_ends(value: f64) -> Option<super::promql::RangeEnds> {
    match value {
        1.0 => Some(super::promql::RangeEnds::LeftOpen),
        2.0 => Some(super::promql::RangeEnds::Closed),
        _ => None,
    }
}

/// The recorded series of `metric`: `touchpoint:<metric>:increase5m`.
pub fn recorded_name(metric: &str) -> String {
    format!("touchpoint:{metric}:increase{STEP}")
}

/// One step's increase of each raw series of `counter` in `namespace`, summed by touchpoint
/// and the counter's own labels.
pub fn step_increase(counter: &RecordedCounter, namespace: &str, increase: Increase) -> String {
    let series = format!(
        "{}{{namespace={}}}",
        counter.metric,
        string_literal(namespace)
    );
    let range = format!("{series}[{STEP}]");
    let per_series = match increase {
        Increase::Anchored => format!(
            "((last_over_time({range}) - last_over_time({series}[1h] offset {STEP})) \
             or last_over_time({range})) unless resets({series}[{STEP_RESETS_RANGE}]) > 0 \
             or increase({range} anchored)"
        ),
        Increase::Differences => format!(
            "sum_over_time((({series} - last_over_time({series}[1h] offset {DIFFERENCE})) >= 0 \
             or {series} + 0)[{DIFFERENCES_RANGE}:{DIFFERENCE}])"
        ),
    };
    let by: Vec<&str> = IDENTITY_LABELS
        .iter()
        .chain(counter.labels.iter())
        .copied()
        .collect();
    format!("sum by ({}) ({per_series})", by.join(", "))
}

/// The rule group recording `namespace`'s increments, evaluated every [`STEP`].
pub fn recording_group(namespace: &str, increase: Increase) -> RuleGroup {
    counters_group(
        format!("cx-increments.{namespace}"),
        STEP,
        |counter| {
            (
                recorded_name(counter.metric),
                step_increase(counter, namespace, increase),
            )
        },
        RecordingRule {
            record: STEPS_RECORDED.into(),
            expr: format!(
                "label_replace(vector(time()), \"namespace\", {}, \"\", \"\")",
                string_literal(namespace)
            ),
        },
    )
}

/// A group of one rule per [`RECORDED`] counter (`rule` gives its record and expression), then
/// `marker`, the series whose samples say which evaluations happened.
fn counters_group(
    name: String,
    interval: &str,
    rule: impl Fn(&RecordedCounter) -> (String, String),
    marker: RecordingRule,
) -> RuleGroup {
    RuleGroup {
        name,
        interval: Some(interval.into()),
        rules: RECORDED
            .iter()
            .map(|counter| {
                let (record, expr) = rule(counter);
                Rule::Record(RecordingRule { record, expr })
            })
            .chain([Rule::Record(marker)])
            .collect(),
    }
}

/// How often the hourly sums are recorded, and the steps each sums.
pub const HOUR: &str = "1h";
/// [`HOUR`] in seconds.
pub const HOUR_SECONDS: i64 = 3600;

/// The series each evaluation of a namespace's [`hours_group`] records (label `namespace`, value
/// the hour it summed): `count_over_time` of it over a range is the number of hours recorded.
pub const HOURS_RECORDED: &str = "namespace:cx_increments:hours_recorded";

/// The hourly sums of `metric`'s recorded steps: `touchpoint:<metric>:increase1h`.
pub fn hourly_name(metric: &str) -> String {
    format!("touchpoint:{metric}:increase{HOUR}")
}

/// The sum of `counter`'s recorded steps over the hour before the whole hour `H` at or before
/// the evaluation, 5 minutes earlier: steps recorded in `(H - 65m, H - 5m]`. The subquery's one
/// point is aligned on whole hours of the epoch whatever the group's evaluation offset, so the
/// hourly sums of every namespace share one grid a query can name; the 5 minutes let the step
/// recorded on `H - 5m` be written before the hour is summed. The range is fitted to the
/// server's range ends ([`Increase::Anchored`] servers are 3.x, left-open; the others are taken
/// for 2.x, closed), so consecutive hours share no step when steps fall on whole 5 minutes.
pub fn hour_sum(counter: &RecordedCounter, namespace: &str, increase: Increase) -> String {
    let range = match increase {
        Increase::Anchored => HOUR,
        Increase::Differences => "3599999ms",
    };
    format!(
        "last_over_time(sum_over_time({}{{namespace={}}}[{range}] offset {STEP})[{HOUR}:{HOUR}])",
        recorded_name(counter.metric),
        string_literal(namespace)
    )
}

/// The rule group summing `namespace`'s recorded steps by the hour ([`hour_sum`]), evaluated
/// every [`HOUR`]: a 28-day window then reads 672 hourly sums per series and the few steps at
/// its ends ([`super::promql::Counting::Hours`]) instead of 8,064 steps.
pub fn hours_group(namespace: &str, increase: Increase) -> RuleGroup {
    counters_group(
        format!("cx-hours.{namespace}"),
        HOUR,
        |counter| {
            (
                hourly_name(counter.metric),
                hour_sum(counter, namespace, increase),
            )
        },
        RecordingRule {
            record: HOURS_RECORDED.into(),
            expr: format!(
                "label_replace(last_over_time(vector(time())[{HOUR}:{HOUR}]), \"namespace\", {}, \"\", \"\")",
                string_literal(namespace)
            ),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_is_recorded_per_touchpoint_in_both_forms() {
        let group = recording_group("retail", Increase::Anchored);
        assert_eq!(group.name, "cx-increments.retail");
        assert_eq!(group.interval.as_deref(), Some("5m"));
        assert_eq!(group.rules.len(), RECORDED.len() + 1);
        let Rule::Record(survey) = &group.rules[0] else {
            panic!("a recording rule");
        };
        assert_eq!(
            survey.record,
            "touchpoint:cx_survey_responses_total:increase5m"
        );
        assert_eq!(
            survey.expr,
            r#"sum by (namespace, channel, stage, touchpoint, metric, score) (((last_over_time(cx_survey_responses_total{namespace="retail"}[5m]) - last_over_time(cx_survey_responses_total{namespace="retail"}[1h] offset 5m)) or last_over_time(cx_survey_responses_total{namespace="retail"}[5m])) unless resets(cx_survey_responses_total{namespace="retail"}[65m]) > 0 or increase(cx_survey_responses_total{namespace="retail"}[5m] anchored))"#
        );
        let Some(Rule::Record(steps)) = group.rules.last() else {
            panic!("the steps marker last");
        };
        assert_eq!(
            (steps.record.as_str(), steps.expr.as_str()),
            (
                "namespace:cx_increments:recorded",
                r#"label_replace(vector(time()), "namespace", "retail", "", "")"#
            )
        );
        let differences = step_increase(&RECORDED[5], "retail", Increase::Differences);
        assert_eq!(
            differences,
            r#"sum by (namespace, channel, stage, touchpoint) (sum_over_time(((cx_first_response_seconds_count{namespace="retail"} - last_over_time(cx_first_response_seconds_count{namespace="retail"}[1h] offset 30s)) >= 0 or cx_first_response_seconds_count{namespace="retail"} + 0)[299999ms:30s]))"#
        );
        // The 2.x form parses with the same parser the KPI queries are checked with.
        promql_parser::parser::parse(&steps.expr).expect("the marker parses");
        for counter in &RECORDED {
            let expr = step_increase(counter, "retail", Increase::Differences);
            promql_parser::parser::parse(&expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        }
    }

    #[test]
    fn hourly_sums_read_the_steps_of_whole_hours_fitted_to_the_range_ends() {
        let group = hours_group("retail", Increase::Anchored);
        assert_eq!(group.name, "cx-hours.retail");
        assert_eq!(group.interval.as_deref(), Some("1h"));
        assert_eq!(group.rules.len(), RECORDED.len() + 1);
        let Rule::Record(survey) = &group.rules[0] else {
            panic!("a recording rule");
        };
        assert_eq!(
            (survey.record.as_str(), survey.expr.as_str()),
            (
                "touchpoint:cx_survey_responses_total:increase1h",
                r#"last_over_time(sum_over_time(touchpoint:cx_survey_responses_total:increase5m{namespace="retail"}[1h] offset 5m)[1h:1h])"#
            )
        );
        assert_eq!(
            hour_sum(&RECORDED[0], "retail", Increase::Differences),
            r#"last_over_time(sum_over_time(touchpoint:cx_survey_responses_total:increase5m{namespace="retail"}[3599999ms] offset 5m)[1h:1h])"#
        );
        let Some(Rule::Record(hours)) = group.rules.last() else {
            panic!("the hours marker last");
        };
        assert_eq!(
            (hours.record.as_str(), hours.expr.as_str()),
            (
                HOURS_RECORDED,
                r#"label_replace(last_over_time(vector(time())[1h:1h]), "namespace", "retail", "", "")"#
            )
        );
        for rule in &hours_group("retail", Increase::Differences).rules {
            let Rule::Record(rule) = rule else {
                panic!("recording rules only");
            };
            promql_parser::parser::parse(&rule.expr)
                .unwrap_or_else(|e| panic!("{}: {e}", rule.expr));
        }
    }

    #[test]
    fn a_window_holds_the_hours_summed_whole_in_it_and_recorded_by_now() {
        use crate::kpi::promql::HourParts;
        let now: k8s_openapi::jiff::Timestamp = "2026-11-03T10:15:00Z".parse().expect("now");
        let ms = |t: &str| {
            t.parse::<k8s_openapi::jiff::Timestamp>()
                .expect("a time")
                .as_millisecond()
        };
        let at = now.as_millisecond();
        // From 07:55: 09:00's sum (the steps of (07:55, 08:55]) is the only one in the window
        // recorded by 10:15 (10:00's may not be yet).
        let window = crate::kpi::WindowSpec::parse("140m").expect("window");
        let parts = HourParts::of(&window.current(now), at).expect("an hour");
        assert_eq!(
            (parts.first_hour, parts.last_hour, parts.hours()),
            (ms("2026-11-03T09:00:00Z"), ms("2026-11-03T09:00:00Z"), 1)
        );
        // From 08:00: none.
        let window = crate::kpi::WindowSpec::parse("135m").expect("window");
        assert_eq!(HourParts::of(&window.current(now), at), None);
        // The previous cycle of a day: its last hour is the one whose steps end on its end.
        let window = crate::kpi::WindowSpec::parse("1d").expect("window");
        let parts = HourParts::of(&window.previous(now), at).expect("hours");
        assert_eq!(
            (parts.first_hour, parts.last_hour, parts.hours()),
            (ms("2026-11-01T12:00:00Z"), ms("2026-11-02T10:00:00Z"), 23)
        );
        assert_eq!(
            parts.selection(crate::kpi::promql::RangeEnds::Closed),
            (
                std::time::Duration::from_millis(23 * 3_600_000 - 1),
                ms("2026-11-02T10:59:59.999Z")
            )
        );
    }

    #[test]
    fn coverage_counts_the_steps_recorded_per_window() {
        let now: k8s_openapi::jiff::Timestamp = "2026-11-03T10:15:00Z".parse().expect("now");
        let window = crate::kpi::WindowSpec::parse("28d").expect("window");
        let spans = [window.current(now), window.previous(now)];
        let query = coverage_query(&["retail", "b2b"], &spans, &[None, None]);
        assert_eq!(
            query,
            r#"label_replace(max by (namespace) (count_over_time(namespace:cx_increments:recorded{namespace=~"b2b|retail"}[28d])), "cx_conductor_span", "0", "", "") or label_replace(max by (namespace) (count_over_time(namespace:cx_increments:recorded{namespace=~"b2b|retail"}[28d] offset 28d)), "cx_conductor_span", "1", "", "") or label_replace(count_over_time(vector(1)[1m:1m] @ 60), "cx_conductor_span", "ends", "", "")"#
        );
        promql_parser::parser::parse(&query).expect("parses");
        assert_eq!(steps_in(spans[0].length), 8064);
        assert_eq!(steps_in(std::time::Duration::from_secs(299)), 0);
    }
}
