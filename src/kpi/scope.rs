//! What a KPI's queries run over: the touchpoints its scope matches, with what each of them
//! listens to and its channel's first-response promise.
//!
//! The scope is resolved by the caller (from the [`World`], the same index `check` and the
//! journey controller use), so query generation stays a pure function of plain data.

use kube::ResourceExt;

use crate::api::{
    BuiltinIndicator, BuiltinMeasure, Channel, CommentMetric, Outcome, SurveyMetric, SurveySignal,
    Timing, Touchpoint,
};
use crate::core::World;
use crate::core::listening::{theme_sources, themes_of};
use crate::core::world::namespace_of;

/// The touchpoints a KPI covers, in one namespace.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct QueryScope {
    /// Namespace of the KPI and its touchpoints (the `namespace` label of the collector series).
    pub namespace: String,
    /// The touchpoints the scope matches, in name order.
    pub touchpoints: Vec<TouchpointScope>,
}

/// One touchpoint in a KPI's scope: just what query generation needs.
#[derive(Clone, Debug, PartialEq)]
pub struct TouchpointScope {
    /// Touchpoint name (the `touchpoint` label).
    pub name: String,
    /// Channel name (the `channel` label).
    pub channel: String,
    /// Survey questions it asks (csat with its scale).
    pub surveys: Vec<SurveySignal>,
    /// Builtin interaction outcomes it reports.
    pub outcomes: Vec<Outcome>,
    /// Its custom interaction outcomes (`interactions.customOutcomes`).
    pub custom_outcomes: Vec<String>,
    /// Interaction timings it measures.
    pub timings: Vec<Timing>,
    /// Its channel's `serviceLevels.firstResponseSeconds`: the collector adds it as a histogram
    /// bucket boundary, which the `service-level` indicator reads.
    pub first_response_seconds: Option<u32>,
    /// Names of the themes its collector counts ([`themes_of`]), in name order. Resolved only
    /// for theme-share KPIs, the only ones that read them: empty otherwise.
    pub themes: Vec<String>,
}

impl TouchpointScope {
    /// The query-relevant part of a touchpoint and its channel (absent: a dangling reference,
    /// reported by `check`; the touchpoint then has no first-response promise).
    pub fn new(touchpoint: &Touchpoint, channel: Option<&Channel>) -> TouchpointScope {
        let signals = &touchpoint.spec.signals;
        let interactions = signals.interactions.as_ref();
        TouchpointScope {
            name: touchpoint.name_any(),
            channel: touchpoint.spec.channel.clone(),
            surveys: signals.surveys.clone(),
            outcomes: interactions.map(|i| i.outcomes.clone()).unwrap_or_default(),
            custom_outcomes: interactions
                .map(|i| i.custom_outcomes.clone())
                .unwrap_or_default(),
            timings: interactions.map(|i| i.timings.clone()).unwrap_or_default(),
            first_response_seconds: channel
                .and_then(|c| c.spec.service_levels.as_ref())
                .and_then(|l| l.first_response_seconds)
                .and_then(|s| u32::try_from(s).ok())
                .filter(|s| *s > 0),
            themes: Vec::new(),
        }
    }

    /// The csat scale (5 or 7) when the touchpoint asks csat.
    pub fn csat_scale(&self) -> Option<i32> {
        self.surveys
            .iter()
            .find(|s| s.metric == SurveyMetric::Csat)
            .map(|s| s.scale.unwrap_or(5))
    }

    /// Whether the touchpoint produces the signal `measure` is computed from: the indicator's
    /// queries cover exactly these touchpoints. A touchpoint that cannot report, say, abandonment
    /// would only dilute an abandonment rate with interactions that could never be abandoned.
    ///
    /// - nps, csat, ces: the touchpoint asks that survey question;
    /// - fcr: it reports `resolved-first-contact`;
    /// - resolution-rate: it reports `resolved-first-contact` or `resolved`;
    /// - abandonment-rate: it reports `abandoned`;
    /// - first-response-time: it measures the `wait` timing;
    /// - service-level: it measures `wait` and its channel promises a first-response time;
    /// - comment-rate: it produces the `metric` (any answer or interaction without one);
    /// - theme-share: as comment-rate, it reports the `segment` when that is an interaction's
    ///   outcome, and its collector counts the `theme` ([`Self::themes`]);
    /// - outcome-share: it reports at least one of the `outcomes` (builtin or custom).
    pub fn measures(&self, measure: &BuiltinMeasure) -> bool {
        self.produces(measure) && self.counts_theme(measure)
    }

