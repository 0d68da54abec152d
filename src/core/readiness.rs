//! Readiness: a fixed list of checkable criteria, weighted, scored 0-100 into three bands.
//!
//! | id | weight | passes when |
//! |---|---|---|
//! | `journey-owner-named` | 1 | the journey names an owner |
//! | `channel-owners-named` | 1 | the journey has channels and every one names an owner |
//! | `every-stage-has-touchpoints` | 2 | every stage has a touchpoint |
//! | `every-stage-listened` | 3 | every stage has a touchpoint asking a survey question |
//! | `every-channel-has-touchpoints` | 1 | the journey has channels and every one has a touchpoint at its stages |
//! | `channels-consistent` | 3 | the journey has channels and rules, and no violation of severity error |
//! | `consent-policy-declared` | 2 | the journey has channels and every one declares privacy.consentPolicyVersion |
//! | `service-levels-declared` | 1 | the journey has channels and every one declares serviceLevels.firstResponseSeconds |
//! | `every-stage-measured` | 2 | every stage is covered by a KPI |
//! | `kpi-owners-named` | 1 | the journey has KPIs and every one names an owner |
//! | `kpis-met` | 3 | the journey has KPIs and every one is Met |
//! | `collectors-ready` | 2 | every touchpoint's collector reports Ready |
//!
//! Nothing passes vacuously: a journey without channels (or KPIs) fails the criteria about them.
//! Offline (manifests, no cluster) `kpis-met` and `collectors-ready` cannot be known: they are
//! "not evaluated", and the score is the share of the weight that was evaluated.
//!
//! Bands: customer-centric from 72, gaps-to-close from 36, structural-weaknesses below.

use crate::api::{CriterionResult, Readiness, ReadinessBand};

/// Score from which a journey is customer-centric.
pub const CUSTOMER_CENTRIC_FROM: i32 = 72;
/// Score from which a journey has gaps to close rather than structural weaknesses.
pub const GAPS_TO_CLOSE_FROM: i32 = 36;

/// What readiness is judged on, gathered by the journey assessment.
#[derive(Debug, Default, Clone)]
pub struct ReadinessInputs {
    /// The journey names an owner.
    pub journey_owner: bool,
    /// Number of channels of the journey.
    pub channels: usize,
    /// Number of consistency rules the journey declares.
    pub rules: usize,
    /// Channels without an owner.
    pub channels_without_owner: Vec<String>,
    /// Stages without a touchpoint.
    pub stages_without_touchpoints: Vec<String>,
    /// Stages without a survey touchpoint.
    pub stages_without_listening: Vec<String>,
    /// Channels without a touchpoint.
    pub channels_without_touchpoints: Vec<String>,
    /// Consistency violations of severity error.
    pub error_violations: usize,
    /// Channels without a consent policy version.
    pub channels_without_consent: Vec<String>,
    /// Channels without a first-response service level.
    pub channels_without_service_levels: Vec<String>,
    /// Stages without a KPI.
    pub stages_without_kpis: Vec<String>,
    /// KPIs without an owner.
    pub kpis_without_owner: Vec<String>,
    /// Number of KPIs of the journey.
    pub kpis: usize,
    /// KPIs of the journey not in state Met, with their state.
    pub kpis_not_met: Vec<String>,
    /// Touchpoints whose collector is not Ready.
    pub collectors_not_ready: Vec<String>,
    /// Number of touchpoints of the journey.
    pub touchpoints: usize,
    /// The objects come from manifests: KPI states and collector readiness are unknown.
    pub offline: bool,
}

/// A criterion's verdict before scoring: passed, failed, or not evaluated (unknown offline).
enum Verdict {
    Pass(String),
    Fail(String),
    NotEvaluated(String),
}

fn none_of(items: &[String], ok: &str, what: &str) -> Verdict {
    if items.is_empty() {
        Verdict::Pass(ok.to_string())
    } else {
        Verdict::Fail(format!("{what}: {}", super::analysis::list(items)))
    }
}

/// A criterion about every channel: fails without channels rather than passing vacuously.
fn every_channel(channels: usize, items: &[String], ok: &str, what: &str) -> Verdict {
    if channels == 0 {
        Verdict::Fail("the journey has no channel".into())
    } else {
        none_of(items, ok, what)
    }
}

