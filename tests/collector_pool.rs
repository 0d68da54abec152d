//! A collector pool: one process serving several touchpoints of a namespace, each validated
//! against its own signals, counted under its own labels, with its own token, and reconfigured
//! from its file while serving, without a counter reset.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use cx_conductor::collector::config::CollectorSetup;
use cx_conductor::collector::{Collector, Drained, ServeOptions};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NPS_9: &str = r#"{"type":"survey","metric":"nps","score":9}"#;
const CSAT_4: &str = r#"{"type":"survey","metric":"csat","score":4}"#;

fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A pool of `web-checkout` (nps), `store-till` (csat, token `till-token`) and `extra` entries.
fn pool_yaml(extra: &str) -> String {
    format!(
        r#"
namespace: retail
touchpoints:
- {{namespace: retail, touchpoint: web-checkout, channel: web, stage: purchase, surveys: [{{metric: nps}}], maxEventBytes: 1024}}
- {{namespace: retail, touchpoint: store-till, channel: store, stage: purchase, surveys: [{{metric: csat}}], maxEventBytes: 1024, authTokenSha256: "{}"}}
{extra}"#,
        token_digest("till-token")
    )
}

struct Pool {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Drained>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Pool {
    async fn start(file: &Path) -> Pool {
        let setup = cx_conductor::collector::load_setup(file).expect("a pool configuration");
        assert!(matches!(setup, CollectorSetup::Pool(_)));
        let collector = Collector::with_setup(&setup, ServeOptions::default())
            .expect("pool starts")
            .reloading_from(file.to_path_buf(), Duration::from_millis(100));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(collector.serve(listener, async {
            let _ = stopped.await;
        }));
        Pool {
            addr,
            stop: Some(stop),
            served,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let response = self.client.request(request).await.expect("answered");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn event(
        &self,
        touchpoint: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, String) {
        self.send(
            Method::POST,
            &format!("/v1/touchpoints/{touchpoint}/events"),
            token,
            body,
        )
        .await
    }

    async fn metrics(&self) -> String {
        self.send(Method::GET, "/metrics", None, "").await.1
    }

    async fn stop(mut self) -> Drained {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.served.await.expect("drained")
    }
}

/// The value of the series of `name` whose labels contain every `labels` pair.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|pair| l.contains(pair)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cx-pool-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("collectors.yaml");
    std::fs::write(&file, text).expect("write config");
    file
}

/// Replaces the file the way the kubelet updates a Secret volume: a new file renamed over it.
fn replace_config(file: &Path, text: &str) {
    let next = file.with_extension("next");
    std::fs::write(&next, text).expect("write");
    std::fs::rename(&next, file).expect("rename");
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_pool_routes_validates_counts_and_authenticates_per_touchpoint() {
    let file = write_config("routes", &pool_yaml(""));
    let pool = Pool::start(&file).await;

    // Each touchpoint accepts its own signals, and only those.
    assert_eq!(
        pool.event("web-checkout", None, NPS_9).await.0,
        StatusCode::ACCEPTED
    );
    let (status, body) = pool.event("web-checkout", None, CSAT_4).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("csat"), "{body}");
    // store-till needs its own token; web-checkout's lack of one does not leak to it.
    assert_eq!(
        pool.event("store-till", None, CSAT_4).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        pool.event("store-till", Some("wrong"), CSAT_4).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        pool.event("store-till", Some("till-token"), CSAT_4).await.0,
        StatusCode::ACCEPTED
    );
    let (status, body) = pool
        .send(
            Method::POST,
            "/v1/touchpoints/store-till/events:batch",
            Some("till-token"),
            &format!("[{CSAT_4},{CSAT_4},{NPS_9}]"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (report["accepted"].as_u64(), report["rejected"].as_u64()),
        (Some(2), Some(1))
    );

    // An unknown touchpoint: 404 with a JSON body naming it.
    let (status, body) = pool.event("web-chekout", None, NPS_9).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(error["error"]["reason"], "unknown_touchpoint");
    assert_eq!(error["error"]["field"], "touchpoint");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("web-chekout") && message.contains("retail"),
        "{message}"
    );
    // The single-touchpoint path names the pool's paths.
    let (status, body) = pool.send(Method::POST, "/v1/events", None, NPS_9).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body.contains("/v1/touchpoints/<touchpoint>/events"),
        "{body}"
    );

