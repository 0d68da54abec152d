//! The collector's Prometheus series (DESIGN.md §4), with a bounded label set.
//!
//! Every child series is created up front, once, for each declared metric/score, outcome and
//! timing and every rejection reason: dashboards see zeros instead of "no data", and recording an
//! event is an array lookup plus an atomic add (no label hashing per event).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder, local::LocalHistogram,
};

use super::config::CollectorConfig;
use super::event::{
    ALL_METRICS, ALL_TIMINGS, Event, EventSchema, METRIC_COUNT, OUTCOME_SLOTS, Reason, Signal,
    TIMING_COUNT, metric_index, timing_index,
};
use crate::api::{Outcome, SurveyMetric};
use crate::themes::ThemeMatcher;

/// Bucket boundaries (seconds) of `cx_interaction_duration_seconds`, from a few seconds of web
/// latency to an hour of call handling. The channel's first-response promise is added to them.
pub const DEFAULT_DURATION_BUCKETS: [f64; 17] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0,
    1800.0, 3600.0,
];

/// Bucket boundaries (seconds) of `cx_first_response_seconds`: finer than the duration histogram
/// where first responses are promised (seconds to minutes), so the p90 that `first-response-time`
/// interpolates inside one bucket is off by at most that bucket's width (5 s up to a minute,
/// 15 s up to three). The channel's promise is added to them.
pub const FIRST_RESPONSE_BUCKETS: [f64; 26] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 75.0, 90.0,
    105.0, 120.0, 135.0, 150.0, 165.0, 180.0, 240.0, 300.0, 600.0, 3600.0,
];

/// Highest survey score of any metric (nps 10), so scores index a fixed array.
const SCORE_SLOTS: usize = 11;
const REASONS: usize = Reason::ALL.len();
/// Kinds of commented answer (the `metric` label of the comment series): the survey metrics in
/// [`metric_index`] order, then `interaction`.
const KINDS: usize = METRIC_COUNT + 1;
/// The `metric` label of an interaction's comment.
const INTERACTION_KIND: usize = METRIC_COUNT;
/// Segments of a kind: three answer bands for a survey metric, the outcome (builtin or custom)
/// for an interaction.
const SEGMENTS: usize = if OUTCOME_SLOTS > 3 { OUTCOME_SLOTS } else { 3 };

/// Comment counters of one series family, `[kind][segment]`, `None` where undeclared.
type BySegment<T> = [[T; SEGMENTS]; KINDS];

/// The answer band of a survey score: the `segment` label of `cx_feedback_comments_total` and
/// `cx_feedback_themes_total`, so "what do the detractors say" is one selector. `high` is the top
/// of the metric's scale:
/// - nps 0–10: 0–6 `detractor`, 7–8 `passive`, 9–10 `promoter`;
/// - csat 1–5: 1–2 `low`, 3 `neutral`, 4–5 `high`;
/// - csat 1–7 and ces 1–7: 1–3 `low`, 4 `neutral`, 5–7 `high`.
///
/// An interaction's comment has its outcome as segment (`completed`, `abandoned`, ...).
/// Returns the band's index (0 low, 1 neutral, 2 high) and label.
pub fn survey_segment(metric: SurveyMetric, score: u8, high: u8) -> (usize, &'static str) {
    let band = match (metric, high) {
        (SurveyMetric::Nps, _) => match score {
            0..=6 => 0,
            7..=8 => 1,
            _ => 2,
        },
        (_, 5) => match score {
            0..=2 => 0,
            3 => 1,
            _ => 2,
        },
        _ => match score {
            0..=3 => 0,
            4 => 1,
            _ => 2,
        },
    };
    (band, band_label(metric, band))
}

fn band_label(metric: SurveyMetric, band: usize) -> &'static str {
    let labels = if metric == SurveyMetric::Nps {
        ["detractor", "passive", "promoter"]
    } else {
        ["low", "neutral", "high"]
    };
    labels.get(band).copied().unwrap_or("high")
}

/// The `metric` label of a kind of commented answer.
fn kind_label(kind: usize) -> &'static str {
    ALL_METRICS
        .get(kind)
        .map_or("interaction", |metric| metric.as_str())
}

/// Every `(kind, segment, metric label, segment label)` a touchpoint's comments may have.
fn comment_slots(schema: &EventSchema) -> Vec<(usize, usize, &'static str, &str)> {
    let mut slots = Vec::new();
    for metric in ALL_METRICS {
        if schema.score_range(metric).is_some() {
            for band in 0..3 {
                let kind = metric_index(metric);
                slots.push((kind, band, kind_label(kind), band_label(metric, band)));
            }
        }
    }
    for (outcome, name) in schema.declared_outcome_ids() {
        slots.push((
            INTERACTION_KIND,
            outcome.index(),
            kind_label(INTERACTION_KIND),
            name,
        ));
    }
    slots
}

/// The metric families of one touchpoint. Clones share their series, so a reconfigured
/// touchpoint that keeps its labels keeps counting where it was: no counter reset.
#[derive(Clone)]
struct Families {
    /// `namespace`, `touchpoint`, `channel` and `stage`: the identity of every series.
    const_labels: HashMap<String, String>,
    received: IntCounter,
    rejected: IntCounterVec,
    survey: IntCounterVec,
    /// The interactions family and the `outcome` label values of its series.
    interactions: Option<(IntCounterVec, Vec<String>)>,
    /// The bucket boundaries and the histogram family built with them.
    durations: Option<(Vec<f64>, HistogramVec)>,
    /// The bucket boundaries and the first-response histogram built with them.
    first_responses: Option<(Vec<f64>, Histogram)>,
    /// The comment family and the `metric, segment` label values of its series.
    comments: (IntCounterVec, Vec<[String; 2]>),
    /// The theme family and the `theme, metric, segment` label values of its series.
    themes: Option<(IntCounterVec, Vec<[String; 3]>)>,
}