    /// [`Self::measures`] without the theme: whether the touchpoint produces the answers (and
    /// comments) the indicator reads, whatever themes it counts.
    pub fn produces(&self, measure: &BuiltinMeasure) -> bool {
        let asks = |metric| self.surveys.iter().any(|s| s.metric == metric);
        let reports = |outcome| self.outcomes.contains(&outcome);
        let waits = self.timings.contains(&Timing::Wait);
        match measure.indicator {
            BuiltinIndicator::Nps => asks(SurveyMetric::Nps),
            BuiltinIndicator::Csat => asks(SurveyMetric::Csat),
            BuiltinIndicator::Ces => asks(SurveyMetric::Ces),
            BuiltinIndicator::Fcr => reports(Outcome::ResolvedFirstContact),
            BuiltinIndicator::ResolutionRate => {
                reports(Outcome::ResolvedFirstContact) || reports(Outcome::Resolved)
            }
            BuiltinIndicator::AbandonmentRate => reports(Outcome::Abandoned),
            BuiltinIndicator::FirstResponseTime => waits,
            BuiltinIndicator::OutcomeShare => measure.outcomes.iter().any(|o| self.reports(o)),
            BuiltinIndicator::ServiceLevel => waits && self.first_response_seconds.is_some(),
            BuiltinIndicator::CommentRate | BuiltinIndicator::ThemeShare => {
                let metric = match measure.metric {
                    None => !self.surveys.is_empty() || !self.outcomes.is_empty(),
                    Some(CommentMetric::Interaction) => !self.outcomes.is_empty(),
                    Some(other) => other.survey().is_some_and(asks),
                };
                let outcome = match (measure.metric, measure.segment.as_deref()) {
                    (Some(CommentMetric::Interaction), Some(segment)) => self.reports(segment),
                    _ => true,
                };
                metric && outcome
            }
        }
    }

    /// Whether interactions here may end with the outcome named `name`, builtin or custom.
    pub fn reports(&self, name: &str) -> bool {
        self.outcomes.iter().any(|o| o.as_str() == name)
            || self.custom_outcomes.iter().any(|o| o == name)
    }

    /// Every outcome interactions here may end with: the builtin ones, then the custom ones.
    pub fn outcome_names(&self) -> impl Iterator<Item = &str> {
        self.outcomes
            .iter()
            .map(|o| o.as_str())
            .chain(self.custom_outcomes.iter().map(String::as_str))
    }

    /// Whether the touchpoint counts the theme `measure` names (true when it names none).
    pub fn counts_theme(&self, measure: &BuiltinMeasure) -> bool {
        measure
            .theme
            .as_ref()
            .is_none_or(|theme| self.themes.contains(theme))
    }
}

impl QueryScope {
    /// The scope of KPI number `kpi` of the world: its namespace and the touchpoints
    /// [`World::kpi_touchpoints`] matched, with their channels' promises.
    pub fn resolve(world: &World<'_>, kpi: usize) -> QueryScope {
        let object = &world.kpis[kpi];
        let namespace = namespace_of(object);
        // The journeys' theme sets, validated once for the KPI; only theme-share reads them.
        let sources = if object.spec.indicator.builtin == Some(BuiltinIndicator::ThemeShare) {
            Some(theme_sources(world.journeys))
        } else {
            None
        };
        let mut touchpoints: Vec<TouchpointScope> = world
            .kpi_touchpoints(kpi)
            .iter()
            .map(|&t| {
                let touchpoint = &world.touchpoints[t];
                let channel = world.channel(namespace, &touchpoint.spec.channel);
                let mut scope = TouchpointScope::new(touchpoint, channel);
                if let Some(sources) = &sources {
                    scope.themes = themes_of(touchpoint, channel, sources)
                        .into_iter()
                        .map(|theme| theme.name)
                        .collect();
                }
                scope
            })
            .collect();
        touchpoints.sort_by(|a, b| a.name.cmp(&b.name));
        QueryScope {
            namespace: namespace.to_owned(),
            touchpoints,
        }
    }

    /// The touchpoints that produce `measure`'s signal (see [`TouchpointScope::measures`]).
    pub fn measuring(&self, measure: &BuiltinMeasure) -> Vec<&TouchpointScope> {
        self.touchpoints
            .iter()
            .filter(|t| t.measures(measure))
            .collect()
    }
}
