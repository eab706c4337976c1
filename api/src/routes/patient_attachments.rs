//! Patient attachments (spec 002), Cliniko-compatible: `/v1/patients/{patient_id}/attachment_presigned_post`,
//! `/v1/patient_attachments…` and the patient and patient-case lists. Cliniko's conventions, not the eHealth
//! envelope (see `cliniko.rs`): Basic or bearer auth, scopes `patient_attachment:read|write`, bare JSON, ids
//! as strings, Cliniko's error shapes. Every attachment belongs to the caller's legal entity: others get 404
//! and empty lists.
//!
//! Upload as a browser does it: GET a presigned POST form (changes nothing but records the key it pins),
//! POST the file to the store, then `POST /v1/patient_attachments` with `upload_url` = the form's `url`, `/`,
//! and its `key`. Create and archive are jobs answered synchronously (`intake::enqueue_sync`: 201 / 204,
//! or 202 + job link past `SYNC_WAIT_SECONDS` or under `Prefer: respond-async`).

use std::collections::BTreeMap;

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json,
};
use ehealth_domain::{
    patient_attachment::{
        sanitize_filename, stream_id, upload_key, validate_description, Command,
        PatientAttachmentAggregate, NOT_PRESIGNED,
    },
    Aggregate,
};
use ehealth_infra::{
    projection::patient_attachment::{
        self as projection,
        list::{
            self, Filter, ListQuery, QueryError, Scope, DEFAULT_PER_PAGE, MAX_FILTERS, MAX_PER_PAGE,
        },
    },
    storage::attachment_uploads,
    StoreError,
};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, IntoResponses, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    cliniko::{self, ClinikoCaller, ClinikoError, ClinikoJson, PathInt64s},
    intake::{self, CommandRequest},
    openapi::{CommandHeaders, TAG_PATIENT_ATTACHMENTS},
    ApiError, AppState,
};

/// Reading attachments.
pub const READ: &str = "patient_attachment:read";
/// Uploading, creating and archiving attachments.
pub const WRITE: &str = "patient_attachment:write";
/// 422 on `upload_url` when an attachment was already made from that upload.
pub const UPLOAD_USED: &str = "has already been used for an attachment";
/// 404 of `…/content` before processing completed.
pub const CONTENT_NOT_READY: &str =
    "The attachment's content is not available until processing completes";

/// The routes of spec 002.
#[allow(deprecated)] // `delete` is Cliniko's deprecated alias, documented as such.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(presigned_post))
        .routes(routes!(create, list_all))
        .routes(routes!(show, delete))
        .routes(routes!(content))
        .routes(routes!(archive))
        .routes(routes!(list_for_patient))
        .routes(routes!(list_for_patient_case))
}

/// An int64 id as Cliniko sends it: a JSON string of digits (or a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int64(pub i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let value = match Raw::deserialize(deserializer)? {
            Raw::Number(n) => n,
            Raw::Text(text) => text
                .parse::<i64>()
                .map_err(|_| serde::de::Error::custom("must be an int64 id"))?,
        };
        if value < 1 {
            return Err(serde::de::Error::custom("must be a positive int64 id"));
        }
        Ok(Int64(value))
    }
}

/// Query of the presigned-POST route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PresignQuery {
    /// The file's name, the last segment of the key (our addition; made safe: letters, digits, `.`, `-`,
    /// `_`, at most 100 bytes). Default `attachment`.
    #[param(example = "scan.pdf")]
    pub filename: Option<String>,
}

