//! Command intake: a command becomes a job and an outbox row in one transaction, is published after commit,
//! and is answered as its source document says.
//!
//! # How a route opts in ([`Answer`])
//! A route calls one of two functions with the same arguments; nothing else in its handler changes:
//! - [`enqueue`] ([`Answer::Async`]) for a document that promises `202 Accepted` (004, every lifecycle
//!   command): 202 + the job link at once, unless the client sends `Prefer: wait=N`.
//! - [`enqueue_sync`] ([`Answer::Sync`]) for a document that promises the outcome itself (000: finalize 200,
//!   `isSend` 200, delete 200; 002: create 201, archive 204): the route waits for its job up to
//!   `SYNC_WAIT_SECONDS` (`Config::sync_wait_seconds`, default 10) and answers the job's own status and
//!   body — the resource, or the error a synchronous service would have answered (404, 409, 422 …). Past
//!   the wait, or under `Prefer: respond-async`, it answers 202 + the job link like an async route.
//!
//! The worker decides the outcome (`Handled::answer` in the worker: status code, body, links; a rejection's
//! status and error); the route only chooses whether to wait for it. A sync route documents in its
//! `#[utoipa::path]` both the outcome's statuses (with their bodies) and the 202 (`JobAcceptedResponse`),
//! and takes `CommandHeaders` as parameters.
//!
//! # `Prefer` (RFC 7240)
//! Preferences come from any number of `Prefer` headers, several to a header; names are case-insensitive,
//! the first occurrence of a name counts, and parameters after `;` and unknown preferences are ignored.
//! `wait=N` (capped at [`MAX_WAIT_SECONDS`]) replaces the route's default wait; `respond-async` alone means
//! no wait, and with `wait=N` means "202 if it takes longer than N seconds". An answer names the preferences
//! it honoured in `Preference-Applied`, and every answer carries `Vary: Prefer`.
//!
//! Waiting costs no queries: the request sleeps until the process's `job_finished` listener wakes it
//! ([`ehealth_infra::finished_jobs`]).

use std::time::Duration;

use axum::{
    http::{header::VARY, HeaderMap, HeaderValue, StatusCode},
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

/// The longest wait honoured (`Prefer: wait` and `SYNC_WAIT_SECONDS`), in seconds.
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

/// How a route answers, by its source document (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 202 + the job link at once; the job's outcome only under `Prefer: wait=N`.
    Async,
    /// The job's outcome, waiting up to `SYNC_WAIT_SECONDS` for it; 202 + the job link past that or under
    /// `Prefer: respond-async`.
    Sync,
}

/// Accepts a command as a job and answers 202 with the job link (or, under `Prefer: wait=N`, the job's
/// outcome if it ends within N seconds): for routes whose document is asynchronous.
pub async fn enqueue(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    request: CommandRequest,
) -> Result<Response, ApiError> {
    enqueue_answering(state, principal, headers, request, Answer::Async).await
}

/// Accepts a command as a job and answers the job's own outcome (its status and body), waiting for it up
/// to `SYNC_WAIT_SECONDS`; past that, or under `Prefer: respond-async`, 202 with the job link: for routes
/// whose document promises a synchronous answer.
pub async fn enqueue_sync(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    request: CommandRequest,
) -> Result<Response, ApiError> {
    enqueue_answering(state, principal, headers, request, Answer::Sync).await
}

/// Accepts a command as a job and answers it as `answer` and the client's `Prefer` headers say.
pub async fn enqueue_answering(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    request: CommandRequest,
    answer: Answer,
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
    let job = match jobs::submit_with_fingerprint(&state.shared, new, &request.fingerprint).await? {
        Submitted::Created(job, message) => {
            // Published by the publisher's background task: the request answers right after the commit;
            // the outbox row guarantees delivery (the relay publishes whatever stays unmarked).
            state
                .publisher
                .publish_in_background(&state.pool, std::slice::from_ref(&message));
            tracing::info!(job_id = %job.id, job_type = %job.job_type, stream_id = %job.stream_id, "job accepted");
            ehealth_infra::metrics::job_accepted(&job.job_type);
            job
        }
        Submitted::Existing(job) => {
            tracing::info!(job_id = %job.id, "identical command: returning its job");
            job
        }
    };
    let preferences = Preferences::parse(headers);
    let wait = match (preferences.wait, answer) {
        (Some(seconds), _) => seconds,
        (None, _) if preferences.respond_async => 0,
        (None, Answer::Sync) => state.config.sync_wait_seconds.min(MAX_WAIT_SECONDS),
        (None, Answer::Async) => 0,
    };
    let current = if job.status == JobStatus::Pending && wait > 0 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        state.finished_jobs.wait(&state.pool, job, deadline).await
    } else {
        job
    };
    let pending = current.status == JobStatus::Pending;
    let mut response = if pending {
        pending_response(&current)
    } else {
        answer_finished(state, principal, &current).await?
    };
    let mut applied = Vec::new();
    if pending && preferences.respond_async {
        applied.push("respond-async".to_owned());
    }
    if let Some(seconds) = preferences.wait {
        applied.push(format!("wait={seconds}"));
    }
    let headers = response.headers_mut();
    headers.append(VARY, HeaderValue::from_static("prefer"));
    let applied = Some(applied.join(", ")).filter(|a| !a.is_empty());
    if let Some(value) = applied.and_then(|a| HeaderValue::from_str(&a).ok()) {
        headers.insert("preference-applied", value);
    }
    Ok(response)
}

