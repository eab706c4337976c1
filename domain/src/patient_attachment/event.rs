//! What happened to a patient attachment. Facts only: applying them runs no rule.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An event of a patient-attachment stream. Adjacently tagged: the store keeps `event_type` in a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// An uploaded file was recorded as an attachment; processing follows.
    Created {
        /// The attachment's int64 id (from the sequence, decided into the event).
        id: i64,
        /// The owning legal entity.
        legal_entity_id: Uuid,
        /// The caller's patient.
        patient_id: i64,
        /// The caller's patient case, if any.
        patient_case_id: Option<i64>,
        /// The user who created it.
        user_id: Uuid,
        /// That user's int64 number.
        user_number: i64,
        /// Free text, at most 255 characters.
        description: Option<String>,
        /// The uploaded file's name (the last segment of its key).
        filename: String,
        /// The temporary object key.
        upload_key: String,
        /// The type declared at upload, if any.
        declared_type: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The object was read whole, measured and copied to its final key.
    Processed {
        /// Bytes.
        size: u64,
        /// SHA-256, lower-case hex.
        sha256: String,
        /// The sniffed type, else the declared one, else `application/octet-stream`.
        content_type: String,
        /// The final object key.
        object_key: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Processing could not read the object; the attachment stays unprocessed.
    ProcessingFailed {
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The attachment was archived (its object stays).
    Archived {
        /// When.
        at: DateTime<Utc>,
    },
}

impl Event {
    /// The stored `event_type`, the same snake_case name serde uses.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::Created { .. } => "created",
            Event::Processed { .. } => "processed",
            Event::ProcessingFailed { .. } => "processing_failed",
            Event::Archived { .. } => "archived",
        }
    }
}
