//! What happened to an analysis's files. Facts only: applying them runs no rule.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An event of an analysis-files stream. Adjacently tagged: the store keeps `event_type` in a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// An uploaded object was recorded as a file, not yet to be sent.
    FileRecorded {
        /// The file's id.
        file_id: Uuid,
        /// The legal entity that owns the stream.
        legal_entity_id: Uuid,
        /// The patient.
        patient_id: Uuid,
        /// The analysis.
        analysis_id: Uuid,
        /// The name, unique among the analysis's files.
        file_name: String,
        /// Where the bytes are, in the files bucket.
        object_key: String,
        /// Bytes.
        size: u64,
        /// Content type.
        content_type: String,
        /// The storage's entity tag.
        etag: String,
        /// When it was recorded.
        at: DateTime<Utc>,
    },
    /// The "send to the patient" flag changed.
    SendFlagChanged {
        /// The file.
        file_id: Uuid,
        /// The new flag.
        is_send: bool,
        /// When.
        at: DateTime<Utc>,
    },
    /// The file was removed; its object is to be deleted from storage.
    FileDeleted {
        /// The file.
        file_id: Uuid,
        /// Its name, free again.
        file_name: String,
        /// The object to delete.
        object_key: String,
        /// When.
        at: DateTime<Utc>,
    },
}

impl Event {
    /// The stored `event_type`, the same snake_case name serde uses.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::FileRecorded { .. } => "file_recorded",
            Event::SendFlagChanged { .. } => "send_flag_changed",
            Event::FileDeleted { .. } => "file_deleted",
        }
    }
}
