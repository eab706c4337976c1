//! Every rule of a media storage link.

use chrono::{DurationRound, TimeDelta};
use uuid::Uuid;

use super::{object_key, Action, Command, Event, State};
use crate::{Actor, ClientType, Context, Rejection};

/// 403: a caller other than NHS named another legal entity's folder.
pub const FOREIGN_FOLDER: &str = "Only NHS may request links to another legal entity's folder";
/// The longest resource name accepted, in bytes, once decoded.
pub const MAX_RESOURCE_NAME_BYTES: usize = 255;
/// The longest content type accepted, in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 255;
/// The longest lifetime of a link: 7 days, the SigV4 limit.
pub const MAX_TTL_SECONDS: u64 = 604_800;

const RESOURCE_NAME: &str = "$.secret.resource_name";
const CONTENT_TYPE: &str = "$.secret.content_type";

/// The folder a caller's links go to: its own legal entity when it names none (or names its own); another
/// legal entity's only for NHS (403 [`FOREIGN_FOLDER`] otherwise).
pub fn folder(requested: Option<Uuid>, actor: &Actor) -> Result<Uuid, Rejection> {
    match requested {
        None => Ok(actor.legal_entity_id),
        Some(id) if id == actor.legal_entity_id || actor.client_type == ClientType::Nhs => Ok(id),
        Some(_) => Err(Rejection::forbidden(FOREIGN_FOLDER)),
    }
}

/// Percent-decodes a resource name once (spec 001: names of several words arrive percent-encoded). `+` stays
/// `+`; a `%` that does not start a `%XX` escape, or bytes that are not UTF-8 once decoded, are 422.
pub fn decode_resource_name(raw: &str) -> Result<String, Rejection> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| char::from(b).to_digit(16);
            let escape = bytes
                .get(i + 1)
                .copied()
                .and_then(hex)
                .zip(bytes.get(i + 2).copied().and_then(hex));
            let Some((high, low)) = escape else {
                return Err(Rejection::invalid(
                    RESOURCE_NAME,
                    "format",
                    "is not percent-encoded correctly: '%' must start a %XX escape (write '%25' for '%')",
                ));
            };
            // Two hex digits: at most 0xFF.
            decoded.push(u8::try_from(high * 16 + low).unwrap_or(u8::MAX));
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| {
        Rejection::invalid(RESOURCE_NAME, "format", "is not UTF-8 once percent-decoded")
    })
}

/// A safe object name inside the folder: 1 to [`MAX_RESOURCE_NAME_BYTES`] bytes, not `.`, no `/` or `\` (it
/// cannot leave the folder or make sub-folders), no `..`, no control characters.
pub fn validate_resource_name(name: &str) -> Result<(), Rejection> {
    let problem = if name.is_empty() || name.len() > MAX_RESOURCE_NAME_BYTES {
        Some(("length", "must be 1 to 255 bytes long once percent-decoded"))
    } else if name == "." {
        Some(("format", "must not be '.'"))
    } else if name.contains(['/', '\\']) {
        Some(("format", "must not contain '/' or '\\'"))
    } else if name.contains("..") {
        Some(("format", "must not contain '..'"))
    } else if name.chars().any(char::is_control) {
        Some(("format", "must not contain control characters"))
    } else {
        None
    };
    match problem {
        Some((rule, description)) => Err(Rejection::invalid(RESOURCE_NAME, rule, description)),
        None => Ok(()),
    }
}

/// A content type a `PUT` link can be signed with: `type/subtype` with optional parameters, printable ASCII,
/// at most [`MAX_CONTENT_TYPE_BYTES`] bytes. Only `PUT` takes one: a `GET` or `HEAD` link with a content
/// type is 422, rather than a content type silently ignored.
pub fn validate_content_type(action: Action, content_type: Option<&str>) -> Result<(), Rejection> {
    let Some(content_type) = content_type else {
        return Ok(());
    };
    if action != Action::Put {
        return Err(Rejection::invalid(
            CONTENT_TYPE,
            "inclusion",
            "only a PUT link takes a content type",
        ));
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let (media_type, parameters) = content_type
        .split_once(';')
        .map_or((content_type, None), |(t, p)| (t, Some(p)));
    let well_formed = content_type.len() <= MAX_CONTENT_TYPE_BYTES
        && media_type
            .split_once('/')
            .is_some_and(|(kind, subtype)| token(kind) && token(subtype))
        && parameters.is_none_or(|p| p.bytes().all(|b| (b' '..=b'~').contains(&b)));
    if well_formed {
        Ok(())
    } else {
        Err(Rejection::invalid(
            CONTENT_TYPE,
            "format",
            "must be a media type such as application/pdf: printable ASCII, at most 255 bytes",
        ))
    }
}

/// Decides a command. No rule reads the folder's earlier links, so `_state` is unused (see the module's
/// documentation).
pub fn decide(_state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::Issue {
            link_action,
            resource_id,
            resource_name,
            content_type,
            bucket,
            ttl_seconds,
        } => {
            folder(Some(resource_id), &ctx.actor)?;
            validate_resource_name(&resource_name)?;
            validate_content_type(link_action, content_type.as_deref())?;
            let lifetime = (1..=MAX_TTL_SECONDS)
                .contains(&ttl_seconds)
                .then(|| i64::try_from(ttl_seconds).ok())
                .flatten()
                .and_then(TimeDelta::try_seconds)
                .ok_or_else(|| {
                    Rejection::invalid(
                        "$.ttl_seconds",
                        "number",
                        "a link lives 1 to 604800 seconds",
                    )
                })?;
            // SigV4 signs whole seconds (`X-Amz-Date`): the link is signed at `issued_at` and stops working at
            // exactly `expires_at`.
            let issued_at = ctx
                .now
                .duration_trunc(TimeDelta::seconds(1))
                .unwrap_or(ctx.now);
            Ok(vec![Event::Issued {
                issued_to: ctx.actor.clone(),
                action: link_action,
                bucket,
                resource_id,
                object_key: object_key(resource_id, &resource_name),
                resource_name,
                content_type,
                issued_at,
                expires_at: issued_at + lifetime,
            }])
        }
    }
}
