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
pub mod row;
pub mod service_request;
pub mod view;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use ehealth_domain::Aggregate;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::StoreError;
use row::ProjectionRow;

/// An aggregate with a read model.
pub trait Projection: Aggregate + Sized {
    /// The resource name in job links and integration events, e.g. `service_request`.
    const ENTITY: &'static str;
    /// The projection's table, replaced by a rebuild.
    const TABLE: &'static str = <Self::Row as ProjectionRow>::TABLE;
    /// The column of [`Projection::TABLE`] that names the stream a row was folded from, so a rebuild can
    /// replace one stream's rows.
    const STREAM_COLUMN: &'static str;

    /// A row of [`Projection::TABLE`] (see [`row::projection_row!`]).
    type Row: ProjectionRow;

    /// The state's status, for `StatusChangeEvent`s.
    fn status(state: &Self::State) -> Option<&'static str>;

    /// The rows of one stream folded to `state` at `version`, its first and last events recorded at
    /// `inserted_at` and `updated_at`: what [`Projection::project`] writes, so what a rebuild writes.
    fn rows(
        id: Uuid,
        state: &Self::State,
        version: i64,
        inserted_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Vec<Self::Row>;

    /// Writes the read model of one stream after an append: its [`Projection::rows`], with the row's
    /// live statement (an upsert, or a plain insert where the projection removes the stream's rows first).
    fn project(
        tx: &impl GenericClient,
        id: Uuid,
        state: &Self::State,
        version: i64,
        inserted_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send {
        let rows = Self::rows(id, state, version, inserted_at, updated_at);
        async move { row::write(tx, &rows).await }
    }

    /// Inserts the rows of many folded streams into `table` (the projection's table or a rebuild's shadow of
    /// it) in one statement: the rows [`Projection::project`] writes for the same states.
    fn insert_folded(
        client: &impl GenericClient,
        table: &str,
        streams: &[Folded<Self>],
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send {
        let rows: Vec<Self::Row> = streams
            .iter()
            .flat_map(|f| {
                Self::rows(
                    f.stream_id,
                    &f.state,
                    f.version,
                    f.first_recorded_at,
                    f.last_recorded_at,
                )
            })
            .collect();
        async move { row::insert_all(client, table, &rows).await }
    }
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
