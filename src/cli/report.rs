//! Rendering a check's outcome: the human-readable report (one section per journey), JSON, and
//! the deployment plan. Rendering depends on the check's types; the check never on rendering.

use std::fmt::Write;

use crate::api::{AnswerSource, SelfAssessment, Severity};
use crate::core::Finding;
use crate::core::plan::CollectorPlan;
use crate::core::pool::{PoolPlan, SharedPlan};
use crate::manifest::Rejected;
use crate::schema::SchemaViolation;

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

/// "1 journey", "2 journeys".
fn count(n: usize, one: &str, many: &str) -> String {
    crate::core::analysis::count(n, one, many)
}

/// One finding as one line: `error[code]: file:line: message`, the form editors and CI logs link.
fn diagnostic(style: &Style, finding: &Finding) -> String {
    let place = finding
        .origin
        .as_ref()
        .map(|o| format!("{o}: "))
        .unwrap_or_default();
    format!(
        "{}[{}]: {place}{}",
        style.severity(finding.severity),
        finding.code,
        finding.message
    )
}

/// One schema violation as one line: `error[schema]: file:line: Kind ns/name: field: message`.
fn refusal(style: &Style, rejected: &Rejected, violation: &SchemaViolation) -> String {
    let origin = violation.origin.as_ref().unwrap_or(&rejected.origin);
    let field = if violation.field.is_empty() {
        String::new()
    } else {
        format!("{}: ", violation.field)
    };
    format!(
        "{}[schema]: {origin}: {}: {field}{}",
        style.severity(Severity::Error),
        rejected.object,
        violation.message
    )
}

/// The self-assessment's answers: evidenced, declared, and the missing that evidence could give,
/// one per line; the other missing questions in one line.
fn self_assessment(style: &Style, sa: &SelfAssessment) -> String {
    use crate::core::self_assessment::SHORT;
    let mut out = String::from("  self-assessment answers:\n");
    let mut rows = Vec::new();
    let mut undeclared = Vec::new();
    for a in &sa.answers {
        let (text, evidenced) = SHORT[a.question as usize - 1];
        if a.source == AnswerSource::Missing && !evidenced {
            undeclared.push(format!("Q{}", a.question));
            continue;
        }
        rows.push(vec![
            match a.answer {
                Some(true) => style.paint("32", "yes"),
                Some(false) => style.paint("31", "no"),
                None => style.paint("2", "?"),
            },
            format!("Q{}", a.question),
            a.source.as_str().to_string(),
            text.to_string(),
            a.reason.clone(),
        ]);
    }
    out.push_str(&table(&rows, "    "));
    if !undeclared.is_empty() {
        let _ = writeln!(
            out,
            "    missing, counted as no: {} (declare {} in spec.selfAssessment.answers)",
            undeclared.join(", "),
            if undeclared.len() == 1 { "it" } else { "them" }
        );
    }
    out
}