/// The finished job's answer for `principal`: its outcome, unless that shows a resource `principal` could not
/// GET now (e.g. a service request released by the legal entity that had used it) — then the job's own
/// representation, which links to the resource without showing it.
async fn answer_finished(
    state: &AppState,
    principal: &Principal,
    job: &Job,
) -> Result<Response, ApiError> {
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
        crate::routes::jobs::render(&job.view())
    } else {
        outcome_response(job)
    })
}

/// The preferences of a request's `Prefer` headers (RFC 7240) that command routes honour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preferences {
    /// `respond-async`: answer 202 rather than wait (after `wait` seconds, if that is given too).
    pub respond_async: bool,
    /// `wait=N`, capped at [`MAX_WAIT_SECONDS`]: wait up to N seconds for the job's outcome.
    pub wait: Option<u64>,
}

impl Preferences {
    /// Reads every `Prefer` header: comma-separated preferences, each `name[=value]` with optional
    /// `;`-separated parameters (ignored). Names are case-insensitive, a value may be quoted, the first
    /// occurrence of a name counts, and unknown or malformed preferences are ignored.
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut preferences = Self::default();
        let (mut seen_wait, mut seen_async) = (false, false);
        let values = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok());
        for preference in values.flat_map(split_unquoted_commas) {
            let token = preference.split(';').next().unwrap_or_default();
            let (name, value) = match token.split_once('=') {
                Some((name, value)) => (name.trim(), Some(unquote(value.trim()))),
                None => (token.trim(), None),
            };
            if name.eq_ignore_ascii_case("wait") && !seen_wait {
                seen_wait = true;
                preferences.wait = value
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .map(|v| v.parse::<u64>().unwrap_or(u64::MAX).min(MAX_WAIT_SECONDS));
            } else if name.eq_ignore_ascii_case("respond-async") && !seen_async {
                seen_async = true;
                preferences.respond_async = value.is_none_or(str::is_empty);
            }
        }
        preferences
    }
}

/// A value without the quotes of a quoted string.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// The comma-separated elements of a header value, commas inside quoted strings kept.
fn split_unquoted_commas(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.retain(|p| !p.trim().is_empty());
    parts
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn preferences(values: &[&str]) -> Preferences {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("prefer", HeaderValue::from_str(value).unwrap());
        }
        Preferences::parse(&headers)
    }

    #[test]
    fn prefer_headers_are_read_as_rfc_7240_says() {
        let none = Preferences::default();
        assert_eq!(preferences(&[]), none);
        assert_eq!(
            preferences(&["respond-async"]),
            Preferences {
                respond_async: true,
                wait: None
            }
        );
        let both = Preferences {
            respond_async: true,
            wait: Some(5),
        };
        assert_eq!(preferences(&["respond-async, wait=5"]), both);
        assert_eq!(
            preferences(&["wait=5", "respond-async"]),
            both,
            "several headers"
        );
        assert_eq!(
            preferences(&["Respond-Async , WAIT = \"5\""]),
            both,
            "case, spaces, quotes"
        );
        assert_eq!(
            preferences(&["handling=lenient; foo=\"a,b\", wait=7;x=1"]),
            Preferences {
                respond_async: false,
                wait: Some(7)
            },
            "unknown preferences and parameters are ignored"
        );
        assert_eq!(
            preferences(&["wait=3, wait=9"]).wait,
            Some(3),
            "the first one counts"
        );
        assert_eq!(
            preferences(&["wait=99999999999999999999999"]).wait,
            Some(MAX_WAIT_SECONDS)
        );
        assert_eq!(preferences(&["wait=0"]).wait, Some(0));
        assert_eq!(
            preferences(&["wait=-1", "wait=x", "wait="]),
            none,
            "malformed ones are ignored"
        );
        assert_eq!(preferences(&["return=minimal"]), none);
    }
}
