//! Projections: read models updated in the same transaction as the events they reflect, and rebuildable
//! from the event log alone.
//!
//! Projections here are state-based: after an append, the aggregate's folded state is written as one row.
//! A rebuild folds every stream again and writes the same rows, so it produces exactly the live tables.

pub mod analysis_file;
pub mod service_request;
pub mod view;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use ehealth_domain::Aggregate;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{event_store, StoreError};

/// An aggregate with a read model.
pub trait Projection: Aggregate {
    /// The resource name in job links and integration events, e.g. `service_request`.
    const ENTITY: &'static str;
    /// The projection's tables, emptied by a rebuild.
    const TABLES: &'static [&'static str];

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
}

/// Empties the projection's tables and replays every stream of its type into them, in the caller's
/// transaction. Returns the number of streams replayed.
pub async fn rebuild<A: Projection>(tx: &impl GenericClient) -> Result<u64, StoreError> {
    tx.batch_execute(&format!("TRUNCATE {}", A::TABLES.join(", ")))
        .await?;
    let ids = tx
        .query(
            "SELECT stream_id FROM streams WHERE stream_type = $1 ORDER BY stream_id",
            &[&A::STREAM_TYPE],
        )
        .await?;
    let mut count = 0;
    for row in ids {
        let id: Uuid = row.get(0);
        let events = event_store::read_stream(tx, id).await?;
        let loaded = event_store::fold_stored::<A>(&events)?;
        if let (Some(first), Some(last)) = (loaded.first_recorded_at, loaded.last_recorded_at) {
            A::project(tx, id, &loaded.state, loaded.version, first, last).await?;
            count += 1;
        }
    }
    Ok(count)
}

/// Rebuilds every projection of the service in one transaction.
pub async fn rebuild_all(client: &mut deadpool_postgres::Object) -> Result<u64, StoreError> {
    let tx = client.transaction().await?;
    let count = rebuild::<ehealth_domain::service_request::ServiceRequestAggregate>(&tx).await?
        + rebuild::<ehealth_domain::analysis_file::AnalysisFilesAggregate>(&tx).await?;
    tx.commit().await?;
    Ok(count)
}

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
