//! Rendering a check's outcome: the human-readable report (one section per journey), JSON, and
//! the deployment plan. Rendering depends on the check's types; the check never on rendering.

use std::fmt::Write;

use crate::api::Severity;
use crate::core::Finding;
use crate::core::plan::CollectorPlan;

use super::check::CheckReport;

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
    fn severity(&self, severity: Severity) -> String {
        match severity {
            Severity::Error => self.paint("31", "error"),
            Severity::Warning => self.paint("33", "warning"),
        }
    }
    fn mark(&self, passed: bool) -> String {
        if passed {
            self.paint("32", "pass")
        } else {
            self.paint("31", "FAIL")
        }
    }
}

/// Renders rows as aligned columns (the last column is not padded). Padding counts visible
/// characters, so coloured cells align too.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let visible = |s: &str| {
        let mut n = 0;
        let mut in_escape = false;
        for c in s.chars() {
            match (in_escape, c) {
                (false, '\x1b') => in_escape = true,
                (true, 'm') => in_escape = false,
                (true, _) => {}
                (false, _) => n += 1,
            }
        }
        n
    };
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| visible(s))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        out.push_str(indent);
        for (c, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if c + 1 < row.len() {
                out.push_str(&" ".repeat(widths[c] - visible(cell) + 2));
            }
        }
        out.push('\n');
    }
    out
}

fn finding_rows(style: &Style, findings: &[&Finding], with_subject: bool) -> Vec<Vec<String>> {
    let mut rows = vec![if with_subject {
        vec![
            "SEVERITY".into(),
            "CODE".into(),
            "OBJECT".into(),
            "MESSAGE".into(),
        ]
    } else {
        vec![
            "SEVERITY".into(),
            "CODE".into(),
            "ABOUT".into(),
            "MESSAGE".into(),
        ]
    }];
    for f in findings {
        let about = if with_subject {
            f.subject.to_string()
        } else {
            f.detail.clone().unwrap_or_default()
        };
        rows.push(vec![
            style.severity(f.severity),
            f.code.as_str().into(),
            about,
            f.message.clone(),
        ]);
    }
    rows
}

/// The text report of a check.
pub fn render_text(report: &CheckReport, color: bool) -> String {
    let style = Style { color };
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} channels, {} touchpoints, {} KPIs, {} journeys",
        style.bold("cx-conductor check:"),
        s.channels,
        s.touchpoints,
        s.kpis,
        s.journeys
    );

    if !report.skipped.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            style.bold("Skipped (not cx.conductor.dev resources)")
        );
        let rows: Vec<Vec<String>> = report
            .skipped
            .iter()
            .map(|k| vec![k.origin.to_string(), k.what.clone()])
            .collect();
        out.push_str(&table(&rows, "  "));
    }

    if !report.rejected.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            style.bold("Refused by the schema (the API server would reject these)")
        );
        let mut rows = vec![vec![
            "WHERE".into(),
            "OBJECT".into(),
            "FIELD".into(),
            "RULE".into(),
            "PROBLEM".into(),
        ]];
        for r in &report.rejected {
            for v in &r.violations {
                rows.push(vec![
                    r.origin.to_string(),
                    r.object.to_string(),
                    if v.field.is_empty() {
                        "<object>".into()
                    } else {
                        v.field.clone()
                    },
                    v.rule.clone(),
                    v.message.clone(),
                ]);
            }
        }
        out.push_str(&table(&rows, "  "));
    }

    for j in &report.journeys {
        let readiness = &j.readiness;
        let _ = writeln!(
            out,
            "\n{} — readiness {} ({})",
            style.bold(&format!(
                "Journey {}/{}",
                j.journey.namespace, j.journey.name
            )),
            readiness.score,
            readiness.band.as_str()
        );
        let k = &j.kpi_counts;
        let _ = writeln!(
            out,
            "  channels:    {}",
            if j.channels.is_empty() {
                "-".into()
            } else {
                j.channels.join(", ")
            }
        );
        let _ = writeln!(
            out,
            "  touchpoints: {} · KPIs: {} (met {}, at risk {}, breached {}, insufficient data {}, not evaluated {})",
            j.touchpoints.len(),
            j.kpis.len(),
            k.met,
            k.at_risk,
            k.breached,
            k.insufficient_data,
            k.unknown
        );
        if j.findings.is_empty() {
            let _ = writeln!(out, "  findings:    none — consistent and covered");
        } else {
            let _ = writeln!(out, "  findings:");
            let findings: Vec<&Finding> = j.findings.iter().collect();
            out.push_str(&table(&finding_rows(&style, &findings, false), "    "));
        }
        let _ = writeln!(out, "  readiness criteria:");
        let rows: Vec<Vec<String>> = readiness
            .criteria
            .iter()
            .map(|c| {
                vec![
                    style.mark(c.passed),
                    c.id.clone(),
                    format!("×{}", c.weight),
                    c.reason.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&rows, "    "));
    }

    if !report.findings.is_empty() {
        let _ = writeln!(out, "\n{}", style.bold("Other findings"));
        let findings: Vec<&Finding> = report.findings.iter().collect();
        out.push_str(&table(&finding_rows(&style, &findings, true), "  "));
    }

    let p = &report.plan;
    let objects: Vec<String> = p.objects.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(
        out,
        "\n{} {} collectors: {} (print them with --plan)",
        style.bold("Plan:"),
        p.collectors,
        if objects.is_empty() {
            "no objects".into()
        } else {
            objects.join(", ")
        }
    );
    if !p.unplanned.is_empty() {
        let _ = writeln!(
            out,
            "  not deployed (channel missing): {}",
            p.unplanned.join(", ")
        );
    }
    let verdict = if s.errors > 0 {
        style.paint("31", "FAILED")
    } else {
        style.paint("32", "OK")
    };
    let _ = writeln!(
        out,
        "\n{verdict}: {} errors, {} warnings",
        s.errors, s.warnings
    );
    out
}

/// The planned objects as one multi-document YAML, in apply order.
pub fn render_plan(plans: &[CollectorPlan]) -> String {
    let mut out = String::new();
    for plan in plans {
        for object in plan.objects() {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(&object).unwrap_or_default());
        }
    }
    out
}
