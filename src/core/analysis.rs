//! The whole assessment of a set of objects: per journey (consistency, coverage, KPI counts,
//! readiness) and per object (dangling references, empty scopes, duplicates).

use std::collections::{BTreeMap, HashMap};

use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;

use crate::api::{
    CoverageStatus, CustomerJourney, KpiCounts, KpiState, Readiness, Severity, Stage, Violation,
};

use super::consistency::check_rule;
use super::findings::{Finding, FindingCode, ObjectRef};
use super::readiness::{self, ReadinessInputs};
use super::world::{Groups, World, namespace_of};

/// What the conductor concludes about one journey: what its status says.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JourneyAssessment {
    /// The journey.
    pub journey: ObjectRef,
    /// Channels taking part, by name.
    pub channels: Vec<String>,
    /// Touchpoints on those channels at the journey's stages, by name.
    pub touchpoints: Vec<String>,
    /// KPIs reporting to the journey, by name.
    pub kpis: Vec<String>,
    /// Consistency violations: declared rules, then duplicate touchpoints.
    pub violations: Vec<Violation>,
    /// Coverage gaps (complete lists, whatever the journey requires).
    pub coverage: CoverageStatus,
    /// KPIs by state.
    pub kpi_counts: KpiCounts,
    /// Readiness score, band and criteria.
    pub readiness: Readiness,
    /// Findings about the journey (violations and required coverage gaps).
    pub findings: Vec<Finding>,
}

impl JourneyAssessment {
    /// Whether no error-severity violation exists.
    pub fn consistent(&self) -> bool {
        !self
            .violations
            .iter()
            .any(|v| v.severity == Severity::Error)
    }

    /// Whether every coverage requirement of the journey is met.
    pub fn covered(&self) -> bool {
        !self
            .findings
            .iter()
            .any(|f| f.code != FindingCode::Consistency && f.severity == Severity::Error)
    }
}

/// Everything concluded from a world.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// One assessment per journey, in namespace/name order.
    pub journeys: Vec<JourneyAssessment>,
    /// Findings about single objects (not tied to one journey).
    pub findings: Vec<Finding>,
}

impl Analysis {
    /// Every finding: per journey, then per object.
    pub fn all_findings(&self) -> impl Iterator<Item = &Finding> {
        self.journeys
            .iter()
            .flat_map(|j| j.findings.iter())
            .chain(self.findings.iter())
    }
}

/// Assesses every journey and every object of the world.
pub fn analyze(world: &World) -> Analysis {
    let mut journeys: Vec<JourneyAssessment> = (0..world.journeys.len())
        .map(|j| assess_journey(world, &world.journeys[j]))
        .collect();
    journeys.sort_by(|a, b| a.journey.cmp(&b.journey));
    let mut findings = object_findings(world);
    findings.sort_by(|a, b| (&a.subject, a.code).cmp(&(&b.subject, b.code)));
    Analysis { journeys, findings }
}