/// The collector's registry and pre-built series.
pub struct CollectorMetrics {
    registry: Registry,
    families: Families,
    received: IntCounter,
    rejected: [IntCounter; REASONS],
    /// `[metric][score]`: `None` for undeclared metrics and scores outside their range.
    survey: [[Option<IntCounter>; SCORE_SLOTS]; METRIC_COUNT],
    /// `[outcome]` ([`super::event::OutcomeId::index`]): `None` for undeclared outcomes.
    interactions: [Option<IntCounter>; OUTCOME_SLOTS],
    /// `[timing]`: `None` for undeclared timings.
    durations: [Option<Histogram>; TIMING_COUNT],
    /// Waits of answered contacts (every outcome but `abandoned`), when `wait` is declared.
    first_responses: Option<Histogram>,
    /// `[metric][score]`: the segment index of a survey answer.
    segments: [[u8; SCORE_SLOTS]; METRIC_COUNT],
    /// Commented answers, `[kind][segment]`.
    comments: BySegment<Option<IntCounter>>,
    /// The declared themes, when there are any.
    matcher: Option<ThemeMatcher>,
    /// Theme mentions, by theme (the matcher's order), then `[kind][segment]`.
    themes: Vec<BySegment<Option<IntCounter>>>,
}

impl CollectorMetrics {
    /// Registers every series of a touchpoint, labelled with its namespace, name, channel and
    /// stage.
    pub fn new(config: &CollectorConfig, schema: &EventSchema) -> Result<Self, prometheus::Error> {
        Self::continuing(config, schema, None)
    }