    // The same metric names and labels as dedicated collectors, one family each.
    let metrics = pool.metrics().await;
    let received = |tp: &str| {
        sample(
            &metrics,
            "cx_events_received_total",
            &[&format!("touchpoint=\"{tp}\"")],
        )
    };
    assert_eq!(received("web-checkout"), Some(1.0));
    assert_eq!(received("store-till"), Some(3.0));
    assert_eq!(
        sample(
            &metrics,
            "cx_survey_responses_total",
            &[
                "touchpoint=\"store-till\"",
                "channel=\"store\"",
                "metric=\"csat\"",
                "score=\"4\""
            ]
        ),
        Some(3.0)
    );
    assert_eq!(
        metrics
            .matches("# TYPE cx_events_received_total counter")
            .count(),
        1,
        "{metrics}"
    );
    assert!(
        metrics.contains("cx_collector_unknown_touchpoint_requests_total{namespace=\"retail\"} 2"),
        "{metrics}"
    );
    let drained = pool.stop().await;
    assert_eq!(drained.accepted_events, 4);
}

#[tokio::test]
async fn a_pool_follows_its_file_without_resetting_counters_and_keeps_the_last_good_one() {
    let file = write_config("reload", &pool_yaml(""));
    let pool = Pool::start(&file).await;
    for _ in 0..3 {
        assert_eq!(
            pool.event("web-checkout", None, NPS_9).await.0,
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(
        pool.event("app-search", None, NPS_9).await.0,
        StatusCode::NOT_FOUND
    );

    // Add a touchpoint and change another (web-checkout now also asks csat).
    let changed = pool_yaml(
        "- {namespace: retail, touchpoint: app-search, channel: app, stage: consideration, surveys: [{metric: nps}], maxEventBytes: 1024}\n",
    )
    .replace(
        "touchpoint: web-checkout, channel: web, stage: purchase, surveys: [{metric: nps}]",
        "touchpoint: web-checkout, channel: web, stage: purchase, surveys: [{metric: nps}, {metric: csat}]",
    );
    replace_config(&file, &changed);
    until("the new touchpoint to be served", || async {
        pool.event("app-search", None, NPS_9).await.0 == StatusCode::ACCEPTED
    })
    .await;
    assert_eq!(
        pool.event("web-checkout", None, CSAT_4).await.0,
        StatusCode::ACCEPTED
    );
    let metrics = pool.metrics().await;
    // 3 before the change + 1 csat after: the counter went on, it did not restart at 1.
    assert_eq!(
        sample(
            &metrics,
            "cx_events_received_total",
            &["touchpoint=\"web-checkout\""]
        ),
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "cx_survey_responses_total",
            &[
                "touchpoint=\"web-checkout\"",
                "metric=\"nps\"",
                "score=\"9\""
            ]
        ),
        Some(3.0)
    );
    assert!(
        metrics.contains(
            "cx_collector_config_reloads_total{namespace=\"retail\",result=\"applied\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("cx_collector_touchpoints{namespace=\"retail\"} 3"),
        "{metrics}"
    );

    // A file that cannot be used: the last good configuration keeps serving, and says so.
    replace_config(
        &file,
        "namespace: retail\ntouchpoints: [{touchpoint: broken}]\n",
    );
    until("the refusal to be counted", || async {
        pool.metrics()
            .await
            .contains("cx_collector_config_reloads_total{namespace=\"retail\",result=\"failed\"} 1")
    })
    .await;
    assert_eq!(
        pool.event("app-search", None, NPS_9).await.0,
        StatusCode::ACCEPTED
    );
    let metrics = pool.metrics().await;
    assert!(
        metrics.contains("cx_collector_config_last_reload_successful{namespace=\"retail\"} 0"),
        "{metrics}"
    );

    // Removing a touchpoint stops serving it; the others keep their counts.
    replace_config(&file, &pool_yaml(""));
    until("the removed touchpoint to be refused", || async {
        pool.event("app-search", None, NPS_9).await.0 == StatusCode::NOT_FOUND
    })
    .await;
    let metrics = pool.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "cx_events_received_total",
            &["touchpoint=\"web-checkout\""]
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "cx_events_received_total",
            &["touchpoint=\"app-search\""]
        ),
        None
    );
    pool.stop().await;
}

/// A pool of `web-checkout` (nps) with the given themes.
fn themed_pool(themes: &str) -> String {
    format!(
        r#"
namespace: retail
touchpoints:
- {{namespace: retail, touchpoint: web-checkout, channel: web, stage: purchase, surveys: [{{metric: nps}}], maxEventBytes: 1024, themes: {themes}}}
"#
    )
}

#[tokio::test]
async fn a_theme_change_reaches_a_running_pool_and_kept_themes_keep_their_counts() {
    let file = write_config(
        "themes",
        &themed_pool(
            "[{name: delivery, keywords: [corriere]}, {name: staff, keywords: [personale]}]",
        ),
    );
    let pool = Pool::start(&file).await;
    let comment = r#"{"type":"survey","metric":"nps","score":3,"comment":"corriere lento, personale gentile, prezzo alto"}"#;
    assert_eq!(
        pool.event("web-checkout", None, comment).await.0,
        StatusCode::ACCEPTED
    );
    let theme = |metrics: &str, name: &str| {
        sample(
            metrics,
            "cx_feedback_themes_total",
            &[
                "touchpoint=\"web-checkout\"",
                &format!("theme=\"{name}\""),
                "segment=\"detractor\"",
            ],
        )
    };
    let metrics = pool.metrics().await;
    assert_eq!(theme(&metrics, "delivery"), Some(1.0), "{metrics}");
    assert_eq!(theme(&metrics, "staff"), Some(1.0));
    assert_eq!(theme(&metrics, "price"), None);

    // Keep delivery, add price, remove staff.
    replace_config(
        &file,
        &themed_pool("[{name: delivery, keywords: [corriere]}, {name: price, keywords: [prezz*]}]"),
    );
    until("the new theme to be counted", || async {
        theme(&pool.metrics().await, "price").is_some()
    })
    .await;
    assert_eq!(
        pool.event("web-checkout", None, comment).await.0,
        StatusCode::ACCEPTED
    );
    let metrics = pool.metrics().await;
    assert_eq!(theme(&metrics, "delivery"), Some(2.0), "{metrics}");
    assert_eq!(theme(&metrics, "price"), Some(1.0));
    assert_eq!(theme(&metrics, "staff"), None, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "cx_feedback_comments_total",
            &["touchpoint=\"web-checkout\"", "segment=\"detractor\""]
        ),
        Some(2.0)
    );
    pool.stop().await;
}

