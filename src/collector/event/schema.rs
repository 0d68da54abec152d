//! The touchpoint's configuration compiled for validation: arrays indexed by enum, sized from
//! the enums' lists so a new variant cannot index past them.

use super::super::config::CollectorConfig;
use super::{DEFAULT_MAX_COMMENT_BYTES, MAX_COMMENT_BYTES};
use crate::api::{MAX_CUSTOM_OUTCOMES, Outcome, SurveyMetric, Timing, custom_outcome_error};
use crate::themes::validate_themes;

/// The touchpoint's configuration compiled for fast validation: arrays indexed by enum instead of
/// list searches.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSchema {
    /// Inclusive score range per declared survey metric, indexed by [`metric_index`].
    score_ranges: [Option<(u8, u8)>; METRIC_COUNT],
    /// Whether the touchpoint declares interaction signals at all.
    interactions: bool,
    /// Declared builtin outcomes, indexed by [`outcome_index`].
    outcomes: [bool; OUTCOME_COUNT],
    /// The touchpoint's custom outcomes, in declaration order: [`OutcomeId`]s from
    /// [`OUTCOME_COUNT`] on.
    custom_outcomes: Vec<String>,
    /// Declared timings, indexed by [`timing_index`].
    timings: [bool; TIMING_COUNT],
    /// Largest single event, in bytes.
    pub(super) max_event_bytes: usize,
    /// Longest comment, in bytes.
    max_comment_bytes: usize,
}

/// A collector configuration that cannot be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid collector configuration: {0}")]
pub struct InvalidConfig(pub String);

/// Smallest accepted `maxEventBytes`: smaller could not hold a survey event with a session id.
pub const MIN_EVENT_BYTES: u64 = 256;
/// Largest accepted `maxEventBytes`.
pub const MAX_EVENT_BYTES: u64 = 1 << 20;

impl EventSchema {
    /// Compiles a configuration, refusing what the CRD schema would have refused (a collector may
    /// be started by hand with a hand-written file).
    pub fn from_config(config: &CollectorConfig) -> Result<Self, InvalidConfig> {
        let mut score_ranges = [None; METRIC_COUNT];
        for survey in &config.surveys {
            let slot = &mut score_ranges[metric_index(survey.metric)];
            if slot.is_some() {
                return Err(InvalidConfig(format!(
                    "survey metric {} is declared twice",
                    survey.metric.as_str()
                )));
            }
            if let Some(scale) = survey.scale
                && (survey.metric != SurveyMetric::Csat || (scale != 5 && scale != 7))
            {
                return Err(InvalidConfig(format!(
                    "survey {}: scale {scale} is invalid (only csat has a scale, 5 or 7)",
                    survey.metric.as_str()
                )));
            }
            let (low, high) = survey.score_range();
            let low = u8::try_from(low).map_err(|_| InvalidConfig("bad score range".into()))?;
            let high = u8::try_from(high).map_err(|_| InvalidConfig("bad score range".into()))?;
            *slot = Some((low, high));
        }
        let mut outcomes = [false; OUTCOME_COUNT];
        let mut custom_outcomes = Vec::new();
        let mut timings = [false; TIMING_COUNT];
        if let Some(interactions) = &config.interactions {
            if interactions.outcomes.is_empty() {
                return Err(InvalidConfig(
                    "interactions must declare at least one outcome".into(),
                ));
            }
            for outcome in &interactions.outcomes {
                outcomes[outcome_index(*outcome)] = true;
            }
            if interactions.custom_outcomes.len() > MAX_CUSTOM_OUTCOMES {
                return Err(InvalidConfig(format!(
                    "interactions.customOutcomes: {} custom outcomes, more than the {MAX_CUSTOM_OUTCOMES} allowed",
                    interactions.custom_outcomes.len()
                )));
            }
            for (i, name) in interactions.custom_outcomes.iter().enumerate() {
                if let Some(error) = custom_outcome_error(name) {
                    return Err(InvalidConfig(format!(
                        "interactions.customOutcomes[{i}]: {error}"
                    )));
                }
                if interactions.custom_outcomes[..i].contains(name) {
                    return Err(InvalidConfig(format!(
                        "interactions.customOutcomes[{i}]: custom outcome {name} is declared twice"
                    )));
                }
            }
            custom_outcomes = interactions.custom_outcomes.clone();
            for timing in &interactions.timings {
                timings[timing_index(*timing)] = true;
            }
        }
        if config.surveys.is_empty() && config.interactions.is_none() {
            return Err(InvalidConfig(
                "the touchpoint declares no survey and no interactions: nothing to collect".into(),
            ));
        }
        if !(MIN_EVENT_BYTES..=MAX_EVENT_BYTES).contains(&config.max_event_bytes) {
            return Err(InvalidConfig(format!(
                "maxEventBytes {} is outside {MIN_EVENT_BYTES}..={MAX_EVENT_BYTES}",
                config.max_event_bytes
            )));
        }
        let max_event_bytes = usize::try_from(config.max_event_bytes)
            .map_err(|_| InvalidConfig("maxEventBytes does not fit in memory".into()))?;
        let max_comment_bytes = config
            .max_comment_bytes
            .unwrap_or(DEFAULT_MAX_COMMENT_BYTES);
        if !(1..=MAX_COMMENT_BYTES).contains(&max_comment_bytes) {
            return Err(InvalidConfig(format!(
                "maxCommentBytes {max_comment_bytes} is outside 1..={MAX_COMMENT_BYTES}"
            )));
        }
        let themes = validate_themes(&config.themes, "themes");
        if !themes.is_empty() {
            let errors: Vec<String> = themes.iter().map(ToString::to_string).collect();
            return Err(InvalidConfig(errors.join("; ")));
        }
        Ok(EventSchema {
            score_ranges,
            interactions: config.interactions.is_some(),
            outcomes,
            custom_outcomes,
            timings,
            max_event_bytes,
            max_comment_bytes: max_comment_bytes as usize,
        })
    }