    /// Like [`CollectorMetrics::new`], continuing the series of `previous` (the same touchpoint
    /// before a reconfiguration) wherever their labels and buckets are unchanged.
    pub fn continuing(
        config: &CollectorConfig,
        schema: &EventSchema,
        previous: Option<&CollectorMetrics>,
    ) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let const_labels: HashMap<String, String> = [
            ("namespace", config.namespace.as_str()),
            ("touchpoint", config.touchpoint.as_str()),
            ("channel", config.channel.as_str()),
            ("stage", config.stage.as_str()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let opts =
            |name: &str, help: &str| Opts::new(name, help).const_labels(const_labels.clone());

        // The families of `previous` carry on only under the same identity labels.
        let previous = previous
            .map(|p| &p.families)
            .filter(|p| p.const_labels == const_labels);
        let received = match previous {
            Some(p) => p.received.clone(),
            None => IntCounter::with_opts(opts(
                "cx_events_received_total",
                "Feedback events accepted: validated and counted in the other cx_ series.",
            ))?,
        };
        register(&registry, &received)?;

        let rejected_vec = match previous {
            Some(p) => p.rejected.clone(),
            None => IntCounterVec::new(
                opts(
                    "cx_events_rejected_total",
                    "Feedback events refused, by reason. A refused request (auth, size, content \
                     type, syntax) counts once whatever the number of events in it.",
                ),
                &["reason"],
            )?,
        };
        register(&registry, &rejected_vec)?;
        let rejected = Reason::ALL.map(|reason| rejected_vec.with_label_values(&[reason.as_str()]));

        let survey_vec = match previous {
            Some(p) => p.survey.clone(),
            None => IntCounterVec::new(
                opts(
                    "cx_survey_responses_total",
                    "Survey answers, by metric (nps, csat, ces) and score.",
                ),
                &["metric", "score"],
            )?,
        };
        let mut survey: [[Option<IntCounter>; SCORE_SLOTS]; METRIC_COUNT] = Default::default();
        for metric in ALL_METRICS {
            if let Some((low, high)) = schema.score_range(metric) {
                for score in low..=high {
                    let label = score.to_string();
                    let counter = survey_vec.with_label_values(&[metric.as_str(), &label]);
                    if let Some(slot) = survey[metric_index(metric)].get_mut(usize::from(score)) {
                        *slot = Some(counter);
                    }
                }
            }
        }
        if !config.surveys.is_empty() {
            register(&registry, &survey_vec)?;
        }

        let mut interactions: [Option<IntCounter>; OUTCOME_SLOTS] = Default::default();
        let mut durations: [Option<Histogram>; TIMING_COUNT] = Default::default();
        let mut interactions_family = None;
        let mut durations_family = None;
        let mut first_responses = None;
        let mut first_responses_family = None;
        if config.interactions.is_some() {
            let declared = schema.declared_outcome_ids();
            let labels: Vec<String> = declared.iter().map(|(_, n)| (*n).to_owned()).collect();
            let interactions_vec = match previous.and_then(|p| p.interactions.as_ref()) {
                Some((family, before)) => {
                    // Series of outcomes no longer declared disappear (the label's values stay
                    // the declared set); the others keep counting.
                    for gone in before.iter().filter(|b| !labels.contains(b)) {
                        let _ = family.remove_label_values(&[gone.as_str()]);
                    }
                    family.clone()
                }
                None => IntCounterVec::new(
                    opts(
                        "cx_interactions_total",
                        "Interactions, by how they ended: a builtin outcome or one of the \
                         touchpoint's custom outcomes.",
                    ),
                    &["outcome"],
                )?,
            };
            register(&registry, &interactions_vec)?;
            for (outcome, name) in &declared {
                if let Some(slot) = interactions.get_mut(outcome.index()) {
                    *slot = Some(interactions_vec.with_label_values(&[*name]));
                }
            }
            interactions_family = Some((interactions_vec, labels));
            if ALL_TIMINGS.iter().any(|t| schema.declares_timing(*t)) {
                let buckets = duration_buckets(config.first_response_seconds);
                let durations_vec = match previous
                    .and_then(|p| p.durations.clone())
                    .filter(|(kept, _)| *kept == buckets)
                {
                    Some((_, family)) => family,
                    None => HistogramVec::new(
                        HistogramOpts::new(
                            "cx_interaction_duration_seconds",
                            "Interaction durations in seconds, by timing: wait (until first \
                             response) and handle (active handling).",
                        )
                        .const_labels(const_labels.clone())
                        .buckets(buckets.clone()),
                        &["timing"],
                    )?,
                };
                durations_family = Some((buckets, durations_vec.clone()));
                register(&registry, &durations_vec)?;
                for timing in ALL_TIMINGS {
                    if schema.declares_timing(timing) {
                        durations[timing_index(timing)] =
                            Some(durations_vec.with_label_values(&[timing.as_str()]));
                    }
                }
            }
            if schema.declares_timing(crate::api::Timing::Wait) {
                let buckets = first_response_buckets(config.first_response_seconds);
                let kept = previous
                    .and_then(|p| p.first_responses.clone())
                    .filter(|(kept, _)| *kept == buckets);
                let histogram = match kept {
                    Some((_, histogram)) => histogram,
                    None => Histogram::with_opts(
                        HistogramOpts::new(
                            "cx_first_response_seconds",
                            "Wait until the first response of answered contacts (every outcome \
                             but abandoned), in seconds: first-response time and service level.",
                        )
                        .const_labels(const_labels.clone())
                        .buckets(buckets.clone()),
                    )?,
                };
                first_responses_family = Some((buckets, histogram.clone()));
                register(&registry, &histogram)?;
                first_responses = Some(histogram);
            }
        }

        let mut segments = [[0u8; SCORE_SLOTS]; METRIC_COUNT];
        for metric in ALL_METRICS {
            if let Some((_, high)) = schema.score_range(metric) {
                for (score, slot) in segments[metric_index(metric)].iter_mut().enumerate() {
                    let score = u8::try_from(score).unwrap_or(u8::MAX);
                    *slot = survey_segment(metric, score, high).0 as u8;
                }
            }
        }
        let slots = comment_slots(schema);
        let comment_labels: Vec<[String; 2]> = slots
            .iter()
            .map(|(_, _, metric, segment)| [(*metric).to_owned(), (*segment).to_owned()])
            .collect();
        let comments_vec = match previous {
            Some(p) => {
                // Series of segments no longer declared (a removed outcome) disappear.
                let (family, before) = &p.comments;
                for gone in before.iter().filter(|b| !comment_labels.contains(b)) {
                    let _ = family.remove_label_values(&[gone[0].as_str(), gone[1].as_str()]);
                }
                family.clone()
            }
            None => IntCounterVec::new(
                opts(
                    "cx_feedback_comments_total",
                    "Accepted events with a comment, by metric (nps, csat, ces, or interaction) \
                     and segment (the answer band: detractor/passive/promoter for nps, \
                     low/neutral/high for csat and ces; the outcome for an interaction).",
                ),
                &["metric", "segment"],
            )?,
        };
        register(&registry, &comments_vec)?;
        let mut comments: BySegment<Option<IntCounter>> = Default::default();
        for (kind, segment, metric, label) in &slots {
            if let Some(slot) = comments.get_mut(*kind).and_then(|k| k.get_mut(*segment)) {
                *slot = Some(comments_vec.with_label_values(&[*metric, *label]));
            }
        }

        let mut matcher = None;
        let mut themes = Vec::new();
        let mut themes_family = None;
        if !config.themes.is_empty() {
            let compiled = ThemeMatcher::new(&config.themes).map_err(|errors| {
                let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                prometheus::Error::Msg(errors.join("; "))
            })?;
            let mut labels = Vec::with_capacity(compiled.names().len() * slots.len());
            for name in compiled.names() {
                for (_, _, metric, segment) in &slots {
                    labels.push([name.clone(), (*metric).to_owned(), (*segment).to_owned()]);
                }
            }
            let themes_vec = match previous.and_then(|p| p.themes.as_ref()) {
                Some((family, before)) => {
                    // Series of themes (or segments) no longer declared disappear; the others
                    // keep counting.
                    let kept: HashSet<&[String; 3]> = labels.iter().collect();
                    for gone in before.iter().filter(|b| !kept.contains(b)) {
                        let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
                        let _ = family.remove_label_values(&gone);
                    }
                    family.clone()
                }
                None => IntCounterVec::new(
                    opts(
                        "cx_feedback_themes_total",
                        "Comments mentioning a declared theme, by theme, metric and segment \
                         (as cx_feedback_comments_total). A comment counts once per theme it \
                         mentions.",
                    ),
                    &["theme", "metric", "segment"],
                )?,
            };
            register(&registry, &themes_vec)?;
            for name in compiled.names() {
                let mut counters: BySegment<Option<IntCounter>> = Default::default();
                for (kind, segment, metric, label) in &slots {
                    if let Some(slot) = counters.get_mut(*kind).and_then(|k| k.get_mut(*segment)) {
                        *slot = Some(themes_vec.with_label_values(&[name.as_str(), metric, label]));
                    }
                }
                themes.push(counters);
            }
            themes_family = Some((themes_vec, labels));
            matcher = Some(compiled);
        }

        Ok(CollectorMetrics {
            registry,
            families: Families {
                const_labels,
                received: received.clone(),
                rejected: rejected_vec,
                survey: survey_vec,
                interactions: interactions_family,
                durations: durations_family,
                first_responses: first_responses_family,
                comments: (comments_vec, comment_labels),
                themes: themes_family,
            },
            received,
            rejected,
            survey,
            interactions,
            durations,
            first_responses,
            segments,
            comments,
            matcher,
            themes,
        })
    }

    /// The `[kind][segment]` slot of a commented answer.
    fn slot(&self, signal: &Signal) -> (usize, usize) {
        match *signal {
            Signal::Survey { metric, score } => {
                let index = metric_index(metric);
                let segment = self.segments[index]
                    .get(usize::from(score))
                    .copied()
                    .unwrap_or(0);
                (index, usize::from(segment))
            }
            Signal::Interaction { outcome, .. } => (INTERACTION_KIND, outcome.index()),
        }
    }

    /// Counts a comment and the themes it mentions.
    fn record_comment(&self, signal: &Signal, comment: &str) {
        let (kind, segment) = self.slot(signal);
        fn at(
            counters: &BySegment<Option<IntCounter>>,
            kind: usize,
            segment: usize,
        ) -> Option<&IntCounter> {
            counters
                .get(kind)
                .and_then(|k| k.get(segment))
                .and_then(Option::as_ref)
        }
        if let Some(counter) = at(&self.comments, kind, segment) {
            counter.inc();
        }
        if let Some(matcher) = &self.matcher {
            for theme in matcher.matches(comment).iter() {
                if let Some(counter) = self
                    .themes
                    .get(theme)
                    .and_then(|counters| at(counters, kind, segment))
                {
                    counter.inc();
                }
            }
        }
    }

    /// Counts one accepted event.
    pub fn record(&self, event: &Event<'_>) {
        if let Some(comment) = &event.comment {
            self.record_comment(&event.signal, comment);
        }
        match event.signal {
            Signal::Survey { metric, score } => {
                if let Some(Some(counter)) =
                    self.survey[metric_index(metric)].get(usize::from(score))
                {
                    counter.inc();
                }
            }
            Signal::Interaction {
                outcome,
                wait_seconds,
                handle_seconds,
            } => {
                if let Some(Some(counter)) = self.interactions.get(outcome.index()) {
                    counter.inc();
                }
                for (index, seconds) in [wait_seconds, handle_seconds].into_iter().enumerate() {
                    if let (Some(seconds), Some(Some(histogram))) =
                        (seconds, self.durations.get(index))
                    {
                        histogram.observe(seconds);
                    }
                }
                if let (Some(seconds), Some(histogram), true) = (
                    wait_seconds,
                    &self.first_responses,
                    outcome != Outcome::Abandoned,
                ) {
                    histogram.observe(seconds);
                }
            }
        }
        self.received.inc();
    }

    /// The names of the declared themes `comment` mentions, in declaration order.
    pub fn themes_of(&self, comment: &str) -> Vec<&str> {
        let Some(matcher) = &self.matcher else {
            return Vec::new();
        };
        let names = matcher.names();
        matcher
            .matches(comment)
            .iter()
            .filter_map(|theme| names.get(theme).map(String::as_str))
            .collect()
    }

    /// Counts one refused event or request.
    pub fn reject(&self, reason: Reason) {
        self.rejected[reason.index()].inc();
    }

    /// A batch accumulator: cheap per-event recording, applied at once by
    /// [`BatchTally::commit`], or not at all when dropped.
    pub fn tally(&self) -> BatchTally<'_> {
        BatchTally {
            metrics: self,
            received: 0,
            rejected: [0; REASONS],
            survey: [[0; SCORE_SLOTS]; METRIC_COUNT],
            interactions: [0; OUTCOME_SLOTS],
            durations: self
                .durations
                .each_ref()
                .map(|histogram| histogram.as_ref().map(Histogram::local)),
            first_responses: self.first_responses.as_ref().map(Histogram::local),
            comments: [[0; SEGMENTS]; KINDS],
            themes: Vec::new(),
        }
    }

