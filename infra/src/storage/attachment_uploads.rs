//! Presigned attachment uploads of spec 002: every presigned POST the api issues pins one object key, recorded
//! here with the legal entity and patient it was issued for, so that a create can insist on "a key this
//! service presigned for this legal entity and patient". Purged after `JOB_TTL_DAYS`, like upload links.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::StoreError;

const RECORD: &str =
    "INSERT INTO attachment_uploads (object_key, legal_entity_id, patient_id, issued_by, \
     expires_at) VALUES ($1, $2, $3, $4, $5)";
const ISSUED: &str =
    "SELECT 1 FROM attachment_uploads WHERE object_key = $1 AND legal_entity_id = $2 \
     AND patient_id = $3";
const PURGE: &str =
    "DELETE FROM attachment_uploads WHERE issued_at < now() - make_interval(days => $1::int)";

/// Records a presigned upload of `object_key` for `legal_entity_id`'s `patient_id`.
pub async fn record(
    client: &impl GenericClient,
    object_key: &str,
    legal_entity_id: Uuid,
    patient_id: i64,
    issued_by: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let statement = client.prepare_cached(RECORD).await?;
    client
        .execute(
            &statement,
            &[
                &object_key,
                &legal_entity_id,
                &patient_id,
                &issued_by,
                &expires_at,
            ],
        )
        .await?;
    Ok(())
}

/// Whether this service presigned an upload of `object_key` for `legal_entity_id`'s `patient_id`.
pub async fn issued(
    client: &impl GenericClient,
    object_key: &str,
    legal_entity_id: Uuid,
    patient_id: i64,
) -> Result<bool, StoreError> {
    let statement = client.prepare_cached(ISSUED).await?;
    Ok(client
        .query_opt(&statement, &[&object_key, &legal_entity_id, &patient_id])
        .await?
        .is_some())
}

/// Deletes records issued more than `ttl_days` ago; returns how many.
pub async fn purge(client: &impl GenericClient, ttl_days: i64) -> Result<u64, StoreError> {
    let days = i32::try_from(ttl_days).unwrap_or(i32::MAX);
    let statement = client.prepare_cached(PURGE).await?;
    Ok(client.execute(&statement, &[&days]).await?)
}
