//! Every consistency rule and every built-in check, from YAML fixtures: each fixture in
//! `tests/fixtures/core/` adds objects to `_base.yaml` and lists, in `# expect:` lines, exactly the
//! findings the conductor must report (`CODE KIND/NAME DETAIL [warning] [@LINE]`, `-` for no
//! detail; `@LINE` is the line of the fixture the finding points at, `@_base.yaml:LINE` one of the
//! base). `# message: CODE KIND/NAME TEXT` lines give a finding's exact sentence.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cx_conductor::cli::check::check_inventory;
use cx_conductor::core::Finding;
use cx_conductor::core::plan::PlanOptions;
use cx_conductor::manifest::{Inventory, load_paths};
use cx_conductor::schema::SchemaValidator;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/core")
}

type Key = (String, String, String, String);

fn key(f: &Finding) -> Key {
    (
        f.code.as_str().to_string(),
        format!("{}/{}", f.subject.kind, f.subject.name),
        f.detail.clone().unwrap_or_else(|| "-".into()),
        match f.severity {
            cx_conductor::api::Severity::Error => "error".into(),
            cx_conductor::api::Severity::Warning => "warning".into(),
        },
    )
}

/// The findings a fixture expects, and for some where they point (file name, line).
fn expected(file: &Path) -> (BTreeSet<Key>, Vec<(Key, String, usize)>) {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut keys = BTreeSet::new();
    let mut places = Vec::new();
    for line in std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
    {
        let mut w: Vec<&str> = line.split_whitespace().collect();
        let at = w
            .last()
            .and_then(|l| l.strip_prefix('@'))
            .map(|at| match at.split_once(':') {
                Some((f, l)) => (f.to_string(), l.parse::<usize>().unwrap()),
                None => (name.clone(), at.parse::<usize>().unwrap()),
            });
        if at.is_some() {
            w.pop();
        }
        let key = (
            w[0].to_string(),
            w[1].to_string(),
            w[2].to_string(),
            w.get(3).copied().unwrap_or("error").to_string(),
        );
        if let Some((f, l)) = at {
            places.push((key.clone(), f, l));
        }
        keys.insert(key);
    }
    (keys, places)
}

/// `# message: CODE KIND/NAME TEXT` lines: (code, subject) → sentence.
fn expected_messages(file: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# message: "))
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every finding `check` reports for `paths`, located in the files.
fn findings_for(paths: &[PathBuf]) -> (Inventory, Vec<Finding>) {
    let documents = load_paths(paths).unwrap();
    let inventory = Inventory::from_documents(&documents, &SchemaValidator::new());
    let outcome = check_inventory(&inventory, &PlanOptions::default());
    let findings = outcome
        .report
        .findings
        .iter()
        .chain(
            outcome
                .report
                .journeys
                .iter()
                .flat_map(|j| j.findings.iter()),
        )
        .cloned()
        .collect();
    (inventory, findings)
}

#[test]
fn the_base_fixture_is_clean() {
    let (inventory, findings) = findings_for(&[fixtures().join("_base.yaml")]);
    assert!(inventory.rejected.is_empty(), "{:?}", inventory.rejected);
    assert_eq!(findings, vec![], "base fixture must produce no finding");
}

#[test]
fn each_fixture_produces_exactly_its_findings() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('_'))
        .collect();
    files.sort();
    assert!(files.len() >= 25, "fixtures missing: {files:?}");
    for file in files {
        let (want, places) = expected(&file);
        assert!(!want.is_empty(), "{} has no expect line", file.display());
        let (inventory, findings) = findings_for(&[fixtures().join("_base.yaml"), file.clone()]);
        assert!(
            inventory.rejected.is_empty(),
            "{}: {:?}",
            file.display(),
            inventory.rejected
        );
        let got: BTreeSet<Key> = findings.iter().map(key).collect();
        assert_eq!(got, want, "{}: findings {findings:#?}", file.display());
        assert_eq!(
            got.len(),
            findings.len(),
            "{}: a finding reported twice",
            file.display()
        );
        for (key, in_file, line) in places {
            let f = findings.iter().find(|f| self::key(f) == key).unwrap();
            let origin = f.origin.as_ref().expect("every finding is located");
            assert_eq!(
                (
                    Path::new(&origin.file)
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    origin.line
                ),
                (in_file, line),
                "{}: where {key:?} points",
                file.display()
            );
        }
        for (code, subject, message) in expected_messages(&file) {
            let said: Vec<&str> = findings
                .iter()
                .filter(|f| {
                    f.code.as_str() == code
                        && format!("{}/{}", f.subject.kind, f.subject.name) == subject
                })
                .map(|f| f.message.as_str())
                .collect();
            assert!(
                said.contains(&message.as_str()),
                "{}: {code} about {subject} says {said:#?}, not {message:?}",
                file.display()
            );
        }
        assert!(
            findings.iter().all(|f| f.origin.is_some()),
            "{}: every finding names its file and line",
            file.display()
        );
    }
}

fn finding_with_detail(fixture: &str, detail: &str) -> Finding {
    let (_, findings) = findings_for(&[fixtures().join("_base.yaml"), fixtures().join(fixture)]);
    findings
        .into_iter()
        .find(|f| f.detail.as_deref() == Some(detail))
        .unwrap_or_else(|| panic!("{fixture}: no finding about {detail}"))
}

