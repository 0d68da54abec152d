//! Builtin indicators compiled to PromQL over the collector metrics (DESIGN.md §4), and custom
//! PromQL checked before it is ever sent.
//!
//! Every builtin indicator is a value query and a samples query over the *exact* number of
//! increments of counters in a window (see [`counted`]) of the touchpoints in scope that produce
//! its signal (see [`TouchpointScope::measures`]): `{namespace="<ns>", touchpoint=~"<a|b>"}`
//! selects them, with regex-escaped names. An empty set is an error, never a query over
//! everything. Below, `S` is `cx_survey_responses_total`, `I` is `cx_interactions_total`, `H` is
//! `cx_interaction_duration_seconds`, `F` is `cx_first_response_seconds`, `C` is
//! `cx_feedback_comments_total`, `T` is `cx_feedback_themes_total`, `{sel}` the namespace
//! and touchpoint matchers, `w` the window and `N(x)` the count of [`counted`].
//!
//! Each KPI is also compiled for its previous cycle (the previous window, see
//! [`WindowSpec::previous`]): the same queries with every selector shifted by `offset`, so the
//! previous value is evaluated at the same instant as the current one.
//!
//! Why `sum(a or b)` rather than `sum(a) + sum(b)`: `+` between two aggregates yields nothing
//! when either side has no series (a touchpoint whose collector is not scraped yet), while `or`
//! keeps the series that exist, so the KPI is computed over whatever data there is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use promql_parser::parser::{self, value::ValueType};

use super::KpiError;
use super::scope::{QueryScope, TouchpointScope};
use super::window::{Span, WindowSpec, promql_duration};
use crate::api::{BuiltinIndicator, BuiltinMeasure, CommentMetric, ExperienceKPISpec};
use crate::collector::metrics::first_response_buckets;

/// Survey answers counter (labels `metric`, `score`).
pub const SURVEY_RESPONSES: &str = "cx_survey_responses_total";
/// Interactions counter (label `outcome`).
pub const INTERACTIONS: &str = "cx_interactions_total";
/// Interaction duration histogram (label `timing`), without its `_bucket`/`_count`/`_sum` suffix.
pub const DURATIONS: &str = "cx_interaction_duration_seconds";
/// Waits of answered contacts (every outcome but `abandoned`), a histogram without its suffix.
pub const FIRST_RESPONSES: &str = "cx_first_response_seconds";
/// Events with a comment (labels `metric`, `segment`).
pub const COMMENTS: &str = "cx_feedback_comments_total";
/// Comments mentioning a declared theme (labels `theme`, `metric`, `segment`).
pub const THEMES: &str = "cx_feedback_themes_total";

/// The outcomes of a support contact, the denominator of `fcr` and `resolution-rate`.
pub const CONTACT_OUTCOMES: [&str; 4] = [
    "resolved-first-contact",
    "resolved",
    "unresolved",
    "escalated",
];
/// NPS promoters (9-10).
pub const NPS_PROMOTERS: [&str; 2] = ["9", "10"];
/// NPS detractors (0-6).
pub const NPS_DETRACTORS: [&str; 7] = ["0", "1", "2", "3", "4", "5", "6"];
/// The quantile `first-response-time` reports.
pub const FIRST_RESPONSE_QUANTILE: f64 = 0.9;

/// The queries of one KPI for one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledKpi {
    /// The builtin indicator with its parameters, `None` for custom PromQL.
    pub indicator: Option<BuiltinMeasure>,
    /// PromQL returning the KPI value: one number (a scalar or a one-element vector).
    pub value: String,
    /// PromQL returning the number of samples behind the value; `None` for custom PromQL without
    /// `samplesPromql`.
    pub samples: Option<String>,
    /// The PromQL range the window resolved to (`7d`, `2764800s`).
    pub range: String,
    /// The same KPI over the previous cycle.
    pub previous: PreviousQueries,
    /// Custom PromQL only: the value and samples queries as one query, each series labelled
    /// with [`PART_LABEL`] (one HTTP query instead of two; see [`combined`]).
    pub combined: Option<String>,
    /// The touchpoints the builtin queries cover, in name order (empty for custom PromQL).
    pub touchpoints: Vec<String>,
}

/// The queries of a KPI over its previous cycle.
#[derive(Clone, Debug, PartialEq)]
pub struct PreviousQueries {
    /// The value query.
    pub value: String,
    /// The samples query, as [`CompiledKpi::samples`].
    pub samples: Option<String>,
    /// As [`CompiledKpi::combined`].
    pub combined: Option<String>,
    /// The previous window's range.
    pub range: String,
    /// How long before the evaluation time these queries are evaluated: zero for builtin
    /// indicators (their selectors carry the `offset`), the previous window's end for custom
    /// PromQL (which cannot be shifted from outside, so it is evaluated at that earlier time).
    pub evaluated_before: Duration,
}

/// What a builtin indicator counts increments from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counting {
    /// The raw counters, each series counted exactly over the window ([`counted`]): right on
    /// any Prometheus, but it reads every raw sample of every pod in the window.
    Raw,
    /// The recorded 5-minute increments ([`super::recording`]), summed over the window
    /// ([`recorded`]): one sample per touchpoint and step, once the rules have covered the
    /// window. What `check` prints: `[w]` holds a step recorded exactly on the window's start
    /// too on 2.x, whose ranges include both ends.
    Recorded,
    /// [`Counting::Recorded`] on ranges fitted to the server's range ends ([`steps`]), so that
    /// consecutive windows share no step: what the operator reads.
    Steps(RangeEnds),
    /// The same steps, read mostly from their hourly sums ([`super::recording::hours_group`]):
    /// the steps before the first hour summed in the window, the hourly sums, and the steps
    /// after the last ([`hours`]), on ranges fitted to the server's range ends. A 28-day window
    /// reads about 700 samples per series instead of 8,064.
    Hours(RangeEnds, HourParts),
}

/// Where a window's hourly sums lie ([`Counting::Hours`]), in milliseconds since the epoch: the
/// window `(start, end]`, and the first and the last whole hour `H` whose sum (the steps of
/// `(H - 65m, H - 5m]`) it holds whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HourParts {
    /// The window's start.
    pub start: i64,
    /// The window's end.
    pub end: i64,
    /// The first hour summed.
    pub first_hour: i64,
    /// The last hour summed.
    pub last_hour: i64,
}

/// An hour in milliseconds.
const HOUR_MS: i64 = super::recording::HOUR_SECONDS * 1000;
/// A step in milliseconds.
const STEP_MS: i64 = super::recording::STEP_SECONDS as i64 * 1000;

impl HourParts {
    /// The hourly sums of `span` evaluated at `now` (milliseconds): the hours whose steps lie in
    /// the window, and whose sums are surely recorded by `now` (an hour's sum is recorded within
    /// the hour after it); `None` when there is none.
    pub fn of(span: &Span, now: i64) -> Option<HourParts> {
        let end = now - span.offset.as_millis() as i64;
        let start = end - span.length.as_millis() as i64;
        // The first whole hour at or after the window's start plus 65 minutes.
        let first_hour = (start + HOUR_MS + STEP_MS + HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS;
        let last_hour = ((end + STEP_MS).div_euclid(HOUR_MS) * HOUR_MS)
            .min(now.div_euclid(HOUR_MS) * HOUR_MS - HOUR_MS);
        (last_hour >= first_hour).then_some(HourParts {
            start,
            end,
            first_hour,
            last_hour,
        })
    }

    /// How many hourly sums the window holds.
    pub fn hours(&self) -> i64 {
        (self.last_hour - self.first_hour) / HOUR_MS + 1
    }

    /// The range's length and its `@` time (milliseconds) holding the samples of the hourly
    /// sums, on a server with `ends`: each is recorded in the hour after the hour it sums.
    pub fn selection(&self, ends: RangeEnds) -> (Duration, i64) {
        let length = (self.last_hour - self.first_hour + HOUR_MS) as u64;
        (
            ends.range(Duration::from_millis(length)),
            self.last_hour + HOUR_MS - 1,
        )
    }
}

/// ` @ <seconds>` for a time in milliseconds (`@ 1764547200`, `@ 1764550799.999`).
pub fn at_modifier(millis: i64) -> String {
    let (seconds, rest) = (millis.div_euclid(1000), millis.rem_euclid(1000));
    if rest == 0 {
        format!(" @ {seconds}")
    } else {
        format!(" @ {seconds}.{rest:03}")
    }
}

/// The label telling the parts of an [`hours`] count apart (summed away by every caller).
pub const HOURS_PART_LABEL: &str = "cx_conductor_hours_part";

/// The increments of `metric{matchers}` during the window of `parts`, per series, from the
/// recorded steps before its first hourly sum, the hourly sums, and the steps after its last:
/// three ranges, each series' rows labelled with [`HOURS_PART_LABEL`].
pub fn hours(metric: &str, matchers: &str, ends: RangeEnds, parts: &HourParts) -> String {
    let tag = |part: &str, query: String| {
        format!("label_replace({query}, \"{HOURS_PART_LABEL}\", \"{part}\", \"\", \"\")")
    };
    let steps = |from: i64, to: i64| {
        format!(
            "sum_over_time({}{{{matchers}}}[{}]{})",
            super::recording::recorded_name(metric),
            promql_duration(ends.range(Duration::from_millis((to - from) as u64))),
            at_modifier(to)
        )
    };
    let mut read = Vec::new();
    let head_end = parts.first_hour - HOUR_MS - STEP_MS;
    if head_end > parts.start {
        read.push(tag("head", steps(parts.start, head_end)));
    }
    let (length, at) = parts.selection(ends);
    read.push(tag(
        "hours",
        format!(
            "sum_over_time({}{{{matchers}}}[{}]{})",
            super::recording::hourly_name(metric),
            promql_duration(length),
            at_modifier(at)
        ),
    ));
    let tail_start = parts.last_hour - STEP_MS;
    if parts.end > tail_start {
        read.push(tag("tail", steps(tail_start, parts.end)));
    }
    format!("({})", read.join(" or "))
}

/// Which ends of a range `[d]` Prometheus includes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RangeEnds {
    /// `(t - d, t]`: Prometheus 3.x.
    LeftOpen,
    /// `[t - d, t]`: Prometheus 2.x.
    Closed,
}

