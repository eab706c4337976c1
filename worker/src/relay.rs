//! The outbox relay and job housekeeping.
//!
//! Every `OUTBOX_RELAY_INTERVAL_MS` it publishes outbox rows that stayed unpublished for a while (their
//! writer crashed or the broker was down), retries due object deletions (see `storage::deletions`), and now
//! and then purges finished jobs older than `JOB_TTL_DAYS`.
//! Rows are claimed with `FOR UPDATE SKIP LOCKED`, so any number of workers may relay at once.

use std::time::Duration;

use deadpool_postgres::Pool;
use ehealth_infra::{
    amqp::Publisher,
    jobs, outbox,
    storage::{deletions, Storage},
    Config, StoreError,
};
use tokio::sync::watch;

/// Rows younger than this are left to the process that wrote them.
pub const MIN_AGE_MS: i64 = 3000;
/// Rows published per round.
pub const BATCH: i64 = 100;
/// How often finished jobs are purged.
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Publishes one batch of stale outbox rows; returns how many were published.
pub async fn relay_once(
    pool: &Pool,
    publisher: &Publisher,
    min_age_ms: i64,
) -> Result<usize, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let messages = outbox::claim_unpublished(&tx, min_age_ms, BATCH).await?;
    let mut published = 0;
    for message in &messages {
        match publisher.publish_outbox(message).await {
            Ok(()) => {
                outbox::mark_published(&tx, message.id).await?;
                published += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, outbox_id = message.id, "relay could not publish; will retry");
                break;
            }
        }
    }
    tx.commit().await?;
    if published > 0 {
        tracing::info!(published, "outbox relay published stale messages");
    }
    Ok(published)
}

/// Runs the relay until `shutdown` flips to true.
pub async fn run(
    pool: Pool,
    publisher: std::sync::Arc<Publisher>,
    storage: Storage,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(config.outbox_relay_interval_ms.max(10));
    let mut last_purge = tokio::time::Instant::now() - PURGE_EVERY;
    loop {
        if let Err(e) = relay_once(&pool, &publisher, MIN_AGE_MS).await {
            tracing::warn!(error = %e, "outbox relay round failed");
        }
        if let Err(e) = deletions::run(&pool, &storage, None).await {
            tracing::warn!(error = %e, "object deletion round failed");
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = tokio::time::Instant::now();
            match pool.get().await {
                Ok(client) => match jobs::purge_finished(&client, config.job_ttl_days).await {
                    Ok(n) if n > 0 => tracing::info!(purged = n, "purged finished jobs"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "job purge failed"),
                },
                Err(e) => tracing::warn!(error = %e, "job purge could not get a connection"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
