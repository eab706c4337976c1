//! Auditors' reads of the event log: one stream's history — its events up to a point in time, the state
//! folded from them and its hash-chain check — and the global feed, gap-free, filtered and paged by an opaque
//! cursor (see `event_store::read_feed`).
//!
//! Who reads what: an NHS token reads every stream. Any other token — the personal client types (MSP,
//! PRIMARY_CARE, PHARMACY, MSP_PHARMACY) and MIS alike, as for `GET /api/service_requests/{id}` — reads only
//! the streams that hold at least one event written for its own legal entity (`metadata.legal_entity_id`):
//! another stream is 404 as if it did not exist, and the feed leaves it out.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, SecondsFormat, Utc};
use ehealth_domain::{
    analysis_file::AnalysisFilesAggregate, service_request::ServiceRequestAggregate, Aggregate,
    ClientType,
};
use ehealth_infra::{
    event_store::{self, FeedCursor, FeedFilter, StoredEvent},
    identity::Principal,
    projection::view,
    StoreError,
};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    auth::Caller,
    envelope,
    extract::{PathId, QueryParams},
    openapi::{
        schemas::{AuditFeed, AuditStreamResponse, ErrorResponse},
        TAG_AUDIT,
    },
    ApiError, AppState,
};

/// The scope needed to read the event log.
pub const SCOPE: &str = "audit:read";
/// The most events one feed page returns.
pub const MAX_FEED_PAGE: i64 = 1000;
/// The events a feed page returns when `limit` is not given.
pub const DEFAULT_FEED_PAGE: i64 = 100;
/// The message of a 404 for a stream that does not exist or that the caller may not read.
pub const STREAM_NOT_FOUND: &str = "Stream not found";
/// The message of a 403 for a feed filtered to another legal entity by a caller that is not NHS.
pub const OTHER_LEGAL_ENTITY: &str = "Only NHS may read another legal entity's events";
/// The stream types the feed can be filtered to.
pub const STREAM_TYPES: [&str; 3] = [
    ServiceRequestAggregate::STREAM_TYPE,
    AnalysisFilesAggregate::STREAM_TYPE,
    ehealth_domain::media_link::MediaLinkAggregate::STREAM_TYPE,
];

/// The audit routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stream))
        .routes(routes!(feed))
}

/// The legal entity whose streams the caller is restricted to; `None` for NHS, which reads everything.
fn tenant(principal: &Principal) -> Option<Uuid> {
    (principal.client_type != ClientType::Nhs).then_some(principal.legal_entity_id)
}

/// A query parameter as given; an empty value counts as absent.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn parse_time(value: Option<&str>, entry: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::invalid(
                        entry,
                        "format",
                        "expected an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z",
                    )
                })
        })
        .transpose()
}

fn parse_uuid(value: Option<&str>, entry: &str) -> Result<Option<Uuid>, ApiError> {
    value
        .map(|v| {
            Uuid::parse_str(v).map_err(|_| ApiError::invalid(entry, "format", "expected a UUID"))
        })
        .transpose()
}

/// How far back `GET /api/audit/streams/{id}` looks: up to a global position or a time, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AsOf {
    Now,
    Position(i64),
    Time(DateTime<Utc>),
}

impl AsOf {
    fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        let Some(value) = value else {
            return Ok(AsOf::Now);
        };
        if value.bytes().all(|b| b.is_ascii_digit()) {
            return value.parse().map(AsOf::Position).map_err(|_| {
                ApiError::invalid("$.as_of", "format", "the position is out of range")
            });
        }
        parse_time(Some(value), "$.as_of").map(|t| t.map_or(AsOf::Now, AsOf::Time))
    }

    fn includes(self, event: &StoredEvent) -> bool {
        match self {
            AsOf::Now => true,
            AsOf::Position(position) => event.position <= position,
            AsOf::Time(time) => event.recorded_at <= time,
        }
    }

    fn to_json(self) -> Value {
        match self {
            AsOf::Now => Value::Null,
            AsOf::Position(position) => json!(position),
            AsOf::Time(time) => json!(time.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }
    }
}

/// `as_of`: a global position or an RFC 3339 time.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Cut the stream here, inclusive: a global position (digits) or an RFC 3339 time (`+` sent as `%2B`).
    /// Default: every event.
    #[param(
        example = "2026-01-31T12:00:00Z",
        pattern = r"^([0-9]{1,18}|[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))$"
    )]
    as_of: Option<String>,
}

