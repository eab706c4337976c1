//! Projections: read models updated in the same transaction as the events they reflect, and rebuildable
//! from the event log alone.
//!
//! Projections here are state-based: after an append, the aggregate's folded state is written as one row.
//! A rebuild folds every stream again and writes the same rows, so it produces exactly the live tables; it
//! does so into shadow tables, in short transactions, and swaps them in (see `rebuild.rs`).

pub mod analysis_file;
pub mod contract_request;
pub mod patient_attachment;
mod rebuild;
pub mod service_request;
pub mod view;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use ehealth_domain::Aggregate;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::StoreError;

/// An aggregate with a read model.
pub trait Projection: Aggregate + Sized {
    /// The resource name in job links and integration events, e.g. `service_request`.
    const ENTITY: &'static str;
    /// The projection's table, replaced by a rebuild.
    const TABLE: &'static str;
    /// The column of [`Projection::TABLE`] that names the stream a row was folded from, so a rebuild can
    /// replace one stream's rows.
    const STREAM_COLUMN: &'static str;

    /// The state's status, for `StatusChangeEvent`s.
    fn status(state: &Self::State) -> Option<&'static str>;

    /// Writes the read model of one stream after an append.
    fn project(
        tx: &impl GenericClient,
        id: Uuid,
        state: &Self::State,
        version: i64,
        inserted_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;

    /// Inserts the rows of many folded streams into `table` (the projection's table or a rebuild's shadow of
    /// it) in one statement: the rows [`Projection::project`] writes for the same states.
    fn insert_folded(
        client: &impl GenericClient,
        table: &str,
        streams: &[Folded<Self>],
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
}

pub use rebuild::{
    rebuild, rebuild_all, rebuild_all_in_chunks, Folded, RebuildReport, DEFAULT_CHUNK_EVENTS,
};

/// Dumps a table as JSON rows ordered by `id`, to compare a rebuilt projection with the live one.
pub async fn dump_table(
    client: &impl GenericClient,
    table: &str,
) -> Result<Vec<Value>, StoreError> {
    let rows = client
        .query(
            &format!("SELECT to_jsonb(t) FROM {table} t ORDER BY id"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, Value>(0)).collect())
}

/// An eHealth reference: `{"identifier":{"type":{"coding":[{"system":"eHealth/resources","code":…}]},"value":…}}`.
pub fn reference(code: &str, id: Uuid) -> Value {
    json!({
        "identifier": {
            "type": { "coding": [{ "system": "eHealth/resources", "code": code }] },
            "value": id,
        }
    })
}