/// A presigned POST form for one upload of the patient's attachment.
#[utoipa::path(
    get,
    path = "/v1/patients/{patient_id}/attachment_presigned_post",
    tag = TAG_PATIENT_ATTACHMENTS,
    operation_id = "get_attachment_presigned_post",
    params(("patient_id" = String, Path, description = "The patient (int64).", example = "1"), PresignQuery),
    responses(
        (status = 200, description = "POST a multipart form to `url`: every field of `fields`, then `file`. The store answers 201 with a `PostResponse`. Then create the attachment with `upload_url` = `url` + `/` + `fields.key`.", body = AttachmentPresignedPost),
        BadPatientId,
        (status = 422, description = "A bad query string.", body = ClinikoValidation),
        ClinikoFaults,
    ),
    security(("basic" = ["patient_attachment:write"]), ("bearer" = ["patient_attachment:write"])),
)]
async fn presigned_post(
    State(state): State<AppState>,
    caller: ClinikoCaller,
    ids: PathInt64s,
    uri: Uri,
) -> Result<Response, ClinikoError> {
    let principal = caller.authorize(WRITE)?;
    let patient_id = ids.first()?;
    let query: PresignQuery = serde_urlencoded::from_str(uri.query().unwrap_or_default())
        .map_err(|e| ClinikoError::invalid("filename", &e.to_string()))?;
    let filename = sanitize_filename(query.filename.as_deref());
    let key = upload_key(
        principal.legal_entity_id,
        patient_id,
        Uuid::new_v4(),
        &filename,
    );
    let storage = &state.storage;
    let form = storage
        .presign_post(
            &storage.attachments_bucket,
            &key,
            state.config.max_attachment_bytes,
            storage.presign_ttl,
        )
        .map_err(StoreError::from)?;
    let expires_at = chrono::Utc::now()
        + chrono::Duration::from_std(storage.presign_ttl).unwrap_or(chrono::Duration::zero());
    let client = state.pool.get().await.map_err(StoreError::from)?;
    attachment_uploads::record(
        &client,
        &key,
        principal.legal_entity_id,
        patient_id,
        principal.user_id,
        expires_at,
    )
    .await?;
    tracing::info!(patient_id, key, "attachment upload form issued");
    Ok(Json(json!({ "url": form.url, "fields": form.fields })).into_response())
}

/// Body of `POST /v1/patient_attachments`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"patient_id": "1", "upload_url": "http://127.0.0.1:9000/patient-attachments/…/attachments/temp/1/…/scan.pdf", "description": "Referral letter"}))]
pub struct CreatePatientAttachment {
    /// The patient (int64, as a string or a number).
    #[schema(value_type = String, example = "1")]
    patient_id: Int64,
    /// The presigned form's `url`, `/`, and its `fields.key`, after the file was POSTed there.
    upload_url: String,
    /// At most 255 characters.
    #[serde(default)]
    #[schema(max_length = 255)]
    description: Option<String>,
    /// The patient case the attachment belongs to (our addition; int64).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "9")]
    patient_case_id: Option<Int64>,
}

/// The object key an `upload_url` names in `bucket`: path-style (`…/{bucket}/{key}`, also `…/{bucket}{key}`)
/// or virtual-hosted (`{bucket}.host/{key}`), percent-decoded.
fn key_of_upload_url(upload_url: &str, bucket: &str) -> Option<String> {
    let (_, rest) = upload_url.split_once("://")?;
    let path = &rest[rest.find('/')?..];
    let path = path.split(['?', '#']).next()?;
    let decoded = percent_decode_str(path).decode_utf8().ok()?;
    let key = match decoded.strip_prefix(&format!("/{bucket}")) {
        Some(rest) => rest.strip_prefix('/').unwrap_or(rest),
        None => decoded.strip_prefix('/')?,
    };
    (!key.is_empty() && !key.chars().any(char::is_control)).then(|| key.to_owned())
}

