//! A given/when/then harness for aggregate rules.
//!
//! ```ignore
//! given::<ServiceRequestAggregate>([created(), used()])
//!     .when(Command::Release)
//!     .then([Event::Released]);
//! ```

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::{Actor, Aggregate, ClientType, Context, Rejection};

/// A fixed clock for tests: 2026-06-15T12:00:00Z.
pub fn test_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 15, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A fixed MSP caller for tests.
pub fn test_actor() -> Actor {
    Actor {
        user_id: Uuid::from_u128(0x1111),
        legal_entity_id: Uuid::from_u128(0xAAAA),
        client_type: ClientType::Msp,
    }
}

/// Starts a scenario from a history of events.
pub fn given<A: Aggregate>(history: impl IntoIterator<Item = A::Event>) -> Given<A> {
    Given {
        history: history.into_iter().collect(),
        ctx: Context::new(test_now(), test_actor()),
    }
}

/// A history plus the context the command will be decided in.
pub struct Given<A: Aggregate> {
    history: Vec<A::Event>,
    ctx: Context,
}

impl<A: Aggregate> Given<A> {
    /// Replaces the context (caller, clock, looked-up employee).
    pub fn with(mut self, ctx: Context) -> Self {
        self.ctx = ctx;
        self
    }

    /// Changes the context in place.
    pub fn with_ctx(mut self, change: impl FnOnce(&mut Context)) -> Self {
        change(&mut self.ctx);
        self
    }

    /// Decides `command` against the folded history.
    pub fn when(self, command: A::Command) -> When<A> {
        let state = A::fold(self.history.iter());
        When {
            result: A::decide(&state, command, &self.ctx),
        }
    }
}

/// The outcome of a decision, to assert on.
pub struct When<A: Aggregate> {
    result: Result<Vec<A::Event>, Rejection>,
}

impl<A: Aggregate> When<A> {
    /// Asserts the command produced exactly these events.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => assert_eq!(events, expected, "unexpected events"),
            Err(rejection) => panic!("expected events {expected:?}, got rejection {rejection:?}"),
        }
    }

    /// Asserts the command was rejected with this status and message.
    #[track_caller]
    pub fn then_rejected(self, status: u16, message: &str) {
        match self.result {
            Ok(events) => panic!("expected rejection {status} {message:?}, got events {events:?}"),
            Err(rejection) => {
                assert_eq!(
                    (rejection.status, rejection.message.as_str()),
                    (status, message)
                );
            }
        }
    }

    /// Asserts the command was rejected with 422 on this JSON path.
    #[track_caller]
    pub fn then_invalid(self, entry: &str) {
        match self.result {
            Ok(events) => panic!("expected 422 on {entry}, got events {events:?}"),
            Err(rejection) => {
                assert_eq!(rejection.status, 422, "{rejection:?}");
                assert!(
                    rejection.invalid.iter().any(|e| e.entry == entry),
                    "expected an invalid entry {entry}, got {rejection:?}"
                );
            }
        }
    }

    /// The raw result, for assertions the helpers above do not cover.
    pub fn result(self) -> Result<Vec<A::Event>, Rejection> {
        self.result
    }
}
