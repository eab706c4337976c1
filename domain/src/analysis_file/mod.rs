//! Analysis-result files of a clinic ERP (spec 000): the files one legal entity attached to one analysis of
//! one patient.
//!
//! One stream per (legal entity, patient, analysis): a file name is unique within an analysis, and that
//! invariant is only safe to decide where every file of the analysis is in one consistency boundary. The
//! stream id is derived (UUID v5), so a legal entity can only ever address its own files: another legal
//! entity's request lands on another stream, which has no such file (404).
//!
//! Upload is three steps. `initialize` is answered synchronously by the api with a presigned PUT URL for
//! [`Analysis::upload_key`]; it changes nothing. The client PUTs the bytes to storage. `finalize` is a job:
//! the worker HEADs the object and hands the facts to [`decide`] in [`Command::Finalize`].

mod command;
mod decide;
mod event;
mod state;
#[cfg(test)]
mod tests;

pub use command::{Command, StoredObject};
pub use decide::*;
pub use event::Event;
pub use state::{apply, Analysis, File, State};

use uuid::Uuid;

use crate::{Aggregate, Context, Rejection};

/// The analysis-files aggregate: stream type `analysis_files`.
pub struct AnalysisFilesAggregate;

impl Aggregate for AnalysisFilesAggregate {
    const STREAM_TYPE: &'static str = "analysis_files";
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
const NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_0c3e_58d4_4b7a_9e21_3f0d_a7c5_e000);

/// The stream of `legal_entity_id`'s files of one analysis.
pub fn stream_id(legal_entity_id: Uuid, patient_id: Uuid, analysis_id: Uuid) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("{legal_entity_id}/{patient_id}/{analysis_id}").as_bytes(),
    )
}