impl RangeEnds {
    /// A range of `length` that holds the samples of `(t - length, t]` on this server: `length`
    /// less a millisecond on closed ranges (timestamps are whole milliseconds).
    pub fn range(self, length: Duration) -> Duration {
        match self {
            RangeEnds::LeftOpen => length,
            RangeEnds::Closed => length.saturating_sub(Duration::from_millis(1)),
        }
    }
}

/// The increments of `metric{matchers}` during `span`, per series, counted as `counting` says.
pub fn count(metric: &str, matchers: &str, span: &Span, counting: Counting) -> String {
    match counting {
        Counting::Raw => counted(metric, matchers, span),
        Counting::Recorded => recorded(metric, matchers, span),
        Counting::Steps(ends) => steps(metric, matchers, span, ends),
        Counting::Hours(ends, parts) => hours(metric, matchers, ends, &parts),
    }
}

/// The increments of `metric{matchers}` during `span` from its recorded 5-minute steps:
/// `sum_over_time(touchpoint:<metric>:increase5m{matchers}[w])`. The steps recorded in the
/// window tile the window as of its last recorded step (up to 5 minutes before its end), so
/// the count is exact for that window; consecutive windows (a KPI's current and previous cycle)
/// share no step.
pub fn recorded(metric: &str, matchers: &str, span: &Span) -> String {
    format!(
        "sum_over_time({}{{{matchers}}}[{}]{})",
        super::recording::recorded_name(metric),
        span.range,
        span.offset_modifier()
    )
}

/// [`recorded`] on a range that holds the steps of `(end - w, end]` on a server with `ends`: on
/// 2.x (closed ranges) a step recorded exactly on the window's start belongs to the window
/// before, a millisecond less.
pub fn steps(metric: &str, matchers: &str, span: &Span, ends: RangeEnds) -> String {
    match ends {
        RangeEnds::LeftOpen => recorded(metric, matchers, span),
        RangeEnds::Closed => format!(
            "sum_over_time({}{{{matchers}}}[{}]{})",
            super::recording::recorded_name(metric),
            promql_duration(ends.range(span.length)),
            span.offset_modifier()
        ),
    }
}

/// Compiles a KPI into its value and samples queries, for `window` resolved at `now` (calendar
/// windows depend on it), for the current and the previous cycle, builtin indicators counted as
/// `counting` says. Errors: an invalid custom expression ([`KpiError::InvalidQuery`], whose
/// message is the parser's), or a scope without a touchpoint producing the indicator's signal
/// ([`KpiError::EmptyScope`]).
pub fn compile(
    kpi: &ExperienceKPISpec,
    target: &QueryScope,
    window: &WindowSpec,
    now: Timestamp,
    counting: Counting,
) -> Result<CompiledKpi, KpiError> {
    let current = window.current(now);
    let previous = window.previous(now);
    match (kpi.indicator.builtin_measure(), &kpi.indicator.promql) {
        (Some(measure), _) => {
            let mut compiled = compile_builtin(&measure, target, &current, counting)?;
            let before = compile_builtin(&measure, target, &previous, counting)?;
            compiled.previous = PreviousQueries {
                value: before.value,
                samples: before.samples,
                combined: None,
                range: previous.range,
                evaluated_before: Duration::ZERO,
            };
            Ok(compiled)
        }
        (None, Some(promql)) => {
            let samples = kpi.indicator.samples_promql.as_deref();
            let mut compiled = compile_custom(promql, samples, &current.range)?;
            let before = compile_custom(promql, samples, &previous.range)?;
            compiled.previous = PreviousQueries {
                value: before.value,
                samples: before.samples,
                combined: before.combined,
                range: previous.range,
                evaluated_before: previous.offset,
            };
            Ok(compiled)
        }
        (None, None) => Err(KpiError::InvalidQuery {
            field: "indicator",
            message: "set one of builtin or promql".into(),
        }),
    }
}

/// The exact number of increments of the counter `metric{matchers}` during `span`, per series:
///
/// `((last_over_time(x[w]) - last_over_time(x[1h] offset w)) or last_over_time(x[w])) unless resets(x[w+1h]) > 0 or increase(x[w])`
///
/// - a series that existed before the window: its last value in the window minus its value at
///   the window's start — the answers actually received, no extrapolation. The start value is
///   the last sample of the hour before the window ([`super::recording::START_LOOKBACK`]), not
///   of the 5-minute default lookback: a scrape gap across the window's start (a collector
///   being restarted) would otherwise make the series look new and count its whole history;
/// - a series whose counter reset in the window, or between its start value and its first
///   sample in the window (a collector restarted in place during a scrape gap): the difference
///   would be wrong, so `increase()` (reset-aware, but extrapolated to the window's edges — at
///   most one scrape interval over the data's span) is used for that series only; resets are
///   looked for over the hour before the window too, where the start value comes from;
/// - a series born in the window (a new collector pod: counters start at zero): its last value;
/// - a series that ended in the window (an old pod of a rolling update): its last value is
///   still in the window, so its answers count;
/// - a series whose counter reset in the window (its collector restarted in place): the
///   difference would be wrong, so `increase()` (reset-aware, but extrapolated to the window's
///   edges — at most one scrape interval over the data's span) is used for that series only.
///
/// `increase()` alone would extrapolate every series: up to one scrape interval over the
/// seconds or minutes a fresh series has, i.e. several percent more answers than were received.
pub fn counted(metric: &str, matchers: &str, span: &Span) -> String {
    let series = format!("{metric}{{{matchers}}}");
    let range = format!("{series}[{}]{}", span.range, span.offset_modifier());
    let lookback = super::recording::START_LOOKBACK;
    let start = format!(
        "last_over_time({series}[{}]{})",
        promql_duration(lookback),
        span.start_modifier()
    );
    let with_lookback = format!(
        "{series}[{}]{}",
        promql_duration(span.length + lookback),
        span.offset_modifier()
    );
    format!(
        "(((last_over_time({range}) - {start}) or last_over_time({range})) unless resets({with_lookback}) > 0 or increase({range}))"
    )
}

