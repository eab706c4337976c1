//! What happened to a folder's links. Facts only: applying them runs no rule.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Action;
use crate::Actor;

/// An event of a folder's stream. Adjacently tagged: the store keeps `event_type` in a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// A presigned link was given out.
    Issued {
        /// To whom: the user, the legal entity and the token's client type.
        issued_to: Actor,
        /// What it lets its holder do.
        action: Action,
        /// The bucket.
        bucket: String,
        /// The folder (contractor legal entity).
        resource_id: Uuid,
        /// The file name, decoded.
        resource_name: String,
        /// The object: `{resource_id}/{resource_name}`.
        object_key: String,
        /// The content type a `PUT` link is signed with.
        content_type: Option<String>,
        /// When it was signed.
        issued_at: DateTime<Utc>,
        /// When it stops working.
        expires_at: DateTime<Utc>,
    },
}

impl Event {
    /// The stored `event_type`, the same snake_case name serde uses.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::Issued { .. } => "issued",
        }
    }
}
