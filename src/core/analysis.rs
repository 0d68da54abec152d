//! The whole assessment of a set of objects: per journey (consistency, coverage, KPI counts,
//! readiness) and per object (dangling references, empty scopes, what no journey looks at).

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;

use crate::api::{
    ChannelSpec, ChannelType, CoverageStatus, CustomerJourney, KpiCounts, KpiState, Readiness,
    SelfAssessment, Severity, Stage, Violation,
};

use super::consistency::{check_rule, checks_nothing};
use super::findings::{Finding, FindingCode, ObjectRef};
use super::readiness::{self, ReadinessInputs};
use super::selector;
use super::self_assessment::{self, EvidenceInputs};
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
    /// Consistency violations: declared rules (broken, or checking nothing), then duplicate touchpoints.
    pub violations: Vec<Violation>,
    /// Coverage gaps (complete lists, whatever the journey requires).
    pub coverage: CoverageStatus,
    /// KPIs by state.
    pub kpi_counts: KpiCounts,
    /// Whether KPI states and collector readiness are known (false when checking manifests).
    pub statuses_known: bool,
    /// Readiness score, band and criteria.
    pub readiness: Readiness,
    /// The 25-question CX self-assessment: evidenced, declared and missing answers.
    pub self_assessment: SelfAssessment,
    /// Findings about the journey: root causes first (no channel), then rules, duplicates and
    /// the coverage gaps it requires.
    pub findings: Vec<Finding>,
    /// Where the journey is written, when it was read from a file (`check`).
    #[serde(flatten)]
    pub origin: Option<super::findings::Origin>,
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
            .any(|f| f.code.is_coverage() && f.severity == Severity::Error)
    }
}

/// Everything concluded from a world.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// One assessment per journey, in namespace/name order.
    pub journeys: Vec<JourneyAssessment>,
    /// Findings about single objects (not tied to one journey), causes first: channels, then
    /// touchpoints, then KPIs.
    pub findings: Vec<Finding>,
}

impl Analysis {
    /// Every finding: per object (the causes), then per journey.
    pub fn all_findings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .chain(self.journeys.iter().flat_map(|j| j.findings.iter()))
    }
}

/// Assesses every journey and every object of the world.
pub fn analyze(world: &World) -> Analysis {
    let mut journeys: Vec<JourneyAssessment> = world
        .journeys
        .iter()
        .map(|journey| assess_journey(world, journey))
        .collect();
    journeys.sort_by(|a, b| a.journey.cmp(&b.journey));
    for (journey, finding) in super::listening::theme_conflicts(world) {
        if let Some(assessment) = journeys.iter_mut().find(|a| a.journey == journey) {
            assessment.findings.push(finding);
        }
    }
    let findings = super::objects::object_findings(world);
    Analysis { journeys, findings }
}

/// A violation with the finding code it stands for and the field to fix.
struct Located {
    code: FindingCode,
    violation: Violation,
    field: String,
    field_of: Option<ObjectRef>,
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
    let mut located: Vec<Located> = Vec::new();
    for (i, rule) in journey.spec.consistency.rules.iter().enumerate() {
        if let Some(violation) = checks_nothing(rule, &spec_refs) {
            located.push(Located {
                code: FindingCode::RuleChecksNothing,
                violation,
                field: format!("spec.consistency.rules[{i}].field"),
                field_of: None,
            });
        } else if let Some(violation) = check_rule(rule, &spec_refs) {
            located.push(Located {
                code: FindingCode::Consistency,
                violation,
                field: format!("spec.consistency.rules[{i}]"),
                field_of: None,
            });
        }
    }
    located.extend(duplicate_touchpoints(world, &touchpoint_idx));

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

