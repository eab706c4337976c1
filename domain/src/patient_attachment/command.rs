//! What callers ask of a patient attachment. Stored as JSON in the jobs table.

use serde::{Deserialize, Serialize};

/// What storage holds under an upload's temporary key, as a HEAD request saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Bytes.
    pub size: u64,
    /// The `Content-Type` the browser declared in its upload form, if any.
    pub content_type: Option<String>,
}

/// What streaming the temporary object found, filled in by the worker before the processing job's
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Examined {
    /// The object was read whole and copied to `object_key`.
    Copied {
        /// Bytes read.
        size: u64,
        /// SHA-256 of the bytes, lower-case hex.
        sha256: String,
        /// The type sniffed from the bytes, if they have a recognisable signature.
        sniffed_type: Option<String>,
        /// The type declared at upload, if any.
        declared_type: Option<String>,
        /// Where the bytes now are.
        object_key: String,
    },
    /// The object could not be processed, for this reason (missing, unreadable): processing fails visibly.
    Failed {
        /// Why, in words a client can act on.
        reason: String,
    },
}

/// A command to one patient attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Command {
    /// Records an uploaded file as a new attachment.
    Create {
        /// The new attachment's id, drawn by the api from the `patient_attachment_ids` sequence.
        id: i64,
        /// The caller's patient.
        patient_id: i64,
        /// The caller's patient case, if the attachment belongs to one.
        #[serde(default)]
        patient_case_id: Option<i64>,
        /// At most 255 characters.
        #[serde(default)]
        description: Option<String>,
        /// The temporary object key the client uploaded to (from `upload_url`).
        upload_key: String,
        /// The caller's user number (users' int64 id in this API).
        user_number: i64,
        /// The largest object accepted (the api's `MAX_ATTACHMENT_BYTES` when it accepted the command).
        max_bytes: u64,
        /// What storage holds under `upload_key`: filled in by the worker with a HEAD request before the
        /// job's transaction; `None` when nothing was uploaded.
        #[serde(default)]
        upload: Option<Upload>,
    },
    /// Records what processing the uploaded object found (a job the create job chains).
    Process {
        /// The temporary key to read (the attachment's `upload_key`).
        upload_key: String,
        /// The final key to copy it to ([`final_key`](super::final_key) of the attachment).
        object_key: String,
        /// Filled in by the worker before the job's transaction.
        #[serde(default)]
        examined: Option<Examined>,
    },
    /// Archives the attachment (its object stays).
    Archive,
}

impl Command {
    /// The command's name, used in job types (`patient_attachment.<name>`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create { .. } => "create",
            Command::Process { .. } => "process",
            Command::Archive => "archive",
        }
    }
}