/// Scores the criteria. Every criterion is reported with the reason it passed, what to fix, or
/// why it could not be evaluated.
pub fn assess(inputs: &ReadinessInputs) -> Readiness {
    let i = inputs;
    let criteria: Vec<(&str, i32, Verdict)> = vec![
        (
            "journey-owner-named",
            1,
            if i.journey_owner {
                Verdict::Pass("the journey names its owner".into())
            } else {
                Verdict::Fail("set spec.owner to the function that owns the journey".into())
            },
        ),
        (
            "channel-owners-named",
            1,
            every_channel(
                i.channels,
                &i.channels_without_owner,
                "every channel names its owner",
                "set spec.owner on channels",
            ),
        ),
        (
            "every-stage-has-touchpoints",
            2,
            none_of(
                &i.stages_without_touchpoints,
                "every stage has a touchpoint",
                "add touchpoints at stages",
            ),
        ),
        (
            "every-stage-listened",
            3,
            none_of(
                &i.stages_without_listening,
                "every stage asks customers a survey question",
                "add a survey signal (nps, csat or ces) at stages",
            ),
        ),
        (
            "every-channel-has-touchpoints",
            1,
            every_channel(
                i.channels,
                &i.channels_without_touchpoints,
                "every channel has a touchpoint",
                "add touchpoints on channels",
            ),
        ),
        (
            "channels-consistent",
            3,
            if i.channels == 0 {
                Verdict::Fail("the journey has no channel".into())
            } else if i.rules == 0 {
                Verdict::Fail(
                    "no consistency rule is declared, so nothing is compared: add rules in spec.consistency.rules (brand.voice equal, privacy.consentPolicyVersion equal...)".into(),
                )
            } else if i.error_violations == 0 {
                Verdict::Pass("channels follow every consistency rule".into())
            } else {
                Verdict::Fail(format!(
                    "fix {}",
                    super::analysis::count(
                        i.error_violations,
                        "consistency violation",
                        "consistency violations"
                    )
                ))
            },
        ),
        (
            "consent-policy-declared",
            2,
            every_channel(
                i.channels,
                &i.channels_without_consent,
                "every channel declares its consent policy",
                "set spec.privacy.consentPolicyVersion on channels",
            ),
        ),
        (
            "service-levels-declared",
            1,
            every_channel(
                i.channels,
                &i.channels_without_service_levels,
                "every channel promises a first-response time",
                "set spec.serviceLevels.firstResponseSeconds on channels",
            ),
        ),
        (
            "every-stage-measured",
            2,
            none_of(
                &i.stages_without_kpis,
                "every stage is measured by a KPI",
                "add ExperienceKPIs covering stages",
            ),
        ),
        (
            "kpi-owners-named",
            1,
            if i.kpis == 0 {
                Verdict::Fail("the journey has no KPI".into())
            } else {
                none_of(
                    &i.kpis_without_owner,
                    "every KPI names who acts on a breach",
                    "set spec.owner on KPIs",
                )
            },
        ),
        (
            "kpis-met",
            3,
            if i.kpis == 0 {
                Verdict::Fail("the journey has no KPI yet".into())
            } else if i.offline {
                Verdict::NotEvaluated(
                    "not evaluated offline: KPI states come from Prometheus, in a cluster".into(),
                )
            } else {
                none_of(
                    &i.kpis_not_met,
                    "every KPI meets its target",
                    "KPIs not met",
                )
            },
        ),
        (
            "collectors-ready",
            2,
            if i.touchpoints == 0 {
                Verdict::Fail("the journey has no touchpoint, so no collector".into())
            } else if i.offline {
                Verdict::NotEvaluated("not evaluated offline: collectors run in a cluster".into())
            } else {
                none_of(
                    &i.collectors_not_ready,
                    "every touchpoint's collector is ready",
                    "collectors not ready",
                )
            },
        ),
    ];
    let evaluated: i32 = criteria
        .iter()
        .filter(|c| !matches!(c.2, Verdict::NotEvaluated(_)))
        .map(|c| c.1)
        .sum();
    let passed: i32 = criteria
        .iter()
        .filter(|c| matches!(c.2, Verdict::Pass(_)))
        .map(|c| c.1)
        .sum();
    let score = if evaluated == 0 {
        0
    } else {
        ((passed * 100) as f64 / evaluated as f64).round() as i32
    };
    Readiness {
        score,
        band: band(score),
        criteria: criteria
            .into_iter()
            .map(|(id, weight, verdict)| {
                let (passed, evaluated, reason) = match verdict {
                    Verdict::Pass(r) => (true, true, r),
                    Verdict::Fail(r) => (false, true, r),
                    Verdict::NotEvaluated(r) => (false, false, r),
                };
                CriterionResult {
                    id: id.into(),
                    weight,
                    passed,
                    evaluated,
                    reason,
                }
            })
            .collect(),
    }
}