    let mut findings =
        journey_findings(world, journey, &subject, &located, &coverage, &channel_idx);
    findings.extend(super::listening::theme_findings(
        journey,
        &subject,
        touchpoint_idx.len(),
    ));
    let rules_not_holding: Vec<String> = located
        .iter()
        .filter(|l| l.code != FindingCode::DuplicateTouchpoint)
        .map(|l| l.violation.rule.clone())
        .collect();
    let violations: Vec<Violation> = located.into_iter().map(|l| l.violation).collect();
    let channels = |pred: &dyn Fn(&ChannelSpec) -> bool| -> Vec<String> {
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
        channels: channel_idx.len(),
        channels_without_owner: channels(&|s| s.owner.is_none()),
        stages_without_touchpoints: stage_names(&coverage.stages_without_touchpoints),
        stages_without_listening: stage_names(&coverage.stages_without_listening),
        channels_without_touchpoints: coverage.channels_without_touchpoints.clone(),
        rules: journey.spec.consistency.rules.len(),
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
        collectors_not_ready: collectors_not_ready.clone(),
        touchpoints: touchpoint_idx.len(),
        offline: world.offline,
    });

    let mut kpi_names: Vec<String> = kpi_idx.iter().map(|&k| world.kpis[k].name_any()).collect();
    kpi_names.sort();

    // The self-assessment: evidence from what was just concluded, then the declared answers.
    let state_of = |k: usize| {
        world.kpis[k]
            .status
            .as_ref()
            .and_then(|s| s.state)
            .unwrap_or(KpiState::Unknown)
    };
    let kpis_where = |pred: &dyn Fn(usize) -> bool| -> Vec<String> {
        let mut names: Vec<String> = kpi_idx
            .iter()
            .copied()
            .filter(|&k| pred(k))
            .map(|k| world.kpis[k].name_any())
            .collect();
        names.sort();
        names
    };
    let at_stage_kpis = |stage: Stage| -> Vec<(String, bool)> {
        let mut found: Vec<(String, bool)> = kpi_idx
            .iter()
            .copied()
            .filter(|&k| world.kpi_stages(k, &touchpoint_idx).contains(&stage))
            .map(|k| (world.kpis[k].name_any(), state_of(k) == KpiState::Met))
            .collect();
        found.sort();
        found
    };
    let journey_name = journey.name_any();
    let evidence = self_assessment::evidence(&EvidenceInputs {
        offline: world.offline,
        journey_owner: journey.spec.owner.is_some(),
        channels: specs.iter().map(|(n, _)| n.clone()).collect(),
        physical_channels: channels(&|s| {
            matches!(
                s.channel_type,
                ChannelType::Store | ChannelType::Voice | ChannelType::Kiosk
            )
        }),
        digital_channels: channels(&|s| {
            !matches!(
                s.channel_type,
                ChannelType::Store | ChannelType::Voice | ChannelType::Kiosk | ChannelType::Other
            )
        }),
        channels_without_owner: channels(&|s| s.owner.is_none()),
        channels_without_consent: channels(&|s| {
            s.privacy
                .as_ref()
                .and_then(|p| p.consent_policy_version.as_ref())
                .is_none()
        }),
        rules: journey.spec.consistency.rules.len(),
        rules_not_holding,
        error_violations: violations
            .iter()
            .filter(|v| v.severity == Severity::Error)
            .count(),
        coverage_gaps: findings
            .iter()
            .filter(|f| f.code.is_coverage() && f.severity == Severity::Error)
            .map(|f| {
                let what = f.detail.clone().unwrap_or_default();
                match f.code {
                    FindingCode::StageWithoutTouchpoints => format!("no touchpoint at {what}"),
                    FindingCode::StageWithoutListening => format!("no survey at {what}"),
                    FindingCode::StageWithoutKpi => format!("no KPI at {what}"),
                    FindingCode::ChannelWithoutTouchpoints => format!("no touchpoint on {what}"),
                    _ => "no channel".into(),
                }
            })
            .collect(),
        stages_without_touchpoints: stage_names(&coverage.stages_without_touchpoints),
        stages_without_listening: stage_names(&coverage.stages_without_listening),
        channels_without_touchpoints: coverage.channels_without_touchpoints.clone(),
        touchpoints: touchpoint_idx.len(),
        collectors_not_ready: collectors_not_ready.clone(),
        kpis: kpi_names.clone(),
        kpis_without_owner: kpis_where(&|k| world.kpis[k].spec.owner.is_none()),
        kpis_missing_journey: kpis_where(&|k| {
            world.kpis[k].spec.journey.as_deref() == Some(journey_name.as_str())
                && world.kpi_stages(k, &touchpoint_idx).is_empty()
        }),
        kpis_not_evaluated: kpis_where(&|k| state_of(k) == KpiState::Unknown),
        kpis_without_samples: kpis_where(&|k| {
            matches!(state_of(k), KpiState::Unknown | KpiState::InsufficientData)
        }),
        has_loyalty_stage: stages.contains(&Stage::Loyalty),
        has_advocacy_stage: stages.contains(&Stage::Advocacy),
        loyalty_kpis: at_stage_kpis(Stage::Loyalty),
        advocacy_kpis: at_stage_kpis(Stage::Advocacy),
    });
    let (self_assessment, contradictions) =
        self_assessment::assess(journey.spec.self_assessment.as_ref(), &evidence);
    for c in contradictions {
        findings.push(
            Finding::new(
                FindingCode::SelfAssessmentContradicted,
                Severity::Warning,
                subject.clone(),
                c.message,
            )
            .detail(c.question.to_string())
            .field(format!("spec.selfAssessment.answers[{}].answer", c.index)),
        );
    }
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
        statuses_known: !world.offline,
        readiness,
        self_assessment,
        findings,
        origin: None,
    }
}

