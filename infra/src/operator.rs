//! The operator's view of jobs (`ehealth-admin jobs …` and `dead-letters …`): list and show them with the
//! internal reason a job ended `failed_with_error`, and run a failed one again.
//!
//! These queries run as the owner, outside the request path, and show what API clients never see
//! (`error_detail`, `ended_by`). Running a job again is the intake's second half done over: the job goes back
//! to `pending` and a fresh command row goes into the outbox in one transaction; the worker's relay publishes
//! it within seconds, so the CLI needs no broker.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    error::SqlState,
    jobs::{JobStatus, ETA_SECONDS},
    outbox, StoreError,
};

/// Every job type the api accepts or the scheduler submits (`<stream type>.<command name>`): `jobs list --type`
/// takes no other.
pub const JOB_TYPES: [&str; 19] = [
    "service_request.create",
    "service_request.use",
    "service_request.release",
    "service_request.process",
    "service_request.complete",
    "service_request.recall",
    "service_request.expire",
    "service_request.cancel",
    "analysis_files.finalize",
    "analysis_files.set_send",
    "analysis_files.delete",
    "contract_request.create",
    "contract_request.assign",
    "contract_request.approve",
    "contract_request.decline",
    "contract_request.approve_msp",
    "contract_request.sign_nhs",
    "contract_request.sign_msp",
    "contract_request.terminate",
];

/// Which jobs `jobs list` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFilter {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this type (one of [`JOB_TYPES`]).
    pub job_type: Option<String>,
    /// Only jobs accepted longer ago than this.
    pub older_than: Option<chrono::Duration>,
    /// At most this many.
    pub limit: i64,
}

