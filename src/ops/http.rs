//! The operations HTTP listener: `/healthz` and `/metrics`.
//!
//! Bound to loopback by default (`http.listen: 127.0.0.1:9464`): metrics name cameras and
//! health tells whether the login works, which is nobody else's business.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::metrics::metrics;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "http.listen {addr}: cannot listen: {source}; pick a free address or set http.enabled: false"
)]
pub struct HttpError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Bind now (so a busy port fails startup), serve until `shutdown`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError { addr, source })
}

pub async fn serve(listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    if let Ok(addr) = listener.local_addr() {
        info!("http: /healthz and /metrics on http://{addr}");
    }
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        tokio::spawn(async move {
            let svc =
                service_fn(
                    |req: Request<Incoming>| async move { Ok::<_, Infallible>(route(&req)) },
                );
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!("http: connection ended: {e}");
            }
        });
    }
}

fn route(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match req.uri().path() {
        "/healthz" => match metrics().health() {
            Ok(()) => (
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ok\n".to_owned(),
            ),
            Err(problems) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                problems.iter().map(|p| format!("{p}\n")).collect(),
            ),
        },
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics().render(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /healthz or /metrics\n".to_owned(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}
