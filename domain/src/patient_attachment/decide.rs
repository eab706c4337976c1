//! Every rule of a patient attachment, and the object keys it lives under.

use uuid::Uuid;

use super::{Command, Event, Examined, State};
use crate::{Context, Rejection};

/// 404: no such attachment among the caller's.
pub const NOT_FOUND: &str = "Patient attachment not found";
/// 409: a create for an id that already has an attachment.
pub const ALREADY_EXISTS: &str = "Patient attachment already exists";
/// 422 on `upload_url`: nothing was uploaded there (or the upload expired and was removed).
pub const NOT_UPLOADED: &str = "no file was uploaded to this URL";
/// 422 on `upload_url`: not a URL this service presigned for the caller and this patient.
pub const NOT_PRESIGNED: &str = "must be a URL this service presigned for this patient";
/// 422 on `upload_url`: the object is larger than `MAX_ATTACHMENT_BYTES` allows.
pub const TOO_LARGE: &str = "the uploaded file is larger than allowed";
/// 422 on `description`.
pub const DESCRIPTION_TOO_LONG: &str = "is too long (maximum is 255 characters)";
/// 409: a process command that names other keys than the attachment's own.
pub const WRONG_OBJECT: &str = "processing names another object than the attachment's";
/// 422 on `description`: text cannot hold NUL characters.
pub const DESCRIPTION_NUL: &str = "must not contain NUL characters";
/// The reason processing fails with when the worker had no look at the object.
pub const NOT_EXAMINED: &str = "the uploaded file was not examined";
/// The longest description, in characters (Cliniko: `<= 255 characters`).
pub const MAX_DESCRIPTION_CHARS: usize = 255;
/// The longest file name kept in an object key, in bytes: every store takes keys of 1,024 bytes, and some
/// limit a key segment to 255.
pub const MAX_FILENAME_BYTES: usize = 100;
/// The name of an upload whose client named none.
pub const DEFAULT_FILENAME: &str = "attachment";
/// The content type of bytes whose type neither sniffing nor the upload names.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The temporary prefix of `legal_entity_id`'s uploads for one patient:
/// `{legal entity}/attachments/temp/{patient}/`.
pub fn temp_prefix(legal_entity_id: Uuid, patient_id: i64) -> String {
    format!("{legal_entity_id}/attachments/temp/{patient_id}/")
}

/// The key of one presigned upload: `{legal entity}/attachments/temp/{patient}/{random}/{filename}`, with
/// `filename` already [`sanitize_filename`]d. A fresh `random` per upload: no two uploads share a key.
pub fn upload_key(legal_entity_id: Uuid, patient_id: i64, random: Uuid, filename: &str) -> String {
    format!(
        "{}{}/{filename}",
        temp_prefix(legal_entity_id, patient_id),
        random.simple()
    )
}

/// The file name of `key` when it is an [`upload_key`] of `legal_entity_id` and `patient_id`; `None` for any
/// other key.
pub fn upload_filename(key: &str, legal_entity_id: Uuid, patient_id: i64) -> Option<&str> {
    let rest = key.strip_prefix(&temp_prefix(legal_entity_id, patient_id))?;
    let (random, filename) = rest.split_once('/')?;
    let random_ok = random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit());
    (random_ok && sanitize_filename(Some(filename)) == filename).then_some(filename)
}

/// Where a processed attachment's bytes live: `{legal entity}/attachments/{id}/{filename}`.
pub fn final_key(legal_entity_id: Uuid, id: i64, filename: &str) -> String {
    format!("{legal_entity_id}/attachments/{id}/{filename}")
}

/// A client's file name made safe for a key segment and a `Content-Disposition`: letters, digits, `.`, `-`
/// and `_` kept, anything else `_`, no leading dot, at most [`MAX_FILENAME_BYTES`]; nothing left (or no
/// name) is [`DEFAULT_FILENAME`].
pub fn sanitize_filename(raw: Option<&str>) -> String {
    let mut name: String = raw
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    name = name.trim_start_matches('.').to_owned();
    name.truncate(MAX_FILENAME_BYTES);
    if name.is_empty() {
        DEFAULT_FILENAME.to_owned()
    } else {
        name
    }
}

