//! What an experience map shows, computed from the analysed world: one grid per journey (stages ×
//! channels, touchpoints in their cells, KPIs under their stages) plus the problems to list. Pure:
//! the renderer draws only this, and tests assert on it without a picture.

use kube::ResourceExt;

use crate::api::{
    Direction, ExperienceKPI, KpiState, ReadinessBand, SelfAssessmentBand, Severity, Stage,
    Touchpoint,
};
use crate::core::analysis::collector_ready;
use crate::core::world::namespace_of;
use crate::core::{Finding, JourneyAssessment, World};

/// Everything one map file shows.
#[derive(Debug, Clone, PartialEq)]
pub struct MapDocument {
    /// Where the objects come from, in words (`manifests examples/retail`, `cluster context kind`).
    pub source: String,
    /// One map per journey, in namespace/name order.
    pub journeys: Vec<JourneyMap>,
    /// Problems not about one journey: refused objects, dangling references, unmeasurable KPIs.
    pub problems: Vec<Problem>,
}

impl MapDocument {
    /// Problems of one severity, on the whole map.
    pub fn count(&self, severity: Severity) -> usize {
        self.problems
            .iter()
            .chain(self.journeys.iter().flat_map(|j| j.problems.iter()))
            .filter(|p| p.severity == severity)
            .count()
    }
}

/// One problem to list on the map, already in the words `check` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// error or warning.
    pub severity: Severity,
    /// `schema` or a finding code.
    pub code: String,
    /// `file:line` when read from manifests.
    pub place: Option<String>,
    /// The sentence.
    pub message: String,
}

impl Problem {
    /// A finding as a problem line.
    pub fn from_finding(finding: &Finding) -> Self {
        Problem {
            severity: finding.severity,
            code: finding.code.as_str().to_string(),
            place: finding.origin.as_ref().map(ToString::to_string),
            message: finding.message.clone(),
        }
    }
}

/// The map of one journey.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyMap {
    /// Journey name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Who owns it.
    pub owner: Option<String>,
    /// Columns, in journey order.
    pub stages: Vec<StageColumn>,
    /// Rows, in name order.
    pub channels: Vec<ChannelRow>,
    /// `cells[channel][stage]`: the touchpoints there, by name.
    pub cells: Vec<Vec<Vec<TouchpointMark>>>,
    /// `kpis[stage]`: the KPIs measuring that stage, by name.
    pub kpis: Vec<Vec<KpiMark>>,
    /// KPIs reporting to the journey that measure none of its stages.
    pub unplaced_kpis: Vec<KpiMark>,
    /// Readiness score (0-100) and band.
    pub readiness: (i32, ReadinessBand),
    /// Self-assessment yes answers (of 25) and band.
    pub self_assessment: (i32, SelfAssessmentBand),
    /// Whether KPI states and collector readiness are known (from a cluster).
    pub statuses_known: bool,
    /// The journey's KPIs by state.
    pub kpi_counts: crate::api::KpiCounts,
    /// The journey's errors and warnings: broken rules, duplicates, coverage gaps it requires,
    /// contradicted self-assessment answers.
    pub problems: Vec<Problem>,
    /// What customers write about at each stage, when known (a live map with Prometheus):
    /// see [`with_themes`].
    pub themes: Option<StageThemes>,
}

/// The top themes of each stage of a journey over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct StageThemes {
    /// The window counted, as written (`28d`).
    pub window: String,
    /// `stages[stage]`: at most [`TOP_THEMES`] themes, most mentioned first; empty when the
    /// stage's comments mention no declared theme.
    pub stages: Vec<Vec<ThemeMark>>,
    /// `comments[stage]`: the comments written at the stage's touchpoints in the window.
    pub comments: Vec<f64>,
}

/// A theme at a stage: how many of the stage's comments mention it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThemeMark {
    /// The declared theme's name.
    pub name: String,
    /// Comments mentioning it.
    pub mentions: f64,
    /// Comments written at the stage (the share's denominator).
    pub comments: f64,
}

