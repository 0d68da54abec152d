//! The world as the conductor sees it: every object of the four kinds, indexed for the questions
//! the checks ask (which channels a journey selects, which touchpoints a channel or KPI has).

use std::collections::{BTreeMap, HashMap};

use kube::{Resource, ResourceExt};

use crate::api::{Channel, CustomerJourney, ExperienceKPI, Stage, Touchpoint};

use super::selector;

/// Every object, borrowed, with indexes. Build once per analysis with [`World::new`].
pub struct World<'a> {
    /// All channels.
    pub channels: &'a [Channel],
    /// All touchpoints.
    pub touchpoints: &'a [Touchpoint],
    /// All KPIs.
    pub kpis: &'a [ExperienceKPI],
    /// All journeys.
    pub journeys: &'a [CustomerJourney],
    channel_by_name: HashMap<&'a str, HashMap<&'a str, usize>>,
    touchpoints_by_channel: HashMap<&'a str, HashMap<&'a str, Vec<usize>>>,
    touchpoints_by_namespace: HashMap<&'a str, Vec<usize>>,
    channels_by_namespace: HashMap<&'a str, Vec<usize>>,
    kpi_matches: Vec<Vec<usize>>,
    /// Whether the objects come from manifests rather than a cluster: their statuses (KPI states,
    /// collector readiness) are then unknown, not failing.
    pub offline: bool,
}

/// Namespace of an object, `default` when unset (as offline manifests often are).
pub fn namespace_of<K: ResourceExt>(object: &K) -> &str {
    object.meta().namespace.as_deref().unwrap_or("default")
}

