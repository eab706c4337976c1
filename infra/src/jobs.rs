//! Jobs: the durable record of an asynchronous command, from intake (`pending`) to its outcome.
//!
//! [`submit`] writes the job and its outbox row in one transaction (the intake). An identical command of the
//! same legal entity while one is pending returns that job; an `Idempotency-Key` makes it explicit for 24 h.
//! The worker [`lock`]s the job in its own transaction and [`finish`]es it there, atomically with the events.

use std::sync::LazyLock;

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use ehealth_domain::Actor;
use serde::{Deserialize, Serialize};
use serde_json::{json, value::RawValue, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{db::Shared, outbox, StoreError};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted, not yet decided.
    Pending,
    /// Done; `status_code` and `response` hold the result.
    Processed,
    /// Rejected by a domain rule (404/409/422…); `response` holds the eHealth error.
    Failed,
    /// Ended by an unexpected fault (500).
    FailedWithError,
}

impl JobStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Processed => "processed",
            JobStatus::Failed => "failed",
            JobStatus::FailedWithError => "failed_with_error",
        }
    }

    fn parse(value: &str) -> Self {
        match value {
            "processed" => JobStatus::Processed,
            "failed" => JobStatus::Failed,
            "failed_with_error" => JobStatus::FailedWithError,
            _ => JobStatus::Pending,
        }
    }
}

/// A link from a job to the resource it affected: `{"entity":"service_request","href":"/api/…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The resource type.
    pub entity: String,
    /// Its path.
    pub href: String,
}

/// A job row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// The job id, used in `/Jobs/{id}`.
    pub id: Uuid,
    /// e.g. `service_request.release`.
    pub job_type: String,
    /// See [`JobStatus`].
    pub status: JobStatus,
    /// The HTTP status the command would have answered synchronously, once finished.
    pub status_code: Option<i32>,
    /// The body the command would have answered: the resource, or the eHealth `error` object.
    pub response: Option<Value>,
    /// Links to the affected resource.
    pub links: Vec<Link>,
    /// The aggregate type the command addresses.
    pub stream_type: String,
    /// The aggregate instance the command addresses.
    pub stream_id: Uuid,
    /// The command, as the domain serializes it.
    pub command: Value,
    /// Who submitted it.
    pub actor: Actor,
    /// Request id of the submitting HTTP request.
    pub request_id: String,
    /// How many times a worker started it.
    pub attempts: i32,
    /// When the client may expect it done.
    pub eta: DateTime<Utc>,
    /// When it was accepted.
    pub inserted_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    command_hash: String,
}

const COLUMNS: &str = "id, type, status, status_code, response, links, stream_type, stream_id, command, actor, \
     request_id, attempts, eta, inserted_at, updated_at, finished_at, command_hash, idempotency_key";

fn from_row(row: &tokio_postgres::Row) -> Result<Job, StoreError> {
    let status: String = row.get("status");
    Ok(Job {
        id: row.get("id"),
        job_type: row.get("type"),
        status: JobStatus::parse(&status),
        status_code: row.get("status_code"),
        response: row.get("response"),
        links: serde_json::from_value(row.get("links"))?,
        stream_type: row.get("stream_type"),
        stream_id: row.get("stream_id"),
        command: row.get("command"),
        actor: serde_json::from_value(row.get("actor"))?,
        request_id: row.get("request_id"),
        attempts: row.get("attempts"),
        eta: row.get("eta"),
        inserted_at: row.get("inserted_at"),
        updated_at: row.get("updated_at"),
        finished_at: row.get("finished_at"),
        command_hash: row.get("command_hash"),
    })
}

/// A command to accept as a job.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// e.g. `service_request.release`.
    pub job_type: String,
    /// The aggregate type.
    pub stream_type: String,
    /// The aggregate instance.
    pub stream_id: Uuid,
    /// The serialized domain command.
    pub command: Value,
    /// Who asks.
    pub actor: Actor,
    /// The request id (correlation id).
    pub request_id: String,
    /// The client's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
}

