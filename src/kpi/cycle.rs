//! One evaluation cycle: every KPI due is measured with as few Prometheus queries as possible.
//!
//! - Builtin indicators are grouped by signal family and window: each group is one query broken
//!   down by touchpoint ([`super::batch`]), for the current and the previous cycle at once,
//!   whatever the number of KPIs in it. A cycle of 1,000 builtin KPIs over three windows is at
//!   most 6 families × 3 windows = 18 queries.
//! - Custom PromQL indicators cannot be merged with each other: each is one query for its value
//!   and samples ([`CompiledKpi::combined`]) and one for its previous cycle, evaluated at the end
//!   of the previous window (a user's expression cannot be shifted with `offset` from outside).
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
use super::batch::{Family, FamilyTable, measure_builtin};
use super::evaluate::{Measurement, Reading, SampleCount};
use super::prometheus::{PrometheusClient, QueryResult, Sample};
use super::promql::{CompiledKpi, PART_LABEL, compile};
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
    /// Wall time of the cycle.
    pub elapsed: Duration,
}

/// A family query's identity: the family and both cycles' (length, offset).
type GroupKey = (Family, [Duration; 4]);

enum Done {
    Family(GroupKey, Result<FamilyTable, KpiError>),
    Custom(usize, Result<Measurement, KpiError>),
}

struct Group {
    current: Span,
    previous: Span,
    namespaces: BTreeSet<String>,
    /// The themes the members' theme-share KPIs name (comments family only).
    themes: BTreeSet<String>,
    /// Whether a member is a comment-rate KPI, the only one reading the answers (comments
    /// family only).
    answers: bool,
    members: Vec<usize>,
}

/// Measures every KPI of `requests` at `now` (see the module documentation). Never fails as a
/// whole: each KPI gets its own result, and a failed group query is the error of its members.
pub async fn measure_cycle(
    client: &PrometheusClient,
    requests: &[KpiRequest<'_>],
    now: Timestamp,
) -> CycleReport {
    let started = Instant::now();
    let mut results: Vec<Option<Result<Measurement, KpiError>>> = vec![None; requests.len()];
    let mut compiled: Vec<Option<CompiledKpi>> = vec![None; requests.len()];
    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    let mut customs: Vec<usize> = Vec::new();

    for (i, request) in requests.iter().enumerate() {
        let prepared =
            WindowSpec::parse_in(&request.spec.window, request.spec.time_zone.as_deref()).and_then(
                |window| compile(request.spec, &request.scope, &window, now).map(|c| (window, c)),
            );
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
                        let group = groups.entry(key).or_insert_with(|| Group {
                            current,
                            previous,
                            namespaces: BTreeSet::new(),
                            themes: BTreeSet::new(),
                            answers: false,
                            members: Vec::new(),
                        });
                        group.namespaces.insert(request.scope.namespace.clone());
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

    let mut http_queries = groups.len();
    let mut jobs: Vec<BoxFuture<'_, Done>> = Vec::new();
    for (&key, group) in &groups {
        let namespaces: Vec<&str> = group.namespaces.iter().map(String::as_str).collect();
        let themes: Vec<&str> = group.themes.iter().map(String::as_str).collect();
        let query = key.0.query(
            &namespaces,
            &themes,
            group.answers,
            &group.current,
            &group.previous,
        );
        jobs.push(
            async move {
                let table = match client.query(&query, now).await {
                    Ok(QueryResult::Vector(samples)) => FamilyTable::from_samples(key.0, samples),
                    Ok(QueryResult::Scalar(_)) => Err(KpiError::UnexpectedResult(
                        "a family query returned a scalar".into(),
                    )),
                    Err(error) => Err(error),
                };
                Done::Family(key, table)
            }
            .boxed(),
        );
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
    for outcome in done {
        match outcome {
            Done::Custom(i, measured) => results[i] = Some(measured),
            Done::Family(key, table) => {
                let Some(group) = groups.get(&key) else {
                    continue;
                };
                for &i in &group.members {
                    let measure = compiled[i].as_ref().and_then(|c| c.indicator.as_ref());
                    let measured = match (&table, measure) {
                        (Ok(table), Some(measure)) => {
                            Ok(measure_builtin(measure, &requests[i].scope, table))
                        }
                        (Err(error), _) => Err(error.clone()),
                        (Ok(_), None) => Err(KpiError::UnexpectedResult(
                            "a custom KPI in a builtin group (a bug)".into(),
                        )),
                    };
                    results[i] = Some(measured);
                }
            }
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
        elapsed: started.elapsed(),
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
