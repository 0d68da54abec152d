//! The 25-question CX self-assessment CX leads know (scored 18-25 customer-centric, 9-17 missing
//! pieces, 0-8 many gaps), made partly checkable: ten questions are answered from evidence the
//! conductor holds, the others from answers people declare with who and when. Evidence, when
//! known, takes precedence; a declared "yes" it contradicts is reported.
//!
//! | # | evidence |
//! |---|---|
//! | 7 | the journey is consistent (no error violation) and covered (every requirement met) |
//! | 9 | every stage asks a survey question, and every collector is ready |
//! | 10 | every stage and every channel has touchpoints |
//! | 11 | physical (store, voice, kiosk) and digital channels, consistent with each other |
//! | 14 | rules are declared and every one holds (warnings included) |
//! | 15 | KPIs measure the loyalty and advocacy stages, and every one is Met |
//! | 17 | the journey and every channel name an owner |
//! | 18 | the journey has KPIs, every KPI naming it measures it and is evaluated; every collector is ready |
//! | 22 | the journey, every channel and every KPI name an owner |
//! | 25 | no KPI lacks samples (InsufficientData or Unknown), and every channel declares its consent policy |
//!
//! Offline (manifests without a cluster), KPI states and collector readiness are unknown: a
//! question that depends on them is answered only when the known part already says no; otherwise a
//! declaration answers it, or it is missing with the reason.

use std::collections::BTreeMap;

use crate::api::{
    AnswerSource, DeclaredAnswer, SelfAssessment, SelfAssessmentAnswer, SelfAssessmentBand,
    SelfAssessmentSpec,
};

use super::analysis::list;

/// Number of questions.
pub const QUESTIONS: i32 = 25;
/// Score from which the band is customer-centric.
pub const CUSTOMER_CENTRIC_FROM: i32 = 18;
/// Score from which the band is missing-pieces rather than many-gaps.
pub const MISSING_PIECES_FROM: i32 = 9;

/// The questions, shortened for reports (SELF-ASSESSMENT.md has them in full, in Italian and
/// English), with whether the conductor holds evidence for them.
pub const SHORT: [(&str, bool); 25] = [
    ("the customer at the centre, a top experience", false),
    ("deep knowledge of customers and their needs", false),
    ("a 360° data-driven approach, targeted answers", false),
    (
        "technology for market knowledge, strategy and operations",
        false,
    ),
    ("CX tools and ways have grown and improved", false),
    ("the culture and organisation to run CX", false),
    (
        "an effective 360° experience, coherent and systematic",
        true,
    ),
    ("a shared strategy involving every function", false),
    ("customers listened to, involved and guided", true),
    ("every journey stage covered in every main channel", true),
    ("no break between physical and digital", true),
    (
        "knowledge and continuous interaction as a cornerstone",
        false,
    ),
    ("digital tools and people coherent with strategy", false),
    ("a single, coherent management of the relationship", true),
    (
        "a seamless experience leading to loyalty and advocacy",
        true,
    ),
    ("personalised communications and offers", false),
    ("a conductor who owns CX", true),
    ("aligned objectives, integrated systems and channels", true),
    ("a 360° strategy, long-term vision, one culture", false),
    ("a holistic approach involving every function", false),
    (
        "investment in digital and in a customer-centric culture",
        false,
    ),
    ("a precise role and responsibility for everyone", true),
    ("customer and employee experience managed together", false),
    ("the human side keeps its importance", false),
    ("data collected and used to know customers", true),
];

/// What the evidence says about a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// The evidence answers yes (true) or no (false), for this reason.
    Known(bool, String),
    /// The evidence cannot answer (statuses unknown offline), for this reason.
    Unknown(String),
}

