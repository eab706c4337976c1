//! The api's routes: one `router()` per resource, merged here with the OpenAPI description, and
//! eHealth-shaped 404 and 405 answers.
//!
//! Every route is added through `OpenApiRouter::routes(routes!(handler))`, which takes its path and method
//! from the handler's `#[utoipa::path]`: a route cannot exist without its documentation. Never add a route
//! with `Router::route` (`tests/tests/openapi.rs` fails on any route the document lacks).

pub mod analysis_files;
pub mod audit;
pub mod contract_requests;
pub mod health;
pub mod jobs;
pub mod media_links;
pub mod patient_attachments;
pub mod service_requests;

use std::sync::Arc;

use axum::{response::IntoResponse, Extension, Json, Router};
use serde_json::json;
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    openapi::{self, schemas::Health, ApiDoc, Published},
    ApiError, AppState,
};

/// Every route of the api with its documentation, before the state is given: the router and the OpenAPI
/// document it serves at `/openapi.json`.
pub fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .merge(health::router())
        .merge(openapi::router())
        .merge(analysis_files::router())
        .merge(audit::router())
        .merge(contract_requests::router())
        .merge(jobs::router())
        .merge(media_links::router())
        .merge(patient_attachments::router())
        .merge(service_requests::router())
        .split_for_parts();
    let document = openapi::finish(document);
    let router = router
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(Extension(Arc::new(Published::new(&document))));
    (router, document)
}

/// Every route of the api.
pub fn router(state: AppState) -> Router {
    documented().0.with_state(state)
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = openapi::TAG_SERVICE,
    responses((status = 200, description = "The process answers.", body = Health)),
)]
async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}
