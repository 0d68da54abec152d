//! `cx-conductor check`: everything the operator would conclude from a set of manifests, without a
//! cluster. Load → schema validation → consistency, coverage, readiness → deployment plan → report.
//!
//! Severity: **errors** are what the API server would refuse (schema and CEL violations, duplicate
//! names and list items) and findings that make a journey not Ready or a KPI measure the wrong
//! thing (broken consistency rules of severity error, rules that check nothing, dangling
//! references, KPI scopes that match nothing, duplicate touchpoints, coverage gaps the journey
//! requires). **Warnings** are what is legitimate but probably a mistake: rules declared with
//! `severity: warning`, objects no journey looks at, KPIs without an owner. Notes (documents of
//! other API groups, skipped) are neither. Every finding names the file and line of the field to
//! change.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::api::{Severity, ThemeSpec};
use crate::core::listening::{theme_sources, themes_of, with_journey_export};
use crate::core::plan::{CollectorPlan, PlanOptions, plan_collector};
use crate::core::pool::{PoolMember, PoolPlan, SharedPlan, admit_image, plan_pool, plan_shared};
use crate::core::world::namespace_of;
use crate::core::{Analysis, Finding, FindingCode, JourneyAssessment, ObjectRef, World, analyze};
use crate::manifest::{Inventory, LoadError, Rejected, Skipped, load_paths};
use crate::schema::SchemaValidator;

/// Exit code when findings of severity error exist.
pub const EXIT_ERRORS: u8 = 1;
/// Exit code when input cannot be used at all.
pub const EXIT_UNUSABLE: u8 = 2;

/// The stable, machine-readable result of a check (`-o json`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// Counts at a glance.
    pub summary: Summary,
    /// Objects the API server would refuse.
    pub rejected: Vec<Rejected>,
    /// Documents that are not cx-conductor resources.
    pub skipped: Vec<Skipped>,
    /// Per-journey assessments.
    pub journeys: Vec<JourneyAssessment>,
    /// Findings about single objects.
    pub findings: Vec<Finding>,
    /// The collectors the operator would deploy.
    pub plan: PlanSummary,
    /// The PromQL each KPI is evaluated with (KPIs that compile), in namespace/name order.
    pub kpi_queries: Vec<KpiQueries>,
}

/// The queries of one KPI, ready to paste into Prometheus.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KpiQueries {
    /// The KPI.
    pub kpi: ObjectRef,
    /// `spec.window`.
    pub window: String,
    /// The queries.
    #[serde(flatten)]
    pub queries: crate::kpi::promql::DisplayedQueries,
}

/// Counts at a glance.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Accepted channels.
    pub channels: usize,
    /// Accepted touchpoints.
    pub touchpoints: usize,
    /// Accepted KPIs.
    pub kpis: usize,
    /// Accepted journeys.
    pub journeys: usize,
    /// Errors: refused objects' violations plus error findings.
    pub errors: usize,
    /// Warning findings.
    pub warnings: usize,
    /// Skipped documents.
    pub skipped: usize,
}

/// What the plan would deploy.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// Dedicated collectors planned (dedicated touchpoints whose channel exists).
    pub collectors: usize,
    /// Collector pools planned, one per namespace with a pooled touchpoint.
    pub pools: usize,
    /// Touchpoints the pools serve.
    pub pooled_touchpoints: usize,
    /// Kubernetes objects planned, by kind.
    pub objects: BTreeMap<String, usize>,
    /// Touchpoints not planned because their channel does not exist.
    pub unplanned: Vec<String>,
    /// Touchpoints not planned for another reason (an image the platform does not allow; a
    /// pooled token, which only the cluster's Secret holds), with the reason.
    pub refused: Vec<String>,
}

/// Everything a check computes, kept for rendering.
pub struct CheckOutcome {
    /// The report.
    pub report: CheckReport,
    /// The dedicated collector plans, in namespace/name order of their touchpoints.
    pub plans: Vec<CollectorPlan>,
    /// The collector pools, in namespace order.
    pub pools: Vec<PoolPlan>,
    /// What each namespace's collectors share (NetworkPolicy, ServiceMonitor), in namespace order.
    pub shared: Vec<SharedPlan>,
    /// The PrometheusRules routing the KPIs' breaches (one per namespace with KPIs), as the
    /// operator applies them with `--prometheus-rules` (without the extra labels it is given).
    pub rules: Vec<serde_json::Value>,
}

impl CheckOutcome {
    /// The exit code the check ends with.
    pub fn exit_code(&self) -> u8 {
        if self.report.summary.errors > 0 {
            EXIT_ERRORS
        } else {
            0
        }
    }
}

