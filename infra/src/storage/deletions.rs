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

/// How long a claim on a deletion lasts: after it, another process may take the row (the first one died).
pub const CLAIM_SECONDS: f64 = 60.0;

const CLAIM: &str =
    "UPDATE object_deletions SET next_attempt_at = now() + make_interval(secs => $3) \
     WHERE id IN (SELECT id FROM object_deletions \
       WHERE next_attempt_at <= now() AND ($1::bigint[] IS NULL OR id = ANY($1)) \
       ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
     RETURNING id, bucket, key";
const DONE: &str = "DELETE FROM object_deletions WHERE id = ANY($1)";
const FAILED: &str = "UPDATE object_deletions SET attempts = attempts + 1, last_error = $2, \
     next_attempt_at = clock_timestamp() + make_interval(secs => least(300, 2 ^ (least(attempts, 8) + 1))) \
     WHERE id = $1";

/// Deletes the scheduled objects `ids` (after their transaction committed), or with `None` every row that
/// is due. Rows are claimed in one short statement, the objects deleted with no transaction open and no
/// row locked, then the outcome written: done rows removed, failures kept with a later retry time (2, 4,
/// 8 … seconds, at most 5 minutes). Deleting an object that is already gone succeeds, so a retry is always
/// safe. Returns how many objects were deleted.
pub async fn run(pool: &Pool, storage: &Storage, ids: Option<&[i64]>) -> Result<usize, StoreError> {
    if ids.is_some_and(<[i64]>::is_empty) {
        return Ok(0);
    }
    let claimed = {
        let client = pool.get().await?;
        let statement = client.prepare_cached(CLAIM).await?;
        client
            .query(&statement, &[&ids, &BATCH, &CLAIM_SECONDS])
            .await?
    };
    if claimed.is_empty() {
        return Ok(0);
    }
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for row in claimed {
        let (id, bucket, key): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
        match storage.delete(&bucket, &key).await {
            Ok(()) => {
                tracing::info!(bucket, key, "object deleted");
                done.push(id);
            }
            Err(e) => {
                tracing::warn!(bucket, key, error = %e, "object deletion failed; will retry");
                failed.push((id, e.to_string()));
            }
        }
    }
    let client = pool.get().await?;
    let statement = client.prepare_cached(DONE).await?;
    client.execute(&statement, &[&done]).await?;
    let statement = client.prepare_cached(FAILED).await?;
    for (id, error) in &failed {
        client.execute(&statement, &[id, error]).await?;
    }
    Ok(done.len())
}