/// A pool of a courier's delivery touchpoint (`completed` and the given custom outcomes) and the
/// web checkout (`completed`, `abandoned`).
fn courier_pool(custom: &str) -> String {
    format!(
        r#"
namespace: retail
touchpoints:
- {{namespace: retail, touchpoint: courier, channel: courier, stage: delivery, interactions: {{outcomes: [completed], customOutcomes: {custom}}}, maxEventBytes: 1024}}
- {{namespace: retail, touchpoint: web-checkout, channel: web, stage: purchase, interactions: {{outcomes: [completed, abandoned]}}, maxEventBytes: 1024}}
"#
    )
}

#[tokio::test]
async fn custom_outcomes_are_accepted_only_where_declared_and_a_new_one_reaches_a_running_pool() {
    let file = write_config("outcomes", &courier_pool("[failed-attempt]"));
    let pool = Pool::start(&file).await;
    let failed = r#"{"type":"interaction","outcome":"failed-attempt"}"#;
    let rescheduled = r#"{"type":"interaction","outcome":"rescheduled"}"#;
    assert_eq!(
        pool.event("courier", None, failed).await.0,
        StatusCode::ACCEPTED
    );
    // The checkout does not declare it: the usual refusal, naming the field and what is declared.
    let (status, body) = pool.event("web-checkout", None, failed).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(
        body["error"],
        serde_json::json!({
            "reason": "unknown_outcome",
            "field": "outcome",
            "message": "outcome \"failed-attempt\" is not declared by this touchpoint; declared: completed, abandoned"
        })
    );
    let (status, _) = pool.event("courier", None, rescheduled).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let count = |metrics: &str, touchpoint: &str, outcome: &str| {
        sample(
            metrics,
            "cx_interactions_total",
            &[
                &format!("touchpoint=\"{touchpoint}\""),
                &format!("outcome=\"{outcome}\""),
            ],
        )
    };
    let metrics = pool.metrics().await;
    assert_eq!(
        count(&metrics, "courier", "failed-attempt"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(count(&metrics, "courier", "completed"), Some(0.0));
    assert_eq!(count(&metrics, "web-checkout", "failed-attempt"), None);

    // The courier now also records rescheduled deliveries: no restart, failed attempts keep
    // their count.
    replace_config(&file, &courier_pool("[rescheduled, failed-attempt]"));
    until("the new outcome to be counted", || async {
        count(&pool.metrics().await, "courier", "rescheduled").is_some()
    })
    .await;
    for body in [failed, rescheduled] {
        assert_eq!(
            pool.event("courier", None, body).await.0,
            StatusCode::ACCEPTED
        );
    }
    let metrics = pool.metrics().await;
    assert_eq!(
        count(&metrics, "courier", "failed-attempt"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(count(&metrics, "courier", "rescheduled"), Some(1.0));
    assert_eq!(
        sample(
            &metrics,
            "cx_events_rejected_total",
            &["touchpoint=\"courier\"", "reason=\"unknown_outcome\""]
        ),
        Some(1.0)
    );
    pool.stop().await;
}