/// What the evidenced questions are judged on, gathered by the journey assessment.
#[derive(Debug, Clone, Default)]
pub struct EvidenceInputs {
    /// Statuses (KPI states, collector readiness) are unknown: the objects come from manifests.
    pub offline: bool,
    /// The journey names an owner.
    pub journey_owner: bool,
    /// Channels of the journey, by name.
    pub channels: Vec<String>,
    /// Channels of a physical type (store, voice, kiosk).
    pub physical_channels: Vec<String>,
    /// Channels of a digital type (web, mobile-app, email, sms, chat, social, marketplace).
    pub digital_channels: Vec<String>,
    /// Channels without an owner.
    pub channels_without_owner: Vec<String>,
    /// Channels without a consent policy version.
    pub channels_without_consent: Vec<String>,
    /// Number of consistency rules declared.
    pub rules: usize,
    /// Rules broken or checking nothing, any severity (`brand.voice equal`).
    pub rules_not_holding: Vec<String>,
    /// Violations of severity error (rules and duplicate touchpoints).
    pub error_violations: usize,
    /// Coverage requirements not met, in words.
    pub coverage_gaps: Vec<String>,
    /// Stages without a touchpoint.
    pub stages_without_touchpoints: Vec<String>,
    /// Stages without a survey.
    pub stages_without_listening: Vec<String>,
    /// Channels without a touchpoint.
    pub channels_without_touchpoints: Vec<String>,
    /// Number of touchpoints.
    pub touchpoints: usize,
    /// Touchpoints whose collector is not ready (meaningless offline).
    pub collectors_not_ready: Vec<String>,
    /// KPIs of the journey, by name.
    pub kpis: Vec<String>,
    /// KPIs without an owner.
    pub kpis_without_owner: Vec<String>,
    /// KPIs that name the journey but measure none of its touchpoints.
    pub kpis_missing_journey: Vec<String>,
    /// KPIs not evaluated (no state, or Unknown) (meaningless offline).
    pub kpis_not_evaluated: Vec<String>,
    /// KPIs in state InsufficientData or Unknown (meaningless offline).
    pub kpis_without_samples: Vec<String>,
    /// Whether the journey has the loyalty stage.
    pub has_loyalty_stage: bool,
    /// Whether the journey has the advocacy stage.
    pub has_advocacy_stage: bool,
    /// KPIs measuring the loyalty stage, with whether each is Met.
    pub loyalty_kpis: Vec<(String, bool)>,
    /// KPIs measuring the advocacy stage, with whether each is Met.
    pub advocacy_kpis: Vec<(String, bool)>,
}

fn yes(reason: impl Into<String>) -> Evidence {
    Evidence::Known(true, reason.into())
}

fn no(reason: impl Into<String>) -> Evidence {
    Evidence::Known(false, reason.into())
}

/// The first failing condition, or yes.
fn all(conditions: Vec<(bool, String)>, ok: &str) -> Evidence {
    match conditions.into_iter().find(|(holds, _)| !holds) {
        Some((_, why)) => no(why),
        None => yes(ok),
    }
}

