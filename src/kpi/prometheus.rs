//! A small client of Prometheus' HTTP API: instant queries (`/api/v1/query`), over HTTP or HTTPS
//! (rustls, the system's roots plus an optional extra CA), with an optional bearer token and a
//! timeout per query.
//!
//! The shell around the pure core: nothing here knows about KPIs. Every failure becomes a
//! [`KpiError`] whose message says what happened in words an operator can act on: connection
//! refused, HTTP status, Prometheus' own `error`, an answer that is not one number.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::jiff::Timestamp;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use super::KpiError;

/// Largest answer read, in bytes: a cycle's batched queries return one row per touchpoint and
/// label value, a few MiB for tens of thousands of touchpoints.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Queries longer than this (URL-encoded) are POSTed as a form instead of a GET URL, which
/// proxies and servers cap at a few KiB.
const MAX_GET_QUERY_BYTES: usize = 4096;
/// System CA bundles, in the order the usual distributions place them.
const SYSTEM_CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Where Prometheus is and how to talk to it.
#[derive(Clone, Debug, PartialEq)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus-operated.monitoring:9090` (a path prefix such as
    /// `https://gateway/prometheus` is kept).
    pub url: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<BearerToken>,
    /// A PEM file of CA certificates trusted in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// Longest time for one query, connection included; also passed to Prometheus as `timeout`.
    pub timeout: Duration,
    /// Queries in flight at once during a cycle.
    pub concurrency: usize,
}

impl PrometheusConfig {
    /// A configuration with the defaults: no token, system roots, 30 s per query, 8 at once.
    pub fn new(url: impl Into<String>) -> PrometheusConfig {
        PrometheusConfig {
            url: url.into(),
            bearer_token: None,
            ca_file: None,
            timeout: Duration::from_secs(30),
            concurrency: 8,
        }
    }
}

/// A bearer token, given directly or read from a file at every query (so a rotated projected
/// service-account token is picked up).
#[derive(Clone, PartialEq)]
pub enum BearerToken {
    /// The token itself.
    Value(String),
    /// A file holding the token (trailing whitespace ignored).
    File(PathBuf),
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BearerToken::Value(_) => f.write_str("Value(<redacted>)"),
            BearerToken::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// Why a client cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The URL is not an absolute http(s) URL.
    #[error("invalid Prometheus URL {url:?}: {message}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The CA file cannot be read or holds no certificate.
    #[error("cannot use the CA file {path}: {message}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the TLS configuration.
    #[error("cannot configure TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// One series of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value (may be NaN or infinite).
    pub value: f64,
}

/// The answer to an instant query.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryResult {
    /// A scalar.
    Scalar(f64),
    /// An instant vector (possibly empty).
    Vector(Vec<Sample>),
}

/// A Prometheus HTTP API client. Cheap to share (`&self` everywhere); counts the queries it sends.
pub struct PrometheusClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    token: Option<BearerToken>,
    timeout: Duration,
    concurrency: usize,
    sent: AtomicU64,
}

