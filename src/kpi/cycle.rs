//! One evaluation cycle: every KPI due is measured with as few Prometheus queries as possible.
//!
//! - Builtin indicators are grouped by signal family and window: each group is one query broken
//!   down by touchpoint ([`super::batch`]), for the current and the previous cycle at once,
//!   whatever the number of KPIs in it. A cycle of 1,000 builtin KPIs over three windows is at
//!   most 6 families × 3 windows = 18 queries.
//! - Custom PromQL indicators cannot be merged with each other: each is one query for its value
//!   and samples ([`CompiledKpi::combined`]) and one for its previous cycle, evaluated at the end
//!   of the previous window (a user's expression cannot be shifted with `offset` from outside).
//! - A group over more than [`MAX_TOUCHPOINTS_PER_QUERY`] touchpoints is split into several
//!   queries ([`split`]), so none reads more than a bounded number of series, whatever the
//!   organisation's size; their rows are merged before the KPIs are computed.
//! - Before them, one query asks how many 5-minute steps of every window the recorded increments
//!   hold per namespace ([`super::recording::coverage_query`]): a family query reads a
//!   namespace's recorded increments over a cycle whose window they cover whole, its raw
//!   counters otherwise, and each builtin KPI's measurement says which ([`CountSources`]).
//! - All of them run concurrently, at most [`PrometheusClient::concurrency`] at a time, at one
//!   evaluation time (`now`), so every KPI of a cycle sees the same instant.
//!
//! [`measure_one`] measures a single KPI with its own compiled queries: the path for a
//! one-off evaluation, and the reference the batched path is tested against.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};
use futures::stream::{self, StreamExt};
use k8s_openapi::jiff::Timestamp;

use super::KpiError;
use super::batch::{CycleCounting, Family, FamilyTable, measure_builtin};
use super::evaluate::{CountSource, CountSources, Measurement, Reading, SampleCount};
use super::prometheus::{PrometheusClient, QueryResult, Sample};
use super::promql::{CompiledKpi, Counting, HourParts, PART_LABEL, RangeEnds, compile};
use super::recording::{
    RANGE_ENDS_ROW, SPAN_LABEL, coverage_query, hours_row, range_ends, steps_in,
};
use super::scope::QueryScope;
use super::window::{Span, WindowSpec};
use crate::api::{BuiltinIndicator, ExperienceKPISpec};
use crate::core::World;

/// A KPI to measure: its spec and its resolved scope.
#[derive(Clone, Debug)]
pub struct KpiRequest<'a> {
    /// The KPI's spec.
    pub spec: &'a ExperienceKPISpec,
    /// The touchpoints it covers ([`QueryScope::resolve`]).
    pub scope: QueryScope,
}