impl NewJob {
    /// The hash under which intake recognises a command again: its type, who asks and what the client sent
    /// (`request`), canonicalised. Server-made values (the id of a created resource) must not be in `request`,
    /// or a repeated create would never match the first.
    fn command_hash(&self, request: &Value) -> String {
        let canonical = crate::canonical::to_string(&json!({
            "type": self.job_type,
            "request": request,
            "actor": self.actor,
        }));
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }

    /// What the client sent, for a command that holds nothing the server made: its stream and the command.
    fn command_as_sent(&self) -> Value {
        json!({
            "stream_type": self.stream_type,
            "stream_id": self.stream_id,
            "command": self.command,
        })
    }
}

/// What intake did with a command.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// A new job was accepted; its command message must be published (see [`outbox`]).
    Created(Job, outbox::OutboxMessage),
    /// An identical command (or the same `Idempotency-Key`) already has this job.
    Existing(Job),
}

/// Why intake refused a command.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The `Idempotency-Key` was used in the last 24 h for a different command.
    #[error("Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long an `Idempotency-Key` binds its command.
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;
/// The eta promised to clients: jobs are normally done within seconds.
pub const ETA_SECONDS: i64 = 5;
/// Stored error bodies are kept below this size.
pub const MAX_ERROR_BODY_BYTES: usize = 8 * 1024;

/// Accepts a command: writes the job and its outbox row in one transaction. The command is recognised again
/// (identical pending command, `Idempotency-Key`) by its stream and its serialized form, which is right for
/// commands that hold no server-made value; see [`submit_with_fingerprint`] for those that do.
pub async fn submit(db: &Shared, new: NewJob) -> Result<Submitted, SubmitError> {
    let fingerprint = new.command_as_sent();
    submit_with_fingerprint(db, new, &fingerprint).await
}

/// Accepts a command like [`submit`], recognising it again by `fingerprint`: what the client sent (the path
/// parameters and the body, parsed), without any value the server made such as the id of a resource to
/// create. So the same create sent twice is one job, and a retried create with the same `Idempotency-Key`
/// gets the first one's job and outcome.
pub async fn submit_with_fingerprint(
    db: &Shared,
    new: NewJob,
    fingerprint: &Value,
) -> Result<Submitted, SubmitError> {
    let hash = new.command_hash(fingerprint);
    // A concurrent identical submission can hit a unique index between our check and our insert; the
    // second attempt then finds the winner's job.
    match try_submit(db, &new, &hash).await {
        Err(SubmitError::Store(e)) if e.is_unique_violation() => try_submit(db, &new, &hash).await,
        other => other,
    }
}

/// Intake in one statement: an identical pending command's job, or a new job and its outbox row. Run on its
/// own it is its own transaction (one round trip); the `Idempotency-Key` path runs it inside one.
static SUBMIT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH pending AS ( \
           SELECT {COLUMNS} FROM jobs \
           WHERE owner_legal_entity_id = $7 AND command_hash = $8 AND status = 'pending'), \
         job AS ( \
           INSERT INTO jobs (id, type, stream_type, stream_id, command, actor, owner_legal_entity_id, \
             command_hash, idempotency_key, request_id, eta) \
           SELECT $1::uuid, $2::text, $3::text, $4::uuid, $5::jsonb, $6::jsonb, $7::uuid, $8::text, $9::text, \
             $10::text, $11::timestamptz \
           WHERE NOT EXISTS (SELECT 1 FROM pending) \
           RETURNING {COLUMNS}), \
         message AS ( \
           INSERT INTO outbox (message_id, exchange, routing_key, payload) \
           SELECT id, $12::text, $13::text, $14::jsonb FROM job RETURNING id) \
         SELECT {COLUMNS}, (SELECT id FROM message) AS outbox_id FROM job \
         UNION ALL SELECT {COLUMNS}, NULL FROM pending"
    )
});

