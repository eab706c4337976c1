//! Analysis-result files of a clinic ERP (spec 000), under
//! `/api/erp/v1/patients/{patientId}/analysis/{analysisId}/files`. camelCase JSON; scope `gambit:erp`.
//!
//! Upload in three steps: `POST …/initialize/{fileName}` answers a presigned PUT URL at once (it changes
//! nothing, so it is no job); the client PUTs the bytes to storage; `POST …/{fileName}` finalizes as a job.
//! `PATCH …/{id}` (`isSend`) and `DELETE …/{id}` are jobs too. The document answers all three 200, so they
//! wait for their job and answer its outcome ([`intake::enqueue_sync`]): the file, or the job's error; 202
//! with the job link only past `SYNC_WAIT_SECONDS` or under `Prefer: respond-async`. Every file belongs to
//! the caller's legal entity: another legal entity addresses another stream and finds nothing (404).

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use ehealth_domain::{
    analysis_file::{
        stream_id, upload_target, validate_file_name, AnalysisFilesAggregate, Command,
        FILE_NOT_FOUND,
    },
    Aggregate,
};
use ehealth_infra::{
    event_store, identity::Principal, projection::analysis_file as projection,
    storage::upload_links, StoreError,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    auth::Caller,
    envelope,
    extract::{LenientJsonBody, PathIds, PathIdsAndId, PathIdsAndName},
    intake::{self, CommandRequest},
    openapi::{
        schemas::{
            AnalysisFileList, AnalysisFileResponse, ErrorResponse, JobAcceptedResponse,
            UploadLinkResponse,
        },
        CommandHeaders, TAG_ANALYSIS_FILES,
    },
    ApiError, AppState,
};

/// The one scope of spec 000.
pub const SCOPE: &str = "gambit:erp";

/// The spec-000 routes. One path for `{file}`: a file name for `POST` (finalize) and a file id for `GET`,
/// `PATCH` and `DELETE` — a path segment has one name.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(initialize))
        .routes(routes!(finalize, show, set_send, delete))
}

/// The caller's stream of the path's analysis.
fn stream(principal: &Principal, patient_id: Uuid, analysis_id: Uuid) -> Uuid {
    stream_id(principal.legal_entity_id, patient_id, analysis_id)
}

/// Enqueues `command` on the caller's stream of the analysis and answers as the document does: 200 with the
/// file once the job ends (or the job's error), 202 past the wait.
async fn enqueue(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    (patient_id, analysis_id): (Uuid, Uuid),
    command: &Command,
) -> Result<Response, ApiError> {
    let stream_id = stream(principal, patient_id, analysis_id);
    let value = serde_json::to_value(command).unwrap_or_default();
    let request = CommandRequest {
        job_type: format!("{}.{}", AnalysisFilesAggregate::STREAM_TYPE, command.name()),
        stream_type: AnalysisFilesAggregate::STREAM_TYPE,
        stream_id,
        // Spec-000 commands hold no server-made id (file ids derive from the stream and name).
        fingerprint: json!({ "stream_id": stream_id, "command": value }),
        command: value,
    };
    intake::enqueue_sync(state, principal, headers, request).await
}

/// A file id of the path, or 404 `File not found`.
fn file_id(id: Option<Uuid>) -> Result<Uuid, ApiError> {
    id.ok_or_else(|| ApiError::not_found(FILE_NOT_FOUND))
}

/// Step 1: a presigned PUT URL for a name not yet taken (409 otherwise; 422 for a bad name).
#[utoipa::path(
    post,
    path = "/api/erp/v1/patients/{patientId}/analysis/{analysisId}/files/initialize/{fileName}",
    tag = TAG_ANALYSIS_FILES,
    operation_id = "initialize_analysis_file",
    params(
        ("patientId" = Uuid, Path, description = "The patient."),
        ("analysisId" = Uuid, Path, description = "The analysis."),
        ("fileName" = String, Path, min_length = 1, max_length = 80, pattern = r"^[^/\\\x00-\x1f\x7f-\x9f]+$", description = "The file's name, percent-encoded: 1 to 80 bytes once decoded, not `.`, no `/`, `\\`, `..` or control characters.", example = "result.pdf"),
    ),
    responses(
        (status = 200, description = "A presigned `PUT` link for this upload. Nothing is recorded until finalize.", body = UploadLinkResponse),
        (status = 404, description = "An id is not a UUID.", body = ErrorResponse),
        (status = 409, description = "`File with this name already exists`.", body = ErrorResponse),
        (status = 422, description = "A bad file name (`$.fileName`).", body = ErrorResponse),
    ),
    security(("bearer" = ["gambit:erp"])),
)]
async fn initialize(
    State(state): State<AppState>,
    caller: Caller,
    PathIdsAndName(patient_id, analysis_id, file_name): PathIdsAndName,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    let stream = stream(principal, patient_id, analysis_id);
    let client = state.pool.get().await.map_err(StoreError::from)?;
    let loaded = event_store::load::<AnalysisFilesAggregate>(&client, stream).await?;
    let key = upload_target(&loaded.state, stream, &file_name, Uuid::new_v4())?;
    let link = state
        .storage
        .presign_put(&state.storage.files_bucket, &key, state.storage.presign_ttl)
        .await
        .map_err(StoreError::from)?;
    upload_links::record(
        &client,
        stream,
        &file_name,
        &key,
        principal.user_id,
        link.expires_at,
    )
    .await?;
    tracing::info!(%stream, key, "upload link issued");
    Ok(envelope::object(
        StatusCode::OK,
        json!({ "url": link.url, "expiresAt": link.expires_at }),
    ))
}