/// Assesses one journey against the world.
pub fn assess_journey(world: &World, journey: &CustomerJourney) -> JourneyAssessment {
    let subject = ObjectRef::to(journey);
    let channel_idx = world.journey_channels(journey);
    let touchpoint_idx = world.journey_touchpoints(journey, &channel_idx);
    let kpi_idx = world.journey_kpis(journey, &touchpoint_idx);
    let stages: Vec<Stage> = journey.spec.stages.clone();

    // Consistency: every declared rule over the channels, each channel serialized once.
    let specs: Vec<(String, Value)> = channel_idx
        .iter()
        .map(|&c| {
            let channel = &world.channels[c];
            (
                channel.name_any(),
                serde_json::to_value(&channel.spec).unwrap_or(Value::Null),
            )
        })
        .collect();
    let spec_refs: Vec<(&str, &Value)> = specs.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let mut violations: Vec<Violation> = journey
        .spec
        .consistency
        .rules
        .iter()
        .filter_map(|rule| check_rule(rule, &spec_refs))
        .collect();
    violations.extend(duplicate_touchpoints(world, &touchpoint_idx));

    // Coverage.
    let at_stage = |s: Stage| {
        touchpoint_idx
            .iter()
            .filter(move |&&t| world.touchpoints[t].spec.stage == s)
    };
    let kpi_stages: Vec<Stage> = {
        let mut all: Vec<Stage> = kpi_idx
            .iter()
            .flat_map(|&k| world.kpi_stages(k, &touchpoint_idx))
            .collect();
        all.sort();
        all.dedup();
        all
    };
    let coverage = CoverageStatus {
        stages_without_touchpoints: stages
            .iter()
            .copied()
            .filter(|&s| at_stage(s).next().is_none())
            .collect(),
        stages_without_listening: stages
            .iter()
            .copied()
            .filter(|&s| {
                !at_stage(s).any(|&t| !world.touchpoints[t].spec.signals.surveys.is_empty())
            })
            .collect(),
        stages_without_kpis: stages
            .iter()
            .copied()
            .filter(|s| !kpi_stages.contains(s))
            .collect(),
        channels_without_touchpoints: channel_idx
            .iter()
            .filter(|&&c| {
                let name = world.channels[c].name_any();
                !touchpoint_idx
                    .iter()
                    .any(|&t| world.touchpoints[t].spec.channel == name)
            })
            .map(|&c| world.channels[c].name_any())
            .collect(),
    };

    // KPIs by state (a KPI not evaluated yet counts as Unknown).
    let mut kpi_counts = KpiCounts::default();
    let mut kpis_not_met = Vec::new();
    for &k in &kpi_idx {
        let kpi = &world.kpis[k];
        let state = kpi
            .status
            .as_ref()
            .and_then(|s| s.state)
            .unwrap_or(KpiState::Unknown);
        match state {
            KpiState::Met => kpi_counts.met += 1,
            KpiState::AtRisk => kpi_counts.at_risk += 1,
            KpiState::Breached => kpi_counts.breached += 1,
            KpiState::InsufficientData => kpi_counts.insufficient_data += 1,
            KpiState::Unknown => kpi_counts.unknown += 1,
        }
        if state != KpiState::Met {
            kpis_not_met.push(format!("{} ({})", kpi.name_any(), state.as_str()));
        }
    }
    kpis_not_met.sort();

    let findings = journey_findings(journey, &subject, &violations, &coverage);
    let channels = |pred: &dyn Fn(&crate::api::ChannelSpec) -> bool| -> Vec<String> {
        channel_idx
            .iter()
            .filter(|&&c| pred(&world.channels[c].spec))
            .map(|&c| world.channels[c].name_any())
            .collect()
    };
    let stage_names = |s: &[Stage]| s.iter().map(|s| s.as_str().to_string()).collect::<Vec<_>>();
    let mut kpis_without_owner: Vec<String> = kpi_idx
        .iter()
        .filter(|&&k| world.kpis[k].spec.owner.is_none())
        .map(|&k| world.kpis[k].name_any())
        .collect();
    kpis_without_owner.sort();
    let mut collectors_not_ready: Vec<String> = touchpoint_idx
        .iter()
        .filter(|&&t| !collector_ready(&world.touchpoints[t]))
        .map(|&t| world.touchpoints[t].name_any())
        .collect();
    collectors_not_ready.sort();
    let readiness = readiness::assess(&ReadinessInputs {
        journey_owner: journey.spec.owner.is_some(),
        channels_without_owner: channels(&|s| s.owner.is_none()),
        stages_without_touchpoints: stage_names(&coverage.stages_without_touchpoints),
        stages_without_listening: stage_names(&coverage.stages_without_listening),
        channels_without_touchpoints: coverage.channels_without_touchpoints.clone(),
        error_violations: violations
            .iter()
            .filter(|v| v.severity == Severity::Error)
            .count(),
        channels_without_consent: channels(&|s| {
            s.privacy
                .as_ref()
                .and_then(|p| p.consent_policy_version.as_ref())
                .is_none()
        }),
        channels_without_service_levels: channels(&|s| {
            s.service_levels
                .as_ref()
                .and_then(|l| l.first_response_seconds)
                .is_none()
        }),
        stages_without_kpis: stage_names(&coverage.stages_without_kpis),
        kpis_without_owner,
        kpis: kpi_idx.len(),
        kpis_not_met,
        collectors_not_ready,
        touchpoints: touchpoint_idx.len(),
    });

    let mut kpi_names: Vec<String> = kpi_idx.iter().map(|&k| world.kpis[k].name_any()).collect();
    kpi_names.sort();
    let mut touchpoint_names: Vec<String> = touchpoint_idx
        .iter()
        .map(|&t| world.touchpoints[t].name_any())
        .collect();
    touchpoint_names.sort();
    JourneyAssessment {
        journey: subject,
        channels: specs.into_iter().map(|(n, _)| n).collect(),
        touchpoints: touchpoint_names,
        kpis: kpi_names,
        violations,
        coverage,
        kpi_counts,
        readiness,
        findings,
    }
}

