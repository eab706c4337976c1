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
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    let method = metrics::method_label(request.method().as_str());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::http_request(method, route, response.status().as_u16(), started.elapsed());
    response
}