/// Checks the manifests under `paths`. `Err` means the input is unusable (exit 2): unreadable,
/// not YAML, or holding no cx.conductor.dev resource at all (nothing to check is not "OK").
pub fn check_paths(paths: &[PathBuf], options: &PlanOptions) -> Result<CheckOutcome, LoadError> {
    let documents = load_paths(paths)?;
    let inventory = Inventory::from_documents(&documents, &SchemaValidator::new());
    let resources = inventory.origins.len() + inventory.rejected.len();
    if resources == 0 {
        let given: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let given = given.join(", ");
        return Err(if documents.is_empty() {
            LoadError::NothingToCheck {
                message: format!(
                    "{given}: no manifest found (no .yaml, .yml or .json file with a document in it)"
                ),
            }
        } else {
            let skipped: Vec<String> = inventory
                .skipped
                .iter()
                .map(|s| format!("{} at {}", s.what, s.origin))
                .collect();
            LoadError::NothingToCheck {
                message: format!(
                    "{given}: no cx.conductor.dev resource to check ({} skipped: {})",
                    if skipped.len() == 1 {
                        "1 document".to_string()
                    } else {
                        format!("{} documents", skipped.len())
                    },
                    crate::core::analysis::list(&skipped)
                ),
            }
        });
    }
    Ok(check_inventory(&inventory, options))
}

/// Checks accepted objects: the pure part of `check`. Statuses in the manifests are not trusted:
/// KPI states and collector readiness are "not evaluated offline".
pub fn check_inventory(inventory: &Inventory, options: &PlanOptions) -> CheckOutcome {
    let world = inventory.offline_world();
    let mut analysis: Analysis = analyze(&world);
    let (kpi_findings, kpi_queries) = kpi_query_findings(&world);
    analysis.findings.extend(kpi_findings);
    analysis
        .findings
        .sort_by_key(|f| (kind_rank(&f.subject.kind), f.subject.clone(), f.code));
    for finding in analysis.findings.iter_mut().chain(
        analysis
            .journeys
            .iter_mut()
            .flat_map(|j| j.findings.iter_mut()),
    ) {
        locate(finding, inventory);
    }
    for journey in &mut analysis.journeys {
        journey.origin = inventory.origins.get(&journey.journey).cloned();
    }
    let mut order: Vec<usize> = (0..inventory.touchpoints.len()).collect();
    order.sort_by_key(|&i| {
        let t = &inventory.touchpoints[i];
        (namespace_of(t).to_string(), t.metadata.name.clone())
    });
    // The themes each touchpoint's collector counts, from the journeys holding it.
    let sources = theme_sources(&inventory.journeys);
    let themes: Vec<Vec<ThemeSpec>> = inventory
        .touchpoints
        .iter()
        .map(|t| {
            let channel = world.channel(namespace_of(t), &t.spec.channel);
            themes_of(t, channel, &sources)
        })
        .collect();
    // Each touchpoint as planned: its export choices completed by the journeys holding it.
    let journeys: Vec<&crate::api::CustomerJourney> = inventory.journeys.iter().collect();
    let planned: Vec<crate::api::Touchpoint> = inventory
        .touchpoints
        .iter()
        .map(|t| {
            let channel = world.channel(namespace_of(t), &t.spec.channel);
            with_journey_export(t, channel, &journeys)
        })
        .collect();
    let mut plans = Vec::new();
    let mut unplanned = Vec::new();
    let mut refused = Vec::new();
    let mut pooled: BTreeMap<String, Vec<PoolMember<'_>>> = BTreeMap::new();
    // Every touchpoint that gets a collector in a cluster, pooled or dedicated, by namespace.
    let mut collectors: BTreeMap<String, Vec<&crate::api::Touchpoint>> = BTreeMap::new();
    for i in order {
        let tp = &inventory.touchpoints[i];
        let namespace = namespace_of(tp);
        let shown = format!(
            "{namespace}/{}",
            tp.metadata.name.as_deref().unwrap_or_default()
        );
        let Some(channel) = world.channel(namespace, &tp.spec.channel) else {
            unplanned.push(shown);
            continue;
        };
        // Offline there is no Secret: a token's Secret is checked (and a pool's token digest
        // computed) only in the cluster.
        let dedicated = tp.spec.collector.is_dedicated();
        let admitted = admit_image(tp, options);
        if admitted.is_ok() {
            collectors
                .entry(namespace.to_string())
                .or_default()
                .push(tp);
        }
        if let Err(refusal) = admitted {
            refused.push(format!("{shown}: {}", refusal.message));
        } else if dedicated {
            plans.push(plan_collector(
                &planned[i],
                Some(channel),
                &themes[i],
                options,
            ));
        } else if let Some(auth) = &tp.spec.collector.auth {
            refused.push(format!(
                "{shown}: pooled with a token from Secret {}, which only the cluster holds",
                auth.secret_ref.name
            ));
        } else {
            pooled
                .entry(namespace.to_string())
                .or_default()
                .push(PoolMember {
                    touchpoint: &planned[i],
                    channel: Some(channel),
                    token_sha256: None,
                    themes: &themes[i],
                });
        }
    }
    let pools: Vec<PoolPlan> = pooled
        .iter()
        .filter_map(|(namespace, members)| plan_pool(namespace, members, options))
        .collect();
    let shared: Vec<SharedPlan> = collectors
        .iter()
        .filter_map(|(namespace, touchpoints)| plan_shared(namespace, touchpoints, options))
        .collect();
    let mut objects = BTreeMap::new();
    let pool_objects = pools.iter().flat_map(PoolPlan::objects);
    for object in plans
        .iter()
        .flat_map(CollectorPlan::objects)
        .chain(pool_objects)
        .chain(shared.iter().flat_map(SharedPlan::objects))
    {
        {
            let kind = object["kind"].as_str().unwrap_or("Unknown").to_string();
            *objects.entry(kind).or_insert(0) += 1;
        }
    }
    let count = |severity| {
        analysis
            .all_findings()
            .filter(|f| f.severity == severity)
            .count()
    };
    let schema_errors: usize = inventory.rejected.iter().map(|r| r.violations.len()).sum();
    let report = CheckReport {
        summary: Summary {
            channels: inventory.channels.len(),
            touchpoints: inventory.touchpoints.len(),
            kpis: inventory.kpis.len(),
            journeys: inventory.journeys.len(),
            errors: schema_errors + count(Severity::Error),
            warnings: count(Severity::Warning),
            skipped: inventory.skipped.len(),
        },
        rejected: inventory.rejected.clone(),
        skipped: inventory.skipped.clone(),
        journeys: analysis.journeys,
        findings: analysis.findings,
        plan: PlanSummary {
            collectors: plans.len(),
            pools: pools.len(),
            pooled_touchpoints: pools.iter().map(|p| p.members.len()).sum(),
            objects,
            unplanned,
            refused,
        },
        kpi_queries,
    };
    // Offline the server is unknown: the increments in the form every Prometheus evaluates.
    let rules = crate::kpi::rules::prometheus_rules(
        &inventory.kpis,
        &BTreeMap::new(),
        crate::kpi::recording::Increase::Differences,
    )
    .iter()
    .filter_map(|rule| serde_json::to_value(rule).ok())
    .collect();
    CheckOutcome {
        report,
        plans,
        pools,
        shared,
        rules,
    }
}

