//! What a caller asks for: one presigned link.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What the link lets its holder do with the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// Upload (`PUT`), with the content type the command gives, if any.
    Put,
    /// Download (`GET`).
    Get,
    /// Look at the object's size and type (`HEAD`).
    Head,
}

impl Action {
    /// The HTTP method the link is signed for.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Put => "PUT",
            Action::Get => "GET",
            Action::Head => "HEAD",
        }
    }
}

/// A command to a folder's links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Command {
    /// Issues one link.
    Issue {
        /// What the link does.
        link_action: Action,
        /// The folder: the contractor legal entity (the caller's own unless the caller is NHS; see
        /// [`super::folder`]).
        resource_id: Uuid,
        /// The file name, percent-decoded once ([`super::decode_resource_name`]).
        resource_name: String,
        /// The `Content-Type` a `PUT` link is signed with.
        content_type: Option<String>,
        /// The bucket (`MEDIA_BUCKET`).
        bucket: String,
        /// The link's lifetime (`SECRETS_TTL`).
        ttl_seconds: u64,
    },
}

impl Command {
    /// The command's name.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Issue { .. } => "issue",
        }
    }
}