impl std::fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusClient")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl PrometheusClient {
    /// Builds a client: checks the URL and loads the CA file now, so a misconfiguration stops the
    /// operator at start-up rather than turning every KPI Unknown.
    pub fn new(config: PrometheusConfig) -> Result<PrometheusClient, ConfigError> {
        let base = config.url.trim_end_matches('/').to_owned();
        let invalid = |message: &str| ConfigError::InvalidUrl {
            url: config.url.clone(),
            message: message.to_owned(),
        };
        let uri: http::Uri = base
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(invalid("expected http:// or https://")),
        }
        if uri.host().is_none() {
            return Err(invalid("no host"));
        }
        if uri.query().is_some() {
            return Err(invalid("a base URL has no query string"));
        }

        let mut roots = rustls::RootCertStore::empty();
        let system_bundle = std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .into_iter()
            .chain(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from))
            .find(|p| p.is_file());
        if let Some(certs) =
            system_bundle.and_then(|bundle| CertificateDer::pem_file_iter(bundle).ok())
        {
            roots.add_parsable_certificates(certs.flatten());
        }
        if let Some(ca_file) = &config.ca_file {
            let ca_error = |message: String| ConfigError::CaFile {
                path: ca_file.display().to_string(),
                message,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
                .map_err(|e| ca_error(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| ca_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_error("no PEM certificate in it".into()));
            }
            let (_, refused) = roots.add_parsable_certificates(certs);
            if refused > 0 {
                return Err(ca_error(format!(
                    "{refused} certificate(s) could not be parsed"
                )));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(config.timeout));
        connector.set_nodelay(true);
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(PrometheusClient {
            http,
            base,
            token: config.bearer_token,
            timeout: config.timeout,
            concurrency: config.concurrency.max(1),
            sent: AtomicU64::new(0),
        })
    }

    /// The base URL queries go to.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Queries in flight at once during a cycle.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// HTTP queries sent since the client was built.
    pub fn queries_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Runs an instant query at `time`.
    pub async fn query(&self, query: &str, time: Timestamp) -> Result<QueryResult, KpiError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.timeout, self.send(query, time)).await {
            Ok(answer) => answer,
            Err(_) => Err(KpiError::Timeout(self.timeout)),
        }
    }

    /// Runs an instant query that must give one number: a scalar or a vector of at most one
    /// series (`None` when it has none).
    pub async fn query_number(
        &self,
        query: &str,
        time: Timestamp,
    ) -> Result<Option<f64>, KpiError> {
        match self.query(query, time).await? {
            QueryResult::Scalar(value) => Ok(Some(value)),
            QueryResult::Vector(samples) => match samples.as_slice() {
                [] => Ok(None),
                [only] => Ok(Some(only.value)),
                several => Err(KpiError::UnexpectedResult(format!(
                    "the query returned {} series, not one number: aggregate it, e.g. with sum() (first: {:?})",
                    several.len(),
                    several[0].labels
                ))),
            },
        }
    }

    async fn send(&self, query: &str, time: Timestamp) -> Result<QueryResult, KpiError> {
        let params = format!(
            "query={}&time={}&timeout={}ms",
            form_encode(query),
            unix_seconds(time),
            self.timeout.as_millis().max(1)
        );
        let (status, body) = self.fetch("/api/v1/query", params).await?;
        parse_answer(status, &body)
    }

    /// Prometheus' storage retention (`storageRetention` of `/api/v1/status/runtimeinfo`, its
    /// time part: `15d` of "15d or 512MiB"); `Ok(None)` when it states none (size-based only).
    pub async fn retention(&self) -> Result<Option<Duration>, KpiError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let (status, body) = tokio::time::timeout(
            self.timeout,
            self.fetch("/api/v1/status/runtimeinfo", String::new()),
        )
        .await
        .map_err(|_| KpiError::Timeout(self.timeout))??;
        if !(200..300).contains(&status) {
            return Err(KpiError::Http {
                status,
                body: snippet(&body),
            });
        }
        let info: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            KpiError::UnexpectedResult(format!("runtimeinfo is not JSON ({e}): {}", snippet(&body)))
        })?;
        Ok(info["data"]["storageRetention"]
            .as_str()
            .and_then(parse_retention))
    }

    async fn fetch(&self, path: &str, params: String) -> Result<(u16, Bytes), KpiError> {
        let endpoint = format!("{}{path}", self.base);
        let builder = if params.is_empty() {
            Request::builder().method(Method::GET).uri(endpoint)
        } else if params.len() <= MAX_GET_QUERY_BYTES {
            Request::builder()
                .method(Method::GET)
                .uri(format!("{endpoint}?{params}"))
        } else {
            Request::builder()
                .method(Method::POST)
                .uri(endpoint)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        };
        let body = if params.len() <= MAX_GET_QUERY_BYTES {
            Bytes::new()
        } else {
            Bytes::from(params)
        };
        let mut request = builder
            .header(header::ACCEPT, "application/json")
            .body(Full::new(body))
            .map_err(|e| KpiError::Unavailable(format!("cannot build the request: {e}")))?;
        if let Some(token) = self.bearer_token()? {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                KpiError::Unavailable("the bearer token is not a valid header value".into())
            })?;
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let response = self.http.request(request).await.map_err(|e| {
            KpiError::Unavailable(format!("cannot reach {}: {}", self.base, error_chain(&e)))
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                KpiError::Unavailable(format!(
                    "the answer from {} broke off or exceeded {MAX_ANSWER_BYTES} bytes: {e}",
                    self.base
                ))
            })?
            .to_bytes();
        Ok((status.as_u16(), body))
    }

    fn bearer_token(&self) -> Result<Option<String>, KpiError> {
        match &self.token {
            None => Ok(None),
            Some(BearerToken::Value(token)) => Ok(Some(token.clone())),
            Some(BearerToken::File(path)) => read_token(path).map(Some),
        }
    }
}