    /// Number of accepted events so far (for logs).
    pub fn received(&self) -> u64 {
        self.received.get()
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        render_families(self.registry.gather())
    }

    /// Every series, for a pool to merge with its other touchpoints'.
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }
}

/// The text exposition of `families`, merging families of the same name (a pool gathers one
/// per touchpoint; the format allows each name once).
pub fn render_families(
    families: impl IntoIterator<Item = MetricFamily>,
) -> Result<String, prometheus::Error> {
    let mut merged: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for mut family in families {
        match merged.entry(family.name().to_owned()) {
            Entry::Occupied(mut kept) => kept.get_mut().mut_metric().extend(family.take_metric()),
            Entry::Vacant(slot) => {
                slot.insert(family);
            }
        }
    }
    let merged: Vec<MetricFamily> = merged.into_values().collect();
    let mut buffer = Vec::with_capacity(8 * 1024);
    TextEncoder::new().encode(&merged, &mut buffer)?;
    String::from_utf8(buffer).map_err(|error| prometheus::Error::Msg(error.to_string()))
}

fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: &C,
) -> Result<(), prometheus::Error> {
    registry.register(Box::new(collector.clone()))
}

/// The histogram's bucket boundaries: the defaults plus the channel's first-response promise, so
/// "answered within the promise" is an exact bucket rather than an interpolation.
pub fn duration_buckets(first_response_seconds: Option<u32>) -> Vec<f64> {
    let mut buckets = DEFAULT_DURATION_BUCKETS.to_vec();
    if let Some(seconds) = first_response_seconds.filter(|s| *s > 0) {
        buckets.push(f64::from(seconds));
    }
    buckets.sort_by(f64::total_cmp);
    buckets.dedup();
    buckets
}