#[test]
fn violations_group_channels_by_value_in_words_a_cx_lead_reads() {
    let voice = finding_with_detail("rule-equal.yaml", "brand.voice");
    assert_eq!(
        voice.message,
        "brand.voice differs: friendly on app, web; formal on voice"
    );
    assert_eq!(voice.values["friendly"], ["app", "web"]);
    assert_eq!(voice.values["formal"], ["voice"]);

    let locales = finding_with_detail("rule-includes.yaml", "locales");
    assert_eq!(
        locales.message,
        "locales must include it-IT: en-GB on voice"
    );

    let retention = finding_with_detail("rule-oneof.yaml", "privacy.dataRetentionDays");
    assert_eq!(
        retention.message,
        "privacy.dataRetentionDays must be one of 365: 730 on voice"
    );

    let response = finding_with_detail(
        "rule-atmost-atleast.yaml",
        "serviceLevels.firstResponseSeconds",
    );
    assert_eq!(
        response.message,
        "serviceLevels.firstResponseSeconds must be at most 120: 180 on voice"
    );

    let present = finding_with_detail("rule-present.yaml", "displayName");
    assert_eq!(present.message, "displayName is not set on app, voice, web");

    let tier = finding_with_detail("rule-attributes.yaml", "attributes.loyalty.tier");
    assert_eq!(tier.message, "attributes.loyalty.tier is not set on voice");
}

#[test]
fn the_clean_example_has_no_finding_and_plans_every_collector() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let outcome = cx_conductor::cli::check::check_paths(
        &[root.join("examples/retail")],
        &PlanOptions::default(),
    )
    .unwrap();
    let report = &outcome.report;
    assert_eq!(report.summary.errors, 0);
    assert_eq!(report.summary.warnings, 0);
    assert!(report.findings.is_empty());
    assert!(report.journeys.iter().all(|j| j.findings.is_empty()));
    // Every touchpoint is served: the retail namespace's pool holds them all.
    assert_eq!(report.plan.pools, 1);
    assert_eq!(report.plan.pooled_touchpoints, report.summary.touchpoints);
    assert_eq!(outcome.exit_code(), 0);
    // Offline, KPI states and collectors are unknown: not failed, not evaluated, and the score is
    // over the 17 points that could be judged.
    let journey = &report.journeys[0];
    let failed: Vec<&str> = journey
        .readiness
        .criteria
        .iter()
        .filter(|c| !c.passed && c.evaluated)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(failed, Vec::<&str>::new());
    let not_evaluated: Vec<&str> = journey
        .readiness
        .criteria
        .iter()
        .filter(|c| !c.evaluated)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(not_evaluated, ["kpis-met", "collectors-ready"]);
    assert_eq!(journey.readiness.score, 100);
    assert!(!journey.statuses_known);
}

/// (score, band, evidenced, declared, missing) of a journey's self-assessment.
fn self_assessment_of(
    paths: &[PathBuf],
    journey: &str,
) -> (i32, &'static str, Vec<i32>, Vec<i32>, Vec<i32>) {
    let documents = load_paths(paths).unwrap();
    let inventory = Inventory::from_documents(&documents, &SchemaValidator::new());
    let outcome = check_inventory(&inventory, &PlanOptions::default());
    let j = outcome
        .report
        .journeys
        .iter()
        .find(|j| j.journey.name == journey)
        .unwrap();
    let sa = &j.self_assessment;
    assert_eq!(sa.answers.len(), 25);
    (
        sa.score,
        sa.band.as_str(),
        sa.evidenced.clone(),
        sa.declared.clone(),
        sa.missing.clone(),
    )
}

#[test]
fn the_self_assessment_takes_evidence_first_then_declarations() {
    let (score, band, evidenced, declared, missing) = self_assessment_of(
        &[
            fixtures().join("_base.yaml"),
            fixtures().join("self-assessment-contradicted.yaml"),
        ],
        "declared",
    );
    // Evidenced yes: 10 (covered), 17 and 22 (owners); declared yes: 9 (unknown offline).
    assert_eq!(score, 4);
    assert_eq!(band, "many-gaps");
    assert_eq!(evidenced, [7, 10, 11, 14, 15, 17, 22]);
    assert_eq!(declared, [1, 9]);
    assert_eq!(
        missing,
        [2, 3, 4, 5, 6, 8, 12, 13, 16, 18, 19, 20, 21, 23, 24, 25]
    );
    // Without declarations, the base journey has only evidence: 7, 10, 11, 17 and 22 say yes;
    // 14 says no (no rule declared), 15 no (no loyalty stage); nothing is assumed.
    let (score, band, evidenced, declared, missing) =
        self_assessment_of(&[fixtures().join("_base.yaml")], "main");
    assert_eq!((score, band), (5, "many-gaps"));
    assert_eq!(evidenced, [7, 10, 11, 14, 15, 17, 22]);
    assert!(declared.is_empty());
    assert_eq!(missing.len(), 18);
}

#[test]
fn the_retail_example_scores_missing_pieces_offline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (score, band, evidenced, declared, missing) =
        self_assessment_of(&[root.join("examples/retail")], "retail");
    assert_eq!(score, 17);
    assert_eq!(band, "missing-pieces");
    assert_eq!(evidenced, [7, 10, 11, 14, 17, 22]);
    assert_eq!(
        declared,
        [1, 2, 3, 4, 5, 6, 8, 9, 12, 13, 15, 16, 19, 20, 21, 24]
    );
    assert_eq!(
        missing,
        [18, 23, 25],
        "18 and 25 need a cluster; 23 is undeclared"
    );
}
