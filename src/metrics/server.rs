//! The operator's HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz`
//! (etcd reachable and host caches synced; says whether this process leads).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

/// What `/readyz` reports, kept current by the operator.
pub trait Readiness: Send + Sync + 'static {
    /// `Ok(detail)` when ready, `Err(reason)` otherwise.
    fn ready(&self) -> Result<String, String>;
}

/// Serves the endpoints until shutdown; binding errors are returned so the CLI can name the address.
pub async fn serve(
    addr: SocketAddr,
    readiness: Arc<dyn Readiness>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(readiness);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|s| *s).await;
            })
            .await;
    }))
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], super::global().render())
}

async fn readyz(State(r): State<Arc<dyn Readiness>>) -> impl IntoResponse {
    match r.ready() {
        Ok(detail) => (StatusCode::OK, format!("ok: {detail}\n")),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}