/// One stream's history: its events up to `as_of`, the state folded from them and its chain check.
#[utoipa::path(
    get,
    path = "/api/audit/streams/{id}",
    tag = TAG_AUDIT,
    operation_id = "get_audit_stream",
    params(("id" = Uuid, Path, description = "The stream: a service request's id, an analysis files' `streamId`, or a media-link folder's stream (in the feed with `stream_type=media_link`)."), StreamQuery),
    responses(
        (status = 200, description = "The stream as of `as_of`.", body = AuditStreamResponse),
        (status = 404, description = "`Stream not found`: none, or not the caller's to read (or the id is not a UUID).", body = ErrorResponse),
        (status = 422, description = "`as_of` is neither a position nor an RFC 3339 time, or is given twice.", body = ErrorResponse),
    ),
    security(("bearer" = ["audit:read"])),
)]
async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    QueryParams(query): QueryParams<StreamQuery>,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    let as_of = AsOf::parse(given(&query.as_of))?;
    let client = state.pool.get().await.map_err(StoreError::from)?;
    let events = event_store::read_stream(&client, id).await?;
    let visible = tenant(principal).is_none_or(|le| event_store::written_for(&events, le));
    let Some(first) = events.first().filter(|_| visible) else {
        return Err(ApiError::not_found(STREAM_NOT_FOUND));
    };
    let stream_type = first.stream_type.clone();
    let chain_valid = event_store::verify_chain(&client, id).await?;
    // The stream as it was: the longest prefix of its events within `as_of` (a stream's positions and times
    // grow with its versions, so this is every event of the stream within `as_of`).
    let then = &events[..events.iter().take_while(|e| as_of.includes(e)).count()];
    // A log edited behind the service's back may hold an event that no longer decodes: the auditor still gets
    // the events and `chain_valid: false`, with no state, rather than an error.
    let state = match view::state_json(&stream_type, id, then) {
        Ok(state) => state,
        Err(StoreError::Data(e)) => {
            tracing::warn!(stream_id = %id, error = %e, "stream does not fold: shown without state");
            serde_json::Value::Null
        }
        Err(e) => return Err(e.into()),
    };
    Ok(envelope::object(
        StatusCode::OK,
        json!({
            "stream_id": id,
            "stream_type": stream_type,
            "as_of": as_of.to_json(),
            "version": then.last().map_or(0, |e| e.stream_version),
            "chain_valid": chain_valid,
            "events": then,
            "state": state,
        }),
    ))
}

/// `after` (a cursor from `paging.next_after`), `limit` (1..=1000, default 100) and the filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FeedQuery {
    /// `paging.next_after` of the previous page; from the start when absent. A bare position is 422.
    #[param(pattern = "^[A-Za-z0-9_-]+$")]
    after: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Only streams of this type.
    #[param(value_type = Option<String>, pattern = "^(service_request|analysis_files|media_link)$", example = "service_request")]
    stream_type: Option<String>,
    /// Only this stream.
    #[param(value_type = Option<Uuid>)]
    stream_id: Option<String>,
    /// Only events written for this legal entity (NHS only; another legal entity's from any other token: 403).
    #[param(value_type = Option<Uuid>)]
    legal_entity_id: Option<String>,
    /// Only events recorded at or after this time (RFC 3339).
    #[param(value_type = Option<chrono::DateTime<Utc>>)]
    from: Option<String>,
    /// Only events recorded before this time (RFC 3339), not earlier than `from`.
    #[param(value_type = Option<chrono::DateTime<Utc>>)]
    to: Option<String>,
}

impl FeedQuery {
    /// Validates every parameter (422 naming the first bad one) and returns the cursor, limit and filter.
    fn parse(&self) -> Result<(FeedCursor, i64, FeedFilter), ApiError> {
        let after = match given(&self.after) {
            None => FeedCursor::START,
            Some(v) => FeedCursor::decode(v).ok_or_else(|| {
                ApiError::invalid(
                    "$.after",
                    "cursor",
                    "expected paging.next_after of an earlier page; positions are no longer cursors: read \
                     again from the start (without after) and skip the positions already seen",
                )
            })?,
        };
        let limit = match given(&self.limit) {
            None => DEFAULT_FEED_PAGE,
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
        let stream_type = given(&self.stream_type)
            .map(|v| {
                STREAM_TYPES
                    .into_iter()
                    .find(|t| *t == v)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "$.stream_type",
                            "inclusion",
                            &format!("expected one of {}", STREAM_TYPES.join(", ")),
                        )
                    })
            })
            .transpose()?;
        let stream_id = parse_uuid(given(&self.stream_id), "$.stream_id")?;
        let legal_entity_id = parse_uuid(given(&self.legal_entity_id), "$.legal_entity_id")?;
        let from = parse_time(given(&self.from), "$.from")?;
        let to = parse_time(given(&self.to), "$.to")?;
        if let (Some(from), Some(to)) = (from, to) {
            if to < from {
                return Err(ApiError::invalid(
                    "$.to",
                    "range",
                    "must not be earlier than from",
                ));
            }
        }
        let filter = FeedFilter {
            stream_type,
            stream_id,
            legal_entity_id,
            from,
            to,
        };
        Ok((after, limit, filter))
    }
}

/// The global event feed, gap-free, in `(transaction, position)` order, a page at a time.
#[utoipa::path(
    get,
    path = "/api/audit/events",
    tag = TAG_AUDIT,
    operation_id = "get_audit_feed",
    params(FeedQuery),
    responses(
        (status = 200, description = "A page of events and the cursor of the next (`paging.next_after`).", body = AuditFeed),
        (status = 403, description = "`Only NHS may read another legal entity's events`, or the caller's checks.", body = ErrorResponse),
        (status = 422, description = "A bad parameter, named in `invalid[].entry`.", body = ErrorResponse),
    ),
    security(("bearer" = ["audit:read"])),
)]
async fn feed(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<FeedQuery>,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    let (after, limit, mut filter) = query.parse()?;
    if let Some(own) = tenant(principal) {
        if filter.legal_entity_id.is_some_and(|le| le != own) {
            return Err(ApiError::forbidden(OTHER_LEGAL_ENTITY));
        }
        filter.legal_entity_id = Some(own);
    }
    let client = state.pool.get().await.map_err(StoreError::from)?;
    let page = event_store::read_feed(&client, after, limit, &filter).await?;
    let status = StatusCode::OK;
    let paging = json!({
        "after": given(&query.after),
        "next_after": page.next_after.encode(),
        "limit": limit,
    });
    Ok((
        status,
        Json(json!({ "meta": envelope::meta(status, "list"), "data": page.events, "paging": paging })),
    )
        .into_response())
}
