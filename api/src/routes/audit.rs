//! Auditors' reads of the event log: one stream's history with its hash-chain check, and the global feed in
//! position order without gaps (see `event_store::read_feed`).

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use ehealth_infra::{event_store, StoreError};
use serde::Deserialize;
use serde_json::json;

use crate::{auth::Caller, envelope, extract::PathId, ApiError, AppState};

/// The scope needed to read the event log.
pub const SCOPE: &str = "audit:read";
/// The most events one feed page returns.
pub const MAX_FEED_PAGE: i64 = 1000;

/// The audit routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/audit/streams/{id}", get(stream))
        .route("/api/audit/events", get(feed))
}

async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    caller.authorize_active(SCOPE)?;
    let client = state.pool.get().await.map_err(StoreError::from)?;
    let events = event_store::read_stream(&client, id).await?;
    if events.is_empty() {
        return Err(ApiError::not_found("Stream not found"));
    }
    let chain_valid = event_store::verify_chain(&client, id).await?;
    Ok(envelope::object(
        StatusCode::OK,
        json!({ "stream_id": id, "chain_valid": chain_valid, "events": events }),
    ))
}

/// `after` (a position, default 0) and `limit` (1..=1000, default 100).
#[derive(Debug, Deserialize)]
struct FeedQuery {
    after: Option<String>,
    limit: Option<String>,
}

async fn feed(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<FeedQuery>,
) -> Result<Response, ApiError> {
    caller.authorize_active(SCOPE)?;
    let after = match &query.after {
        None => 0,
        Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::invalid(
                "$.after",
                "number",
                "expected a non-negative integer position",
            )
        })?,
    };
    let limit = match &query.limit {
        None => 100,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_FEED_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    "$.limit",
                    "number",
                    &format!("expected an integer from 1 to {MAX_FEED_PAGE}"),
                )
            })?,
    };
    let client = state.pool.get().await.map_err(StoreError::from)?;
    let events = event_store::read_feed(&client, after, limit).await?;
    let next_after = events.last().map_or(after, |e| e.position);
    let status = StatusCode::OK;
    Ok((
        status,
        Json(json!({ "meta": envelope::meta(status, "list"), "data": events, "paging": { "after": after, "next_after": next_after, "limit": limit } })),
    )
        .into_response())
}
