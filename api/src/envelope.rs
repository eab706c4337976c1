//! The eHealth response envelope: `{"meta":{code,url,type,request_id},"data":…}`.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use crate::context;

/// The `meta` object of a response with `status`.
pub fn meta(status: StatusCode, kind: &str) -> Value {
    let ctx = context::current();
    json!({ "code": status.as_u16(), "url": ctx.url, "type": kind, "request_id": ctx.request_id })
}

/// A response whose `data` is one object.
pub fn object(status: StatusCode, data: Value) -> Response {
    (
        status,
        Json(json!({ "meta": meta(status, "object"), "data": data })),
    )
        .into_response()
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