/// The first-response histogram's bucket boundaries: [`FIRST_RESPONSE_BUCKETS`] plus the
/// channel's promise, so "answered within the promise" is an exact bucket.
pub fn first_response_buckets(first_response_seconds: Option<u32>) -> Vec<f64> {
    let mut buckets = FIRST_RESPONSE_BUCKETS.to_vec();
    if let Some(seconds) = first_response_seconds.filter(|s| *s > 0) {
        buckets.push(f64::from(seconds));
    }
    buckets.sort_by(f64::total_cmp);
    buckets.dedup();
    buckets
}

/// Counts of one batch, kept apart from the shared series until the batch is answered.
pub struct BatchTally<'m> {
    metrics: &'m CollectorMetrics,
    received: u64,
    rejected: [u64; REASONS],
    survey: [[u64; SCORE_SLOTS]; METRIC_COUNT],
    interactions: [u64; OUTCOME_SLOTS],
    durations: [Option<LocalHistogram>; TIMING_COUNT],
    first_responses: Option<LocalHistogram>,
    comments: BySegment<u64>,
    /// By theme; allocated on the batch's first theme mention.
    themes: Vec<BySegment<u64>>,
}

impl BatchTally<'_> {
    /// Counts one accepted event of the batch.
    pub fn record(&mut self, event: &Event<'_>) {
        if let Some(comment) = &event.comment {
            let (kind, segment) = self.metrics.slot(&event.signal);
            if let Some(count) = self.comments.get_mut(kind).and_then(|k| k.get_mut(segment)) {
                *count += 1;
            }
            if let Some(matcher) = &self.metrics.matcher {
                for theme in matcher.matches(comment).iter() {
                    if self.themes.is_empty() {
                        self.themes = vec![[[0; SEGMENTS]; KINDS]; matcher.names().len()];
                    }
                    if let Some(count) = self
                        .themes
                        .get_mut(theme)
                        .and_then(|t| t.get_mut(kind))
                        .and_then(|k| k.get_mut(segment))
                    {
                        *count += 1;
                    }
                }
            }
        }
        match event.signal {
            Signal::Survey { metric, score } => {
                if let Some(count) = self.survey[metric_index(metric)].get_mut(usize::from(score)) {
                    *count += 1;
                }
            }
            Signal::Interaction {
                outcome,
                wait_seconds,
                handle_seconds,
            } => {
                if let Some(count) = self.interactions.get_mut(outcome.index()) {
                    *count += 1;
                }
                for (index, seconds) in [wait_seconds, handle_seconds].into_iter().enumerate() {
                    if let (Some(seconds), Some(Some(histogram))) =
                        (seconds, self.durations.get(index))
                    {
                        histogram.observe(seconds);
                    }
                }
                if let (Some(seconds), Some(histogram), true) = (
                    wait_seconds,
                    &self.first_responses,
                    outcome != Outcome::Abandoned,
                ) {
                    histogram.observe(seconds);
                }
            }
        }
        self.received += 1;
    }

    /// Counts one refused event of the batch.
    pub fn reject(&mut self, reason: Reason) {
        self.rejected[reason.index()] += 1;
    }

    /// Events accepted in this batch.
    pub fn accepted(&self) -> u64 {
        self.received
    }

    /// Events rejected in this batch.
    pub fn rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Adds the batch to the shared series.
    pub fn commit(self) {
        let metrics = self.metrics;
        for (slots, counts) in metrics.survey.iter().zip(&self.survey) {
            for (slot, count) in slots.iter().zip(counts) {
                if let (Some(counter), 1..) = (slot, *count) {
                    counter.inc_by(*count);
                }
            }
        }
        for (slot, count) in metrics.interactions.iter().zip(&self.interactions) {
            if let (Some(counter), 1..) = (slot, *count) {
                counter.inc_by(*count);
            }
        }
        let commented = std::iter::once((&metrics.comments, &self.comments))
            .chain(metrics.themes.iter().zip(&self.themes));
        for (counters, counts) in commented {
            for (slots, counts) in counters.iter().zip(counts) {
                for (slot, count) in slots.iter().zip(counts) {
                    if let (Some(counter), 1..) = (slot, *count) {
                        counter.inc_by(*count);
                    }
                }
            }
        }
        for histogram in self
            .durations
            .iter()
            .chain([&self.first_responses])
            .flatten()
        {
            histogram.flush();
        }
        for (counter, count) in metrics.rejected.iter().zip(&self.rejected) {
            if *count > 0 {
                counter.inc_by(*count);
            }
        }
        if self.received > 0 {
            metrics.received.inc_by(self.received);
        }
    }
}