/// Creates an attachment from an uploaded file (job, answered synchronously).
#[utoipa::path(
    post,
    path = "/v1/patient_attachments",
    tag = TAG_PATIENT_ATTACHMENTS,
    operation_id = "create_patient_attachment",
    params(CommandHeaders),
    request_body(content = CreatePatientAttachment, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; processing follows (`processing_completed: false`).", body = PatientAttachment,
            headers(("Location" = String, description = "The attachment."))),
        AcceptedAsJob,
        (status = 409, description = "An attachment with this id exists (never for a fresh create).", body = ClinikoMessage),
        (status = 413, description = "The body is over 2 MB.", body = ClinikoMessage),
        (status = 415, description = "A body declared as something other than JSON.", body = ClinikoMessage),
        (status = 422, description = "`upload_url` is not one this service presigned for this legal entity and patient, was already used, or nothing was uploaded there; `description` over 255 characters; a bad body.", body = ClinikoValidation),
        ClinikoFaults,
    ),
    security(("basic" = ["patient_attachment:write"]), ("bearer" = ["patient_attachment:write"])),
)]
async fn create(
    State(state): State<AppState>,
    caller: ClinikoCaller,
    headers: HeaderMap,
    ClinikoJson(body): ClinikoJson<CreatePatientAttachment>,
) -> Result<Response, ClinikoError> {
    let principal = caller.authorize(WRITE)?;
    validate_description(body.description.as_deref())?;
    let patient_id = body.patient_id.0;
    let not_presigned = || ClinikoError::invalid("upload_url", NOT_PRESIGNED);
    let key = key_of_upload_url(&body.upload_url, &state.storage.attachments_bucket)
        .ok_or_else(not_presigned)?;
    let (id, user_number) = {
        let client = state.pool.get().await.map_err(StoreError::from)?;
        if !attachment_uploads::issued(&client, &key, principal.legal_entity_id, patient_id).await?
        {
            return Err(not_presigned());
        }
        if projection::upload_used(&client, &key).await? {
            return Err(ClinikoError::invalid("upload_url", UPLOAD_USED));
        }
        let user_number = projection::user_number(&client, principal.user_id)
            .await?
            .ok_or_else(|| ClinikoError(ApiError::Unauthorized("unknown user".to_owned())))?;
        (projection::next_id(&client).await?, user_number)
    };
    let command = Command::Create {
        id,
        patient_id,
        patient_case_id: body.patient_case_id.map(|c| c.0),
        description: body.description.clone(),
        upload_key: key,
        user_number,
        max_bytes: state.config.max_attachment_bytes,
        upload: None,
    };
    // What the client sent, without the id the server drew: the same create sent twice is one job.
    let fingerprint = json!({
        "patient_id": patient_id,
        "upload_url": body.upload_url,
        "description": body.description,
        "patient_case_id": body.patient_case_id.map(|c| c.0),
    });
    let response = enqueue(
        &state,
        principal,
        &headers,
        stream_id(id),
        &command,
        fingerprint,
    )
    .await?;
    Ok(cliniko::answer(response, &state.base_url).await)
}

async fn enqueue(
    state: &AppState,
    principal: &ehealth_infra::identity::Principal,
    headers: &HeaderMap,
    stream_id: Uuid,
    command: &Command,
    fingerprint: Value,
) -> Result<Response, ClinikoError> {
    let request = CommandRequest {
        job_type: format!(
            "{}.{}",
            PatientAttachmentAggregate::STREAM_TYPE,
            command.name()
        ),
        stream_type: PatientAttachmentAggregate::STREAM_TYPE,
        stream_id,
        command: serde_json::to_value(command).map_err(StoreError::from)?,
        fingerprint,
    };
    Ok(intake::enqueue_sync(state, principal, headers, request).await?)
}

/// The caller's attachment, or 404.
async fn owned(
    state: &AppState,
    principal: &ehealth_infra::identity::Principal,
    id: i64,
) -> Result<projection::PatientAttachmentRow, ClinikoError> {
    let client = state.pool.get().await.map_err(StoreError::from)?;
    projection::get(&client, principal.legal_entity_id, id)
        .await?
        .ok_or_else(ClinikoError::not_found)
}

/// One attachment (archived ones too).
#[utoipa::path(
    get,
    path = "/v1/patient_attachments/{id}",
    tag = TAG_PATIENT_ATTACHMENTS,
    operation_id = "get_patient_attachment",
    params(("id" = String, Path, description = "The attachment (int64).", example = "1")),
    responses(
        (status = 200, description = "The attachment.", body = PatientAttachment),
        (status = 404, description = "No such attachment of the caller's legal entity.", body = ClinikoMessage),
        ClinikoFaults,
    ),
    security(("basic" = ["patient_attachment:read"]), ("bearer" = ["patient_attachment:read"])),
)]
async fn show(
    State(state): State<AppState>,
    caller: ClinikoCaller,
    ids: PathInt64s,
) -> Result<Response, ClinikoError> {
    let principal = caller.authorize(READ)?;
    let row = owned(&state, principal, ids.first()?).await?;
    Ok(Json(row.to_json(&state.base_url)).into_response())
}

