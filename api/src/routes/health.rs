//! Operating the api: `GET /health/live` (the process answers), `GET /health/ready` (PostgreSQL, RabbitMQ
//! and the files bucket answer; see `ehealth_infra::health`) and `GET /metrics` (Prometheus text format).
//! `GET /health`, the older alias of live, stays in `routes/mod.rs`.
//!
//! None of them needs a token: they are meant for the orchestrator and Prometheus, which should reach them
//! on an internal network only. Readiness sends no error details (they are logged), only which dependency
//! failed and how long each check took.

use std::collections::BTreeMap;

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use ehealth_infra::{health, metrics};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    envelope,
    openapi::{
        schemas::{ErrorObject, Meta},
        TAG_SERVICE,
    },
    AppState,
};

/// The operating routes (`GET /health` itself, the alias of live, is registered in `routes/mod.rs`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(scrape))
}

/// The answer of a live process.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Live {
    /// Always `ok`.
    pub status: String,
}

/// One dependency's check.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResult {
    /// `up` or `down`.
    pub status: String,
    /// How long the check took.
    pub duration_ms: u64,
    /// When down: `timeout` (no answer within 2 s) or `error` (the details are logged, never sent).
    pub reason: Option<String>,
}

/// Every dependency answered.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "checks": {"postgres": {"status": "up", "duration_ms": 2}, "rabbitmq": {"status": "up", "duration_ms": 1}, "s3": {"status": "up", "duration_ms": 4}}}))]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
    /// `postgres`, `rabbitmq` and `s3`.
    pub checks: BTreeMap<String, CheckResult>,
}

/// A dependency did not answer: the eHealth error shape, with every check.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"meta": {"code": 503, "url": "http://127.0.0.1:8080/health/ready", "type": "object", "request_id": "req-abc-123"}, "error": {"type": "service_unavailable", "message": "not ready: rabbitmq"}, "status": "not_ready", "checks": {"postgres": {"status": "up", "duration_ms": 2}, "rabbitmq": {"status": "down", "duration_ms": 1, "reason": "error"}, "s3": {"status": "up", "duration_ms": 4}}}))]
pub struct NotReady {
    /// See [`Meta`].
    pub meta: Meta,
    /// `service_unavailable`; the message names what failed (`not ready: rabbitmq`).
    pub error: ErrorObject,
    /// Always `not_ready`.
    pub status: String,
    /// `postgres`, `rabbitmq` and `s3`.
    pub checks: BTreeMap<String, CheckResult>,
}

/// Liveness: the process answers. Deliberately checks nothing else, so a database outage never gets the api
/// restarted (it answers 503 and heals by itself).
#[utoipa::path(
    get,
    path = "/health/live",
    tag = TAG_SERVICE,
    responses((status = 200, description = "The process answers.", body = Live)),
)]
async fn live() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// Readiness: 200 `{"status":"ready","checks":{…}}`, or 503 in the eHealth error shape naming what failed,
/// with the same per-check results.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = TAG_SERVICE,
    responses(
        (status = 200, description = "PostgreSQL (`SELECT 1`), RabbitMQ and the files bucket (`HeadBucket`) \
            answered, each checked concurrently within 2 s.", body = Ready),
        (status = 503, description = "A dependency did not answer: `not ready: <names>`.", body = NotReady),
    ),
)]
async fn ready(State(state): State<AppState>) -> Response {
    let readiness = health::readiness(&state.pool, &state.broker, &state.storage).await;
    if readiness.is_ready() {
        return Json(json!({ "status": "ready", "checks": readiness.checks_json() }))
            .into_response();
    }
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let body = json!({
        "meta": envelope::meta(status, "object"),
        "error": readiness.error_json(),
        "status": "not_ready",
        "checks": readiness.checks_json(),
    });
    (status, Json(body)).into_response()
}

/// Prometheus scrape: refreshes the pool gauges and the audit feed's lag (bounded by
/// `metrics::REFRESH_TIMEOUT`), then renders every metric of the process.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = TAG_SERVICE,
    responses((status = 200, description = "Every metric of the process in the Prometheus text format \
        (README, Operating).", body = String, content_type = "text/plain; version=0.0.4")),
)]
async fn scrape(State(state): State<AppState>) -> Response {
    metrics::refresh_database(
        &state.pool,
        metrics::DatabaseGauges {
            outbox: false,
            feed_lag: true,
        },
    )
    .await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        metrics::render(),
    )
        .into_response()
}
