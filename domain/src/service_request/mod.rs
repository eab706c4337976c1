//! Service requests: a referral that another legal entity "uses" (reserves), then processes and completes.
//!
//! Lifecycle (spec/README.md "Lifecycles", spec 004 for release):
//! `status` active → in_progress → completed, or recalled / entered_in_error;
//! `program_processing_status` new → in_queue (use) → in_progress (process) → completed, and release takes
//! in_queue back to new. A reader who wants a rule opens `decide.rs`.

mod command;
mod decide;
mod event;
mod state;
#[cfg(test)]
mod tests;

pub use command::Command;
pub use decide::*;
pub use event::Event;
pub use state::{apply, ProgramProcessingStatus, ServiceRequest, State, Status};

use crate::{Aggregate, Context, Rejection};

/// The service-request aggregate: stream type `service_request`.
pub struct ServiceRequestAggregate;

impl Aggregate for ServiceRequestAggregate {
    const STREAM_TYPE: &'static str = "service_request";
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