    /// Longest accepted comment, in bytes.
    pub fn max_comment_bytes(&self) -> usize {
        self.max_comment_bytes
    }

    /// Largest single event, in bytes.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Inclusive score range of a metric, or `None` when the touchpoint does not ask it.
    pub fn score_range(&self, metric: SurveyMetric) -> Option<(u8, u8)> {
        self.score_ranges[metric_index(metric)]
    }

    /// Whether interactions may end with this builtin outcome here.
    pub fn declares_outcome(&self, outcome: Outcome) -> bool {
        self.outcomes[outcome_index(outcome)]
    }

    /// The outcome named `name` when interactions may end with it here: a declared builtin one
    /// or one of the touchpoint's custom outcomes.
    pub fn outcome(&self, name: &str) -> Option<OutcomeId> {
        if let Some(outcome) = parse_outcome(name) {
            return self
                .declares_outcome(outcome)
                .then_some(OutcomeId::from(outcome));
        }
        let position = self.custom_outcomes.iter().position(|o| o == name)?;
        // At most MAX_CUSTOM_OUTCOMES custom outcomes (checked when compiling).
        Some(OutcomeId((OUTCOME_COUNT + position) as u8))
    }

    /// The name of an outcome of this touchpoint (the `outcome` label); empty for an id the
    /// touchpoint does not have.
    pub fn outcome_name(&self, outcome: OutcomeId) -> &str {
        match outcome.builtin() {
            Some(builtin) => builtin.as_str(),
            None => self
                .custom_outcomes
                .get(outcome.index() - OUTCOME_COUNT)
                .map_or("", String::as_str),
        }
    }

    /// Every outcome interactions may end with here, with its name: the declared builtin ones
    /// in [`Outcome::ALL`] order, then the custom ones.
    pub fn declared_outcome_ids(&self) -> Vec<(OutcomeId, &str)> {
        Outcome::ALL
            .iter()
            .filter(|o| self.declares_outcome(**o))
            .map(|o| (OutcomeId::from(*o), o.as_str()))
            .chain(
                self.custom_outcomes
                    .iter()
                    .enumerate()
                    .map(|(i, name)| (OutcomeId((OUTCOME_COUNT + i) as u8), name.as_str())),
            )
            .collect()
    }

    /// Whether interactions here measure this timing.
    pub fn declares_timing(&self, timing: Timing) -> bool {
        self.timings[timing_index(timing)]
    }

    /// Whether the touchpoint collects interactions at all.
    pub(super) fn declares_interactions(&self) -> bool {
        self.interactions
    }