impl<'a> World<'a> {
    /// Indexes the objects. Cost is linear in their number plus, per KPI, the touchpoints of the
    /// channels (or namespace) its scope names.
    pub fn new(
        channels: &'a [Channel],
        touchpoints: &'a [Touchpoint],
        kpis: &'a [ExperienceKPI],
        journeys: &'a [CustomerJourney],
    ) -> Self {
        let mut channel_by_name: HashMap<&str, HashMap<&str, usize>> = HashMap::new();
        let mut channels_by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, c) in channels.iter().enumerate() {
            let ns = namespace_of(c);
            channel_by_name
                .entry(ns)
                .or_default()
                .insert(c.meta().name.as_deref().unwrap_or_default(), i);
            channels_by_namespace.entry(ns).or_default().push(i);
        }
        let mut touchpoints_by_channel: HashMap<&str, HashMap<&str, Vec<usize>>> = HashMap::new();
        let mut touchpoints_by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, t) in touchpoints.iter().enumerate() {
            let ns = namespace_of(t);
            touchpoints_by_channel
                .entry(ns)
                .or_default()
                .entry(t.spec.channel.as_str())
                .or_default()
                .push(i);
            touchpoints_by_namespace.entry(ns).or_default().push(i);
        }
        let mut world = World {
            channels,
            touchpoints,
            kpis,
            journeys,
            channel_by_name,
            touchpoints_by_channel,
            touchpoints_by_namespace,
            channels_by_namespace,
            kpi_matches: Vec::new(),
            offline: false,
        };
        world.kpi_matches = kpis.iter().map(|k| world.scope_matches(k)).collect();
        world
    }

    /// The same world, read from manifests: statuses are unknown, not failing.
    pub fn offline(mut self) -> Self {
        self.offline = true;
        self
    }

    /// The channel named `name` in `namespace`.
    pub fn channel(&self, namespace: &str, name: &str) -> Option<&'a Channel> {
        self.channel_index(namespace, name)
            .map(|i| &self.channels[i])
    }

    /// Index of the channel named `name` in `namespace`.
    pub fn channel_index(&self, namespace: &str, name: &str) -> Option<usize> {
        self.channel_by_name
            .get(namespace)
            .and_then(|m| m.get(name))
            .copied()
    }

    /// Indexes of the channels of `namespace`.
    pub fn channels_in(&self, namespace: &str) -> &[usize] {
        self.channels_by_namespace
            .get(namespace)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Indexes of the touchpoints of `namespace`.
    pub fn touchpoints_in(&self, namespace: &str) -> &[usize] {
        self.touchpoints_by_namespace
            .get(namespace)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Indexes of the touchpoints on channel `name` in `namespace`.
    pub fn touchpoints_of_channel(&self, namespace: &str, name: &str) -> &[usize] {
        self.touchpoints_by_channel
            .get(namespace)
            .and_then(|m| m.get(name))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Indexes of the channels a journey selects, in name order.
    pub fn journey_channels(&self, journey: &CustomerJourney) -> Vec<usize> {
        let ns = namespace_of(journey);
        let mut selected: Vec<usize> = self
            .channels_by_namespace
            .get(ns)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| {
                selector::matches(
                    journey.spec.channel_selector.as_ref(),
                    self.channels[i].meta().labels.as_ref(),
                )
            })
            .collect();
        selected.sort_by_key(|&i| self.channels[i].name_any());
        selected
    }

    /// Indexes of the touchpoints of a journey: on its channels, at its stages.
    pub fn journey_touchpoints(&self, journey: &CustomerJourney, channels: &[usize]) -> Vec<usize> {
        let ns = namespace_of(journey);
        let mut found: Vec<usize> = channels
            .iter()
            .flat_map(|&c| {
                self.touchpoints_of_channel(
                    ns,
                    self.channels[c].meta().name.as_deref().unwrap_or_default(),
                )
            })
            .copied()
            .filter(|&t| {
                journey
                    .spec
                    .stages
                    .contains(&self.touchpoints[t].spec.stage)
            })
            .collect();
        found.sort_unstable();
        found
    }

    /// Indexes of the touchpoints KPI number `kpi` covers.
    pub fn kpi_touchpoints(&self, kpi: usize) -> &[usize] {
        &self.kpi_matches[kpi]
    }

    /// Indexes of the KPIs that report to a journey: named it, or name none and cover one of its touchpoints.
    pub fn journey_kpis(&self, journey: &CustomerJourney, touchpoints: &[usize]) -> Vec<usize> {
        let ns = namespace_of(journey);
        let name = journey.name_any();
        (0..self.kpis.len())
            .filter(|&k| {
                let kpi = &self.kpis[k];
                if namespace_of(kpi) != ns {
                    return false;
                }
                match kpi.spec.journey.as_deref() {
                    Some(j) => j == name,
                    None => self.kpi_matches[k]
                        .iter()
                        .any(|t| touchpoints.binary_search(t).is_ok()),
                }
            })
            .collect()
    }

    /// Stages at which a KPI covers at least one of `touchpoints` (sorted indexes).
    pub fn kpi_stages(&self, kpi: usize, touchpoints: &[usize]) -> Vec<Stage> {
        let mut stages: Vec<Stage> = self.kpi_matches[kpi]
            .iter()
            .filter(|t| touchpoints.binary_search(t).is_ok())
            .map(|&t| self.touchpoints[t].spec.stage)
            .collect();
        stages.sort();
        stages.dedup();
        stages
    }

    fn scope_matches(&self, kpi: &ExperienceKPI) -> Vec<usize> {
        let ns = namespace_of(kpi);
        let scope = &kpi.spec.scope;
        let candidates: Vec<usize> = if scope.channels.is_empty() {
            self.touchpoints_by_namespace
                .get(ns)
                .cloned()
                .unwrap_or_default()
        } else {
            scope
                .channels
                .iter()
                .flat_map(|c| self.touchpoints_of_channel(ns, c))
                .copied()
                .collect()
        };
        let mut matched: Vec<usize> = candidates
            .into_iter()
            .filter(|&t| {
                let tp = &self.touchpoints[t];
                scope.stage.is_none_or(|s| s == tp.spec.stage)
                    && selector::matches(
                        scope.touchpoint_selector.as_ref(),
                        tp.meta().labels.as_ref(),
                    )
            })
            .collect();
        matched.sort_unstable();
        matched.dedup();
        matched
    }
}

/// Names of objects by index, sorted, for messages.
pub fn names<K: ResourceExt>(
    objects: &[K],
    indexes: impl IntoIterator<Item = usize>,
) -> Vec<String> {
    let mut names: Vec<String> = indexes.into_iter().map(|i| objects[i].name_any()).collect();
    names.sort();
    names
}

/// Groups channel names by a key, with deterministic order.
pub type Groups = BTreeMap<String, Vec<String>>;
