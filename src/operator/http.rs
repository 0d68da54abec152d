//! The operator's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use super::context::Stores;
use super::metrics::Metrics;

/// What the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    /// Metrics to encode.
    pub metrics: Arc<Metrics>,
    /// The caches, while this replica leads (gauges are derived from them at scrape time).
    pub stores: watch::Receiver<Option<Stores>>,
}

/// The router of the operator's endpoints.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Ready only while this replica runs the controllers on synced caches: a standby replica (or
/// one still listing the cluster) answers 503, so the metrics Service routes to the leader.
async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.stores.borrow().is_some() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "standby: not leading, or caches not synced yet",
        )
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let stores = state.stores.borrow().clone();
    if let Some(stores) = stores {
        refresh_gauges(&state.metrics, &stores);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
}

/// Sets the journey and touchpoint gauges from the cached statuses; deleted objects disappear
/// because every gauge is rebuilt from what exists.
pub fn refresh_gauges(metrics: &Metrics, stores: &Stores) {
    metrics.collector_ready.reset();
    let touchpoints = stores.touchpoints.state();
    for tp in touchpoints.iter().filter_map(|g| g.0.as_ref().ok()) {
        let ready = crate::core::analysis::collector_ready(tp);
        metrics
            .collector_ready
            .with_label_values(&[
                tp.metadata.namespace.as_deref().unwrap_or_default(),
                tp.metadata.name.as_deref().unwrap_or_default(),
                tp.spec.channel.as_str(),
                tp.spec.stage.as_str(),
            ])
            .set(if ready { 1.0 } else { 0.0 });
    }
    metrics.consistency_violations.reset();
    metrics.coverage_gaps.reset();
    metrics.readiness_score.reset();
    metrics.self_assessment_score.reset();
    let journeys = stores.journeys.state();
    for journey in journeys.iter().filter_map(|g| g.0.as_ref().ok()) {
        let Some(status) = &journey.status else {
            continue;
        };
        let ns = journey.metadata.namespace.as_deref().unwrap_or_default();
        let name = journey.metadata.name.as_deref().unwrap_or_default();
        metrics
            .consistency_violations
            .with_label_values(&[ns, name])
            .set(f64::from(status.violation_count));
        for (kind, n) in
            crate::core::analysis::coverage_gap_counts(&journey.spec.coverage, &status.coverage)
        {
            metrics
                .coverage_gaps
                .with_label_values(&[ns, name, kind])
                .set(n as f64);
        }
        if let Some(readiness) = &status.readiness {
            metrics
                .readiness_score
                .with_label_values(&[ns, name])
                .set(f64::from(readiness.score));
        }
        if let Some(assessment) = &status.self_assessment {
            metrics
                .self_assessment_score
                .with_label_values(&[ns, name])
                .set(f64::from(assessment.score));
        }
    }
}