/// A redirect to a presigned GET of the processed file.
#[utoipa::path(
    get,
    path = "/v1/patient_attachments/{id}/content",
    tag = TAG_PATIENT_ATTACHMENTS,
    operation_id = "get_patient_attachment_content",
    params(("id" = String, Path, description = "The attachment (int64).", example = "1")),
    responses(
        (status = 302, description = "`Location`: a presigned GET of the file, valid for `PRESIGN_TTL_SECONDS`.",
            headers(("Location" = String, description = "The presigned GET."))),
        (status = 404, description = "No such attachment, or processing has not completed.", body = ClinikoMessage),
        ClinikoFaults,
    ),
    security(("basic" = ["patient_attachment:read"]), ("bearer" = ["patient_attachment:read"])),
)]
async fn content(
    State(state): State<AppState>,
    caller: ClinikoCaller,
    ids: PathInt64s,
) -> Result<Response, ClinikoError> {
    let principal = caller.authorize(READ)?;
    let row = owned(&state, principal, ids.first()?).await?;
    let Some(key) = row.object_key.as_deref() else {
        return Err(ClinikoError(ApiError::not_found(CONTENT_NOT_READY)));
    };
    let storage = &state.storage;
    let link = storage
        .presign_get(&storage.attachments_bucket, key, storage.presign_ttl)
        .await
        .map_err(StoreError::from)?;
    let location = HeaderValue::from_str(&link.url).map_err(|e| {
        StoreError::Migration(format!("a presigned URL is not a header value: {e}"))
    })?;
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

/// Archives the attachment (job, answered synchronously).
#[utoipa::path(
    post,
    path = "/v1/patient_attachments/{id}/archive",
    tag = TAG_PATIENT_ATTACHMENTS,
    operation_id = "archive_patient_attachment",
    params(("id" = String, Path, description = "The attachment (int64).", example = "1"), CommandHeaders),
    responses(
        (status = 204, description = "Archived (archiving an archived attachment changes nothing)."),
        AcceptedAsJob,
        ArchiveFaults,
        ClinikoFaults,
    ),
    security(("basic" = ["patient_attachment:write"]), ("bearer" = ["patient_attachment:write"])),
)]
async fn archive(
    State(state): State<AppState>,
    caller: ClinikoCaller,
    ids: PathInt64s,
    headers: HeaderMap,
) -> Result<Response, ClinikoError> {
    let principal = caller.authorize(WRITE)?;
    archive_command(&state, principal, ids.first()?, &headers).await
}

async fn archive_command(
    state: &AppState,
    principal: &ehealth_infra::identity::Principal,
    id: i64,
    headers: &HeaderMap,
) -> Result<Response, ClinikoError> {
    let row = owned(state, principal, id).await?;
    let fingerprint = json!({ "stream_id": row.stream_id, "command": "archive" });
    let response = enqueue(
        state,
        principal,
        headers,
        row.stream_id,
        &Command::Archive,
        fingerprint,
    )
    .await?;
    Ok(cliniko::answer(response, &state.base_url).await)
}

/// Archives the attachment: the deprecated alias of `POST …/archive` (answers with a `Deprecation` header).
#[utoipa::path(
    delete,
    path = "/v1/patient_attachments/{id}",
    tag = TAG_PATIENT_ATTACHMENTS,
    operation_id = "delete_patient_attachment",
    params(("id" = String, Path, description = "The attachment (int64).", example = "1"), CommandHeaders),
    responses(
        (status = 204, description = "Archived.", headers(("Deprecation" = String, description = "`true`: use `POST …/archive`."))),
        AcceptedAsJob,
        ArchiveFaults,
        ClinikoFaults,
    ),
    security(("basic" = ["patient_attachment:write"]), ("bearer" = ["patient_attachment:write"])),
)]
#[deprecated = "Cliniko's deprecated alias of POST /v1/patient_attachments/{id}/archive"]
async fn delete(
    State(state): State<AppState>,
    caller: ClinikoCaller,
    ids: PathInt64s,
    headers: HeaderMap,
) -> Result<Response, ClinikoError> {
    let principal = caller.authorize(WRITE)?;
    let mut response = archive_command(&state, principal, ids.first()?, &headers).await?;
    response
        .headers_mut()
        .insert("deprecation", HeaderValue::from_static("true"));
    Ok(response)
}

