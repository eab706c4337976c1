//! The transactional outbox: messages written in the same transaction as the state they announce.
//!
//! The writer publishes a row right after its commit and marks it published; the worker's relay publishes
//! whatever stayed unpublished (the api died, the broker was down). Delivery is at least once: consumers
//! are idempotent.

use deadpool_postgres::{GenericClient, Pool};
use serde_json::Value;
use tokio::sync::mpsc;
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

/// Reads an outbox row (`id, message_id, exchange, routing_key, payload`).
pub fn from_row(row: &tokio_postgres::Row) -> OutboxMessage {
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

/// Marks messages published, in one statement.
pub async fn mark_published(client: &impl GenericClient, ids: &[i64]) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
        .await?;
    client.execute(&statement, &[&ids]).await?;
    Ok(())
}

/// Marks published rows in the background, as many per statement as were published meanwhile: a publisher
/// hands the ids over and does not wait, so neither a request nor a job holds a pooled connection (or waits
/// for one) to mark its message. A mark that is lost (the database is down, the process stops first) leaves
/// the row to the relay, which publishes it again: delivery is at least once and consumers are idempotent.
#[derive(Debug, Clone)]
pub struct PublishedMarker {
    sender: mpsc::UnboundedSender<i64>,
}

/// The most ids one marking statement carries.
const MARK_BATCH: usize = 4096;

impl PublishedMarker {
    /// Starts the marking task on the current tokio runtime; it ends when the last clone is dropped.
    pub fn spawn(pool: Pool) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<i64>();
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(MARK_BATCH);
            while receiver.recv_many(&mut ids, MARK_BATCH).await > 0 {
                let marked = match pool.get().await {
                    Ok(client) => mark_published(&client, &ids).await,
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = marked {
                    tracing::warn!(error = %e, count = ids.len(), "published but not marked; the relay will publish again");
                }
                ids.clear();
            }
        });
        Self { sender }
    }

    /// Queues rows to be marked published.
    pub fn mark(&self, ids: &[i64]) {
        for id in ids {
            // Fails only once the task is gone (the runtime is stopping): the relay publishes the row again.
            let _ = self.sender.send(*id);
        }
    }
}

/// How long a relay's claim on a row lasts: time enough to publish a batch; after it, another relay may
/// take the row (the first one died).
pub const CLAIM_SECONDS: f64 = 30.0;

/// Claims up to `limit` unpublished messages older than `min_age_ms` that no live claim holds, oldest
/// first, for [`CLAIM_SECONDS`]. Runs as one short statement: the caller publishes outside any transaction
/// and then marks what it published.
pub async fn claim_unpublished(
    client: &impl GenericClient,
    min_age_ms: i64,
    limit: i64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let statement = client
        .prepare_cached(
            "UPDATE outbox SET claimed_until = now() + make_interval(secs => $3) WHERE id IN ( \
               SELECT id FROM outbox WHERE published_at IS NULL \
                 AND inserted_at < now() - make_interval(secs => $1::bigint / 1000.0) \
                 AND (claimed_until IS NULL OR claimed_until < now()) \
               ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING id, message_id, exchange, routing_key, payload",
        )
        .await?;
    let mut rows = client
        .query(&statement, &[&min_age_ms, &limit, &CLAIM_SECONDS])
        .await?;
    rows.sort_by_key(|row| row.get::<_, i64>("id"));
    Ok(rows.iter().map(from_row).collect())
}

/// Gives up the claims on messages a relay could not publish, so the next round (of any relay) takes them at
/// once instead of after [`CLAIM_SECONDS`].
pub async fn release_claims(client: &impl GenericClient, ids: &[i64]) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "UPDATE outbox SET claimed_until = NULL WHERE id = ANY($1) AND published_at IS NULL",
        )
        .await?;
    client.execute(&statement, &[&ids]).await?;
    Ok(())
}

/// Deletes messages published more than `ttl_hours` ago (their payloads may hold download links); returns
/// how many.
pub async fn purge_published(
    client: &impl GenericClient,
    ttl_hours: u64,
) -> Result<u64, StoreError> {
    let hours = i32::try_from(ttl_hours).unwrap_or(i32::MAX);
    let statement = client
        .prepare_cached(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(hours => $1::int)",
        )
        .await?;
    Ok(client.execute(&statement, &[&hours]).await?)
}
