//! Cliniko's conventions for the routes of spec 002 (patient attachments), which speak Cliniko's API, not the
//! eHealth envelope: HTTP Basic with the API token as the user name (or the bearer token), bare JSON
//! resources, and Cliniko's error shapes — `{"message":"Validation Failed","errors":{"field":"…"}}` for 422,
//! `{"message":…}` for every other error — for every error these routes can give, bad JSON and bad path
//! parameters included.
//!
//! [`ClinikoError`] wraps the api's [`ApiError`] and renders it in those shapes; the extractors here reject
//! with it. [`answer`] turns what `intake::enqueue_sync` answered (the eHealth envelope of a job's outcome)
//! into the Cliniko answer.

use axum::{
    body::Body,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use base64::Engine as _;
use ehealth_infra::identity::Principal;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use crate::{
    auth::Caller,
    error::{PAYLOAD_TOO_LARGE_MESSAGE, RETRY_AFTER_UNAVAILABLE_SECONDS, UNAVAILABLE_MESSAGE},
    extract::JsonBody,
    ApiError, AppState,
};

/// The `message` of every 422.
pub const VALIDATION_FAILED: &str = "Validation Failed";
/// The `message` of a 404 for an id that names nothing the caller may see.
pub const NOT_FOUND: &str = "Not found";
/// The largest answer body [`answer`] reads back (a job's outcome is small).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// An error of a Cliniko-style route: the api's error, rendered in Cliniko's shapes.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ClinikoError(#[from] pub ApiError);

impl From<ehealth_infra::StoreError> for ClinikoError {
    fn from(e: ehealth_infra::StoreError) -> Self {
        ClinikoError(ApiError::Store(e))
    }
}

impl From<ehealth_domain::Rejection> for ClinikoError {
    fn from(e: ehealth_domain::Rejection) -> Self {
        ClinikoError(ApiError::Rejected(e))
    }
}

impl ClinikoError {
    /// 404 `{"message":"Not found"}`.
    pub fn not_found() -> Self {
        ClinikoError(ApiError::not_found(NOT_FOUND))
    }

    /// 422 with one field's message.
    pub fn invalid(field: &str, message: &str) -> Self {
        ClinikoError(ApiError::invalid(&format!("$.{field}"), "invalid", message))
    }
}

/// Cliniko's 422 body: `{"message":"Validation Failed","errors":{field: message}}`.
pub fn validation_body(errors: Map<String, Value>) -> Value {
    json!({ "message": VALIDATION_FAILED, "errors": errors })
}

/// The field a JSON path names (`$.upload_url` → `upload_url`; the whole body → `base`).
fn field_of(entry: &str) -> String {
    let field = entry.strip_prefix("$.").unwrap_or(entry);
    if field.is_empty() || field == "$" {
        "base".to_owned()
    } else {
        field.to_owned()
    }
}

/// Cliniko's body for an eHealth `error` object (`type`, `message`, `invalid[]`) of `status`.
pub fn error_body(status: StatusCode, error: &Value) -> Value {
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        let mut errors = Map::new();
        for entry in error["invalid"].as_array().into_iter().flatten() {
            let field = field_of(entry["entry"].as_str().unwrap_or("$"));
            let message = entry["rules"][0]["description"]
                .as_str()
                .unwrap_or("is invalid");
            errors.entry(field).or_insert_with(|| Value::from(message));
        }
        if errors.is_empty() {
            errors.insert("base".to_owned(), error["message"].clone());
        }
        return validation_body(errors);
    }
    json!({ "message": error["message"].as_str().unwrap_or("Error") })
}

impl IntoResponse for ClinikoError {
    fn into_response(self) -> Response {
        let ClinikoError(error) = self;
        let (status, body) = match &error {
            ApiError::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                json!({ "message": "Unauthorized: an API token is required (HTTP Basic user name or bearer)" }),
            ),
            ApiError::Rejected(r) => {
                let status =
                    StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
                (status, error_body(status, &r.error_object()))
            }
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, json!({ "message": NOT_FOUND })),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({ "message": "Method not allowed" }),
            ),
            ApiError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, json!({ "message": message }))
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "message": PAYLOAD_TOO_LARGE_MESSAGE }),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({ "message": "Invalid Content-Type header, expected application/json" }),
            ),
            ApiError::Store(e) if e.is_unavailable() => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "message": UNAVAILABLE_MESSAGE }),
            ),
            ApiError::Store(_) | ApiError::Amqp(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "message": "Internal server error" }),
            ),
        };
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %error, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = %error, "request rejected");
        }
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"eHealth Jobs\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(RETRY_AFTER_UNAVAILABLE_SECONDS),
                );
            }
            _ => {}
        }
        response
    }
}