impl ThemeMark {
    /// Percentage of the stage's comments that mention the theme.
    pub fn share(&self) -> f64 {
        if self.comments > 0.0 {
            100.0 * self.mentions / self.comments
        } else {
            0.0
        }
    }
}

/// Most themes shown per stage.
pub const TOP_THEMES: usize = 3;

/// Comments and theme mentions per touchpoint over a window (from `cx_feedback_comments_total`
/// and `cx_feedback_themes_total`), keyed by `(namespace, touchpoint)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThemeCounts {
    /// The window counted, as written.
    pub window: String,
    /// Comments per touchpoint.
    pub comments: std::collections::BTreeMap<(String, String), f64>,
    /// Mentions per touchpoint and theme.
    pub mentions: std::collections::BTreeMap<(String, String), Vec<(String, f64)>>,
}

/// The two queries behind the themes row, over the namespace `namespace` (`None`: every
/// namespace) and `span`: comments per touchpoint, then mentions per touchpoint and theme, both
/// exact counts in the window as the KPIs read them ([`crate::kpi::promql::counted`]).
pub fn theme_queries(namespace: Option<&str>, span: &crate::kpi::window::Span) -> [String; 2] {
    use crate::kpi::promql::{COMMENTS, THEMES, counted, string_literal};
    let ns = match namespace {
        Some(ns) => format!("namespace={}", string_literal(ns)),
        None => "namespace!=\"\"".to_string(),
    };
    [
        format!(
            "sum by (namespace, touchpoint) ({})",
            counted(COMMENTS, &ns, span)
        ),
        format!(
            "sum by (namespace, touchpoint, theme) ({})",
            counted(THEMES, &ns, span)
        ),
    ]
}

/// The counts in the answers to [`theme_queries`]; a row without its labels, or with a value
/// that is not a finite count, is left out.
pub fn theme_counts(
    window: &str,
    comments: &[crate::kpi::prometheus::Sample],
    mentions: &[crate::kpi::prometheus::Sample],
) -> ThemeCounts {
    let mut counts = ThemeCounts {
        window: window.to_string(),
        ..ThemeCounts::default()
    };
    let key = |sample: &crate::kpi::prometheus::Sample| {
        Some((
            sample.labels.get("namespace")?.clone(),
            sample.labels.get("touchpoint")?.clone(),
        ))
    };
    for sample in comments.iter().filter(|s| s.value.is_finite()) {
        if let Some(key) = key(sample) {
            *counts.comments.entry(key).or_default() += sample.value;
        }
    }
    for sample in mentions.iter().filter(|s| s.value.is_finite()) {
        if let (Some(key), Some(theme)) = (key(sample), sample.labels.get("theme")) {
            counts
                .mentions
                .entry(key)
                .or_default()
                .push((theme.clone(), sample.value));
        }
    }
    counts
}

/// Each journey of `document` with the top themes of its stages: per stage, the comments of the
/// touchpoints in its cells summed, and the themes they mention most ([`TOP_THEMES`] at most,
/// ties by name), each with its share of those comments. A theme no comment mentions is not
/// shown.
pub fn with_themes(document: &mut MapDocument, counts: &ThemeCounts) {
    for journey in &mut document.journeys {
        let mut stages = Vec::with_capacity(journey.stages.len());
        let mut comments = Vec::with_capacity(journey.stages.len());
        for column in 0..journey.stages.len() {
            let mut names: Vec<&str> = journey
                .cells
                .iter()
                .filter_map(|row| row.get(column))
                .flatten()
                .map(|t| t.name.as_str())
                .collect();
            names.sort_unstable();
            names.dedup();
            let key = |name: &str| (journey.namespace.clone(), name.to_string());
            let written: f64 = names
                .iter()
                .filter_map(|n| counts.comments.get(&key(n)))
                .sum();
            let mut by_theme: std::collections::BTreeMap<&str, f64> = Default::default();
            for name in &names {
                for (theme, count) in counts.mentions.get(&key(name)).into_iter().flatten() {
                    *by_theme.entry(theme.as_str()).or_default() += count;
                }
            }
            let mut marks: Vec<ThemeMark> = by_theme
                .into_iter()
                .filter(|(_, mentions)| *mentions > 0.0)
                .map(|(name, mentions)| ThemeMark {
                    name: name.to_string(),
                    mentions,
                    comments: written,
                })
                .collect();
            marks.sort_by(|a, b| {
                b.mentions
                    .total_cmp(&a.mentions)
                    .then_with(|| a.name.cmp(&b.name))
            });
            marks.truncate(TOP_THEMES);
            stages.push(marks);
            comments.push(written);
        }
        journey.themes = Some(StageThemes {
            window: counts.window.clone(),
            stages,
            comments,
        });
    }
}