/// Compiles a builtin indicator over the touchpoints of `target` that produce its signal, over
/// `span` (its previous-cycle queries are left empty: [`compile`] fills them).
///
/// | indicator | value | samples |
/// |---|---|---|
/// | `nps` | `100 * sum(N(S{sel,metric="nps",score=~"9\|10"}) or -1 * N(S{sel,metric="nps",score=~"0\|…\|6"})) / sum(N(S{sel,metric="nps"}))` | `sum(N(S{sel,metric="nps"}))` |
/// | `csat` | `100 * sum(N(S{<5-point touchpoints>,metric="csat",score=~"4\|5"}) or N(S{<7-point touchpoints>,metric="csat",score=~"6\|7"})) / sum(N(S{sel,metric="csat"}))` | `sum(N(S{sel,metric="csat"}))` |
/// | `ces` | `sum(7 * N(S{sel,metric="ces",score="7"}) or … or 1 * N(S{…,score="1"})) / sum(N(S{sel,metric="ces"}))` | `sum(N(S{sel,metric="ces"}))` |
/// | `fcr` | `100 * sum(N(I{sel,outcome="resolved-first-contact"})) / sum(N(I{sel,outcome=~"resolved-first-contact\|resolved\|unresolved\|escalated"}))` | the denominator |
/// | `resolution-rate` | `100 * sum(N(I{sel,outcome=~"resolved-first-contact\|resolved"})) / sum(N(I{sel,outcome=~"…"}))` | the denominator |
/// | `abandonment-rate` | `100 * sum(N(I{sel,outcome="abandoned"})) / sum(N(I{sel}))` | `sum(N(I{sel}))` |
/// | `first-response-time` | `histogram_quantile(0.9, sum by (le) (N(F_bucket{sel})))` | `sum(N(F_count{sel}))` |
/// | `service-level` | `100 * sum(N(F_bucket{ns,channel="c1",touchpoint=~"…",le=~"60(\\.0)?"}) or …one term per channel…) / sum(N(H_count{sel,timing="wait"}))` | the denominator |
/// | `theme-share` | `100 * sum(N(T{sel,theme="t"[,metric="m"][,segment="s"]})) / sum(N(C{sel[,metric="m"][,segment="s"]}))` | the denominator: comments |
/// | `comment-rate` | `100 * sum(N(C{sel[,metric="m"]})) / sum(N(S{sel[,metric="m"]}) or N(I{sel}))` (`S` alone for a survey metric, `I` alone for `interaction`) | the denominator: answers and interactions |
/// | `outcome-share` | `100 * sum(N(I{sel,outcome=~"o1\|o2"})) / sum(N(I{sel}))` | `sum(N(I{sel}))` |
///
/// Notes on the less obvious ones:
/// - csat: the top-two-box scores depend on each touchpoint's scale, so touchpoints are grouped
///   by scale and each group selects its own top boxes; the answers are then summed.
/// - ces: a mean of scores, but `score` is a label and PromQL cannot do arithmetic on labels, so
///   each score's count is multiplied by the score (one term per value 1..7) before summing.
/// - first-response-time: the 90th percentile of the waits of *answered* contacts (`F` does not
///   observe abandoned ones). When the touchpoints' bucket layouts differ (each adds its
///   channel's promise as a boundary), summing by `le` would mix cumulative counts taken at
///   different boundaries; `le` is then restricted to the boundaries every touchpoint has.
/// - service-level: contacts answered within the promise over contacts *offered* (every wait,
///   abandoned ones included): an abandoned contact is never "answered in time". The promise is
///   an exact bucket boundary. The Rust client writes `le="60"`, Prometheus 3 rewrites
///   classic-histogram `le` to `"60.0"` on ingestion and 2.x does not, so the matcher accepts
///   both.
/// - theme-share: only touchpoints whose collector counts the theme are read, numerator and
///   denominator alike: a touchpoint not matching comments against the theme would add comments
///   that could never mention it.
/// - comment-rate: every answer and interaction can carry a comment, so all of them (of the
///   metric, when one is named) are the denominator.
/// - outcome-share: like abandonment-rate, over the touchpoints that can end an interaction in
///   one of the named outcomes (builtin or custom): every interaction of theirs, whatever its
///   outcome, is the denominator. Each named outcome must be declared by a touchpoint in scope
///   ([`KpiError::OutcomeNotDeclared`] otherwise: it would count zero forever).
/// - abandonment-rate's denominator is every interaction, custom outcomes included (they are
///   interactions); fcr and resolution-rate read only the builtin contact outcomes
///   ([`CONTACT_OUTCOMES`]), so a custom outcome never changes them.
pub fn compile_builtin(
    measure: &BuiltinMeasure,
    target: &QueryScope,
    span: &Span,
    counting: Counting,
) -> Result<CompiledKpi, KpiError> {
    let indicator = measure.indicator;
    undeclared_outcomes(measure, target)?;
    let measured = target.measuring(measure);
    if measured.is_empty() {
        return Err(empty_scope(measure, target));
    }
    let mut names: Vec<&str> = measured.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let ns = format!("namespace={}", string_literal(&target.namespace));
    let sel = format!("{ns}, {}", label_in("touchpoint", &names));
    let inc = |metric: &str, matchers: &str| count(metric, matchers, span, counting);
    let (value, samples) = match indicator {
        BuiltinIndicator::Nps => {
            let all = inc(SURVEY_RESPONSES, &format!("{sel}, metric=\"nps\""));
            let promoters = inc(
                SURVEY_RESPONSES,
                &format!(
                    "{sel}, metric=\"nps\", {}",
                    label_in("score", &NPS_PROMOTERS)
                ),
            );
            let detractors = inc(
                SURVEY_RESPONSES,
                &format!(
                    "{sel}, metric=\"nps\", {}",
                    label_in("score", &NPS_DETRACTORS)
                ),
            );
            (
                format!("100 * sum({promoters} or -1 * {detractors}) / sum({all})"),
                format!("sum({all})"),
            )
        }
        BuiltinIndicator::Csat => {
            let all = inc(SURVEY_RESPONSES, &format!("{sel}, metric=\"csat\""));
            let mut by_scale: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
            for t in &measured {
                by_scale
                    .entry(t.csat_scale().unwrap_or(5))
                    .or_default()
                    .push(&t.name);
            }
            let top_boxes: Vec<String> = by_scale
                .iter()
                .map(|(scale, touchpoints)| {
                    let boxes = [(scale - 1).to_string(), scale.to_string()];
                    inc(
                        SURVEY_RESPONSES,
                        &format!(
                            "{ns}, {}, metric=\"csat\", {}",
                            label_in("touchpoint", touchpoints),
                            label_in("score", &boxes)
                        ),
                    )
                })
                .collect();
            (
                format!("100 * sum({}) / sum({all})", top_boxes.join(" or ")),
                format!("sum({all})"),
            )
        }
        BuiltinIndicator::Ces => {
            let all = inc(SURVEY_RESPONSES, &format!("{sel}, metric=\"ces\""));
            let weighted: Vec<String> = (1..=7)
                .rev()
                .map(|score| {
                    let term = inc(
                        SURVEY_RESPONSES,
                        &format!("{sel}, metric=\"ces\", score=\"{score}\""),
                    );
                    format!("{score} * {term}")
                })
                .collect();
            (
                format!("sum({}) / sum({all})", weighted.join(" or ")),
                format!("sum({all})"),
            )
        }
        BuiltinIndicator::Fcr | BuiltinIndicator::ResolutionRate => {
            let resolved: &[&str] = if indicator == BuiltinIndicator::Fcr {
                &CONTACT_OUTCOMES[..1]
            } else {
                &CONTACT_OUTCOMES[..2]
            };
            let contacts = inc(
                INTERACTIONS,
                &format!("{sel}, {}", label_in("outcome", &CONTACT_OUTCOMES)),
            );
            let resolved = inc(
                INTERACTIONS,
                &format!("{sel}, {}", label_in("outcome", resolved)),
            );
            (
                format!("100 * sum({resolved}) / sum({contacts})"),
                format!("sum({contacts})"),
            )
        }
        BuiltinIndicator::AbandonmentRate => {
            let all = inc(INTERACTIONS, &sel);
            let abandoned = inc(INTERACTIONS, &format!("{sel}, outcome=\"abandoned\""));
            (
                format!("100 * sum({abandoned}) / sum({all})"),
                format!("sum({all})"),
            )
        }
        BuiltinIndicator::FirstResponseTime => {
            let le = match common_bounds(&measured) {
                Some(bounds) => format!(", {}", le_in(&bounds)),
                None => String::new(),
            };
            let buckets = inc(&format!("{FIRST_RESPONSES}_bucket"), &format!("{sel}{le}"));
            let count = inc(&format!("{FIRST_RESPONSES}_count"), &sel);
            (
                format!("histogram_quantile({FIRST_RESPONSE_QUANTILE}, sum by (le) ({buckets}))"),
                format!("sum({count})"),
            )
        }
        BuiltinIndicator::ServiceLevel => {
            let offered = inc(
                &format!("{DURATIONS}_count"),
                &format!("{sel}, timing=\"wait\""),
            );
            let mut by_channel: BTreeMap<(&str, u32), Vec<&str>> = BTreeMap::new();
            for t in &measured {
                if let Some(promise) = t.first_response_seconds {
                    by_channel
                        .entry((&t.channel, promise))
                        .or_default()
                        .push(&t.name);
                }
            }
            let within: Vec<String> = by_channel
                .iter()
                .map(|((channel, promise), touchpoints)| {
                    inc(
                        &format!("{FIRST_RESPONSES}_bucket"),
                        &format!(
                            "{ns}, channel={}, {}, {}",
                            string_literal(channel),
                            label_in("touchpoint", touchpoints),
                            le_in(&[f64::from(*promise)])
                        ),
                    )
                })
                .collect();
            (
                format!("100 * sum({}) / sum({offered})", within.join(" or ")),
                format!("sum({offered})"),
            )
        }
        BuiltinIndicator::CommentRate => {
            let metric = measure
                .metric
                .map(|m| format!(", metric={}", string_literal(m.as_str())))
                .unwrap_or_default();
            let comments = inc(COMMENTS, &format!("{sel}{metric}"));
            let answers = match measure.metric {
                Some(CommentMetric::Interaction) => inc(INTERACTIONS, &sel),
                Some(_) => inc(SURVEY_RESPONSES, &format!("{sel}{metric}")),
                None => format!(
                    "{} or {}",
                    inc(SURVEY_RESPONSES, &sel),
                    inc(INTERACTIONS, &sel)
                ),
            };
            (
                format!("100 * sum({comments}) / sum({answers})"),
                format!("sum({answers})"),
            )
        }
        BuiltinIndicator::OutcomeShare => {
            let all = inc(INTERACTIONS, &sel);
            let ended = inc(
                INTERACTIONS,
                &format!("{sel}, {}", label_in("outcome", &measure.outcomes)),
            );
            (
                format!("100 * sum({ended}) / sum({all})"),
                format!("sum({all})"),
            )
        }
        BuiltinIndicator::ThemeShare => {
            let comments = inc(COMMENTS, &format!("{sel}{}", comment_matchers(measure)));
            let theme = measure
                .theme
                .as_deref()
                .map(|t| format!(", theme={}", string_literal(t)))
                .unwrap_or_default();
            let mentions = inc(
                THEMES,
                &format!("{sel}{theme}{}", comment_matchers(measure)),
            );
            (
                format!("100 * sum({mentions}) / sum({comments})"),
                format!("sum({comments})"),
            )
        }
    };
    Ok(CompiledKpi {
        indicator: Some(measure.clone()),
        value: checked(value, "builtin")?,
        samples: Some(checked(samples, "builtin")?),
        range: span.range.clone(),
        previous: PreviousQueries::none(),
        combined: None,
        touchpoints: names.iter().map(|n| (*n).to_owned()).collect(),
    })
}

