//! The `analysis_files` read model (spec 000): one row per live file.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use ehealth_domain::analysis_file::{AnalysisFilesAggregate, File, State};
use serde_json::{json, Value};
use uuid::Uuid;

use super::row::{self, projection_row, OnConflict};
use super::Projection;
use crate::StoreError;

projection_row! {
    table: "analysis_files",
    on_conflict: OnConflict::Insert,
    /// One row of the read model.
    #[derive(Debug, Clone, PartialEq)]
    pub struct AnalysisFileRow {
        /// File id.
        pub id: Uuid,
        /// The stream (legal entity × patient × analysis).
        pub stream_id: Uuid,
        /// Owner.
        pub legal_entity_id: Uuid,
        /// The patient.
        pub patient_id: Uuid,
        /// The analysis.
        pub analysis_id: Uuid,
        /// Name.
        pub file_name: String,
        /// Key in the files bucket.
        pub object_key: String,
        /// Bytes.
        pub size: i64,
        /// Content type.
        pub content_type: String,
        /// Entity tag.
        pub etag: String,
        /// To be sent to the patient.
        pub is_send: bool,
        /// Recorded.
        pub created_at: DateTime<Utc>,
        /// Last changed.
        pub updated_at: DateTime<Utc>,
    }
}

impl AnalysisFileRow {
    /// The row of a folded file of `stream_id`.
    pub fn from_file(stream_id: Uuid, file: &File) -> Self {
        Self {
            id: file.id,
            stream_id,
            legal_entity_id: file.legal_entity_id,
            patient_id: file.patient_id,
            analysis_id: file.analysis_id,
            file_name: file.file_name.clone(),
            object_key: file.object_key.clone(),
            size: i64::try_from(file.size).unwrap_or(i64::MAX),
            content_type: file.content_type.clone(),
            etag: file.etag.clone(),
            is_send: file.is_send,
            created_at: file.created_at,
            updated_at: file.updated_at,
        }
    }

    /// The api's camelCase view (spec 000), without a download link. `streamId` names the event stream that
    /// holds the file's history (`GET /api/audit/streams/{streamId}`).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "streamId": self.stream_id,
            "patientId": self.patient_id,
            "analysisId": self.analysis_id,
            "fileName": self.file_name,
            "size": self.size,
            "contentType": self.content_type,
            "isSend": self.is_send,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        })
    }

    /// The file's resource path.
    pub fn href(&self) -> String {
        href(self.patient_id, self.analysis_id, self.id)
    }
}

/// `/api/erp/v1/patients/{patient_id}/analysis/{analysis_id}/files/{id}`.
pub fn href(patient_id: Uuid, analysis_id: Uuid, id: Uuid) -> String {
    format!("/api/erp/v1/patients/{patient_id}/analysis/{analysis_id}/files/{id}")
}

/// The live files of one stream, oldest first.
pub async fn list(
    client: &impl GenericClient,
    stream_id: Uuid,
) -> Result<Vec<AnalysisFileRow>, StoreError> {
    row::select(
        client,
        "stream_id = $1 ORDER BY created_at, id",
        &[&stream_id],
    )
    .await
}

/// One live file of one stream.
pub async fn get(
    client: &impl GenericClient,
    stream_id: Uuid,
    id: Uuid,
) -> Result<Option<AnalysisFileRow>, StoreError> {
    row::select_one(client, "stream_id = $1 AND id = $2", &[&stream_id, &id]).await
}

impl Projection for AnalysisFilesAggregate {
    const ENTITY: &'static str = "analysis_file";
    const STREAM_COLUMN: &'static str = "stream_id";
    type Row = AnalysisFileRow;

    fn status(_: &State) -> Option<&'static str> {
        None
    }

    fn rows(
        id: Uuid,
        state: &State,
        _version: i64,
        _inserted_at: DateTime<Utc>,
        _updated_at: DateTime<Utc>,
    ) -> Vec<AnalysisFileRow> {
        state
            .files
            .values()
            .map(|file| AnalysisFileRow::from_file(id, file))
            .collect()
    }

    /// Replaces the stream's rows by its live files: few per analysis, and exactly what a rebuild writes.
    async fn project(
        tx: &impl GenericClient,
        id: Uuid,
        state: &State,
        version: i64,
        inserted_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let remove = tx
            .prepare_cached("DELETE FROM analysis_files WHERE stream_id = $1")
            .await?;
        tx.execute(&remove, &[&id]).await?;
        let rows = Self::rows(id, state, version, inserted_at, updated_at);
        row::write(tx, &rows).await
    }
}
