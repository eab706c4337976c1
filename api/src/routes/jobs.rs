//! `GET /Jobs/{id}` and `GET /api/jobs/{id}`: the eHealth async job pattern.
//!
//! pending → 200 with the job link and `Retry-After`; processed with a resource → 303 See Other to it;
//! processed with data of its own → 200 with `response_data`; failed → 200 with the error. Only the legal
//! entity that created a job may read it (404 to others). `ETag`/`If-None-Match` make polling cheap.

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use ehealth_infra::{
    jobs::{self, JobStatus, JobView},
    StoreError,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Caller,
    envelope,
    extract::PathId,
    intake::job_href,
    openapi::{
        schemas::{ErrorResponse, JobResponse},
        TAG_JOBS,
    },
    ApiError, AppState,
};

/// The scope needed to read jobs.
pub const SCOPE: &str = "job:read";
/// Seconds a client should wait before polling a pending job again.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// The job routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show))
        .routes(routes!(show_under_api))
}

/// Reads a job (the link a 202 gives).
#[utoipa::path(
    get,
    path = "/Jobs/{id}",
    tag = TAG_JOBS,
    operation_id = "get_job",
    params(
        ("id" = Uuid, Path, description = "The job's id, from the 202's link."),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: 304 while the job is unchanged."),
    ),
    responses(
        (status = 200, description = "Pending (with `Retry-After`), processed with data of its own (`response_data`), or failed (`error`).", body = JobResponse,
            headers(("ETag" = String, description = "The job's version."), ("Retry-After" = Option<u32>, description = "While pending: seconds to wait before polling again."))),
        (status = 303, description = "Processed: `Location` is the resource.", body = JobResponse,
            headers(("Location" = String, description = "The affected resource."), ("ETag" = String, description = "The job's version."))),
        (status = 304, description = "Not modified since the `If-None-Match` version."),
        (status = 404, description = "`Job not found`: unknown, or created by another legal entity.", body = ErrorResponse),
    ),
    security(("bearer" = ["job:read"])),
)]
async fn show(
    state: State<AppState>,
    caller: Caller,
    id: PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    read(state, caller, id, headers).await
}

/// Reads a job: the same as `GET /Jobs/{id}`.
#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    tag = TAG_JOBS,
    operation_id = "get_api_job",
    params(
        ("id" = Uuid, Path, description = "The job's id."),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: 304 while the job is unchanged."),
    ),
    responses(
        (status = 200, description = "Pending (with `Retry-After`), processed with data of its own, or failed.", body = JobResponse),
        (status = 303, description = "Processed: `Location` is the resource.", body = JobResponse,
            headers(("Location" = String, description = "The affected resource."))),
        (status = 304, description = "Not modified since the `If-None-Match` version."),
        (status = 404, description = "`Job not found`.", body = ErrorResponse),
    ),
    security(("bearer" = ["job:read"])),
)]
async fn show_under_api(
    state: State<AppState>,
    caller: Caller,
    id: PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    read(state, caller, id, headers).await
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    let client = state.pool.get().await.map_err(StoreError::from)?;
    let job = jobs::view(&client, id)
        .await?
        .filter(|job| job.owner_legal_entity_id == principal.legal_entity_id)
        .ok_or_else(|| ApiError::not_found("Job not found"))?;

    let etag = format!(
        "\"{}\"",
        hex::encode(
            &Sha256::digest(format!("{}:{}", job.id, job.updated_at.timestamp_micros()))[..16]
        )
    );
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        render(&job)
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    if job.status == JobStatus::Pending {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    Ok(response)
}

/// The job's representation, by status.
pub fn render(job: &JobView) -> Response {
    let status_code = job.status_code.unwrap_or(500);
    match job.status {
        JobStatus::Pending => envelope::object(
            StatusCode::OK,
            json!({
                "status": "pending",
                "eta": job.eta,
                "links": [{ "entity": "job", "href": job_href(job.id) }],
            }),
        ),
        JobStatus::Processed if !job.links.is_empty() => {
            let mut response = envelope::object(
                StatusCode::SEE_OTHER,
                json!({ "status": "processed", "status_code": status_code, "eta": job.eta, "links": job.links }),
            );
            if let Ok(location) = HeaderValue::from_str(&job.links[0].href) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        JobStatus::Processed => envelope::object(
            StatusCode::OK,
            json!({
                "status": "processed",
                "status_code": status_code,
                "eta": job.eta,
                "response_data": job.response.clone().unwrap_or(Value::Null),
            }),
        ),
        JobStatus::Failed | JobStatus::FailedWithError => envelope::object(
            StatusCode::OK,
            json!({
                "status": job.status.as_str(),
                "status_code": status_code,
                "eta": job.eta,
                "error": job.response.clone().unwrap_or(Value::Null),
            }),
        ),
    }
}
