//! Infrastructure shared by `ehealth-api`, `ehealth-worker` and `ehealth-admin`.
//!
//! Everything that touches the outside world and is needed by more than one binary lives here exactly once:
//! typed configuration, the Postgres pool and migrations, the append-only event store, jobs, the
//! transactional outbox, the RabbitMQ topology and publisher, identity and auth, the projections and object
//! storage (S3 protocol).
//!
//! Architecture invariant: no HTTP types and no business rules. Rules live in `ehealth-domain`; the mapping of
//! errors to HTTP lives in `ehealth-api`.

pub mod amqp;
pub mod canonical;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod event_store;
pub mod finished_jobs;
pub mod health;
pub mod identity;
pub mod jobs;
pub mod metrics;
pub mod operator;
pub mod outbox;
pub mod projection;
pub mod reference;
pub mod signal;
pub mod storage;
pub mod telemetry;

pub use config::Config;
pub use error::StoreError;
