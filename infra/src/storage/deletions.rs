//! Object deletions that must happen after a commit: an outbox for storage.
//!
//! The transaction that records a deletion (or a refused oversized upload) schedules the object's deletion
//! in `object_deletions`; after the commit the writer deletes it and removes the row. Rows left behind (the
//! store was down, the process died) are retried by the worker's relay with a growing delay until the
//! deletion succeeds. Deleting an object that is already gone succeeds, so a retry is always safe.

use deadpool_postgres::{GenericClient, Pool};

use super::Storage;
use crate::StoreError;

/// Rows handled per sweep.
pub const BATCH: i64 = 100;

/// Schedules the deletion of `bucket/key` in the caller's transaction; returns the row id.
pub async fn schedule(tx: &impl GenericClient, bucket: &str, key: &str) -> Result<i64, StoreError> {
    let statement = tx
        .prepare_cached("INSERT INTO object_deletions (bucket, key) VALUES ($1, $2) RETURNING id")
        .await?;
    Ok(tx.query_one(&statement, &[&bucket, &key]).await?.get(0))
}

/// Deletes the scheduled objects `ids` (after their transaction committed), or with `None` every row that
/// is due. Rows another process holds are skipped; failures are kept with a later retry time. Returns how
/// many objects were deleted. Retries wait 2, 4, 8 … seconds, at most 5 minutes.
pub async fn run(pool: &Pool, storage: &Storage, ids: Option<&[i64]>) -> Result<usize, StoreError> {
    if ids.is_some_and(<[i64]>::is_empty) {
        return Ok(0);
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let statement = tx
        .prepare_cached(
            "SELECT id, bucket, key FROM object_deletions \
             WHERE ($1::bigint[] IS NULL AND next_attempt_at <= now()) OR id = ANY($1) \
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let rows = tx.query(&statement, &[&ids, &BATCH]).await?;
    let mut deleted = 0;
    for row in rows {
        let (id, bucket, key): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
        match storage.delete(&bucket, &key).await {
            Ok(()) => {
                tx.execute("DELETE FROM object_deletions WHERE id = $1", &[&id])
                    .await?;
                tracing::info!(bucket, key, "object deleted");
                deleted += 1;
            }
            Err(e) => {
                tracing::warn!(bucket, key, error = %e, "object deletion failed; will retry");
                tx.execute(
                    "UPDATE object_deletions SET attempts = attempts + 1, last_error = $2, \
                     next_attempt_at = clock_timestamp() + make_interval(secs => least(300, 2 ^ (least(attempts, 8) + 1))) \
                     WHERE id = $1",
                    &[&id, &e.to_string()],
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(deleted)
}