/// Fills in where a finding's field is written, and, when the object it names was refused by the
/// schema, says so: the refusal is the cause to fix first.
fn locate(finding: &mut Finding, inventory: &Inventory) {
    let (object, field) = finding.place();
    finding.origin = inventory.locate(object, field);
    let refused_kind = match finding.code {
        FindingCode::DanglingChannel | FindingCode::DanglingScopeChannel => "Channel",
        FindingCode::DanglingJourney => "CustomerJourney",
        _ => return,
    };
    let Some(name) = finding.detail.as_deref() else {
        return;
    };
    let namespace = &finding.subject.namespace;
    if let Some(refused) = inventory.rejected.iter().find(|r| {
        r.object.kind == refused_kind && r.object.name == name && &r.object.namespace == namespace
    }) {
        finding.message.push_str(&format!(
            "; {} was refused by the schema at {}: fix that first",
            refused.object, refused.origin
        ));
    }
}

/// Causes first: channels, then touchpoints, then KPIs.
fn kind_rank(kind: &str) -> u8 {
    match kind {
        "Channel" => 0,
        "Touchpoint" => 1,
        "ExperienceKPI" => 2,
        _ => 3,
    }
}

/// The field to change when no touchpoint in scope produces a builtin's signal: a theme KPI's
/// `segment` when it names an interaction outcome nobody reports, its `metric` when it names one,
/// otherwise the indicator itself.
fn missing_signal_field(indicator: &crate::api::Indicator) -> &'static str {
    use crate::api::CommentMetric;
    match (indicator.metric, &indicator.segment) {
        (Some(CommentMetric::Interaction), Some(_)) => "spec.indicator.segment",
        (Some(_), _) => "spec.indicator.metric",
        (None, _) => "spec.indicator.builtin",
    }
}

