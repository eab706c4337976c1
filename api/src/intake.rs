//! Command intake: a command becomes a job and an outbox row in one transaction, is published after commit,
//! and is answered 202 with the job link — or, under `Prefer: wait=N`, with the job's own outcome if it
//! finishes within N seconds. Waiting costs no queries: the request sleeps until the process's
//! `job_finished` listener wakes it ([`ehealth_infra::finished_jobs`]).

use std::time::Duration;

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use ehealth_domain::{service_request::ServiceRequestAggregate, Aggregate, ClientType};
use ehealth_infra::{
    identity::Principal,
    jobs::{self, Job, JobStatus, NewJob, Submitted},
    projection::service_request as service_request_projection,
    StoreError,
};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{context, envelope, error::error_response, ApiError, AppState};

/// The longest `Prefer: wait` honoured, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 30;

/// A command addressed to one aggregate instance.
pub struct CommandRequest {
    /// e.g. `service_request.release`.
    pub job_type: String,
    /// The aggregate type.
    pub stream_type: &'static str,
    /// The aggregate instance.
    pub stream_id: Uuid,
    /// The serialized domain command.
    pub command: Value,
    /// What the client sent — path parameters and the parsed body — without anything the server made (such
    /// as the id of a resource to create). An identical pending command and a repeated `Idempotency-Key` are
    /// recognised by it. For a command with no server-made value, the stream id and the command.
    pub fingerprint: Value,
}

/// Accepts a command as a job and answers it.
pub async fn enqueue(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    request: CommandRequest,
) -> Result<Response, ApiError> {
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    if idempotency_key.as_ref().is_some_and(|k| k.len() > 255) {
        return Err(ApiError::invalid(
            "$.headers.idempotency-key",
            "length",
            "must be at most 255 characters",
        ));
    }
    let new = NewJob {
        job_type: request.job_type,
        stream_type: request.stream_type.to_owned(),
        stream_id: request.stream_id,
        command: request.command,
        actor: principal.actor(),
        request_id: context::current().request_id,
        idempotency_key,
    };
    let job = match jobs::submit_with_fingerprint(&state.pool, new, &request.fingerprint).await? {
        Submitted::Created(job, message) => {
            state
                .publisher
                .publish_committed(&state.pool, std::slice::from_ref(&message))
                .await;
            tracing::info!(job_id = %job.id, job_type = %job.job_type, stream_id = %job.stream_id, "job accepted");
            ehealth_infra::metrics::job_accepted(&job.job_type);
            job
        }
        Submitted::Existing(job) => {
            tracing::info!(job_id = %job.id, "identical command: returning its job");
            job
        }
    };
    match prefer_wait(headers) {
        Some(wait) if job.status == JobStatus::Pending => {
            wait_for(state, principal, job, wait).await
        }
        _ if job.status != JobStatus::Pending => answer(state, principal, &job).await,
        _ => Ok(pending_response(&job)),
    }
}

/// The finished job's answer for `principal`: its outcome, unless that shows a resource `principal` could not
/// GET now (e.g. a service request released by the legal entity that had used it) — then the job's own
/// representation, which links to the resource without showing it.
async fn answer(state: &AppState, principal: &Principal, job: &Job) -> Result<Response, ApiError> {
    let hidden = job.status == JobStatus::Processed
        && job.stream_type == ServiceRequestAggregate::STREAM_TYPE
        && principal.client_type != ClientType::Nhs
        && {
            let client = state.pool.get().await.map_err(StoreError::from)?;
            !service_request_projection::get(&client, job.stream_id)
                .await?
                .is_some_and(|row| row.visible_to(principal.legal_entity_id))
        };
    Ok(if hidden {
        crate::routes::jobs::render(job)
    } else {
        outcome_response(job)
    })
}

/// The seconds of a `Prefer: wait=N` header (RFC 7240), capped at [`MAX_WAIT_SECONDS`].
pub fn prefer_wait(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|p| p.trim().strip_prefix("wait="))
        .find_map(|n| n.trim().parse::<u64>().ok())
        .map(|n| n.min(MAX_WAIT_SECONDS))
        .filter(|n| *n > 0)
}

async fn wait_for(
    state: &AppState,
    principal: &Principal,
    job: Job,
    seconds: u64,
) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let current = state.finished_jobs.wait(&state.pool, job, deadline).await;
    if current.status == JobStatus::Pending {
        return Ok(pending_response(&current));
    }
    let mut response = answer(state, principal, &current).await?;
    if let Ok(value) = HeaderValue::from_str(&format!("wait={seconds}")) {
        response.headers_mut().insert("preference-applied", value);
    }
    Ok(response)
}

/// The job link of a job.
pub fn job_href(id: Uuid) -> String {
    format!("/Jobs/{id}")
}

/// 202 with `{"status":"pending","eta":…,"links":[{"entity":"job","href":"/Jobs/<id>"}]}`.
pub fn pending_response(job: &Job) -> Response {
    let data = json!({
        "status": "pending",
        "eta": job.eta,
        "links": [{ "entity": "job", "href": job_href(job.id) }],
    });
    envelope::object(StatusCode::ACCEPTED, data)
}

/// What the command would have answered synchronously: the resource with the job's status code, or its
/// error.
pub fn outcome_response(job: &Job) -> Response {
    let status = job
        .status_code
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = job.response.clone().unwrap_or(Value::Null);
    match job.status {
        JobStatus::Processed if status == StatusCode::NO_CONTENT => status.into_response(),
        JobStatus::Processed => {
            let mut response = envelope::object(status, body);
            if let Some(href) = job.links.first().map(|l| l.href.clone()) {
                if let Ok(value) = HeaderValue::from_str(&href) {
                    response
                        .headers_mut()
                        .insert(axum::http::header::LOCATION, value);
                }
            }
            response
        }
        _ => error_response(status, body),
    }
}
