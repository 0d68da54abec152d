//! CustomerJourney controller: the core's assessment (consistency, coverage, KPI counts,
//! readiness) written to status, recomputed whenever a related object changes.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::api::{CustomerJourney, CustomerJourneyStatus};
use crate::core::world::namespace_of;
use crate::core::{JourneyAssessment, World, assess_journey};

use super::conditions::{self, Verdict};
use super::context::{Context, valid_in};
use super::error::Result;
use super::shell;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "journey";

/// The status a journey should have from its assessment: pure.
pub fn desired_status(
    journey: &CustomerJourney,
    assessment: &JourneyAssessment,
    now: &Time,
) -> CustomerJourneyStatus {
    let consistent = if assessment.consistent() {
        Verdict::yes(
            "Consistent",
            "RulesHold",
            "every channel follows every consistency rule",
        )
    } else {
        let first = assessment
            .violations
            .iter()
            .find(|v| v.severity == crate::api::Severity::Error)
            .map(|v| v.message.clone())
            .unwrap_or_default();
        Verdict::no(
            "Consistent",
            "RulesBroken",
            format!("{} violation(s); {first}", assessment.violations.len()),
        )
    };
    let covered = if assessment.covered() {
        Verdict::yes(
            "Covered",
            "RequirementsMet",
            "every stage and channel is listened to and measured as required",
        )
    } else {
        let gaps: Vec<String> = assessment
            .findings
            .iter()
            .filter(|f| f.code.is_coverage())
            .map(|f| f.message.clone())
            .collect();
        Verdict::no("Covered", "CoverageGaps", gaps.join("; "))
    };
    let k = &assessment.kpi_counts;
    let total = k.met + k.at_risk + k.breached + k.insufficient_data + k.unknown;
    let kpis_met = if total == 0 {
        Verdict::no(
            "KPIsMet",
            "NoKPIs",
            "no ExperienceKPI reports to this journey",
        )
    } else if k.met == total {
        Verdict::yes(
            "KPIsMet",
            "AllMet",
            format!("{total}/{total} KPIs meet their target"),
        )
    } else {
        Verdict::no(
            "KPIsMet",
            if k.breached > 0 {
                "KPIsBreached"
            } else {
                "KPIsNotMet"
            },
            format!(
                "{} met, {} at risk, {} breached, {} insufficient data, {} not evaluated{}",
                k.met,
                k.at_risk,
                k.breached,
                k.insufficient_data,
                k.unknown,
                if k.unknown > 0 {
                    " (each KPI's Ready condition says why)"
                } else {
                    ""
                }
            ),
        )
    };
    let ready = if consistent.status && covered.status && kpis_met.status {
        Verdict::yes(
            "Ready",
            "Conducted",
            "consistent, covered and every KPI met",
        )
    } else {
        let failing: Vec<&str> = [&consistent, &covered, &kpis_met]
            .iter()
            .filter(|v| !v.status)
            .map(|v| v.type_)
            .collect();
        Verdict::no(
            "Ready",
            "NotReady",
            format!("not yet: {}", failing.join(", ")),
        )
    };
    let existing = journey.status.clone().unwrap_or_default();
    let generation = journey.metadata.generation;
    let mut verdicts = vec![consistent, covered, kpis_met, ready];
    // Only a journey that declares themes gets ThemesValid, so others keep their status.
    if !journey.spec.themes.is_empty() {
        verdicts.push(themes_verdict(journey, assessment));
    }
    CustomerJourneyStatus {
        observed_generation: generation,
        channels: assessment.channels.len() as i32,
        touchpoints: assessment.touchpoints.len() as i32,
        violation_count: assessment.violations.len() as i32,
        violations: assessment.violations.clone(),
        coverage: assessment.coverage.clone(),
        kpis: assessment.kpi_counts.clone(),
        readiness: Some(assessment.readiness.clone()),
        self_assessment: Some(assessment.self_assessment.clone()),
        conditions: conditions::merge(&existing.conditions, &verdicts, generation, now),
    }
}

/// Whether the journey's themes reach its collectors: False (with the first problem and its
/// field) when the collectors would refuse them or a theme can never match.
fn themes_verdict(journey: &CustomerJourney, assessment: &JourneyAssessment) -> Verdict {
    use crate::core::FindingCode;
    let blocking = assessment.findings.iter().find(|f| {
        matches!(
            f.code,
            FindingCode::ThemeInvalid | FindingCode::ThemeNeverMatches
        ) && f.severity == crate::api::Severity::Error
    });
    match blocking {
        Some(f) => Verdict::no(
            "ThemesValid",
            if f.code == FindingCode::ThemeInvalid {
                "ThemesRefused"
            } else {
                "ThemeNeverMatches"
            },
            format!(
                "{}: {}",
                f.field.as_deref().unwrap_or("spec.themes"),
                f.message
            ),
        ),
        None => Verdict::yes(
            "ThemesValid",
            "Counted",
            format!(
                "{} theme(s) counted in the comments of {} touchpoint(s)",
                journey.spec.themes.len(),
                assessment.touchpoints.len()
            ),
        ),
    }
}

/// Reconciles one journey.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<CustomerJourney>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let journey = match &guard.0 {
        Ok(j) => j,
        Err(invalid) => {
            return shell::report_invalid::<CustomerJourney>(invalid, &ctx, CONTROLLER).await;
        }
    };
    let namespace = namespace_of(journey).to_string();
    let stores = &ctx.stores;
    let channels = valid_in(&stores.channels, &namespace);
    let touchpoints = valid_in(&stores.touchpoints, &namespace);
    let kpis = valid_in(&stores.kpis, &namespace);
    let journeys = [journey.clone()];
    let world = World::new(&channels, &touchpoints, &kpis, &journeys);
    let assessment = assess_journey(&world, journey);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = desired_status(journey, &assessment, &now);
    let previous = journey.status.clone().unwrap_or_default();
    if shell::write_status(&ctx, CONTROLLER, journey, &status).await? {
        publish_transitions(journey, &previous, &status, &ctx).await;
    }
    Ok(Action::requeue(ctx.options.resync))
}

/// Events when a journey becomes inconsistent or consistent again, and when it becomes Ready.
async fn publish_transitions(
    journey: &CustomerJourney,
    before: &CustomerJourneyStatus,
    after: &CustomerJourneyStatus,
    ctx: &Context,
) {
    let was = |t: &str| conditions::is_true(&before.conditions, t);
    let is = |t: &str| conditions::is_true(&after.conditions, t);
    let message = |t: &str| {
        after
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let first_assessment = before.conditions.is_empty();
    let mut events = Vec::new();
    if !is("Consistent") && (was("Consistent") || first_assessment) {
        events.push((EventType::Warning, "Inconsistent", message("Consistent")));
    } else if is("Consistent") && !was("Consistent") && !first_assessment {
        events.push((EventType::Normal, "Consistent", message("Consistent")));
    }
    if is("Ready") && !was("Ready") {
        events.push((EventType::Normal, "JourneyReady", message("Ready")));
    }
    shell::publish(ctx, CONTROLLER, "Assess", &journey.object_ref(&()), events).await;
}
