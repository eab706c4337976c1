//! The folded attachment, and `apply`, which holds no rule.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Event;

/// One patient attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The int64 id.
    pub id: i64,
    /// Owner.
    pub legal_entity_id: Uuid,
    /// The caller's patient.
    pub patient_id: i64,
    /// The caller's patient case.
    pub patient_case_id: Option<i64>,
    /// Who created it.
    pub user_id: Uuid,
    /// Its creator's int64 number.
    pub user_number: i64,
    /// Free text.
    pub description: Option<String>,
    /// The uploaded file's name.
    pub filename: String,
    /// The temporary key it was uploaded to.
    pub upload_key: String,
    /// The final key, once processed.
    pub object_key: Option<String>,
    /// The type declared at upload.
    pub declared_type: Option<String>,
    /// The content type, once processed.
    pub content_type: Option<String>,
    /// Bytes, once processed.
    pub size: Option<u64>,
    /// SHA-256, once processed.
    pub sha256: Option<String>,
    /// When processing completed.
    pub processed_at: Option<DateTime<Utc>>,
    /// Why processing failed, if it did (cleared by a later success).
    pub processing_error: Option<String>,
    /// When it was archived.
    pub archived_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Attachment {
    /// Whether processing completed (`processing_completed`).
    pub fn processing_completed(&self) -> bool {
        self.processed_at.is_some()
    }

    /// Whether it is archived.
    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }
}

/// The state of a patient-attachment stream: `None` before it was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State(pub Option<Attachment>);

/// Folds one event into the state.
pub fn apply(state: State, event: &Event) -> State {
    match (state.0, event) {
        (
            _,
            Event::Created {
                id,
                legal_entity_id,
                patient_id,
                patient_case_id,
                user_id,
                user_number,
                description,
                filename,
                upload_key,
                declared_type,
                at,
            },
        ) => State(Some(Attachment {
            id: *id,
            legal_entity_id: *legal_entity_id,
            patient_id: *patient_id,
            patient_case_id: *patient_case_id,
            user_id: *user_id,
            user_number: *user_number,
            description: description.clone(),
            filename: filename.clone(),
            upload_key: upload_key.clone(),
            object_key: None,
            declared_type: declared_type.clone(),
            content_type: None,
            size: None,
            sha256: None,
            processed_at: None,
            processing_error: None,
            archived_at: None,
            created_at: *at,
            updated_at: *at,
        })),
        (
            Some(mut attachment),
            Event::Processed {
                size,
                sha256,
                content_type,
                object_key,
                at,
            },
        ) => {
            attachment.size = Some(*size);
            attachment.sha256 = Some(sha256.clone());
            attachment.content_type = Some(content_type.clone());
            attachment.object_key = Some(object_key.clone());
            attachment.processed_at = Some(*at);
            attachment.processing_error = None;
            attachment.updated_at = *at;
            State(Some(attachment))
        }
        (Some(mut attachment), Event::ProcessingFailed { reason, at }) => {
            attachment.processing_error = Some(reason.clone());
            attachment.updated_at = *at;
            State(Some(attachment))
        }
        (Some(mut attachment), Event::Archived { at }) => {
            attachment.archived_at = Some(*at);
            attachment.updated_at = *at;
            State(Some(attachment))
        }
        (None, _) => State(None),
    }
}
