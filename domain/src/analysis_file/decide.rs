//! Every rule of an analysis's files.

use super::{stream_id, Analysis, Command, Event, State};
use crate::{Context, Rejection};

/// 409 of spec 000: a file with this name already exists in the analysis.
pub const FILE_EXISTS: &str = "File with this name already exists";
/// 409: finalize found nothing uploaded under the name.
pub const NOT_UPLOADED: &str = "file was not uploaded";
/// 404: no such file among the caller's files of the analysis.
pub const FILE_NOT_FOUND: &str = "File not found";
/// The longest file name accepted, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Validates a (percent-decoded) file name: 1 to 255 bytes, no `/`, `\`, `..` or control characters.
pub fn validate_file_name(file_name: &str) -> Result<(), Rejection> {
    let problem = if file_name.is_empty() || file_name.len() > MAX_FILE_NAME_BYTES {
        Some(("length", "must be 1 to 255 bytes long"))
    } else if file_name.contains(['/', '\\']) {
        Some(("format", "must not contain '/' or '\\'"))
    } else if file_name.contains("..") {
        Some(("format", "must not contain '..'"))
    } else if file_name.chars().any(char::is_control) {
        Some(("format", "must not contain control characters"))
    } else {
        None
    };
    match problem {
        Some((rule, description)) => Err(Rejection::invalid("$.fileName", rule, description)),
        None => Ok(()),
    }
}

/// Whether `file_name` may be uploaded now (the `initialize` step): a valid name not yet taken. Returns the
/// object key to upload to.
pub fn upload_target(
    state: &State,
    stream_id: uuid::Uuid,
    file_name: &str,
) -> Result<String, Rejection> {
    validate_file_name(file_name)?;
    if state.by_name(file_name).is_some() {
        return Err(Rejection::conflict(FILE_EXISTS));
    }
    Ok(state.upload_key(stream_id, file_name))
}

/// Decides a command against the current state.
pub fn decide(state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::Finalize {
            patient_id,
            analysis_id,
            file_name,
            max_bytes,
            object,
        } => {
            let stream = stream_id(ctx.actor.legal_entity_id, patient_id, analysis_id);
            let key = upload_target(state, stream, &file_name)?;
            let Some(object) = object.filter(|o| o.key == key) else {
                return Err(Rejection::conflict(NOT_UPLOADED));
            };
            if object.size > max_bytes {
                return Err(Rejection::invalid(
                    "$.file",
                    "size",
                    format!(
                        "the file is {} bytes; at most {max_bytes} are accepted",
                        object.size
                    ),
                ));
            }
            Ok(vec![Event::FileRecorded {
                file_id: Analysis::file_id(&key),
                legal_entity_id: ctx.actor.legal_entity_id,
                patient_id,
                analysis_id,
                file_name,
                object_key: key,
                size: object.size,
                content_type: object.content_type,
                etag: object.etag,
                at: ctx.now,
            }])
        }
        Command::SetSend { file_id, is_send } => {
            let file = state
                .files
                .get(&file_id)
                .ok_or_else(|| Rejection::not_found(FILE_NOT_FOUND))?;
            if file.is_send == is_send {
                return Ok(Vec::new());
            }
            Ok(vec![Event::SendFlagChanged {
                file_id,
                is_send,
                at: ctx.now,
            }])
        }
        Command::Delete { file_id } => {
            let file = state
                .files
                .get(&file_id)
                .ok_or_else(|| Rejection::not_found(FILE_NOT_FOUND))?;
            Ok(vec![Event::FileDeleted {
                file_id,
                file_name: file.file_name.clone(),
                object_key: file.object_key.clone(),
                at: ctx.now,
            }])
        }
    }
}
