//! Batched evaluation of builtin indicators: one Prometheus query per signal family and window
//! for a whole cycle, and the indicator arithmetic done here, per KPI, over its touchpoints.
//!
//! A cycle of 1,000 KPIs would otherwise be 2,000 queries, each re-reading overlapping series.
//! Instead, every family is asked once per window, broken down by touchpoint:
//!
//! | family | query (`N` is [`counted`]: the exact increments in the window) |
//! |---|---|
//! | survey `m` | `sum by (namespace, touchpoint, score) (N(cx_survey_responses_total{namespace=~"…", metric="m"}))` |
//! | interactions | `sum by (namespace, touchpoint, outcome) (N(cx_interactions_total{namespace=~"…"}))` |
//! | waits | `sum by (namespace, touchpoint, le) (N(cx_first_response_seconds_bucket{namespace=~"…"}))`, plus the contacts offered, `sum by (namespace, touchpoint) (N(cx_interaction_duration_seconds_count{namespace=~"…", timing="wait"}))` as `le="offered"` |
//! | comments | `sum by (namespace, touchpoint, metric, segment) (N(cx_feedback_comments_total{namespace=~"…"}))`, the answers they could be written on when a comment-rate KPI of the group needs them, `sum by (namespace, touchpoint, metric) (N(cx_survey_responses_total{…}))` and `sum by (namespace, touchpoint) (N(cx_interactions_total{…}))` as `metric="interaction"`, and the mentions of the themes the group's KPIs name, `sum by (namespace, touchpoint, theme, metric, segment) (N(cx_feedback_themes_total{namespace=~"…", theme=~"…"}))`, told apart by [`COUNT_LABEL`] |
//!
//! each for the current and the previous cycle in the same query (rows labelled
//! `cx_conductor_cycle="current"` / `"previous"`, see [`CYCLE_LABEL`]), and each KPI sums the
//! rows of its touchpoints exactly as its compiled PromQL
//! ([`super::promql::compile_builtin`]) would: sums are associative, and the histogram quantile is
//! Prometheus' own `histogram_quantile` algorithm ([`bucket_quantile`]). The integration tests
//! check both paths against the same hand-computed values.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::KpiError;
use super::evaluate::{Measurement, Reading, SampleCount};
use super::prometheus::Sample;
use super::promql::{
    COMMENTS, CONTACT_OUTCOMES, Counting, DURATIONS, FIRST_RESPONSE_QUANTILE, FIRST_RESPONSES,
    HourParts, INTERACTIONS, NPS_DETRACTORS, NPS_PROMOTERS, RangeEnds, SURVEY_RESPONSES, THEMES,
    common_bounds, count, label_in,
};
use super::scope::{QueryScope, TouchpointScope};
use super::window::Span;
use crate::api::{BuiltinIndicator, BuiltinMeasure, SurveyMetric};

/// The label telling a family query's current-cycle rows from its previous-cycle ones.
pub const CYCLE_LABEL: &str = "cx_conductor_cycle";
/// The `le` value of the waits family's row of contacts offered.
pub const OFFERED: &str = "offered";
/// The label telling the comments family's rows apart: `comments` (events with a comment),
/// `answers` (answers and interactions) or `theme` (mentions of a theme).
pub const COUNT_LABEL: &str = "cx_conductor_count";

/// Which cycle a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cycle {
    /// The window ending at the evaluation time.
    Current,
    /// The window before it ([`crate::kpi::WindowSpec::previous`]).
    Previous,
}

impl Cycle {
    fn as_str(self) -> &'static str {
        match self {
            Cycle::Current => "current",
            Cycle::Previous => "previous",
        }
    }
}

/// A group of series queried once per window for every builtin KPI that needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Answers to one survey question, by score.
    Survey(SurveyMetric),
    /// Interactions, by outcome.
    Interactions,
    /// The wait-time histogram, by bucket.
    Waits,
    /// Comments by metric and segment, the answers they were written on by metric, and theme
    /// mentions by theme, metric and segment: rows keyed `count/theme/metric/segment` (see
    /// [`CommentRow`]).
    Comments,
}

impl Family {
    /// The family an indicator is computed from.
    pub fn of(measure: &BuiltinMeasure) -> Family {
        match measure.indicator {
            BuiltinIndicator::Nps => Family::Survey(SurveyMetric::Nps),
            BuiltinIndicator::Csat => Family::Survey(SurveyMetric::Csat),
            BuiltinIndicator::Ces => Family::Survey(SurveyMetric::Ces),
            BuiltinIndicator::Fcr
            | BuiltinIndicator::AbandonmentRate
            | BuiltinIndicator::ResolutionRate
            | BuiltinIndicator::OutcomeShare => Family::Interactions,
            BuiltinIndicator::FirstResponseTime | BuiltinIndicator::ServiceLevel => Family::Waits,
            BuiltinIndicator::CommentRate | BuiltinIndicator::ThemeShare => Family::Comments,
        }
    }

