//! The folded files of an analysis, and `apply`, which holds no rule.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Event, NAMESPACE};

/// One recorded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Id.
    pub id: Uuid,
    /// The owning legal entity.
    pub legal_entity_id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// The analysis.
    pub analysis_id: Uuid,
    /// Name, unique in the analysis.
    pub file_name: String,
    /// Key in the files bucket.
    pub object_key: String,
    /// Bytes.
    pub size: u64,
    /// Content type.
    pub content_type: String,
    /// Entity tag.
    pub etag: String,
    /// Whether it is to be sent to the patient.
    pub is_send: bool,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The files of one analysis of one legal entity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// The live files by id.
    pub files: BTreeMap<Uuid, File>,
}

/// The state of an analysis-files stream (empty for a stream with no events).
pub type State = Analysis;

impl Analysis {
    /// The live file called `file_name`.
    pub fn by_name(&self, file_name: &str) -> Option<&File> {
        self.files.values().find(|f| f.file_name == file_name)
    }

    /// The id a file uploaded to `object_key` gets: derived, so that a command is the same every time it is
    /// decided (identical pending commands share one job).
    pub fn file_id(object_key: &str) -> Uuid {
        Uuid::new_v5(&NAMESPACE, object_key.as_bytes())
    }
}

/// Folds one event into the state.
pub fn apply(mut state: State, event: &Event) -> State {
    match event {
        Event::FileRecorded {
            file_id,
            legal_entity_id,
            patient_id,
            analysis_id,
            file_name,
            object_key,
            size,
            content_type,
            etag,
            at,
        } => {
            state.files.insert(
                *file_id,
                File {
                    id: *file_id,
                    legal_entity_id: *legal_entity_id,
                    patient_id: *patient_id,
                    analysis_id: *analysis_id,
                    file_name: file_name.clone(),
                    object_key: object_key.clone(),
                    size: *size,
                    content_type: content_type.clone(),
                    etag: etag.clone(),
                    is_send: false,
                    created_at: *at,
                    updated_at: *at,
                },
            );
        }
        Event::SendFlagChanged {
            file_id,
            is_send,
            at,
        } => {
            if let Some(file) = state.files.get_mut(file_id) {
                file.is_send = *is_send;
                file.updated_at = *at;
            }
        }
        Event::FileDeleted { file_id, .. } => {
            state.files.remove(file_id);
        }
    }
    state
}