impl<'a> KpiRequest<'a> {
    /// A request for every KPI of the world, in the world's order.
    pub fn all(world: &World<'a>) -> Vec<KpiRequest<'a>> {
        (0..world.kpis.len())
            .map(|k| KpiRequest {
                spec: &world.kpis[k].spec,
                scope: QueryScope::resolve(world, k),
            })
            .collect()
    }
}

/// What a cycle measured.
#[derive(Clone, Debug)]
pub struct CycleReport {
    /// One result per request, in the requests' order.
    pub results: Vec<Result<Measurement, KpiError>>,
    /// The queries each KPI compiled to (`None` when it did not compile: see its result), for
    /// display and debugging — the batched path computes the same numbers.
    pub compiled: Vec<Option<CompiledKpi>>,
    /// HTTP queries sent to Prometheus.
    pub http_queries: usize,
    /// The family queries sent, in the order of their groups: what the builtin KPIs cost
    /// Prometheus, for debugging and for the benchmarks.
    pub family_queries: Vec<String>,
    /// Family query parts whose previous cycle, a finished calendar period, was kept from an
    /// earlier cycle instead of read again.
    pub finished_periods_reused: usize,
    /// Wall time of the cycle.
    pub elapsed: Duration,
}

/// A window's identity: its (length, offset).
type SpanKey = (Duration, Duration);

/// A family query's identity: the family and both cycles' (length, offset).
type GroupKey = (Family, [Duration; 4]);

/// The most touchpoints one family query reads: a group over more is split into several queries
/// (whole namespaces together while they fit, a larger namespace by touchpoint), so no query
/// reads more than this many touchpoints' series over its window, whatever the organisation's
/// size. At 28 days and the recorded increments, a touchpoint's survey family is about 11
/// series × 8,064 steps per cycle.
pub const MAX_TOUCHPOINTS_PER_QUERY: usize = 100;

enum Done {
    /// A family query part's answer, with its finished previous period (when it is one) and
    /// that period's rows when they were kept from an earlier cycle.
    Family(
        GroupKey,
        Result<FamilyTable, KpiError>,
        Option<PeriodKey>,
        Option<FamilyTable>,
    ),
    Custom(usize, Result<Measurement, KpiError>),
}

struct Group {
    current: Span,
    previous: Span,
    /// A calendar window: its previous cycle is a fixed period, kept once finished.
    calendar: bool,
    namespaces: BTreeSet<String>,
    /// The touchpoints the members read, by namespace.
    touchpoints: BTreeMap<String, BTreeSet<String>>,
    /// The themes the members' theme-share KPIs name (comments family only).
    themes: BTreeSet<String>,
    /// Whether a member is a comment-rate KPI, the only one reading the answers (comments
    /// family only).
    answers: bool,
    members: Vec<usize>,
}

/// How long after a period ends its figures are taken as final: every answer in it has been
/// scraped (one scrape interval) and its last 5-minute step recorded.
pub const FINISHED_AFTER: Duration = Duration::from_secs(600);
/// How long a finished period is kept after it ends: past two quarters it is nobody's previous
/// cycle.
pub const KEPT_FOR: Duration = Duration::from_secs(200 * 86_400);

/// The previous-cycle rows of finished calendar periods (last month, last quarter), read once
/// and kept between cycles: a month-long period is not re-read every 5 minutes for figures
/// that no longer change. Periods that ended over [`KEPT_FOR`] ago are dropped.
#[derive(Default)]
pub struct FinishedPeriods {
    kept: BTreeMap<PeriodKey, FamilyTable>,
}

/// A family query part's previous cycle: family, period (start and end, Unix seconds), the
/// part's namespaces and touchpoints, and the themes read.
type PeriodKey = (Family, i64, i64, Vec<String>, Vec<String>, Vec<String>);

impl FinishedPeriods {
    /// How many periods are kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

/// Measures every KPI of `requests` at `now` (see the module documentation). Never fails as a
/// whole: each KPI gets its own result, and a failed group query is the error of its members.
pub async fn measure_cycle(
    client: &PrometheusClient,
    requests: &[KpiRequest<'_>],
    now: Timestamp,
) -> CycleReport {
    measure_cycle_keeping(client, requests, now, &mut FinishedPeriods::default()).await
}

/// [`measure_cycle`], reading finished calendar periods from `periods` (and keeping the ones
/// it reads there): the operator's loop keeps one across cycles.
pub async fn measure_cycle_keeping(
    client: &PrometheusClient,
    requests: &[KpiRequest<'_>],
    now: Timestamp,
    periods: &mut FinishedPeriods,
) -> CycleReport {
    let started = Instant::now();
    let mut results: Vec<Option<Result<Measurement, KpiError>>> = vec![None; requests.len()];
    let mut compiled: Vec<Option<CompiledKpi>> = vec![None; requests.len()];
    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    let mut customs: Vec<usize> = Vec::new();

    for (i, request) in requests.iter().enumerate() {
        let prepared = WindowSpec::parse_in(
            &request.spec.window,
            request.spec.time_zone.as_deref(),
        )
        .and_then(|window| {
            compile(request.spec, &request.scope, &window, now, Counting::Raw).map(|c| (window, c))
        });
        match prepared {
            Err(error) => results[i] = Some(Err(error)),
            Ok((window, kpi)) => {
                match &kpi.indicator {
                    Some(measure) => {
                        let (current, previous) = (window.current(now), window.previous(now));
                        let key = (
                            Family::of(measure),
                            [
                                current.length,
                                current.offset,
                                previous.length,
                                previous.offset,
                            ],
                        );
                        let calendar = !matches!(window, WindowSpec::Rolling { .. });
                        let group = groups.entry(key).or_insert_with(|| Group {
                            current,
                            previous,
                            calendar,
                            namespaces: BTreeSet::new(),
                            touchpoints: BTreeMap::new(),
                            themes: BTreeSet::new(),
                            answers: false,
                            members: Vec::new(),
                        });
                        group.namespaces.insert(request.scope.namespace.clone());
                        group
                            .touchpoints
                            .entry(request.scope.namespace.clone())
                            .or_default()
                            .extend(kpi.touchpoints.iter().cloned());
                        group.themes.extend(measure.theme.iter().cloned());
                        group.answers |= measure.indicator == BuiltinIndicator::CommentRate;
                        group.members.push(i);
                    }
                    None => customs.push(i),
                }
                compiled[i] = Some(kpi);
            }
        }
    }

    let coverage = if groups.is_empty() {
        Coverage::default()
    } else {
        Coverage::read(client, &groups, now).await
    };
    let mut http_queries = usize::from(!groups.is_empty());
    let mut jobs: Vec<BoxFuture<'_, Done>> = Vec::new();
    let mut kept: BTreeMap<PeriodKey, FamilyTable> = BTreeMap::new();
    let mut reused = 0;
    let mut family_queries = Vec::new();
    for (&key, group) in &groups {
        let themes: Vec<&str> = group.themes.iter().map(String::as_str).collect();
        for (namespaces, touchpoints) in split(&group.touchpoints, MAX_TOUCHPOINTS_PER_QUERY) {
            let period = finished_period(group, now).map(|(start, end)| {
                (
                    key.0,
                    start,
                    end,
                    namespaces.clone(),
                    touchpoints.clone(),
                    group.themes.iter().cloned().collect::<Vec<_>>(),
                )
            });
            let known = period.as_ref().and_then(|p| periods.kept.get(p).cloned());
            reused += usize::from(known.is_some());
            let namespaces: BTreeSet<String> = namespaces.into_iter().collect();
            let current = coverage.counting(&group.current, &namespaces);
            let previous = coverage.counting(&group.previous, &namespaces);
            let query = key.0.query(
                &themes,
                group.answers,
                &touchpoints,
                (&group.current, &current),
                known.is_none().then_some((&group.previous, &previous)),
            );
            http_queries += 1;
            family_queries.push(query.clone());
            jobs.push(
                async move {
                    let table = match client.query(&query, now).await {
                        Ok(QueryResult::Vector(samples)) => {
                            FamilyTable::from_samples(key.0, samples)
                        }
                        Ok(QueryResult::Scalar(_)) => Err(KpiError::UnexpectedResult(
                            "a family query returned a scalar".into(),
                        )),
                        Err(error) => Err(error),
                    };
                    Done::Family(key, table, period, known)
                }
                .boxed(),
            );
        }
    }
    for &i in &customs {
        let Some(kpi) = compiled[i].as_ref() else {
            continue;
        };
        http_queries += 2;
        jobs.push(async move { Done::Custom(i, measure_custom(client, kpi, now).await) }.boxed());
    }

    let done: Vec<Done> = stream::iter(jobs)
        .buffer_unordered(client.concurrency())
        .collect()
        .await;
    // A group's parts, merged: any part failing fails the group.
    let mut tables: BTreeMap<GroupKey, Result<FamilyTable, KpiError>> = BTreeMap::new();
    for outcome in done {
        match outcome {
            Done::Custom(i, measured) => results[i] = Some(measured),
            Done::Family(key, mut part, period, known) => {
                if let Ok(table) = &mut part {
                    match (known, period) {
                        (Some(previous), _) => table.merge(previous),
                        (None, Some(period)) => {
                            kept.insert(period, table.previous_cycle());
                        }
                        (None, None) => {}
                    }
                }
                match (tables.remove(&key), part) {
                    (None, part) => {
                        tables.insert(key, part);
                    }
                    (Some(Ok(mut table)), Ok(part)) => {
                        table.merge(part);
                        tables.insert(key, Ok(table));
                    }
                    (Some(Err(error)), _) | (Some(Ok(_)), Err(error)) => {
                        tables.insert(key, Err(error));
                    }
                }
            }
        }
    }
    // Periods more than two quarters old are no longer anyone's previous cycle.
    let oldest = now.as_second() - KEPT_FOR.as_secs() as i64;
    periods.kept.retain(|period, _| period.2 > oldest);
    periods.kept.extend(kept);
    for (key, table) in tables {
        let Some(group) = groups.get(&key) else {
            continue;
        };
        for &i in &group.members {
            let measure = compiled[i].as_ref().and_then(|c| c.indicator.as_ref());
            let measured = match (&table, measure) {
                (Ok(table), Some(measure)) => {
                    let namespace = &requests[i].scope.namespace;
                    Ok(Measurement {
                        sources: Some(CountSources {
                            current: coverage.source(&group.current, namespace),
                            previous: coverage.source(&group.previous, namespace),
                        }),
                        ..measure_builtin(measure, &requests[i].scope, table)
                    })
                }
                (Err(error), _) => Err(error.clone()),
                (Ok(_), None) => Err(KpiError::UnexpectedResult(
                    "a custom KPI in a builtin group (a bug)".into(),
                )),
            };
            results[i] = Some(measured);
        }
    }

    CycleReport {
        results: results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(KpiError::UnexpectedResult(
                        "the KPI was not measured (a bug)".into(),
                    ))
                })
            })
            .collect(),
        compiled,
        http_queries,
        family_queries,
        finished_periods_reused: reused,
        elapsed: started.elapsed(),
    }
}