/// A stage column and its gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageColumn {
    /// The stage.
    pub stage: Stage,
    /// No touchpoint on any channel.
    pub no_touchpoint: bool,
    /// No touchpoint asks a survey question.
    pub no_listening: bool,
    /// No KPI measures it.
    pub no_kpi: bool,
    /// The journey requires a survey at every stage (`coverage.listeningPerStage`): a stage
    /// without one is a gap, otherwise only a fact.
    pub listening_required: bool,
    /// The journey requires a KPI at every stage (`coverage.kpiPerStage`).
    pub kpi_required: bool,
}

impl StageColumn {
    /// Whether the stage lacks something the journey requires (drawn cross-hatched): a stage
    /// without touchpoints always, a survey or a KPI only when the journey asks for one.
    pub fn is_gap(&self) -> bool {
        self.no_touchpoint
            || (self.no_listening && self.listening_required)
            || (self.no_kpi && self.kpi_required)
    }
}

/// A channel row, with what the consistency rules say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRow {
    /// Channel name.
    pub name: String,
    /// Its type (`web`, `voice`...).
    pub channel_type: String,
    /// Its display name.
    pub display_name: Option<String>,
    /// No touchpoint at the journey's stages.
    pub no_touchpoint: bool,
    /// Violations concerning this channel, with its value.
    pub violations: Vec<ChannelViolation>,
}

/// One broken rule as it concerns one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelViolation {
    /// The rule (`brand.voice equal`, `duplicate-touchpoint`).
    pub rule: String,
    /// error or warning.
    pub severity: Severity,
    /// The channel's value (`formal`, `<unset>`), or the duplicated touchpoints.
    pub value: String,
}

/// A touchpoint in its cell: what it listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TouchpointMark {
    /// Touchpoint name.
    pub name: String,
    /// Survey metrics asked (`csat`, `nps`, `csat/7` for a 7-point scale).
    pub surveys: Vec<String>,
    /// Interaction outcomes counted: the builtin ones, then the touchpoint's custom ones.
    pub outcomes: Vec<String>,
    /// Interaction timings measured.
    pub timings: Vec<String>,
    /// Whether its collector is paused.
    pub paused: bool,
    /// Collector readiness from the cluster; `None` offline.
    pub collector: Option<CollectorMark>,
}

/// A collector's readiness as its touchpoint's status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorMark {
    /// The Ready condition is True.
    pub ready: bool,
    /// Ready replicas.
    pub ready_replicas: i32,
    /// Desired replicas.
    pub replicas: i32,
}

/// A KPI under its stage, with its target and (from a cluster) where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiMark {
    /// KPI name.
    pub name: String,
    /// Builtin indicator or `promql`.
    pub indicator: String,
    /// The objective in words: `>= 85 (warn < 80)`.
    pub target: String,
    /// From the status; `None` offline.
    pub live: Option<KpiLive>,
}

/// A KPI's status.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiLive {
    /// Met, at-risk, breached, insufficient-data or unknown.
    pub state: KpiState,
    /// Last value.
    pub value: Option<f64>,
    /// Distance to target (positive is better).
    pub gap: Option<f64>,
    /// Samples in the window.
    pub samples: Option<i64>,
}

