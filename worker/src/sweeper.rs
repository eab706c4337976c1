//! The sweeper: the last line of "every accepted job ends". One worker at a time (a Postgres advisory lock
//! taken per round) looks at jobs that stay pending:
//! - pending longer than `JOB_DEADLINE_SECONDS` since they were accepted (or last run again by an operator)
//!   → `failed_with_error` (500), recorded as ended by the sweeper with the reason in `error_detail`;
//! - pending without activity (accepted, started, republished) for `JOB_REPUBLISH_AFTER_SECONDS` → their
//!   command message is published again through the outbox: the original may have been lost. The worker
//!   skips the message of a job that is no longer pending, so a duplicate is harmless.
//!
//! Each round is one short transaction with no network I/O inside; the republished messages are sent after
//! its commit (and by the relay if that fails). Jobs a worker holds locked are skipped.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::{GenericClient, Pool};
use ehealth_infra::{
    amqp::Publisher,
    metrics,
    outbox::{self, OutboxMessage},
    Config, StoreError,
};
use tokio::sync::watch;

use crate::handler;

/// The advisory lock that makes one sweeper run at a time across all workers.
pub const LOCK_KEY: i64 = 0x6548_6561_6c74_6801;
/// Jobs handled per statement and round.
pub const BATCH: i64 = 1000;

const TRY_LOCK: &str = "SELECT pg_try_advisory_xact_lock($1)";
/// The deadline counts from acceptance, or from the last time an operator ran the job again
/// (`ehealth-admin jobs retry`), so a job sent again is not ended before it had its chance.
const EXPIRE: &str =
    "UPDATE jobs SET status = 'failed_with_error', status_code = 500, response = $2, \
     error_detail = 'pending past JOB_DEADLINE_SECONDS (' || $1::float8 || ' s)', ended_by = 'sweeper', \
     updated_at = now(), finished_at = now() \
     WHERE id IN (SELECT id FROM jobs WHERE status = 'pending' \
       AND coalesce(retried_at, inserted_at) < now() - make_interval(secs => $1) \
       ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
     RETURNING type, inserted_at";
const REPUBLISH: &str = "WITH stale AS ( \
       UPDATE jobs SET updated_at = now() WHERE id IN (SELECT id FROM jobs WHERE status = 'pending' \
         AND updated_at < now() - make_interval(secs => $1) \
         ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id) \
     INSERT INTO outbox (message_id, exchange, routing_key, payload) \
     SELECT gen_random_uuid(), $3, $4, jsonb_build_object('job_id', id) FROM stale \
     RETURNING id, message_id, exchange, routing_key, payload";

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Whether this worker held the sweeper's lock.
    pub ran: bool,
    /// Jobs ended past their deadline.
    pub expired: u64,
    /// Jobs whose command was published again.
    pub republished: usize,
}

/// Whether this transaction took the advisory lock `key` (held until it ends); false while another worker's
/// transaction holds it. The sweeper and the scheduler each run one at a time this way.
pub(crate) async fn try_xact_lock(tx: &impl GenericClient, key: i64) -> Result<bool, StoreError> {
    let statement = tx.prepare_cached(TRY_LOCK).await?;
    Ok(tx.query_one(&statement, &[&key]).await?.get::<_, bool>(0))
}

/// One round: ends overdue jobs and republishes stale ones.
pub async fn sweep_once(
    pool: &Pool,
    publisher: &Publisher,
    config: &Config,
) -> Result<Swept, StoreError> {
    let (expired, messages): (u64, Vec<OutboxMessage>) = {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        if !try_xact_lock(&tx, LOCK_KEY).await? {
            return Ok(Swept::default());
        }
        let deadline = config.job_deadline_seconds as f64;
        let statement = tx.prepare_cached(EXPIRE).await?;
        let expired_jobs = tx
            .query(
                &statement,
                &[&deadline, &handler::internal_error_body(), &BATCH],
            )
            .await?;
        let expired = expired_jobs.len() as u64;
        let republish_after = config.job_republish_after_seconds as f64;
        let statement = tx.prepare_cached(REPUBLISH).await?;
        let rows = tx
            .query(
                &statement,
                &[
                    &republish_after,
                    &BATCH,
                    &outbox::COMMANDS,
                    &outbox::COMMAND_ROUTING_KEY,
                ],
            )
            .await?;
        tx.commit().await?;
        for job in &expired_jobs {
            metrics::job_finished(
                job.get::<_, &str>("type"),
                "failed_with_error",
                job.get::<_, chrono::DateTime<chrono::Utc>>("inserted_at"),
            );
        }
        if expired > 0 {
            tracing::warn!(
                expired,
                "jobs pending past JOB_DEADLINE_SECONDS ended failed_with_error"
            );
        }
        let messages: Vec<OutboxMessage> = rows.iter().map(outbox::from_row).collect();
        if messages.is_empty() {
            return Ok(Swept {
                ran: true,
                expired,
                republished: 0,
            });
        }
        tracing::warn!(
            count = messages.len(),
            "stale pending jobs: command messages published again"
        );
        (expired, messages)
    };
    publisher.publish_committed(pool, &messages).await;
    Ok(Swept {
        ran: true,
        expired,
        republished: messages.len(),
    })
}

/// How often the sweeper runs: a quarter of `JOB_REPUBLISH_AFTER_SECONDS`, between 1 and 15 seconds.
pub fn interval(config: &Config) -> Duration {
    Duration::from_millis(config.job_republish_after_seconds * 250)
        .clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// Runs the sweeper until `shutdown` flips to true.
pub async fn run(
    pool: Pool,
    publisher: Arc<Publisher>,
    config: Arc<Config>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = interval(&config);
    loop {
        if let Err(e) = sweep_once(&pool, &publisher, &config).await {
            tracing::warn!(error = %e, "sweeper round failed");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