/// A calendar group's previous period (start and end, Unix seconds) once it is finished
/// ([`FINISHED_AFTER`]); `None` for rolling windows, whose previous cycle moves with every
/// evaluation.
fn finished_period(group: &Group, now: Timestamp) -> Option<(i64, i64)> {
    if !group.calendar || group.previous.offset < FINISHED_AFTER {
        return None;
    }
    let end = now.as_second() - group.previous.offset.as_secs() as i64;
    Some((end - group.previous.length.as_secs() as i64, end))
}

/// The queries a group is split into: (namespaces, touchpoints) pairs, the touchpoints empty
/// for whole namespaces. Every touchpoint of `touchpoints` (by namespace) is in exactly one
/// part; a part holds at most `bound` of them, whole namespaces together while they fit, a
/// namespace holding more split by touchpoint name. A group within the bound is one query over
/// its namespaces.
pub fn split(
    touchpoints: &BTreeMap<String, BTreeSet<String>>,
    bound: usize,
) -> Vec<(Vec<String>, Vec<String>)> {
    let bound = bound.max(1);
    let mut parts = Vec::new();
    let mut whole: (Vec<String>, usize) = (Vec::new(), 0);
    for (namespace, names) in touchpoints {
        if names.len() > bound {
            let names: Vec<&String> = names.iter().collect();
            for chunk in names.chunks(bound) {
                parts.push((
                    vec![namespace.clone()],
                    chunk.iter().map(|n| (*n).clone()).collect(),
                ));
            }
            continue;
        }
        if whole.1 + names.len() > bound && !whole.0.is_empty() {
            parts.push((std::mem::take(&mut whole.0), Vec::new()));
            whole.1 = 0;
        }
        whole.0.push(namespace.clone());
        whole.1 += names.len();
    }
    if !whole.0.is_empty() {
        parts.push((whole.0, Vec::new()));
    }
    parts
}