fn read_token(path: &Path) -> Result<String, KpiError> {
    let token = std::fs::read_to_string(path).map_err(|e| {
        KpiError::Unavailable(format!(
            "cannot read the bearer token {}: {e}",
            path.display()
        ))
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(KpiError::Unavailable(format!(
            "the bearer token file {} is empty",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

/// An error and its causes, `a: b: c`, so "connection refused" is not hidden behind "client
/// error (Connect)".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Scalar((f64, String)),
    Vector(Vec<VectorSample>),
    // Read to say what came back, never used.
    Matrix(#[allow(dead_code)] serde::de::IgnoredAny),
    String(#[allow(dead_code)] serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// The time part of a `storageRetention` ("15d", "15d or 512MiB", "512MiB" has none).
pub fn parse_retention(text: &str) -> Option<Duration> {
    text.split(" or ")
        .map(str::trim)
        .find_map(|part| promql_parser::util::parse_duration(part).ok())
        .filter(|d| !d.is_zero())
}

/// Reads an answer of `/api/v1/query`: Prometheus' error body when it has one, else the HTTP
/// status, else the result.
pub fn parse_answer(status: u16, body: &[u8]) -> Result<QueryResult, KpiError> {
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(error) => {
            if !(200..300).contains(&status) {
                return Err(KpiError::Http {
                    status,
                    body: snippet(body),
                });
            }
            return Err(KpiError::UnexpectedResult(format!(
                "not a Prometheus API answer ({error}): {}",
                snippet(body)
            )));
        }
    };
    if answer.status != "success" {
        return Err(KpiError::QueryFailed {
            error_type: answer.error_type.unwrap_or_else(|| "unknown".into()),
            message: answer
                .error
                .unwrap_or_else(|| format!("status {:?} without an error", answer.status)),
        });
    }
    if !(200..300).contains(&status) {
        return Err(KpiError::Http {
            status,
            body: snippet(body),
        });
    }
    match answer.data {
        Some(Data::Scalar((_, value))) => Ok(QueryResult::Scalar(parse_value(&value)?)),
        Some(Data::Vector(samples)) => samples
            .into_iter()
            .map(|s| {
                Ok(Sample {
                    labels: s.metric,
                    value: parse_value(&s.value.1)?,
                })
            })
            .collect::<Result<_, _>>()
            .map(QueryResult::Vector),
        Some(Data::Matrix(_)) => Err(KpiError::UnexpectedResult(
            "the query returned a range vector (matrix), not one number".into(),
        )),
        Some(Data::String(_)) => Err(KpiError::UnexpectedResult(
            "the query returned a string, not a number".into(),
        )),
        None => Err(KpiError::UnexpectedResult(
            "a successful answer without data".into(),
        )),
    }
}

/// A sample value as Prometheus writes it: a decimal, `NaN`, `+Inf` or `-Inf`.
fn parse_value(text: &str) -> Result<f64, KpiError> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        other => other
            .parse()
            .map_err(|_| KpiError::UnexpectedResult(format!("{other:?} is not a sample value"))),
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    let mut cut: String = trimmed.chars().take(300).collect();
    if cut.len() < trimmed.len() {
        cut.push('…');
    }
    cut
}

/// `application/x-www-form-urlencoded` (and URL query) encoding: unreserved characters as they
/// are, every other byte as `%XX`.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A timestamp as Prometheus' `time` parameter: Unix seconds with milliseconds.
pub fn unix_seconds(time: Timestamp) -> String {
    let millis = time.as_millisecond();
    format!("{}.{:03}", millis.div_euclid(1000), millis.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    #[test]
    fn retention_is_the_time_part_of_storage_retention() {
        assert_eq!(
            super::parse_retention("15d"),
            Some(Duration::from_secs(15 * 86_400))
        );
        assert_eq!(
            super::parse_retention("30d or 512MiB"),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(super::parse_retention("512MiB"), None);
        assert_eq!(super::parse_retention(""), None);
    }

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn answers_are_read_with_their_errors() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"touchpoint":"web"},"value":[1700000000.5,"42.5"]},{"metric":{},"value":[1700000000.5,"NaN"]}]}}"#;
        let QueryResult::Vector(samples) = parse_answer(200, vector).expect("vector") else {
            panic!("not a vector");
        };
        assert_eq!(samples[0].value, 42.5);
        assert_eq!(samples[0].labels["touchpoint"], "web");
        assert!(samples[1].value.is_nan());

        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"+Inf"]}}"#;
        assert_eq!(
            parse_answer(200, scalar).expect("scalar"),
            QueryResult::Scalar(f64::INFINITY)
        );

        let bad = br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}"#;
        let error = parse_answer(400, bad).expect_err("bad query");
        assert_eq!(error.reason(), "QueryFailed");
        assert_eq!(
            error.to_string(),
            "Prometheus query failed (bad_data): 1:5: parse error: unexpected end of input"
        );

        let proxy = b"<html>502 Bad Gateway</html>";
        let error = parse_answer(502, proxy).expect_err("proxy");
        assert_eq!(
            error,
            KpiError::Http {
                status: 502,
                body: "<html>502 Bad Gateway</html>".into()
            }
        );

        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            parse_answer(200, matrix)
                .expect_err("matrix")
                .to_string()
                .contains("range vector")
        );
        let garbage = b"not json";
        assert_eq!(
            parse_answer(200, garbage).expect_err("garbage").reason(),
            "UnexpectedResult"
        );
        let odd = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#;
        assert!(parse_answer(200, odd).is_err());
    }

    #[test]
    fn parameters_are_encoded() {
        assert_eq!(
            form_encode(r#"sum(x{a=~"b|c"}[7d]) + 1"#),
            "sum%28x%7Ba%3D~%22b%7Cc%22%7D%5B7d%5D%29%20%2B%201"
        );
        let t: Timestamp = "2026-11-03T10:15:00.250Z".parse().expect("time");
        assert_eq!(unix_seconds(t), "1793700900.250");
    }

    #[test]
    fn invalid_configurations_are_refused_up_front() {
        for url in ["prometheus:9090", "ftp://host", "http://", "http://h/?q=1"] {
            let error = PrometheusClient::new(PrometheusConfig::new(url)).expect_err(url);
            assert!(
                matches!(error, ConfigError::InvalidUrl { .. }),
                "{url}: {error}"
            );
        }
        let mut config = PrometheusConfig::new("https://prometheus:9090");
        config.ca_file = Some("/nonexistent/ca.pem".into());
        let error = PrometheusClient::new(config.clone()).expect_err("missing CA");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
        let empty = std::env::temp_dir().join(format!("kpi-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "no certificate here\n").expect("write");
        config.ca_file = Some(empty.clone());
        let error = PrometheusClient::new(config).expect_err("empty CA");
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
        let _ = std::fs::remove_file(empty);
        assert_eq!(
            format!("{:?}", BearerToken::Value("secret".into())),
            "Value(<redacted>)"
        );
    }

    /// A one-shot HTTP server: answers `status` and `body` to the first request and hands back
    /// the request it got.
    async fn one_shot(
        status: u16,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Read the head, then as much body as Content-Length announces.
            loop {
                let n = stream.read(&mut buffer).await.expect("read");
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request).to_lowercase();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if request.len() >= head_end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&request).into_owned()
        });
        (url, served)
    }

    #[tokio::test]
    async fn queries_carry_the_token_time_and_query() {
        let (url, served) = one_shot(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"7"]}]}}"#,
        )
        .await;
        let mut config = PrometheusConfig::new(format!("{url}/prefix/"));
        config.bearer_token = Some(BearerToken::Value("s3cret".into()));
        let client = PrometheusClient::new(config).expect("client");
        let t: Timestamp = "2026-11-03T10:15:00Z".parse().expect("time");
        assert_eq!(client.query_number("sum(up)", t).await, Ok(Some(7.0)));
        let request = served.await.expect("served");
        assert!(
            request.starts_with(
                "GET /prefix/api/v1/query?query=sum%28up%29&time=1793700900.000&timeout=30000ms HTTP/1.1\r\n"
            ),
            "{request}"
        );
        assert!(
            request
                .to_lowercase()
                .contains("authorization: bearer s3cret\r\n"),
            "{request}"
        );
        assert_eq!(client.queries_sent(), 1);
    }

    #[tokio::test]
    async fn several_series_are_not_one_number() {
        let (url, _served) = one_shot(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"7"]},{"metric":{"a":"2"},"value":[1,"8"]}]}}"#,
        )
        .await;
        let client = PrometheusClient::new(PrometheusConfig::new(url)).expect("client");
        let error = client
            .query_number("x", Timestamp::UNIX_EPOCH)
            .await
            .expect_err("two series");
        assert!(error.to_string().contains("returned 2 series"), "{error}");
    }

    #[tokio::test]
    async fn connection_refused_and_timeouts_are_named() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let client = PrometheusClient::new(PrometheusConfig::new(url.clone())).expect("client");
        let error = client
            .query_number("up", Timestamp::UNIX_EPOCH)
            .await
            .expect_err("refused");
        assert_eq!(error.reason(), "PrometheusUnavailable");
        assert!(
            error
                .to_string()
                .to_lowercase()
                .contains("connection refused"),
            "{error}"
        );
        assert!(error.to_string().contains(&url), "{error}");

        // A server that accepts and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut config =
            PrometheusConfig::new(format!("http://{}", silent.local_addr().expect("addr")));
        config.timeout = Duration::from_millis(200);
        let client = PrometheusClient::new(config).expect("client");
        let error = client
            .query_number("up", Timestamp::UNIX_EPOCH)
            .await
            .expect_err("timeout");
        assert_eq!(error, KpiError::Timeout(Duration::from_millis(200)));
    }

    #[tokio::test]
    async fn long_queries_are_posted_and_token_files_are_read() {
        let (url, served) = one_shot(
            200,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#,
        )
        .await;
        let token_file = std::env::temp_dir().join(format!("kpi-token-{}", std::process::id()));
        std::fs::write(&token_file, "from-file\n").expect("write");
        let mut config = PrometheusConfig::new(url);
        config.bearer_token = Some(BearerToken::File(token_file.clone()));
        let client = PrometheusClient::new(config).expect("client");
        let long = format!("vector({})", "1 + ".repeat(2000) + "1");
        assert_eq!(
            client.query_number(&long, Timestamp::UNIX_EPOCH).await,
            Ok(Some(1.0))
        );
        let request = served.await.expect("served");
        assert!(
            request.starts_with("POST /api/v1/query HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request
                .to_lowercase()
                .contains("authorization: bearer from-file\r\n")
        );
        assert!(request.contains("application/x-www-form-urlencoded"));
        let _ = std::fs::remove_file(token_file);
    }
}
