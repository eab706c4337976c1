//! The outbox relay and housekeeping.
//!
//! Every `OUTBOX_RELAY_INTERVAL_MS` it publishes outbox rows that stayed unpublished for a while (their
//! writer crashed or the broker was down), retries due object deletions (see `storage::deletions`), and
//! every [`PURGE_EVERY`] purges finished jobs older than `JOB_TTL_DAYS`, upload links as old, and published
//! outbox rows older than `OUTBOX_TTL_HOURS`.
//!
//! Rows are claimed for a short lease in one statement, published with no transaction open, then marked:
//! any number of workers may relay at once, and a relay that dies leaves its rows to the next after the
//! lease.

use std::time::Duration;

use deadpool_postgres::Pool;
use ehealth_infra::{
    amqp::Publisher,
    jobs, outbox,
    storage::{attachment_uploads, deletions, upload_links, Storage},
    Config, StoreError,
};
use tokio::sync::watch;

/// Rows younger than this are left to the process that wrote them.
pub const MIN_AGE_MS: i64 = 3000;
/// Rows published per round.
pub const BATCH: i64 = 500;
/// How often finished jobs, old upload links and published outbox rows are purged.
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Publishes one batch of stale outbox rows; returns how many were published.
pub async fn relay_once(
    pool: &Pool,
    publisher: &Publisher,
    min_age_ms: i64,
) -> Result<usize, StoreError> {
    let messages = {
        let client = pool.get().await?;
        outbox::claim_unpublished(&client, min_age_ms, BATCH).await?
    };
    let mut published = Vec::with_capacity(messages.len());
    for message in &messages {
        match publisher.publish_outbox(message).await {
            Ok(()) => published.push(message.id),
            Err(e) => {
                tracing::warn!(error = %e, outbox_id = message.id, "relay could not publish; will retry");
                break;
            }
        }
    }
    let unpublished: Vec<i64> = messages
        .iter()
        .map(|m| m.id)
        .filter(|id| !published.contains(id))
        .collect();
    if published.is_empty() && unpublished.is_empty() {
        return Ok(0);
    }
    let client = pool.get().await?;
    if !published.is_empty() {
        outbox::mark_published(&client, &published).await?;
        tracing::info!(
            published = published.len(),
            "outbox relay published stale messages"
        );
    }
    if !unpublished.is_empty() {
        // The broker failed: the next round takes these again at once, not after the claim's lease.
        outbox::release_claims(&client, &unpublished).await?;
    }
    Ok(published.len())
}

/// Deletes what has outlived its time: finished jobs, upload links, published outbox rows.
pub async fn purge(pool: &Pool, config: &Config) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let jobs = jobs::purge_finished(&client, config.job_ttl_days).await?;
    let links = upload_links::purge(&client, config.job_ttl_days).await?
        + attachment_uploads::purge(&client, config.job_ttl_days).await?;
    let messages = outbox::purge_published(&client, config.outbox_ttl_hours).await?;
    if jobs + links + messages > 0 {
        tracing::info!(jobs, links, messages, "purged old rows");
    }
    Ok(())
}

/// Runs the relay until `shutdown` flips to true.
pub async fn run(
    pool: Pool,
    publisher: std::sync::Arc<Publisher>,
    storage: Storage,
    config: std::sync::Arc<Config>,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(config.outbox_relay_interval_ms.max(10));
    let mut last_purge = tokio::time::Instant::now() - PURGE_EVERY;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match relay_once(&pool, &publisher, MIN_AGE_MS).await {
            // A full batch: more may be waiting, go on at once.
            Ok(n) if n as i64 == BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "outbox relay round failed"),
        }
        if let Err(e) = deletions::run(&pool, &storage, None).await {
            tracing::warn!(error = %e, "object deletion round failed");
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = tokio::time::Instant::now();
            if let Err(e) = purge(&pool, &config).await {
                tracing::warn!(error = %e, "purge failed");
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