/// Step 3: records the uploaded object as a file (job).
#[utoipa::path(
    post,
    path = "/api/erp/v1/patients/{patientId}/analysis/{analysisId}/files/{file}",
    tag = TAG_ANALYSIS_FILES,
    operation_id = "finalize_analysis_file",
    params(
        ("patientId" = Uuid, Path, description = "The patient."),
        ("analysisId" = Uuid, Path, description = "The analysis."),
        ("file" = String, Path, min_length = 1, description = "The uploaded file's name (as given to initialize).", example = "result.pdf"),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The file, recorded with `isSend: false` (the job ended within the wait).", body = AnalysisFileResponse,
            headers(("Location" = String, description = "The file."))),
        (status = 202, description = "Still running after `SYNC_WAIT_SECONDS` (or the `Prefer: wait` given), or `Prefer: respond-async`: the job link.", body = JobAcceptedResponse),
        (status = 404, description = "An id is not a UUID.", body = ErrorResponse),
        (status = 409, description = "The job's answer: `file was not uploaded`, `File with this name already exists`.", body = ErrorResponse),
        (status = 422, description = "A bad file name or header; the job's answer: the upload is over `MAX_UPLOAD_BYTES`.", body = ErrorResponse),
    ),
    security(("bearer" = ["gambit:erp"])),
)]
async fn finalize(
    State(state): State<AppState>,
    caller: Caller,
    PathIdsAndName(patient_id, analysis_id, file_name): PathIdsAndName,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    validate_file_name(&file_name)?;
    let upload_key = {
        let client = state.pool.get().await.map_err(StoreError::from)?;
        let stream = stream(principal, patient_id, analysis_id);
        upload_links::newest(&client, stream, &file_name).await?
    };
    let command = Command::Finalize {
        patient_id,
        analysis_id,
        file_name,
        max_bytes: state.config.max_upload_bytes,
        upload_key,
        object: None,
    };
    enqueue(
        &state,
        principal,
        &headers,
        (patient_id, analysis_id),
        &command,
    )
    .await
}

/// Every file of the analysis, each with a fresh download link.
#[utoipa::path(
    get,
    path = "/api/erp/v1/patients/{patientId}/analysis/{analysisId}/files",
    tag = TAG_ANALYSIS_FILES,
    operation_id = "list_analysis_files",
    params(
        ("patientId" = Uuid, Path, description = "The patient."),
        ("analysisId" = Uuid, Path, description = "The analysis."),
    ),
    responses(
        (status = 200, description = "Every file of the analysis, oldest first, each with `url` and `urlExpiresAt`.", body = AnalysisFileList),
        (status = 404, description = "An id is not a UUID.", body = ErrorResponse),
    ),
    security(("bearer" = ["gambit:erp"])),
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathIds(patient_id, analysis_id): PathIds,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    let client = state.pool.get().await.map_err(StoreError::from)?;
    let rows = projection::list(&client, stream(principal, patient_id, analysis_id)).await?;
    let mut files = Vec::with_capacity(rows.len());
    for row in &rows {
        files.push(with_download_link(&state, row).await?);
    }
    Ok(envelope::items(files))
}

/// One file, with a fresh download link.
#[utoipa::path(
    get,
    path = "/api/erp/v1/patients/{patientId}/analysis/{analysisId}/files/{file}",
    tag = TAG_ANALYSIS_FILES,
    operation_id = "get_analysis_file",
    params(
        ("patientId" = Uuid, Path, description = "The patient."),
        ("analysisId" = Uuid, Path, description = "The analysis."),
        ("file" = Uuid, Path, description = "The file's id."),
    ),
    responses(
        (status = 200, description = "The file with `url` and `urlExpiresAt`.", body = AnalysisFileResponse),
        (status = 404, description = "`File not found` (or an id is not a UUID).", body = ErrorResponse),
    ),
    security(("bearer" = ["gambit:erp"])),
)]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathIdsAndId(patient_id, analysis_id, id): PathIdsAndId,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    let id = file_id(id)?;
    let client = state.pool.get().await.map_err(StoreError::from)?;
    let row = projection::get(&client, stream(principal, patient_id, analysis_id), id)
        .await?
        .ok_or_else(|| ApiError::not_found(FILE_NOT_FOUND))?;
    Ok(envelope::object(
        StatusCode::OK,
        with_download_link(&state, &row).await?,
    ))
}

