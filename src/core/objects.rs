//! Findings about single objects: references to what does not exist, KPI scopes that match
//! nothing (naming the value that matched nothing), and objects no journey looks at — each of
//! which would otherwise pass silently.
//!
//! Causes come before their consequences: channels, then touchpoints, then KPIs; and a
//! consequence already explained by a cause is not reported again (the touchpoints of a channel
//! no journey selects are named in the channel's finding, not each on its own).

use std::collections::HashMap;

use kube::ResourceExt;

use crate::api::{CustomerJourney, ExperienceKPI, Severity, Stage};

use super::analysis::{count, list};
use super::findings::{Finding, FindingCode, ObjectRef};
use super::selector;
use super::world::{World, names, namespace_of};

/// Every finding about single objects, causes first.
pub fn object_findings(world: &World) -> Vec<Finding> {
    let links = Links::new(world);
    let mut channels = Vec::new();
    for c in 0..world.channels.len() {
        if links.channel_journeys[c].is_empty() {
            channels.push(channel_without_journey(world, c));
        }
    }
    let mut touchpoints = Vec::new();
    for (t, tp) in world.touchpoints.iter().enumerate() {
        let ns = namespace_of(tp);
        match world.channel_index(ns, &tp.spec.channel) {
            None => touchpoints.push(
                Finding::new(
                    FindingCode::DanglingChannel,
                    Severity::Error,
                    ObjectRef::to(tp),
                    format!(
                        "touchpoint {} names channel {}, which does not exist in namespace {ns}",
                        tp.name_any(),
                        tp.spec.channel
                    ),
                )
                .detail(tp.spec.channel.clone())
                .field("spec.channel"),
            ),
            Some(c) if !links.channel_journeys[c].is_empty() && !links.touchpoint_in_journey[t] => {
                let journeys: Vec<String> = links.channel_journeys[c]
                    .iter()
                    .map(|&j| {
                        let journey = &world.journeys[j];
                        let stages: Vec<&str> =
                            journey.spec.stages.iter().map(|s| s.as_str()).collect();
                        format!("{}: {}", journey.name_any(), stages.join(", "))
                    })
                    .collect();
                touchpoints.push(
                    Finding::new(
                        FindingCode::TouchpointWithoutJourney,
                        Severity::Warning,
                        ObjectRef::to(tp),
                        format!(
                            "touchpoint {} is at stage {}, which no journey of channel {} has ({}): what it hears counts in no journey",
                            tp.name_any(),
                            tp.spec.stage,
                            tp.spec.channel,
                            journeys.join("; ")
                        ),
                    )
                    .detail(tp.spec.stage.as_str())
                    .field("spec.stage"),
                );
            }
            Some(_) => {}
        }
    }
    let mut kpis = Vec::new();
    for (k, kpi) in world.kpis.iter().enumerate() {
        kpis.extend(kpi_findings(world, &links, k, kpi));
    }
    for list in [&mut channels, &mut touchpoints, &mut kpis] {
        list.sort_by(|a, b| (&a.subject, a.code).cmp(&(&b.subject, b.code)));
    }
    channels
        .into_iter()
        .chain(touchpoints)
        .chain(kpis)
        .collect()
}

/// Which journeys see which objects.
struct Links {
    /// Per channel, the journeys selecting it.
    channel_journeys: Vec<Vec<usize>>,
    /// Per touchpoint, whether a journey selects its channel and has its stage.
    touchpoint_in_journey: Vec<bool>,
    /// Journeys by namespace and name.
    journey_by_name: HashMap<(String, String), usize>,
}

impl Links {
    fn new(world: &World) -> Self {
        let mut channel_journeys = vec![Vec::new(); world.channels.len()];
        let mut journey_by_name = HashMap::new();
        for (j, journey) in world.journeys.iter().enumerate() {
            journey_by_name.insert((namespace_of(journey).to_string(), journey.name_any()), j);
            for c in world.journey_channels(journey) {
                channel_journeys[c].push(j);
            }
        }
        let touchpoint_in_journey = world
            .touchpoints
            .iter()
            .map(|tp| {
                world
                    .channel_index(namespace_of(tp), &tp.spec.channel)
                    .is_some_and(|c| {
                        channel_journeys[c]
                            .iter()
                            .any(|&j| world.journeys[j].spec.stages.contains(&tp.spec.stage))
                    })
            })
            .collect();
        Self {
            channel_journeys,
            touchpoint_in_journey,
            journey_by_name,
        }
    }
}

