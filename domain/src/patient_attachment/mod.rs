//! Patient attachments (spec 002, Cliniko's patient-attachment API): files a legal entity keeps about one of
//! its patients, uploaded by the client's browser straight to object storage with a presigned POST.
//!
//! One stream per attachment, its id derived from the attachment's int64 id ([`stream_id`]). The id comes from
//! a database sequence: the api draws it at intake and the command carries it, so `created` records it and a
//! rebuild gives every attachment the same id again.
//!
//! Life: `create` (a job: the worker HEADs the uploaded temporary object and the decision records it) →
//! `process` (a second job the first one chains: the worker streams the object for its size, SHA-256 and
//! content type and copies it to its final key; the decision records `processed` or `processing_failed`) →
//! `archive` (any time; archiving an archived attachment appends nothing).

mod command;
mod decide;
mod event;
mod state;
#[cfg(test)]
mod tests;

pub use command::{Command, Examined, Upload};
pub use decide::*;
pub use event::Event;
pub use state::{apply, Attachment, State};

use uuid::Uuid;

use crate::{Aggregate, Context, Rejection};

/// The patient-attachment aggregate: stream type `patient_attachment`.
pub struct PatientAttachmentAggregate;

impl Aggregate for PatientAttachmentAggregate {
    const STREAM_TYPE: &'static str = "patient_attachment";
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
const NAMESPACE: Uuid = Uuid::from_u128(0x2c7e_91d0_4f3a_4e8b_b6a5_0d1e_9f27_c002);

/// The stream of attachment `id`.
pub fn stream_id(id: i64) -> Uuid {
    Uuid::new_v5(&NAMESPACE, id.to_string().as_bytes())
}