/// The journey's coverage gaps by kind, as `cx_journey_coverage_gaps` exports them: a kind the
/// journey does not require (`coverage.kpiPerStage: false`, …) counts 0, so that a journey
/// meeting its own requirements shows no gap. A stage without touchpoints is always a gap.
pub fn coverage_gap_counts(
    required: &crate::api::CoverageRequirements,
    coverage: &CoverageStatus,
) -> [(&'static str, usize); 4] {
    let when = |required: bool, gaps: usize| if required { gaps } else { 0 };
    [
        (
            "stage_without_touchpoints",
            coverage.stages_without_touchpoints.len(),
        ),
        (
            "stage_without_listening",
            when(
                required.listening_per_stage,
                coverage.stages_without_listening.len(),
            ),
        ),
        (
            "stage_without_kpi",
            when(required.kpi_per_stage, coverage.stages_without_kpis.len()),
        ),
        (
            "channel_without_touchpoints",
            when(
                required.touchpoint_per_channel,
                coverage.channels_without_touchpoints.len(),
            ),
        ),
    ]
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
/// customers twice, inflating every KPI over them. Located at the last of them by name.
fn duplicate_touchpoints(world: &World, touchpoints: &[usize]) -> Vec<Located> {
    let mut groups: BTreeMap<String, (String, Stage, Vec<usize>)> = BTreeMap::new();
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
        interactions.custom_outcomes.sort();
        interactions.timings.sort();
        let key = format!(
            "{}|{}|{}|{:?}|{:?}|{:?}",
            tp.spec.channel,
            tp.spec.stage,
            surveys.join(","),
            interactions.outcomes,
            interactions.custom_outcomes,
            interactions.timings
        );
        groups
            .entry(key)
            .or_insert_with(|| (tp.spec.channel.clone(), tp.spec.stage, Vec::new()))
            .2
            .push(t);
    }
    groups
        .into_values()
        .filter(|(_, _, members)| members.len() > 1)
        .map(|(channel, stage, mut members)| {
            members.sort_by_key(|&t| world.touchpoints[t].name_any());
            let names: Vec<String> = members
                .iter()
                .map(|&t| world.touchpoints[t].name_any())
                .collect();
            let last = &world.touchpoints[*members.last().expect("a group of two or more")];
            Located {
                code: FindingCode::DuplicateTouchpoint,
                violation: Violation {
                    rule: "duplicate-touchpoint".into(),
                    severity: Severity::Error,
                    message: format!(
                        "touchpoints {} listen to the same signals on {channel} at {stage}: their answers would be counted twice",
                        names.join(", "),
                    ),
                    values: Groups::from([(format!("{channel} at {stage}"), names)]),
                },
                field: "spec.signals".into(),
                field_of: Some(ObjectRef::to(last)),
            }
        })
        .collect()
}

/// "1 stage", "2 stages".
pub fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// "a, b, c and 4 more": keeps messages short on large organisations.
pub fn list(items: &[String]) -> String {
    const SHOWN: usize = 5;
    if items.len() <= SHOWN {
        items.join(", ")
    } else {
        format!(
            "{} and {} more",
            items[..SHOWN].join(", "),
            items.len() - SHOWN
        )
    }
}

fn stage_field(journey: &CustomerJourney, stage: Stage) -> String {
    journey
        .spec
        .stages
        .iter()
        .position(|s| *s == stage)
        .map_or_else(|| "spec.stages".into(), |i| format!("spec.stages[{i}]"))
}

fn journey_findings(
    world: &World,
    journey: &CustomerJourney,
    subject: &ObjectRef,
    located: &[Located],
    coverage: &CoverageStatus,
    channel_idx: &[usize],
) -> Vec<Finding> {
    let required = &journey.spec.coverage;
    let journey_name = journey.name_any();
    let ns = namespace_of(journey);
    let mut findings = Vec::new();

    // The root cause first: with no channel, every stage lacks touchpoints and every rule checks
    // nothing; those consequences are said once, here.
    if channel_idx.is_empty() {
        let in_namespace =
            super::world::names(world.channels, world.channels_in(ns).iter().copied());
        let selector = journey.spec.channel_selector.as_ref();
        let why = if in_namespace.is_empty() {
            format!("namespace {ns} has no channel")
        } else {
            format!(
                "selector {} matches none of the {} in namespace {ns} ({})",
                selector::describe(selector),
                count(in_namespace.len(), "channel", "channels"),
                list(&in_namespace)
            )
        };
        let stages: Vec<String> = journey.spec.stages.iter().map(|s| s.to_string()).collect();
        let mut finding = Finding::new(
            FindingCode::JourneyWithoutChannels,
            Severity::Error,
            subject.clone(),
            format!(
                "journey {journey_name} selects no channel: {why}; so no stage ({}) has a touchpoint and no rule has anything to check",
                stages.join(", ")
            ),
        )
        .detail(selector::describe(selector));
        if selector.is_some() {
            finding = finding.field("spec.channelSelector");
        }
        findings.push(finding);
        return findings;
    }

    for l in located {
        let detail = match l.code {
            FindingCode::DuplicateTouchpoint => l.violation.rule.clone(),
            _ => l
                .violation
                .rule
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        let mut finding = Finding::new(
            l.code,
            l.violation.severity,
            subject.clone(),
            l.violation.message.clone(),
        )
        .detail(detail)
        .values(l.violation.values.clone());
        finding = match &l.field_of {
            Some(object) => finding.field_of(object.clone(), &l.field),
            None => finding.field(&l.field),
        };
        findings.push(finding);
    }

    for &stage in &coverage.stages_without_touchpoints {
        // Touchpoints at this stage on channels the journey does not select explain the gap.
        let elsewhere: Vec<String> = world
            .touchpoints_in(ns)
            .iter()
            .map(|&t| &world.touchpoints[t])
            .filter(|t| t.spec.stage == stage)
            .map(|t| format!("{} (channel {})", t.name_any(), t.spec.channel))
            .collect();
        let hint = if elsewhere.is_empty() {
            String::new()
        } else {
            format!(
                "; touchpoints at {stage} on channels the journey does not select: {}",
                list(&elsewhere)
            )
        };
        findings.push(
            Finding::new(
                FindingCode::StageWithoutTouchpoints,
                Severity::Error,
                subject.clone(),
                format!("stage {stage} of journey {journey_name} has no touchpoint: nothing listens to or measures customers there{hint}"),
            )
            .detail(stage.as_str())
            .field(stage_field(journey, stage)),
        );
    }
    if required.listening_per_stage {
        for &stage in coverage
            .stages_without_listening
            .iter()
            .filter(|s| !coverage.stages_without_touchpoints.contains(s))
        {
            findings.push(
                Finding::new(
                    FindingCode::StageWithoutListening,
                    Severity::Error,
                    subject.clone(),
                    format!("stage {stage} of journey {journey_name} has touchpoints but none asks customers a survey question (nps, csat or ces)"),
                )
                .detail(stage.as_str())
                .field(stage_field(journey, stage)),
            );
        }
    }
    if required.kpi_per_stage {
        for &stage in coverage
            .stages_without_kpis
            .iter()
            .filter(|s| !coverage.stages_without_touchpoints.contains(s))
        {
            // A KPI meant for this stage whose scope matches nothing is the cause.
            let meant: Vec<String> = (0..world.kpis.len())
                .filter(|&k| {
                    let kpi = &world.kpis[k];
                    namespace_of(kpi) == ns
                        && kpi.spec.scope.stage == Some(stage)
                        && kpi.spec.journey.as_ref().is_none_or(|j| *j == journey_name)
                        && world.kpi_touchpoints(k).is_empty()
                })
                .map(|k| world.kpis[k].name_any())
                .collect();
            let hint = match meant.len() {
                0 => String::new(),
                1 => format!(
                    " (KPI {} would, but its scope matches no touchpoint)",
                    meant[0]
                ),
                _ => format!(
                    " (KPIs {} would, but their scopes match no touchpoint)",
                    list(&meant)
                ),
            };
            findings.push(
                Finding::new(
                    FindingCode::StageWithoutKpi,
                    Severity::Error,
                    subject.clone(),
                    format!("stage {stage} of journey {journey_name} is not measured by any ExperienceKPI{hint}"),
                )
                .detail(stage.as_str())
                .field(stage_field(journey, stage)),
            );
        }
    }
    if required.touchpoint_per_channel {
        for channel in &coverage.channels_without_touchpoints {
            let mut finding = Finding::new(
                FindingCode::ChannelWithoutTouchpoints,
                Severity::Error,
                subject.clone(),
                format!("channel {channel} takes part in journey {journey_name} but has no touchpoint at its stages"),
            )
            .detail(channel.clone());
            if let Some(c) = world.channel(ns, channel) {
                finding = finding.field_of(ObjectRef::to(c), "metadata.name");
            }
            findings.push(finding);
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::coverage_gap_counts;
    use crate::api::{CoverageRequirements, CoverageStatus, Stage};

    #[test]
    fn gaps_the_journey_does_not_require_count_zero() {
        let coverage = CoverageStatus {
            stages_without_touchpoints: vec![Stage::Delivery],
            stages_without_listening: vec![Stage::Delivery, Stage::Usage],
            stages_without_kpis: vec![Stage::Advocacy],
            channels_without_touchpoints: vec!["fax".into()],
        };
        let strict = CoverageRequirements::default();
        assert_eq!(
            coverage_gap_counts(&strict, &coverage),
            [
                ("stage_without_touchpoints", 1),
                ("stage_without_listening", 2),
                ("stage_without_kpi", 1),
                ("channel_without_touchpoints", 1),
            ]
        );
        let relaxed = CoverageRequirements {
            listening_per_stage: false,
            kpi_per_stage: false,
            touchpoint_per_channel: false,
        };
        assert_eq!(
            coverage_gap_counts(&relaxed, &coverage),
            [
                ("stage_without_touchpoints", 1),
                ("stage_without_listening", 0),
                ("stage_without_kpi", 0),
                ("channel_without_touchpoints", 0),
            ]
        );
    }
}
