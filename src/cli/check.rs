//! `cx-conductor check`: load, validate and report.

use std::process::ExitCode;

use crate::manifest::{Inventory, load_paths};
use crate::schema::SchemaValidator;

use super::CheckArgs;

/// Exit code when input cannot be used at all.
pub const EXIT_UNUSABLE: u8 = 2;
/// Exit code when findings of severity error exist.
pub const EXIT_ERRORS: u8 = 1;

/// Runs the check and prints the report.
pub fn run(args: &CheckArgs) -> ExitCode {
    let documents = match load_paths(&args.paths) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let inventory = Inventory::from_documents(&documents, &SchemaValidator::new());
    for skipped in &inventory.skipped {
        println!(
            "note: {}: skipped {} (not a cx.conductor.dev resource)",
            skipped.origin, skipped.what
        );
    }
    for rejected in &inventory.rejected {
        for v in &rejected.violations {
            println!("error: {}: {}: {v}", rejected.origin, rejected.object);
        }
    }
    if inventory.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERRORS)
    }
}
