//! The api's OpenAPI 3.1 description, generated from the code, served at `GET /openapi.json` and rendered for
//! people at `GET /docs`.
//!
//! Every route is registered through utoipa-axum's `OpenApiRouter` with `routes!`, which takes the
//! handler's `#[utoipa::path]` as the route's path and method: a route cannot exist without its
//! documentation. `tests/tests/openapi.rs` compares the served router's paths and methods with the document
//! and fails on any difference, so a route added with plain axum (`Router::route`) is caught too.
//!
//! The document's base ([`ApiDoc`]) holds what no handler says: the description, the tags and the security
//! schemes. [`finish`] adds the answers every authenticated operation shares (401, 403, 500, 503).

pub mod schemas;

use std::sync::Arc;

use axum::{
    http::{header, HeaderValue},
    response::{Html, IntoResponse, Response},
    Extension,
};
use utoipa::{
    openapi::{
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
        ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder,
    },
    IntoParams, Modify, OpenApi,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_scalar::Scalar;

use crate::AppState;

/// The name of the bearer-token security scheme.
pub const BEARER: &str = "bearer";
/// The name of the `api-key` header security scheme.
pub const API_KEY: &str = "api_key";

/// Tag of the service-request routes.
pub const TAG_SERVICE_REQUESTS: &str = "service requests";
/// Tag of the job routes.
pub const TAG_JOBS: &str = "jobs";
/// Tag of the audit routes.
pub const TAG_AUDIT: &str = "audit";
/// Tag of the spec-000 routes.
pub const TAG_ANALYSIS_FILES: &str = "analysis files (spec 000)";
/// Tag of the spec-002 routes.
pub const TAG_PATIENT_ATTACHMENTS: &str = "patient attachments (spec 002, Cliniko)";
/// The name of the HTTP Basic security scheme (spec 002: the API token as the user name).
pub const BASIC: &str = "basic";
/// Tag of the spec-001 route.
pub const TAG_MEDIA_LINKS: &str = "media storage links (spec 001)";
/// Tag of the service's own routes (health, this description).
pub const TAG_SERVICE: &str = "service";

/// The document's base: what no handler says.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "eHealth Jobs",
        description = "Commands become jobs: a state-changing request is authorized, validated and answered \
            **202 Accepted** with a job link (`/Jobs/{id}`), or with the job's own outcome under \
            `Prefer: wait=N` (RFC 7240, N ≤ 30). Reads come from projections.\n\n\
            Every answer uses the eHealth envelope: `{\"meta\":{code,url,type,request_id},\"data\":…}`, \
            or `{\"meta\":…,\"error\":{\"type\",\"message\",\"invalid\"?}}` for errors. An `x-request-id` \
            header is honoured and becomes `meta.request_id`.\n\n\
            Checks run in this order: api-key (401) → token known and unexpired (401) → scope (403 \
            `invalid scopes`) → user active (403) → legal entity (403 `Client is not active`, or 409 for \
            spec 004's actions) → input (413, 415, 422) → existence and state (404, 409: decided by the \
            job). Any route answers 405 `method_not_allowed` with `Allow` for a method it does not take, \
            414 for a URI over 64 KB, and 503 `service_unavailable` with `Retry-After` while the database \
            cannot be reached.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = TAG_SERVICE_REQUESTS, description = "Service requests (spec 004 and the lifecycle). \
            Every route also needs the MIS client's `api-key` header."),
        (name = TAG_JOBS, description = "The eHealth async job pattern."),
        (name = TAG_AUDIT, description = "The event log, for auditors (`audit:read`)."),
        (name = TAG_ANALYSIS_FILES, description = "Analysis-result files of a clinic ERP: camelCase, \
            scope `gambit:erp`, bearer token only."),
        (name = TAG_PATIENT_ATTACHMENTS, description = "Cliniko's patient-attachment API: Cliniko's \
            conventions, not the eHealth envelope — HTTP Basic with the API token as the user name and an \
            empty password (or the bearer token), scopes `patient_attachment:read` / \
            `patient_attachment:write`, bare JSON with int64 ids as strings, errors `{\"message\":…}` and \
            422 `{\"message\":\"Validation Failed\",\"errors\":{field: message}}`. Upload: GET the \
            presigned POST form, POST the file to the store, then create."),
        (name = TAG_MEDIA_LINKS, description = "Presigned links to the ambulatory-contracts bucket \
            (`MEDIA_BUCKET`) for third parties, scope `private_contracts:write`, with the MIS client's \
            `api-key`. Every link is recorded as a `media_link.issued` event of its folder's stream."),
        (name = crate::routes::contract_requests::TAG, description = "Contract requests (spec 003 and the \
            lifecycle): a draft with upload links, create and the lifecycle actions as jobs, document 003's \
            read with `urgent.documents`. Every route also needs the MIS client's `api-key` header."),
        (name = TAG_SERVICE, description = "The service itself."),
    ),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

