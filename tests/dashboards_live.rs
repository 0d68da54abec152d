//! The three Grafana dashboards against real data: an organisation on the real control plane, the
//! operator (with the chart's ServiceAccount) reconciling it and evaluating its KPIs, real
//! collectors fed with events, and a real Prometheus scraping the collectors and the operator's
//! own `/metrics` (its real router, served by the test). Every target of every panel, with the
//! template variables replaced as Grafana would, must return data; problem counters read 0 on a
//! healthy organisation; and every variable filters what it claims to.
//!
//! Two organisations, one namespace each:
//! - *messy*: three channels (one breaks the journey's brand-voice rule), a 5-point CSAT and a
//!   7-point CSAT touchpoint, a touchpoint scaled to zero (its collector is never ready), two
//!   journeys (one with a stage nobody covers), and KPIs met, at risk and breached in every unit
//!   the dashboards show (percent, NPS, CES, seconds, custom);
//! - *calm*: one channel, one touchpoint, one journey and one KPI, met: nothing to report.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/operator.rs"]
mod operator_support;
#[path = "support/otlp.rs"]
mod otlp;
#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/prometheus.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster::{apply, cluster, eventually, get, repo_path};
use cx_conductor::api::{Channel, CustomerJourney, ExperienceKPI, KpiState, Touchpoint};
use cx_conductor::core::listening::{theme_sources, themes_of};
use cx_conductor::core::plan::collector_config;
use cx_conductor::kpi::prometheus::form_encode;
use cx_conductor::kpi::{PrometheusClient, PrometheusConfig};
use cx_conductor::operator::http::{HttpState, router};
use cx_conductor::operator::{KpiOptions, OperatorOptions};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::jiff::Timestamp;
use operator_support::{Operator, default_release, operator_client};
use proxy::{Fault, FaultProxy, FaultRule};
use serde_json::{Value, json};
use support::{FanIn, Prometheus, RunningCollector, prometheus_binary};

const WAIT: Duration = Duration::from_secs(90);
const DASHBOARDS: [&str; 3] = ["overview", "journey", "collectors"];
/// What Grafana makes of `$__rate_interval` with a 1 s scrape interval (4 scrapes), rounded up.
const RATE_INTERVAL: &str = "5s";

// ----------------------------------------------------------------------------------------------
// The organisations

const API: &str = "cx.conductor.dev/v1alpha1";

fn channel(ns: &str, name: &str, kind: &str, voice: &str, journeys: &[&str]) -> Value {
    let labels: BTreeMap<String, String> = journeys
        .iter()
        .map(|j| (format!("journey-{j}"), "yes".to_string()))
        .collect();
    json!({"apiVersion": API, "kind": "Channel",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"type": kind, "owner": "cx", "brand": {"name": "Acme", "voice": voice},
                 "privacy": {"consentPolicyVersion": "v7"},
                 "serviceLevels": {"firstResponseSeconds": 60}}})
}

fn touchpoint(
    ns: &str,
    name: &str,
    channel: &str,
    stage: &str,
    signals: Value,
    replicas: i32,
) -> Value {
    json!({"apiVersion": API, "kind": "Touchpoint",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"channel": channel, "stage": stage, "signals": signals,
                 "collector": {"mode": "dedicated", "replicas": replicas}}})
}

/// A KPI over a 10 s window evaluated every second: with events fed every second, both the
/// window and the previous one hold data after 20 s, so value, gap and gap change all exist.
fn kpi(
    ns: &str,
    name: &str,
    indicator: Value,
    stage: &str,
    objective: Value,
    journey: &str,
) -> Value {
    json!({"apiVersion": API, "kind": "ExperienceKPI",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"indicator": indicator, "scope": {"stage": stage}, "objective": objective,
                 "window": "10s", "interval": "1s", "minSamples": 1, "owner": "cx",
                 "journey": journey}})
}

fn journey(ns: &str, name: &str, stages: &[&str], rules: Value, coverage: Value) -> Value {
    json!({"apiVersion": API, "kind": "CustomerJourney",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"owner": "cx", "stages": stages,
                 "channelSelector": {"matchLabels": {format!("journey-{name}"): "yes"}},
                 "consistency": {"rules": rules}, "coverage": coverage}})
}

/// The themes the messy organisation's main journey declares: what its customers write about,
/// in Italian and English.
fn themes() -> Value {
    json!([
        {"name": "delivery", "keywords": ["consegn*", "corriere", "in ritardo", "delivery", "courier", "late"]},
        {"name": "price", "keywords": ["prezz*", "caro", "price*", "expensive"]},
        {"name": "staff", "keywords": ["operator*", "scortes*", "staff", "rude", "helpful"]},
        {"name": "waiting-time", "keywords": ["attes*", "aspettat*", "wait*", "on hold"]}
    ])
}

