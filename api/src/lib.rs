//! The HTTP api of eHealth Jobs.
//!
//! Handlers are thin: extract → authorize → validate → enqueue a job or read a projection → respond. Every
//! response uses the eHealth envelope (`meta` + `data`, or `meta` + `error`).
//!
//! Architecture invariant: the api never appends domain events for asynchronous commands; it writes a job and
//! an outbox row and publishes after commit. Business rules stay in `ehealth-domain`.

pub mod auth;
pub mod cliniko;
pub mod context;
pub mod embedded_s3;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod http_errors;
pub mod intake;
pub mod json_schema;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod startup;

pub use error::ApiError;
pub use startup::{AppState, Application};