static SELECT_BY_IDEMPOTENCY_KEY: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM jobs WHERE owner_legal_entity_id = $1 AND idempotency_key = $2")
});

async fn try_submit(db: &Shared, new: &NewJob, hash: &str) -> Result<Submitted, SubmitError> {
    let Some(key) = &new.idempotency_key else {
        // One statement on its own: pipelined with other requests' on a shared connection.
        return Ok(insert_or_find(&*db.get().await?, new, hash).await?);
    };
    let mut client = db.pool().get().await.map_err(StoreError::from)?;
    let tx = client.transaction().await.map_err(StoreError::from)?;
    let owner = new.actor.legal_entity_id;
    let statement = tx
        .prepare_cached(&SELECT_BY_IDEMPOTENCY_KEY)
        .await
        .map_err(StoreError::from)?;
    if let Some(row) = tx
        .query_opt(&statement, &[&owner, key])
        .await
        .map_err(StoreError::from)?
    {
        let job = from_row(&row)?;
        if job.inserted_at > Utc::now() - Duration::hours(IDEMPOTENCY_WINDOW_HOURS) {
            return if job.command_hash == hash {
                Ok(Submitted::Existing(job))
            } else {
                Err(SubmitError::IdempotencyKeyReused)
            };
        }
        let statement = tx
            .prepare_cached("UPDATE jobs SET idempotency_key = NULL WHERE id = $1")
            .await
            .map_err(StoreError::from)?;
        tx.execute(&statement, &[&job.id])
            .await
            .map_err(StoreError::from)?;
    }
    let submitted = insert_or_find(&tx, new, hash).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(submitted)
}

/// Runs [`SUBMIT`]: the identical pending command's job, or the new job with its outbox row.
async fn insert_or_find(
    client: &impl GenericClient,
    new: &NewJob,
    hash: &str,
) -> Result<Submitted, StoreError> {
    let id = Uuid::new_v4();
    let eta = Utc::now() + Duration::seconds(ETA_SECONDS);
    let actor = serde_json::to_value(&new.actor)?;
    let payload = json!({ "job_id": id });
    let statement = client.prepare_cached(&SUBMIT).await?;
    let row = client
        .query_one(
            &statement,
            &[
                &id,
                &new.job_type,
                &new.stream_type,
                &new.stream_id,
                &new.command,
                &actor,
                &new.actor.legal_entity_id,
                &hash,
                &new.idempotency_key,
                &new.request_id,
                &eta,
                &outbox::COMMANDS,
                &outbox::COMMAND_ROUTING_KEY,
                &payload,
            ],
        )
        .await?;
    let job = from_row(&row)?;
    let outbox_id: Option<i64> = row.get("outbox_id");
    Ok(match outbox_id {
        Some(outbox_id) => {
            let message = outbox::OutboxMessage {
                id: outbox_id,
                message_id: id,
                exchange: outbox::COMMANDS.to_owned(),
                routing_key: outbox::COMMAND_ROUTING_KEY.to_owned(),
                payload,
            };
            Submitted::Created(job, message)
        }
        None => Submitted::Existing(job),
    })
}

/// Intake inside the caller's transaction, for commands the service submits itself (the worker's scheduler):
/// the same statement as [`submit_with_fingerprint`] — an identical pending command of the same actor, by
/// `fingerprint`, returns its job instead of a new one — committed with whatever else the caller writes. A
/// created job's message is published after that commit (by the relay otherwise).
pub async fn submit_in(
    tx: &impl GenericClient,
    new: &NewJob,
    fingerprint: &Value,
) -> Result<Submitted, StoreError> {
    insert_or_find(tx, new, &new.command_hash(fingerprint)).await
}