fn messy_org(ns: &str) -> Vec<Value> {
    let custom = format!(
        "100 * sum(increase(cx_interactions_total{{namespace=\"{ns}\", stage=\"purchase\", outcome=\"error\"}}[$window])) / sum(increase(cx_interactions_total{{namespace=\"{ns}\", stage=\"purchase\"}}[$window]))"
    );
    let samples = format!(
        "sum(increase(cx_interactions_total{{namespace=\"{ns}\", stage=\"purchase\"}}[$window]))"
    );
    vec![
        channel(ns, "web", "web", "warm", &["main"]),
        channel(ns, "app", "mobile-app", "warm", &["main"]),
        // Breaks main's brand-voice rule: a consistency violation.
        channel(ns, "voice", "voice", "formal", &["main", "aftercare"]),
        touchpoint(
            ns,
            "web-checkout",
            "web",
            "purchase",
            json!({"surveys": [{"metric": "csat", "scale": 5}, {"metric": "nps"}],
                   "interactions": {"outcomes": ["completed", "abandoned", "error"],
                                    "timings": ["wait", "handle"]}}),
            1,
        ),
        touchpoint(
            ns,
            "hotline",
            "voice",
            "support",
            json!({"surveys": [{"metric": "csat", "scale": 7}, {"metric": "ces"}],
                   "interactions": {"outcomes": ["resolved-first-contact", "resolved", "unresolved", "escalated", "abandoned"],
                                    "timings": ["wait", "handle"]}}),
            1,
        ),
        // Scaled to zero: its collector is never ready ("Collectors not ready" lists it).
        touchpoint(
            ns,
            "app-survey",
            "app",
            "purchase",
            json!({"surveys": [{"metric": "csat"}]}),
            0,
        ),
        // 80 % of 5-point answers in the top two boxes: met.
        kpi(
            ns,
            "checkout-csat",
            json!({"builtin": "csat"}),
            "purchase",
            json!({"target": 70, "direction": "atLeast"}),
            "main",
        ),
        // NPS 40 against 50, warning at 20: at risk.
        kpi(
            ns,
            "checkout-nps",
            json!({"builtin": "nps"}),
            "purchase",
            json!({"target": 50, "direction": "atLeast", "warning": 20}),
            "main",
        ),
        // 20 % of checkout interactions fail on our side, at most 25 %: met.
        kpi(
            ns,
            "checkout-errors",
            json!({"promql": custom, "samplesPromql": samples}),
            "purchase",
            json!({"target": 25, "direction": "atMost"}),
            "main",
        ),
        // CES 4.5 against 5, warning at 4: at risk.
        kpi(
            ns,
            "hotline-effort",
            json!({"builtin": "ces"}),
            "support",
            json!({"target": 5, "direction": "atLeast", "warning": 4}),
            "aftercare",
        ),
        // Callers wait a minute or more, the target is 30 s: breached.
        kpi(
            ns,
            "hotline-response",
            json!({"builtin": "first-response-time"}),
            "support",
            json!({"target": 30, "direction": "atMost"}),
            "aftercare",
        ),
        // Loyalty has no touchpoint, no listening and no KPI: coverage gaps. Its themes are
        // counted at the web checkout and the hotline.
        {
            let mut main = journey(
                ns,
                "main",
                &["purchase", "support", "loyalty"],
                json!([{"field": "brand.voice", "policy": "equal"}]),
                json!({}),
            );
            main["spec"]["themes"] = themes();
            main
        },
        journey(ns, "aftercare", &["support"], json!([]), json!({})),
    ]
}

fn calm_org(ns: &str) -> Vec<Value> {
    vec![
        channel(ns, "web", "web", "warm", &["calm"]),
        touchpoint(
            ns,
            "calm-checkout",
            "web",
            "purchase",
            json!({"surveys": [{"metric": "csat", "scale": 5}]}),
            1,
        ),
        kpi(
            ns,
            "calm-csat",
            json!({"builtin": "csat"}),
            "purchase",
            json!({"target": 70, "direction": "atLeast"}),
            "calm",
        ),
        journey(ns, "calm", &["purchase"], json!([]), json!({})),
    ]
}