    /// The label each touchpoint's rows are broken down by ([`COUNT_LABEL`] for comments, whose
    /// rows are keyed by several labels: see [`CommentRow`]).
    pub fn key_label(self) -> &'static str {
        match self {
            Family::Survey(_) => "score",
            Family::Interactions => "outcome",
            Family::Waits => "le",
            Family::Comments => COUNT_LABEL,
        }
    }

    /// The family's query for the `current` and `previous` cycles (`None`: a finished period
    /// kept from an earlier cycle, not read again): one HTTP query, rows
    /// labelled with [`CYCLE_LABEL`]. Each cycle reads its namespaces as [`CycleCounting`] says
    /// (recorded increments where they cover that cycle's window, raw counters elsewhere).
    /// `themes`: the themes whose mentions the comments family reads (the other families ignore
    /// it); `answers`: whether it reads the answers comments could be written on (comment-rate's
    /// denominator; theme-share never reads them); `touchpoints`: only these touchpoints of the
    /// namespaces (empty: all of them).
    pub fn query<S: AsRef<str>, T: AsRef<str>>(
        self,
        themes: &[S],
        answers: bool,
        touchpoints: &[T],
        current: (&Span, &CycleCounting),
        previous: Option<(&Span, &CycleCounting)>,
    ) -> String {
        let mut parts = Vec::new();
        let cycles = [(Cycle::Current, Some(current)), (Cycle::Previous, previous)];
        for (cycle, (span, counting)) in cycles
            .into_iter()
            .filter_map(|(cycle, read)| Some((cycle, read?)))
        {
            let hours = counting
                .ends
                .zip(counting.hour_parts)
                .map(|(ends, parts)| Counting::Hours(ends, parts));
            for (namespaces, how) in [
                (&counting.hours, hours),
                (
                    &counting.recorded,
                    Some(counting.ends.map_or(Counting::Recorded, Counting::Steps)),
                ),
                (&counting.raw, Some(Counting::Raw)),
            ] {
                let Some(how) = how.filter(|_| !namespaces.is_empty()) else {
                    continue;
                };
                parts.push(format!(
                    "label_replace({}, \"{CYCLE_LABEL}\", \"{}\", \"\", \"\")",
                    self.cycle_query(namespaces, touchpoints, themes, answers, span, how),
                    cycle.as_str()
                ));
            }
        }
        parts.join(" or ")
    }

    /// The family's query for one cycle over `namespaces` (only `touchpoints` of them, unless
    /// empty), counted as `counting` says.
    pub fn cycle_query<N: AsRef<str>, T: AsRef<str>, S: AsRef<str>>(
        self,
        namespaces: &[N],
        touchpoints: &[T],
        themes: &[S],
        answers: bool,
        span: &Span,
        counting: Counting,
    ) -> String {
        let mut ns = label_in("namespace", namespaces);
        if !touchpoints.is_empty() {
            ns = format!("{ns}, {}", label_in("touchpoint", touchpoints));
        }
        let counted =
            |metric: &str, matchers: &str, span: &Span| count(metric, matchers, span, counting);
        let by = |metric: &str, matchers: &str| {
            format!(
                "sum by (namespace, touchpoint, {}) ({})",
                self.key_label(),
                counted(metric, matchers, span)
            )
        };
        match self {
            Family::Survey(metric) => by(
                SURVEY_RESPONSES,
                &format!("{ns}, metric=\"{}\"", metric.as_str()),
            ),
            Family::Interactions => by(INTERACTIONS, &ns),
            Family::Waits => format!(
                "{} or label_replace(sum by (namespace, touchpoint) ({}), \"le\", \"{OFFERED}\", \"\", \"\")",
                by(&format!("{FIRST_RESPONSES}_bucket"), &ns),
                counted(
                    &format!("{DURATIONS}_count"),
                    &format!("{ns}, timing=\"wait\""),
                    span
                )
            ),
            Family::Comments => {
                let tag = |query: String, count: &str| {
                    format!("label_replace({query}, \"{COUNT_LABEL}\", \"{count}\", \"\", \"\")")
                };
                let mut parts = vec![tag(
                    format!(
                        "sum by (namespace, touchpoint, metric, segment) ({})",
                        counted(COMMENTS, &ns, span)
                    ),
                    "comments",
                )];
                if answers {
                    parts.push(tag(
                        format!(
                            "sum by (namespace, touchpoint, metric) ({})",
                            counted(SURVEY_RESPONSES, &ns, span)
                        ),
                        "answers",
                    ));
                    parts.push(tag(
                        format!(
                            "label_replace(sum by (namespace, touchpoint) ({}), \"metric\", \"interaction\", \"\", \"\")",
                            counted(INTERACTIONS, &ns, span)
                        ),
                        "answers",
                    ));
                }
                if !themes.is_empty() {
                    parts.push(tag(
                        format!(
                            "sum by (namespace, touchpoint, theme, metric, segment) ({})",
                            counted(
                                THEMES,
                                &format!("{ns}, {}", label_in("theme", themes)),
                                span
                            )
                        ),
                        "theme",
                    ));
                }
                parts.join(" or ")
            }
        }
    }
}

/// Which namespaces a family query reads from recorded increments and which from raw counters,
/// for one cycle (each namespace in exactly one list, both sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CycleCounting {
    /// Namespaces whose recorded steps and hourly sums cover the cycle's window: read from
    /// the hourly sums and the steps at the window's ends ([`Counting::Hours`]).
    pub hours: Vec<String>,
    /// The window's hourly sums: `hours` is empty without them.
    pub hour_parts: Option<HourParts>,
    /// Namespaces whose recorded steps cover the cycle's window (and their hourly sums do not).
    pub recorded: Vec<String>,
    /// The others.
    pub raw: Vec<String>,
    /// The server's range ends, when known: the recorded steps are then summed over ranges that
    /// hold each step once ([`Counting::Steps`]).
    pub ends: Option<RangeEnds>,
}

/// One row of the comments family, from its key (`count/theme/metric/segment`, the labels a
/// row lacks empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommentRow<'a> {
    /// `comments`, `answers` or `theme`.
    pub count: &'a str,
    /// The theme of a `theme` row.
    pub theme: &'a str,
    /// `nps`, `csat`, `ces` or `interaction`.
    pub metric: &'a str,
    /// The answer band or outcome (empty for `answers` rows).
    pub segment: &'a str,
}

impl<'a> CommentRow<'a> {
    /// The key a row is stored under.
    fn key(count: &str, theme: &str, metric: &str, segment: &str) -> String {
        format!("{count}/{theme}/{metric}/{segment}")
    }

    /// A row from its key.
    pub fn parse(key: &'a str) -> Option<CommentRow<'a>> {
        let mut parts = key.splitn(4, '/');
        Some(CommentRow {
            count: parts.next()?,
            theme: parts.next()?,
            metric: parts.next()?,
            segment: parts.next()?,
        })
    }

    /// Whether the row is of `count` and within `measure`'s metric and segment (either absent:
    /// any).
    fn within(&self, count: &str, measure: &BuiltinMeasure) -> bool {
        self.count == count
            && measure.metric.is_none_or(|m| m.as_str() == self.metric)
            && measure
                .segment
                .as_deref()
                .is_none_or(|segment| segment == self.segment)
    }
}

/// One family's answer: per (namespace, touchpoint), the value of each key label.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FamilyTable {
    rows: HashMap<(Cycle, String, String), Vec<(String, f64)>>,
}

