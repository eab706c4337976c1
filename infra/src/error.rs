//! The error of the storage layer: Postgres, the pool, serialization, optimistic-concurrency conflicts and
//! the object store.

pub use tokio_postgres::error::SqlState;

/// Something went wrong below the domain. `Conflict` is expected under concurrency and is retried by the
/// caller; every other variant is a fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be taken from the pool.
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Another writer appended to the stream since it was read.
    #[error("stream {stream_id} was changed concurrently (expected version {expected})")]
    Conflict {
        /// The stream.
        stream_id: uuid::Uuid,
        /// The version the writer read.
        expected: i64,
    },
    /// Stored JSON did not match the expected type.
    #[error("stored data is not valid: {0}")]
    Data(#[from] serde_json::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migration(String),
    /// The object store failed or could not be reached.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

impl StoreError {
    /// True for faults worth retrying later (the database is down or busy), false for bugs and bad data.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) | StoreError::Conflict { .. } | StoreError::Storage(_) => true,
            StoreError::Postgres(e) => {
                e.is_closed() || e.as_db_error().is_none() || is_retryable_sqlstate(e)
            }
            StoreError::Data(_) | StoreError::Migration(_) => false,
        }
    }

    /// True when the database cannot be reached right now: no connection could be had from the pool (time-out,
    /// refused or failed connect, closed pool), the connection was closed or broke, or the server said it is
    /// shutting down, starting up or lost the connection (SQLSTATE 57P01, 57P02, 57P03, class 08). Callers
    /// answer "try again later" (503) for these and "fault" (500) for every other error.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Postgres(e) => is_unavailable(e),
            _ => false,
        }
    }

    /// True when a unique constraint was violated (SQLSTATE 23505).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Postgres(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
    }
}

fn is_retryable_sqlstate(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CANNOT_CONNECT_NOW
            || *c == SqlState::TOO_MANY_CONNECTIONS
    )
}

fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(c) => {
            *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || c.code().starts_with("08")
        }
        // No SQLSTATE: the socket failed (reset, timed out) rather than a statement.
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}
