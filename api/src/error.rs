//! The api's error and its one mapping to HTTP: the eHealth error shape.
//!
//! `{"meta":{…},"error":{"type":"validation_failed","message":…,"invalid":[…]}}`. Internal details are logged
//! here, once, and never sent to clients.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use ehealth_domain::{rejection::error_object, InvalidEntry, Rejection};
use ehealth_infra::{amqp::AmqpError, jobs::SubmitError, StoreError};
use serde_json::{json, Value};

use crate::envelope;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: missing, unknown or expired credentials.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403/404/409/422 decided by a rule (the domain's or the api's own).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// 404 for an unknown route.
    #[error("route not found")]
    RouteNotFound,
    /// 405 `method_not_allowed` (axum adds the `Allow` header).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 400 `bad_request`: the request could not be read at all.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 413 `request_entity_too_large`: the body is over the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415: the body is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 503 while the database cannot be reached ([`StoreError::is_unavailable`]), else 500.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 500: the broker failed where the api could not defer to the relay.
    #[error(transparent)]
    Amqp(#[from] AmqpError),
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::IdempotencyKeyReused => ApiError::Rejected(Rejection::invalid(
                "$.headers.idempotency-key",
                "unique",
                "Idempotency-Key was already used with a different request",
            )),
            SubmitError::Store(e) => ApiError::Store(e),
        }
    }
}

impl ApiError {
    /// 403 with the given message.
    pub fn forbidden(message: &str) -> Self {
        ApiError::Rejected(Rejection::forbidden(message))
    }

    /// 404 with the given message.
    pub fn not_found(message: &str) -> Self {
        ApiError::Rejected(Rejection::not_found(message))
    }

    /// 409 with the given message.
    pub fn conflict(message: &str) -> Self {
        ApiError::Rejected(Rejection::conflict(message))
    }

    /// 422 on one entry.
    pub fn invalid(entry: &str, rule: &str, description: &str) -> Self {
        ApiError::Rejected(Rejection::invalid(entry, rule, description))
    }

    fn status_and_body(&self) -> (StatusCode, Value) {
        match self {
            ApiError::Unauthorized(message) => {
                (StatusCode::UNAUTHORIZED, error_body(401, message, &[]))
            }
            ApiError::Rejected(r) => {
                let status =
                    StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
                (status, error_body(r.status, &r.message, &r.invalid))
            }
            ApiError::RouteNotFound => (
                StatusCode::NOT_FOUND,
                error_body(404, "Route not found", &[]),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                error_body(405, "Method not allowed", &[]),
            ),
            ApiError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, error_body(400, message, &[]))
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                error_body(413, PAYLOAD_TOO_LARGE_MESSAGE, &[]),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                error_body(
                    415,
                    "Invalid Content-Type header, expected application/json",
                    &[],
                ),
            ),
            ApiError::Store(e) if e.is_unavailable() => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "type": SERVICE_UNAVAILABLE, "message": UNAVAILABLE_MESSAGE }),
            ),
            ApiError::Store(_) | ApiError::Amqp(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body(500, "Internal server error", &[]),
            ),
        }
    }
}

/// The error `type` of a 503: the database is unreachable for now; the request may be sent again.
pub const SERVICE_UNAVAILABLE: &str = "service_unavailable";
/// The message of a 503.
pub const UNAVAILABLE_MESSAGE: &str = "Service is temporarily unavailable, retry later";
/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_UNAVAILABLE_SECONDS: u32 = 2;

/// The message of a 413.
pub const PAYLOAD_TOO_LARGE_MESSAGE: &str = "The request body is too large";

/// The eHealth `error` object for a status, message and invalid entries. The `type` is the domain's name for
/// the status (`validation_failed`, …), or the api's own for statuses only HTTP knows (405, 413, 414, 431).
pub fn error_body(status: u16, message: &str, invalid: &[InvalidEntry]) -> Value {
    let mut body = error_object(status, message, invalid);
    if let Some(kind) = http_error_type(status) {
        body["type"] = Value::from(kind);
    }
    body
}

/// The error `type` of the statuses that only the HTTP layer answers.
pub fn http_error_type(status: u16) -> Option<&'static str> {
    match status {
        405 => Some("method_not_allowed"),
        413 => Some("request_entity_too_large"),
        414 => Some("request_uri_too_long"),
        431 => Some("request_header_fields_too_large"),
        _ => None,
    }
}

/// A response carrying an eHealth `error` object.
pub fn error_response(status: StatusCode, error: Value) -> Response {
    (
        status,
        Json(json!({ "meta": envelope::meta(status, "object"), "error": error })),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.status_and_body();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "request refused: database unavailable");
        } else if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            // A 422 names the entries it refused (`invalid[].entry`, JSON paths); other answers log `[]`.
            let invalid: Vec<&str> = body["invalid"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|entry| entry["entry"].as_str())
                .collect();
            tracing::info!(status = status.as_u16(), error = %self, ?invalid, "request rejected");
        }
        let mut response = error_response(status, body);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_UNAVAILABLE_SECONDS),
            );
        }
        response
    }
}