fn channel_without_journey(world: &World, c: usize) -> Finding {
    let channel = &world.channels[c];
    let ns = namespace_of(channel);
    let name = channel.name_any();
    let journeys: Vec<&CustomerJourney> = world
        .journeys
        .iter()
        .filter(|j| namespace_of(*j) == ns)
        .collect();
    let labels = channel.labels();
    let why = if journeys.is_empty() {
        format!("namespace {ns} has no CustomerJourney")
    } else {
        let selectors: Vec<String> = journeys
            .iter()
            .map(|j| {
                format!(
                    "{} selects {}",
                    j.name_any(),
                    selector::describe(j.spec.channel_selector.as_ref())
                )
            })
            .collect();
        let own = if labels.is_empty() {
            "it has no labels".to_string()
        } else {
            let own: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("its labels are {}", own.join(","))
        };
        format!("{own}, and {}", selectors.join("; "))
    };
    let on_it: Vec<String> = names(
        world.touchpoints,
        world.touchpoints_of_channel(ns, &name).iter().copied(),
    );
    let also = match on_it.len() {
        0 => String::new(),
        1 => format!("; nor is its touchpoint {}", on_it[0]),
        n => format!("; nor are its {n} touchpoints ({})", list(&on_it)),
    };
    Finding::new(
        FindingCode::ChannelWithoutJourney,
        Severity::Warning,
        ObjectRef::to(channel),
        format!(
            "channel {name} is in no journey ({why}): its consistency and coverage are never checked{also}"
        ),
    )
    .field(if labels.is_empty() {
        "metadata.name"
    } else {
        "metadata.labels"
    })
}

fn kpi_findings(world: &World, links: &Links, k: usize, kpi: &ExperienceKPI) -> Vec<Finding> {
    let ns = namespace_of(kpi);
    let name = kpi.name_any();
    let subject = ObjectRef::to(kpi);
    let scope = &kpi.spec.scope;
    let matched = world.kpi_touchpoints(k);
    let mut findings = Vec::new();

    // Scope channels that do not exist: a typo narrows the KPI silently.
    let mut dangling = false;
    for (i, channel) in scope.channels.iter().enumerate() {
        if world.channel_index(ns, channel).is_none() {
            dangling = true;
            let consequence = if matched.is_empty() {
                ": the KPI covers no touchpoint"
            } else {
                ": the KPI measures the other channels only"
            };
            findings.push(
                Finding::new(
                    FindingCode::DanglingScopeChannel,
                    Severity::Error,
                    subject.clone(),
                    format!(
                        "KPI {name}'s scope names channel {channel}, which does not exist in namespace {ns}{consequence}"
                    ),
                )
                .detail(channel.clone())
                .field(format!("spec.scope.channels[{i}]")),
            );
        }
    }
    if matched.is_empty() && !dangling {
        let (detail, field, why) = empty_scope(world, kpi);
        let mut finding = Finding::new(
            FindingCode::KpiScopeEmpty,
            Severity::Error,
            subject.clone(),
            format!("KPI {name} covers no touchpoint: {why}"),
        )
        .field(field);
        if let Some(detail) = detail {
            finding = finding.detail(detail);
        }
        findings.push(finding);
    }

    // Which journeys the KPI's touchpoints belong to.
    let named = kpi.spec.journey.as_ref();
    match named {
        Some(journey) => match links.journey_by_name.get(&(ns.to_string(), journey.clone())) {
            None => findings.push(
                Finding::new(
                    FindingCode::DanglingJourney,
                    Severity::Error,
                    subject.clone(),
                    format!(
                        "KPI {name} reports to journey {journey}, which does not exist in namespace {ns}"
                    ),
                )
                .detail(journey.clone())
                .field("spec.journey"),
            ),
            Some(&j) if !matched.is_empty() => {
                let target = &world.journeys[j];
                let channels = world.journey_channels(target);
                let touchpoints = world.journey_touchpoints(target, &channels);
                let covered = matched
                    .iter()
                    .any(|t| touchpoints.binary_search(t).is_ok());
                if !covered {
                    findings.push(misses_journey(world, kpi, target, matched));
                }
            }
            Some(_) => {}
        },
        None if !matched.is_empty() => {
            let in_journey = matched.iter().any(|&t| links.touchpoint_in_journey[t]);
            if !in_journey {
                let covered = names(world.touchpoints, matched.iter().copied());
                findings.push(
                    Finding::new(
                        FindingCode::KpiWithoutJourney,
                        Severity::Warning,
                        subject.clone(),
                        format!(
                            "KPI {name} counts in no journey: the touchpoints it covers ({}) are on no journey's channels at its stages",
                            list(&covered)
                        ),
                    )
                    .field("spec.scope"),
                );
            }
        }
        None => {}
    }

    if kpi.spec.owner.is_none() {
        findings.push(
            Finding::new(
                FindingCode::KpiWithoutOwner,
                Severity::Warning,
                subject,
                format!(
                    "KPI {name} names no owner: set spec.owner to the function that acts on a breach (breach alerts are routed by owner)"
                ),
            )
            .field("spec.owner"),
        );
    }
    findings
}

