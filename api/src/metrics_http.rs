//! `/metrics` over plain HTTP in the Prometheus text format (0.0.4), the one endpoint the
//! node agent and the control plane both serve their registries on. Behind the
//! `metrics-http` feature, so that the CLI builds without axum and prometheus.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use prometheus::{Encoder, Registry, TextEncoder};

/// Everything `registry` holds, in the Prometheus text format (0.0.4).
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding into memory fails only on metrics the registry would have refused.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Serves `/metrics` on `listener`, answering each scrape with what `render` returns, until
/// `shutdown` completes. `render` runs off the async workers: encoding walks every series.
///
/// # Errors
/// When accepting connections fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: impl Fn() -> String + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let render = Arc::new(render);
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let render = Arc::clone(&render);
            async move {
                let text = tokio::task::spawn_blocking(move || render())
                    .await
                    .unwrap_or_default();
                ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response()
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Listens on `address` and serves `/metrics` there (see [`serve`]) in a task of its own
/// for as long as the process runs; a failure of that server is logged.
///
/// # Errors
/// When `address` cannot be listened on.
pub async fn spawn(
    address: SocketAddr,
    render: impl Fn() -> String + Send + Sync + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let server = serve(listener, render, std::future::pending());
    tokio::spawn(async move {
        if let Err(error) = server.await {
            tracing::error!(%error, %address, "the metrics endpoint failed");
        }
    });
    Ok(())
}
