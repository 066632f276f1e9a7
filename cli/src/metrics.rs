//! The reconciler's HTTP endpoint for Prometheus, on axum: `GET /metrics` answers the
//! reconciler's [`Metrics::render`] (OpenMetrics text), `GET /healthz` answers `ok`. The same
//! routes are what `hakiri serve` mounts.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use hakiri_reconciler::metrics::{self, Metrics};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::error::{CliError, CliResult};

/// Binds `addr` (before any work starts, so a taken port fails the command at once).
///
/// # Errors
/// A failed error naming the address and what to do.
pub(crate) async fn bind(addr: SocketAddr) -> CliResult<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        CliError::failed(
            "metrics_addr",
            format!("cannot serve metrics on {addr}: {e}"),
        )
        .hint("choose a free HOST:PORT for --metrics-addr (e.g. 127.0.0.1:9464)")
    })
}

/// `/metrics` and `/healthz` for `metrics`.
pub(crate) fn routes(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = metrics.render();
                async move { ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], body) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
}

/// Serves [`routes`] on `listener` until `stop` fires; requests in flight then finish.
pub(crate) fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let served = axum::serve(listener, routes(metrics))
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            warn!(%error, "the metrics endpoint stopped");
        }
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_openmetrics_text_and_404s_the_rest() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        metrics.dispatched.inc_by(7);
        let stop = CancellationToken::new();
        let server = serve(listener, metrics, stop.clone());

        let ok = get(addr, "/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(
            ok.to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text"),
            "{ok}"
        );
        assert!(ok.contains("\r\n\r\n# HELP"), "{ok}");
        assert!(ok.contains("hakiri_runs_dispatched_total 7"), "{ok}");
        assert!(get(addr, "/healthz").await.ends_with("\r\n\r\nok\n"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let first = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let taken = first.local_addr().unwrap();
        let error = bind(taken).await.unwrap_err().render_text();
        assert!(
            error.contains(&format!("cannot serve metrics on {taken}")),
            "{error}"
        );
        assert!(error.contains("--metrics-addr"), "{error}");
    }
}
