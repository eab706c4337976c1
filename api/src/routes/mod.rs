//! The api's routes: one `router()` per resource, merged here, with eHealth-shaped 404 and 405 answers.

pub mod analysis_files;
pub mod audit;
pub mod jobs;
pub mod service_requests;

use axum::{response::IntoResponse, routing::get, Json, Router};
use serde_json::json;

use crate::{ApiError, AppState};

/// Every route of the api.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .merge(analysis_files::router())
        .merge(audit::router())
        .merge(jobs::router())
        .merge(service_requests::router())
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// Liveness: the process answers.
async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}
