//! A folder's links as auditors see them in summary, and `apply`, which holds no rule.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Event;

/// What a folder's stream says in sum. No decision reads it (see the module's documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folder {
    /// The folder (contractor legal entity); `None` before the first link.
    pub resource_id: Option<Uuid>,
    /// Links issued.
    pub links_issued: u64,
    /// When the last one was issued.
    pub last_issued_at: Option<DateTime<Utc>>,
}

/// The state of a media-link stream.
pub type State = Folder;

/// Folds one event into the state.
pub fn apply(mut state: State, event: &Event) -> State {
    match event {
        Event::Issued {
            resource_id,
            issued_at,
            ..
        } => {
            state.resource_id = Some(*resource_id);
            state.links_issued += 1;
            state.last_issued_at = Some(*issued_at);
        }
    }
    state
}