/// A KPI naming a journey whose touchpoints it does not cover: the stage, or the channels.
fn misses_journey(
    world: &World,
    kpi: &ExperienceKPI,
    journey: &CustomerJourney,
    matched: &[usize],
) -> Finding {
    let name = kpi.name_any();
    let journey_name = journey.name_any();
    let stages: Vec<&str> = journey.spec.stages.iter().map(|s| s.as_str()).collect();
    let (field, why) = match kpi.spec.scope.stage {
        Some(stage) if !journey.spec.stages.contains(&stage) => (
            "spec.scope.stage",
            format!(
                "its stage {stage} is not one of {journey_name}'s stages ({})",
                stages.join(", ")
            ),
        ),
        _ => {
            let covered = names(world.touchpoints, matched.iter().copied());
            (
                "spec.scope",
                format!(
                    "the touchpoints it covers ({}) are not on {journey_name}'s channels at its stages ({})",
                    list(&covered),
                    stages.join(", ")
                ),
            )
        }
    };
    Finding::new(
        FindingCode::KpiMissesJourney,
        Severity::Error,
        ObjectRef::to(kpi),
        format!(
            "KPI {name} reports to journey {journey_name} but measures none of its touchpoints: {why}"
        ),
    )
    .detail(journey_name)
    .field(field)
}

/// Why a KPI's scope matches nothing, found by applying its conditions one by one: the value that
/// matched nothing (as the finding's detail), the field holding it, and a sentence.
fn empty_scope(world: &World, kpi: &ExperienceKPI) -> (Option<String>, String, String) {
    let ns = namespace_of(kpi);
    let scope = &kpi.spec.scope;
    let mut candidates: Vec<usize> = world.touchpoints_in(ns).to_vec();
    if candidates.is_empty() {
        return (
            None,
            "spec.scope".into(),
            format!("namespace {ns} has no touchpoint"),
        );
    }
    let mut on = String::new();
    if !scope.channels.is_empty() {
        candidates.retain(|&t| scope.channels.contains(&world.touchpoints[t].spec.channel));
        let listed = scope.channels.join(", ");
        if candidates.is_empty() {
            let verb = if scope.channels.len() == 1 {
                "has"
            } else {
                "have"
            };
            let noun = if scope.channels.len() == 1 {
                "channel"
            } else {
                "channels"
            };
            return (
                Some(listed.clone()),
                "spec.scope.channels".into(),
                format!("{noun} {listed} {verb} no touchpoint"),
            );
        }
        on = format!(
            " on {} {listed}",
            if scope.channels.len() == 1 {
                "channel"
            } else {
                "channels"
            }
        );
    }
    if let Some(stage) = scope.stage {
        let present = stages_of(world, &candidates);
        candidates.retain(|&t| world.touchpoints[t].spec.stage == stage);
        if candidates.is_empty() {
            return (
                Some(stage.to_string()),
                "spec.scope.stage".into(),
                format!(
                    "no touchpoint{on} is at stage {stage} (they are at {})",
                    present.join(", ")
                ),
            );
        }
    }
    let selected = selector::describe(scope.touchpoint_selector.as_ref());
    let at = scope
        .stage
        .map(|s| format!(" at stage {s}"))
        .unwrap_or_default();
    (
        Some(selected.clone()),
        "spec.scope.touchpointSelector".into(),
        format!(
            "selector {selected} matches none of the {}{on}{at}",
            count(candidates.len(), "touchpoint", "touchpoints")
        ),
    )
}

/// Distinct stages of some touchpoints, in journey order.
fn stages_of(world: &World, among: &[usize]) -> Vec<String> {
    let mut stages: Vec<Stage> = among
        .iter()
        .map(|&t| world.touchpoints[t].spec.stage)
        .collect();
    stages.sort();
    stages.dedup();
    stages.iter().map(|s| s.to_string()).collect()
}
