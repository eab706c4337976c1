//! Media storage links (spec 001): presigned links to the ambulatory-contracts bucket, issued to third parties
//! and recorded so that auditors can see who was given access to what.
//!
//! One stream per folder — the contractor legal entity whose objects the links reach — with one
//! `issued` event per link (`media_link.issued`: who, which object, which action, until when). Issuing is
//! synchronous, because the answer is the link: the api runs [`decide`] inline and appends the event before
//! it answers (see `api/src/routes/media_links.rs`).
//!
//! No rule depends on the links issued before: each decision stands on its own command and caller. The api
//! therefore appends at the stream's head without replaying the folder's history, so the thousandth link
//! costs what the first did; [`State`] is a summary for auditors' reads only.

mod command;
mod decide;
mod event;
mod state;
#[cfg(test)]
mod tests;

pub use command::{Action, Command};
pub use decide::*;
pub use event::Event;
pub use state::{apply, Folder, State};

use uuid::Uuid;

use crate::{Aggregate, Context, Rejection};

/// The media-link aggregate: stream type `media_link`, so its one event reads `media_link.issued`.
pub struct MediaLinkAggregate;

impl Aggregate for MediaLinkAggregate {
    const STREAM_TYPE: &'static str = "media_link";
    type State = State;
    type Command = Command;
    type Event = Event;

    fn apply(state: State, event: &Event) -> State {
        apply(state, event)
    }

    fn decide(state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, Rejection> {
        decide::decide(state, command, ctx)
    }
}

/// Namespace of the derived ids of this module (UUID v5).
const NAMESPACE: Uuid = Uuid::from_u128(0x3c1e_77a0_2b9d_4f61_8e05_d4a2_9b7c_0001);

/// The stream of the links to `legal_entity_id`'s folder. Derived, so it never collides with the legal
/// entity's own id or any other stream.
pub fn stream_id(legal_entity_id: Uuid) -> Uuid {
    Uuid::new_v5(&NAMESPACE, legal_entity_id.as_bytes())
}

/// The object a link reaches: `{resource_id}/{resource_name}`, the folder and the (decoded) file name.
pub fn object_key(resource_id: Uuid, resource_name: &str) -> String {
    format!("{resource_id}/{resource_name}")
}
