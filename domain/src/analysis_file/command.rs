//! What callers ask of an analysis's files. Stored as JSON in the jobs table.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What storage holds under a key, as a HEAD request saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    /// The key that was looked at.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// The `Content-Type` it was uploaded with.
    pub content_type: String,
    /// The storage's entity tag.
    pub etag: String,
}

/// A command to the files of one analysis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Command {
    /// Records the uploaded object of `file_name` as a file.
    Finalize {
        /// The patient.
        patient_id: Uuid,
        /// The analysis.
        analysis_id: Uuid,
        /// The name given at `initialize`.
        file_name: String,
        /// The largest object accepted, in bytes (the api's `MAX_UPLOAD_BYTES` when it accepted the command).
        max_bytes: u64,
        /// The key of the newest upload link the api issued for `file_name` (set at intake); `None` when no
        /// link was issued.
        #[serde(default)]
        upload_key: Option<String>,
        /// What storage holds under `upload_key`: filled in by the worker with a HEAD request before the
        /// job's transaction; `None` when nothing was uploaded.
        #[serde(default)]
        object: Option<StoredObject>,
    },
    /// Marks a file to be sent to the patient by e-mail/Viber, or not.
    SetSend {
        /// The file.
        file_id: Uuid,
        /// The new flag.
        is_send: bool,
    },
    /// Removes a file; its object is deleted from storage after the event is recorded.
    Delete {
        /// The file.
        file_id: Uuid,
    },
}

impl Command {
    /// The command's name, used in job types (`analysis_files.<name>`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Finalize { .. } => "finalize",
            Command::SetSend { .. } => "set_send",
            Command::Delete { .. } => "delete",
        }
    }
}