/// One line of a job list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSummary {
    /// The job.
    pub id: Uuid,
    /// Its type, e.g. `service_request.release`.
    #[serde(rename = "type")]
    pub job_type: String,
    /// `pending`, `processed`, `failed` or `failed_with_error`.
    pub status: String,
    /// What the command answered, once ended.
    pub status_code: Option<i32>,
    /// How many times a worker started it.
    pub attempts: i32,
    /// When it was accepted.
    pub inserted_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Who ended it `failed_with_error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    /// Why it ended `failed_with_error` (internal; never shown to API clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<String>,
}

const SUMMARY_COLUMNS: &str = "id, type, status, status_code, attempts, inserted_at, updated_at, \
     finished_at, ended_by, error_detail";

fn summary(row: &tokio_postgres::Row) -> JobSummary {
    JobSummary {
        id: row.get("id"),
        job_type: row.get("type"),
        status: row.get("status"),
        status_code: row.get("status_code"),
        attempts: row.get("attempts"),
        inserted_at: row.get("inserted_at"),
        updated_at: row.get("updated_at"),
        finished_at: row.get("finished_at"),
        ended_by: row.get("ended_by"),
        error_detail: row.get("error_detail"),
    }
}

/// Jobs matching `filter`, newest first.
pub async fn list_jobs(
    client: &impl GenericClient,
    filter: &JobFilter,
) -> Result<Vec<JobSummary>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM jobs \
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR type = $2) \
               AND ($3::float8 IS NULL OR inserted_at < now() - make_interval(secs => $3)) \
             ORDER BY inserted_at DESC, id DESC LIMIT $4"
        ))
        .await?;
    let status = filter.status.map(JobStatus::as_str);
    let older_than = filter
        .older_than
        .map(|d| d.num_milliseconds() as f64 / 1000.0);
    let rows = client
        .query(
            &statement,
            &[&status, &filter.job_type, &older_than, &filter.limit],
        )
        .await?;
    Ok(rows.iter().map(summary).collect())
}

/// Jobs the dead-letter consumer ended `failed_with_error`, newest first: the broker's dead-letter queue
/// stays empty by design (each dead letter is acknowledged once its job is ended), so this is the list of
/// dead letters.
pub async fn dead_lettered(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<JobSummary>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM jobs \
             WHERE status = 'failed_with_error' AND ended_by = 'dead_letter' \
             ORDER BY finished_at DESC, id DESC LIMIT $1"
        ))
        .await?;
    let rows = client.query(&statement, &[&limit]).await?;
    Ok(rows.iter().map(summary).collect())
}

/// A whole job as an operator sees it, with the events it caused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail {
    /// The job.
    pub id: Uuid,
    /// Its type.
    #[serde(rename = "type")]
    pub job_type: String,
    /// Its status.
    pub status: String,
    /// What the command answered, once ended.
    pub status_code: Option<i32>,
    /// The resource, or the eHealth error the client sees.
    pub response: Option<Value>,
    /// Links to the affected resource.
    pub links: Value,
    /// The aggregate type the command addresses.
    pub stream_type: String,
    /// The aggregate instance.
    pub stream_id: Uuid,
    /// The command as stored.
    pub command: Value,
    /// Who submitted it.
    pub actor: Value,
    /// The submitting request's id (the events' correlation id; every log line about the job carries it).
    pub request_id: String,
    /// The client's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// How many times a worker started it.
    pub attempts: i32,
    /// How many times an operator ran it again.
    pub retries: i32,
    /// The eta promised to the client.
    pub eta: DateTime<Utc>,
    /// When it was accepted.
    pub inserted_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// When an operator last ran it again.
    pub retried_at: Option<DateTime<Utc>>,
    /// Who ended it `failed_with_error`.
    pub ended_by: Option<String>,
    /// Why it ended `failed_with_error` (internal).
    pub error_detail: Option<String>,
    /// The events it caused (their `causation_id` is the job), in stream order.
    pub events: Vec<CausedEvent>,
}

/// An event a job caused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CausedEvent {
    /// Its global position.
    pub position: i64,
    /// Its version in the job's stream.
    pub stream_version: i64,
    /// e.g. `released`.
    pub event_type: String,
    /// Its payload.
    pub data: Value,
    /// causation, correlation, actor.
    pub metadata: Value,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// Reads a job and the events it caused; `None` if it does not exist (or was purged after `JOB_TTL_DAYS`).
pub async fn show_job(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<JobDetail>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT id, type, status, status_code, response, links, stream_type, stream_id, command, actor, \
               request_id, idempotency_key, attempts, retries, eta, inserted_at, updated_at, finished_at, \
               retried_at, ended_by, error_detail FROM jobs WHERE id = $1",
        )
        .await?;
    let Some(row) = client.query_opt(&statement, &[&id]).await? else {
        return Ok(None);
    };
    let stream_id: Uuid = row.get("stream_id");
    // A job's events are all on its own stream: the stream's index finds them without scanning the log.
    let statement = client
        .prepare_cached(
            "SELECT position, stream_version, event_type, data, metadata, recorded_at FROM events \
             WHERE stream_id = $1 AND metadata->>'causation_id' = $2 ORDER BY stream_version",
        )
        .await?;
    let events = client
        .query(&statement, &[&stream_id, &id.to_string()])
        .await?
        .iter()
        .map(|e| CausedEvent {
            position: e.get("position"),
            stream_version: e.get("stream_version"),
            event_type: e.get("event_type"),
            data: e.get("data"),
            metadata: e.get("metadata"),
            recorded_at: e.get("recorded_at"),
        })
        .collect();
    Ok(Some(JobDetail {
        id: row.get("id"),
        job_type: row.get("type"),
        status: row.get("status"),
        status_code: row.get("status_code"),
        response: row.get("response"),
        links: row.get("links"),
        stream_type: row.get("stream_type"),
        stream_id,
        command: row.get("command"),
        actor: row.get("actor"),
        request_id: row.get("request_id"),
        idempotency_key: row.get("idempotency_key"),
        attempts: row.get("attempts"),
        retries: row.get("retries"),
        eta: row.get("eta"),
        inserted_at: row.get("inserted_at"),
        updated_at: row.get("updated_at"),
        finished_at: row.get("finished_at"),
        retried_at: row.get("retried_at"),
        ended_by: row.get("ended_by"),
        error_detail: row.get("error_detail"),
        events,
    }))
}

/// Which failed jobs a retry accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retryable {
    /// Any job that ended `failed_with_error` (`jobs retry`).
    FailedWithError,
    /// Only those the dead-letter consumer ended (`dead-letters requeue`).
    DeadLettered,
}

/// A job sent again: it is `pending`, and its command waits in the outbox for the relay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retried {
    /// The job.
    pub id: Uuid,
    /// Always `pending`.
    pub status: &'static str,
    /// How many times an operator has now run it again.
    pub retries: i32,
    /// The outbox row's message id: the command message the relay publishes.
    pub message_id: Uuid,
    /// What the failed run left, cleared by the retry: `status_code`, `ended_by`, `error_detail`.
    pub previous: Value,
}

/// Why a job was not run again.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// No such job (or it was purged after `JOB_TTL_DAYS`).
    #[error("job {0} does not exist")]
    NotFound(Uuid),
    /// Only a job that ended `failed_with_error` can run again: a processed or failed job has its outcome,
    /// a pending one is still running.
    #[error("job {id} is {status}: only a failed_with_error job can be run again")]
    NotFailedWithError {
        /// The job.
        id: Uuid,
        /// Its status.
        status: String,
    },
    /// `dead-letters requeue` of a job that did not end as a dead letter.
    #[error("job {id} was not ended by the dead-letter consumer (ended by {ended_by}): use `jobs retry`")]
    NotDeadLettered {
        /// The job.
        id: Uuid,
        /// Who ended it, `unknown` if nobody recorded it.
        ended_by: String,
    },
    /// The same command of the same legal entity is pending as another job, which will give its outcome.
    #[error(
        "an identical command is already pending as job {pending}: job {id} was not run again"
    )]
    IdenticalPending {
        /// The job asked for.
        id: Uuid,
        /// The pending job of the identical command.
        pending: Uuid,
    },
    /// An identical command was accepted while the job was being sent again, and ended at once.
    #[error("job {0} met a concurrent identical command and was not run again; try again")]
    Raced(Uuid),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for RetryError {
    fn from(e: tokio_postgres::Error) -> Self {
        RetryError::Store(e.into())
    }
}

const LOCK_FOR_RETRY: &str =
    "SELECT status, status_code, ended_by, error_detail, owner_legal_entity_id, \
     command_hash FROM jobs WHERE id = $1 FOR UPDATE";
const PENDING_TWIN: &str =
    "SELECT id FROM jobs WHERE owner_legal_entity_id = $1 AND command_hash = $2 \
     AND status = 'pending' AND id <> $3";
const RETRY: &str = "UPDATE jobs SET status = 'pending', status_code = NULL, response = NULL, links = '[]', \
     finished_at = NULL, error_detail = NULL, ended_by = NULL, retries = retries + 1, retried_at = now(), \
     updated_at = now(), eta = now() + make_interval(secs => $2) WHERE id = $1 RETURNING retries";

/// Runs a job that ended `failed_with_error` again, as a new attempt: in one transaction it goes back to
/// `pending` (its outcome, `error_detail` and `ended_by` cleared, `updated_at` now, the sweeper's deadline
/// counted from now) and a fresh command row goes into the outbox, which the worker's relay publishes
/// within seconds. Refuses any other status, a job `which` does not accept, and a job whose identical
/// command is pending as another job (the unique index `jobs_pending_command_uq`).
pub async fn retry(
    client: &mut deadpool_postgres::Client,
    id: Uuid,
    which: Retryable,
) -> Result<Retried, RetryError> {
    let (owner, hash) = {
        let tx = client.transaction().await?;
        let statement = tx.prepare_cached(LOCK_FOR_RETRY).await?;
        let row = tx
            .query_opt(&statement, &[&id])
            .await?
            .ok_or(RetryError::NotFound(id))?;
        let status: String = row.get("status");
        if status != JobStatus::FailedWithError.as_str() {
            return Err(RetryError::NotFailedWithError { id, status });
        }
        let ended_by: Option<String> = row.get("ended_by");
        if which == Retryable::DeadLettered && ended_by.as_deref() != Some("dead_letter") {
            return Err(RetryError::NotDeadLettered {
                id,
                ended_by: ended_by.unwrap_or_else(|| "unknown".to_owned()),
            });
        }
        let owner: Uuid = row.get("owner_legal_entity_id");
        let hash: String = row.get("command_hash");
        let statement = tx.prepare_cached(PENDING_TWIN).await?;
        if let Some(twin) = tx.query_opt(&statement, &[&owner, &hash, &id]).await? {
            return Err(RetryError::IdenticalPending {
                id,
                pending: twin.get(0),
            });
        }
        let previous = json!({
            "status_code": row.get::<_, Option<i32>>("status_code"),
            "ended_by": ended_by,
            "error_detail": row.get::<_, Option<String>>("error_detail"),
        });
        let statement = tx.prepare_cached(RETRY).await?;
        match tx
            .query_one(&statement, &[&id, &(ETA_SECONDS as f64)])
            .await
        {
            Ok(row) => {
                let retries: i32 = row.get(0);
                let message = outbox::insert(
                    &tx,
                    outbox::COMMANDS,
                    outbox::COMMAND_ROUTING_KEY,
                    &json!({ "job_id": id }),
                    Uuid::new_v4(),
                )
                .await?;
                tx.commit().await?;
                return Ok(Retried {
                    id,
                    status: JobStatus::Pending.as_str(),
                    retries,
                    message_id: message.message_id,
                    previous,
                });
            }
            // An identical command was accepted between our check and our update.
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => (owner, hash),
            Err(e) => return Err(e.into()),
        }
    };
    let statement = client.prepare_cached(PENDING_TWIN).await?;
    match client.query_opt(&statement, &[&owner, &hash, &id]).await? {
        Some(twin) => Err(RetryError::IdenticalPending {
            id,
            pending: twin.get(0),
        }),
        // The twin ended in between: the operator can simply try again.
        None => Err(RetryError::Raced(id)),
    }
}

/// A dead letter `dead-letters requeue --all` did not run again, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    /// The job.
    pub id: Uuid,
    /// Why (e.g. an identical command is pending).
    pub reason: String,
}

/// What `dead-letters requeue --all` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Requeued {
    /// Jobs running again.
    pub requeued: Vec<Retried>,
    /// Jobs left as they were.
    pub skipped: Vec<Skipped>,
}

/// Runs every job the dead-letter consumer ended again, oldest first, each in its own transaction like
/// [`retry`]; a job that cannot run again (an identical command pending) is skipped with its reason.
pub async fn requeue_dead_letters(
    client: &mut deadpool_postgres::Client,
) -> Result<Requeued, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT id FROM jobs WHERE status = 'failed_with_error' AND ended_by = 'dead_letter' \
             ORDER BY finished_at, id",
        )
        .await?;
    let ids: Vec<Uuid> = client
        .query(&statement, &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut report = Requeued::default();
    for id in ids {
        match retry(client, id, Retryable::DeadLettered).await {
            Ok(retried) => report.requeued.push(retried),
            Err(RetryError::Store(e)) => return Err(e),
            // Ended, retried or purged by someone else since it was listed, or a twin is pending.
            Err(e) => report.skipped.push(Skipped {
                id,
                reason: e.to_string(),
            }),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::JOB_TYPES;
    use ehealth_domain::{
        analysis_file::{AnalysisFilesAggregate, Command as FileCommand},
        service_request::{Command as RequestCommand, ServiceRequestAggregate},
        Aggregate,
    };
    use uuid::Uuid;

    #[test]
    fn the_job_types_are_those_of_the_domains_commands() {
        let id = Uuid::nil();
        let requests = [
            RequestCommand::Create {
                id,
                patient_id: id,
                category: String::new(),
                code: String::new(),
                program_id: None,
                expiration_date: None,
            },
            RequestCommand::Use {
                used_by_legal_entity_id: id,
                used_by_employee_id: None,
            },
            RequestCommand::Release,
            RequestCommand::Process,
            RequestCommand::Complete,
            RequestCommand::Recall {
                patient_id: id,
                reason: None,
            },
            RequestCommand::Expire,
            RequestCommand::Cancel {
                patient_id: id,
                reason: None,
            },
        ]
        .map(|c| format!("{}.{}", ServiceRequestAggregate::STREAM_TYPE, c.name()));
        let files = [
            FileCommand::Finalize {
                patient_id: id,
                analysis_id: id,
                file_name: String::new(),
                max_bytes: 0,
                upload_key: None,
                object: None,
            },
            FileCommand::SetSend {
                file_id: id,
                is_send: true,
            },
            FileCommand::Delete { file_id: id },
        ]
        .map(|c| format!("{}.{}", AnalysisFilesAggregate::STREAM_TYPE, c.name()));
        use ehealth_domain::contract_request::{
            Command as ContractCommand, ContractRequestAggregate,
        };
        let contracts = [
            "create",
            "assign",
            "approve",
            "decline",
            "approve_msp",
            "sign_nhs",
            "sign_msp",
            "terminate",
        ]
        .map(|action| {
            // Every action's name, through the serde tag a job stores.
            let command: Result<ContractCommand, _> =
                serde_json::from_value(serde_json::json!({ "action": action }));
            let name = command.map_or_else(|_| action.to_owned(), |c| c.name().to_owned());
            format!("{}.{name}", ContractRequestAggregate::STREAM_TYPE)
        });
        let types: Vec<String> = requests.into_iter().chain(files).chain(contracts).collect();
        assert_eq!(types, JOB_TYPES.map(str::to_owned));
    }
}