/// Writes a job that another job's transaction chains (e.g. processing after a patient attachment was
/// created), with its outbox row, in the caller's transaction: it exists exactly when that transaction
/// commits. The returned message is published after the commit (the relay publishes it otherwise).
pub async fn chain(
    tx: &impl GenericClient,
    new: &NewJob,
) -> Result<outbox::OutboxMessage, StoreError> {
    let id = Uuid::new_v4();
    let hash = new.command_hash(&new.command_as_sent());
    let eta = Utc::now() + Duration::seconds(ETA_SECONDS);
    let actor = serde_json::to_value(&new.actor)?;
    let statement = tx
        .prepare_cached(
            "INSERT INTO jobs (id, type, stream_type, stream_id, command, actor, owner_legal_entity_id, \
             command_hash, request_id, eta) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &id,
            &new.job_type,
            &new.stream_type,
            &new.stream_id,
            &new.command,
            &actor,
            &new.actor.legal_entity_id,
            &hash,
            &new.request_id,
            &eta,
        ],
    )
    .await?;
    outbox::insert(
        tx,
        outbox::COMMANDS,
        outbox::COMMAND_ROUTING_KEY,
        &json!({ "job_id": id }),
        id,
    )
    .await
}

/// What a client polling a job is shown of it (`GET /Jobs/{id}`): its status and outcome, the version behind
/// the `ETag`, and the legal entity it belongs to — read by [`view`] without the command, the actor and the
/// rest of the row, which the answer never shows.
#[derive(Debug, Clone)]
pub struct JobView {
    /// The job id.
    pub id: Uuid,
    /// See [`JobStatus`].
    pub status: JobStatus,
    /// The HTTP status the command would have answered synchronously, once finished.
    pub status_code: Option<i32>,
    /// The body the command would have answered: the resource, or the eHealth `error` object, as stored
    /// (the poll passes it on without building a tree of it).
    pub response: Option<Box<RawValue>>,
    /// Links to the affected resource.
    pub links: Vec<Link>,
    /// When the client may expect it done.
    pub eta: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The legal entity that submitted it (the actor's), the only one that may read it.
    pub owner_legal_entity_id: Uuid,
}

impl Job {
    /// What a polling client is shown of this job.
    pub fn view(&self) -> JobView {
        JobView {
            id: self.id,
            status: self.status,
            status_code: self.status_code,
            response: self
                .response
                .as_ref()
                .and_then(|response| serde_json::value::to_raw_value(response).ok()),
            links: self.links.clone(),
            eta: self.eta,
            updated_at: self.updated_at,
            owner_legal_entity_id: self.actor.legal_entity_id,
        }
    }
}

/// The poll's read: the columns of [`JobView`], by position. A processed job with links is answered with
/// them alone (303 to the resource), so its response is not read.
const VIEW: &str = "SELECT id, status, status_code, \
       CASE WHEN status = 'processed' AND links <> '[]'::jsonb THEN NULL ELSE response END, \
       links, eta, updated_at, owner_legal_entity_id \
     FROM jobs WHERE id = $1";

/// Reads what a polling client is shown of a job (see [`JobView`]); `None` for an unknown id.
pub async fn view(client: &impl GenericClient, id: Uuid) -> Result<Option<JobView>, StoreError> {
    let statement = client.prepare_cached(VIEW).await?;
    let Some(row) = client.query_opt(&statement, &[&id]).await? else {
        return Ok(None);
    };
    let links: postgres_types::Json<Vec<Link>> = row.try_get(4)?;
    let response: Option<postgres_types::Json<Box<RawValue>>> = row.try_get(3)?;
    Ok(Some(JobView {
        id: row.try_get(0)?,
        status: JobStatus::parse(row.try_get(1)?),
        status_code: row.try_get(2)?,
        response: response.map(|response| response.0),
        links: links.0,
        eta: row.try_get(5)?,
        updated_at: row.try_get(6)?,
        owner_legal_entity_id: row.try_get(7)?,
    }))
}

static GET: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"));

/// Reads a job.
pub async fn get(client: &impl GenericClient, id: Uuid) -> Result<Option<Job>, StoreError> {
    let statement = client.prepare_cached(&GET).await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

static LOCK: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE"));

/// Locks a job for the rest of the caller's transaction, so that two deliveries of one message cannot both
/// process it. `None` for an unknown id. A row lock, not a write: the attempt is counted by [`finish`] in
/// the same transaction (an attempt that rolls back leaves no trace either way), so a job's row gets one new
/// version per job, not two.
pub async fn lock(client: &impl GenericClient, id: Uuid) -> Result<Option<Job>, StoreError> {
    let statement = client.prepare_cached(&LOCK).await?;
    client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

static SELECT_MANY: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {COLUMNS} FROM jobs WHERE id = ANY($1)"));

/// The jobs of `ids` that exist, in one statement, in no particular order (the worker's batches).
pub async fn get_many(client: &impl GenericClient, ids: &[Uuid]) -> Result<Vec<Job>, StoreError> {
    let statement = client.prepare_cached(&SELECT_MANY).await?;
    let rows = client.query(&statement, &[&ids]).await?;
    rows.iter().map(from_row).collect()
}

static LOCK_MANY: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {COLUMNS} FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE")
});

/// [`lock`] for the jobs of a batch, in one statement; unknown ids are left out. The rows are locked in id
/// order, so two transactions locking overlapping batches queue behind each other instead of deadlocking.
pub async fn lock_many(client: &impl GenericClient, ids: &[Uuid]) -> Result<Vec<Job>, StoreError> {
    let statement = client.prepare_cached(&LOCK_MANY).await?;
    let rows = client.query(&statement, &[&ids]).await?;
    rows.iter().map(from_row).collect()
}

/// The outcome of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `processed`, `failed` or `failed_with_error`.
    pub status: JobStatus,
    /// The HTTP status the command would have answered.
    pub status_code: u16,
    /// The resource, or the eHealth `error` object.
    pub response: Value,
    /// Links to the affected resource.
    pub links: Vec<Link>,
}

