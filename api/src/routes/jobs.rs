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
use chrono::{DateTime, Utc};
use ehealth_infra::jobs::{self, JobStatus, JobView, Link};
use serde::Serialize;
use serde_json::value::RawValue;
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
    let client = state.shared.get().await?;
    let job = jobs::view(&*client, id)
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

/// A job as the poll shows it; the fields in the order `json!` gave them (sorted), each shown only in the
/// statuses that have it.
#[derive(Serialize)]
struct Shown<'a> {
    /// Failed: the eHealth error object (`null` if none was stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Option<&'a RawValue>>,
    eta: DateTime<Utc>,
    /// Pending: the job itself; processed with a resource: the resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<&'a [Link]>,
    /// Processed without a resource: the command's answer (`null` if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    response_data: Option<Option<&'a RawValue>>,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<i32>,
}

/// The job's representation, by status.
pub fn render(job: &JobView) -> Response {
    let shown = Shown {
        error: None,
        eta: job.eta,
        links: None,
        response_data: None,
        status: job.status.as_str(),
        status_code: Some(job.status_code.unwrap_or(500)),
    };
    let response = job.response.as_deref();
    match job.status {
        JobStatus::Pending => {
            let own = [Link {
                entity: "job".to_owned(),
                href: job_href(job.id),
            }];
            let shown = Shown {
                links: Some(&own),
                status_code: None,
                ..shown
            };
            envelope::object(StatusCode::OK, shown)
        }
        JobStatus::Processed if !job.links.is_empty() => {
            let shown = Shown {
                links: Some(&job.links),
                ..shown
            };
            let mut answer = envelope::object(StatusCode::SEE_OTHER, shown);
            if let Ok(location) = HeaderValue::from_str(&job.links[0].href) {
                answer.headers_mut().insert(header::LOCATION, location);
            }
            answer
        }
        JobStatus::Processed => envelope::object(
            StatusCode::OK,
            Shown {
                response_data: Some(response),
                ..shown
            },
        ),
        JobStatus::Failed | JobStatus::FailedWithError => envelope::object(
            StatusCode::OK,
            Shown {
                error: Some(response),
                ..shown
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::Utc;
    use ehealth_infra::jobs::{JobStatus, JobView, Link};
    use serde_json::{json, value::to_raw_value, Value};
    use uuid::Uuid;

    use super::render;

    /// The typed body is what the tree of `Value`s it replaced gave, byte for byte: the same data, and keys
    /// in the order a `Value` (a sorted map) serializes them. (A stored outcome is passed on as PostgreSQL
    /// returns it, so inside `response_data`/`error` the keys come in `jsonb`'s order; here they are sorted.)
    #[tokio::test]
    async fn every_status_renders_the_shape_and_bytes_of_the_value_tree() {
        let id = Uuid::new_v4();
        let eta = Utc::now();
        let resource = Link {
            entity: "service_request".to_owned(),
            href: format!("/api/service_requests/{id}"),
        };
        let error = json!({ "type": "not_found", "message": "Service request not found" });
        let cases = [
            (
                JobStatus::Pending,
                None,
                vec![],
                None,
                json!({ "status": "pending", "eta": eta, "links": [{ "entity": "job", "href": super::job_href(id) }] }),
            ),
            (
                JobStatus::Processed,
                Some(201),
                vec![resource.clone()],
                Some(json!({ "id": id })),
                json!({ "status": "processed", "status_code": 201, "eta": eta, "links": [resource] }),
            ),
            (
                JobStatus::Processed,
                Some(200),
                vec![],
                Some(json!({ "n": [1, "two"] })),
                json!({ "status": "processed", "status_code": 200, "eta": eta, "response_data": { "n": [1, "two"] } }),
            ),
            (
                JobStatus::Processed,
                None,
                vec![],
                None,
                json!({ "status": "processed", "status_code": 500, "eta": eta, "response_data": null }),
            ),
            (
                JobStatus::Failed,
                Some(404),
                vec![],
                Some(error.clone()),
                json!({ "status": "failed", "status_code": 404, "eta": eta, "error": error }),
            ),
            (
                JobStatus::FailedWithError,
                Some(500),
                vec![],
                None,
                json!({ "status": "failed_with_error", "status_code": 500, "eta": eta, "error": null }),
            ),
        ];
        for (status, status_code, links, response, expected) in cases {
            let view = JobView {
                id,
                status,
                status_code,
                response: response.map(|r| to_raw_value(&r).unwrap()),
                links,
                eta,
                updated_at: eta,
                owner_legal_entity_id: Uuid::new_v4(),
            };
            let body = axum::body::to_bytes(render(&view).into_body(), usize::MAX)
                .await
                .unwrap();
            let value: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(value["data"], expected, "{status:?}");
            assert_eq!(value["meta"]["type"], "object");
            assert_eq!(
                serde_json::to_vec(&value).unwrap(),
                body,
                "{status:?}: key order"
            );
        }
    }
}
