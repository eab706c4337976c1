//! The worker of eHealth Jobs.
//!
//! It consumes one message per job from RabbitMQ, decides the command with the pure domain, appends the
//! events, updates the projection and finishes the job in one transaction, and acknowledges the message only
//! after that commit. It also relays outbox rows that were committed but never published, retries object
//! deletions that could not run right after their commit, and purges old finished jobs.
//!
//! Architecture invariant: effectively-once effects over at-least-once delivery. A job is locked for the
//! transaction that processes it and skipped once it is no longer pending; nothing here assumes it is the
//! only worker process.

pub mod analysis_files;
pub mod consumer;
pub mod contract_requests;
pub mod dead_letters;
pub mod fault;
pub mod handler;
pub mod http;
pub mod patient_attachments;
pub mod relay;
pub mod scheduler;
pub mod startup;
pub mod sweeper;

pub use startup::Worker;
