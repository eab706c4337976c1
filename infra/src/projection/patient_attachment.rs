//! The `patient_attachments` read model (spec 002): one row per attachment, in Cliniko's shape when shown.
//! `list.rs` compiles the lists' filters, sorting and paging into one parameterised statement.

pub mod list;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use ehealth_domain::patient_attachment::{Attachment, PatientAttachmentAggregate, State};
use serde_json::{json, Value};
use uuid::Uuid;

use super::row::{self, projection_row, OnConflict, ProjectionRow};
use super::Projection;
use crate::StoreError;

/// The columns a `SELECT` reads a row with.
const COLUMNS: &str = PatientAttachmentRow::COLUMN_LIST;

projection_row! {
    table: "patient_attachments",
    // What processing and archiving change; the rest is set once, by `created`.
    on_conflict: OnConflict::Update(&[
        "object_key",
        "content_type",
        "size",
        "sha256",
        "processed_at",
        "processing_completed",
        "processing_error",
        "archived_at",
        "description",
        "updated_at",
    ]),
    /// One row of the read model.
    #[derive(Debug, Clone, PartialEq)]
    pub struct PatientAttachmentRow {
        /// The int64 id.
        pub id: i64,
        /// Its stream.
        pub stream_id: Uuid,
        /// Owner.
        pub legal_entity_id: Uuid,
        /// The caller's patient.
        pub patient_id: i64,
        /// The caller's patient case.
        pub patient_case_id: Option<i64>,
        /// Creator.
        pub user_id: Uuid,
        /// Creator's int64 number.
        pub user_number: i64,
        /// Free text.
        pub description: Option<String>,
        /// File name.
        pub filename: String,
        /// The temporary key it was uploaded to.
        pub upload_key: String,
        /// The final key, once processed.
        pub object_key: Option<String>,
        /// Content type, once processed.
        pub content_type: Option<String>,
        /// Bytes, once processed.
        pub size: Option<i64>,
        /// SHA-256, once processed.
        pub sha256: Option<String>,
        /// When processing completed.
        pub processed_at: Option<DateTime<Utc>>,
        /// Whether processing completed.
        pub processing_completed: bool,
        /// Why processing failed, if it did.
        pub processing_error: Option<String>,
        /// When archived.
        pub archived_at: Option<DateTime<Utc>>,
        /// Created.
        pub created_at: DateTime<Utc>,
        /// Last changed.
        pub updated_at: DateTime<Utc>,
    }
}

impl PatientAttachmentRow {
    /// The row of a folded attachment of `stream_id`.
    pub fn from_attachment(stream_id: Uuid, a: &Attachment) -> Self {
        Self {
            id: a.id,
            stream_id,
            legal_entity_id: a.legal_entity_id,
            patient_id: a.patient_id,
            patient_case_id: a.patient_case_id,
            user_id: a.user_id,
            user_number: a.user_number,
            description: a.description.clone(),
            filename: a.filename.clone(),
            upload_key: a.upload_key.clone(),
            object_key: a.object_key.clone(),
            content_type: a.content_type.clone(),
            size: a.size.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            sha256: a.sha256.clone(),
            processed_at: a.processed_at,
            processing_completed: a.processing_completed(),
            processing_error: a.processing_error.clone(),
            archived_at: a.archived_at,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }

    /// Cliniko's `PatientAttachment`, its links absolute under `base` (`PUBLIC_BASE_URL`; empty for paths).
    /// Ids are int64 written as JSON strings.
    pub fn to_json(&self, base: &str) -> Value {
        let link = |path: String| json!({ "links": { "self": format!("{base}{path}") } });
        json!({
            "id": self.id.to_string(),
            "archived_at": self.archived_at,
            "content": link(format!("{}/content", href(self.id))),
            "content_type": self.content_type,
            "created_at": self.created_at,
            "description": self.description,
            "filename": self.filename,
            "links": { "self": format!("{base}{}", href(self.id)) },
            "patient": link(format!("/v1/patients/{}", self.patient_id)),
            "patient_case": self.patient_case_id.map(|id| link(format!("/v1/patient_cases/{id}"))),
            "pinned_at": null,
            "processed_at": self.processed_at,
            "processing_completed": self.processing_completed,
            "size": self.size,
            "sha256": self.sha256,
            "updated_at": self.updated_at,
            "user": link(format!("/v1/users/{}", self.user_number)),
        })
    }
}

/// `/v1/patient_attachments/{id}`.
pub fn href(id: i64) -> String {
    format!("/v1/patient_attachments/{id}")
}

/// Draws a new attachment id from the `patient_attachment_ids` sequence.
pub async fn next_id(client: &impl GenericClient) -> Result<i64, StoreError> {
    let statement = client
        .prepare_cached("SELECT nextval('patient_attachment_ids')")
        .await?;
    Ok(client.query_one(&statement, &[]).await?.get(0))
}

/// The caller's attachment `id`; `None` when there is none or it is another legal entity's.
pub async fn get(
    client: &impl GenericClient,
    legal_entity_id: Uuid,
    id: i64,
) -> Result<Option<PatientAttachmentRow>, StoreError> {
    row::select_one(
        client,
        "id = $1 AND legal_entity_id = $2",
        &[&id, &legal_entity_id],
    )
    .await
}

/// Whether an attachment was already made from the upload at `upload_key`.
pub async fn upload_used(
    client: &impl GenericClient,
    upload_key: &str,
) -> Result<bool, StoreError> {
    let statement = client
        .prepare_cached("SELECT 1 FROM patient_attachments WHERE upload_key = $1")
        .await?;
    Ok(client
        .query_opt(&statement, &[&upload_key])
        .await?
        .is_some())
}

impl Projection for PatientAttachmentAggregate {
    const ENTITY: &'static str = "patient_attachment";
    const STREAM_COLUMN: &'static str = "stream_id";
    type Row = PatientAttachmentRow;

    /// `processing`, `processed`, `processing_failed` or `archived`: each change is a `StatusChangeEvent`.
    fn status(state: &State) -> Option<&'static str> {
        let attachment = state.0.as_ref()?;
        Some(if attachment.is_archived() {
            "archived"
        } else if attachment.processing_completed() {
            "processed"
        } else if attachment.processing_error.is_some() {
            "processing_failed"
        } else {
            "processing"
        })
    }

    fn rows(
        id: Uuid,
        state: &State,
        _version: i64,
        _inserted_at: DateTime<Utc>,
        _updated_at: DateTime<Utc>,
    ) -> Vec<PatientAttachmentRow> {
        state
            .0
            .iter()
            .map(|attachment| PatientAttachmentRow::from_attachment(id, attachment))
            .collect()
    }
}

/// The int64 number of user `user_id` (spec 002 names users by int64 ids); `None` for an unknown user.
pub async fn user_number(
    client: &impl GenericClient,
    user_id: Uuid,
) -> Result<Option<i64>, StoreError> {
    let statement = client
        .prepare_cached("SELECT number FROM users WHERE id = $1")
        .await?;
    Ok(client
        .query_opt(&statement, &[&user_id])
        .await?
        .map(|row| row.get(0)))
}