/// How many 5-minute steps of each window the recorded increments hold, per namespace
/// ([`coverage_query`]): a cycle reads the recorded increments of a namespace over a window only
/// when every step of it is recorded, the raw counters otherwise.
#[derive(Default)]
struct Coverage {
    /// Steps recorded, by window (length, offset) and namespace; `None` when Prometheus did not
    /// answer the coverage query.
    steps: Option<BTreeMap<(SpanKey, String), f64>>,
    /// Which ends of a range the server includes (the recorded steps of consecutive windows
    /// must each be counted once), from the same query.
    ends: Option<RangeEnds>,
    /// The hourly sums each window holds, by window.
    hour_parts: BTreeMap<SpanKey, HourParts>,
    /// Hourly sums recorded, by window and namespace, from the same query.
    hours: BTreeMap<(SpanKey, String), f64>,
}

impl Coverage {
    /// Asks Prometheus, in one query, for every window of `groups` and every namespace in them.
    async fn read(
        client: &PrometheusClient,
        groups: &BTreeMap<GroupKey, Group>,
        now: Timestamp,
    ) -> Coverage {
        let mut spans: BTreeMap<SpanKey, &Span> = BTreeMap::new();
        let mut namespaces: BTreeSet<&str> = BTreeSet::new();
        for group in groups.values() {
            for span in [&group.current, &group.previous] {
                spans.insert((span.length, span.offset), span);
            }
            namespaces.extend(group.namespaces.iter().map(String::as_str));
        }
        let keys: Vec<SpanKey> = spans.keys().copied().collect();
        let spans: Vec<Span> = spans.into_values().cloned().collect();
        let parts: Vec<Option<HourParts>> = spans
            .iter()
            .map(|span| HourParts::of(span, now.as_millisecond()))
            .collect();
        let namespaces: Vec<&str> = namespaces.into_iter().collect();
        let rows = match client
            .query(&coverage_query(&namespaces, &spans, &parts), now)
            .await
        {
            Ok(QueryResult::Vector(rows)) => rows,
            Ok(QueryResult::Scalar(_)) => return Coverage::default(),
            Err(error) => {
                tracing::debug!(%error, "cannot count the recorded steps; counting from raw counters");
                return Coverage::default();
            }
        };
        let ends = rows
            .iter()
            .find(|row| row.labels.get(SPAN_LABEL).map(String::as_str) == Some(RANGE_ENDS_ROW))
            .and_then(|row| range_ends(row.value));
        let mut hours = BTreeMap::new();
        if let Some(ends) = ends {
            for (i, key) in keys.iter().enumerate() {
                let row_name = hours_row(i, ends);
                for row in &rows {
                    if row.labels.get(SPAN_LABEL) == Some(&row_name)
                        && let Some(namespace) = row.labels.get("namespace")
                    {
                        hours.insert((*key, namespace.clone()), row.value);
                    }
                }
            }
        }
        let steps = Some(
            rows.into_iter()
                .filter_map(|row| {
                    let span = row.labels.get(SPAN_LABEL)?.parse::<usize>().ok()?;
                    let key = *keys.get(span)?;
                    Some(((key, row.labels.get("namespace")?.clone()), row.value))
                })
                .collect(),
        );
        let hour_parts = keys
            .into_iter()
            .zip(parts)
            .filter_map(|(key, parts)| Some((key, parts?)))
            .collect();
        Coverage {
            steps,
            ends,
            hour_parts,
            hours,
        }
    }

