//! A scriptable OTLP/HTTP logs endpoint for the export tests: decodes every request with the
//! OpenTelemetry project's types, keeps it, and answers as told.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;

/// How the endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(dead_code)]
pub enum Mode {
    /// 200, every record accepted.
    Accept,
    /// This status, with `Retry-After` when given.
    Status(u16, Option<u32>),
    /// 200 with a partial success rejecting one record.
    Partial,
    /// Accepts after this long.
    Slow(Duration),
}

#[derive(Default)]
pub struct Seen {
    /// Every request, in arrival order, with its `Authorization` header.
    pub requests: Vec<(ExportLogsServiceRequest, Option<String>)>,
}

impl Seen {
    /// Every record of every accepted request.
    #[allow(dead_code)]
    pub fn records(&self) -> Vec<LogRecord> {
        self.requests
            .iter()
            .flat_map(|(request, _)| &request.resource_logs)
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| s.log_records.clone())
            .collect()
    }
}

pub struct Endpoint {
    pub addr: SocketAddr,
    #[allow(dead_code)]
    pub mode: Arc<Mutex<Mode>>,
    /// Requests the endpoint accepted (the others are dropped).
    pub accepted: Arc<Mutex<Seen>>,
}

impl Endpoint {
    pub async fn start(mode: Mode) -> Endpoint {
        Self::start_at("127.0.0.1:0".parse().expect("address"), mode).await
    }

    /// An endpoint on `addr` (one that was down until now, say).
    pub async fn start_at(addr: SocketAddr, mode: Mode) -> Endpoint {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mode = Arc::new(Mutex::new(mode));
        let accepted = Arc::new(Mutex::new(Seen::default()));
        let app = Router::new()
            .route("/v1/logs", post(logs))
            .with_state((mode.clone(), accepted.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Endpoint {
            addr,
            mode,
            accepted,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of what the endpoint accepted so far.
    #[allow(dead_code)]
    pub fn snapshot(&self) -> Seen {
        Seen {
            requests: self.accepted.lock().expect("seen").requests.clone(),
        }
    }

    #[allow(dead_code)]
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }
}

type Shared = (Arc<Mutex<Mode>>, Arc<Mutex<Seen>>);

async fn logs(State((mode, seen)): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    assert_eq!(
        headers.get(header::CONTENT_TYPE).expect("content type"),
        "application/x-protobuf"
    );
    let request = ExportLogsServiceRequest::decode(body).expect("an OTLP logs request");
    let mode = *mode.lock().expect("mode");
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().expect("ASCII").to_string());
    let ok = |partial: Option<ExportLogsPartialSuccess>| {
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ExportLogsServiceResponse {
                partial_success: partial,
            }
            .encode_to_vec(),
        )
            .into_response()
    };
    match mode {
        Mode::Accept => {
            seen.lock()
                .expect("seen")
                .requests
                .push((request, authorization));
            ok(None)
        }
        Mode::Slow(wait) => {
            tokio::time::sleep(wait).await;
            seen.lock()
                .expect("seen")
                .requests
                .push((request, authorization));
            ok(None)
        }
        Mode::Partial => ok(Some(ExportLogsPartialSuccess {
            rejected_log_records: 1,
            error_message: "one record rejected".into(),
        })),
        Mode::Status(status, retry_after) => {
            let mut response = StatusCode::from_u16(status)
                .expect("status")
                .into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
            }
            response
        }
    }
}