fn survey(metric: &str, score: i32) -> String {
    format!(r#"{{"type":"survey","metric":"{metric}","score":{score}}}"#)
}

fn interaction(outcome: &str, wait: u32, handle: u32) -> String {
    format!(
        r#"{{"type":"interaction","outcome":"{outcome}","waitSeconds":{wait},"handleSeconds":{handle}}}"#
    )
}

/// An answer with what the customer wrote.
fn commented(metric: &str, score: i32, comment: &str) -> String {
    format!(r#"{{"type":"survey","metric":"{metric}","score":{score},"comment":"{comment}"}}"#)
}

/// One second's worth of events at the web checkout: CSAT 80 %, NPS 40, 20 % errors; a
/// detractor and an unhappy CSAT answer complain about delivery and price, a promoter praises
/// the price.
fn web_checkout_events() -> Vec<String> {
    let mut events: Vec<String> = [5, 5, 4, 4].iter().map(|s| survey("csat", *s)).collect();
    events.push(commented("csat", 2, "troppo caro e il corriere in ritardo"));
    events.extend([10, 9, 8].iter().map(|s| survey("nps", *s)));
    events.push(commented("nps", 9, "great price"));
    events.push(commented("nps", 3, "la consegna è arrivata in ritardo"));
    events.extend([
        interaction("completed", 2, 40),
        interaction("completed", 3, 50),
        interaction("completed", 1, 30),
        interaction("abandoned", 20, 0),
        interaction("error", 2, 5),
    ]);
    events
}

/// One second's worth at the hotline: CES 4.5, waits of a minute and more, every outcome; an
/// unhappy caller writes about the wait and the operator, a happy one about the staff.
fn hotline_events() -> Vec<String> {
    let mut events: Vec<String> = [6, 5].iter().map(|s| survey("csat", *s)).collect();
    events.push(commented("csat", 7, "helpful staff"));
    events.push(commented(
        "csat",
        3,
        "twenty minutes on hold and a rude operator",
    ));
    events.extend([5, 4, 5, 4].iter().map(|s| survey("ces", *s)));
    events.extend([
        interaction("resolved-first-contact", 45, 300),
        interaction("resolved", 60, 400),
        interaction("unresolved", 80, 200),
        interaction("escalated", 100, 600),
        interaction("abandoned", 150, 0),
    ]);
    events
}

/// Events the web checkout refuses: a 5-point score of 9, an outcome it does not declare.
fn refused_events() -> Vec<String> {
    vec![
        survey("csat", 9),
        r#"{"type":"interaction","outcome":"escalated"}"#.to_string(),
    ]
}

// ----------------------------------------------------------------------------------------------
// Prometheus' HTTP API

/// One series of an answer: its labels and its values (one for an instant query).
#[derive(Clone, Debug, PartialEq)]
struct Series {
    labels: BTreeMap<String, String>,
    values: Vec<f64>,
}

impl Series {
    fn has_number(&self) -> bool {
        self.values.iter().any(|v| !v.is_nan())
    }
}

async fn prometheus_api(
    base: &str,
    path: &str,
    params: &[(&str, String)],
) -> Result<Vec<Series>, String> {
    let body: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect();
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body.join("&"))))
        .map_err(|e| e.to_string())?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if !status.is_success() || answer["status"] != "success" {
        return Err(format!("{status}: {answer}"));
    }
    let number = |v: &Value| -> f64 {
        v[1].as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let data = &answer["data"];
    let result = &data["result"];
    Ok(match data["resultType"].as_str() {
        Some("scalar") => vec![Series {
            labels: BTreeMap::new(),
            values: vec![number(result)],
        }],
        Some("vector") | Some("matrix") => result
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| Series {
                labels: serde_json::from_value(s["metric"].clone()).unwrap_or_default(),
                values: match s.get("values") {
                    Some(values) => values.as_array().unwrap().iter().map(number).collect(),
                    None => vec![number(&s["value"])],
                },
            })
            .collect(),
        other => return Err(format!("unexpected result type {other:?}: {answer}")),
    })
}

fn seconds(t: Timestamp) -> String {
    format!("{:.3}", t.as_millisecond() as f64 / 1000.0)
}

/// Instant query at `at`.
async fn instant(base: &str, expr: &str, at: Timestamp) -> Result<Vec<Series>, String> {
    prometheus_api(
        base,
        "/api/v1/query",
        &[("query", expr.to_string()), ("time", seconds(at))],
    )
    .await
}

/// Range query from `start` to `end`, one point a second.
async fn range(
    base: &str,
    expr: &str,
    start: Timestamp,
    end: Timestamp,
) -> Result<Vec<Series>, String> {
    prometheus_api(
        base,
        "/api/v1/query_range",
        &[
            ("query", expr.to_string()),
            ("start", seconds(start)),
            ("end", seconds(end)),
            ("step", "1".to_string()),
        ],
    )
    .await
}

// ----------------------------------------------------------------------------------------------
// Dashboards and Grafana's variables