impl FamilyTable {
    /// Indexes the samples of a family query. Samples without the labels the query groups by are
    /// an error: the answer is not the one asked for.
    pub fn from_samples(family: Family, samples: Vec<Sample>) -> Result<FamilyTable, KpiError> {
        let mut rows: HashMap<(Cycle, String, String), Vec<(String, f64)>> = HashMap::new();
        let key_label = family.key_label();
        for mut sample in samples {
            let mut take = |label: &str| {
                sample.labels.remove(label).ok_or_else(|| {
                    KpiError::UnexpectedResult(format!(
                        "a {family:?} row has no {label} label: {:?}",
                        sample.labels
                    ))
                })
            };
            let cycle = match take(CYCLE_LABEL)?.as_str() {
                "current" => Cycle::Current,
                "previous" => Cycle::Previous,
                other => {
                    return Err(KpiError::UnexpectedResult(format!(
                        "a {family:?} row has {CYCLE_LABEL}={other:?}"
                    )));
                }
            };
            let namespace = take("namespace")?;
            let touchpoint = take("touchpoint")?;
            let key = take(key_label)?;
            let key = match family {
                Family::Comments => {
                    let mut optional =
                        |label: &str| sample.labels.remove(label).unwrap_or_default();
                    let (theme, metric, segment) =
                        (optional("theme"), optional("metric"), optional("segment"));
                    CommentRow::key(&key, &theme, &metric, &segment)
                }
                _ => key,
            };
            rows.entry((cycle, namespace, touchpoint))
                .or_default()
                .push((key, sample.value));
        }
        Ok(FamilyTable { rows })
    }

    /// Adds the rows of another query of the same family over other touchpoints (a family
    /// query split to bound the series each reads).
    pub fn merge(&mut self, other: FamilyTable) {
        self.rows.extend(other.rows);
    }