    /// Where `namespace`'s counts over `span` come from.
    fn source(&self, span: &Span, namespace: &str) -> CountSource {
        let Some(steps) = &self.steps else {
            return CountSource::CoverageUnknown;
        };
        let needed = steps_in(span.length);
        match steps.get(&((span.length, span.offset), namespace.to_owned())) {
            None => CountSource::NotRecorded,
            Some(&recorded) if needed > 0 && recorded >= needed as f64 => CountSource::Recorded,
            Some(&recorded) if recorded > 0.0 => CountSource::PartlyRecorded,
            Some(_) => CountSource::NotRecorded,
        }
    }

    /// Which of `namespaces` read recorded increments over `span`.
    fn counting(&self, span: &Span, namespaces: &BTreeSet<String>) -> CycleCounting {
        let key = (span.length, span.offset);
        let hour_parts = self
            .hour_parts
            .get(&key)
            .copied()
            .filter(|_| self.ends.is_some());
        let mut counting = CycleCounting {
            ends: self.ends,
            hour_parts,
            ..CycleCounting::default()
        };
        for namespace in namespaces {
            let hours_whole = hour_parts.is_some_and(|parts| {
                self.hours
                    .get(&(key, namespace.clone()))
                    // Not more either: an hour summed twice (the group's evaluation offset
                    // moved, its file renamed) would be counted twice.
                    .is_some_and(|&hours| hours == parts.hours() as f64)
            });
            match self.source(span, namespace) {
                CountSource::Recorded if hours_whole => counting.hours.push(namespace.clone()),
                CountSource::Recorded => counting.recorded.push(namespace.clone()),
                _ => counting.raw.push(namespace.clone()),
            }
        }
        counting
    }
}