/// Builds the map of each assessed journey from the world it was assessed in.
pub fn journey_maps(world: &World, assessments: &[JourneyAssessment]) -> Vec<JourneyMap> {
    assessments
        .iter()
        .filter_map(|a| {
            let journey = world.journeys.iter().find(|j| {
                j.name_any() == a.journey.name && namespace_of(*j) == a.journey.namespace
            })?;
            Some(journey_map(world, journey, a))
        })
        .collect()
}

fn journey_map(
    world: &World,
    journey: &crate::api::CustomerJourney,
    assessment: &JourneyAssessment,
) -> JourneyMap {
    let ns = namespace_of(journey);
    let channel_idx = world.journey_channels(journey);
    let touchpoint_idx = world.journey_touchpoints(journey, &channel_idx);
    let kpi_idx = world.journey_kpis(journey, &touchpoint_idx);
    let coverage = &assessment.coverage;
    let stages: Vec<StageColumn> = journey
        .spec
        .stages
        .iter()
        .map(|&stage| StageColumn {
            stage,
            no_touchpoint: coverage.stages_without_touchpoints.contains(&stage),
            no_listening: coverage.stages_without_listening.contains(&stage),
            no_kpi: coverage.stages_without_kpis.contains(&stage),
            listening_required: journey.spec.coverage.listening_per_stage,
            kpi_required: journey.spec.coverage.kpi_per_stage,
        })
        .collect();
    let channel_names: Vec<String> = channel_idx
        .iter()
        .map(|&c| world.channels[c].name_any())
        .collect();
    let channels: Vec<ChannelRow> = channel_idx
        .iter()
        .map(|&c| {
            let channel = &world.channels[c];
            let name = channel.name_any();
            ChannelRow {
                violations: channel_violations(&name, assessment),
                no_touchpoint: coverage.channels_without_touchpoints.contains(&name),
                channel_type: channel.spec.channel_type.as_str().to_string(),
                display_name: channel.spec.display_name.clone(),
                name,
            }
        })
        .collect();
    let mut cells = vec![vec![Vec::new(); stages.len()]; channels.len()];
    for &t in &touchpoint_idx {
        let tp = &world.touchpoints[t];
        let row = channel_names.iter().position(|c| *c == tp.spec.channel);
        let column = stages.iter().position(|s| s.stage == tp.spec.stage);
        if let (Some(row), Some(column)) = (row, column) {
            cells[row][column].push(touchpoint_mark(tp, world.offline));
        }
    }
    for row in &mut cells {
        for cell in row {
            cell.sort_by(|a: &TouchpointMark, b| a.name.cmp(&b.name));
        }
    }
    let mut kpis = vec![Vec::new(); stages.len()];
    let mut unplaced_kpis = Vec::new();
    for &k in &kpi_idx {
        let mark = kpi_mark(&world.kpis[k], world.offline);
        let at = world.kpi_stages(k, &touchpoint_idx);
        if at.is_empty() {
            unplaced_kpis.push(mark);
            continue;
        }
        for (column, stage) in stages.iter().enumerate() {
            if at.contains(&stage.stage) {
                kpis[column].push(mark.clone());
            }
        }
    }
    for column in &mut kpis {
        column.sort_by(|a: &KpiMark, b| a.name.cmp(&b.name));
    }
    unplaced_kpis.sort_by(|a, b| a.name.cmp(&b.name));
    JourneyMap {
        name: journey.name_any(),
        namespace: ns.to_string(),
        owner: journey.spec.owner.clone(),
        stages,
        channels,
        cells,
        kpis,
        unplaced_kpis,
        readiness: (assessment.readiness.score, assessment.readiness.band),
        self_assessment: (
            assessment.self_assessment.score,
            assessment.self_assessment.band,
        ),
        statuses_known: assessment.statuses_known,
        kpi_counts: assessment.kpi_counts.clone(),
        problems: assessment
            .findings
            .iter()
            .map(Problem::from_finding)
            .collect(),
        themes: None,
    }
}

