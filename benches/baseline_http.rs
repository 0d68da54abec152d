//! The load test's yardstick: a bare hyper server on the same runtime and HTTP/1 settings as the
//! collector, answering 204 to everything without reading the body. The collector's single-event
//! throughput is reported as a fraction of this one's (`benches/collector-load.sh`).
//!
//! `cargo bench --bench baseline_http -- --listen 127.0.0.1:18081` serves until killed. Without
//! `--listen` it only prints this usage, so `cargo bench` and `cargo test --all-targets` never
//! block on it.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip_while(|arg| arg != "--listen").skip(1);
    let Some(listen) = args.next() else {
        println!("baseline_http: pass --listen ADDR to serve (benches/collector-load.sh does)");
        return Ok(());
    };
    let listen: SocketAddr = listen
        .parse()
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(listen))
}

async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("baseline_http listening on {listen}");
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let http = http.clone();
        tokio::spawn(async move {
            let service = service_fn(|_request| async {
                let mut response = Response::new(Empty::<Bytes>::new());
                *response.status_mut() = StatusCode::NO_CONTENT;
                Ok::<_, Infallible>(response)
            });
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
