//! The transactional outbox: messages written in the same transaction as the state they announce.
//!
//! The writer publishes a row right after its commit and marks it published; the worker's relay publishes
//! whatever stayed unpublished (the api died, the broker was down). Delivery is at least once: consumers
//! are idempotent.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

use crate::StoreError;

/// Logical exchange of command messages (one per job).
pub const COMMANDS: &str = "commands";
/// Logical exchange of integration events for downstream consumers.
pub const EVENTS: &str = "events";
/// Routing key of command messages.
pub const COMMAND_ROUTING_KEY: &str = "command";

/// One outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// Row id.
    pub id: i64,
    /// The AMQP `message_id`; consumers deduplicate on it.
    pub message_id: Uuid,
    /// Logical exchange: [`COMMANDS`] or [`EVENTS`].
    pub exchange: String,
    /// AMQP routing key.
    pub routing_key: String,
    /// JSON body.
    pub payload: Value,
}

fn from_row(row: &tokio_postgres::Row) -> OutboxMessage {
    OutboxMessage {
        id: row.get("id"),
        message_id: row.get("message_id"),
        exchange: row.get("exchange"),
        routing_key: row.get("routing_key"),
        payload: row.get("payload"),
    }
}

/// Writes a message in the caller's transaction.
pub async fn insert(
    tx: &impl GenericClient,
    exchange: &str,
    routing_key: &str,
    payload: &Value,
    message_id: Uuid,
) -> Result<OutboxMessage, StoreError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO outbox (message_id, exchange, routing_key, payload) VALUES ($1, $2, $3, $4) \
             RETURNING id, message_id, exchange, routing_key, payload",
        )
        .await?;
    let row = tx
        .query_one(&statement, &[&message_id, &exchange, &routing_key, payload])
        .await?;
    Ok(from_row(&row))
}

/// Marks a message published.
pub async fn mark_published(client: &impl GenericClient, id: i64) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("UPDATE outbox SET published_at = now() WHERE id = $1")
        .await?;
    client.execute(&statement, &[&id]).await?;
    Ok(())
}

/// Locks up to `limit` unpublished messages older than `min_age_ms` for the caller's transaction, skipping
/// rows another relay holds, oldest first.
pub async fn claim_unpublished(
    tx: &impl GenericClient,
    min_age_ms: i64,
    limit: i64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let statement = tx
        .prepare_cached(
            "SELECT id, message_id, exchange, routing_key, payload FROM outbox \
             WHERE published_at IS NULL AND inserted_at < now() - make_interval(secs => $1::bigint / 1000.0) \
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let rows = tx.query(&statement, &[&min_age_ms, &limit]).await?;
    Ok(rows.iter().map(from_row).collect())
}
