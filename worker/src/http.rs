//! The worker's own HTTP listener on `WORKER_HTTP_ADDR`: `GET /metrics` for Prometheus and
//! `GET /health/live`, `GET /health/ready` (and `GET /health`, an alias of live) for the orchestrator. It
//! serves nothing else: commands reach the worker through the broker only.
//!
//! It is bound in `Worker::build` (so a taken port fails the start, and tests on port 0 learn the real
//! address) and served from `Worker::run_until` until shutdown.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use deadpool_postgres::Pool;
use ehealth_infra::{amqp::Topology, health, health::BrokerProbe, metrics, storage::Storage};
use serde_json::json;
use tokio::{net::TcpListener, sync::watch};
use uuid::Uuid;

/// What the worker's HTTP routes read.
#[derive(Clone)]
pub struct HttpState {
    /// The worker's pool (its gauges and the PostgreSQL check).
    pub pool: Pool,
    /// The object store (the files bucket check).
    pub storage: Storage,
    /// One broker connection for the RabbitMQ check and the queue gauges.
    pub broker: Arc<BrokerProbe>,
    /// The queues whose depth is exported.
    pub topology: Topology,
    /// The bound address, for `meta.url`.
    pub addr: SocketAddr,
}

/// The worker's routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(live))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(scrape))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` flips to true.
pub async fn serve(listener: TcpListener, state: HttpState, mut shutdown: watch::Receiver<bool>) {
    let addr = state.addr;
    tracing::info!(%addr, "worker http listening");
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(e) = served {
        tracing::error!(%addr, error = %e, "worker http listener failed");
    }
}

/// Liveness: the process answers.
async fn live() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// Readiness: PostgreSQL, RabbitMQ and the files bucket, concurrently and each bounded; 200
/// `{"status":"ready","checks":{…}}`, or 503 in the eHealth error shape naming what failed.
async fn ready(State(state): State<HttpState>, request: Request) -> Response {
    let readiness = health::readiness(&state.pool, &state.broker, &state.storage).await;
    if readiness.is_ready() {
        return Json(json!({ "status": "ready", "checks": readiness.checks_json() }))
            .into_response();
    }
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
    let body = json!({
        "meta": {
            "code": status.as_u16(),
            "url": format!("http://{}{}", state.addr, request.uri().path()),
            "type": "object",
            "request_id": request_id,
        },
        "error": readiness.error_json(),
        "status": "not_ready",
        "checks": readiness.checks_json(),
    });
    (status, Json(body)).into_response()
}

/// Prometheus scrape: refreshes the pool and outbox gauges and the queue depths concurrently (each bounded by
/// `metrics::REFRESH_TIMEOUT`), then renders every metric of the process.
async fn scrape(State(state): State<HttpState>) -> Response {
    tokio::join!(
        metrics::refresh_database(
            &state.pool,
            metrics::DatabaseGauges {
                outbox: true,
                feed_lag: false,
            },
        ),
        metrics::refresh_queues(&state.broker, &state.topology),
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        metrics::render(),
    )
        .into_response()
}
