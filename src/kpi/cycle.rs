//! One evaluation cycle: every KPI due is measured with as few Prometheus queries as possible.
//!
//! - Builtin indicators are grouped by signal family and window length: each group is one query
//!   broken down by touchpoint ([`super::batch`]), whatever the number of KPIs in it. A cycle of
//!   1,000 builtin KPIs over three windows is at most 5 families × 3 windows = 15 queries.
//! - Custom PromQL indicators cannot be merged: each is its value query plus its samples query.
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
use super::evaluate::{Measurement, SampleCount};
use super::prometheus::{PrometheusClient, QueryResult};
use super::promql::{CompiledKpi, compile};
use super::scope::QueryScope;
use super::window::WindowSpec;
use crate::api::ExperienceKPISpec;
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

enum Done {
    Family((Family, Duration), Result<FamilyTable, KpiError>),
    Custom(usize, Result<Measurement, KpiError>),
}

struct Group {
    range: String,
    namespaces: BTreeSet<String>,
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
    let mut groups: BTreeMap<(Family, Duration), Group> = BTreeMap::new();
    let mut customs: Vec<usize> = Vec::new();

    for (i, request) in requests.iter().enumerate() {
        let prepared = WindowSpec::parse(&request.spec.window).and_then(|window| {
            compile(request.spec, &request.scope, &window, now).map(|c| (window, c))
        });
        match prepared {
            Err(error) => results[i] = Some(Err(error)),
            Ok((window, kpi)) => {
                match kpi.indicator {
                    Some(indicator) => {
                        let group = groups
                            .entry((Family::of(indicator), window.duration(now)))
                            .or_insert_with(|| Group {
                                range: kpi.range.clone(),
                                namespaces: BTreeSet::new(),
                                members: Vec::new(),
                            });
                        group.namespaces.insert(request.scope.namespace.clone());
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
        let query = key.0.query(&namespaces, &group.range);
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
        http_queries += 1 + usize::from(kpi.samples.is_some());
        jobs.push(async move { Done::Custom(i, measure_one(client, kpi, now).await) }.boxed());
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
                    let measured = match (&table, compiled[i].as_ref().and_then(|c| c.indicator)) {
                        (Ok(table), Some(indicator)) => {
                            Ok(measure_builtin(indicator, &requests[i].scope, table))
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
/// samples query, concurrently.
pub async fn measure_one(
    client: &PrometheusClient,
    kpi: &CompiledKpi,
    now: Timestamp,
) -> Result<Measurement, KpiError> {
    let value = client.query_number(&kpi.value, now);
    let samples = async {
        match &kpi.samples {
            None => Ok(SampleCount::NotDefined),
            Some(query) => client.query_number(query, now).await.map(|n| match n {
                Some(n) => SampleCount::Counted(n),
                None => SampleCount::NoSeries,
            }),
        }
    };
    let (value, samples) = futures::join!(value, samples);
    Ok(Measurement {
        value: value?,
        samples: samples?,
    })
}