impl Drop for BatchTally<'_> {
    /// A batch that was not committed leaves no trace (local histograms flush on drop otherwise).
    fn drop(&mut self) {
        for histogram in self
            .durations
            .iter()
            .chain([&self.first_responses])
            .flatten()
        {
            histogram.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Outcome, SurveyMetric};
    use crate::collector::event::parse_event;

    fn metrics() -> CollectorMetrics {
        let config: CollectorConfig = serde_yaml::from_str(
            r#"
namespace: retail
touchpoint: web-checkout
channel: web
stage: purchase
surveys: [{ metric: nps }, { metric: csat }]
interactions: { outcomes: [completed, abandoned], timings: [wait, handle] }
maxEventBytes: 1024
firstResponseSeconds: 25
"#,
        )
        .expect("test config");
        let schema = EventSchema::from_config(&config).expect("valid");
        CollectorMetrics::new(&config, &schema).expect("metrics")
    }

    /// The value of the series `name` whose labels include `labels`, checking the touchpoint's
    /// constant labels too.
    #[track_caller]
    fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = matching(text, name, labels);
        assert_eq!(found.len(), 1, "{name}{labels:?} in\n{text}");
        found[0]
    }

    /// Values of the series `name` with exactly `labels` plus the touchpoint's constant labels.
    fn matching(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let constant = [
            ("namespace", "retail"),
            ("touchpoint", "web-checkout"),
            ("channel", "web"),
            ("stage", "purchase"),
        ];
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (series_name, rest) = series.split_once('{').unwrap_or((series, "}"));
                let pairs: Vec<(&str, &str)> = rest
                    .trim_end_matches('}')
                    .split(',')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(k, v)| (k, v.trim_matches('"')))
                    .collect();
                let wanted = labels.iter().chain(constant.iter());
                let matches = series_name == name
                    && wanted.clone().all(|label| pairs.contains(label))
                    && pairs.len() == labels.len() + constant.len();
                matches.then(|| value.parse().ok()).flatten()
            })
            .collect()
    }

    #[test]
    fn every_declared_series_starts_at_zero() {
        let text = metrics().render().expect("render");
        assert_eq!(value(&text, "cx_events_received_total", &[]), 0.0);
        for reason in Reason::ALL {
            let labels = [("reason", reason.as_str())];
            assert_eq!(value(&text, "cx_events_rejected_total", &labels), 0.0);
        }
        for (metric, scores) in [("nps", 0..=10), ("csat", 1..=5)] {
            for score in scores {
                let score = score.to_string();
                let labels = [("metric", metric), ("score", score.as_str())];
                assert_eq!(value(&text, "cx_survey_responses_total", &labels), 0.0);
            }
        }
        // Scores outside the range and undeclared metrics, outcomes and timings have no series.
        let survey = "cx_survey_responses_total";
        assert!(matching(&text, survey, &[("metric", "csat"), ("score", "0")]).is_empty());
        assert!(matching(&text, survey, &[("metric", "csat"), ("score", "6")]).is_empty());
        assert!(matching(&text, survey, &[("metric", "ces"), ("score", "1")]).is_empty());
        assert!(matching(&text, "cx_interactions_total", &[("outcome", "error")]).is_empty());
        for outcome in ["completed", "abandoned"] {
            let labels = [("outcome", outcome)];
            assert_eq!(value(&text, "cx_interactions_total", &labels), 0.0);
        }
        for timing in ["wait", "handle"] {
            let labels = [("timing", timing)];
            assert_eq!(
                value(&text, "cx_interaction_duration_seconds_count", &labels),
                0.0
            );
        }
    }

    #[test]
    fn histogram_buckets_include_the_first_response_promise() {
        assert_eq!(duration_buckets(Some(25))[5..8], [20.0, 25.0, 30.0]);
        assert_eq!(
            duration_buckets(Some(60)),
            DEFAULT_DURATION_BUCKETS.to_vec()
        );
        assert_eq!(duration_buckets(None), DEFAULT_DURATION_BUCKETS.to_vec());
        assert_eq!(duration_buckets(Some(0)), DEFAULT_DURATION_BUCKETS.to_vec());
        let text = metrics().render().expect("render");
        let labels = [("timing", "wait"), ("le", "25")];
        assert_eq!(
            value(&text, "cx_interaction_duration_seconds_bucket", &labels),
            0.0
        );
    }

    #[test]
    fn recorded_events_are_counted_exactly() {
        let metrics = metrics();
        metrics.record(&Event::from(Signal::Survey {
            metric: SurveyMetric::Nps,
            score: 10,
        }));
        metrics.record(&Event::from(Signal::Survey {
            metric: SurveyMetric::Nps,
            score: 10,
        }));
        metrics.record(&Event::from(Signal::Interaction {
            outcome: Outcome::Abandoned.into(),
            wait_seconds: Some(25.0),
            handle_seconds: None,
        }));
        metrics.reject(Reason::ScoreOutOfRange);
        let text = metrics.render().expect("render");
        assert_eq!(value(&text, "cx_events_received_total", &[]), 3.0);
        assert_eq!(
            value(
                &text,
                "cx_survey_responses_total",
                &[("metric", "nps"), ("score", "10")]
            ),
            2.0
        );
        assert_eq!(
            value(&text, "cx_interactions_total", &[("outcome", "abandoned")]),
            1.0
        );
        assert_eq!(
            value(
                &text,
                "cx_interaction_duration_seconds_bucket",
                &[("timing", "wait"), ("le", "20")]
            ),
            0.0
        );
        assert_eq!(
            value(
                &text,
                "cx_interaction_duration_seconds_bucket",
                &[("timing", "wait"), ("le", "25")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                "cx_interaction_duration_seconds_sum",
                &[("timing", "wait")]
            ),
            25.0
        );
        // An abandoned contact waited, but was never answered.
        assert_eq!(value(&text, "cx_first_response_seconds_count", &[]), 0.0);
        metrics.record(&Event::from(Signal::Interaction {
            outcome: Outcome::Completed.into(),
            wait_seconds: Some(22.0),
            handle_seconds: None,
        }));
        let text = metrics.render().expect("render");
        assert_eq!(
            value(&text, "cx_first_response_seconds_bucket", &[("le", "20")]),
            0.0
        );
        assert_eq!(
            value(&text, "cx_first_response_seconds_bucket", &[("le", "25")]),
            1.0
        );
        assert_eq!(value(&text, "cx_first_response_seconds_count", &[]), 1.0);
        assert_eq!(
            value(
                &text,
                "cx_interaction_duration_seconds_count",
                &[("timing", "handle")]
            ),
            0.0
        );
        assert_eq!(
            value(
                &text,
                "cx_events_rejected_total",
                &[("reason", "score_out_of_range")]
            ),
            1.0
        );
    }

    #[test]
    fn a_batch_counts_only_when_committed() {
        let metrics = metrics();
        let event = Event::from(Signal::Interaction {
            outcome: Outcome::Completed.into(),
            wait_seconds: Some(3.0),
            handle_seconds: Some(100.0),
        });
        {
            let mut discarded = metrics.tally();
            discarded.record(&event);
            discarded.reject(Reason::Malformed);
        }
        let mut tally = metrics.tally();
        tally.record(&event);
        tally.record(&event);
        tally.reject(Reason::UnknownOutcome);
        assert_eq!((tally.accepted(), tally.rejected()), (2, 1));
        tally.commit();
        let text = metrics.render().expect("render");
        assert_eq!(value(&text, "cx_events_received_total", &[]), 2.0);
        assert_eq!(
            value(&text, "cx_interactions_total", &[("outcome", "completed")]),
            2.0
        );
        assert_eq!(
            value(
                &text,
                "cx_interaction_duration_seconds_sum",
                &[("timing", "handle")]
            ),
            200.0
        );
        assert_eq!(
            value(
                &text,
                "cx_interaction_duration_seconds_count",
                &[("timing", "wait")]
            ),
            2.0
        );
        assert_eq!(value(&text, "cx_first_response_seconds_count", &[]), 2.0);
        assert_eq!(
            value(
                &text,
                "cx_events_rejected_total",
                &[("reason", "malformed")]
            ),
            0.0
        );
        assert_eq!(
            value(
                &text,
                "cx_events_rejected_total",
                &[("reason", "unknown_outcome")]
            ),
            1.0
        );
    }

    fn themed(themes: &str) -> (CollectorConfig, EventSchema) {
        let config: CollectorConfig = serde_yaml::from_str(&format!(
            r#"
namespace: retail
touchpoint: web-checkout
channel: web
stage: purchase
surveys: [{{ metric: nps }}, {{ metric: csat, scale: 7 }}]
interactions: {{ outcomes: [completed, abandoned] }}
maxEventBytes: 1024
themes: {themes}
"#
        ))
        .expect("test config");
        let schema = EventSchema::from_config(&config).expect("valid");
        (config, schema)
    }

    fn commented(signal: Signal, comment: &str) -> Event<'_> {
        Event {
            comment: Some(comment.into()),
            ..Event::from(signal)
        }
    }

    const NPS_3: Signal = Signal::Survey {
        metric: SurveyMetric::Nps,
        score: 3,
    };

    #[test]
    fn comment_and_theme_series_start_at_zero_for_every_declared_segment() {
        let (config, schema) = themed("[{name: delivery, keywords: [corriere]}]");
        let text = CollectorMetrics::new(&config, &schema)
            .expect("metrics")
            .render()
            .expect("render");
        let pairs = [
            ("nps", "detractor"),
            ("nps", "passive"),
            ("nps", "promoter"),
            ("csat", "low"),
            ("csat", "neutral"),
            ("csat", "high"),
            ("interaction", "completed"),
            ("interaction", "abandoned"),
        ];
        for (metric, segment) in pairs {
            let labels = [("metric", metric), ("segment", segment)];
            assert_eq!(value(&text, "cx_feedback_comments_total", &labels), 0.0);
            let labels = [
                ("theme", "delivery"),
                ("metric", metric),
                ("segment", segment),
            ];
            assert_eq!(value(&text, "cx_feedback_themes_total", &labels), 0.0);
        }
        assert_eq!(
            text.matches("cx_feedback_themes_total{").count(),
            pairs.len()
        );
        // Without themes, no theme family at all; comments are still counted.
        assert!(
            !metrics()
                .render()
                .expect("render")
                .contains("cx_feedback_themes_total")
        );
    }

    #[test]
    fn segments_follow_the_documented_bands() {
        use SurveyMetric::{Ces, Csat, Nps};
        let bands = |metric, high, scores: std::ops::RangeInclusive<u8>| -> Vec<&str> {
            scores.map(|s| survey_segment(metric, s, high).1).collect()
        };
        assert_eq!(
            bands(Nps, 10, 0..=10),
            [
                "detractor",
                "detractor",
                "detractor",
                "detractor",
                "detractor",
                "detractor",
                "detractor",
                "passive",
                "passive",
                "promoter",
                "promoter"
            ]
        );
        assert_eq!(
            bands(Csat, 5, 1..=5),
            ["low", "low", "neutral", "high", "high"]
        );
        let seven = ["low", "low", "low", "neutral", "high", "high", "high"];
        assert_eq!(bands(Csat, 7, 1..=7), seven);
        assert_eq!(bands(Ces, 7, 1..=7), seven);
    }

    #[test]
    fn comments_and_themes_are_counted_by_metric_and_segment() {
        let (config, schema) = themed(
            "[{name: delivery, keywords: [corriere, in ritardo], exclude: [non in ritardo]}, \
             {name: price, keywords: [prezz*]}]",
        );
        let metrics = CollectorMetrics::new(&config, &schema).expect("metrics");
        metrics.record(&commented(NPS_3, "Il corriere è arrivato in ritardo"));
        metrics.record(&commented(NPS_3, "Prezzo alto, corriere gentile"));
        metrics.record(&commented(NPS_3, "non in ritardo"));
        metrics.record(&Event::from(NPS_3));
        let mut tally = metrics.tally();
        let interaction = Signal::Interaction {
            outcome: Outcome::Abandoned.into(),
            wait_seconds: None,
            handle_seconds: None,
        };
        tally.record(&commented(interaction, "troppa attesa, prezzi alti"));
        tally.record(&commented(
            Signal::Survey {
                metric: SurveyMetric::Csat,
                score: 4,
            },
            "ok",
        ));
        tally.commit();
        let text = metrics.render().expect("render");
        let count = |name: &str, labels: &[(&str, &str)]| value(&text, name, labels);
        let nps = [("metric", "nps"), ("segment", "detractor")];
        assert_eq!(count("cx_feedback_comments_total", &nps), 3.0);
        let delivery = [("theme", "delivery"), nps[0], nps[1]];
        assert_eq!(count("cx_feedback_themes_total", &delivery), 2.0);
        let price = [("theme", "price"), nps[0], nps[1]];
        assert_eq!(count("cx_feedback_themes_total", &price), 1.0);
        let abandoned = [("metric", "interaction"), ("segment", "abandoned")];
        assert_eq!(count("cx_feedback_comments_total", &abandoned), 1.0);
        let price = [("theme", "price"), abandoned[0], abandoned[1]];
        assert_eq!(count("cx_feedback_themes_total", &price), 1.0);
        let csat = [("metric", "csat"), ("segment", "neutral")];
        assert_eq!(count("cx_feedback_comments_total", &csat), 1.0);
        assert_eq!(count("cx_events_received_total", &[]), 6.0);
    }

    #[test]
    fn theme_counts_survive_a_reload_and_removed_themes_disappear() {
        let (config, schema) = themed(
            "[{name: delivery, keywords: [corriere]}, {name: staff, keywords: [personale]}]",
        );
        let before = CollectorMetrics::new(&config, &schema).expect("metrics");
        before.record(&commented(NPS_3, "corriere e personale"));
        let (config, schema) = themed(
            "[{name: delivery, keywords: [corriere, courier]}, {name: price, keywords: [prezzo]}]",
        );
        let after = CollectorMetrics::continuing(&config, &schema, Some(&before)).expect("metrics");
        after.record(&commented(NPS_3, "courier"));
        let text = after.render().expect("render");
        let detractor = [("metric", "nps"), ("segment", "detractor")];
        let delivery = [("theme", "delivery"), detractor[0], detractor[1]];
        assert_eq!(value(&text, "cx_feedback_themes_total", &delivery), 2.0);
        let price = [("theme", "price"), detractor[0], detractor[1]];
        assert_eq!(value(&text, "cx_feedback_themes_total", &price), 0.0);
        assert!(!text.contains("theme=\"staff\""), "{text}");
        assert_eq!(value(&text, "cx_feedback_comments_total", &detractor), 2.0);
    }

    /// The checkout of [`themed`] with `outcomes` as its interactions.
    fn with_outcomes(outcomes: &str) -> (CollectorConfig, EventSchema) {
        let config: CollectorConfig = serde_yaml::from_str(&format!(
            "{{namespace: retail, touchpoint: web-checkout, channel: web, stage: purchase, \
             maxEventBytes: 1024, interactions: {outcomes}, \
             themes: [{{name: delivery, keywords: [corriere]}}]}}"
        ))
        .expect("test config");
        let schema = EventSchema::from_config(&config).expect("valid");
        (config, schema)
    }

    #[test]
    fn custom_outcomes_are_counted_like_builtin_ones_and_follow_a_reload() {
        let (config, schema) =
            with_outcomes("{outcomes: [completed], customOutcomes: [failed-attempt, rescheduled]}");
        let before = CollectorMetrics::new(&config, &schema).expect("metrics");
        let text = before.render().expect("render");
        for outcome in ["completed", "failed-attempt", "rescheduled"] {
            assert_eq!(
                value(&text, "cx_interactions_total", &[("outcome", outcome)]),
                0.0
            );
        }
        let failed = parse_event(
            br#"{"type":"interaction","outcome":"failed-attempt","comment":"corriere assente"}"#,
            &schema,
        )
        .expect("declared");
        before.record(&failed);
        let mut tally = before.tally();
        tally.record(&failed);
        tally.record(
            &parse_event(
                br#"{"type":"interaction","outcome":"rescheduled"}"#,
                &schema,
            )
            .expect("declared"),
        );
        tally.commit();
        let text = before.render().expect("render");
        let count = |text: &str, outcome: &str| {
            value(text, "cx_interactions_total", &[("outcome", outcome)])
        };
        assert_eq!(count(&text, "failed-attempt"), 2.0);
        assert_eq!(count(&text, "rescheduled"), 1.0);
        assert_eq!(count(&text, "completed"), 0.0);
        let segment = [("metric", "interaction"), ("segment", "failed-attempt")];
        assert_eq!(value(&text, "cx_feedback_comments_total", &segment), 2.0);
        let theme = [("theme", "delivery"), segment[0], segment[1]];
        assert_eq!(value(&text, "cx_feedback_themes_total", &theme), 2.0);

        // rescheduled is no longer declared, returned is new, failed-attempt keeps counting from
        // another position in the list.
        let (config, schema) =
            with_outcomes("{outcomes: [completed], customOutcomes: [returned, failed-attempt]}");
        let after = CollectorMetrics::continuing(&config, &schema, Some(&before)).expect("metrics");
        after.record(
            &parse_event(
                br#"{"type":"interaction","outcome":"failed-attempt"}"#,
                &schema,
            )
            .expect("declared"),
        );
        let text = after.render().expect("render");
        assert_eq!(count(&text, "failed-attempt"), 3.0);
        assert_eq!(count(&text, "returned"), 0.0);
        assert!(!text.contains(r#"outcome="rescheduled""#), "{text}");
        assert!(!text.contains(r#"segment="rescheduled""#), "{text}");
        assert_eq!(value(&text, "cx_feedback_comments_total", &segment), 2.0);
    }
}
