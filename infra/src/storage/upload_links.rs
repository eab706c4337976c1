//! Upload links of spec 000: every presigned PUT the api issues has an object key of its own, recorded here
//! so that `finalize` can name the object of the newest link in its command. Kept for `JOB_TTL_DAYS`, like
//! finished jobs: a finalize long after that finds no link and is refused 409 "file was not uploaded".

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

const RECORD: &str =
    "INSERT INTO upload_links (stream_id, file_name, object_key, issued_by, expires_at) \
                      VALUES ($1, $2, $3, $4, $5)";
const NEWEST: &str = "SELECT object_key FROM upload_links WHERE stream_id = $1 AND file_name = $2 \
                      ORDER BY id DESC LIMIT 1";
const PURGE: &str =
    "DELETE FROM upload_links WHERE issued_at < now() - make_interval(days => $1::int)";

/// Records an issued link to `object_key` for `file_name` in `stream_id`.
pub async fn record(
    client: &impl GenericClient,
    stream_id: Uuid,
    file_name: &str,
    object_key: &str,
    issued_by: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let statement = client.prepare_cached(RECORD).await?;
    client
        .execute(
            &statement,
            &[&stream_id, &file_name, &object_key, &issued_by, &expires_at],
        )
        .await?;
    Ok(())
}

/// The object key of the newest link issued for `file_name` in `stream_id`.
pub async fn newest(
    client: &impl GenericClient,
    stream_id: Uuid,
    file_name: &str,
) -> Result<Option<String>, StoreError> {
    let statement = client.prepare_cached(NEWEST).await?;
    Ok(client
        .query_opt(&statement, &[&stream_id, &file_name])
        .await?
        .map(|row| row.get(0)))
}

/// Deletes links issued more than `ttl_days` ago; returns how many.
pub async fn purge(client: &impl GenericClient, ttl_days: i64) -> Result<u64, StoreError> {
    let days = i32::try_from(ttl_days).unwrap_or(i32::MAX);
    let statement = client.prepare_cached(PURGE).await?;
    Ok(client.execute(&statement, &[&days]).await?)
}