/// The band of a score.
pub fn band(score: i32) -> ReadinessBand {
    if score >= CUSTOMER_CENTRIC_FROM {
        ReadinessBand::CustomerCentric
    } else if score >= GAPS_TO_CLOSE_FROM {
        ReadinessBand::GapsToClose
    } else {
        ReadinessBand::StructuralWeaknesses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_split_at_72_and_36() {
        assert_eq!(band(100), ReadinessBand::CustomerCentric);
        assert_eq!(band(72), ReadinessBand::CustomerCentric);
        assert_eq!(band(71), ReadinessBand::GapsToClose);
        assert_eq!(band(36), ReadinessBand::GapsToClose);
        assert_eq!(band(35), ReadinessBand::StructuralWeaknesses);
        assert_eq!(band(0), ReadinessBand::StructuralWeaknesses);
    }

    #[test]
    fn a_perfect_journey_scores_100_and_an_empty_one_scores_low() {
        let perfect = ReadinessInputs {
            journey_owner: true,
            channels: 2,
            rules: 1,
            kpis: 3,
            touchpoints: 4,
            ..Default::default()
        };
        let readiness = assess(&perfect);
        assert_eq!(readiness.score, 100);
        assert_eq!(readiness.criteria.len(), 12);
        assert!(readiness.criteria.iter().all(|c| c.passed));

        // Nothing passes vacuously: without channels, KPIs or touchpoints only the stage
        // criteria (no stage listed, no gap listed) pass: 7 of 22.
        let empty = ReadinessInputs::default();
        let readiness = assess(&empty);
        let failed: Vec<&str> = readiness
            .criteria
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "journey-owner-named",
                "channel-owners-named",
                "every-channel-has-touchpoints",
                "channels-consistent",
                "consent-policy-declared",
                "service-levels-declared",
                "kpi-owners-named",
                "kpis-met",
                "collectors-ready"
            ]
        );
        assert_eq!(readiness.score, 32);
        assert_eq!(readiness.band, ReadinessBand::StructuralWeaknesses);
    }

    #[test]
    fn offline_kpi_states_and_collectors_are_not_evaluated_and_leave_the_score() {
        let offline = ReadinessInputs {
            journey_owner: true,
            channels: 2,
            rules: 3,
            kpis: 3,
            touchpoints: 4,
            kpis_not_met: vec!["a (Unknown)".into()],
            collectors_not_ready: vec!["t".into()],
            offline: true,
            ..Default::default()
        };
        let readiness = assess(&offline);
        assert_eq!(readiness.score, 100, "17 of the 17 evaluated points");
        let not_evaluated: Vec<&str> = readiness
            .criteria
            .iter()
            .filter(|c| !c.evaluated)
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(not_evaluated, ["kpis-met", "collectors-ready"]);
        assert!(readiness.criteria.iter().all(|c| c.passed || !c.evaluated));
        let no_rules = assess(&ReadinessInputs {
            rules: 0,
            ..offline
        });
        assert_eq!(
            no_rules.score, 82,
            "14 of 17: channels-consistent fails without rules"
        );
    }

    #[test]
    fn reasons_say_what_to_fix() {
        let inputs = ReadinessInputs {
            journey_owner: true,
            channels: 2,
            rules: 2,
            stages_without_listening: vec!["delivery".into(), "usage".into()],
            error_violations: 2,
            kpis: 1,
            touchpoints: 1,
            ..Default::default()
        };
        let readiness = assess(&inputs);
        let listened = readiness
            .criteria
            .iter()
            .find(|c| c.id == "every-stage-listened")
            .unwrap();
        assert!(!listened.passed);
        assert_eq!(
            listened.reason,
            "add a survey signal (nps, csat or ces) at stages: delivery, usage"
        );
        let consistent = readiness
            .criteria
            .iter()
            .find(|c| c.id == "channels-consistent")
            .unwrap();
        assert_eq!(consistent.reason, "fix 2 consistency violations");
        assert_eq!(readiness.score, 73); // 22 - 3 - 3 = 16 -> 72.7
        assert_eq!(readiness.band, ReadinessBand::CustomerCentric);
    }
}
