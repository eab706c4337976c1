//! The contract every event-sourced aggregate fulfils.

use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

use crate::{Context, Rejection};

/// An event-sourced aggregate: a state folded from events, and a decision function over commands.
///
/// Events serialize as an adjacently tagged enum (`{"event_type": …, "data": …}`) so that the event store can
/// keep the type in its own column and the payload as JSON.
pub trait Aggregate {
    /// The stream type recorded with every event of this aggregate (e.g. `service_request`).
    const STREAM_TYPE: &'static str;

    /// The folded state. `Default` is the state of a stream with no events.
    type State: Default + Clone + Debug;
    /// What a caller asks the aggregate to do.
    type Command: Serialize + DeserializeOwned + Clone + Debug;
    /// What happened. Facts: no business rules run when they are applied.
    type Event: Serialize + DeserializeOwned + Clone + Debug + PartialEq;

    /// Folds one event into the state. Holds no business rule and never fails.
    fn apply(state: Self::State, event: &Self::Event) -> Self::State;

    /// Decides what a command does to the current state: the events to append, or the rejection to answer.
    fn decide(
        state: &Self::State,
        command: Self::Command,
        ctx: &Context,
    ) -> Result<Vec<Self::Event>, Rejection>;

    /// Folds a whole history, oldest first, into a state.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State
    where
        Self::Event: 'a,
    {
        events
            .into_iter()
            .fold(Self::State::default(), |state, event| {
                Self::apply(state, event)
            })
    }
}
