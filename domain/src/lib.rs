//! The pure domain of eHealth Jobs.
//!
//! Every state change in the service is decided here, by plain functions over plain data: an aggregate's
//! `State` is folded from its events with [`Aggregate::apply`], and [`Aggregate::decide`] turns a command into
//! new events or a [`Rejection`] that carries the HTTP status and message the specification names.
//!
//! Architecture invariant: this crate does no I/O. It depends on serde, chrono, uuid and thiserror only, so
//! every business rule can be tested in microseconds and reused by the api (synchronous commands) and the
//! worker (asynchronous commands) alike.

pub mod aggregate;
pub mod analysis_file;
pub mod context;
pub mod contract_request;
pub mod media_link;
pub mod patient_attachment;
pub mod reference;
pub mod rejection;
pub mod service_request;
pub mod testing;

pub use aggregate::Aggregate;
pub use context::{Actor, ClientType, Context};
pub use rejection::{InvalidEntry, Rejection, Rule};