/// Evidence for each of the ten evidenced questions.
pub fn evidence(i: &EvidenceInputs) -> BTreeMap<i32, Evidence> {
    let has_channels = (
        !i.channels.is_empty(),
        "the journey has no channel".to_string(),
    );
    let unknown_offline = |known: &str, needs: &str| {
        Evidence::Unknown(format!("{known}; {needs} not evaluated offline"))
    };
    let mut out = BTreeMap::new();

    out.insert(
        7,
        all(
            vec![
                has_channels.clone(),
                (
                    i.error_violations == 0,
                    format!(
                        "not consistent: {}",
                        super::analysis::count(
                            i.error_violations,
                            "error violation",
                            "error violations"
                        )
                    ),
                ),
                (
                    i.coverage_gaps.is_empty(),
                    format!("not covered: {}", list(&i.coverage_gaps)),
                ),
            ],
            "the journey is consistent and covered",
        ),
    );

    let listened = all(
        vec![
            (
                i.touchpoints > 0,
                "the journey has no touchpoint".to_string(),
            ),
            (
                i.stages_without_listening.is_empty(),
                format!("no survey at stages {}", list(&i.stages_without_listening)),
            ),
        ],
        "every stage asks a survey question",
    );
    out.insert(
        9,
        match listened {
            Evidence::Known(true, _) if i.offline => unknown_offline(
                "every stage asks a survey question",
                "collector readiness is",
            ),
            Evidence::Known(true, _) if !i.collectors_not_ready.is_empty() => no(format!(
                "collectors not ready: {}",
                list(&i.collectors_not_ready)
            )),
            Evidence::Known(true, _) => {
                yes("every stage asks a survey question and every collector is ready")
            }
            other => other,
        },
    );

    out.insert(
        10,
        all(
            vec![
                has_channels.clone(),
                (
                    i.stages_without_touchpoints.is_empty(),
                    format!(
                        "stages without touchpoints: {}",
                        list(&i.stages_without_touchpoints)
                    ),
                ),
                (
                    i.channels_without_touchpoints.is_empty(),
                    format!(
                        "channels without touchpoints: {}",
                        list(&i.channels_without_touchpoints)
                    ),
                ),
            ],
            "every stage and every channel has touchpoints",
        ),
    );

    out.insert(
        11,
        all(
            vec![
                (
                    !i.physical_channels.is_empty(),
                    "no physical channel (store, voice or kiosk)".to_string(),
                ),
                (
                    !i.digital_channels.is_empty(),
                    "no digital channel".to_string(),
                ),
                (
                    i.error_violations == 0,
                    "physical and digital channels are not consistent".to_string(),
                ),
            ],
            &format!(
                "physical ({}) and digital ({}) channels, consistent",
                list(&i.physical_channels),
                list(&i.digital_channels)
            ),
        ),
    );

    out.insert(
        14,
        all(
            vec![
                has_channels.clone(),
                (i.rules > 0, "no consistency rule is declared".to_string()),
                (
                    i.rules_not_holding.is_empty(),
                    format!("rules not holding: {}", list(&i.rules_not_holding)),
                ),
            ],
            &format!(
                "{} declared, every one holds",
                super::analysis::count(i.rules, "consistency rule", "consistency rules")
            ),
        ),
    );

    let stage_kpis = |present: bool, stage: &str, kpis: &[(String, bool)]| -> Evidence {
        if !present {
            no(format!("the journey has no {stage} stage"))
        } else if kpis.is_empty() {
            no(format!("no KPI measures {stage}"))
        } else if i.offline {
            Evidence::Unknown(String::new())
        } else {
            let not_met: Vec<String> = kpis
                .iter()
                .filter(|(_, met)| !met)
                .map(|(k, _)| k.clone())
                .collect();
            if not_met.is_empty() {
                yes("")
            } else {
                no(format!("KPIs not met: {}", list(&not_met)))
            }
        }
    };
    out.insert(
        15,
        match (
            stage_kpis(i.has_loyalty_stage, "loyalty", &i.loyalty_kpis),
            stage_kpis(i.has_advocacy_stage, "advocacy", &i.advocacy_kpis),
        ) {
            (Evidence::Known(false, why), _) | (_, Evidence::Known(false, why)) => no(why),
            (Evidence::Unknown(_), _) | (_, Evidence::Unknown(_)) => {
                unknown_offline("KPIs measure loyalty and advocacy", "their states are")
            }
            _ => yes("the KPIs at loyalty and advocacy are met"),
        },
    );

    out.insert(
        17,
        all(
            vec![
                (i.journey_owner, "the journey names no owner".to_string()),
                has_channels.clone(),
                (
                    i.channels_without_owner.is_empty(),
                    format!(
                        "channels without owner: {}",
                        list(&i.channels_without_owner)
                    ),
                ),
            ],
            "the journey and every channel name an owner",
        ),
    );

    let integrated = all(
        vec![
            (!i.kpis.is_empty(), "the journey has no KPI".to_string()),
            (
                i.kpis_missing_journey.is_empty(),
                format!(
                    "KPIs naming the journey measure none of it: {}",
                    list(&i.kpis_missing_journey)
                ),
            ),
            (
                i.touchpoints > 0,
                "the journey has no touchpoint".to_string(),
            ),
        ],
        "",
    );
    out.insert(
        18,
        match integrated {
            Evidence::Known(true, _) if i.offline => unknown_offline(
                "every KPI belongs to the journey",
                "KPI evaluation and collector readiness are",
            ),
            Evidence::Known(true, _) if !i.kpis_not_evaluated.is_empty() => no(format!(
                "KPIs not evaluated: {}",
                list(&i.kpis_not_evaluated)
            )),
            Evidence::Known(true, _) if !i.collectors_not_ready.is_empty() => no(format!(
                "collectors not ready: {}",
                list(&i.collectors_not_ready)
            )),
            Evidence::Known(true, _) => {
                yes("every KPI belongs to the journey and is evaluated; every collector is ready")
            }
            other => other,
        },
    );

    out.insert(
        22,
        all(
            vec![
                (i.journey_owner, "the journey names no owner".to_string()),
                has_channels.clone(),
                (
                    i.channels_without_owner.is_empty(),
                    format!(
                        "channels without owner: {}",
                        list(&i.channels_without_owner)
                    ),
                ),
                (!i.kpis.is_empty(), "the journey has no KPI".to_string()),
                (
                    i.kpis_without_owner.is_empty(),
                    format!("KPIs without owner: {}", list(&i.kpis_without_owner)),
                ),
            ],
            "the journey, every channel and every KPI name an owner",
        ),
    );

    let data = all(
        vec![
            has_channels,
            (
                i.channels_without_consent.is_empty(),
                format!(
                    "channels without a consent policy: {}",
                    list(&i.channels_without_consent)
                ),
            ),
            (!i.kpis.is_empty(), "the journey has no KPI".to_string()),
        ],
        "",
    );
    out.insert(
        25,
        match data {
            Evidence::Known(true, _) if i.offline => unknown_offline(
                "every channel declares its consent policy",
                "KPI samples are",
            ),
            Evidence::Known(true, _) if !i.kpis_without_samples.is_empty() => no(format!(
                "KPIs without enough samples: {}",
                list(&i.kpis_without_samples)
            )),
            Evidence::Known(true, _) => {
                yes("every KPI has enough samples and every channel declares its consent policy")
            }
            other => other,
        },
    );
    out
}