/// The authenticated caller of a Cliniko-style route: `Authorization: Basic base64(token:)` (Cliniko's way:
/// the API token as the user name, an empty password) or `Authorization: Bearer token`. A Basic credential is
/// read as that bearer token, so both go through the same [`Caller`] checks (unknown or expired: 401).
#[derive(Debug, Clone)]
pub struct ClinikoCaller(pub Caller);

impl FromRequestParts<AppState> for ClinikoCaller {
    type Rejection = ClinikoError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let basic = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, credentials) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("basic")
                    .then(|| credentials.trim().to_owned())
            });
        if let Some(credentials) = basic {
            let token = base64::engine::general_purpose::STANDARD
                .decode(credentials)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .map(|pair| {
                    pair.split_once(':')
                        .map_or(pair.clone(), |(user, _)| user.to_owned())
                })
                .filter(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| {
                    ClinikoError(ApiError::Unauthorized("bad Basic credentials".to_owned()))
                })?;
            let bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClinikoError(ApiError::Unauthorized("bad Basic credentials".to_owned()))
            })?;
            parts.headers.insert(header::AUTHORIZATION, bearer);
        }
        Caller::from_request_parts(parts, state)
            .await
            .map(ClinikoCaller)
            .map_err(ClinikoError)
    }
}

impl ClinikoCaller {
    /// The scope must be granted, the user and the legal entity active (403 otherwise).
    pub fn authorize(&self, scope: &str) -> Result<&Principal, ClinikoError> {
        self.0.authorize_active(scope).map_err(ClinikoError)
    }
}

/// A JSON body of type `T`, refused in Cliniko's shapes (415, 413, 422 naming the field).
pub struct ClinikoJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ClinikoJson<T> {
    type Rejection = ClinikoError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        JsonBody::<T>::from_request(request, state)
            .await
            .map(|JsonBody(body)| ClinikoJson(body))
            .map_err(ClinikoError)
    }
}

/// The int64 ids of a route's path, in order; a parameter that is not a positive int64 is 404.
pub struct PathInt64s(pub Vec<i64>);

impl<S: Send + Sync> FromRequestParts<S> for PathInt64s {
    type Rejection = ClinikoError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ClinikoError::not_found())?;
        params
            .iter()
            .map(|(_, value)| {
                value
                    .parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(ClinikoError::not_found)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(PathInt64s)
    }
}

impl PathInt64s {
    /// The first id.
    pub fn first(&self) -> Result<i64, ClinikoError> {
        self.0.first().copied().ok_or_else(ClinikoError::not_found)
    }
}

/// Every `link.self`-like string of `value` that is a path (`/v1/…`) made absolute under `base`.
pub fn absolute_links(value: &mut Value, base: &str) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                match item {
                    Value::String(path) if key == "self" && path.starts_with('/') => {
                        *path = format!("{base}{path}");
                    }
                    other => absolute_links(other, base),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| absolute_links(item, base)),
        _ => {}
    }
}

/// The Cliniko answer for what `intake::enqueue_sync` answered: the resource without the envelope (links
/// absolute under `base`), 204 as it is, an error in Cliniko's shapes; 202 (the job is still running, or
/// `Prefer: respond-async`) keeps the job link. Headers (`Location`, `Preference-Applied`, `Vary`) are kept,
/// `Location` made absolute.
pub async fn answer(response: Response, base: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let status = parts.status;
    if status == StatusCode::NO_CONTENT || status == StatusCode::ACCEPTED {
        return Response::from_parts(parts, body);
    }
    let bytes = match axum::body::to_bytes(body, MAX_ANSWER_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "a job's answer could not be read");
            return ClinikoError(ApiError::BadRequest("internal".to_owned())).into_response();
        }
    };
    let envelope: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut body = if status.is_success() {
        envelope["data"].clone()
    } else {
        error_body(status, &envelope["error"])
    };
    absolute_links(&mut body, base);
    if let Some(location) = parts
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|l| l.starts_with('/'))
        .and_then(|l| HeaderValue::from_str(&format!("{base}{l}")).ok())
    {
        parts.headers.insert(header::LOCATION, location);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, Body::from(bytes))
}
