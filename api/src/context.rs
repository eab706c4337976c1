//! Per-request context: the request id (correlation id) and the URL reported in `meta.url`.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::HeaderValue,
    middleware::Next,
    response::Response,
};
use uuid::Uuid;

/// The request id and URL of the request being served.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// From the client's `x-request-id` when it is sane, otherwise generated.
    pub request_id: String,
    /// `PUBLIC_BASE_URL` + path and query.
    pub url: String,
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// The context of the request being served; a generated one outside a request.
pub fn current() -> RequestContext {
    with_current(Clone::clone)
}

/// `f` of the context of the request being served (a generated one outside a request), without a copy.
pub fn with_current<R>(f: impl FnOnce(&RequestContext) -> R) -> R {
    if CURRENT.try_with(|_| ()).is_ok() {
        CURRENT.with(f)
    } else {
        f(&RequestContext {
            request_id: Uuid::new_v4().to_string(),
            url: String::new(),
        })
    }
}

/// The client's request id when it is 1–200 visible ASCII characters.
fn client_request_id(request: &Request) -> Option<String> {
    let value = request.headers().get("x-request-id")?.to_str().ok()?;
    let sane =
        !value.is_empty() && value.len() <= 200 && value.bytes().all(|b| b.is_ascii_graphic());
    sane.then(|| value.to_owned())
}

/// Middleware: establishes the [`RequestContext`] for the handler and echoes `x-request-id`. Its state is
/// `PUBLIC_BASE_URL` (`AppState::base_url`), all it needs.
pub async fn middleware(
    State(base_url): State<Arc<str>>,
    request: Request,
    next: Next,
) -> Response {
    let request_id = client_request_id(&request).unwrap_or_else(|| Uuid::new_v4().to_string());
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let ctx = RequestContext {
        request_id: request_id.clone(),
        url: format!("{base_url}{path}"),
    };
    let span = tracing::info_span!("request", request_id = %request_id, method = %request.method(), path = %request.uri().path());
    let mut response = CURRENT
        .scope(
            ctx,
            tracing::Instrument::instrument(next.run(request), span),
        )
        .await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