/// The band of a score.
pub fn band(score: i32) -> SelfAssessmentBand {
    if score >= CUSTOMER_CENTRIC_FROM {
        SelfAssessmentBand::CustomerCentric
    } else if score >= MISSING_PIECES_FROM {
        SelfAssessmentBand::MissingPieces
    } else {
        SelfAssessmentBand::ManyGaps
    }
}

/// A declared "yes" the evidence says no to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contradiction {
    /// Index of the declared answer in spec.selfAssessment.answers.
    pub index: usize,
    /// The question.
    pub question: i32,
    /// A sentence a CX lead understands.
    pub message: String,
}

fn declared_by(answer: &DeclaredAnswer) -> String {
    format!(
        "declared {} by {} on {}",
        if answer.answer { "yes" } else { "no" },
        answer.answered_by,
        answer.answered_at
    )
}

/// "declared no by giulia on 2026-10-15: no single customer view yet".
fn declared_with_note(answer: &DeclaredAnswer) -> String {
    match &answer.note {
        Some(note) => format!("{}: {note}", declared_by(answer)),
        None => declared_by(answer),
    }
}

/// Scores the self-assessment from the evidence and the declared answers. Pure: the operator calls
/// it with what the cluster says, `check` with what the manifests say.
pub fn assess(
    declared: Option<&SelfAssessmentSpec>,
    evidence: &BTreeMap<i32, Evidence>,
) -> (SelfAssessment, Vec<Contradiction>) {
    let declared: Vec<(usize, &DeclaredAnswer)> = declared
        .map(|d| d.answers.iter().enumerate().collect())
        .unwrap_or_default();
    let mut answers = Vec::new();
    let mut contradictions = Vec::new();
    for question in 1..=QUESTIONS {
        let said = declared.iter().find(|(_, a)| a.question == question);
        let answer = match (evidence.get(&question), said) {
            (Some(Evidence::Known(value, why)), said) => {
                let mut reason = why.clone();
                if let Some((index, a)) = said {
                    if a.answer && !value {
                        contradictions.push(Contradiction {
                            index: *index,
                            question,
                            message: format!(
                                "question {question} ({}) is {}, but the evidence says no: {why}",
                                SHORT[question as usize - 1].0,
                                declared_by(a)
                            ),
                        });
                    }
                    if a.answer != *value {
                        reason.push_str(&format!(" (contradicts the answer {})", declared_by(a)));
                    }
                }
                SelfAssessmentAnswer {
                    question,
                    answer: Some(*value),
                    source: AnswerSource::Evidenced,
                    reason,
                }
            }
            (unknown, Some((_, a))) => {
                let mut reason = declared_with_note(a);
                if let Some(Evidence::Unknown(why)) = unknown {
                    reason.push_str(&format!(" ({why})"));
                }
                SelfAssessmentAnswer {
                    question,
                    answer: Some(a.answer),
                    source: AnswerSource::Declared,
                    reason,
                }
            }
            (Some(Evidence::Unknown(why)), None) => SelfAssessmentAnswer {
                question,
                answer: None,
                source: AnswerSource::Missing,
                reason: format!("{why}: declare it, or let the operator judge it in a cluster"),
            },
            (None, None) => SelfAssessmentAnswer {
                question,
                answer: None,
                source: AnswerSource::Missing,
                reason: "no evidence for it: declare it in spec.selfAssessment.answers".into(),
            },
        };
        answers.push(answer);
    }
    let of = |source: AnswerSource| -> Vec<i32> {
        answers
            .iter()
            .filter(|a| a.source == source)
            .map(|a| a.question)
            .collect()
    };
    let score = answers.iter().filter(|a| a.answer == Some(true)).count() as i32;
    (
        SelfAssessment {
            score,
            band: band(score),
            evidenced: of(AnswerSource::Evidenced),
            declared: of(AnswerSource::Declared),
            missing: of(AnswerSource::Missing),
            answers,
        },
        contradictions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(question: i32, value: bool) -> DeclaredAnswer {
        DeclaredAnswer {
            question,
            answer: value,
            answered_by: "giulia".into(),
            answered_at: "2026-10-15".into(),
            note: None,
        }
    }

    #[test]
    fn bands_split_at_18_and_9() {
        assert_eq!(band(25), SelfAssessmentBand::CustomerCentric);
        assert_eq!(band(18), SelfAssessmentBand::CustomerCentric);
        assert_eq!(band(17), SelfAssessmentBand::MissingPieces);
        assert_eq!(band(9), SelfAssessmentBand::MissingPieces);
        assert_eq!(band(8), SelfAssessmentBand::ManyGaps);
        assert_eq!(band(0), SelfAssessmentBand::ManyGaps);
    }

    #[test]
    fn ten_questions_have_evidence() {
        let evidenced: Vec<i32> = (1..=25).filter(|q| SHORT[*q as usize - 1].1).collect();
        assert_eq!(evidenced, [7, 9, 10, 11, 14, 15, 17, 18, 22, 25]);
        let keys: Vec<i32> = evidence(&EvidenceInputs::default()).into_keys().collect();
        assert_eq!(keys, evidenced);
    }

    #[test]
    fn nothing_is_evidenced_yes_vacuously() {
        let all_no = evidence(&EvidenceInputs::default())
            .into_values()
            .all(|e| matches!(e, Evidence::Known(false, _)));
        assert!(
            all_no,
            "an empty journey answers no to every evidenced question"
        );
    }

    #[test]
    fn a_healthy_journey_in_a_cluster_and_the_same_offline() {
        let healthy = EvidenceInputs {
            journey_owner: true,
            channels: vec!["store".into(), "web".into()],
            physical_channels: vec!["store".into()],
            digital_channels: vec!["web".into()],
            rules: 4,
            touchpoints: 6,
            kpis: vec!["nps".into()],
            has_loyalty_stage: true,
            has_advocacy_stage: true,
            loyalty_kpis: vec![("club".into(), true)],
            advocacy_kpis: vec![("nps".into(), true)],
            ..Default::default()
        };
        let online = evidence(&healthy);
        assert!(
            online
                .values()
                .all(|e| matches!(e, Evidence::Known(true, _))),
            "{online:#?}"
        );
        let offline = evidence(&EvidenceInputs {
            offline: true,
            ..healthy
        });
        let unknown: Vec<i32> = offline
            .iter()
            .filter(|(_, e)| matches!(e, Evidence::Unknown(_)))
            .map(|(q, _)| *q)
            .collect();
        assert_eq!(unknown, [9, 15, 18, 25]);
        assert_eq!(
            offline[&9],
            Evidence::Unknown(
                "every stage asks a survey question; collector readiness is not evaluated offline"
                    .into()
            )
        );
    }

    #[test]
    fn declarations_fill_what_evidence_cannot_answer_and_contradictions_are_reported() {
        let mut evidence = BTreeMap::new();
        evidence.insert(
            7,
            Evidence::Known(false, "not consistent: 1 error violation".into()),
        );
        evidence.insert(
            9,
            Evidence::Unknown("collector readiness is not evaluated offline".into()),
        );
        evidence.insert(10, Evidence::Known(true, "covered".into()));
        let declared = SelfAssessmentSpec {
            answers: vec![
                answer(1, true),
                answer(7, true),
                answer(9, true),
                answer(10, false),
            ],
        };
        let (result, contradictions) = assess(Some(&declared), &evidence);
        assert_eq!(result.evidenced, [7, 10]);
        assert_eq!(result.declared, [1, 9]);
        assert_eq!(result.missing.len(), 21);
        assert_eq!(result.score, 3, "1 and 9 declared yes, 10 evidenced yes");
        assert_eq!(result.band, SelfAssessmentBand::ManyGaps);
        assert_eq!(
            contradictions,
            [Contradiction {
                index: 1,
                question: 7,
                message: "question 7 (an effective 360° experience, coherent and systematic) is declared yes by giulia on 2026-10-15, but the evidence says no: not consistent: 1 error violation".into()
            }]
        );
        assert_eq!(
            result.answers[9].reason,
            "covered (contradicts the answer declared no by giulia on 2026-10-15)"
        );
        assert_eq!(
            result.answers[8].reason,
            "declared yes by giulia on 2026-10-15 (collector readiness is not evaluated offline)"
        );
        assert_eq!(result.answers[3].source, AnswerSource::Missing);
    }
}
