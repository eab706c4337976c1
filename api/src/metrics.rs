//! HTTP metrics middleware: every answered request counts in `http_requests_total` and
//! `http_request_duration_seconds`, labelled by method, route template and status.
//!
//! The route label is axum's `MatchedPath` (`/Jobs/{id}`), never the request path: paths carry ids, and a
//! label per id would grow the registry without bound. Requests that match no route share `unmatched`.

use std::time::Instant;

use axum::{extract::MatchedPath, extract::Request, middleware::Next, response::Response};
use ehealth_infra::metrics;

/// The route label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Middleware: times the request and records it once the response is ready. Install it with
/// `Router::layer`, which runs it after routing, where `MatchedPath` is known.
pub async fn track(request: Request, next: Next) -> Response {
    // `MatchedPath` is a shared string: kept for after the handler without copying it.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = metrics::method_label(request.method().as_str());
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    metrics::http_request(method, route, response.status().as_u16(), started.elapsed());
    response
}