/// Measures one KPI with its own compiled queries: the value query and, when there is one, the
/// samples query, for the current and the previous cycle, concurrently (up to four queries: the
/// reference the batched path is tested against, and what a user can paste into Prometheus).
pub async fn measure_one(
    client: &PrometheusClient,
    kpi: &CompiledKpi,
    now: Timestamp,
) -> Result<Measurement, KpiError> {
    let before = earlier(now, kpi.previous.evaluated_before);
    let (current, previous) = futures::join!(
        read_one(client, &kpi.value, kpi.samples.as_deref(), now),
        read_one(
            client,
            &kpi.previous.value,
            kpi.previous.samples.as_deref(),
            before
        ),
    );
    let current = current?;
    Ok(Measurement {
        value: current.value,
        samples: current.samples,
        previous: previous.ok(),
        sources: None,
    })
}

async fn read_one(
    client: &PrometheusClient,
    value: &str,
    samples: Option<&str>,
    at: Timestamp,
) -> Result<Reading, KpiError> {
    let value_answer = client.query_number(value, at);
    let samples_answer = async {
        match samples {
            None => Ok(SampleCount::NotDefined),
            Some(query) => client.query_number(query, at).await.map(|n| match n {
                Some(n) => SampleCount::Counted(n),
                None => SampleCount::NoSeries,
            }),
        }
    };
    let (value, samples) = futures::join!(value_answer, samples_answer);
    Ok(Reading {
        value: value?,
        samples: samples?,
    })
}

/// Measures a custom KPI with two queries: its [`CompiledKpi::combined`] query now, and the
/// previous cycle's at the end of the previous window. A previous cycle that cannot be measured
/// leaves the current measurement standing (`previous: None`).
pub async fn measure_custom(
    client: &PrometheusClient,
    kpi: &CompiledKpi,
    now: Timestamp,
) -> Result<Measurement, KpiError> {
    let (Some(current), Some(previous)) = (&kpi.combined, &kpi.previous.combined) else {
        return measure_one(client, kpi, now).await;
    };
    let before = earlier(now, kpi.previous.evaluated_before);
    let has_samples = kpi.samples.is_some();
    let (current, previous) =
        futures::join!(client.query(current, now), client.query(previous, before));
    let current = read_parts(current?, has_samples)?;
    Ok(Measurement {
        value: current.value,
        samples: current.samples,
        previous: previous.and_then(|p| read_parts(p, has_samples)).ok(),
        sources: None,
    })
}