    /// The rows of the previous cycle alone.
    pub fn previous_cycle(&self) -> FamilyTable {
        FamilyTable {
            rows: self
                .rows
                .iter()
                .filter(|((cycle, _, _), _)| *cycle == Cycle::Previous)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The rows of one touchpoint in one cycle (`None`: Prometheus has no series for it).
    pub fn touchpoint(
        &self,
        cycle: Cycle,
        namespace: &str,
        touchpoint: &str,
    ) -> Option<&[(String, f64)]> {
        self.rows
            .get(&(cycle, namespace.to_owned(), touchpoint.to_owned()))
            .map(Vec::as_slice)
    }
}

/// The value and samples of a builtin indicator over `scope`, from its family's table: the same
/// numbers as the compiled PromQL, including its empty answers (no series: `None` / `NoSeries`)
/// and its NaN (nothing counted: 0/0).
pub fn measure_builtin(
    measure: &BuiltinMeasure,
    scope: &QueryScope,
    table: &FamilyTable,
) -> Measurement {
    let current = read_builtin(measure, scope, table, Cycle::Current);
    Measurement {
        value: current.value,
        samples: current.samples,
        previous: Some(read_builtin(measure, scope, table, Cycle::Previous)),
        sources: None,
    }
}

/// The value and samples of a builtin indicator over `scope` in one cycle.
pub fn read_builtin(
    measure: &BuiltinMeasure,
    scope: &QueryScope,
    table: &FamilyTable,
    cycle: Cycle,
) -> Reading {
    let indicator = measure.indicator;
    let measured = scope.measuring(measure);
    let present: Vec<(&TouchpointScope, &[(String, f64)])> = measured
        .iter()
        .filter_map(|t| {
            table
                .touchpoint(cycle, &scope.namespace, &t.name)
                .map(|r| (*t, r))
        })
        .collect();
    if present.is_empty() {
        return Reading {
            value: None,
            samples: SampleCount::NoSeries,
        };
    }
    let sum_where = |keep: &dyn Fn(&TouchpointScope, &str) -> bool| -> f64 {
        present
            .iter()
            .flat_map(|(t, rows)| rows.iter().filter(|(k, _)| keep(t, k)).map(|(_, v)| *v))
            .sum()
    };
    let ratio = |numerator: f64, denominator: f64, scale: f64| Reading {
        value: Some(scale * numerator / denominator),
        samples: SampleCount::Counted(denominator),
    };
    match indicator {
        BuiltinIndicator::Nps => {
            let all = sum_where(&|_, _| true);
            let promoters = sum_where(&|_, k| NPS_PROMOTERS.contains(&k));
            let detractors = sum_where(&|_, k| NPS_DETRACTORS.contains(&k));
            ratio(promoters - detractors, all, 100.0)
        }
        BuiltinIndicator::Csat => {
            let all = sum_where(&|_, _| true);
            let top = sum_where(&|t, k| {
                let scale = t.csat_scale().unwrap_or(5);
                k.parse::<i32>().is_ok_and(|score| score >= scale - 1)
            });
            ratio(top, all, 100.0)
        }
        BuiltinIndicator::Ces => {
            let all = sum_where(&|_, k| score_in(k, 1, 7).is_some());
            let weighted: f64 = present
                .iter()
                .flat_map(|(_, rows)| rows.iter())
                .filter_map(|(k, v)| score_in(k, 1, 7).map(|s| f64::from(s) * v))
                .sum();
            ratio(weighted, all, 1.0)
        }
        BuiltinIndicator::Fcr | BuiltinIndicator::ResolutionRate => {
            let resolved: &[&str] = if indicator == BuiltinIndicator::Fcr {
                &CONTACT_OUTCOMES[..1]
            } else {
                &CONTACT_OUTCOMES[..2]
            };
            let contacts = sum_where(&|_, k| CONTACT_OUTCOMES.contains(&k));
            ratio(sum_where(&|_, k| resolved.contains(&k)), contacts, 100.0)
        }
        BuiltinIndicator::AbandonmentRate => {
            let all = sum_where(&|_, _| true);
            ratio(sum_where(&|_, k| k == "abandoned"), all, 100.0)
        }
        BuiltinIndicator::OutcomeShare => {
            let all = sum_where(&|_, _| true);
            let ended = sum_where(&|_, k| measure.outcomes.iter().any(|o| o == k));
            ratio(ended, all, 100.0)
        }
        BuiltinIndicator::FirstResponseTime => {
            let keep: Option<BTreeSet<u64>> = common_bounds(&measured)
                .map(|bounds| bounds.into_iter().map(f64::to_bits).collect());
            let mut buckets: BTreeMap<u64, f64> = BTreeMap::new();
            let mut count = 0.0;
            // Answered contacts only: the `offered` row (every wait) is not a bucket.
            for (_, rows) in &present {
                for (le, v) in rows.iter() {
                    let Some(bound) = parse_le(le) else { continue };
                    if bound == f64::INFINITY {
                        count += v;
                    }
                    if keep.as_ref().is_none_or(|k| k.contains(&bound.to_bits())) {
                        *buckets.entry(order_key(bound)).or_default() += v;
                    }
                }
            }
            let buckets: Vec<(f64, f64)> = buckets
                .into_iter()
                .map(|(k, v)| (from_order_key(k), v))
                .collect();
            Reading {
                value: Some(bucket_quantile(FIRST_RESPONSE_QUANTILE, &buckets)),
                samples: SampleCount::Counted(count),
            }
        }
        BuiltinIndicator::ServiceLevel => {
            let within = sum_where(&|t, k| {
                parse_le(k)
                    .zip(t.first_response_seconds)
                    .is_some_and(|(bound, promise)| bound == f64::from(promise))
            });
            let offered = sum_where(&|_, k| k == OFFERED);
            ratio(within, offered, 100.0)
        }
        BuiltinIndicator::CommentRate => {
            let rows = |count: &'static str| {
                move |_: &TouchpointScope, k: &str| {
                    CommentRow::parse(k).is_some_and(|row| row.within(count, measure))
                }
            };
            ratio(
                sum_where(&rows("comments")),
                sum_where(&rows("answers")),
                100.0,
            )
        }
        BuiltinIndicator::ThemeShare => {
            let theme = measure.theme.as_deref().unwrap_or_default();
            let comments = sum_where(&|_, k| {
                CommentRow::parse(k).is_some_and(|row| row.within("comments", measure))
            });
            let mentions = sum_where(&|_, k| {
                CommentRow::parse(k)
                    .is_some_and(|row| row.within("theme", measure) && row.theme == theme)
            });
            ratio(mentions, comments, 100.0)
        }
    }
}

fn score_in(label: &str, low: u8, high: u8) -> Option<u8> {
    label
        .parse::<u8>()
        .ok()
        .filter(|s| (low..=high).contains(s))
}

/// A bucket boundary label (`"60"`, `"60.0"`, `"+Inf"`).
pub fn parse_le(label: &str) -> Option<f64> {
    match label {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        other => other.parse::<f64>().ok().filter(|b| !b.is_nan()),
    }
}

/// A key that sorts non-NaN floats in numeric order.
fn order_key(value: f64) -> u64 {
    let bits = value.to_bits();
    if value.is_sign_negative() {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn from_order_key(key: u64) -> f64 {
    if key & (1 << 63) != 0 {
        f64::from_bits(key & !(1 << 63))
    } else {
        f64::from_bits(!key)
    }
}

/// Prometheus' `histogram_quantile` over classic buckets `(upper bound, cumulative count)`:
/// buckets with equal bounds are merged, counts are made monotonic, and the quantile is
/// interpolated linearly inside the bucket holding its rank (the lowest bucket starts at 0; a
/// rank in the `+Inf` bucket gives the highest finite bound). NaN without a `+Inf` bucket, with
/// fewer than two buckets, or with no observation — as Prometheus.
pub fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut sorted: Vec<(f64, f64)> = buckets.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    if sorted.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(sorted.len());
    for (bound, count) in sorted {
        match merged.last_mut() {
            Some(last) if last.0 == bound => last.1 += count,
            _ => merged.push((bound, count)),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for bucket in &mut merged {
        if bucket.1 > max {
            max = bucket.1;
        } else {
            bucket.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let searchable = merged.len() - 1;
    let b = merged[..searchable]
        .iter()
        .position(|bucket| bucket.1 >= rank)
        .unwrap_or(searchable);
    if b == searchable {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let bucket_end = merged[b].0;
    let mut count = merged[b].1;
    let mut bucket_start = 0.0;
    if b > 0 {
        bucket_start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CommentMetric, Outcome, SurveySignal, Timing};

    fn row(ns: &str, tp: &str, key_label: &str, key: &str, value: f64) -> Sample {
        Sample {
            labels: [
                ("namespace", ns),
                ("touchpoint", tp),
                (key_label, key),
                (CYCLE_LABEL, "current"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            value,
        }
    }

    fn touchpoint(name: &str, csat_scale: i32, promise: Option<u32>) -> TouchpointScope {
        TouchpointScope {
            name: name.into(),
            channel: format!("{name}-channel"),
            surveys: [SurveyMetric::Nps, SurveyMetric::Csat, SurveyMetric::Ces]
                .into_iter()
                .map(|metric| SurveySignal {
                    metric,
                    scale: (metric == SurveyMetric::Csat).then_some(csat_scale),
                })
                .collect(),
            outcomes: Outcome::ALL.to_vec(),
            custom_outcomes: Vec::new(),
            timings: vec![Timing::Wait],
            first_response_seconds: promise,
            themes: Vec::new(),
        }
    }

    fn scope(touchpoints: Vec<TouchpointScope>) -> QueryScope {
        QueryScope {
            namespace: "retail".into(),
            touchpoints,
        }
    }

    fn table(family: Family, rows: &[(&str, &str, f64)]) -> FamilyTable {
        let samples = rows
            .iter()
            .map(|(tp, key, v)| row("retail", tp, family.key_label(), key, *v))
            .collect();
        FamilyTable::from_samples(family, samples).expect("table")
    }

    #[test]
    fn family_queries_group_by_touchpoint() {
        let now: k8s_openapi::jiff::Timestamp = "2026-11-03T10:15:00Z".parse().expect("now");
        let window = crate::kpi::WindowSpec::parse("7d").expect("window");
        let (current, previous) = (window.current(now), window.previous(now));
        let n = |x: &str, o: &str, s: &str| {
            format!(
                "(((last_over_time({x}[7d]{o}) - last_over_time({x}[1h] offset {s})) or last_over_time({x}[7d]{o})) unless resets({x}[169h]{o}) > 0 or increase({x}[7d]{o}))"
            )
        };
        let nps = r#"cx_survey_responses_total{namespace=~"b2b|retail", metric="nps"}"#;
        let raw = CycleCounting {
            recorded: vec![],
            raw: vec!["b2b".into(), "retail".into()],
            ..CycleCounting::default()
        };
        let none: [&str; 0] = [];
        assert_eq!(
            Family::Survey(SurveyMetric::Nps).query(
                &none,
                false,
                &none,
                (&current, &raw),
                Some((&previous, &raw))
            ),
            format!(
                r#"label_replace(sum by (namespace, touchpoint, score) ({}), "cx_conductor_cycle", "current", "", "") or label_replace(sum by (namespace, touchpoint, score) ({}), "cx_conductor_cycle", "previous", "", "")"#,
                n(nps, "", "7d"),
                n(nps, " offset 7d", "14d")
            )
        );
        let interactions = r#"cx_interactions_total{namespace="retail"}"#;
        assert_eq!(
            Family::Interactions.cycle_query(
                &["retail"],
                &none,
                &none,
                false,
                &current,
                Counting::Raw
            ),
            format!(
                "sum by (namespace, touchpoint, outcome) ({})",
                n(interactions, "", "7d")
            )
        );
        assert_eq!(
            Family::Waits.cycle_query(&["retail"], &none, &none, false, &current, Counting::Raw),
            format!(
                r#"sum by (namespace, touchpoint, le) ({}) or label_replace(sum by (namespace, touchpoint) ({}), "le", "offered", "", "")"#,
                n(
                    r#"cx_first_response_seconds_bucket{namespace="retail"}"#,
                    "",
                    "7d"
                ),
                n(
                    r#"cx_interaction_duration_seconds_count{namespace="retail", timing="wait"}"#,
                    "",
                    "7d"
                )
            )
        );
        // Where the recorded increments cover a cycle, that cycle reads them: one sample per
        // touchpoint and 5-minute step, a namespace whose recordings do not cover the previous
        // cycle read raw there.
        let split = CycleCounting {
            recorded: vec!["retail".into()],
            raw: vec!["b2b".into()],
            ..CycleCounting::default()
        };
        let recorded = CycleCounting {
            recorded: vec!["b2b".into(), "retail".into()],
            ..CycleCounting::default()
        };
        assert_eq!(
            Family::Interactions.query(
                &none,
                false,
                &none,
                (&current, &recorded),
                Some((&previous, &split))
            ),
            format!(
                r#"label_replace(sum by (namespace, touchpoint, outcome) (sum_over_time(touchpoint:cx_interactions_total:increase5m{{namespace=~"b2b|retail"}}[7d])), "cx_conductor_cycle", "current", "", "") or label_replace(sum by (namespace, touchpoint, outcome) (sum_over_time(touchpoint:cx_interactions_total:increase5m{{namespace="retail"}}[7d] offset 7d)), "cx_conductor_cycle", "previous", "", "") or label_replace(sum by (namespace, touchpoint, outcome) ({}), "cx_conductor_cycle", "previous", "", "")"#,
                n(
                    r#"cx_interactions_total{namespace="b2b"}"#,
                    " offset 7d",
                    "14d"
                )
            )
        );
        // Where the server's range ends are known (2.x: closed), a millisecond less.
        let closed = CycleCounting {
            ends: Some(RangeEnds::Closed),
            ..recorded.clone()
        };
        let query = Family::Interactions.query(&none, false, &none, (&current, &closed), None);
        assert!(
            query.contains(r#"increase5m{namespace=~"b2b|retail"}[604799999ms])"#),
            "{query}"
        );
        // Where the hourly sums cover it too, a cycle reads them and the steps at its ends: 7
        // days from 2026-10-27T10:15 to 2026-11-03T10:15: the steps of (10:15, 10:55], the sums
        // of the hours 12:00 (steps of (10:55, 11:55]) to 09:00 seven days later (the last one
        // surely recorded by 10:15), their samples recorded up to 09:59:59.999, and the steps of
        // (08:55, 10:15].
        let parts = HourParts::of(&current, now.as_millisecond()).expect("hours");
        assert_eq!(parts.hours(), 7 * 24 - 2);
        let hourly = CycleCounting {
            hours: vec!["retail".into()],
            hour_parts: Some(parts),
            recorded: vec!["b2b".into()],
            ends: Some(RangeEnds::LeftOpen),
            ..CycleCounting::default()
        };
        let query = Family::Interactions.cycle_query(
            &["retail"],
            &none,
            &none,
            false,
            &current,
            Counting::Hours(RangeEnds::LeftOpen, parts),
        );
        let steps = "touchpoint:cx_interactions_total:increase5m{namespace=\"retail\"}";
        let hours = "touchpoint:cx_interactions_total:increase1h{namespace=\"retail\"}";
        assert_eq!(
            query,
            format!(
                r#"sum by (namespace, touchpoint, outcome) ((label_replace(sum_over_time({steps}[40m] @ 1793098500), "cx_conductor_hours_part", "head", "", "") or label_replace(sum_over_time({hours}[166h] @ 1793699999.999), "cx_conductor_hours_part", "hours", "", "") or label_replace(sum_over_time({steps}[80m] @ 1793700900), "cx_conductor_hours_part", "tail", "", "")))"#
            )
        );
        for family in [
            Family::Survey(SurveyMetric::Ces),
            Family::Interactions,
            Family::Waits,
            Family::Comments,
        ] {
            for (counting, answers) in [
                (&raw, true),
                (&split, false),
                (&recorded, true),
                (&closed, true),
                (&hourly, true),
            ] {
                promql_parser::parser::parse(&family.query(
                    &["delivery"],
                    answers,
                    &["tp-1", "tp-2"],
                    (&current, counting),
                    Some((&previous, counting)),
                ))
                .expect("parses");
            }
        }
    }

    #[test]
    fn survey_indicators_from_rows() {
        let s = scope(vec![touchpoint("web", 5, None), touchpoint("app", 7, None)]);
        // NPS: web 30 promoters (9, 10), 18 passives, 12 detractors; app 20/20/20.
        let nps = table(
            Family::Survey(SurveyMetric::Nps),
            &[
                ("web", "10", 20.0),
                ("web", "9", 10.0),
                ("web", "8", 18.0),
                ("web", "3", 12.0),
                ("app", "9", 20.0),
                ("app", "7", 20.0),
                ("app", "0", 20.0),
                ("other", "10", 1000.0),
            ],
        );
        let m = measure_builtin(&BuiltinIndicator::Nps.into(), &s, &nps);
        assert_eq!(m.value, Some(100.0 * (50.0 - 32.0) / 120.0));
        assert_eq!(m.samples, SampleCount::Counted(120.0));

        // CSAT: 5 points on web (top boxes 4-5), 7 points on app (6-7).
        let csat = table(
            Family::Survey(SurveyMetric::Csat),
            &[
                ("web", "5", 20.0),
                ("web", "4", 10.0),
                ("web", "3", 10.0),
                ("app", "7", 10.0),
                ("app", "6", 5.0),
                ("app", "5", 10.0),
                ("app", "4", 5.0),
            ],
        );
        let m = measure_builtin(&BuiltinIndicator::Csat.into(), &s, &csat);
        assert_eq!(m.value, Some(100.0 * 45.0 / 70.0));

        // CES: mean score.
        let ces = table(
            Family::Survey(SurveyMetric::Ces),
            &[("web", "7", 3.0), ("web", "1", 1.0), ("app", "4", 4.0)],
        );
        let m = measure_builtin(&BuiltinIndicator::Ces.into(), &s, &ces);
        assert_eq!(m.value, Some((21.0 + 1.0 + 16.0) / 8.0));
        assert_eq!(m.samples, SampleCount::Counted(8.0));

        // Series present but nothing counted: NaN, as 0/0 in PromQL.
        let zero = table(Family::Survey(SurveyMetric::Nps), &[("web", "10", 0.0)]);
        let m = measure_builtin(&BuiltinIndicator::Nps.into(), &s, &zero);
        assert!(m.value.is_some_and(f64::is_nan));
        assert_eq!(m.samples, SampleCount::Counted(0.0));

        // No series for any touchpoint in scope: no data, as an empty PromQL answer.
        let elsewhere = table(Family::Survey(SurveyMetric::Nps), &[("other", "10", 5.0)]);
        assert_eq!(
            measure_builtin(&BuiltinIndicator::Nps.into(), &s, &elsewhere),
            Measurement {
                value: None,
                samples: SampleCount::NoSeries,
                previous: Some(Reading {
                    value: None,
                    samples: SampleCount::NoSeries
                }),
                sources: None,
            }
        );
    }

    #[test]
    fn interaction_indicators_from_rows() {
        let s = scope(vec![
            touchpoint("call", 5, None),
            touchpoint("chat", 5, None),
        ]);
        let t = table(
            Family::Interactions,
            &[
                ("call", "resolved-first-contact", 30.0),
                ("call", "resolved", 10.0),
                ("call", "unresolved", 5.0),
                ("call", "escalated", 5.0),
                ("call", "abandoned", 10.0),
                ("chat", "resolved-first-contact", 20.0),
                ("chat", "completed", 20.0),
            ],
        );
        let fcr = measure_builtin(&BuiltinIndicator::Fcr.into(), &s, &t);
        assert_eq!(fcr.value, Some(100.0 * 50.0 / 70.0));
        assert_eq!(fcr.samples, SampleCount::Counted(70.0));
        let resolution = measure_builtin(&BuiltinIndicator::ResolutionRate.into(), &s, &t);
        assert_eq!(resolution.value, Some(100.0 * 60.0 / 70.0));
        let abandonment = measure_builtin(&BuiltinIndicator::AbandonmentRate.into(), &s, &t);
        assert_eq!(abandonment.value, Some(100.0 * 10.0 / 100.0));
        assert_eq!(abandonment.samples, SampleCount::Counted(100.0));
    }

    #[test]
    fn outcome_share_from_rows_over_the_touchpoints_declaring_the_outcomes() {
        let mut courier = touchpoint("courier", 5, None);
        courier.outcomes = vec![Outcome::Completed];
        courier.custom_outcomes = vec!["failed-attempt".into(), "rescheduled".into()];
        let mut store = touchpoint("store", 5, None);
        store.outcomes = vec![Outcome::Completed, Outcome::Abandoned];
        let mut till = touchpoint("till", 5, None);
        till.outcomes = vec![Outcome::Completed];
        let s = scope(vec![courier, store, till]);
        let t = table(
            Family::Interactions,
            &[
                ("courier", "completed", 60.0),
                ("courier", "failed-attempt", 15.0),
                ("courier", "rescheduled", 5.0),
                ("store", "completed", 18.0),
                ("store", "abandoned", 2.0),
                ("till", "completed", 1000.0),
            ],
        );
        let share = |outcomes: &[&str]| {
            let measure = BuiltinMeasure {
                outcomes: outcomes.iter().map(|o| (*o).to_owned()).collect(),
                ..BuiltinIndicator::OutcomeShare.into()
            };
            measure_builtin(&measure, &s, &t)
        };
        let failed = share(&["failed-attempt"]);
        assert_eq!(failed.value, Some(100.0 * 15.0 / 80.0));
        assert_eq!(failed.samples, SampleCount::Counted(80.0));
        // The till declares neither: its thousand sales dilute nothing.
        let either = share(&["failed-attempt", "abandoned"]);
        assert_eq!(either.value, Some(100.0 * 17.0 / 100.0));
        assert_eq!(either.samples, SampleCount::Counted(100.0));
        // Abandonment rate counts every interaction of the touchpoints that can be abandoned;
        // the courier's custom outcomes never enter resolution rate.
        let abandonment = measure_builtin(&BuiltinIndicator::AbandonmentRate.into(), &s, &t);
        assert_eq!(abandonment.value, Some(100.0 * 2.0 / 20.0));
    }

    #[test]
    fn wait_indicators_from_rows() {
        // call promises 70 s (an extra boundary), chat 60 s (a default one). Buckets count
        // answered contacts; `offered` counts every wait (call: 2 abandoned).
        let s = scope(vec![
            touchpoint("call", 5, Some(70)),
            touchpoint("chat", 5, Some(60)),
        ]);
        let t = table(
            Family::Waits,
            &[
                ("call", "60", 4.0),
                ("call", "70", 6.0),
                ("call", "75", 8.0),
                ("call", "90", 9.0),
                ("call", "+Inf", 10.0),
                ("call", "offered", 12.0),
                ("chat", "60.0", 9.0),
                ("chat", "75.0", 9.0),
                ("chat", "90.0", 10.0),
                ("chat", "+Inf", 10.0),
                ("chat", "offered", 10.0),
            ],
        );
        // Answered within the promise (call 6 within 70 s, chat 9 within 60 s) of 22 offered.
        let sl = measure_builtin(&BuiltinIndicator::ServiceLevel.into(), &s, &t);
        assert_eq!(sl.value, Some(100.0 * 15.0 / 22.0));
        assert_eq!(sl.samples, SampleCount::Counted(22.0));
        // Without the le=70 bucket only call has: 60 → 13, 75 → 17, 90 → 19, +Inf → 20.
        // Rank 18 falls in (75, 90]: 75 + 15 × (18 − 17) / (19 − 17).
        let frt = measure_builtin(&BuiltinIndicator::FirstResponseTime.into(), &s, &t);
        let p90 = frt.value.expect("value");
        assert!((p90 - 82.5).abs() < 1e-9, "{p90}");
        assert_eq!(frt.samples, SampleCount::Counted(20.0));
        // Nothing for the previous cycle in this table.
        assert_eq!(frt.previous.map(|p| p.samples), Some(SampleCount::NoSeries));
    }

    #[test]
    fn bucket_quantile_matches_prometheus() {
        let inf = f64::INFINITY;
        type Case = (f64, Vec<(f64, f64)>, f64);
        let cases: [Case; 8] = [
            // Lowest bucket interpolates from 0.
            (0.5, vec![(10.0, 10.0), (inf, 10.0)], 5.0),
            // Rank in the +Inf bucket: the highest finite bound.
            (0.9, vec![(10.0, 5.0), (20.0, 8.0), (inf, 10.0)], 20.0),
            (
                0.9,
                vec![(1.0, 0.0), (2.0, 5.0), (5.0, 10.0), (inf, 10.0)],
                4.4,
            ),
            // Non-monotonic counts are flattened.
            (
                0.5,
                vec![(1.0, 4.0), (2.0, 3.0), (4.0, 8.0), (inf, 8.0)],
                1.0,
            ),
            // Duplicate bounds ("60" and "60.0") are merged.
            (
                0.5,
                vec![(60.0, 2.0), (60.0, 2.0), (120.0, 8.0), (inf, 8.0)],
                60.0,
            ),
            // A negative lowest bound is returned as is.
            (0.1, vec![(-1.0, 5.0), (inf, 10.0)], -1.0),
            (0.5, vec![(10.0, 0.0), (inf, 0.0)], f64::NAN),
            (0.5, vec![(10.0, 3.0), (20.0, 5.0)], f64::NAN),
        ];
        for (q, buckets, expected) in cases {
            let got = bucket_quantile(q, &buckets);
            if expected.is_nan() {
                assert!(got.is_nan(), "{buckets:?}: {got}");
            } else {
                assert!(
                    (got - expected).abs() < 1e-9,
                    "{buckets:?}: {got} != {expected}"
                );
            }
        }
        assert!(bucket_quantile(f64::NAN, &[(inf, 1.0)]).is_nan());
        assert_eq!(bucket_quantile(-0.1, &[(inf, 1.0)]), f64::NEG_INFINITY);
        assert_eq!(bucket_quantile(1.1, &[(inf, 1.0)]), f64::INFINITY);
    }

    #[test]
    fn le_labels_and_ordering() {
        assert_eq!(parse_le("60"), Some(60.0));
        assert_eq!(parse_le("60.0"), Some(60.0));
        assert_eq!(parse_le("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_le("NaN"), None);
        assert_eq!(parse_le("x"), None);
        let mut keys: Vec<u64> = [3.0, -1.0, f64::INFINITY, 0.0, 0.5]
            .into_iter()
            .map(order_key)
            .collect();
        keys.sort_unstable();
        let back: Vec<f64> = keys.into_iter().map(from_order_key).collect();
        assert_eq!(back, [-1.0, 0.0, 0.5, 3.0, f64::INFINITY]);
    }

    #[test]
    fn rows_without_the_grouping_labels_are_refused() {
        let sample = Sample {
            labels: [("namespace".to_owned(), "retail".to_owned())].into(),
            value: 1.0,
        };
        let error = FamilyTable::from_samples(Family::Interactions, vec![sample])
            .expect_err("missing labels");
        assert_eq!(error.reason(), "UnexpectedResult");
    }

    /// A comments-family row as Prometheus answers it: the labels the row has.
    fn comment_row(tp: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        let mut sample = row("retail", tp, "metric", "", value);
        sample.labels.remove("metric");
        for (k, v) in labels {
            sample.labels.insert((*k).to_owned(), (*v).to_owned());
        }
        sample
    }

    #[test]
    fn comments_family_query_reads_comments_answers_and_the_named_themes() {
        let now: k8s_openapi::jiff::Timestamp = "2026-11-03T10:15:00Z".parse().expect("now");
        let span = crate::kpi::WindowSpec::parse("7d")
            .expect("window")
            .current(now);
        let n = |x: &str| {
            format!(
                "(((last_over_time({x}[7d]) - last_over_time({x}[1h] offset 7d)) or last_over_time({x}[7d])) unless resets({x}[169h]) > 0 or increase({x}[7d]))"
            )
        };
        let tag = |q: String, count: &str| {
            format!(r#"label_replace({q}, "cx_conductor_count", "{count}", "", "")"#)
        };
        let without_themes = [
            tag(
                format!(
                    "sum by (namespace, touchpoint, metric, segment) ({})",
                    n(r#"cx_feedback_comments_total{namespace="retail"}"#)
                ),
                "comments",
            ),
            tag(
                format!(
                    "sum by (namespace, touchpoint, metric) ({})",
                    n(r#"cx_survey_responses_total{namespace="retail"}"#)
                ),
                "answers",
            ),
            tag(
                format!(
                    r#"label_replace(sum by (namespace, touchpoint) ({}), "metric", "interaction", "", "")"#,
                    n(r#"cx_interactions_total{namespace="retail"}"#)
                ),
                "answers",
            ),
        ]
        .join(" or ");
        let none: [&str; 0] = [];
        assert_eq!(
            Family::Comments.cycle_query(&["retail"], &none, &none, true, &span, Counting::Raw),
            without_themes
        );
        let themes = tag(
            format!(
                "sum by (namespace, touchpoint, theme, metric, segment) ({})",
                n(r#"cx_feedback_themes_total{namespace="retail", theme=~"delivery|price"}"#)
            ),
            "theme",
        );
        assert_eq!(
            Family::Comments.cycle_query(
                &["retail"],
                &none,
                &["price", "delivery"],
                true,
                &span,
                Counting::Raw
            ),
            format!("{without_themes} or {themes}")
        );
        // Theme-share KPIs alone: no answer is read, only comments and mentions.
        let comments = tag(
            format!(
                "sum by (namespace, touchpoint, metric, segment) ({})",
                n(r#"cx_feedback_comments_total{namespace="retail"}"#)
            ),
            "comments",
        );
        assert_eq!(
            Family::Comments.cycle_query(
                &["retail"],
                &none,
                &["price", "delivery"],
                false,
                &span,
                Counting::Raw
            ),
            format!("{comments} or {themes}")
        );
    }

    #[test]
    fn theme_indicators_from_rows() {
        let mut web = touchpoint("web", 5, None);
        web.themes = vec!["delivery".into(), "price".into()];
        let mut app = touchpoint("app", 5, None);
        app.themes = vec!["price".into()];
        let s = scope(vec![web, app]);
        let samples = vec![
            // web: 40 nps answers (12 detractors), 10 commented by detractors, 4 by promoters;
            // 20 interactions, 5 commented (abandoned).
            comment_row("web", &[(COUNT_LABEL, "answers"), ("metric", "nps")], 40.0),
            comment_row(
                "web",
                &[(COUNT_LABEL, "answers"), ("metric", "interaction")],
                20.0,
            ),
            comment_row(
                "web",
                &[
                    (COUNT_LABEL, "comments"),
                    ("metric", "nps"),
                    ("segment", "detractor"),
                ],
                10.0,
            ),
            comment_row(
                "web",
                &[
                    (COUNT_LABEL, "comments"),
                    ("metric", "nps"),
                    ("segment", "promoter"),
                ],
                4.0,
            ),
            comment_row(
                "web",
                &[
                    (COUNT_LABEL, "comments"),
                    ("metric", "interaction"),
                    ("segment", "abandoned"),
                ],
                5.0,
            ),
            // Delivery: 6 detractor comments, 1 promoter comment, 2 abandoned interactions.
            comment_row(
                "web",
                &[
                    (COUNT_LABEL, "theme"),
                    ("theme", "delivery"),
                    ("metric", "nps"),
                    ("segment", "detractor"),
                ],
                6.0,
            ),
            comment_row(
                "web",
                &[
                    (COUNT_LABEL, "theme"),
                    ("theme", "delivery"),
                    ("metric", "nps"),
                    ("segment", "promoter"),
                ],
                1.0,
            ),
            comment_row(
                "web",
                &[
                    (COUNT_LABEL, "theme"),
                    ("theme", "delivery"),
                    ("metric", "interaction"),
                    ("segment", "abandoned"),
                ],
                2.0,
            ),
            comment_row(
                "web",
                &[
                    (COUNT_LABEL, "theme"),
                    ("theme", "price"),
                    ("metric", "nps"),
                    ("segment", "detractor"),
                ],
                3.0,
            ),
            // app: 10 nps answers, 5 commented by detractors, 5 of them about price; it does
            // not count delivery, so delivery KPIs leave it out.
            comment_row("app", &[(COUNT_LABEL, "answers"), ("metric", "nps")], 10.0),
            comment_row(
                "app",
                &[
                    (COUNT_LABEL, "comments"),
                    ("metric", "nps"),
                    ("segment", "detractor"),
                ],
                5.0,
            ),
            comment_row(
                "app",
                &[
                    (COUNT_LABEL, "theme"),
                    ("theme", "price"),
                    ("metric", "nps"),
                    ("segment", "detractor"),
                ],
                5.0,
            ),
        ];
        let table = FamilyTable::from_samples(Family::Comments, samples).expect("table");
        let share = |theme: &str, metric: Option<CommentMetric>, segment: Option<&str>| {
            measure_builtin(
                &BuiltinMeasure {
                    indicator: BuiltinIndicator::ThemeShare,
                    theme: Some(theme.into()),
                    metric,
                    segment: segment.map(Into::into),
                    outcomes: Vec::new(),
                },
                &s,
                &table,
            )
        };
        let detractor_delivery = share("delivery", Some(CommentMetric::Nps), Some("detractor"));
        assert_eq!(detractor_delivery.value, Some(100.0 * 6.0 / 10.0));
        assert_eq!(detractor_delivery.samples, SampleCount::Counted(10.0));
        let delivery = share("delivery", None, None);
        assert_eq!(delivery.value, Some(100.0 * 9.0 / 19.0));
        assert_eq!(delivery.samples, SampleCount::Counted(19.0));
        let abandoned = share(
            "delivery",
            Some(CommentMetric::Interaction),
            Some("abandoned"),
        );
        assert_eq!(abandoned.value, Some(100.0 * 2.0 / 5.0));
        let price = share("price", Some(CommentMetric::Nps), Some("detractor"));
        assert_eq!(price.value, Some(100.0 * 8.0 / 15.0));

        let rate = |metric: Option<CommentMetric>| {
            measure_builtin(
                &BuiltinMeasure {
                    indicator: BuiltinIndicator::CommentRate,
                    theme: None,
                    metric,
                    segment: None,
                    outcomes: Vec::new(),
                },
                &s,
                &table,
            )
        };
        let all = rate(None);
        assert_eq!(all.value, Some(100.0 * 24.0 / 70.0));
        assert_eq!(all.samples, SampleCount::Counted(70.0));
        let nps = rate(Some(CommentMetric::Nps));
        assert_eq!(nps.value, Some(100.0 * 19.0 / 50.0));
        assert_eq!(nps.samples, SampleCount::Counted(50.0));
        let interactions = rate(Some(CommentMetric::Interaction));
        assert_eq!(interactions.value, Some(100.0 * 5.0 / 20.0));
    }
}