    pub(super) fn declared_metrics(&self) -> String {
        let names: Vec<&str> = ALL_METRICS
            .iter()
            .filter(|m| self.score_range(**m).is_some())
            .map(|m| m.as_str())
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    pub(super) fn declared_outcomes(&self) -> String {
        let names: Vec<&str> = self
            .declared_outcome_ids()
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        names.join(", ")
    }
}

/// Every survey metric, in [`metric_index`] order.
pub const ALL_METRICS: [SurveyMetric; 3] =
    [SurveyMetric::Nps, SurveyMetric::Csat, SurveyMetric::Ces];
/// Every timing, in [`timing_index`] order.
pub const ALL_TIMINGS: [Timing; 2] = [Timing::Wait, Timing::Handle];

/// Number of survey metrics: the size of every array indexed by [`metric_index`].
pub const METRIC_COUNT: usize = ALL_METRICS.len();
/// Number of outcomes: the size of every array indexed by [`outcome_index`].
pub const OUTCOME_COUNT: usize = Outcome::ALL.len();
/// Number of outcome slots of a touchpoint: the builtin outcomes, then at most
/// [`MAX_CUSTOM_OUTCOMES`] custom ones. The size of every array indexed by [`OutcomeId::index`].
pub const OUTCOME_SLOTS: usize = OUTCOME_COUNT + MAX_CUSTOM_OUTCOMES;

/// How an interaction ended, as an index into its touchpoint's outcomes: a builtin outcome at
/// its [`outcome_index`], a custom one at [`OUTCOME_COUNT`] plus its position in
/// `customOutcomes`. Its name is the schema's ([`EventSchema::outcome_name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutcomeId(u8);

impl OutcomeId {
    /// The slot of this outcome, below [`OUTCOME_SLOTS`].
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The builtin outcome, `None` for a custom one.
    pub fn builtin(self) -> Option<Outcome> {
        Outcome::ALL.get(self.index()).copied()
    }
}

impl From<Outcome> for OutcomeId {
    fn from(outcome: Outcome) -> OutcomeId {
        OutcomeId(outcome_index(outcome) as u8)
    }
}

impl PartialEq<Outcome> for OutcomeId {
    fn eq(&self, other: &Outcome) -> bool {
        self.index() == outcome_index(*other)
    }
}

/// Number of timings: the size of every array indexed by [`timing_index`].
pub const TIMING_COUNT: usize = ALL_TIMINGS.len();

// The index functions match their lists, checked when compiling: a variant added to an enum and
// its list gets the next index, within the arrays sized from the list. (A variant missing from
// its list is never parsed, so never indexed.)
const _: () = {
    let mut i = 0;
    while i < METRIC_COUNT {
        assert!(metric_index(ALL_METRICS[i]) == i);
        i += 1;
    }
    let mut i = 0;
    while i < OUTCOME_COUNT {
        assert!(outcome_index(Outcome::ALL[i]) == i);
        i += 1;
    }
    let mut i = 0;
    while i < TIMING_COUNT {
        assert!(timing_index(ALL_TIMINGS[i]) == i);
        i += 1;
    }
};

/// Position of a metric in [`ALL_METRICS`].
pub const fn metric_index(metric: SurveyMetric) -> usize {
    match metric {
        SurveyMetric::Nps => 0,
        SurveyMetric::Csat => 1,
        SurveyMetric::Ces => 2,
    }
}

/// Position of an outcome in [`Outcome::ALL`].
pub const fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Completed => 0,
        Outcome::Abandoned => 1,
        Outcome::Error => 2,
        Outcome::ResolvedFirstContact => 3,
        Outcome::Resolved => 4,
        Outcome::Unresolved => 5,
        Outcome::Escalated => 6,
    }
}

/// Position of a timing in [`ALL_TIMINGS`].
pub const fn timing_index(timing: Timing) -> usize {
    match timing {
        Timing::Wait => 0,
        Timing::Handle => 1,
    }
}

pub(super) fn parse_metric(name: &str) -> Option<SurveyMetric> {
    ALL_METRICS.into_iter().find(|m| m.as_str() == name)
}

pub(super) fn parse_outcome(name: &str) -> Option<Outcome> {
    Outcome::ALL.into_iter().find(|o| o.as_str() == name)
}