/// The query parameters of the lists (documentation; parsed by [`list_query`]).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, deprecated)]
pub struct ListParams {
    /// Filters `FIELD:OPVALUE`, ANDed: `archived_at`, `created_at`, `processed_at`, `updated_at` (date-time:
    /// `>` `>=` `<` `<=`); `id`, `patient_id`, `size`, `user_id` (integer: `=` `!=` `>` `>=` `<` `<=`, and
    /// `=1,2,3`); `content_type`, `description`, `filename` (string: `=` `!=` `~` contains, `~~` SQL
    /// pattern with `%`). A filter on `archived_at` shows archived attachments. Unknown field or operator: 422.
    #[param(rename = "q[]", example = json!(["filename:~scan"]))]
    pub q: Option<Vec<String>>,
    /// Comma-separated `FIELD[:asc|:desc]` (default `created_at`).
    #[param(example = "created_at:desc")]
    pub sort: Option<String>,
    /// Deprecated: the direction of the default sort.
    #[param(pattern = "^(asc|desc)$")]
    #[deprecated = "Cliniko's deprecated `order`; use `sort`"]
    pub order: Option<String>,
    /// From 1.
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
}

fn query_error(e: QueryError) -> ClinikoError {
    ClinikoError::invalid(&e.parameter, &e.message)
}

/// Reads a list's query string: `q[]`/`q` filters, `sort`/`sort[]`, `order`, `page`, `per_page`; other
/// parameters are ignored, as Cliniko does.
fn list_query(
    query: &str,
    legal_entity_id: Uuid,
    scope: Scope,
) -> Result<(ListQuery, Vec<(String, String)>), ClinikoError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| {
        ClinikoError::invalid("base", &format!("the query string cannot be read: {e}"))
    })?;
    let mut filters = Vec::new();
    let mut sort = Vec::new();
    let mut single = BTreeMap::new();
    for (name, value) in &pairs {
        match name.as_str() {
            "q[]" | "q" => filters.push(Filter::parse(value).map_err(query_error)?),
            "sort" | "sort[]" => sort.push(value.clone()),
            "order" | "page" | "per_page"
                if single.insert(name.as_str(), value.as_str()).is_some() =>
            {
                return Err(ClinikoError::invalid(name, "must be given at most once"));
            }
            _ => {}
        }
    }
    if filters.len() > MAX_FILTERS {
        return Err(ClinikoError::invalid(
            "q",
            &format!("at most {MAX_FILTERS} filters"),
        ));
    }
    let number = |name: &str, default: i64, max: i64| -> Result<i64, ClinikoError> {
        match single.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ClinikoError::invalid(name, &format!("must be an integer from 1 to {max}"))
                }),
        }
    };
    let page = number("page", 1, i64::from(i32::MAX))?;
    let per_page = number("per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)?;
    let mut sort = list::parse_sort(&sort).map_err(query_error)?;
    match single.get("order").copied() {
        None => {}
        Some(order) => {
            let direction = list::Direction::parse(order)
                .ok_or_else(|| ClinikoError::invalid("order", "must be asc or desc"))?;
            if sort.is_empty() {
                sort.push((list::Field::CreatedAt, direction));
            }
        }
    }
    let query = ListQuery {
        legal_entity_id,
        scope,
        filters,
        sort,
        page,
        per_page,
    };
    Ok((query, pairs))
}

/// A page of the caller's attachments in Cliniko's list shape, with `self`, `next` and `previous` links.
async fn list_page(
    state: &AppState,
    caller: &ClinikoCaller,
    scope: Scope,
    uri: &Uri,
) -> Result<Response, ClinikoError> {
    let principal = caller.authorize(READ)?;
    let (query, pairs) = list_query(
        uri.query().unwrap_or_default(),
        principal.legal_entity_id,
        scope,
    )?;
    let page = {
        let client = state.pool.get().await.map_err(StoreError::from)?;
        list::list(&client, &query).await?
    };
    let link = |page_number: i64| {
        let mut kept: Vec<(&str, String)> = pairs
            .iter()
            .filter(|(name, _)| name != "page")
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        kept.push(("page", page_number.to_string()));
        let query = serde_urlencoded::to_string(&kept).unwrap_or_default();
        format!("{}{}?{query}", state.base_url, uri.path())
    };
    let mut links = json!({ "self": link(query.page) });
    if query.page.saturating_mul(query.per_page) < page.total_entries {
        links["next"] = json!(link(query.page + 1));
    }
    if query.page > 1 {
        links["previous"] = json!(link(query.page - 1));
    }
    let attachments: Vec<Value> = page
        .rows
        .iter()
        .map(|row| row.to_json(&state.base_url))
        .collect();
    Ok(Json(json!({
        "patient_attachments": attachments,
        "total_entries": page.total_entries,
        "links": links,
    }))
    .into_response())
}

