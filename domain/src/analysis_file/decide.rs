//! Every rule of an analysis's files.

use uuid::Uuid;

use super::{stream_id, Analysis, Command, Event, State};
use crate::{Context, Rejection};

/// 409 of spec 000: a file with this name already exists in the analysis.
pub const FILE_EXISTS: &str = "File with this name already exists";
/// 409: finalize found nothing uploaded under the name.
pub const NOT_UPLOADED: &str = "file was not uploaded";
/// 404: no such file among the caller's files of the analysis.
pub const FILE_NOT_FOUND: &str = "File not found";
/// The longest file name accepted, in bytes (spec 000). The name is not part of the object key
/// ([`upload_key`]), so no store's key or file-name limit shortens it.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Validates a (percent-decoded) file name: 1 to [`MAX_FILE_NAME_BYTES`] bytes, not `.` (a URL cannot
/// carry it: clients remove dot segments, so no upload link could reach its key), no `/`, `\`, `..` or
/// control characters.
pub fn validate_file_name(file_name: &str) -> Result<(), Rejection> {
    let problem = if file_name.is_empty() || file_name.len() > MAX_FILE_NAME_BYTES {
        Some(("length", "must be 1 to 255 bytes long"))
    } else if file_name == "." {
        Some(("format", "must not be '.'"))
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
/// object key of this upload link, [`upload_key`] of a fresh `upload_id`.
pub fn upload_target(
    state: &State,
    stream_id: Uuid,
    file_name: &str,
    upload_id: Uuid,
) -> Result<String, Rejection> {
    validate_file_name(file_name)?;
    if state.by_name(file_name).is_some() {
        return Err(Rejection::conflict(FILE_EXISTS));
    }
    Ok(upload_key(stream_id, upload_id))
}

/// The object key of one upload link: `{stream}/{upload_id}`. Every link has a key of its own, so neither the
/// delayed deletion of a refused or deleted upload nor a stale link can touch another upload's object, even
/// one of the same name. The name is not in the key (the event records it, and the api binds each link to its
/// name in `upload_links`), so any name the spec allows fits every store.
pub fn upload_key(stream_id: Uuid, upload_id: Uuid) -> String {
    format!("{stream_id}/{upload_id}")
}

/// Whether `key` is an [`upload_key`] in `stream_id`.
pub fn is_upload_key_of(key: &str, stream_id: Uuid) -> bool {
    key.strip_prefix(&format!("{stream_id}/"))
        .is_some_and(|upload_id| Uuid::parse_str(upload_id).is_ok())
}

/// Decides a command against the current state.
pub fn decide(state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::Finalize {
            patient_id,
            analysis_id,
            file_name,
            max_bytes,
            upload_key,
            object,
        } => {
            validate_file_name(&file_name)?;
            if state.by_name(&file_name).is_some() {
                return Err(Rejection::conflict(FILE_EXISTS));
            }
            let stream = stream_id(ctx.actor.legal_entity_id, patient_id, analysis_id);
            let Some(object) = object.filter(|o| {
                upload_key.as_deref() == Some(o.key.as_str()) && is_upload_key_of(&o.key, stream)
            }) else {
                return Err(Rejection::conflict(NOT_UPLOADED));
            };
            let key = object.key;
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
