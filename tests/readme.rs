//! The README tells the truth: every finding code is documented in its table.

use std::path::Path;

use cx_conductor::core::FindingCode;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The codes of the README's finding table, in order.
fn documented_codes(readme: &str) -> Vec<String> {
    readme
        .lines()
        .skip_while(|l| !l.starts_with("| Finding code |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_start_matches("| `")
                .split('`')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn the_finding_table_lists_every_code_once_and_no_other() {
    let documented = documented_codes(&readme());
    let codes: Vec<String> = FindingCode::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    assert_eq!(
        documented, codes,
        "README's finding table, in FindingCode::ALL order"
    );
}