/// Adds the two security schemes: the bearer token and the MIS client's `api-key` header.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token issued by `ehealth-admin token issue`. The requirement lists the scope \
                         the operation needs.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            BASIC,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "Spec 002 (Cliniko's way): the API token as the user name, an empty password.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "api-key",
                "The MIS client's secret, issued by `ehealth-admin api-key issue`.",
            ))),
        );
    }
}

/// The headers every command route takes.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct CommandHeaders {
    /// RFC 7240, one or more comma-separated preferences (unknown ones ignored). `wait=N` (N ≤ 30): answer
    /// with the job's own outcome if it ends within N seconds, else 202. `respond-async`: answer 202 with the
    /// job link at once (with `wait=N`: after N seconds), also on the routes that by their document wait for
    /// their job (`SYNC_WAIT_SECONDS`). Honoured preferences are named in `Preference-Applied`.
    #[param(rename = "Prefer", example = "respond-async, wait=10")]
    pub prefer: Option<String>,
    /// Makes a command idempotent for 24 h: a retry with the same key and body gets the first job's
    /// outcome; the same key with another command is 422. At most 255 characters.
    #[param(rename = "Idempotency-Key", max_length = 255)]
    pub idempotency_key: Option<String>,
}

/// The served forms of the document.
#[derive(Debug)]
pub struct Published {
    json: String,
    html: String,
}

impl Published {
    /// Renders `document` as JSON and as the `/docs` page.
    pub fn new(document: &Document) -> Self {
        let json = document.to_json().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the OpenAPI document could not be serialized");
            String::from("{}")
        });
        let html = Scalar::new(document.clone())
            .custom_html(DOCS_HTML)
            .to_html();
        Self { json, html }
    }
}

/// The `/docs` page: Scalar's API reference over the embedded document. The page loads Scalar's script from
/// a CDN when it is opened; the document itself is in the page.
const DOCS_HTML: &str = r#"<!doctype html>
<html>
<head>
    <title>eHealth Jobs API</title>
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1"/>
</head>
<body>
<script id="api-reference" type="application/json">
$spec
</script>
<script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference"></script>
</body>
</html>
"#;

/// The routes of the description itself.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = TAG_SERVICE,
    responses((status = 200, description = "The OpenAPI 3.1 description of this api.", content_type = "application/json", body = Object)),
)]
async fn openapi_json(Extension(published): Extension<Arc<Published>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        published.json.clone(),
    )
        .into_response()
}

/// This document, for people (Scalar; its script loads from a CDN).
#[utoipa::path(
    get,
    path = "/docs",
    tag = TAG_SERVICE,
    responses((status = 200, description = "An HTML page rendering this description.", content_type = "text/html", body = String)),
)]
async fn docs(Extension(published): Extension<Arc<Published>>) -> Html<String> {
    Html(published.html.clone())
}

/// Completes the document built from the routes: every operation with a security requirement also answers
/// 401, 403, 500 and 503 in the eHealth error shape (unless it says more about them itself).
pub fn finish(mut document: Document) -> Document {
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorResponse")))
                        .build(),
                )
                .build(),
        )
    };
    let shared = [
        (
            "401",
            "`access_denied`: the api-key or the bearer token is missing, unknown or expired.",
        ),
        (
            "403",
            "`forbidden`: `invalid scopes`, `user is not active` or `Client is not active`.",
        ),
        (
            "500",
            "`internal_error`: an unexpected fault (logged, never detailed).",
        ),
        (
            "503",
            "`service_unavailable` with `Retry-After`: the database cannot be reached for now.",
        ),
    ];
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            if operation.security.as_ref().is_none_or(Vec::is_empty) {
                continue;
            }
            for (status, description) in shared {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error(description));
            }
        }
    }
    document
}
