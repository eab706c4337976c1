//! The scheduler: the commands nobody sends, submitted by the service itself as ordinary jobs, so each one is
//! decided by the domain, recorded in the event log and visible like any other job:
//! - an active service request past its `expiration_date` → `service_request.expire` (recalled, status
//!   reason `autoexpired`);
//! - a contract request whose `start_date` has passed while it is not SIGNED, DECLINED or TERMINATED →
//!   `contract_request.terminate` with status reason `AUTO_EXPIRED`.
//!
//! One worker at a time runs a round (a Postgres advisory lock taken per round, like the sweeper's), every
//! `SCHEDULER_INTERVAL_SECONDS`. A round is one short transaction: find the due requests in the projections,
//! then write each one's job and outbox row with intake's own statement ([`jobs::submit_in`]); the messages are
//! published after the commit (by the relay if that fails). Jobs are submitted by [`Actor::system`] and
//! recognised by their fingerprint, so a request whose job is still pending gets no second one — not from a
//! later round, nor from another worker. Once the job has run, the request is no longer due.

use std::{sync::Arc, time::Duration};

use chrono::NaiveDate;
use deadpool_postgres::{GenericClient, Pool};
use ehealth_domain::{
    contract_request::{Command as ContractRequestCommand, ContractRequestAggregate},
    service_request::{Command as ServiceRequestCommand, ServiceRequestAggregate},
    Actor, Aggregate,
};
use ehealth_infra::{
    amqp::Publisher,
    jobs::{self, NewJob, Submitted},
    metrics,
    outbox::OutboxMessage,
    Config, StoreError,
};
use serde_json::{json, Value};
use tokio::sync::watch;
use uuid::Uuid;

use crate::sweeper::try_xact_lock;

/// The advisory lock that makes one scheduler run at a time across all workers.
pub const LOCK_KEY: i64 = 0x6548_6561_6c74_6802;
/// Requests of each kind handled per round; the rest wait for the next round.
pub const BATCH: i64 = 500;
/// The status reason of a contract request the scheduler terminated.
pub const AUTO_EXPIRED: &str = "AUTO_EXPIRED";

/// Active service requests whose last day of use is before `$1` (V12's partial index answers it).
const EXPIRED_SERVICE_REQUESTS: &str = "SELECT id FROM service_requests \
     WHERE status = 'active' AND expiration_date < $1 ORDER BY expiration_date, id LIMIT $2";
/// Open contract requests whose start date is before `$1` (V9's `contract_requests_open_start_idx`).
const OVERDUE_CONTRACT_REQUESTS: &str = "SELECT id FROM contract_requests \
     WHERE status NOT IN ('SIGNED', 'DECLINED', 'TERMINATED') AND start_date < $1 \
     ORDER BY start_date, id LIMIT $2";

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scheduled {
    /// Whether this worker held the scheduler's lock.
    pub ran: bool,
    /// Expired service requests found (a job submitted now or still pending from before).
    pub expired_service_requests: usize,
    /// Overdue contract requests found (likewise).
    pub overdue_contract_requests: usize,
    /// New jobs submitted by this round.
    pub submitted: usize,
}

/// One due request: which aggregate, which stream, which command.
struct Due {
    stream_type: &'static str,
    stream_id: Uuid,
    name: &'static str,
    command: Value,
}

/// One round as of `today` (UTC): submits a job for every due request that has none pending.
pub async fn schedule_once(
    pool: &Pool,
    publisher: &Publisher,
    today: NaiveDate,
) -> Result<Scheduled, StoreError> {
    let (scheduled, messages) = {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        if !try_xact_lock(&tx, LOCK_KEY).await? {
            return Ok(Scheduled::default());
        }
        let expire = serde_json::to_value(ServiceRequestCommand::Expire)?;
        let terminate = ContractRequestCommand::Terminate {
            status_reason: Some(AUTO_EXPIRED.to_owned()),
        };
        let terminate_name = terminate.name();
        let terminate = serde_json::to_value(terminate)?;
        let expired = due(&tx, EXPIRED_SERVICE_REQUESTS, today).await?;
        let overdue = due(&tx, OVERDUE_CONTRACT_REQUESTS, today).await?;
        let work = expired
            .iter()
            .map(|&stream_id| Due {
                stream_type: ServiceRequestAggregate::STREAM_TYPE,
                stream_id,
                name: ServiceRequestCommand::Expire.name(),
                command: expire.clone(),
            })
            .chain(overdue.iter().map(|&stream_id| Due {
                stream_type: ContractRequestAggregate::STREAM_TYPE,
                stream_id,
                name: terminate_name,
                command: terminate.clone(),
            }));
        // One correlation id per round: every event a round causes names it.
        let request_id = format!("scheduler-{}", Uuid::new_v4());
        let mut messages: Vec<OutboxMessage> = Vec::new();
        let mut accepted: Vec<String> = Vec::new();
        for item in work {
            let fingerprint = json!({ "stream_id": item.stream_id, "command": item.command });
            let new = NewJob {
                job_type: format!("{}.{}", item.stream_type, item.name),
                stream_type: item.stream_type.to_owned(),
                stream_id: item.stream_id,
                command: item.command,
                actor: Actor::system(),
                request_id: request_id.clone(),
                idempotency_key: None,
            };
            if let Submitted::Created(job, message) =
                jobs::submit_in(&tx, &new, &fingerprint).await?
            {
                tracing::info!(job_id = %job.id, job_type = %job.job_type, stream_id = %job.stream_id,
                    %request_id, "scheduler submitted a job");
                accepted.push(job.job_type);
                messages.push(message);
            }
        }
        tx.commit().await?;
        let scheduled = Scheduled {
            ran: true,
            expired_service_requests: expired.len(),
            overdue_contract_requests: overdue.len(),
            submitted: messages.len(),
        };
        for job_type in &accepted {
            metrics::job_accepted(job_type);
        }
        (scheduled, messages)
    };
    publisher.publish_committed(pool, &messages).await;
    Ok(scheduled)
}

/// The ids `sql` finds due before `today`, at most [`BATCH`].
async fn due(
    tx: &impl GenericClient,
    sql: &str,
    today: NaiveDate,
) -> Result<Vec<Uuid>, StoreError> {
    let statement = tx.prepare_cached(sql).await?;
    let rows = tx.query(&statement, &[&today, &BATCH]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Runs the scheduler until `shutdown` flips to true: a round at once, then one every
/// `SCHEDULER_INTERVAL_SECONDS`.
pub async fn run(
    pool: Pool,
    publisher: Arc<Publisher>,
    config: Arc<Config>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every: Duration = config.scheduler_interval();
    loop {
        let today = chrono::Utc::now().date_naive();
        match schedule_once(&pool, &publisher, today).await {
            Ok(round) if round.submitted > 0 => tracing::info!(
                submitted = round.submitted,
                expired_service_requests = round.expired_service_requests,
                overdue_contract_requests = round.overdue_contract_requests,
                "scheduler round"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "scheduler round failed"),
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