/// Whether a description fits: at most [`MAX_DESCRIPTION_CHARS`] characters and no NUL (422 on
/// `$.description`).
pub fn validate_description(description: Option<&str>) -> Result<(), Rejection> {
    match description {
        Some(text) if text.chars().count() > MAX_DESCRIPTION_CHARS => Err(Rejection::invalid(
            "$.description",
            "length",
            DESCRIPTION_TOO_LONG,
        )),
        Some(text) if text.contains('\0') => Err(Rejection::invalid(
            "$.description",
            "format",
            DESCRIPTION_NUL,
        )),
        _ => Ok(()),
    }
}

/// The content type an attachment gets: the sniffed one, else the declared one, else
/// [`OCTET_STREAM`].
pub fn content_type(sniffed: Option<&str>, declared: Option<&str>) -> String {
    sniffed
        .or(declared)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or(OCTET_STREAM)
        .to_owned()
}

/// The caller's attachment: another legal entity's is as absent as a missing one (404).
fn owned<'a>(state: &'a State, ctx: &Context) -> Result<&'a super::Attachment, Rejection> {
    state
        .0
        .as_ref()
        .filter(|a| a.legal_entity_id == ctx.actor.legal_entity_id)
        .ok_or_else(|| Rejection::not_found(NOT_FOUND))
}

/// Decides a command against the current state.
pub fn decide(state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::Create {
            id,
            patient_id,
            patient_case_id,
            description,
            upload_key,
            user_number,
            max_bytes,
            upload,
        } => {
            if state.0.is_some() {
                return Err(Rejection::conflict(ALREADY_EXISTS));
            }
            validate_description(description.as_deref())?;
            let legal_entity_id = ctx.actor.legal_entity_id;
            let Some(filename) = upload_filename(&upload_key, legal_entity_id, patient_id) else {
                return Err(Rejection::invalid(
                    "$.upload_url",
                    "presigned",
                    NOT_PRESIGNED,
                ));
            };
            let Some(upload) = upload else {
                return Err(Rejection::invalid("$.upload_url", "uploaded", NOT_UPLOADED));
            };
            if upload.size > max_bytes {
                return Err(Rejection::invalid("$.upload_url", "size", TOO_LARGE));
            }
            Ok(vec![Event::Created {
                id,
                legal_entity_id,
                patient_id,
                patient_case_id,
                user_id: ctx.actor.user_id,
                user_number,
                description,
                filename: filename.to_owned(),
                declared_type: upload.content_type,
                upload_key,
                at: ctx.now,
            }])
        }
        Command::Process {
            upload_key,
            object_key,
            examined,
        } => {
            let attachment = owned(state, ctx)?;
            if attachment.processing_completed() {
                return Ok(Vec::new());
            }
            let target = final_key(
                attachment.legal_entity_id,
                attachment.id,
                &attachment.filename,
            );
            if upload_key != attachment.upload_key || object_key != target {
                return Err(Rejection::conflict(WRONG_OBJECT));
            }
            Ok(vec![match examined {
                Some(Examined::Copied {
                    size,
                    sha256,
                    sniffed_type,
                    declared_type,
                    ..
                }) => Event::Processed {
                    size,
                    sha256,
                    content_type: content_type(
                        sniffed_type.as_deref(),
                        declared_type
                            .as_deref()
                            .or(attachment.declared_type.as_deref()),
                    ),
                    object_key,
                    at: ctx.now,
                },
                Some(Examined::Failed { reason }) => Event::ProcessingFailed {
                    reason,
                    at: ctx.now,
                },
                None => Event::ProcessingFailed {
                    reason: NOT_EXAMINED.to_owned(),
                    at: ctx.now,
                },
            }])
        }
        Command::Archive => {
            let attachment = owned(state, ctx)?;
            if attachment.is_archived() {
                return Ok(Vec::new());
            }
            Ok(vec![Event::Archived { at: ctx.now }])
        }
    }
}