fn dashboard(name: &str) -> Value {
    let path = repo_path(&format!("charts/cx-conductor/dashboards/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A panel of a dashboard.
struct Panel<'a> {
    json: &'a Value,
}

impl Panel<'_> {
    fn title(&self) -> &str {
        self.json["title"].as_str().unwrap_or_default()
    }

    fn targets(&self) -> Vec<(String, String)> {
        self.json["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["refId"].as_str().unwrap_or_default().to_string(),
                    t["expr"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

/// Every panel that queries, nested ones (collapsed rows) included.
fn query_panels(d: &Value) -> Vec<Panel<'_>> {
    let mut out = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            for nested in panel["panels"].as_array().into_iter().flatten() {
                out.push(Panel { json: nested });
            }
        } else {
            out.push(Panel { json: panel });
        }
    }
    out
}

/// What the user picked for a variable: one value or several (a variable not picked is All, or
/// its first value when it has no All).
#[derive(Clone, Debug)]
enum Pick {
    Values(Vec<String>),
}

fn one(value: &str) -> Pick {
    Pick::Values(vec![value.to_string()])
}

type Selection = BTreeMap<&'static str, Pick>;

/// The text Grafana puts in place of each variable, resolved in dashboard order against
/// Prometheus (each `label_values` query runs with the variables before it substituted), so a
/// picked value the organisation does not offer is an error.
async fn resolve(
    base: &str,
    d: &Value,
    selection: &Selection,
    at: Timestamp,
) -> Result<BTreeMap<String, String>, String> {
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for var in d["templating"]["list"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        if var["type"] == "datasource" {
            continue;
        }
        let options: Vec<String> = match var["type"].as_str() {
            Some("custom") => var["query"]
                .as_str()
                .unwrap()
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
            Some("query") => {
                let query = var["query"].as_str().unwrap();
                let inner = query
                    .strip_prefix("label_values(")
                    .and_then(|q| q.strip_suffix(')'))
                    .ok_or(format!("variable {name}: {query}"))?;
                let (selector, label) = inner.rsplit_once(',').unwrap();
                let selector = substitute(selector.trim(), &values);
                let label = label.trim();
                let series = instant(base, &format!("count by ({label}) ({selector})"), at).await?;
                let found: BTreeSet<String> = series
                    .into_iter()
                    .filter_map(|s| s.labels.get(label).cloned())
                    .collect();
                found.into_iter().collect()
            }
            other => return Err(format!("variable {name}: type {other:?}")),
        };
        let multi = var["multi"] == true || var["includeAll"] == true;
        let text = match selection.get(name) {
            None if var["includeAll"] == true => match var["allValue"].as_str() {
                Some(all) => all.to_string(),
                None => format!("({})", options.join("|")),
            },
            None => options
                .first()
                .cloned()
                .ok_or(format!("variable {name} offers no value"))?,
            Some(Pick::Values(picked)) => {
                for p in picked {
                    if !options.contains(p) {
                        return Err(format!("variable {name} offers {options:?}, not {p:?}"));
                    }
                }
                match picked.as_slice() {
                    [only] => only.clone(),
                    several if multi => format!("({})", several.join("|")),
                    _ => return Err(format!("variable {name} takes one value")),
                }
            }
        };
        values.insert(name.to_string(), text);
    }
    Ok(values)
}

/// `$name`, `${name}` and `${name:format}` replaced by `values` (names absent stay as they are).
fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').expect("closing brace");
            let name = braced[..end].split(':').next().unwrap();
            (name, &braced[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        match values.get(name) {
            Some(value) => out.push_str(value),
            None => {
                out.push('$');
                out.push_str(&rest[..rest.len() - after.len()]);
            }
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The running test: where to query, and the span the data covers.
struct Live {
    base: String,
    start: Timestamp,
}

impl Live {
    /// A target's series as its panel queries them: a range query over the test's span for a
    /// graph, an instant query otherwise.
    async fn evaluate(
        &self,
        d: &Value,
        panel: &Panel<'_>,
        expr: &str,
        selection: &Selection,
        graph: bool,
    ) -> Result<(String, Vec<Series>), String> {
        let now = Timestamp::now();
        let mut values = resolve(&self.base, d, selection, now).await?;
        let span = (now.as_second() - self.start.as_second()).max(10);
        values.insert("__rate_interval".into(), RATE_INTERVAL.into());
        values.insert("__interval".into(), "1s".into());
        values.insert("__range".into(), format!("{span}s"));
        let query = substitute(expr, &values);
        assert!(
            !query.contains('$'),
            "{}: a variable is left in {query}",
            panel.title()
        );
        let series = if graph && panel.json["type"] == "timeseries" {
            range(&self.base, &query, self.start, now).await
        } else {
            instant(&self.base, &query, now).await
        }
        .map_err(|e| format!("{query}: {e}"))?;
        Ok((query, series))
    }
}

// ----------------------------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_of_every_dashboard_shows_data_and_every_filter_filters() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let began = Instant::now();
    let release = default_release();
    let messy = cluster().namespace("dash").await;
    let calm = cluster().namespace("dash-calm").await;
    let admin = cluster().admin();
    for object in messy_org(&messy).into_iter().chain(calm_org(&calm)) {
        apply(&admin, &object, "test")
            .await
            .unwrap_or_else(|e| panic!("{e}: {object}"));
    }

    // Real collectors with the configuration the operator deploys (kwok runs no pod), the
    // themes of the journeys holding each touchpoint included. The web checkout exports its
    // events to an OTLP endpoint, so the export row has data.
    let otlp = otlp::Endpoint::start(otlp::Mode::Accept).await;
    let export: cx_conductor::collector::config::ExportConfig =
        serde_yaml::from_str(&format!("endpoint: {}", otlp.url())).expect("export settings");
    let collector_for = |ns: String, name: &'static str, export: Option<_>| {
        let admin = admin.clone();
        async move {
            let tp: Touchpoint = get(&admin, &ns, name).await.expect("touchpoint");
            let ch: Channel = get(&admin, &ns, &tp.spec.channel).await.expect("channel");
            let journeys: Vec<CustomerJourney> =
                kube::Api::<CustomerJourney>::namespaced(admin.clone(), &ns)
                    .list(&Default::default())
                    .await
                    .expect("journeys")
                    .items;
            let mut config = collector_config(&tp, Some(&ch));
            config.themes = themes_of(&tp, Some(&ch), &theme_sources(&journeys));
            config.export = export;
            RunningCollector::start(&config).await
        }
    };
    let web_checkout = collector_for(messy.clone(), "web-checkout", Some(export)).await;
    let hotline = collector_for(messy.clone(), "hotline", None).await;
    let calm_checkout = collector_for(calm.clone(), "calm-checkout", None).await;
    let fan_in = FanIn::start(vec![web_checkout.addr, hotline.addr, calm_checkout.addr]).await;
    // The operator's /metrics: its own router on a port of the test, scraped like the collectors.
    let operator_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let operator_addr = operator_listener.local_addr().unwrap();
    let prometheus = Prometheus::start(binary, &[fan_in.addr, operator_addr], "1s").await;
    let base = prometheus.url.clone();
    // Every collector series is first scraped at zero, so increase() starts from there.
    prometheus
        .wait_for_value("count(cx_events_received_total)", 3.0, WAIT)
        .await;

    // Events every second until the end, so rates and 10 s KPI windows always hold data.
    let feeding = Arc::new(AtomicBool::new(true));
    let feed_start = Timestamp::now();
    let feeder = {
        let feeding = feeding.clone();
        tokio::spawn(async move {
            while feeding.load(Ordering::Relaxed) {
                web_checkout.post(&web_checkout_events()).await;
                // A batch of refused events only is answered 422, each event counted by reason.
                let (status, report) = web_checkout.post_report(&refused_events()).await;
                assert_eq!((status, &report["rejected"]), (422, &json!(2)), "{report}");
                hotline.post(&hotline_events()).await;
                calm_checkout
                    .post(&[survey("csat", 5), survey("csat", 4)])
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let client = PrometheusClient::new(PrometheusConfig::new(base.clone())).unwrap();
    let options = OperatorOptions {
        namespaces: vec![messy.clone(), calm.clone()],
        resync: Duration::from_secs(1),
        kpi: Some(KpiOptions {
            prometheus: Arc::new(client),
            prometheus_rules: None,
        }),
        ..Default::default()
    };
    // The API server refuses two status writes of a journey (409): real reconcile errors, so
    // "Reconcile errors by reason" has something to show.
    let proxy = FaultProxy::start(&cluster().server, &cluster().ca_pem).await;
    proxy.inject(FaultRule::on(
        Method::PATCH,
        "/customerjourneys/aftercare/status",
        2,
        Fault::Status(409),
    ));
    let operator = Operator::start(operator_client(release, Some(&proxy.url)).await, options);
    let (stop_http, stopped_http) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        axum::serve(
            operator_listener,
            router(HttpState {
                metrics: operator.metrics.clone(),
                stores: operator.stores.clone(),
            }),
        )
        .with_graceful_shutdown(async {
            let _ = stopped_http.await;
        })
        .into_future(),
    );

    // The verdicts the organisation is built for, each with a gap change (two windows of data).
    let expected = [
        ("checkout-csat", KpiState::Met),
        ("checkout-nps", KpiState::AtRisk),
        ("checkout-errors", KpiState::Met),
        ("hotline-effort", KpiState::AtRisk),
        ("hotline-response", KpiState::Breached),
    ];
    let verdicts = || async {
        let mut out = Vec::new();
        for (name, _) in expected {
            let status = get::<ExperienceKPI>(&admin, &messy, name)
                .await
                .and_then(|k| k.status);
            out.push((
                name,
                status.as_ref().and_then(|s| s.state),
                status.as_ref().and_then(|s| s.value),
                status.as_ref().and_then(|s| s.gap_change),
            ));
        }
        out
    };
    let settled = eventually(WAIT, || async {
        verdicts()
            .await
            .iter()
            .zip(expected)
            .all(|((_, state, _, change), (_, want))| *state == Some(want) && change.is_some())
    })
    .await;
    if !settled {
        let seen = instant(
            &base,
            "sum by (namespace, touchpoint) (cx_events_received_total)",
            Timestamp::now(),
        )
        .await;
        panic!(
            "KPI verdicts: {:?}\nevents Prometheus saw: {seen:?}\nfeeder stopped: {}",
            verdicts().await,
            feeder.is_finished()
        );
    }
    // ... and Prometheus has scraped what the operator exports about them and the rest.
    for (query, want) in [
        (
            format!("count(cx_kpi_gap_change{{namespace=\"{messy}\"}})"),
            5.0,
        ),
        (
            format!("sum(cx_kpi_state{{namespace=\"{messy}\", state=~\"Met|AtRisk|Breached\"}})"),
            5.0,
        ),
        (
            format!("sum(cx_touchpoint_collector_ready{{namespace=~\"{messy}|{calm}\"}})"),
            3.0,
        ),
        (
            format!("count(cx_touchpoint_collector_ready{{namespace=~\"{messy}|{calm}\"}})"),
            4.0,
        ),
        (
            format!("count(cx_journey_readiness_score{{namespace=~\"{messy}|{calm}\"}})"),
            3.0,
        ),
        (
            format!(
                "sum(cx_consistency_violations{{namespace=\"{messy}\", journey=\"main\"}}) > 0"
            ),
            1.0,
        ),
        (
            "sum(cx_reconcile_errors_total{reason=\"Conflict\"})".to_string(),
            2.0,
        ),
        (
            format!("sum(cx_kpi_state{{namespace=\"{calm}\", state=\"Met\"}})"),
            1.0,
        ),
    ] {
        let found = support::wait_until(&query, WAIT, || async {
            prometheus.number(&query, None).await.filter(|v| *v >= want)
        })
        .await;
        assert!(found >= want, "{query}");
    }
    let live = Live {
        base: base.clone(),
        start: feed_start,
    };
    let settle_time = began.elapsed();

    // The emptiness check bites: a target asking for a KPI that does not exist is reported.
    let mut control = Vec::new();
    let mut broken = dashboard("journey");
    broken["panels"][1]["targets"][0]["expr"] =
        json!("max(cx_kpi_value{namespace=\"$namespace\", kpi=\"no-such-kpi\"})");
    every_target_returns_data(&live, &messy, &[("journey", broken)], &mut control).await;
    assert!(
        control.len() == 1 && control[0].contains("no-such-kpi"),
        "{control:?}"
    );

    let mut failures: Vec<String> = Vec::new();
    let dashboards: Vec<(&str, Value)> = DASHBOARDS.iter().map(|n| (*n, dashboard(n))).collect();
    let targets = every_target_returns_data(&live, &messy, &dashboards, &mut failures).await;
    assert!(targets > 50, "only {targets} targets found");
    problem_counters_read_zero_when_healthy(&live, &messy, &calm, &mut failures).await;
    every_variable_filters(&live, &messy, &calm, &mut failures).await;

    feeding.store(false, Ordering::Relaxed);
    feeder.await.expect("the feeder posted every batch");
    let _ = stop_http.send(());
    operator.stop().await;
    assert!(
        failures.is_empty(),
        "{} dashboard problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "dashboards_live: data settled in {:.1?}, whole test {:.1?}",
        settle_time,
        began.elapsed()
    );
}

/// The selections under which a panel is expected to show data: one journey at a time on the
/// journey dashboard (each with a stage of its own, as the repeated row shows it), everything
/// (All) elsewhere. A target passes when one of them returns a number.
fn showcase(name: &str, messy: &str) -> Vec<Selection> {
    match name {
        "journey" => vec![
            [
                ("namespace", one(messy)),
                ("journey", one("main")),
                ("stage", one("purchase")),
            ]
            .into(),
            [
                ("namespace", one(messy)),
                ("journey", one("aftercare")),
                ("stage", one("support")),
            ]
            .into(),
        ],
        _ => vec![Selection::new()],
    }
}

async fn every_target_returns_data(
    live: &Live,
    messy: &str,
    dashboards: &[(&str, Value)],
    failures: &mut Vec<String>,
) -> usize {
    let mut checked = 0;
    for (name, d) in dashboards {
        let name = *name;
        for panel in query_panels(d) {
            for (ref_id, expr) in panel.targets() {
                checked += 1;
                let mut shown = false;
                let mut tried = Vec::new();
                for selection in showcase(name, messy) {
                    match live.evaluate(d, &panel, &expr, &selection, true).await {
                        Ok((query, series)) => {
                            shown |= series.iter().any(Series::has_number);
                            tried.push(query);
                        }
                        Err(e) => tried.push(format!("error: {e}")),
                    }
                    if shown {
                        break;
                    }
                }
                if !shown {
                    failures.push(format!(
                        "{name} / {:?} / {ref_id}: no data for {expr}\n    ran: {}",
                        panel.title(),
                        tried.join("\n    ran: ")
                    ));
                }
            }
        }
    }
    checked
}

/// Stats that count problems, by dashboard and title.
const PROBLEM_COUNTERS: [(&str, &str); 8] = [
    ("overview", "KPIs breached"),
    ("overview", "KPIs at risk"),
    ("overview", "Consistency violations"),
    ("overview", "Coverage gaps"),
    ("journey", "Consistency violations"),
    ("journey", "Coverage gaps"),
    ("journey", "KPIs breached"),
    ("collectors", "Rejected share"),
];

/// On the calm organisation every problem counter reads exactly 0 (not "No data"), and on the
/// messy one it counts something: the check would see a counter stuck at 0.
async fn problem_counters_read_zero_when_healthy(
    live: &Live,
    messy: &str,
    calm: &str,
    failures: &mut Vec<String>,
) {
    for (name, title) in PROBLEM_COUNTERS {
        let d = dashboard(name);
        let panels = query_panels(&d);
        let Some(panel) = panels
            .iter()
            .find(|p| p.title() == title && p.json["type"] == "stat")
        else {
            failures.push(format!("{name}: no stat {title:?}"));
            continue;
        };
        let (healthy, troubled): (Selection, Vec<Selection>) = match name {
            "journey" => (
                [("namespace", one(calm)), ("journey", one("calm"))].into(),
                vec![
                    [("namespace", one(messy)), ("journey", one("main"))].into(),
                    [("namespace", one(messy)), ("journey", one("aftercare"))].into(),
                ],
            ),
            _ => (
                [("namespace", one(calm))].into(),
                vec![[("namespace", one(messy))].into()],
            ),
        };
        for (_, expr) in panel.targets() {
            match live.evaluate(&d, panel, &expr, &healthy, false).await {
                Ok((query, series)) => {
                    let values: Vec<f64> = series.iter().flat_map(|s| s.values.clone()).collect();
                    if values != [0.0] {
                        failures.push(format!(
                            "{name} / {title:?} on a healthy organisation: {values:?} instead of 0 from {query}"
                        ));
                    }
                }
                Err(e) => failures.push(format!("{name} / {title:?}: {e}")),
            }
            let mut counted = false;
            for selection in &troubled {
                if let Ok((_, series)) = live.evaluate(&d, panel, &expr, selection, false).await {
                    counted |= series.iter().any(|s| s.values.iter().any(|v| *v > 0.0));
                }
            }
            if !counted {
                failures.push(format!(
                    "{name} / {title:?} counts nothing on the messy organisation: {expr}"
                ));
            }
        }
    }
}

/// Two values of each variable of each dashboard (other variables at their showcase values):
/// every series carrying the variable's label carries the picked value (or, for `journey`, the
/// empty one of KPIs outside any journey), and the two picks give different results somewhere.
/// Multi-value variables are also picked with both values at once, the `(a|b)` regex Grafana
/// sends, and as All (its `allValue`, or every value): their series carry one of the picked
/// values, and they show data wherever a single value does.
async fn every_variable_filters(live: &Live, messy: &str, calm: &str, failures: &mut Vec<String>) {
    /// A dashboard, a variable, single picks (each with the label values its series may
    /// carry), the pick of several values at once, and All (the variable left unpicked).
    struct Case {
        name: &'static str,
        var: &'static str,
        singles: Vec<(Selection, Vec<String>)>,
        combined: Option<(Selection, Vec<String>)>,
        all: Option<Selection>,
    }
    let sel = |pairs: &[(&'static str, Pick)]| -> Selection { pairs.iter().cloned().collect() };
    let picks =
        |name: &'static str, var: &'static str, base: &[(&'static str, Pick)], values: &[&str]| {
            let singles = values
                .iter()
                .map(|value| {
                    let mut s = sel(base);
                    s.insert(var, one(value));
                    (s, vec![value.to_string()])
                })
                .collect();
            let mut both = sel(base);
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            both.insert(var, Pick::Values(values.clone()));
            Case {
                name,
                var,
                singles,
                combined: Some((both, values)),
                all: Some(sel(base)),
            }
        };
    let ns_main = [("namespace", one(messy)), ("journey", one("main"))];
    let in_messy = [("namespace", one(messy))];
    let cases: Vec<Case> = vec![
        picks("overview", "namespace", &[], &[messy, calm]),
        picks("overview", "journey", &in_messy, &["main", "aftercare"]),
        picks("overview", "channel", &in_messy, &["web", "voice"]),
        // The journey dashboard's namespace and journey take one value each.
        Case {
            name: "journey",
            var: "namespace",
            singles: vec![
                (sel(&ns_main), vec![messy.to_string()]),
                (
                    sel(&[("namespace", one(calm)), ("journey", one("calm"))]),
                    vec![calm.to_string()],
                ),
            ],
            combined: None,
            all: None,
        },
        Case {
            name: "journey",
            var: "journey",
            singles: vec![
                (sel(&ns_main), vec!["main".to_string()]),
                (
                    sel(&[("namespace", one(messy)), ("journey", one("aftercare"))]),
                    vec!["aftercare".to_string()],
                ),
            ],
            combined: None,
            all: None,
        },
        picks("journey", "stage", &ns_main, &["purchase", "support"]),
        picks("journey", "channel", &ns_main, &["web", "voice"]),
        picks("collectors", "namespace", &[], &[messy, calm]),
        picks("collectors", "channel", &in_messy, &["web", "voice"]),
        picks("collectors", "stage", &in_messy, &["purchase", "support"]),
        picks(
            "collectors",
            "touchpoint",
            &in_messy,
            &["web-checkout", "hotline"],
        ),
    ];
    let mut covered: BTreeSet<(&str, &str)> = BTreeSet::new();
    for case in &cases {
        let (name, var) = (case.name, case.var);
        covered.insert((name, var));
        let d = dashboard(name);
        let mut differs = false;
        let mut used = 0;
        for panel in query_panels(&d) {
            for (ref_id, expr) in panel.targets() {
                if !(expr.contains(&format!("${var}")) || expr.contains(&format!("${{{var}"))) {
                    continue;
                }
                used += 1;
                let mut singles = Vec::new();
                let mut combined_shows = true;
                for (i, (selection, allowed)) in
                    case.singles.iter().chain(&case.combined).enumerate()
                {
                    match live.evaluate(&d, &panel, &expr, selection, false).await {
                        Ok((query, series)) => {
                            for s in &series {
                                if let Some(value) = s.labels.get(var)
                                    && !allowed.contains(value)
                                    && !(var == "journey" && value.is_empty())
                                {
                                    failures.push(format!(
                                        "{name} / {:?} / {ref_id}: ${var} = {allowed:?} gave a series with {var}={value:?}: {query}",
                                        panel.title()
                                    ));
                                }
                            }
                            if i < case.singles.len() {
                                singles.push(normalised(&series));
                            } else {
                                combined_shows = series.iter().any(Series::has_number);
                            }
                        }
                        Err(e) => {
                            failures.push(format!("{name} / {:?} / {ref_id}: {e}", panel.title()))
                        }
                    }
                }
                differs |= singles.windows(2).any(|w| w[0] != w[1]);
                let single_shows = singles.iter().any(|s| !s.is_empty());
                let all_shows = match &case.all {
                    Some(all) => live
                        .evaluate(&d, &panel, &expr, all, false)
                        .await
                        .is_ok_and(|(_, series)| series.iter().any(Series::has_number)),
                    None => true,
                };
                if single_shows && !(combined_shows && all_shows) {
                    failures.push(format!(
                        "{name} / {:?} / {ref_id}: ${var} shows data for one value but not for several ({combined_shows}) or All ({all_shows}): {expr}",
                        panel.title()
                    ));
                }
            }
        }
        if used == 0 {
            failures.push(format!("{name}: no panel uses ${var}"));
        } else if !differs {
            failures.push(format!(
                "{name}: ${var} filters nothing: its values give the same results in all {used} targets"
            ));
        }
    }
    // Every variable of every dashboard is covered above.
    for name in DASHBOARDS {
        for var in dashboard(name)["templating"]["list"].as_array().unwrap() {
            let var_name = var["name"].as_str().unwrap();
            if var["type"] != "datasource" && !covered.contains(&(name, var_name)) {
                failures.push(format!("{name}: variable ${var_name} is not checked live"));
            }
        }
    }
}

/// Series as comparable text: labels and values rounded, in order.
fn normalised(series: &[Series]) -> Vec<String> {
    let mut out: Vec<String> = series
        .iter()
        .map(|s| {
            let values: Vec<String> = s.values.iter().map(|v| format!("{v:.4}")).collect();
            format!("{:?} {}", s.labels, values.join(","))
        })
        .collect();
    out.sort();
    out
}
