//! `cx-conductor map`: MALMA's map drawn. The journey's stages as columns, its channels as rows,
//! each touchpoint in its cell with what it listens to, the gaps and broken rules where they are,
//! KPIs under their stages, readiness and self-assessment in the header.
//!
//! [`model`] computes what to show from the same analysis `check` and the operator run; [`svg`]
//! draws it. Both are pure: the shell (`cli::map`) reads manifests or a cluster and writes the file.

pub mod model;
pub mod svg;

use crate::api::Severity;
use crate::core::plan::PlanOptions;
use crate::core::{Finding, JourneyAssessment, World};
use crate::manifest::{Inventory, Rejected};

pub use model::{JourneyMap, MapDocument, Problem};
pub use svg::{render_html, render_svg};

/// The map of manifests: what `check` concludes about them, drawn. Objects the schema refuses are
/// left out of the grid and listed as errors; everything else is drawn.
pub fn from_inventory(inventory: &Inventory, source: String) -> MapDocument {
    let outcome = crate::cli::check::check_inventory(inventory, &PlanOptions::default());
    let world = inventory.offline_world();
    let report = &outcome.report;
    document(
        &world,
        &report.journeys,
        &report.findings,
        &report.rejected,
        source,
    )
}

/// The map of analysed objects (from manifests or a cluster).
pub fn document(
    world: &World,
    journeys: &[JourneyAssessment],
    object_findings: &[Finding],
    rejected: &[Rejected],
    source: String,
) -> MapDocument {
    let mut problems: Vec<Problem> = rejected
        .iter()
        .flat_map(|r| {
            r.violations.iter().map(move |v| {
                let field = if v.field.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", v.field)
                };
                Problem {
                    severity: Severity::Error,
                    code: "schema".into(),
                    place: Some(v.origin.as_ref().unwrap_or(&r.origin).to_string()),
                    message: format!("{} refused: {field}{}", r.object, v.message),
                }
            })
        })
        .collect();
    problems.extend(object_findings.iter().map(Problem::from_finding));
    MapDocument {
        source,
        journeys: model::journey_maps(world, journeys),
        problems,
    }
}
