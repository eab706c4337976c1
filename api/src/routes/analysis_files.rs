//! Analysis-result files of a clinic ERP (spec 000), under
//! `/api/erp/v1/patients/{patientId}/analysis/{analysisId}/files`. camelCase JSON; scope `gambit:erp`.
//!
//! Upload in three steps: `POST …/initialize/{fileName}` answers a presigned PUT URL at once (it changes
//! nothing, so it is no job); the client PUTs the bytes to storage; `POST …/{fileName}` finalizes as a job.
//! `PATCH …/{id}` (`isSend`) and `DELETE …/{id}` are jobs too. Every file belongs to the caller's legal
//! entity: another legal entity addresses another stream and finds nothing (404).

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::{get, post},
    Router,
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
use uuid::Uuid;

use crate::{
    auth::Caller,
    envelope,
    extract::{parse_json, PathIds, PathIdsAndName},
    intake::{self, CommandRequest},
    ApiError, AppState,
};

/// The one scope of spec 000.
pub const SCOPE: &str = "gambit:erp";

/// The spec-000 routes.
pub fn router() -> Router<AppState> {
    const FILES: &str = "/api/erp/v1/patients/{patient_id}/analysis/{analysis_id}/files";
    Router::new()
        .route(FILES, get(list))
        .route(
            &format!("{FILES}/initialize/{{file_name}}"),
            post(initialize),
        )
        // One route for `{fileName}` (POST: finalize) and `{id}` (GET, PATCH, DELETE): a path segment has
        // one name.
        .route(
            &format!("{FILES}/{{file}}"),
            post(finalize).get(show).patch(set_send).delete(delete),
        )
}

/// The caller's stream of the path's analysis.
fn stream(principal: &Principal, patient_id: Uuid, analysis_id: Uuid) -> Uuid {
    stream_id(principal.legal_entity_id, patient_id, analysis_id)
}

/// Enqueues `command` on the caller's stream of the analysis.
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
    intake::enqueue(state, principal, headers, request).await
}

fn file_id(value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value).map_err(|_| ApiError::not_found(FILE_NOT_FOUND))
}

/// Step 1: a presigned PUT URL for a name not yet taken (409 otherwise; 422 for a bad name).
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
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathIdsAndName(patient_id, analysis_id, id): PathIdsAndName,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    let id = file_id(&id)?;
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SendBody {
    is_send: bool,
}

/// Marks a file to be sent to the patient, or not (job).
async fn set_send(
    State(state): State<AppState>,
    caller: Caller,
    PathIdsAndName(patient_id, analysis_id, id): PathIdsAndName,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    let file_id = file_id(&id)?;
    if !parse_json::<serde_json::Value>(&body)?.is_object() {
        return Err(ApiError::invalid("$", "type", "expected an object"));
    }
    let body: SendBody = parse_json(&body)?;
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
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathIdsAndName(patient_id, analysis_id, id): PathIdsAndName,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = caller.authorize_active(SCOPE)?;
    let command = Command::Delete {
        file_id: file_id(&id)?,
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
