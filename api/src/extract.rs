//! Extractors that answer bad input in the eHealth shape: JSON bodies with the exact path of the first
//! problem, query strings with the name of the bad parameter, and path parameters that must be UUIDs.
//!
//! Every rejection is an [`ApiError`], so no request ever gets axum's plain-text rejections: a body over the
//! limit is 413, a declared non-JSON body 415, a query parameter given twice 422.

use std::{collections::HashSet, marker::PhantomData, time::Duration};

use axum::{
    body::{BodyDataStream, Bytes},
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use futures_util::StreamExt;
use serde::{
    de::{value::MapAccessDeserializer, DeserializeOwned, MapAccess, Visitor},
    Deserialize, Deserializer,
};
use uuid::Uuid;

use crate::ApiError;

/// A JSON body of type `T`. The `Content-Type` must be `application/json` or `application/*+json` (415
/// otherwise, also when it is missing); the body must be one JSON object and nothing after it, fitting `T`
/// (422 naming the entry, e.g. `$.used_by_legal_entity.identifier.value`).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if content_type(&request) != Some(true) {
            return Err(unsupported(request).await);
        }
        let bytes = read_body(request).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like [`JsonBody`], for routes whose clients may leave the `Content-Type` out (spec 000's `PATCH`): a body
/// without one is read as JSON; a declared non-JSON type is still 415.
pub struct LenientJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for LenientJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if content_type(&request) == Some(false) {
            return Err(unsupported(request).await);
        }
        let bytes = read_body(request).await?;
        parse_json(&bytes).map(LenientJsonBody)
    }
}

/// An optional JSON body (recall, cancel): an empty or blank body, or `null`, is `None`; anything else is read
/// like [`LenientJsonBody`].
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let declared = content_type(&request);
        let bytes = read_body(request).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
            return Ok(OptionalJsonBody(None));
        }
        if declared == Some(false) {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(|body| OptionalJsonBody(Some(body)))
    }
}

/// 415, after reading and dropping the body (within bounds) so that the client reads the answer.
async fn unsupported(request: Request) -> ApiError {
    drain(request.into_body().into_data_stream()).await;
    ApiError::UnsupportedMediaType
}

/// Whether the request declares a JSON `Content-Type` (`None` when it declares none). JSON is
/// `application/json` or a structured `application/…+json` type, with any parameters (`; charset=utf-8`);
/// `application/jsonx` or `application/json-patch` are not.
fn content_type(request: &Request) -> Option<bool> {
    let value = request.headers().get(header::CONTENT_TYPE)?;
    let Ok(value) = value.to_str() else {
        return Some(false);
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .and_then(|subtype| subtype.strip_suffix("+json"))
            .is_some_and(|name| !name.is_empty() && !name.contains(['/', ' ']));
    Some(json)
}

/// The largest request body read: 2 MiB (every body of this api is a small JSON object).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// How much of a body over the limit is read and dropped before answering 413, so that a client still
/// sending it reads the answer instead of a reset connection.
const MAX_DRAIN_BYTES: usize = 64 * 1024 * 1024;
/// How long that may take.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The whole body, up to [`MAX_BODY_BYTES`]: 413 beyond it (after reading and dropping the rest, within
/// bounds), 400 when the body cannot be read.
async fn read_body(request: Request) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = request.into_body().into_data_stream();
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        drain(stream).await;
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|_| ApiError::BadRequest("the request body could not be read".to_owned()))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            drain(stream).await;
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// Reads and drops the rest of a body, at most [`MAX_DRAIN_BYTES`] within [`DRAIN_TIME`].
async fn drain(mut stream: BodyDataStream) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > MAX_DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Parses one JSON object into `T`, reporting the first problem's JSON path. Anything but an object at the
/// top (an array would otherwise fill a struct's fields in order) and anything after the object are 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let Object(value) = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
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
    })?;
    deserializer.end().map_err(|e| {
        ApiError::invalid(
            "$",
            "json",
            &format!("expected the end of the body after the JSON object: {e}"),
        )
    })?;
    Ok(value)
}

/// A `T` that must be written as a JSON object: serde would also fill a struct from an array, field by field,
/// so `["a","b"]` would pass for `{"category":"a","code":"b"}`. Use it for nested objects of request bodies;
/// [`parse_json`] applies it to the top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// A query string of type `T` (whose fields are usually `Option<String>`, validated by the handler). A
/// parameter given twice (`?page=1&page=2`) is 422 naming it; so is a query string that does not fit `T`.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::invalid("$", "format", &e.to_string()))?;
        let mut seen = HashSet::new();
        if let Some((name, _)) = pairs.iter().find(|(name, _)| !seen.insert(name.as_str())) {
            return Err(ApiError::invalid(
                &format!("$.{name}"),
                "duplicate",
                "the parameter must be given at most once",
            ));
        }
        serde_urlencoded::from_str(query)
            .map(QueryParams)
            .map_err(|e| ApiError::invalid("$", "format", &e.to_string()))
    }
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

/// The path parameters, percent-decoded; empty when one is not UTF-8 once decoded.
async fn raw_params<S: Send + Sync>(parts: &mut Parts, state: &S) -> Vec<String> {
    match axum::extract::RawPathParams::from_request_parts(parts, state).await {
        Ok(params) => params.iter().map(|(_, v)| v.to_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Two UUID path parameters and a last, free-text one (percent-decoded), e.g.
/// `{patientId}/…/{analysisId}/files/{fileName}`. The UUIDs answer 404 like [`PathIds`]; a last
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

/// Three path parameters of which the first two must be UUIDs (404 otherwise) and the last names a
/// resource by id: `None` when it is not a UUID, for the handler to answer its own 404.
pub struct PathIdsAndId(pub Uuid, pub Uuid, pub Option<Uuid>);

impl<S: Send + Sync> FromRequestParts<S> for PathIdsAndId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = raw_params(parts, state).await;
        let id = params.get(2).and_then(|v| Uuid::parse_str(v).ok());
        Ok(PathIdsAndId(uuid_at(&params, 0)?, uuid_at(&params, 1)?, id))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Pair {
        a: String,
        #[serde(default)]
        b: Option<String>,
    }

    #[test]
    fn an_object_parses_and_an_array_for_a_struct_is_refused() {
        assert_eq!(
            parse_json::<Pair>(br#" {"a":"x"} "#).unwrap(),
            Pair {
                a: "x".to_owned(),
                b: None
            }
        );
        for body in [&br#"["x"]"#[..], b"[]", b"\"x\"", b"1", b"null"] {
            assert!(parse_json::<Pair>(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn anything_after_the_object_is_refused() {
        for body in [&br#"{"a":"x"} x"#[..], br#"{"a":"x"}{}"#, br#"{"a":"x"} 1"#] {
            assert!(parse_json::<Pair>(body).is_err(), "{body:?}");
        }
    }
}