/// `, metric="m", segment="s"` for the comments a theme KPI reads (empty when it names neither).
fn comment_matchers(measure: &BuiltinMeasure) -> String {
    let mut out = String::new();
    if let Some(metric) = measure.metric {
        out.push_str(&format!(", metric={}", string_literal(metric.as_str())));
    }
    if let Some(segment) = &measure.segment {
        out.push_str(&format!(", segment={}", string_literal(segment)));
    }
    out
}

/// Compiles a custom indicator: `$window` is replaced by `range` in both expressions, which must
/// then parse and return one number (an instant vector or a scalar, not a range vector or a
/// string).
pub fn compile_custom(
    promql: &str,
    samples_promql: Option<&str>,
    range: &str,
) -> Result<CompiledKpi, KpiError> {
    let value = validate_typed(&promql.replace("$window", range)).map_err(|message| {
        KpiError::InvalidQuery {
            field: "promql",
            message,
        }
    })?;
    let samples = samples_promql
        .map(|q| {
            validate_typed(&q.replace("$window", range)).map_err(|message| KpiError::InvalidQuery {
                field: "samplesPromql",
                message,
            })
        })
        .transpose()?;
    let combined = combined(&value, samples.as_ref());
    Ok(CompiledKpi {
        indicator: None,
        value: value.0,
        samples: samples.map(|s| s.0),
        range: range.to_owned(),
        previous: PreviousQueries::none(),
        combined: Some(combined),
        touchpoints: Vec::new(),
    })
}

/// A KPI's queries as a person reads them (`check`): what Prometheus evaluates, ready to paste.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DisplayedQueries {
    /// The value query.
    pub value: String,
    /// The samples query (`None`: custom PromQL without `samplesPromql`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<String>,
    /// The previous cycle's value query, evaluated at the same instant (rolling windows of
    /// builtin indicators); `None` when the previous cycle is the same query evaluated earlier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_value: Option<String>,
    /// The previous cycle's samples query, as `previous_value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_samples: Option<String>,
    /// What the previous cycle is, in words.
    pub previous_cycle: String,
}

/// A window length no KPI uses, compiled in place of a calendar window and then written as
/// `$window`, so calendar queries read the same whatever the day.
const SYMBOLIC_SECONDS: u64 = 1_234_567_891;

/// The queries of a KPI for display: a rolling window as evaluated; a calendar window with its
/// range written `$window` (the seconds since the start of the month or quarter, which change
/// every second).
pub fn displayed_queries(
    kpi: &ExperienceKPISpec,
    target: &QueryScope,
    window: &WindowSpec,
    counting: Counting,
) -> Result<DisplayedQueries, KpiError> {
    let rolling = matches!(window, WindowSpec::Rolling { .. });
    let span = match window {
        WindowSpec::Rolling { .. } => window.current(Timestamp::UNIX_EPOCH),
        _ => Span {
            range: format!("{SYMBOLIC_SECONDS}s"),
            length: Duration::from_secs(SYMBOLIC_SECONDS),
            offset: Duration::ZERO,
        },
    };
    let symbolic = |q: String| q.replace(&format!("{SYMBOLIC_SECONDS}s"), "$window");
    let builtin = kpi.indicator.builtin_measure();
    let compiled = match (&builtin, &kpi.indicator.promql) {
        (Some(measure), _) => compile_builtin(measure, target, &span, counting)?,
        (None, Some(promql)) => {
            compile_custom(promql, kpi.indicator.samples_promql.as_deref(), &span.range)?
        }
        (None, None) => {
            return Err(KpiError::InvalidQuery {
                field: "indicator",
                message: "set one of builtin or promql".into(),
            });
        }
    };
    let previous = match (rolling, &builtin) {
        (true, Some(measure)) => Some(compile_builtin(
            measure,
            target,
            &window.previous(Timestamp::UNIX_EPOCH),
            counting,
        )?),
        _ => None,
    };
    let previous_cycle = match window {
        WindowSpec::Rolling { text, .. } if previous.is_some() => {
            format!("the previous {text}: the same queries with offset {text}")
        }
        WindowSpec::Rolling { text, .. } => {
            format!("the previous {text}: the same queries evaluated {text} earlier")
        }
        WindowSpec::CalendarMonth(_) => {
            "the previous month: the same queries with $window = its length, evaluated at its end"
                .into()
        }
        WindowSpec::CalendarQuarter(_) => {
            "the previous quarter: the same queries with $window = its length, evaluated at its end"
                .into()
        }
    };
    Ok(DisplayedQueries {
        value: symbolic(compiled.value),
        samples: compiled.samples.map(symbolic),
        previous_value: previous.as_ref().map(|p| p.value.clone()),
        previous_samples: previous.and_then(|p| p.samples),
        previous_cycle,
    })
}

/// The label telling the parts of a [`combined`] query apart: `value` or `samples`.
pub const PART_LABEL: &str = "cx_conductor_part";

/// A custom KPI's value and samples queries as one: `label_replace(<value>, "cx_conductor_part",
/// "value", "", "") or label_replace(<samples>, …, "samples", …)`, a scalar wrapped in
/// `vector()`. The parts keep their own series, so a query returning several series is still
/// seen as such.
fn combined(value: &(String, bool), samples: Option<&(String, bool)>) -> String {
    let part = |(query, scalar): &(String, bool), name: &str| {
        let vector = if *scalar {
            format!("vector({query})")
        } else {
            format!("({query})")
        };
        format!("label_replace({vector}, \"{PART_LABEL}\", \"{name}\", \"\", \"\")")
    };
    match samples {
        Some(samples) => format!("{} or {}", part(value, "value"), part(samples, "samples")),
        None => part(value, "value"),
    }
}

/// [`validate_number_query`], with whether the expression is a scalar.
fn validate_typed(query: &str) -> Result<(String, bool), String> {
    let trimmed = query.trim();
    if trimmed.is_empty() {
        return Err("the expression is empty".into());
    }
    let expr = parser::parse(trimmed).map_err(|e| format!("{e} in {trimmed:?}"))?;
    match expr.value_type() {
        ValueType::Vector => Ok((trimmed.to_owned(), false)),
        ValueType::Scalar => Ok((trimmed.to_owned(), true)),
        other => Err(format!(
            "the expression returns a {other}, not a number: wrap range selectors in a function such as increase() and aggregate with sum()"
        )),
    }
}

impl PreviousQueries {
    /// Not compiled yet.
    fn none() -> PreviousQueries {
        PreviousQueries {
            value: String::new(),
            samples: None,
            combined: None,
            range: String::new(),
            evaluated_before: Duration::ZERO,
        }
    }
}