/// The caller's attachments.
#[utoipa::path(
    get,
    path = "/v1/patient_attachments",
    tag = TAG_PATIENT_ATTACHMENTS,
    operation_id = "list_patient_attachments",
    params(ListParams),
    responses(
        (status = 200, description = "A page of the caller's attachments (archived ones only under a filter on `archived_at`).", body = PatientAttachmentList),
        ListFaults,
        ClinikoFaults,
    ),
    security(("basic" = ["patient_attachment:read"]), ("bearer" = ["patient_attachment:read"])),
)]
async fn list_all(
    State(state): State<AppState>,
    caller: ClinikoCaller,
    uri: Uri,
) -> Result<Response, ClinikoError> {
    list_page(&state, &caller, Scope::All, &uri).await
}

/// The caller's attachments of one patient.
#[utoipa::path(
    get,
    path = "/v1/patients/{patient_id}/patient_attachments",
    tag = TAG_PATIENT_ATTACHMENTS,
    operation_id = "list_patient_attachments_of_patient",
    params(("patient_id" = String, Path, description = "The patient (int64).", example = "1"), ListParams),
    responses(
        (status = 200, description = "A page of the patient's attachments.", body = PatientAttachmentList),
        BadPatientId,
        ListFaults,
        ClinikoFaults,
    ),
    security(("basic" = ["patient_attachment:read"]), ("bearer" = ["patient_attachment:read"])),
)]
async fn list_for_patient(
    State(state): State<AppState>,
    caller: ClinikoCaller,
    ids: PathInt64s,
    uri: Uri,
) -> Result<Response, ClinikoError> {
    let scope = Scope::Patient(ids.first()?);
    list_page(&state, &caller, scope, &uri).await
}

/// The caller's attachments of one patient case.
#[utoipa::path(
    get,
    path = "/v1/patient_cases/{patient_case_id}/patient_attachments",
    tag = TAG_PATIENT_ATTACHMENTS,
    operation_id = "list_patient_attachments_of_patient_case",
    params(("patient_case_id" = String, Path, description = "The patient case (int64).", example = "1"), ListParams),
    responses(
        (status = 200, description = "A page of the patient case's attachments.", body = PatientAttachmentList),
        (status = 404, description = "The patient case id is not a positive int64.", body = ClinikoMessage),
        ListFaults,
        ClinikoFaults,
    ),
    security(("basic" = ["patient_attachment:read"]), ("bearer" = ["patient_attachment:read"])),
)]
async fn list_for_patient_case(
    State(state): State<AppState>,
    caller: ClinikoCaller,
    ids: PathInt64s,
    uri: Uri,
) -> Result<Response, ClinikoError> {
    let scope = Scope::PatientCase(ids.first()?);
    list_page(&state, &caller, scope, &uri).await
}

/// The answers of every route here, after its own: the caller's credentials, then the service's faults.
#[derive(IntoResponses)]
#[allow(dead_code)] // Documentation only: `ClinikoError` renders these answers.
enum ClinikoFaults {
    #[response(status = 401, description = "No or an unknown API token.")]
    Unauthorized(ClinikoMessage),
    #[response(
        status = 403,
        description = "Missing scope, inactive user or legal entity."
    )]
    Forbidden(ClinikoMessage),
    #[response(status = 500, description = "An unexpected fault.")]
    Internal(ClinikoMessage),
    #[response(
        status = 503,
        description = "The database cannot be reached for now (`Retry-After`)."
    )]
    Unavailable(ClinikoMessage),
}

/// The 202 of a job not finished within the synchronous wait.
#[derive(IntoResponses)]
#[response(
    status = 202,
    description = "Past `SYNC_WAIT_SECONDS`, or under `Prefer: respond-async`: the job link (eHealth job shape)."
)]
#[allow(dead_code)] // Documentation only: `cliniko::answer` renders it.
struct AcceptedAsJob(crate::openapi::schemas::JobAcceptedResponse);