/// KPIs the operator could never evaluate, found by compiling their queries as it would: a builtin
/// indicator whose touchpoints produce none of its signal (an nps KPI over csat touchpoints), a
/// custom PromQL expression or a window Prometheus would refuse. Without this, `check` passed them.
fn kpi_query_findings(world: &World) -> (Vec<Finding>, Vec<KpiQueries>) {
    use crate::kpi::promql::{Counting, displayed_queries};
    use crate::kpi::window::window_problem;
    use crate::kpi::{KpiError, QueryScope, WindowSpec, compile};
    let mut findings = Vec::new();
    let mut queries = Vec::new();
    for (k, kpi) in world.kpis.iter().enumerate() {
        let name = kpi.metadata.name.clone().unwrap_or_default();
        let subject = ObjectRef::to(kpi);
        let window = match WindowSpec::parse_in(&kpi.spec.window, kpi.spec.time_zone.as_deref()) {
            Ok(window) => window,
            Err(e) => {
                let (hint, field) = if matches!(e, KpiError::InvalidTimeZone { .. }) {
                    ("", "spec.timeZone")
                } else {
                    (
                        " (write the units largest first, e.g. 1h30m)",
                        "spec.window",
                    )
                };
                findings.push(
                    Finding::new(
                        FindingCode::KpiQueryInvalid,
                        Severity::Error,
                        subject,
                        format!("KPI {name} cannot be evaluated: {e}{hint}"),
                    )
                    .field(field),
                );
                continue;
            }
        };
        if let Ok(interval) = WindowSpec::parse(&kpi.spec.interval) {
            let interval = interval.duration(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
            if let Some(("WindowShorterThanInterval", message)) = window_problem(
                &window,
                &kpi.spec.window,
                interval,
                None,
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ) {
                findings.push(
                    Finding::new(
                        FindingCode::KpiWindowShorterThanInterval,
                        Severity::Warning,
                        subject.clone(),
                        format!("KPI {name}'s {message}"),
                    )
                    .detail(kpi.spec.window.clone())
                    .field("spec.window"),
                );
            }
        }
        let scope = QueryScope::resolve(world, k);
        if kpi.spec.indicator.builtin.is_some() && scope.touchpoints.is_empty() {
            continue; // kpi-scope-empty (or a dangling scope channel) says it already
        }
        match compile(
            &kpi.spec,
            &scope,
            &window,
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            Counting::Raw,
        ) {
            Ok(_) => {
                // As the operator reads them once the recorded increments cover the window.
                if let Ok(shown) = displayed_queries(&kpi.spec, &scope, &window, Counting::Recorded)
                {
                    queries.push(KpiQueries {
                        kpi: ObjectRef::to(kpi),
                        window: kpi.spec.window.clone(),
                        queries: shown,
                    });
                }
            }
            Err(KpiError::EmptyScope(why)) => findings.push(
                Finding::new(
                    FindingCode::KpiSignalMissing,
                    Severity::Error,
                    subject,
                    format!("KPI {name} can never be measured: {why}"),
                )
                .detail(
                    kpi.spec
                        .indicator
                        .builtin
                        .map(|b| b.as_str())
                        .unwrap_or_default(),
                )
                .field(missing_signal_field(&kpi.spec.indicator)),
            ),
            Err(KpiError::ThemeNotCounted(why)) => findings.push(
                Finding::new(
                    FindingCode::KpiThemeUndeclared,
                    Severity::Error,
                    subject,
                    format!("KPI {name} can never be measured: {why}"),
                )
                .detail(kpi.spec.indicator.theme.clone().unwrap_or_default())
                .field("spec.indicator.theme"),
            ),
            Err(KpiError::OutcomeNotDeclared(why)) => {
                // The first outcome nobody declares, at its line.
                let outcomes = &kpi.spec.indicator.outcomes;
                let first = outcomes
                    .iter()
                    .position(|o| !scope.touchpoints.iter().any(|t| t.reports(o)));
                let undeclared: Vec<&str> = outcomes
                    .iter()
                    .filter(|o| !scope.touchpoints.iter().any(|t| t.reports(o)))
                    .map(String::as_str)
                    .collect();
                findings.push(
                    Finding::new(
                        FindingCode::KpiOutcomeUndeclared,
                        Severity::Error,
                        subject,
                        format!("KPI {name} measures an outcome that never happens: {why}"),
                    )
                    .detail(undeclared.join(", "))
                    .field(match first {
                        Some(i) => format!("spec.indicator.outcomes[{i}]"),
                        None => "spec.indicator.outcomes".to_string(),
                    }),
                )
            }
            Err(KpiError::InvalidQuery { field, message }) => findings.push(
                Finding::new(
                    FindingCode::KpiQueryInvalid,
                    Severity::Error,
                    subject,
                    format!("KPI {name}'s {field} is not a query Prometheus would run: {message}"),
                )
                .field(format!("spec.indicator.{field}")),
            ),
            Err(other) => findings.push(
                Finding::new(
                    FindingCode::KpiQueryInvalid,
                    Severity::Error,
                    subject,
                    format!("KPI {name} cannot be evaluated: {other}"),
                )
                .field("spec.indicator"),
            ),
        }
    }
    queries.sort_by(|a, b| a.kpi.cmp(&b.kpi));
    (findings, queries)
}