/// `now` minus `duration` (`now` itself if that is out of range).
fn earlier(now: Timestamp, duration: Duration) -> Timestamp {
    now.checked_sub(duration).unwrap_or(now)
}

/// The value and samples of a combined custom query's answer: each part must be at most one
/// series; several are a [`KpiError::SeveralSeries`] naming the field.
pub fn read_parts(answer: QueryResult, has_samples: bool) -> Result<Reading, KpiError> {
    let QueryResult::Vector(rows) = answer else {
        return Err(KpiError::UnexpectedResult(
            "a combined custom query returned a scalar".into(),
        ));
    };
    let (mut values, mut samples): (Vec<Sample>, Vec<Sample>) = (Vec::new(), Vec::new());
    for mut row in rows {
        match row.labels.remove(PART_LABEL).as_deref() {
            Some("value") => values.push(row),
            Some("samples") => samples.push(row),
            other => {
                return Err(KpiError::UnexpectedResult(format!(
                    "a combined custom query returned a series with {PART_LABEL}={other:?}"
                )));
            }
        }
    }
    let one = |rows: Vec<Sample>, field: &'static str| -> Result<Option<f64>, KpiError> {
        match rows.as_slice() {
            [] => Ok(None),
            [only] => Ok(Some(only.value)),
            several => {
                // Named in label order, not in the server's answer order (which differs between
                // Prometheus versions and evaluations): the message goes into status, and the
                // same answer must write the same status.
                let mut named: Vec<String> = several
                    .iter()
                    .map(|s| {
                        let pairs: Vec<String> =
                            s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                        format!("{{{}}}", pairs.join(", "))
                    })
                    .collect();
                named.sort();
                named.truncate(3);
                Err(KpiError::SeveralSeries {
                    field,
                    count: several.len(),
                    labels: named.join(", "),
                })
            }
        }
    };
    let value = one(values, "promql")?;
    let samples = match (has_samples, one(samples, "samplesPromql")?) {
        (false, _) => SampleCount::NotDefined,
        (true, None) => SampleCount::NoSeries,
        (true, Some(n)) => SampleCount::Counted(n),
    };
    Ok(Reading { value, samples })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn organisation(sizes: &[(&str, usize)]) -> BTreeMap<String, BTreeSet<String>> {
        sizes
            .iter()
            .map(|(ns, n)| {
                (
                    (*ns).to_owned(),
                    (0..*n).map(|t| format!("tp-{t:03}")).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn family_queries_are_split_so_none_reads_more_than_the_bound() {
        // Within the bound: one query over every namespace.
        assert_eq!(
            split(&organisation(&[("a", 30), ("b", 40)]), 100),
            vec![(vec!["a".to_owned(), "b".to_owned()], vec![])]
        );
        // Whole namespaces together while they fit; a larger one by touchpoint.
        let parts = split(
            &organisation(&[("a", 60), ("b", 50), ("big", 250), ("c", 10)]),
            100,
        );
        let shape: Vec<(Vec<&str>, usize)> = parts
            .iter()
            .map(|(ns, tps)| (ns.iter().map(String::as_str).collect(), tps.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (vec!["a"], 0),
                (vec!["big"], 100),
                (vec!["big"], 100),
                (vec!["big"], 50),
                (vec!["b", "c"], 0),
            ]
        );
        // Every touchpoint of the large namespace in exactly one part.
        let big: Vec<&String> = parts
            .iter()
            .filter(|(ns, _)| ns == &["big"])
            .flat_map(|(_, t)| t)
            .collect();
        assert_eq!(big.len(), 250);
        assert_eq!(big.iter().collect::<BTreeSet<_>>().len(), 250);
    }
}