async fn with_download_link(
    state: &AppState,
    row: &projection::AnalysisFileRow,
) -> Result<serde_json::Value, ApiError> {
    let link = state
        .storage
        .presign_get(
            &state.storage.files_bucket,
            &row.object_key,
            state.storage.presign_ttl,
        )
        .await
        .map_err(StoreError::from)?;
    let mut file = row.to_json();
    file["url"] = json!(link.url);
    file["urlExpiresAt"] = json!(link.expires_at);
    Ok(file)
}

/// Body of `PATCH …/{id}`: exactly `{"isSend": true|false}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"isSend": true}))]
pub struct SetSend {
    /// Whether the file is to be sent to the patient (e-mail/Viber); true publishes
    /// `analysis_file.send_requested` when it changes.
    is_send: bool,
}

/// Marks a file to be sent to the patient, or not (job).
#[utoipa::path(
    patch,
    path = "/api/erp/v1/patients/{patientId}/analysis/{analysisId}/files/{file}",
    tag = TAG_ANALYSIS_FILES,
    operation_id = "set_analysis_file_send",
    params(
        ("patientId" = Uuid, Path, description = "The patient."),
        ("analysisId" = Uuid, Path, description = "The analysis."),
        ("file" = Uuid, Path, description = "The file's id."),
        CommandHeaders,
    ),
    request_body(content = SetSend, content_type = "application/json", description = "Exactly `{\"isSend\": true|false}`; a missing `Content-Type` is read as JSON."),
    responses(
        (status = 200, description = "The file with its new `isSend` (the job ended within the wait).", body = AnalysisFileResponse,
            headers(("Location" = String, description = "The file."))),
        (status = 202, description = "Still running after `SYNC_WAIT_SECONDS` (or the `Prefer: wait` given), or `Prefer: respond-async`: the job link.", body = JobAcceptedResponse),
        (status = 404, description = "`File not found`: a file id that is not a UUID, or (the job's answer) an unknown one; an id is not a UUID.", body = ErrorResponse),
        (status = 413, description = "The body is over 2 MB.", body = ErrorResponse),
        (status = 415, description = "A body declared as something other than JSON.", body = ErrorResponse),
        (status = 422, description = "Any other body, or a bad header.", body = ErrorResponse),
    ),
    security(("bearer" = ["gambit:erp"])),
)]
async fn set_send(
    State(state): State<AppState>,
    caller: Caller,
    PathIdsAndId(patient_id, analysis_id, id): PathIdsAndId,
    headers: HeaderMap,
    LenientJsonBody(body): LenientJsonBody<SetSend>,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    let file_id = file_id(id)?;
    let command = Command::SetSend {
        file_id,
        is_send: body.is_send,
    };
    enqueue(
        &state,
        principal,
        &headers,
        (patient_id, analysis_id),
        &command,
    )
    .await
}

/// Removes a file (job); its object is deleted after the event is recorded.
#[utoipa::path(
    delete,
    path = "/api/erp/v1/patients/{patientId}/analysis/{analysisId}/files/{file}",
    tag = TAG_ANALYSIS_FILES,
    operation_id = "delete_analysis_file",
    params(
        ("patientId" = Uuid, Path, description = "The patient."),
        ("analysisId" = Uuid, Path, description = "The analysis."),
        ("file" = Uuid, Path, description = "The file's id."),
        CommandHeaders,
    ),
    responses(
        (status = 200, description = "The deleted file, as it was (the job ended within the wait).", body = AnalysisFileResponse),
        (status = 202, description = "Still running after `SYNC_WAIT_SECONDS` (or the `Prefer: wait` given), or `Prefer: respond-async`: the job link.", body = JobAcceptedResponse),
        (status = 404, description = "`File not found`: an id that is not a UUID, or (the job's answer) an unknown one.", body = ErrorResponse),
        (status = 422, description = "A bad header.", body = ErrorResponse),
    ),
    security(("bearer" = ["gambit:erp"])),
)]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathIdsAndId(patient_id, analysis_id, id): PathIdsAndId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    let command = Command::Delete {
        file_id: file_id(id)?,
    };
    enqueue(
        &state,
        principal,
        &headers,
        (patient_id, analysis_id),
        &command,
    )
    .await
}