/// Finishes a job with its outcome and counts the attempt that decided it (see [`lock`]). Error bodies are
/// capped at [`MAX_ERROR_BODY_BYTES`].
pub async fn finish(
    client: &impl GenericClient,
    id: Uuid,
    outcome: &Outcome,
) -> Result<(), StoreError> {
    let response = if outcome.status == JobStatus::Processed {
        outcome.response.clone()
    } else {
        cap_error_body(outcome.response.clone(), MAX_ERROR_BODY_BYTES)
    };
    let links = serde_json::to_value(&outcome.links)?;
    let statement = client
        .prepare_cached(
            "UPDATE jobs SET status = $2, status_code = $3, response = $4, links = $5, \
             attempts = attempts + 1, updated_at = now(), finished_at = now() \
             WHERE id = $1 AND status = 'pending'",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &id,
                &outcome.status.as_str(),
                &i32::from(outcome.status_code),
                &response,
                &links,
            ],
        )
        .await?;
    Ok(())
}

/// Who ended a job `failed_with_error`, recorded with the reason (`jobs.ended_by`, `jobs.error_detail`) for
/// operators: the broker's dead-letter queue is emptied by design, so the job row is where a dead letter is
/// remembered (`ehealth-admin dead-letters list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    /// The worker's handler: the command cannot be run (not valid, no handler for its stream type).
    Worker,
    /// The dead-letter consumer: attempts exhausted, the broker's delivery limit, a fault no retry mends.
    DeadLetter,
    /// The sweeper: pending past `JOB_DEADLINE_SECONDS`.
    Sweeper,
}

impl EndedBy {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Worker => "worker",
            EndedBy::DeadLetter => "dead_letter",
            EndedBy::Sweeper => "sweeper",
        }
    }
}