/// The refusals `POST …/archive` and its `DELETE` alias share.
#[derive(IntoResponses)]
#[allow(dead_code)] // Documentation only: `ClinikoError` renders these answers.
enum ArchiveFaults {
    #[response(
        status = 404,
        description = "No such attachment of the caller's legal entity."
    )]
    NotFound(ClinikoMessage),
    #[response(status = 422, description = "A bad header.")]
    Invalid(ClinikoValidation),
}

/// The 404 of a `patient_id` path segment that is not a positive int64.
#[derive(IntoResponses)]
#[response(status = 404, description = "The patient id is not a positive int64.")]
#[allow(dead_code)] // Documentation only: `PathInt64s` renders it.
struct BadPatientId(ClinikoMessage);

/// The 422 of a list's query string.
#[derive(IntoResponses)]
#[response(
    status = 422,
    description = "An unknown filter field, sort field or operator, a bad value, `page`, `per_page` or `order`."
)]
#[allow(dead_code)] // Documentation only: `list_query` renders it.
struct ListFaults(ClinikoValidation);

/// Cliniko's error body: `{"message": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClinikoMessage {
    /// What went wrong.
    pub message: String,
}

/// Cliniko's 422 body.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"message": "Validation Failed", "errors": {"upload_url": "must be a URL this service presigned for this patient"}}))]
pub struct ClinikoValidation {
    /// `Validation Failed`.
    pub message: String,
    /// Field → message.
    pub errors: BTreeMap<String, String>,
}

/// `{"links":{"self":…}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Linked {
    /// See [`SelfLink`].
    pub links: SelfLink,
}

/// `{"self":…}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SelfLink {
    /// An absolute URL.
    #[serde(rename = "self")]
    pub self_: String,
}

/// A patient attachment (Cliniko's `PatientAttachment`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PatientAttachment {
    /// int64 as a string.
    #[schema(example = "1")]
    pub id: String,
    /// When it was archived.
    pub archived_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `links.self`: `…/content`, a redirect to the file.
    pub content: Linked,
    /// The sniffed (else declared) MIME type, once processed.
    pub content_type: Option<String>,
    /// Created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// At most 255 characters.
    pub description: Option<String>,
    /// The uploaded file's name.
    pub filename: Option<String>,
    /// `links.self`: this attachment.
    pub links: SelfLink,
    /// `links.self`: the patient.
    pub patient: Linked,
    /// `links.self`: the patient case, or null.
    pub patient_case: Option<Linked>,
    /// Always null (pinning is not offered).
    pub pinned_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When processing completed.
    pub processed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether processing completed.
    pub processing_completed: Option<bool>,
    /// Bytes, once processed.
    pub size: Option<i64>,
    /// SHA-256 (lower-case hex), once processed.
    pub sha256: Option<String>,
    /// Last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// `links.self`: the user who created it.
    pub user: Linked,
}

/// `{"self","next"?,"previous"?}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListLinks {
    /// This page.
    #[serde(rename = "self")]
    pub self_: String,
    /// The next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The previous page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// A page of attachments.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatientAttachmentList {
    /// The page.
    pub patient_attachments: Vec<PatientAttachment>,
    /// Matching attachments on every page.
    pub total_entries: i64,
    /// Page links.
    pub links: ListLinks,
}

/// A presigned POST form.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentPresignedPost {
    /// The store's POST URL.
    pub url: String,
    /// `key`, `policy`, `x-amz-credential`, `x-amz-signature`, `x-amz-algorithm`, `x-amz-date`,
    /// `success_action_status` (`201`), `acl` (`private`), and `x-amz-security-token` with temporary
    /// credentials.
    pub fields: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::key_of_upload_url;

    #[test]
    fn upload_urls_name_their_key() {
        let key = |url: &str| key_of_upload_url(url, "b");
        assert_eq!(
            key("http://h:9/b/le/a%20b.pdf").as_deref(),
            Some("le/a b.pdf")
        );
        assert_eq!(key("http://h:9/ble/x").as_deref(), Some("le/x"));
        assert_eq!(
            key("https://b.s3.example/le/x?y=1").as_deref(),
            Some("le/x")
        );
        assert_eq!(key("not a url"), None);
        assert_eq!(key("http://h:9/b/"), None);
        assert_eq!(key("http://h:9/b/a%00b"), None);
    }
}