/// The text report of a check.
pub fn render_text(report: &CheckReport, color: bool, queries: bool) -> String {
    let style = Style { color };
    let s = &report.summary;
    let mut out = String::new();
    let refused = if report.rejected.is_empty() {
        String::new()
    } else {
        format!(
            "; {} refused",
            count(report.rejected.len(), "object", "objects")
        )
    };
    let _ = writeln!(
        out,
        "{} {}, {}, {}, {}{refused}",
        style.bold("cx-conductor check:"),
        count(s.channels, "channel", "channels"),
        count(s.touchpoints, "touchpoint", "touchpoints"),
        count(s.kpis, "KPI", "KPIs"),
        count(s.journeys, "journey", "journeys"),
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

    // Causes first: what the API server would refuse, then single objects, then journeys.
    if !report.rejected.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            style.bold("Refused by the schema (the API server would reject these)")
        );
        for r in &report.rejected {
            for v in &r.violations {
                let _ = writeln!(out, "  {}", refusal(&style, r, v));
            }
        }
    }

    if !report.findings.is_empty() {
        let _ = writeln!(out, "\n{}", style.bold("Objects"));
        for f in &report.findings {
            let _ = writeln!(out, "  {}", diagnostic(&style, f));
        }
    }

    for j in &report.journeys {
        let readiness = &j.readiness;
        let _ = writeln!(
            out,
            "\n{}{}",
            style.bold(&format!(
                "Journey {}/{}",
                j.journey.namespace, j.journey.name
            )),
            j.origin
                .as_ref()
                .map(|o| format!(" ({o})"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "  channels:        {}",
            if j.channels.is_empty() {
                "none".into()
            } else {
                j.channels.join(", ")
            }
        );
        let _ = writeln!(out, "  touchpoints:     {}", j.touchpoints.len());
        let k = &j.kpi_counts;
        if j.statuses_known {
            let _ = writeln!(
                out,
                "  KPIs:            {} (met {}, at risk {}, breached {}, insufficient data {}, not evaluated {})",
                j.kpis.len(),
                k.met,
                k.at_risk,
                k.breached,
                k.insufficient_data,
                k.unknown
            );
        } else {
            let _ = writeln!(
                out,
                "  KPIs:            {}{}",
                j.kpis.len(),
                if j.kpis.is_empty() {
                    ""
                } else {
                    ", states not evaluated offline"
                }
            );
        }
        let total: i32 = readiness.criteria.iter().map(|c| c.weight).sum();
        let evaluated: i32 = readiness
            .criteria
            .iter()
            .filter(|c| c.evaluated)
            .map(|c| c.weight)
            .sum();
        let not_evaluated: Vec<&str> = readiness
            .criteria
            .iter()
            .filter(|c| !c.evaluated)
            .map(|c| c.id.as_str())
            .collect();
        let over = if not_evaluated.is_empty() {
            String::new()
        } else {
            format!(
                ", over {evaluated} of {total} points ({} not evaluated offline)",
                not_evaluated.join(", ")
            )
        };
        let _ = writeln!(
            out,
            "  readiness:       {} ({}){over}",
            readiness.score,
            readiness.band.as_str()
        );
        let sa = &j.self_assessment;
        let unknown = sa
            .missing
            .iter()
            .filter(|q| crate::core::self_assessment::SHORT[**q as usize - 1].1)
            .count();
        let _ = writeln!(
            out,
            "  self-assessment: {} of 25 yes ({}): {} evidenced, {} declared, {} missing{}",
            sa.score,
            sa.band.as_str(),
            sa.evidenced.len(),
            sa.declared.len(),
            sa.missing.len(),
            if unknown > 0 {
                format!(" ({unknown} of them not evaluated offline)")
            } else {
                String::new()
            }
        );
        if j.findings.is_empty() {
            let _ = writeln!(out, "  findings:        none: consistent and covered");
        } else {
            let errors = j
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            let _ = writeln!(
                out,
                "  findings:        {}, {}",
                count(errors, "error", "errors"),
                count(j.findings.len() - errors, "warning", "warnings")
            );
            for f in &j.findings {
                let _ = writeln!(out, "    {}", diagnostic(&style, f));
            }
        }
        let _ = writeln!(out, "  readiness criteria:");
        let rows: Vec<Vec<String>> = readiness
            .criteria
            .iter()
            .map(|c| {
                vec![
                    if c.evaluated {
                        style.mark(c.passed)
                    } else {
                        style.paint("2", "n/a")
                    },
                    c.id.clone(),
                    format!("×{}", c.weight),
                    c.reason.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&rows, "    "));
        out.push_str(&self_assessment(&style, &j.self_assessment));
    }

    if !report.kpi_queries.is_empty() && !queries {
        let _ = writeln!(
            out,
            "\n{} {} compile to PromQL (print the queries with --queries; -o json has them)",
            style.bold("KPI queries:"),
            count(report.kpi_queries.len(), "KPI", "KPIs")
        );
    }
    if !report.kpi_queries.is_empty() && queries {
        let _ = writeln!(
            out,
            "\n{} (paste into Prometheus; calendar windows: $window = seconds since the period's start)",
            style.bold("KPI queries")
        );
        for k in &report.kpi_queries {
            let _ = writeln!(
                out,
                "  {}/{} over {}; previous cycle: {}",
                k.kpi.namespace, k.kpi.name, k.window, k.queries.previous_cycle
            );
            let _ = writeln!(out, "    value:   {}", k.queries.value);
            if let Some(samples) = &k.queries.samples {
                let _ = writeln!(out, "    samples: {samples}");
            }
        }
    }

    let p = &report.plan;
    let objects: Vec<String> = p.objects.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut deployed = Vec::new();
    if p.pools > 0 {
        deployed.push(format!(
            "{} serving {}",
            count(p.pools, "collector pool", "collector pools"),
            count(p.pooled_touchpoints, "touchpoint", "touchpoints")
        ));
    }
    if p.collectors > 0 {
        deployed.push(count(
            p.collectors,
            "dedicated collector",
            "dedicated collectors",
        ));
    }
    if deployed.is_empty() {
        deployed.push("no collectors".into());
    }
    let _ = writeln!(
        out,
        "\n{} {}: {} (print them with --plan)",
        style.bold("Plan:"),
        deployed.join(", "),
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
    for refused in &p.refused {
        let _ = writeln!(out, "  not deployed: {refused}");
    }
    let verdict = if s.errors > 0 {
        style.paint("31", "FAILED")
    } else {
        style.paint("32", "OK")
    };
    let _ = writeln!(
        out,
        "\n{verdict}: {}, {}",
        count(s.errors, "error", "errors"),
        count(s.warnings, "warning", "warnings")
    );
    out
}

/// Every error of a check, one line each (as in the text report), for stderr when the plan is printed.
pub fn render_errors(report: &CheckReport, color: bool) -> String {
    let style = Style { color };
    let mut out = String::new();
    for r in &report.rejected {
        for v in &r.violations {
            let _ = writeln!(out, "{}", refusal(&style, r, v));
        }
    }
    let findings = report
        .findings
        .iter()
        .chain(report.journeys.iter().flat_map(|j| j.findings.iter()))
        .filter(|f| f.severity == Severity::Error);
    for f in findings {
        let _ = writeln!(out, "{}", diagnostic(&style, f));
    }
    out
}

/// The planned objects as one `v1` List in JSON (what `kubectl apply -f` takes), in apply order:
/// the collectors' objects, then the KPIs' PrometheusRules (applied with `--prometheus-rules`).
pub fn render_plan_json(
    plans: &[CollectorPlan],
    pools: &[PoolPlan],
    shared: &[SharedPlan],
    rules: &[serde_json::Value],
) -> String {
    let items: Vec<serde_json::Value> = plan_objects(plans, pools, shared, rules).collect();
    let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items });
    let mut out = serde_json::to_string_pretty(&list).unwrap_or_default();
    out.push('\n');
    out
}

/// The planned objects as one multi-document YAML, in apply order (as [`render_plan_json`]).
pub fn render_plan(
    plans: &[CollectorPlan],
    pools: &[PoolPlan],
    shared: &[SharedPlan],
    rules: &[serde_json::Value],
) -> String {
    let mut out = String::new();
    for object in plan_objects(plans, pools, shared, rules) {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&object).unwrap_or_default());
    }
    out
}

/// Every planned object: the pools first (namespace order), then the dedicated collectors, then
/// what each namespace's collectors share, then the KPIs' PrometheusRules.
fn plan_objects<'a>(
    plans: &'a [CollectorPlan],
    pools: &'a [PoolPlan],
    shared: &'a [SharedPlan],
    rules: &'a [serde_json::Value],
) -> impl Iterator<Item = serde_json::Value> + 'a {
    pools
        .iter()
        .flat_map(PoolPlan::objects)
        .chain(plans.iter().flat_map(CollectorPlan::objects))
        .chain(shared.iter().flat_map(SharedPlan::objects))
        .chain(rules.iter().cloned())
}