/// The longest `error_detail` stored, in bytes: a reason, not a dump.
pub const MAX_ERROR_DETAIL_BYTES: usize = 2048;

const FINISH_WITH_ERROR: &str =
    "UPDATE jobs SET status = 'failed_with_error', status_code = $2, response = $3, links = '[]', \
     error_detail = $4, ended_by = $5, updated_at = now(), finished_at = now() \
     WHERE id = $1 AND status = 'pending'";

/// Ends a pending job `failed_with_error` with `outcome` (the client sees its 500 `internal_error` body
/// only), recording for operators who ended it and why (`detail`, capped at [`MAX_ERROR_DETAIL_BYTES`];
/// never shown to API clients). `false` when the job was not pending (left as it is) or does not exist.
pub async fn finish_with_error(
    client: &impl GenericClient,
    id: Uuid,
    outcome: &Outcome,
    ended_by: EndedBy,
    detail: &str,
) -> Result<bool, StoreError> {
    let response = cap_error_body(outcome.response.clone(), MAX_ERROR_BODY_BYTES);
    let detail = truncate(detail, MAX_ERROR_DETAIL_BYTES);
    let statement = client.prepare_cached(FINISH_WITH_ERROR).await?;
    let ended = client
        .execute(
            &statement,
            &[
                &id,
                &i32::from(outcome.status_code),
                &response,
                &detail,
                &ended_by.as_str(),
            ],
        )
        .await?;
    Ok(ended == 1)
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Deletes finished jobs older than `ttl_days`. Their events stay forever.
pub async fn purge_finished(client: &impl GenericClient, ttl_days: i64) -> Result<u64, StoreError> {
    let cutoff = Utc::now() - Duration::days(ttl_days);
    let statement = client
        .prepare_cached("DELETE FROM jobs WHERE finished_at < $1")
        .await?;
    Ok(client.execute(&statement, &[&cutoff]).await?)
}

/// Shortens an eHealth error body to at most `max` bytes of JSON: `rules[].params` are dropped first, then
/// `invalid` entries from the end.
pub fn cap_error_body(mut body: Value, max: usize) -> Value {
    let size = |v: &Value| serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    if size(&body) <= max {
        return body;
    }
    if let Some(invalid) = body.get_mut("invalid").and_then(Value::as_array_mut) {
        for entry in invalid.iter_mut() {
            if let Some(rules) = entry.get_mut("rules").and_then(Value::as_array_mut) {
                for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                    rule.remove("params");
                }
            }
        }
    }
    while size(&body) > max {
        match body.get_mut("invalid").and_then(Value::as_array_mut) {
            Some(invalid) if !invalid.is_empty() => {
                invalid.pop();
            }
            _ => break,
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::{cap_error_body, truncate};

    #[test]
    fn an_error_detail_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ab\u{e9}cd", 3), "ab");
        assert_eq!(truncate("ab\u{e9}cd", 4), "ab\u{e9}");
    }

    use serde_json::json;

    #[test]
    fn capping_drops_params_before_entries() {
        let entry = |i: usize| {
            json!({"entry": format!("$.f{i}"), "entry_type": "json_data_property",
                   "rules": [{"rule": "invalid", "description": "d", "params": ["x".repeat(50)]}]})
        };
        let body = json!({"type": "validation_failed", "message": "m", "invalid": (0..4).map(entry).collect::<Vec<_>>()});
        let capped = cap_error_body(body.clone(), 500);
        let invalid = capped["invalid"]
            .as_array()
            .expect("invalid stays an array");
        assert_eq!(invalid.len(), 4, "params alone make it fit");
        assert!(invalid
            .iter()
            .all(|e| e["rules"][0].get("params").is_none()));
        let tighter = cap_error_body(body, 250);
        assert!(tighter["invalid"].as_array().expect("array").len() < 4);
        assert_eq!(tighter["type"], "validation_failed");
    }
}
