//! Media storage links (spec 001): `POST /api/media_storage_links` gives a third party a presigned link to one
//! object of the ambulatory-contracts bucket (`MEDIA_BUCKET`), `{resource_id}/{resource_name}`.
//!
//! Synchronous, because the answer is the link: the handler decides inline with the domain
//! (`media_link::decide`), signs the link and appends the decision's `media_link.issued` event to the folder's
//! stream before it answers; a link whose event could not be written is never given out. No job: the command
//! changes nothing but the log, and its answer cannot wait for a worker.
//!
//! Checks in the order of the source document: `api-key` (401) → token (401) → scope
//! `private_contracts:write` (403) → user and legal entity active (403) → the body against
//! `api/schemas/media_storage_link.json` (422) → the folder (403 for a caller other than NHS naming another
//! legal entity's; 422 for an unknown one) → the decoded name and the content type (422).

use std::{borrow::Cow, sync::LazyLock};

use axum::{
    extract::{FromRequest, Request, State},
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use ehealth_domain::{
    media_link::{self, Action, Command, Event, MediaLinkAggregate},
    Aggregate, Context,
};
use ehealth_infra::{
    event_store::{self, Metadata},
    identity, StoreError,
};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::openapi::{schema::Schema, RefOr};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    auth::{ApiKey, Caller},
    context, envelope,
    extract::JsonBody,
    json_schema::BodySchema,
    openapi::{
        schemas::{ErrorResponse, MediaStorageLinkResponse},
        TAG_MEDIA_LINKS,
    },
    ApiError, AppState,
};

/// The scope of spec 001.
pub const SCOPE: &str = "private_contracts:write";
/// The 422 description of a folder no legal entity has.
pub const UNKNOWN_FOLDER: &str = "no legal entity has this id";
/// How often an append that lost a race with another link of the same folder is tried again.
const MAX_APPEND_ATTEMPTS: usize = 5;

/// The request body's schema: `api/schemas/media_storage_link.json`.
pub static REQUEST_SCHEMA: LazyLock<BodySchema> =
    LazyLock::new(|| BodySchema::compile(include_str!("../../schemas/media_storage_link.json")));

/// The body of `POST /api/media_storage_links`; its schema is the file `api/schemas/media_storage_link.json`,
/// the one the body is validated against.
pub struct MediaStorageLinkRequest;

impl utoipa::PartialSchema for MediaStorageLinkRequest {
    fn schema() -> RefOr<Schema> {
        REQUEST_SCHEMA.openapi_schema()
    }
}

impl utoipa::ToSchema for MediaStorageLinkRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("MediaStorageLinkRequest")
    }
}

/// The body once it fits the schema.
#[derive(Debug, Deserialize)]
struct Body {
    secret: Secret,
}

#[derive(Debug, Deserialize)]
struct Secret {
    action: Action,
    resource_name: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    resource_id: Option<Uuid>,
}

/// The media-link routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create))
}