/// The violations that concern `channel`, each with the value the channel has. An `equal` rule
/// groups every channel by value: the channels of the one largest group are the norm, the others
/// deviate (with no single largest group, all are marked). A duplicate touchpoint's group is keyed
/// `<channel> at <stage>`: it concerns that channel.
fn channel_violations(channel: &str, assessment: &JourneyAssessment) -> Vec<ChannelViolation> {
    let mut found = Vec::new();
    for violation in &assessment.violations {
        let norm = violation
            .rule
            .ends_with(" equal")
            .then(|| largest_group(&violation.values))
            .flatten();
        for (value, members) in &violation.values {
            if norm == Some(value.as_str()) {
                continue;
            }
            let concerns = if violation.rule == "duplicate-touchpoint" {
                value.split(" at ").next() == Some(channel)
            } else {
                members.iter().any(|m| m == channel)
            };
            if concerns {
                let value = if violation.rule == "duplicate-touchpoint" {
                    members.join(" = ")
                } else {
                    value.clone()
                };
                found.push(ChannelViolation {
                    rule: violation.rule.clone(),
                    severity: violation.severity,
                    value,
                });
            }
        }
    }
    found
}

/// The key of the one group larger than every other, if there is one.
fn largest_group(groups: &std::collections::BTreeMap<String, Vec<String>>) -> Option<&str> {
    let most = groups.values().map(Vec::len).max()?;
    let mut largest = groups.iter().filter(|(_, members)| members.len() == most);
    let (key, _) = largest.next()?;
    largest.next().is_none().then_some(key.as_str())
}

fn touchpoint_mark(tp: &Touchpoint, offline: bool) -> TouchpointMark {
    let signals = &tp.spec.signals;
    let interactions = signals.interactions.clone().unwrap_or_default();
    TouchpointMark {
        name: tp.name_any(),
        surveys: signals
            .surveys
            .iter()
            .map(|s| match s.scale {
                Some(scale) => format!("{}/{scale}", s.metric.as_str()),
                None => s.metric.as_str().to_string(),
            })
            .collect(),
        outcomes: interactions.outcome_names().map(str::to_string).collect(),
        timings: interactions
            .timings
            .iter()
            .map(|t| t.as_str().to_string())
            .collect(),
        paused: tp.spec.paused,
        collector: (!offline).then(|| {
            let status = tp.status.as_ref().and_then(|s| s.collector.as_ref());
            CollectorMark {
                ready: collector_ready(tp),
                ready_replicas: status.map_or(0, |c| c.ready_replicas),
                replicas: status.map_or(tp.spec.collector.dedicated_replicas(), |c| c.replicas),
            }
        }),
    }
}

fn kpi_mark(kpi: &ExperienceKPI, offline: bool) -> KpiMark {
    let objective = &kpi.spec.objective;
    let (at, past) = match objective.direction {
        Direction::AtLeast => (">=", "<"),
        Direction::AtMost => ("<=", ">"),
    };
    let mut target = format!("{at} {}", number(objective.target));
    if let Some(warning) = objective.warning {
        target.push_str(&format!(" (warn {past} {})", number(warning)));
    }
    let indicator = match kpi.spec.indicator.builtin {
        Some(builtin) => builtin.as_str().to_string(),
        None => "promql".to_string(),
    };
    KpiMark {
        name: kpi.name_any(),
        indicator,
        target,
        live: (!offline).then(|| {
            let status = kpi.status.clone().unwrap_or_default();
            KpiLive {
                state: status.state.unwrap_or(KpiState::Unknown),
                value: status.value,
                gap: status.gap,
                samples: status.samples,
            }
        }),
    }
}

/// A number as people write it: `85`, `5.5`, `0.33`.
pub fn number(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded}")
    }
}
