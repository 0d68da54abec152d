//! Every example is accepted by the CRD schemas; every broken one is refused (or flagged) exactly as its comment says.

use std::path::{Path, PathBuf};

use cx_conductor::manifest::{Inventory, load_paths};
use cx_conductor::schema::SchemaValidator;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The `# expect:` line of a broken example, split into words.
pub fn expectation(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{} has no '# expect:' line", file.display()));
    line.split_whitespace().map(String::from).collect()
}

pub fn broken_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("examples/broken"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_is_accepted_by_the_schemas() {
    let documents = load_paths(&[repo("examples/retail")]).unwrap();
    let inventory = Inventory::from_documents(&documents, &SchemaValidator::new());
    let refused: Vec<String> = inventory
        .rejected
        .iter()
        .map(|r| format!("{} {}: {:?}", r.origin, r.object, r.violations))
        .collect();
    assert!(refused.is_empty(), "refused examples: {refused:#?}");
    assert_eq!(inventory.channels.len(), 6);
    assert!(inventory.touchpoints.len() >= 10);
    assert_eq!(inventory.journeys.len(), 1);
    assert_eq!(
        inventory.skipped.len(),
        1,
        "the Namespace is skipped with a note"
    );
}

#[test]
fn every_schema_mistake_is_refused_naming_its_field_and_rule() {
    let validator = SchemaValidator::new();
    let mut checked = 0;
    for file in broken_files() {
        let expect = expectation(&file);
        if expect[0] != "schema" {
            continue;
        }
        let (field, rule) = (&expect[1], &expect[2]);
        let documents = load_paths(std::slice::from_ref(&file)).unwrap();
        let inventory = Inventory::from_documents(&documents, &validator);
        assert_eq!(
            inventory.rejected.len(),
            1,
            "{}: one object refused",
            file.display()
        );
        let violations = &inventory.rejected[0].violations;
        assert_eq!(
            violations.len(),
            1,
            "{}: exactly one violation, got {violations:#?}",
            file.display()
        );
        assert_eq!(
            &violations[0].field,
            field,
            "{}: {violations:?}",
            file.display()
        );
        assert_eq!(
            &violations[0].rule,
            rule,
            "{}: {violations:?}",
            file.display()
        );
        assert!(!violations[0].message.is_empty());
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} schema mistakes checked");
}

#[test]
fn each_broken_example_adds_exactly_its_documented_problem_to_the_clean_one() {
    use cx_conductor::cli::check::check_paths;
    use cx_conductor::core::plan::PlanOptions;
    for file in broken_files() {
        let expect = expectation(&file);
        let outcome = check_paths(
            &[repo("examples/retail"), file.clone()],
            &PlanOptions::default(),
        )
        .unwrap();
        let report = &outcome.report;
        let findings: Vec<_> = report
            .journeys
            .iter()
            .flat_map(|j| j.findings.iter())
            .chain(report.findings.iter())
            .collect();
        assert_eq!(outcome.exit_code(), 1, "{}", file.display());
        assert_eq!(report.summary.errors, 1, "{}: {report:#?}", file.display());
        match expect[0].as_str() {
            "schema" => {
                assert!(findings.is_empty(), "{}: {findings:#?}", file.display());
                assert_eq!(report.rejected.len(), 1);
                assert_eq!(
                    report.rejected[0].violations[0].field,
                    expect[1],
                    "{}",
                    file.display()
                );
            }
            "finding" => {
                assert!(
                    report.rejected.is_empty(),
                    "{}: {:?}",
                    file.display(),
                    report.rejected
                );
                assert_eq!(findings.len(), 1, "{}: {findings:#?}", file.display());
                let f = findings[0];
                assert_eq!(f.code.as_str(), expect[1], "{}", file.display());
                assert_eq!(
                    format!("{}/{}", f.subject.kind, f.subject.name),
                    expect[2],
                    "{}",
                    file.display()
                );
                if let Some(detail) = expect.get(3) {
                    assert_eq!(
                        f.detail.as_deref(),
                        Some(detail.as_str()),
                        "{}",
                        file.display()
                    );
                }
            }
            other => panic!("{}: unknown expectation {other}", file.display()),
        }
    }
}
