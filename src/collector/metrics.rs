//! The collector's Prometheus series (DESIGN.md §4), with a bounded label set.
//!
//! Every child series is created up front, once, for each declared metric/score, outcome and
//! timing and every rejection reason: dashboards see zeros instead of "no data", and recording an
//! event is an array lookup plus an atomic add (no label hashing per event).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder, local::LocalHistogram,
};

use super::config::CollectorConfig;
use super::event::{
    ALL_METRICS, ALL_TIMINGS, Event, EventSchema, METRIC_COUNT, OUTCOME_COUNT, Reason,
    TIMING_COUNT, metric_index, outcome_index, timing_index,
};
use crate::api::Outcome;

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

/// The metric families of one touchpoint. Clones share their series, so a reconfigured
/// touchpoint that keeps its labels keeps counting where it was: no counter reset.
#[derive(Clone)]
struct Families {
    /// `namespace`, `touchpoint`, `channel` and `stage`: the identity of every series.
    const_labels: HashMap<String, String>,
    received: IntCounter,
    rejected: IntCounterVec,
    survey: IntCounterVec,
    interactions: Option<IntCounterVec>,
    /// The bucket boundaries and the histogram family built with them.
    durations: Option<(Vec<f64>, HistogramVec)>,
    /// The bucket boundaries and the first-response histogram built with them.
    first_responses: Option<(Vec<f64>, Histogram)>,
}

/// The collector's registry and pre-built series.
pub struct CollectorMetrics {
    registry: Registry,
    families: Families,
    received: IntCounter,
    rejected: [IntCounter; REASONS],
    /// `[metric][score]`: `None` for undeclared metrics and scores outside their range.
    survey: [[Option<IntCounter>; SCORE_SLOTS]; METRIC_COUNT],
    /// `[outcome]`: `None` for undeclared outcomes.
    interactions: [Option<IntCounter>; OUTCOME_COUNT],
    /// `[timing]`: `None` for undeclared timings.
    durations: [Option<Histogram>; TIMING_COUNT],
    /// Waits of answered contacts (every outcome but `abandoned`), when `wait` is declared.
    first_responses: Option<Histogram>,
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

        let mut interactions: [Option<IntCounter>; OUTCOME_COUNT] = Default::default();
        let mut durations: [Option<Histogram>; TIMING_COUNT] = Default::default();
        let mut interactions_family = None;
        let mut durations_family = None;
        let mut first_responses = None;
        let mut first_responses_family = None;
        if config.interactions.is_some() {
            let interactions_vec = match previous.and_then(|p| p.interactions.clone()) {
                Some(family) => family,
                None => IntCounterVec::new(
                    opts("cx_interactions_total", "Interactions, by how they ended."),
                    &["outcome"],
                )?,
            };
            interactions_family = Some(interactions_vec.clone());
            register(&registry, &interactions_vec)?;
            for outcome in Outcome::ALL {
                if schema.declares_outcome(outcome) {
                    interactions[outcome_index(outcome)] =
                        Some(interactions_vec.with_label_values(&[outcome.as_str()]));
                }
            }
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
            },
            received,
            rejected,
            survey,
            interactions,
            durations,
            first_responses,
        })
    }

    /// Counts one accepted event.
    pub fn record(&self, event: &Event) {
        match *event {
            Event::Survey { metric, score } => {
                if let Some(Some(counter)) =
                    self.survey[metric_index(metric)].get(usize::from(score))
                {
                    counter.inc();
                }
            }
            Event::Interaction {
                outcome,
                wait_seconds,
                handle_seconds,
            } => {
                if let Some(counter) = &self.interactions[outcome_index(outcome)] {
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
            interactions: [0; OUTCOME_COUNT],
            durations: self
                .durations
                .each_ref()
                .map(|histogram| histogram.as_ref().map(Histogram::local)),
            first_responses: self.first_responses.as_ref().map(Histogram::local),
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
    interactions: [u64; OUTCOME_COUNT],
    durations: [Option<LocalHistogram>; TIMING_COUNT],
    first_responses: Option<LocalHistogram>,
}

impl BatchTally<'_> {
    /// Counts one accepted event of the batch.
    pub fn record(&mut self, event: &Event) {
        match *event {
            Event::Survey { metric, score } => {
                if let Some(count) = self.survey[metric_index(metric)].get_mut(usize::from(score)) {
                    *count += 1;
                }
            }
            Event::Interaction {
                outcome,
                wait_seconds,
                handle_seconds,
            } => {
                self.interactions[outcome_index(outcome)] += 1;
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
        metrics.record(&Event::Survey {
            metric: SurveyMetric::Nps,
            score: 10,
        });
        metrics.record(&Event::Survey {
            metric: SurveyMetric::Nps,
            score: 10,
        });
        metrics.record(&Event::Interaction {
            outcome: Outcome::Abandoned,
            wait_seconds: Some(25.0),
            handle_seconds: None,
        });
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
        metrics.record(&Event::Interaction {
            outcome: Outcome::Completed,
            wait_seconds: Some(22.0),
            handle_seconds: None,
        });
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
        let event = Event::Interaction {
            outcome: Outcome::Completed,
            wait_seconds: Some(3.0),
            handle_seconds: Some(100.0),
        };
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
}