/// Parses `query` with promql-parser and checks it can return one number; the query back, or
/// the parser's diagnosis.
pub fn validate_number_query(query: &str) -> Result<String, String> {
    validate_typed(query).map(|(query, _)| query)
}

/// A generated query, checked with the parser in debug builds (and so in every test): a failure
/// is a bug in this module, reported rather than sent to Prometheus. Release builds skip it:
/// parsing costs about as much as the whole rest of a cycle (two parses per KPI), and the
/// generator is exercised for every indicator, window kind and scope shape by
/// `every_generated_query_parses`.
fn checked(query: String, field: &'static str) -> Result<String, KpiError> {
    if cfg!(debug_assertions) {
        validate_number_query(&query).map_err(|message| KpiError::InvalidQuery {
            field,
            message: format!("generated query does not parse (a bug): {message}"),
        })?;
    }
    Ok(query)
}

/// An outcome-share KPI naming an outcome no touchpoint of its scope declares (builtin or custom):
/// [`KpiError::OutcomeNotDeclared`], naming the outcomes they do declare. Other indicators, and
/// an empty scope (reported as such), pass.
pub fn undeclared_outcomes(measure: &BuiltinMeasure, target: &QueryScope) -> Result<(), KpiError> {
    if measure.indicator != BuiltinIndicator::OutcomeShare || target.touchpoints.is_empty() {
        return Ok(());
    }
    let undeclared: Vec<&str> = measure
        .outcomes
        .iter()
        .filter(|o| !target.touchpoints.iter().any(|t| t.reports(o)))
        .map(String::as_str)
        .collect();
    if undeclared.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = target.touchpoints.iter().map(|t| t.name.as_str()).collect();
    let declared: BTreeSet<&str> = target
        .touchpoints
        .iter()
        .flat_map(|t| t.outcome_names())
        .collect();
    let declared: Vec<&str> = declared.into_iter().collect();
    let (noun, verb, pronoun) = if undeclared.len() == 1 {
        ("outcome", "is", "it")
    } else {
        ("outcomes", "are", "them")
    };
    Err(KpiError::OutcomeNotDeclared(format!(
        "{noun} {} {verb} declared by no touchpoint in scope ({}), so no interaction can end with {pronoun}; {}",
        undeclared.join(", "),
        names.join(", "),
        if declared.is_empty() {
            "they report no interactions: declare the outcome in a touchpoint's signals.interactions.customOutcomes".to_string()
        } else {
            format!("they declare {}", declared.join(", "))
        }
    )))
}

/// Why no touchpoint of the scope can be queried for `measure`: no touchpoint at all, none
/// producing its signal, or — theme-share — none whose collector counts its theme
/// ([`KpiError::ThemeNotCounted`], the theme is the mistake).
fn empty_scope(measure: &BuiltinMeasure, target: &QueryScope) -> KpiError {
    if target.touchpoints.is_empty() {
        return KpiError::EmptyScope(format!(
            "the scope matches no touchpoint in namespace {}",
            target.namespace
        ));
    }
    let names: Vec<&str> = target.touchpoints.iter().map(|t| t.name.as_str()).collect();
    let producing: Vec<&super::TouchpointScope> = target
        .touchpoints
        .iter()
        .filter(|t| t.produces(measure))
        .collect();
    if let (Some(theme), false) = (&measure.theme, producing.is_empty()) {
        let counted: std::collections::BTreeSet<&str> = producing
            .iter()
            .flat_map(|t| t.themes.iter().map(String::as_str))
            .collect();
        let counted: Vec<&str> = counted.into_iter().collect();
        return KpiError::ThemeNotCounted(format!(
            "theme {theme} is declared by no journey holding the touchpoints in scope ({}), so no collector counts it; {}",
            names.join(", "),
            if counted.is_empty() {
                "they count no theme: declare it in the journey's spec.themes".to_string()
            } else {
                format!("they count {}", counted.join(", "))
            }
        ));
    }
    let answers = || match measure.metric {
        None => "asks a survey question or reports interactions".to_string(),
        Some(CommentMetric::Interaction) => "reports interactions".to_string(),
        Some(metric) => format!("asks the {} survey question", metric.as_str()),
    };
    let signal = match measure.indicator {
        BuiltinIndicator::Nps => "asks the nps survey question".to_string(),
        BuiltinIndicator::Csat => "asks the csat survey question".to_string(),
        BuiltinIndicator::Ces => "asks the ces survey question".to_string(),
        BuiltinIndicator::Fcr => "reports the resolved-first-contact outcome".to_string(),
        BuiltinIndicator::ResolutionRate => {
            "reports the resolved-first-contact or resolved outcome".to_string()
        }
        BuiltinIndicator::AbandonmentRate => "reports the abandoned outcome".to_string(),
        BuiltinIndicator::FirstResponseTime => "measures the wait timing".to_string(),
        BuiltinIndicator::ServiceLevel => {
            "measures the wait timing on a channel with serviceLevels.firstResponseSeconds"
                .to_string()
        }
        BuiltinIndicator::CommentRate => answers(),
        BuiltinIndicator::OutcomeShare => format!(
            "reports one of the outcomes {}",
            measure.outcomes.join(", ")
        ),
        BuiltinIndicator::ThemeShare => match (measure.metric, &measure.segment) {
            (Some(CommentMetric::Interaction), Some(outcome)) => {
                format!("reports the {outcome} outcome")
            }
            _ => answers(),
        },
    };
    KpiError::EmptyScope(format!(
        "{} needs a touchpoint that {signal}; none of the touchpoints in scope does ({})",
        measure.indicator.as_str(),
        names.join(", ")
    ))
}

/// Bucket boundaries every touchpoint's wait histogram has, when their layouts differ (`None`
/// when they are all alike, so no `le` filter is needed). The layouts are the collector's:
/// [`first_response_buckets`] of the channel's promise.
pub fn common_bounds(touchpoints: &[&TouchpointScope]) -> Option<Vec<f64>> {
    let layouts: Vec<BTreeSet<u64>> = touchpoints
        .iter()
        .map(|t| {
            first_response_buckets(t.first_response_seconds)
                .into_iter()
                .map(f64::to_bits)
                .collect()
        })
        .collect();
    let first = layouts.first()?;
    if layouts.iter().all(|l| l == first) {
        return None;
    }
    let mut common: Vec<f64> = first
        .iter()
        .filter(|b| layouts.iter().all(|l| l.contains(b)))
        .map(|b| f64::from_bits(*b))
        .collect();
    common.sort_by(f64::total_cmp);
    common.push(f64::INFINITY);
    Some(common)
}

/// A PromQL double-quoted string literal.
pub fn string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Escapes RE2 metacharacters, so a value matches itself inside a `=~` alternation.
pub fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `label="v"` for one value, `label=~"a|b"` (escaped, sorted, deduplicated) for several.
pub fn label_in<S: AsRef<str>>(label: &str, values: &[S]) -> String {
    let set: BTreeSet<&str> = values.iter().map(AsRef::as_ref).collect();
    if set.len() == 1
        && let Some(only) = set.first()
    {
        return format!("{label}={}", string_literal(only));
    }
    let alternation: Vec<String> = set.iter().map(|v| regex_escape(v)).collect();
    format!("{label}=~{}", string_literal(&alternation.join("|")))
}

/// An `le` matcher for bucket boundaries, in both spellings Prometheus may store: the Rust client
/// writes whole numbers without a decimal part (`le="60"`), Prometheus 3 normalises classic
/// histograms to `le="60.0"`; `+Inf` is the same in both.
pub fn le_in(bounds: &[f64]) -> String {
    let alternatives: Vec<String> = bounds
        .iter()
        .map(|&b| {
            if b == f64::INFINITY {
                regex_escape("+Inf")
            } else if b.fract() == 0.0 && b.abs() < 1e15 {
                format!("{}{}", b as i64, r"(\.0)?")
            } else {
                regex_escape(&b.to_string())
            }
        })
        .collect();
    format!("le=~{}", string_literal(&alternatives.join("|")))
}