/// Spec 001: a presigned link to one object of the media bucket, recorded for auditors.
#[utoipa::path(
    post,
    path = "/api/media_storage_links",
    tag = TAG_MEDIA_LINKS,
    operation_id = "create_media_storage_link",
    request_body(content = MediaStorageLinkRequest, content_type = "application/json", description = "`{\"secret\":{\"action\",\"resource_name\",\"content_type\"?,\"resource_id\"?}}`, validated against this schema (`api/schemas/media_storage_link.json`)."),
    responses(
        (status = 201, description = "The link, recorded as a `media_link.issued` event of the folder's stream (`GET /api/audit/streams/{id}`, `stream_type=media_link` in the feed).", body = MediaStorageLinkResponse,
            headers(("Location" = String, description = "The link itself (`secret_url`)."))),
        (status = 403, description = "`invalid scopes`, `user is not active`, `Client is not active`, or `Only NHS may request links to another legal entity's folder`.", body = ErrorResponse),
        (status = 413, description = "The body is over 2 MB.", body = ErrorResponse),
        (status = 415, description = "A body not declared as JSON.", body = ErrorResponse),
        (status = 422, description = "The body does not fit the schema (one `invalid` entry per problem), the decoded `resource_name` is not a safe object name, a `content_type` on a `GET` or `HEAD` link, or a `resource_id` no legal entity has.", body = ErrorResponse),
    ),
    security(("bearer" = ["private_contracts:write"], "api_key" = [])),
)]
async fn create(
    State(state): State<AppState>,
    _: ApiKey,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    // The body is read only now, so that every check of the caller comes first.
    let JsonBody(body) = JsonBody::<Value>::from_request(request, &state).await?;
    REQUEST_SCHEMA.validate(&body)?;
    let Body { secret } = serde_json::from_value(body)
        .map_err(|e| ApiError::invalid("$", "schema", &e.to_string()))?;
    let actor = principal.actor();
    let resource_id = media_link::folder(secret.resource_id, &actor)?;
    if resource_id != actor.legal_entity_id {
        let client = state.pool.get().await.map_err(StoreError::from)?;
        if identity::legal_entity(&client, resource_id)
            .await?
            .is_none()
        {
            return Err(ApiError::invalid(
                "$.secret.resource_id",
                "existence",
                UNKNOWN_FOLDER,
            ));
        }
    }
    let command = Command::Issue {
        link_action: secret.action,
        resource_id,
        resource_name: media_link::decode_resource_name(&secret.resource_name)?,
        content_type: secret.content_type,
        bucket: state.storage.media_bucket.clone(),
        ttl_seconds: state.storage.secrets_ttl.as_secs(),
    };
    let ctx = Context::new(event_store::now(), actor);
    // No rule reads the folder's earlier links: decided against the empty state, appended at the head.
    let events = MediaLinkAggregate::decide(&Default::default(), command, &ctx)?;
    let [Event::Issued {
        action,
        bucket,
        resource_id,
        resource_name,
        object_key,
        content_type,
        issued_at,
        expires_at,
        ..
    }] = events.as_slice()
    else {
        return Err(
            StoreError::Migration("a media link decision is one issued event".to_owned()).into(),
        );
    };
    let link = state
        .storage
        .presign_media_link(
            *action,
            bucket,
            object_key,
            content_type.as_deref(),
            *issued_at,
            *expires_at,
        )
        .await
        .map_err(StoreError::from)?;
    let stream = media_link::stream_id(*resource_id);
    append(&state, stream, &events, &ctx).await?;
    tracing::info!(%stream, action = action.as_str(), key = %object_key, "media link issued");
    let mut response = envelope::object(
        StatusCode::CREATED,
        json!({
            "action": action.as_str(),
            "bucket": bucket,
            "resource_id": resource_id,
            "resource_name": resource_name,
            "secret_url": link.url,
            "expires_at": expires_at,
        }),
    );
    if let Ok(location) = HeaderValue::from_str(&link.url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Appends `events` at the head of `stream` in a transaction that locks the stream's row, so links of one
/// folder issued at the same moment queue behind each other; again when two first links of a new folder met
/// (bounded; the decision does not depend on the head, so it stands).
async fn append(
    state: &AppState,
    stream: Uuid,
    events: &[Event],
    ctx: &Context,
) -> Result<(), ApiError> {
    let metadata = Metadata {
        causation_id: None,
        correlation_id: context::current().request_id,
        actor_user_id: ctx.actor.user_id,
        legal_entity_id: ctx.actor.legal_entity_id,
        client_type: ctx.actor.client_type.as_str().to_owned(),
    };
    let mut client = state.pool.get().await.map_err(StoreError::from)?;
    let mut last = None;
    for _ in 0..MAX_APPEND_ATTEMPTS {
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let head = event_store::lock_head::<MediaLinkAggregate>(&tx, stream).await?;
        match event_store::append::<MediaLinkAggregate>(&tx, stream, &head, events, &metadata).await
        {
            Ok(_) => {
                tx.commit().await.map_err(StoreError::from)?;
                return Ok(());
            }
            Err(e @ StoreError::Conflict { .. }) => {
                ehealth_infra::metrics::event_store_conflict();
                last = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .unwrap_or_else(|| StoreError::Migration("media link append attempts exhausted".to_owned()))
        .into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{json, Value};

    use super::REQUEST_SCHEMA;
    use crate::ApiError;

    fn entries(body: Value) -> Vec<(String, String)> {
        match REQUEST_SCHEMA.validate(&body) {
            Ok(()) => Vec::new(),
            Err(ApiError::Rejected(rejection)) => {
                assert_eq!(rejection.status, 422);
                rejection
                    .invalid
                    .into_iter()
                    .map(|e| (e.entry, e.rules[0].rule.clone()))
                    .collect()
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(e, r)| ((*e).to_owned(), (*r).to_owned()))
            .collect()
    }

    #[test]
    fn the_openapi_document_shows_the_schema_file_the_body_is_validated_against() {
        let mut file = REQUEST_SCHEMA.document().clone();
        file.as_object_mut().unwrap().remove("$schema");
        let shown = serde_json::to_value(REQUEST_SCHEMA.openapi_schema()).unwrap();
        assert_eq!(shown, file);
    }

    #[test]
    fn a_fitting_body_passes() {
        for body in [
            json!({"secret": {"action": "PUT", "resource_name": "a%20b.pdf", "content_type": "application/pdf"}}),
            json!({"secret": {"action": "GET", "resource_name": "a.pdf", "resource_id": "d290f1ee-6c54-4b01-90e6-d701748f0851"}}),
            json!({"secret": {"action": "HEAD", "resource_name": "договір.pdf"}}),
        ] {
            assert_eq!(entries(body), Vec::new());
        }
    }

    #[test]
    fn every_problem_is_an_entry_named_by_its_json_path() {
        assert_eq!(entries(json!({})), pairs(&[("$.secret", "required")]));
        assert_eq!(
            entries(json!({"secret": {}, "extra": 1})),
            pairs(&[
                ("$.extra", "schema"),
                ("$.secret.action", "required"),
                ("$.secret.resource_name", "required"),
            ])
        );
        assert_eq!(
            entries(
                json!({"secret": {"action": "DELETE", "resource_name": "a/b", "content_type": "pdf", "resource_id": "x"}})
            ),
            pairs(&[
                ("$.secret.action", "inclusion"),
                ("$.secret.content_type", "format"),
                ("$.secret.resource_id", "format"),
                ("$.secret.resource_name", "format"),
            ])
        );
        assert_eq!(
            entries(json!({"secret": {"action": 1, "resource_name": ""}})),
            pairs(&[
                ("$.secret.action", "cast"),
                ("$.secret.action", "inclusion"),
                ("$.secret.resource_name", "length"),
                ("$.secret.resource_name", "format"),
            ])
        );
        assert_eq!(
            entries(json!({"secret": []})),
            pairs(&[("$.secret", "cast")])
        );
    }
}
