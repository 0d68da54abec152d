//! What a KPI's queries run over: the touchpoints its scope matches, with what each of them
//! listens to and its channel's first-response promise.
//!
//! The scope is resolved by the caller (from the [`World`], the same index `check` and the
//! journey controller use), so query generation stays a pure function of plain data.

use kube::ResourceExt;

use crate::api::{
    BuiltinIndicator, Channel, Outcome, SurveyMetric, SurveySignal, Timing, Touchpoint,
};
use crate::core::World;
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
    /// Interaction outcomes it reports.
    pub outcomes: Vec<Outcome>,
    /// Interaction timings it measures.
    pub timings: Vec<Timing>,
    /// Its channel's `serviceLevels.firstResponseSeconds`: the collector adds it as a histogram
    /// bucket boundary, which the `service-level` indicator reads.
    pub first_response_seconds: Option<u32>,
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
            timings: interactions.map(|i| i.timings.clone()).unwrap_or_default(),
            first_response_seconds: channel
                .and_then(|c| c.spec.service_levels.as_ref())
                .and_then(|l| l.first_response_seconds)
                .and_then(|s| u32::try_from(s).ok())
                .filter(|s| *s > 0),
        }
    }

    /// The csat scale (5 or 7) when the touchpoint asks csat.
    pub fn csat_scale(&self) -> Option<i32> {
        self.surveys
            .iter()
            .find(|s| s.metric == SurveyMetric::Csat)
            .map(|s| s.scale.unwrap_or(5))
    }

    /// Whether the touchpoint produces the signal `indicator` is computed from: the indicator's
    /// queries cover exactly these touchpoints. A touchpoint that cannot report, say, abandonment
    /// would only dilute an abandonment rate with interactions that could never be abandoned.
    ///
    /// - nps, csat, ces: the touchpoint asks that survey question;
    /// - fcr: it reports `resolved-first-contact`;
    /// - resolution-rate: it reports `resolved-first-contact` or `resolved`;
    /// - abandonment-rate: it reports `abandoned`;
    /// - first-response-time: it measures the `wait` timing;
    /// - service-level: it measures `wait` and its channel promises a first-response time.
    pub fn measures(&self, indicator: BuiltinIndicator) -> bool {
        let asks = |metric| self.surveys.iter().any(|s| s.metric == metric);
        let reports = |outcome| self.outcomes.contains(&outcome);
        let waits = self.timings.contains(&Timing::Wait);
        match indicator {
            BuiltinIndicator::Nps => asks(SurveyMetric::Nps),
            BuiltinIndicator::Csat => asks(SurveyMetric::Csat),
            BuiltinIndicator::Ces => asks(SurveyMetric::Ces),
            BuiltinIndicator::Fcr => reports(Outcome::ResolvedFirstContact),
            BuiltinIndicator::ResolutionRate => {
                reports(Outcome::ResolvedFirstContact) || reports(Outcome::Resolved)
            }
            BuiltinIndicator::AbandonmentRate => reports(Outcome::Abandoned),
            BuiltinIndicator::FirstResponseTime => waits,
            BuiltinIndicator::ServiceLevel => waits && self.first_response_seconds.is_some(),
        }
    }
}

impl QueryScope {
    /// The scope of KPI number `kpi` of the world: its namespace and the touchpoints
    /// [`World::kpi_touchpoints`] matched, with their channels' promises.
    pub fn resolve(world: &World<'_>, kpi: usize) -> QueryScope {
        let object = &world.kpis[kpi];
        let namespace = namespace_of(object);
        let mut touchpoints: Vec<TouchpointScope> = world
            .kpi_touchpoints(kpi)
            .iter()
            .map(|&t| {
                let touchpoint = &world.touchpoints[t];
                TouchpointScope::new(
                    touchpoint,
                    world.channel(namespace, &touchpoint.spec.channel),
                )
            })
            .collect();
        touchpoints.sort_by(|a, b| a.name.cmp(&b.name));
        QueryScope {
            namespace: namespace.to_owned(),
            touchpoints,
        }
    }

    /// The touchpoints that produce `indicator`'s signal (see [`TouchpointScope::measures`]).
    pub fn measuring(&self, indicator: BuiltinIndicator) -> Vec<&TouchpointScope> {
        self.touchpoints
            .iter()
            .filter(|t| t.measures(indicator))
            .collect()
    }
}