/// Whether a touchpoint's status reports its collector Ready.
pub fn collector_ready(touchpoint: &crate::api::Touchpoint) -> bool {
    touchpoint.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Touchpoints with the same channel, stage and signals: their collectors would count the same
/// customers twice, inflating every KPI over them.
fn duplicate_touchpoints(world: &World, touchpoints: &[usize]) -> Vec<Violation> {
    let mut groups: BTreeMap<String, (String, Stage, Vec<String>)> = BTreeMap::new();
    for &t in touchpoints {
        let tp = &world.touchpoints[t];
        let mut surveys: Vec<String> = tp
            .spec
            .signals
            .surveys
            .iter()
            .map(|s| format!("{}{:?}", s.metric.as_str(), s.score_range()))
            .collect();
        surveys.sort();
        let mut interactions = tp.spec.signals.interactions.clone().unwrap_or_default();
        interactions.outcomes.sort();
        interactions.timings.sort();
        let key = format!(
            "{}|{}|{}|{:?}|{:?}",
            tp.spec.channel,
            tp.spec.stage,
            surveys.join(","),
            interactions.outcomes,
            interactions.timings
        );
        groups
            .entry(key)
            .or_insert_with(|| (tp.spec.channel.clone(), tp.spec.stage, Vec::new()))
            .2
            .push(tp.name_any());
    }
    groups
        .into_values()
        .filter(|(_, _, names)| names.len() > 1)
        .map(|(channel, stage, mut names)| {
            names.sort();
            Violation {
                rule: "duplicate-touchpoint".into(),
                severity: Severity::Error,
                message: format!(
                    "touchpoints {} listen to the same signals on {channel} at {stage}: their answers would be counted twice",
                    names.join(", "),
                ),
                values: Groups::from([(format!("{channel} at {stage}"), names)]),
            }
        })
        .collect()
}

fn journey_findings(
    journey: &CustomerJourney,
    subject: &ObjectRef,
    violations: &[Violation],
    coverage: &CoverageStatus,
) -> Vec<Finding> {
    let required = &journey.spec.coverage;
    let finding = |code, detail: String, message: String, values: Groups, severity| Finding {
        code,
        severity,
        subject: subject.clone(),
        detail: Some(detail),
        message,
        values,
    };
    let mut findings: Vec<Finding> = violations
        .iter()
        .map(|v| {
            let code = if v.rule == "duplicate-touchpoint" {
                FindingCode::DuplicateTouchpoint
            } else {
                FindingCode::Consistency
            };
            let detail = if code == FindingCode::Consistency {
                v.rule.split(' ').next().unwrap_or_default().to_string()
            } else {
                v.rule.clone()
            };
            finding(
                code,
                detail,
                v.message.clone(),
                v.values.clone(),
                v.severity,
            )
        })
        .collect();
    let journey_name = journey.name_any();
    for stage in &coverage.stages_without_touchpoints {
        findings.push(finding(
            FindingCode::StageWithoutTouchpoints,
            stage.to_string(),
            format!("stage {stage} of journey {journey_name} has no touchpoint: nothing listens to or measures customers there"),
            Groups::new(),
            Severity::Error,
        ));
    }
    if required.listening_per_stage {
        for stage in coverage
            .stages_without_listening
            .iter()
            .filter(|s| !coverage.stages_without_touchpoints.contains(s))
        {
            findings.push(finding(
                FindingCode::StageWithoutListening,
                stage.to_string(),
                format!("stage {stage} of journey {journey_name} has touchpoints but none asks customers a survey question (nps, csat or ces)"),
                Groups::new(),
                Severity::Error,
            ));
        }
    }
    if required.kpi_per_stage {
        for stage in coverage
            .stages_without_kpis
            .iter()
            .filter(|s| !coverage.stages_without_touchpoints.contains(s))
        {
            findings.push(finding(
                FindingCode::StageWithoutKpi,
                stage.to_string(),
                format!(
                    "stage {stage} of journey {journey_name} is not measured by any ExperienceKPI"
                ),
                Groups::new(),
                Severity::Error,
            ));
        }
    }
    if required.touchpoint_per_channel {
        for channel in &coverage.channels_without_touchpoints {
            findings.push(finding(
                FindingCode::ChannelWithoutTouchpoints,
                channel.clone(),
                format!("channel {channel} takes part in journey {journey_name} but has no touchpoint at its stages"),
                Groups::new(),
                Severity::Error,
            ));
        }
    }
    findings
}

/// Findings about single objects: references to what does not exist, scopes that match nothing,
/// journeys without channels.
fn object_findings(world: &World) -> Vec<Finding> {
    let mut findings = Vec::new();
    for tp in world.touchpoints {
        let ns = namespace_of(tp);
        if world.channel(ns, &tp.spec.channel).is_none() {
            findings.push(Finding {
                code: FindingCode::DanglingChannel,
                severity: Severity::Error,
                subject: ObjectRef::to(tp),
                detail: Some(tp.spec.channel.clone()),
                message: format!(
                    "touchpoint {} names channel {}, which does not exist in namespace {ns}",
                    tp.name_any(),
                    tp.spec.channel
                ),
                values: Groups::new(),
            });
        }
    }
    let journey_names: HashMap<(&str, String), ()> = world
        .journeys
        .iter()
        .map(|j| ((namespace_of(j), j.name_any()), ()))
        .collect();
    for (k, kpi) in world.kpis.iter().enumerate() {
        let ns = namespace_of(kpi);
        if world.kpi_touchpoints(k).is_empty() {
            findings.push(Finding {
                code: FindingCode::KpiScopeEmpty,
                severity: Severity::Error,
                subject: ObjectRef::to(kpi),
                detail: None,
                message: format!(
                    "KPI {} covers no touchpoint: its scope (selector, channels, stage) matches nothing in namespace {ns}",
                    kpi.name_any()
                ),
                values: Groups::new(),
            });
        }
        if let Some(j) = &kpi.spec.journey
            && !journey_names.contains_key(&(ns, j.clone()))
        {
            findings.push(Finding {
                code: FindingCode::DanglingJourney,
                severity: Severity::Error,
                subject: ObjectRef::to(kpi),
                detail: Some(j.clone()),
                message: format!(
                    "KPI {} reports to journey {j}, which does not exist in namespace {ns}",
                    kpi.name_any()
                ),
                values: Groups::new(),
            });
        }
    }
    for journey in world.journeys {
        if world.journey_channels(journey).is_empty() {
            findings.push(Finding {
                code: FindingCode::JourneyWithoutChannels,
                severity: Severity::Error,
                subject: ObjectRef::to(journey),
                detail: None,
                message: format!(
                    "journey {} selects no channel: check spec.channelSelector against the channels' labels",
                    journey.name_any()
                ),
                values: Groups::new(),
            });
        }
    }
    findings
}