/// Renders a number for a PromQL expression or a template (Rust's shortest round-trip form).
pub fn number(value: f64) -> String {
    let mut out = String::new();
    let _ = write!(out, "{value}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Indicator, Objective, Outcome, Scope, SurveyMetric, SurveySignal, Timing};

    fn tp(name: &str, channel: &str) -> TouchpointScope {
        TouchpointScope {
            name: name.into(),
            channel: channel.into(),
            surveys: vec![
                SurveySignal {
                    metric: SurveyMetric::Nps,
                    scale: None,
                },
                SurveySignal {
                    metric: SurveyMetric::Csat,
                    scale: None,
                },
                SurveySignal {
                    metric: SurveyMetric::Ces,
                    scale: None,
                },
            ],
            outcomes: Outcome::ALL.to_vec(),
            custom_outcomes: vec!["failed-attempt".into()],
            timings: vec![Timing::Wait, Timing::Handle],
            first_response_seconds: Some(60),
            themes: vec!["delivery".into(), "price".into()],
        }
    }

    fn scope(touchpoints: Vec<TouchpointScope>) -> QueryScope {
        QueryScope {
            namespace: "retail".into(),
            touchpoints,
        }
    }

    fn spec(indicator: Indicator, window: &str) -> ExperienceKPISpec {
        ExperienceKPISpec {
            indicator,
            scope: Scope::default(),
            objective: Objective {
                target: 40.0,
                direction: crate::api::Direction::AtLeast,
                warning: None,
            },
            window: window.into(),
            time_zone: None,
            interval: "5m".into(),
            min_samples: 30,
            owner: None,
            journey: None,
        }
    }

    /// The indicator as a manifest would write it: theme-share names a theme.
    fn builtin(indicator: BuiltinIndicator) -> Indicator {
        Indicator {
            builtin: Some(indicator),
            theme: (indicator == BuiltinIndicator::ThemeShare).then(|| "delivery".into()),
            outcomes: if indicator == BuiltinIndicator::OutcomeShare {
                vec!["failed-attempt".into(), "abandoned".into()]
            } else {
                Vec::new()
            },
            ..Indicator::default()
        }
    }

    fn now() -> Timestamp {
        "2026-11-03T10:15:00Z".parse().expect("timestamp")
    }

    fn span(window: &str) -> Span {
        WindowSpec::parse(window).expect("window").current(now())
    }

    #[test]
    fn every_builtin_compiles_to_the_documented_queries() {
        let s = scope(vec![tp("web-checkout", "web"), tp("app-checkout", "app")]);
        let sel = r#"namespace="retail", touchpoint=~"app-checkout|web-checkout""#;
        let n = |x: String| {
            format!(
                "(((last_over_time({x}[7d]) - last_over_time({x}[1h] offset 7d)) or last_over_time({x}[7d])) unless resets({x}[169h]) > 0 or increase({x}[7d]))"
            )
        };
        let s_ = |m: &str| n(format!("cx_survey_responses_total{{{sel}, {m}}}"));
        let i_ = |m: &str| n(format!("cx_interactions_total{{{sel}{m}}}"));
        let contacts = i_(r#", outcome=~"escalated|resolved|resolved-first-contact|unresolved""#);
        let offered = n(format!(
            r#"cx_interaction_duration_seconds_count{{{sel}, timing="wait"}}"#
        ));
        let comments = n(format!("cx_feedback_comments_total{{{sel}}}"));
        let answers = format!(
            "{} or {}",
            n(format!("cx_survey_responses_total{{{sel}}}")),
            i_("")
        );
        let cases: [(BuiltinIndicator, String, String); 11] = [
            (
                BuiltinIndicator::Nps,
                format!(
                    "100 * sum({} or -1 * {}) / sum({})",
                    s_(r#"metric="nps", score=~"10|9""#),
                    s_(r#"metric="nps", score=~"0|1|2|3|4|5|6""#),
                    s_(r#"metric="nps""#)
                ),
                format!("sum({})", s_(r#"metric="nps""#)),
            ),
            (
                BuiltinIndicator::Csat,
                format!(
                    "100 * sum({}) / sum({})",
                    s_(r#"metric="csat", score=~"4|5""#),
                    s_(r#"metric="csat""#)
                ),
                format!("sum({})", s_(r#"metric="csat""#)),
            ),
            (
                BuiltinIndicator::Ces,
                format!(
                    "sum({}) / sum({})",
                    (1..=7)
                        .rev()
                        .map(|score| format!(
                            "{score} * {}",
                            s_(&format!(r#"metric="ces", score="{score}""#))
                        ))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    s_(r#"metric="ces""#)
                ),
                format!("sum({})", s_(r#"metric="ces""#)),
            ),
            (
                BuiltinIndicator::Fcr,
                format!(
                    "100 * sum({}) / sum({contacts})",
                    i_(r#", outcome="resolved-first-contact""#)
                ),
                format!("sum({contacts})"),
            ),
            (
                BuiltinIndicator::ResolutionRate,
                format!(
                    "100 * sum({}) / sum({contacts})",
                    i_(r#", outcome=~"resolved|resolved-first-contact""#)
                ),
                format!("sum({contacts})"),
            ),
            (
                BuiltinIndicator::AbandonmentRate,
                format!(
                    "100 * sum({}) / sum({})",
                    i_(r#", outcome="abandoned""#),
                    i_("")
                ),
                format!("sum({})", i_("")),
            ),
            (
                BuiltinIndicator::FirstResponseTime,
                format!(
                    "histogram_quantile(0.9, sum by (le) ({}))",
                    n(format!("cx_first_response_seconds_bucket{{{sel}}}"))
                ),
                format!(
                    "sum({})",
                    n(format!("cx_first_response_seconds_count{{{sel}}}"))
                ),
            ),
            (
                BuiltinIndicator::ServiceLevel,
                format!(
                    "100 * sum({} or {}) / sum({offered})",
                    n(r#"cx_first_response_seconds_bucket{namespace="retail", channel="app", touchpoint="app-checkout", le=~"60(\\.0)?"}"#.into()),
                    n(r#"cx_first_response_seconds_bucket{namespace="retail", channel="web", touchpoint="web-checkout", le=~"60(\\.0)?"}"#.into()),
                ),
                format!("sum({offered})"),
            ),
            (
                BuiltinIndicator::ThemeShare,
                format!(
                    "100 * sum({}) / sum({comments})",
                    n(format!(
                        r#"cx_feedback_themes_total{{{sel}, theme="delivery"}}"#
                    ))
                ),
                format!("sum({comments})"),
            ),
            (
                BuiltinIndicator::CommentRate,
                format!("100 * sum({comments}) / sum({answers})"),
                format!("sum({answers})"),
            ),
            (
                BuiltinIndicator::OutcomeShare,
                format!(
                    "100 * sum({}) / sum({})",
                    i_(r#", outcome=~"abandoned|failed-attempt""#),
                    i_("")
                ),
                format!("sum({})", i_("")),
            ),
        ];
        for (indicator, value, samples) in cases {
            let window = WindowSpec::parse("7d").expect("window");
            let compiled = compile(
                &spec(builtin(indicator), "7d"),
                &s,
                &window,
                now(),
                Counting::Raw,
            )
            .expect("compiles");
            assert_eq!(compiled.value, value, "{indicator:?} value");
            assert_eq!(
                compiled.samples.as_deref(),
                Some(samples.as_str()),
                "{indicator:?}"
            );
            assert_eq!(compiled.touchpoints, ["app-checkout", "web-checkout"]);
            assert_eq!(compiled.range, "7d");
            // The previous cycle: the same queries, one window earlier.
            let shifted = |q: &str| {
                q.replace("[7d]", "[7d] offset 7d")
                    .replace("[169h]", "[169h] offset 7d")
                    .replace("[1h] offset 7d)", "[1h] offset 14d)")
            };
            assert_eq!(compiled.previous.value, shifted(&value), "{indicator:?}");
            assert_eq!(
                compiled.previous.samples.as_deref(),
                Some(shifted(&samples).as_str())
            );
            assert_eq!(compiled.previous.evaluated_before, Duration::ZERO);
        }
    }

    /// Every builtin, over every window kind and scope shape, parses with promql-parser.
    #[test]
    fn every_generated_query_parses() {
        let mut seven_point = tp("store.till+1", "store");
        seven_point.surveys[1].scale = Some(7);
        seven_point.first_response_seconds = Some(25);
        let scopes = [
            scope(vec![tp("web-checkout", "web")]),
            scope(vec![
                tp("web-checkout", "web"),
                seven_point,
                tp(r#"we"ird\name"#, "call-centre"),
            ]),
        ];
        for window in ["7d", "90m", "1w2d", "calendar-month", "calendar-quarter"] {
            let parsed = WindowSpec::parse(window).expect("window");
            for target in &scopes {
                for indicator in BuiltinIndicator::ALL {
                    let compiled = compile(
                        &spec(builtin(indicator), window),
                        target,
                        &parsed,
                        now(),
                        Counting::Raw,
                    )
                    .unwrap_or_else(|e| panic!("{indicator:?} {window}: {e}"));
                    let queries = [
                        Some(&compiled.value),
                        compiled.samples.as_ref(),
                        Some(&compiled.previous.value),
                        compiled.previous.samples.as_ref(),
                    ];
                    for query in queries.into_iter().flatten() {
                        parser::parse(query)
                            .unwrap_or_else(|e| panic!("{indicator:?} {window}: {e}: {query}"));
                    }
                }
            }
        }
    }

    #[test]
    fn csat_selects_each_touchpoints_top_two_boxes() {
        let mut seven = tp("app-checkout", "app");
        seven.surveys[1].scale = Some(7);
        let five = tp("web-checkout", "web");
        let mut seven_too = tp("kiosk", "store");
        seven_too.surveys[1].scale = Some(7);
        let compiled = compile_builtin(
            &BuiltinIndicator::Csat.into(),
            &scope(vec![seven, five, seven_too]),
            &span("28d"),
            Counting::Raw,
        )
        .expect("compiles");
        assert!(compiled.value.contains(
            r#"{namespace="retail", touchpoint="web-checkout", metric="csat", score=~"4|5"}"#
        ));
        assert!(compiled.value.contains(
            r#"{namespace="retail", touchpoint=~"app-checkout|kiosk", metric="csat", score=~"6|7"}"#
        ));
    }

    #[test]
    fn first_response_time_keeps_only_common_bucket_boundaries() {
        // 70 s is not a default boundary: call's layout has one bucket more than chat's.
        let mut promise_70 = tp("call", "call-centre");
        promise_70.first_response_seconds = Some(70);
        let promise_60 = tp("chat", "chat");
        let compiled = compile_builtin(
            &BuiltinIndicator::FirstResponseTime.into(),
            &scope(vec![promise_70.clone(), promise_60.clone()]),
            &span("7d"),
            Counting::Raw,
        )
        .expect("compiles");
        let mut common = crate::collector::metrics::FIRST_RESPONSE_BUCKETS.to_vec();
        common.push(f64::INFINITY);
        assert!(
            compiled.value.contains(&format!(
                r#"cx_first_response_seconds_bucket{{namespace="retail", touchpoint=~"call|chat", {}}}"#,
                le_in(&common)
            )),
            "{}",
            compiled.value
        );
        assert!(!compiled.value.contains("70(")); // the boundary only call has
        // The same promise everywhere: identical layouts, no filter.
        let mut chat_70 = promise_60;
        chat_70.first_response_seconds = Some(70);
        let same = compile_builtin(
            &BuiltinIndicator::FirstResponseTime.into(),
            &scope(vec![promise_70, chat_70]),
            &span("7d"),
            Counting::Raw,
        )
        .expect("compiles");
        assert!(!same.value.contains("le=~"), "{}", same.value);
    }

    #[test]
    fn touchpoints_without_the_signal_are_left_out_and_none_is_an_error() {
        let mut no_abandon = tp("email", "email");
        no_abandon.outcomes = vec![Outcome::Completed];
        let compiled = compile_builtin(
            &BuiltinIndicator::AbandonmentRate.into(),
            &scope(vec![no_abandon.clone(), tp("web", "web")]),
            &span("7d"),
            Counting::Raw,
        )
        .expect("compiles");
        assert_eq!(compiled.touchpoints, ["web"]);

        let error = compile_builtin(
            &BuiltinIndicator::AbandonmentRate.into(),
            &scope(vec![no_abandon]),
            &span("7d"),
            Counting::Raw,
        )
        .expect_err("nothing to measure");
        assert_eq!(error.reason(), "ScopeEmpty");
        assert!(
            error.to_string().contains("reports the abandoned outcome"),
            "{error}"
        );
        assert!(error.to_string().contains("(email)"), "{error}");

        let error = compile_builtin(
            &BuiltinIndicator::Nps.into(),
            &scope(vec![]),
            &span("7d"),
            Counting::Raw,
        )
        .expect_err("no touchpoint");
        assert_eq!(
            error.to_string(),
            "the scope matches no touchpoint in namespace retail"
        );

        let mut no_promise = tp("web", "web");
        no_promise.first_response_seconds = None;
        let error = compile_builtin(
            &BuiltinIndicator::ServiceLevel.into(),
            &scope(vec![no_promise]),
            &span("7d"),
            Counting::Raw,
        )
        .expect_err("no promise");
        assert!(
            error.to_string().contains("firstResponseSeconds"),
            "{error}"
        );
    }

    #[test]
    fn names_are_escaped_for_regexes_and_strings() {
        assert_eq!(regex_escape("a.b+c|d(e)"), r"a\.b\+c\|d\(e\)");
        assert_eq!(string_literal(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            label_in("touchpoint", &["b", "a.x", "b"]),
            r#"touchpoint=~"a\\.x|b""#
        );
        assert_eq!(label_in("touchpoint", &["only"]), r#"touchpoint="only""#);
        assert_eq!(le_in(&[60.0]), r#"le=~"60(\\.0)?""#);
        assert_eq!(le_in(&[0.5, f64::INFINITY]), r#"le=~"0\\.5|\\+Inf""#);
    }

    #[test]
    fn custom_promql_gets_the_window_and_is_validated() {
        let indicator = Indicator {
            builtin: None,
            promql: Some(
                "100 * sum(increase(cx_interactions_total{outcome=\"error\"}[$window])) / sum(increase(cx_interactions_total[$window]))".into(),
            ),
            samples_promql: Some("sum(increase(cx_interactions_total[$window]))".into()),
            ..Indicator::default()
        };
        let window = WindowSpec::parse("calendar-month").expect("window");
        let compiled = compile(
            &spec(indicator, "calendar-month"),
            &scope(vec![]),
            &window,
            now(),
            Counting::Raw,
        )
        .expect("valid");
        assert_eq!(
            compiled.value,
            "100 * sum(increase(cx_interactions_total{outcome=\"error\"}[209700s])) / sum(increase(cx_interactions_total[209700s]))"
        );
        assert_eq!(
            compiled.samples.as_deref(),
            Some("sum(increase(cx_interactions_total[209700s]))")
        );
        assert_eq!(compiled.indicator, None);
        // The previous cycle of a custom query: October (31 days), evaluated where it ended.
        assert_eq!(
            compiled.previous.value,
            "100 * sum(increase(cx_interactions_total{outcome=\"error\"}[2678400s])) / sum(increase(cx_interactions_total[2678400s]))"
        );
        assert_eq!(
            compiled.previous.samples.as_deref(),
            Some("sum(increase(cx_interactions_total[2678400s]))")
        );
        assert_eq!(
            compiled.previous.evaluated_before,
            Duration::from_secs(209_700)
        );

        let no_samples = compile_custom("vector(1)", None, "7d").expect("valid");
        assert_eq!(no_samples.samples, None);
    }

    #[test]
    fn invalid_custom_promql_names_the_problem() {
        let cases = [
            ("sum(rate(x[5m])", None, "promql", "unclosed"),
            ("cx_interactions_total[$window]", None, "promql", "matrix"),
            ("\"text\"", None, "promql", "string"),
            ("   ", None, "promql", "empty"),
            ("vector(1)", Some("sum(x[$window]"), "samplesPromql", ""),
            ("sum by (x (y)", None, "promql", ""),
        ];
        for (promql, samples, field, needle) in cases {
            let error = compile_custom(promql, samples, "7d").expect_err(promql);
            assert_eq!(error.reason(), "QueryInvalid");
            assert!(error.is_invalid_spec());
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("invalid {field}: ")),
                "{message}"
            );
            assert!(
                message.to_lowercase().contains(needle),
                "{promql}: {message}"
            );
        }
    }

    fn measure(
        indicator: BuiltinIndicator,
        theme: Option<&str>,
        metric: Option<CommentMetric>,
        segment: Option<&str>,
    ) -> BuiltinMeasure {
        BuiltinMeasure {
            indicator,
            theme: theme.map(Into::into),
            metric,
            segment: segment.map(Into::into),
            outcomes: Vec::new(),
        }
    }

    fn outcome_share(outcomes: &[&str]) -> BuiltinMeasure {
        BuiltinMeasure {
            outcomes: outcomes.iter().map(|o| (*o).to_owned()).collect(),
            ..BuiltinIndicator::OutcomeShare.into()
        }
    }

    #[test]
    fn outcome_share_reads_the_touchpoints_declaring_its_outcomes_and_names_undeclared_ones() {
        let mut web = tp("web", "web");
        web.custom_outcomes = Vec::new();
        web.outcomes = vec![Outcome::Completed, Outcome::Abandoned];
        let mut courier = tp("courier", "courier");
        courier.outcomes = vec![Outcome::Completed];
        courier.custom_outcomes = vec!["failed-attempt".into(), "rescheduled".into()];
        let mut store = tp("store", "store");
        store.outcomes = vec![Outcome::Completed];
        store.custom_outcomes = Vec::new();
        let s = scope(vec![web.clone(), courier.clone(), store]);
        let n = |x: &str| {
            format!(
                "(((last_over_time({x}[7d]) - last_over_time({x}[1h] offset 7d)) or last_over_time({x}[7d])) unless resets({x}[169h]) > 0 or increase({x}[7d]))"
            )
        };
        // The courier's failed attempts: only the courier can end an interaction that way.
        let compiled = compile_builtin(
            &outcome_share(&["failed-attempt"]),
            &s,
            &span("7d"),
            Counting::Raw,
        )
        .expect("compiles");
        let sel = r#"namespace="retail", touchpoint="courier""#;
        let all = n(&format!("cx_interactions_total{{{sel}}}"));
        assert_eq!(
            compiled.value,
            format!(
                "100 * sum({}) / sum({all})",
                n(&format!(
                    r#"cx_interactions_total{{{sel}, outcome="failed-attempt"}}"#
                ))
            )
        );
        assert_eq!(compiled.samples, Some(format!("sum({all})")));
        assert_eq!(compiled.touchpoints, ["courier"]);
        // Failed attempts or abandonment: the web checkout joins, the store does not.
        let compiled = compile_builtin(
            &outcome_share(&["failed-attempt", "abandoned"]),
            &s,
            &span("7d"),
            Counting::Raw,
        )
        .expect("compiles");
        assert_eq!(compiled.touchpoints, ["courier", "web"]);
        assert!(
            compiled
                .value
                .contains(r#"outcome=~"abandoned|failed-attempt""#),
            "{}",
            compiled.value
        );
        // A misspelt outcome is named, with the outcomes the scope does declare.
        let error = compile_builtin(
            &outcome_share(&["failed-attempt", "faild-attempt"]),
            &s,
            &span("7d"),
            Counting::Raw,
        )
        .expect_err("undeclared");
        assert_eq!(error.reason(), "OutcomeNotDeclared");
        assert!(error.is_invalid_spec());
        assert_eq!(
            error.to_string(),
            "outcome faild-attempt is declared by no touchpoint in scope (web, courier, store), so no interaction can end with it; they declare abandoned, completed, failed-attempt, rescheduled"
        );
        let error = compile_builtin(
            &outcome_share(&["lost", "rescheduled"]),
            &scope(vec![web]),
            &span("7d"),
            Counting::Raw,
        )
        .expect_err("undeclared");
        assert_eq!(
            error.to_string(),
            "outcomes lost, rescheduled are declared by no touchpoint in scope (web), so no interaction can end with them; they declare abandoned, completed"
        );
        // Resolution rate keeps its builtin contact outcomes: a custom one never enters it.
        let compiled = compile_builtin(
            &BuiltinIndicator::ResolutionRate.into(),
            &scope(vec![tp("call", "call-centre")]),
            &span("7d"),
            Counting::Raw,
        )
        .expect("compiles");
        assert!(
            !compiled.value.contains("failed-attempt"),
            "{}",
            compiled.value
        );
    }

    #[test]
    fn theme_kpis_narrow_to_their_metric_and_segment() {
        let mut email = tp("email", "email");
        email.outcomes = Vec::new();
        email.themes = vec!["price".into()];
        let s = scope(vec![tp("web", "web"), email, tp("call", "call-centre")]);
        let n = |x: &str| {
            format!(
                "(((last_over_time({x}[7d]) - last_over_time({x}[1h] offset 7d)) or last_over_time({x}[7d])) unless resets({x}[169h]) > 0 or increase({x}[7d]))"
            )
        };
        // Delivery within detractors: only the touchpoints counting delivery (not email).
        let sel = r#"namespace="retail", touchpoint=~"call|web""#;
        let detractors = n(&format!(
            r#"cx_feedback_comments_total{{{sel}, metric="nps", segment="detractor"}}"#
        ));
        let compiled = compile_builtin(
            &measure(
                BuiltinIndicator::ThemeShare,
                Some("delivery"),
                Some(CommentMetric::Nps),
                Some("detractor"),
            ),
            &s,
            &span("7d"),
            Counting::Raw,
        )
        .expect("compiles");
        assert_eq!(
            compiled.value,
            format!(
                "100 * sum({}) / sum({detractors})",
                n(&format!(
                    r#"cx_feedback_themes_total{{{sel}, theme="delivery", metric="nps", segment="detractor"}}"#
                ))
            )
        );
        assert_eq!(compiled.samples, Some(format!("sum({detractors})")));
        assert_eq!(compiled.touchpoints, ["call", "web"]);

        // Comment rate of interactions: over the touchpoints reporting interactions, every one
        // of them in the denominator.
        let compiled = compile_builtin(
            &measure(
                BuiltinIndicator::CommentRate,
                None,
                Some(CommentMetric::Interaction),
                None,
            ),
            &s,
            &span("7d"),
            Counting::Raw,
        )
        .expect("compiles");
        let interactions = n(&format!("cx_interactions_total{{{sel}}}"));
        assert_eq!(
            compiled.value,
            format!(
                "100 * sum({}) / sum({interactions})",
                n(&format!(
                    r#"cx_feedback_comments_total{{{sel}, metric="interaction"}}"#
                ))
            )
        );
        assert_eq!(compiled.samples, Some(format!("sum({interactions})")));

        // Comment rate of csat answers: every touchpoint asks csat.
        let all = r#"namespace="retail", touchpoint=~"call|email|web""#;
        let compiled = compile_builtin(
            &measure(
                BuiltinIndicator::CommentRate,
                None,
                Some(CommentMetric::Csat),
                None,
            ),
            &s,
            &span("7d"),
            Counting::Raw,
        )
        .expect("compiles");
        assert_eq!(
            compiled.value,
            format!(
                "100 * sum({}) / sum({})",
                n(&format!(
                    r#"cx_feedback_comments_total{{{all}, metric="csat"}}"#
                )),
                n(&format!(
                    r#"cx_survey_responses_total{{{all}, metric="csat"}}"#
                ))
            )
        );

        // An abandoned interaction's comments mentioning price: email reports no interaction.
        let compiled = compile_builtin(
            &measure(
                BuiltinIndicator::ThemeShare,
                Some("price"),
                Some(CommentMetric::Interaction),
                Some("abandoned"),
            ),
            &s,
            &span("7d"),
            Counting::Raw,
        )
        .expect("compiles");
        assert_eq!(compiled.touchpoints, ["call", "web"]);
        assert!(
            compiled
                .value
                .contains(r#"theme="price", metric="interaction", segment="abandoned"}"#),
            "{}",
            compiled.value
        );
    }

    #[test]
    fn a_theme_no_touchpoint_counts_is_named_and_a_missing_signal_is_not_blamed_on_it() {
        let mut no_themes = tp("email", "email");
        no_themes.themes = Vec::new();
        let s = scope(vec![tp("web", "web"), no_themes.clone()]);
        let error = compile_builtin(
            &measure(BuiltinIndicator::ThemeShare, Some("delivry"), None, None),
            &s,
            &span("7d"),
            Counting::Raw,
        )
        .expect_err("undeclared theme");
        assert_eq!(error.reason(), "ThemeNotDeclared");
        assert!(error.is_invalid_spec());
        assert_eq!(
            error.to_string(),
            "theme delivry is declared by no journey holding the touchpoints in scope (web, email), so no collector counts it; they count delivery, price"
        );
        let error = compile_builtin(
            &measure(BuiltinIndicator::ThemeShare, Some("delivery"), None, None),
            &scope(vec![no_themes.clone()]),
            &span("7d"),
            Counting::Raw,
        )
        .expect_err("no theme at all");
        assert!(
            error
                .to_string()
                .ends_with("they count no theme: declare it in the journey's spec.themes"),
            "{error}"
        );
        // The theme is counted, but no touchpoint reports the outcome named as segment: the
        // signal is missing, not the theme.
        let mut no_outcomes = tp("web", "web");
        no_outcomes.outcomes = vec![Outcome::Completed];
        let error = compile_builtin(
            &measure(
                BuiltinIndicator::ThemeShare,
                Some("delivery"),
                Some(CommentMetric::Interaction),
                Some("abandoned"),
            ),
            &scope(vec![no_outcomes]),
            &span("7d"),
            Counting::Raw,
        )
        .expect_err("no abandoned outcome");
        assert_eq!(error.reason(), "ScopeEmpty");
        assert_eq!(
            error.to_string(),
            "theme-share needs a touchpoint that reports the abandoned outcome; none of the touchpoints in scope does (web)"
        );
        let mut no_ces = no_themes;
        no_ces.surveys.retain(|s| s.metric != SurveyMetric::Ces);
        let error = compile_builtin(
            &measure(
                BuiltinIndicator::CommentRate,
                None,
                Some(CommentMetric::Ces),
                None,
            ),
            &scope(vec![no_ces]),
            &span("7d"),
            Counting::Raw,
        )
        .expect_err("no ces");
        assert_eq!(
            error.to_string(),
            "comment-rate needs a touchpoint that asks the ces survey question; none of the touchpoints in scope does (email)"
        );
    }
}
