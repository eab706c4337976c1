//! The `patient_attachments` read model (spec 002): one row per attachment, in Cliniko's shape when shown.
//! `list.rs` compiles the lists' filters, sorting and paging into one parameterised statement.

pub mod list;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use ehealth_domain::patient_attachment::{Attachment, PatientAttachmentAggregate, State};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{Folded, Projection};
use crate::StoreError;

const COLUMNS: &str =
    "id, stream_id, legal_entity_id, patient_id, patient_case_id, user_id, user_number, \
     description, filename, upload_key, object_key, content_type, size, sha256, processed_at, \
     processing_completed, processing_error, archived_at, created_at, updated_at";

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

impl PatientAttachmentRow {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get("id"),
            stream_id: row.get("stream_id"),
            legal_entity_id: row.get("legal_entity_id"),
            patient_id: row.get("patient_id"),
            patient_case_id: row.get("patient_case_id"),
            user_id: row.get("user_id"),
            user_number: row.get("user_number"),
            description: row.get("description"),
            filename: row.get("filename"),
            upload_key: row.get("upload_key"),
            object_key: row.get("object_key"),
            content_type: row.get("content_type"),
            size: row.get("size"),
            sha256: row.get("sha256"),
            processed_at: row.get("processed_at"),
            processing_completed: row.get("processing_completed"),
            processing_error: row.get("processing_error"),
            archived_at: row.get("archived_at"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }

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
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM patient_attachments WHERE id = $1 AND legal_entity_id = $2"
        ))
        .await?;
    Ok(client
        .query_opt(&statement, &[&id, &legal_entity_id])
        .await?
        .as_ref()
        .map(PatientAttachmentRow::from_row))
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

const UPSERT: &str = "INSERT INTO patient_attachments (id, stream_id, legal_entity_id, patient_id, \
     patient_case_id, user_id, user_number, description, filename, upload_key, object_key, content_type, \
     size, sha256, processed_at, processing_completed, processing_error, archived_at, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
     ON CONFLICT (id) DO UPDATE SET object_key = EXCLUDED.object_key, content_type = EXCLUDED.content_type, \
     size = EXCLUDED.size, sha256 = EXCLUDED.sha256, processed_at = EXCLUDED.processed_at, \
     processing_completed = EXCLUDED.processing_completed, processing_error = EXCLUDED.processing_error, \
     archived_at = EXCLUDED.archived_at, description = EXCLUDED.description, updated_at = EXCLUDED.updated_at";

impl Projection for PatientAttachmentAggregate {
    const ENTITY: &'static str = "patient_attachment";
    const TABLE: &'static str = "patient_attachments";
    const STREAM_COLUMN: &'static str = "stream_id";

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

    async fn project(
        tx: &impl GenericClient,
        id: Uuid,
        state: &State,
        _version: i64,
        _inserted_at: DateTime<Utc>,
        _updated_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(attachment) = &state.0 else {
            return Ok(());
        };
        let row = PatientAttachmentRow::from_attachment(id, attachment);
        let statement = tx.prepare_cached(UPSERT).await?;
        tx.execute(
            &statement,
            &[
                &row.id,
                &row.stream_id,
                &row.legal_entity_id,
                &row.patient_id,
                &row.patient_case_id,
                &row.user_id,
                &row.user_number,
                &row.description,
                &row.filename,
                &row.upload_key,
                &row.object_key,
                &row.content_type,
                &row.size,
                &row.sha256,
                &row.processed_at,
                &row.processing_completed,
                &row.processing_error,
                &row.archived_at,
                &row.created_at,
                &row.updated_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn insert_folded(
        client: &impl GenericClient,
        table: &str,
        streams: &[Folded<Self>],
    ) -> Result<(), StoreError> {
        let rows: Vec<PatientAttachmentRow> = streams
            .iter()
            .filter_map(|f| {
                f.state
                    .0
                    .as_ref()
                    .map(|a| PatientAttachmentRow::from_attachment(f.stream_id, a))
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        macro_rules! column {
            ($field:ident) => {
                rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>()
            };
        }
        let statement = client
            .prepare_cached(&format!(
                "INSERT INTO {table} ({COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::uuid[], \
                 $4::bigint[], $5::bigint[], $6::uuid[], $7::bigint[], $8::text[], $9::text[], $10::text[], \
                 $11::text[], $12::text[], $13::bigint[], $14::text[], $15::timestamptz[], $16::boolean[], \
                 $17::text[], $18::timestamptz[], $19::timestamptz[], $20::timestamptz[])"
            ))
            .await?;
        client
            .execute(
                &statement,
                &[
                    &column!(id),
                    &column!(stream_id),
                    &column!(legal_entity_id),
                    &column!(patient_id),
                    &column!(patient_case_id),
                    &column!(user_id),
                    &column!(user_number),
                    &column!(description),
                    &column!(filename),
                    &column!(upload_key),
                    &column!(object_key),
                    &column!(content_type),
                    &column!(size),
                    &column!(sha256),
                    &column!(processed_at),
                    &column!(processing_completed),
                    &column!(processing_error),
                    &column!(archived_at),
                    &column!(created_at),
                    &column!(updated_at),
                ],
            )
            .await?;
        Ok(())
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
