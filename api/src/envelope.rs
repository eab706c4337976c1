//! The eHealth response envelope: `{"meta":{code,url,type,request_id},"data":…}`.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{context, ApiError};

/// The largest `page` accepted.
pub const MAX_PAGE: i64 = 10_000_000;
/// The largest `page_size` accepted.
pub const MAX_PAGE_SIZE: i64 = 100;
/// The `page_size` of a list that names none.
pub const DEFAULT_PAGE_SIZE: i64 = 50;

/// The `meta` object of a response with `status`.
pub fn meta(status: StatusCode, kind: &str) -> Value {
    context::with_current(|ctx| json!(Meta::new(status, kind, ctx)))
}

/// The envelope of one object, serialized straight into the body (no tree of `Value`s built first). The
/// fields are in the order `json!` gives its keys (sorted), so the bytes are those of [`meta`]'s envelope.
#[derive(Serialize)]
struct Envelope<'a, T> {
    data: T,
    meta: Meta<'a>,
}

/// The `meta` object: `code`, `request_id`, `type` and `url` of the request being served.
#[derive(Serialize)]
struct Meta<'a> {
    code: u16,
    request_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    url: &'a str,
}

impl<'a> Meta<'a> {
    fn new(status: StatusCode, kind: &'a str, ctx: &'a context::RequestContext) -> Self {
        Meta {
            code: status.as_u16(),
            request_id: &ctx.request_id,
            kind,
            url: &ctx.url,
        }
    }
}

/// A response whose `data` is one object.
pub fn object(status: StatusCode, data: impl Serialize) -> Response {
    context::with_current(|ctx| {
        let meta = Meta::new(status, "object", ctx);
        (status, Json(Envelope { data, meta })).into_response()
    })
}

/// eHealth paging: `page_number` (from 1), `page_size`, `total_entries`, `total_pages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// 1-based page number.
    pub page_number: i64,
    /// Entries per page.
    pub page_size: i64,
    /// Entries in all pages.
    pub total_entries: i64,
}

impl Paging {
    /// A list's `page` (from 1, default 1) and `page_size` (1 to [`MAX_PAGE_SIZE`], default
    /// [`DEFAULT_PAGE_SIZE`]) query parameters, or the 422 naming the first one that is not such a number.
    pub fn requested(page: Option<&str>, page_size: Option<&str>) -> Result<(i64, i64), ApiError> {
        let number = |value: Option<&str>, entry: &str, default: i64, max: i64| match value {
            None => Ok(default),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid(
                        entry,
                        "number",
                        &format!("expected an integer from 1 to {max}"),
                    )
                }),
        };
        Ok((
            number(page, "$.page", 1, MAX_PAGE)?,
            number(page_size, "$.page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?,
        ))
    }

    fn to_json(self) -> Value {
        let total_pages = if self.total_entries == 0 {
            0
        } else {
            (self.total_entries + self.page_size - 1) / self.page_size
        };
        json!({
            "page_number": self.page_number,
            "page_size": self.page_size,
            "total_entries": self.total_entries,
            "total_pages": total_pages,
        })
    }
}

/// A 200 response whose `data` is a list, with eHealth `paging`.
pub fn list(data: Vec<Value>, paging: Paging) -> Response {
    let status = StatusCode::OK;
    (
        status,
        Json(json!({ "meta": meta(status, "list"), "data": data, "paging": paging.to_json() })),
    )
        .into_response()
}

/// A 200 response whose `data` is a whole, unpaged list (small, bounded collections).
pub fn items(data: Vec<Value>) -> Response {
    let status = StatusCode::OK;
    (
        status,
        Json(json!({ "meta": meta(status, "list"), "data": data })),
    )
        .into_response()
}
