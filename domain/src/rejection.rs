//! A domain rejection: why a command was refused, with the HTTP status and message the specification names.

use serde::{Deserialize, Serialize};

/// One rule an input entry broke, in the eHealth `validation_failed` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Machine name of the rule, e.g. `invalid`, `required`, `format`.
    pub rule: String,
    /// Human-readable description.
    pub description: String,
    /// Rule parameters; dropped first when a stored error body must be shortened.
    #[serde(default)]
    pub params: serde_json::Value,
}

/// One invalid input entry, in the eHealth `validation_failed` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidEntry {
    /// JSON path of the entry, e.g. `$.used_by_employee.identifier.value`.
    pub entry: String,
    /// Always `json_data_property` for body fields.
    pub entry_type: String,
    /// The rules the entry broke.
    pub rules: Vec<Rule>,
}

/// Why a command was refused. Carries the HTTP status (403, 404, 409 or 422) and the message to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{status} {message}")]
pub struct Rejection {
    /// The HTTP status the command answers with.
    pub status: u16,
    /// The message, exactly as the specification words it.
    pub message: String,
    /// For 422: the invalid entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid: Vec<InvalidEntry>,
}

impl Rejection {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            invalid: Vec::new(),
        }
    }

    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }

    /// 404: the target does not exist (or is not visible to the caller).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// 409: the target's state does not allow this.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }

    /// 422: one input entry is invalid. `entry` is a JSON path such as `$.expiration_date`.
    pub fn invalid(
        entry: impl Into<String>,
        rule: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        let description = description.into();
        Self {
            status: 422,
            message: "Validation failed. You can find validators description at our API Manifest: \
                      http://docs.apimanifest.apiary.io/#introduction/interacting-with-api/errors."
                .to_owned(),
            invalid: vec![InvalidEntry {
                entry: entry.into(),
                entry_type: "json_data_property".to_owned(),
                rules: vec![Rule {
                    rule: rule.into(),
                    description,
                    params: serde_json::Value::Null,
                }],
            }],
        }
    }

    /// The eHealth error `type` for this status: `forbidden`, `not_found`, `request_conflict`,
    /// `validation_failed`.
    pub fn error_type(&self) -> &'static str {
        error_type_for(self.status)
    }

    /// The eHealth `error` object: `{"type":…,"message":…,"invalid":[…]}`.
    pub fn error_object(&self) -> serde_json::Value {
        error_object(self.status, &self.message, &self.invalid)
    }
}

/// The eHealth `error` object for a status, message and invalid entries (omitted when empty).
pub fn error_object(status: u16, message: &str, invalid: &[InvalidEntry]) -> serde_json::Value {
    let mut error = serde_json::json!({ "type": error_type_for(status), "message": message });
    if !invalid.is_empty() {
        error["invalid"] = serde_json::json!(invalid);
    }
    error
}

/// The eHealth error `type` for an HTTP status.
pub fn error_type_for(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "access_denied",
        403 => "forbidden",
        404 => "not_found",
        409 => "request_conflict",
        415 => "unsupported_media_type",
        422 => "validation_failed",
        429 => "too_many_requests",
        _ => "internal_error",
    }
}
