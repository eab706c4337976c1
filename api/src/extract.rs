//! Extractors that answer bad input in the eHealth shape: JSON bodies with the exact path of the first
//! problem, and path parameters that must be UUIDs.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::ApiError;

/// A JSON body of type `T`. A body that is not JSON, or does not fit `T`, is answered with 422 naming the
/// entry (`$.used_by_legal_entity.identifier.value`); a wrong content type with 415.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|_| ApiError::invalid("$", "json", "the body could not be read"))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON into `T`, reporting the first problem's JSON path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let entry = if path == "." {
            "$".to_owned()
        } else {
            format!("$.{path}")
        };
        let inner = e.into_inner();
        let rule = if inner.is_syntax() || inner.is_eof() {
            "json"
        } else {
            "cast"
        };
        ApiError::invalid(&entry, rule, &inner.to_string())
    })
}

/// One path parameter that must be a UUID, e.g. `{id}`; anything else is 404 (no such resource).
pub struct PathId(pub Uuid);

/// Two path parameters that must be UUIDs, e.g. `{patient_id}/…/{id}`.
pub struct PathIds(pub Uuid, pub Uuid);

fn uuid_at(params: &[String], index: usize) -> Result<Uuid, ApiError> {
    params
        .get(index)
        .and_then(|v| Uuid::parse_str(v).ok())
        .ok_or_else(|| ApiError::not_found("Resource not found"))
}

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = raw_params(parts, state).await;
        Ok(PathId(uuid_at(&params, params.len().saturating_sub(1))?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = raw_params(parts, state).await;
        Ok(PathIds(uuid_at(&params, 0)?, uuid_at(&params, 1)?))
    }
}

async fn raw_params<S: Send + Sync>(parts: &mut Parts, state: &S) -> Vec<String> {
    match axum::extract::RawPathParams::from_request_parts(parts, state).await {
        Ok(params) => params.iter().map(|(_, v)| v.to_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Two UUID path parameters and a last, free-text one (percent-decoded), e.g.
/// `{patient_id}/…/{analysis_id}/files/{file_name}`. The UUIDs answer 404 like [`PathIds`]; a last
/// parameter that is not UTF-8 once decoded is 422 on `$.fileName`.
pub struct PathIdsAndName(pub Uuid, pub Uuid, pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathIdsAndName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::invalid("$.fileName", "format", "must be UTF-8 once percent-decoded")
            })?;
        let params: Vec<String> = params.iter().map(|(_, v)| v.to_owned()).collect();
        let name = params.get(2).cloned().unwrap_or_default();
        Ok(PathIdsAndName(
            uuid_at(&params, 0)?,
            uuid_at(&params, 1)?,
            name,
        ))
    }
}
