//! One job: observe the outside world, then load → decide → append + project + finish in one transaction,
//! then publish and delete after the commit. A batch of jobs that need no observation ([`Handled::BATCHED`])
//! goes through one transaction together ([`process_batch`]), falling back to one job per transaction.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
};

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use ehealth_domain::{
    analysis_file::AnalysisFilesAggregate,
    contract_request::ContractRequestAggregate,
    patient_attachment::PatientAttachmentAggregate,
    service_request::{Command as ServiceRequestCommand, ServiceRequestAggregate},
    Aggregate, Context, Rejection,
};
use ehealth_infra::{
    amqp::Publisher,
    event_store::{self, Loaded, Metadata},
    identity,
    jobs::{self, EndedBy, Job, JobStatus, Link, Outcome},
    metrics,
    outbox::{self, OutboxMessage},
    projection::{
        service_request::{self as service_request_projection, ServiceRequestRow},
        Projection,
    },
    storage::{deletions, Storage},
    StoreError,
};
use serde_json::{json, Value};
use uuid::Uuid;

/// How often a job is decided again after losing an optimistic-concurrency race, before the message is
/// retried later.
pub const MAX_CONFLICT_RETRIES: usize = 5;

/// The aggregates the worker handles, by stream type: `with_handled!(stream_type, |A| body, other => fallback)`
/// runs `body` with the type `A` bound to the aggregate whose [`Aggregate::STREAM_TYPE`] is `stream_type`, and
/// `fallback` (with `other` bound to the stream type) for any other. The one list of handled aggregates: every
/// dispatch on a job's stream type goes through it, so a new aggregate is added here once.
macro_rules! with_handled {
    ($stream_type:expr, |$a:ident| $body:expr, $other:pat => $fallback:expr) => {
        with_handled!(@each $stream_type, $a, $body, $other, $fallback, [
            ServiceRequestAggregate,
            AnalysisFilesAggregate,
            PatientAttachmentAggregate,
            ContractRequestAggregate,
        ])
    };
    (@each $stream_type:expr, $a:ident, $body:expr, $other:pat, $fallback:expr, [$($aggregate:ident),+ $(,)?]) => {
        match $stream_type {
            $($aggregate::STREAM_TYPE => {
                type $a = $aggregate;
                $body
            })+
            $other => $fallback,
        }
    };
}

/// What must happen once the job's transaction has committed: integration events to publish (routing key,
/// body) and objects to delete from storage (bucket, key). Both are written in the transaction first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// Integration events on the events exchange.
    pub events: Vec<(String, Value)>,
    /// Objects to delete.
    pub deletions: Vec<(String, String)>,
    /// Jobs to chain on the same stream, for the same actor and request (job type, serialized command):
    /// written with their outbox rows in the transaction, so they exist exactly when it commits.
    pub chained: Vec<(String, Value)>,
}

/// What [`Projection::project`] was given after an append: the stream's version and the times of its first
/// and last events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projected {
    /// The stream's version after the append.
    pub version: i64,
    /// When the stream's first event was recorded.
    pub inserted_at: DateTime<Utc>,
    /// When the appended events were recorded.
    pub updated_at: DateTime<Utc>,
}

/// An aggregate the worker can run commands for: a projection plus what its commands need from the outside
/// world before and after the decision.
pub trait Handled: Projection {
    /// Whether the worker may decide this aggregate's jobs together with others of a batch, in one
    /// transaction ([`process_batch`]): only an aggregate whose commands need nothing observed outside the
    /// database ([`Handled::observe`]) and whose effects touch no storage. The others always run one job per
    /// transaction ([`process_job`]).
    const BATCHED: bool = false;

    /// Looks at the world outside the database (object storage) before the job's transaction starts, so
    /// that no network I/O runs while a connection or a row lock is held; writes what it saw into the
    /// command, where the decision finds it.
    fn observe(
        _command: &mut Self::Command,
        _storage: &Storage,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// Completes `ctx` with reference data from the database, inside the job's transaction.
    fn facts(
        _command: &Self::Command,
        _ctx: &mut Context,
        _tx: &impl GenericClient,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// What the processed job answers: status code (what the command would have answered synchronously),
    /// links to the resource and its representation.
    fn answer(
        tx: &impl GenericClient,
        stream_id: Uuid,
        command: &Self::Command,
        before: &Self::State,
        after: &Self::State,
    ) -> impl Future<Output = Result<Outcome, StoreError>> + Send;

    /// [`Handled::answer`] for a command whose events were appended and projected, knowing what the
    /// projection wrote from them (`projected`): an aggregate whose answer is its projected row can build it
    /// from `after` instead of reading it back. By default [`Handled::answer`].
    fn answer_projected(
        tx: &impl GenericClient,
        stream_id: Uuid,
        command: &Self::Command,
        before: &Self::State,
        after: &Self::State,
        _projected: &Projected,
    ) -> impl Future<Output = Result<Outcome, StoreError>> + Send {
        Self::answer(tx, stream_id, command, before, after)
    }

    /// What must happen after the commit, for a decision or a rejection.
    fn effects(
        _command: &Self::Command,
        _before: &Self::State,
        _decision: &Result<Vec<Self::Event>, Rejection>,
        _ctx: &Context,
        _storage: &Storage,
    ) -> impl Future<Output = Result<Effects, StoreError>> + Send {
        async { Ok(Effects::default()) }
    }
}

impl Handled for ServiceRequestAggregate {
    /// Service requests observe nothing outside the database and have no effects.
    const BATCHED: bool = true;

    async fn facts(
        command: &ServiceRequestCommand,
        ctx: &mut Context,
        tx: &impl GenericClient,
    ) -> Result<(), StoreError> {
        if let ServiceRequestCommand::Use {
            used_by_employee_id: Some(employee_id),
            ..
        } = command
        {
            ctx.employee = identity::employee(tx, *employee_id).await?;
        }
        Ok(())
    }

    async fn answer(
        tx: &impl GenericClient,
        stream_id: Uuid,
        _command: &ServiceRequestCommand,
        before: &Self::State,
        _after: &Self::State,
    ) -> Result<Outcome, StoreError> {
        let row = service_request_projection::get(tx, stream_id).await?;
        Ok(Outcome {
            status: JobStatus::Processed,
            status_code: if before.0.is_none() { 201 } else { 200 },
            links: vec![Link {
                entity: Self::ENTITY.to_owned(),
                href: service_request_projection::href(stream_id),
            }],
            response: row.map(|r| r.to_json()).unwrap_or_default(),
        })
    }

    /// The row the projection has just written, built from the state instead of read back: one statement
    /// less per job.
    async fn answer_projected(
        _tx: &impl GenericClient,
        stream_id: Uuid,
        _command: &ServiceRequestCommand,
        before: &Self::State,
        after: &Self::State,
        projected: &Projected,
    ) -> Result<Outcome, StoreError> {
        let row = after.0.as_ref().map(|sr| {
            ServiceRequestRow::from_state(
                stream_id,
                sr,
                projected.version,
                projected.inserted_at,
                projected.updated_at,
            )
        });
        Ok(Outcome {
            status: JobStatus::Processed,
            status_code: if before.0.is_none() { 201 } else { 200 },
            links: vec![Link {
                entity: Self::ENTITY.to_owned(),
                href: service_request_projection::href(stream_id),
            }],
            response: row.map(|r| r.to_json()).unwrap_or_default(),
        })
    }
}

/// What processing a message did.
#[derive(Debug, Clone, PartialEq)]
pub enum Processed {
    /// The job was finished with this outcome.
    Finished(Outcome),
    /// The job was already finished (a redelivery) or does not exist: nothing to do.
    Skipped,
}

/// Appends that lost an optimistic-concurrency race and were decided again, since the process started.
static CONFLICTS: AtomicU64 = AtomicU64::new(0);

/// How many appends lost an optimistic-concurrency race and were decided again in this process.
pub fn conflicts() -> u64 {
    CONFLICTS.load(Ordering::Relaxed)
}

/// Processes one job. `Ok` means the message can be acknowledged; `Err` is a fault (transient or not) and
/// nothing was written. Integration events and object deletions it recorded run after the commit.
///
/// A job holds at most one pooled connection at a time, and only while it reads the job or runs its
/// transaction: facts from outside the database (a HEAD of an upload) are gathered before the transaction,
/// and publishing and deleting happen after the connection went back to the pool.
pub async fn process_job(
    pool: &Pool,
    publisher: &Publisher,
    storage: &Storage,
    job_id: Uuid,
) -> Result<Processed, StoreError> {
    let job = {
        let client = pool.get().await?;
        jobs::get(&client, job_id).await?
    };
    let Some(job) = job else {
        tracing::warn!(%job_id, "message for an unknown job: skipped");
        return Ok(Processed::Skipped);
    };
    // The consumer's span for this delivery gets the request that submitted the job (its correlation id).
    tracing::Span::current().record("request_id", tracing::field::display(&job.request_id));
    if job.status != JobStatus::Pending {
        tracing::info!(%job_id, status = job.status.as_str(), "job already finished: redelivery skipped");
        return Ok(Processed::Skipped);
    }
    crate::fault::panic_if_asked(&job.command);
    with_handled!(job.stream_type.as_str(), |A| run::<A>(pool, publisher, storage, &job).await, other => {
        finish_unexpected(pool, &job, &format!("no handler for stream type {other}")).await
    })
}

/// What the batch path ([`process_batch`]) did with one job of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Batched {
    /// Committed by the batch's transaction, or nothing to do (a redelivery of a finished job, an unknown
    /// job): the message can be acknowledged.
    Done(Processed),
    /// Not for the batch's transaction: the single path ([`process_job`]) runs it. Its aggregate looks at
    /// the outside world or is not the batch's, another job of the batch is on its stream (it must see that
    /// one's events), its command does not parse, or its id came twice.
    Single,
}

/// Batch transactions committed since the process started.
static BATCHES: AtomicU64 = AtomicU64::new(0);

/// How many batch transactions ([`process_batch`]) this process committed.
pub fn batches() -> u64 {
    BATCHES.load(Ordering::Relaxed)
}

/// Whether jobs on streams of `stream_type` may be decided in a batch ([`Handled::BATCHED`]).
fn batched(stream_type: &str) -> bool {
    with_handled!(stream_type, |A| A::BATCHED, _ => false)
}

/// Processes the jobs of several deliveries (`job_ids`, in delivery order) in one transaction: one read of
/// the jobs, then BEGIN, one lock of all of them (in id order) pipelined with one load of all their streams,
/// each decision made as on the single path ([`decide_and_finish`]), every job's writes pipelined on the one
/// connection, one COMMIT, and one publish of all their outbox rows. The answer has one entry per id.
///
/// Only jobs of one aggregate type that may be batched ([`Handled::BATCHED`]) and on distinct streams go
/// into the transaction; the others come back [`Batched::Single`] for [`process_job`], as do all of them if
/// the transaction fails. `Err` (a lost concurrency race, a deadlock, a database fault) means nothing was
/// written: the caller runs every job of the batch on the single path, which retries, parks or
/// dead-letters it as it would any job.
pub async fn process_batch(
    pool: &Pool,
    publisher: &Publisher,
    storage: &Storage,
    job_ids: &[Uuid],
) -> Result<Vec<Batched>, StoreError> {
    let mut results = vec![Batched::Single; job_ids.len()];
    let mut client = pool.get().await?;
    let mut found: HashMap<Uuid, Job> = jobs::get_many(&client, job_ids)
        .await?
        .into_iter()
        .map(|job| (job.id, job))
        .collect();
    let (mut seen, mut streams) = (HashSet::new(), HashSet::new());
    let mut group: Vec<(usize, Job)> = Vec::new();
    for (i, &job_id) in job_ids.iter().enumerate() {
        if !seen.insert(job_id) {
            continue;
        }
        let Some(job) = found.remove(&job_id) else {
            tracing::warn!(%job_id, "message for an unknown job: skipped");
            results[i] = Batched::Done(Processed::Skipped);
            continue;
        };
        if job.status != JobStatus::Pending {
            tracing::info!(%job_id, status = job.status.as_str(), request_id = %job.request_id,
                "job already finished: redelivery skipped");
            results[i] = Batched::Done(Processed::Skipped);
            continue;
        }
        crate::fault::panic_if_asked(&job.command);
        let same_type = group
            .first()
            .is_none_or(|(_, first)| first.stream_type == job.stream_type);
        if batched(&job.stream_type) && same_type && streams.insert(job.stream_id) {
            group.push((i, job));
        }
    }
    let Some(stream_type) = group.first().map(|(_, job)| job.stream_type.clone()) else {
        return Ok(results);
    };
    // Every job of `group` passed `batched`, so its aggregate is one of the handled ones.
    let decided = with_handled!(stream_type.as_str(), |A| run_batch::<A>(&mut client, storage, group).await?, _ => {
        return Ok(results)
    });
    drop(client);
    BATCHES.fetch_add(1, Ordering::Relaxed);
    let (mut messages, mut deletions) = (Vec::new(), Vec::new());
    for (i, job, done) in decided {
        match done {
            Some(decided) => {
                finished(&job, &decided.outcome);
                messages.extend(decided.messages);
                deletions.extend(decided.deletions);
                results[i] = Batched::Done(Processed::Finished(decided.outcome));
            }
            None => results[i] = Batched::Done(Processed::Skipped),
        }
    }
    after_commit(pool, publisher, storage, &messages, &deletions).await;
    Ok(results)
}

/// The batch's transaction for jobs of `A` on distinct streams (`group`: index in the batch, job): each job
/// with what it committed, `None` for a job another delivery finished meanwhile. A job whose command does
/// not parse is left out (the single path ends it). Committed when it returns `Ok`.
async fn run_batch<A: Handled>(
    client: &mut deadpool_postgres::Client,
    storage: &Storage,
    group: Vec<(usize, Job)>,
) -> Result<Vec<(usize, Job, Option<Decided>)>, StoreError> {
    let mut commands: Vec<(usize, Job, A::Command)> = group
        .into_iter()
        .filter_map(|(i, job)| {
            let command = serde_json::from_value(job.command.clone()).ok()?;
            Some((i, job, command))
        })
        .collect();
    // Writes in stream order, locks in id order: two batches meet on rows in the same order.
    commands.sort_by_key(|(_, job, _)| job.stream_id);
    let ids: Vec<Uuid> = commands.iter().map(|(_, job, _)| job.id).collect();
    let stream_ids: Vec<Uuid> = commands.iter().map(|(_, job, _)| job.stream_id).collect();
    let tx = client.transaction().await?;
    // One round trip: the locks, then (sent at once, run once the locks are held) the streams.
    let (locked, mut loaded) = tokio::try_join!(
        jobs::lock_many(&tx, &ids),
        event_store::load_many::<A>(&tx, &stream_ids)
    )?;
    let mut locked: HashMap<Uuid, Job> = locked.into_iter().map(|job| (job.id, job)).collect();
    let mut skipped = Vec::new();
    let mut work = Vec::new();
    for (i, job, command) in commands {
        let pending = locked
            .remove(&job.id)
            .filter(|locked| locked.status == JobStatus::Pending);
        match (pending, loaded.remove(&job.stream_id)) {
            (Some(locked), Some(stream)) => work.push((i, locked, stream, command)),
            _ => {
                tracing::info!(job_id = %job.id, "job finished by another delivery: skipped");
                skipped.push((i, job, None));
            }
        }
    }
    // Every job's writes at once: tokio-postgres pipelines the statements of concurrent futures on one
    // connection, so the batch costs the round trips of one job.
    let tx_ref = &tx;
    let decided = futures_util::future::try_join_all(work.into_iter().map(
        |(i, job, loaded, command)| async move {
            let decided = decide_and_finish::<A>(tx_ref, storage, &job, loaded, command).await?;
            Ok::<_, StoreError>((i, job, Some(decided)))
        },
    ))
    .await?;
    tx.commit().await?;
    Ok(decided.into_iter().chain(skipped).collect())
}

/// Observes, then decides in one transaction (again after a lost concurrency race), then runs the effects.
async fn run<A: Handled>(
    pool: &Pool,
    publisher: &Publisher,
    storage: &Storage,
    job: &Job,
) -> Result<Processed, StoreError> {
    let mut command: A::Command = match serde_json::from_value(job.command.clone()) {
        Ok(command) => command,
        Err(e) => {
            return finish_unexpected(pool, job, &format!("stored command is not valid: {e}")).await
        }
    };
    A::observe(&mut command, storage).await?;
    let mut last_conflict = None;
    for _ in 0..MAX_CONFLICT_RETRIES {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        // One round trip: the lock, then (sent at once, run by the server once the lock is held) the stream.
        let (locked, loaded) = tokio::try_join!(
            jobs::lock(&tx, job.id),
            event_store::load::<A>(&tx, job.stream_id)
        )?;
        let Some(locked) = locked else {
            return Ok(Processed::Skipped);
        };
        if locked.status != JobStatus::Pending {
            tracing::info!(job_id = %job.id, "job finished by another delivery: skipped");
            return Ok(Processed::Skipped);
        }
        match decide_and_finish::<A>(&tx, storage, &locked, loaded, command.clone()).await {
            Ok(Decided {
                outcome,
                messages,
                deletions,
            }) => {
                tx.commit().await?;
                drop(client);
                finished(job, &outcome);
                after_commit(pool, publisher, storage, &messages, &deletions).await;
                return Ok(Processed::Finished(outcome));
            }
            Err(e @ StoreError::Conflict { .. }) => {
                CONFLICTS.fetch_add(1, Ordering::Relaxed);
                metrics::event_store_conflict();
                tracing::info!(job_id = %job.id, error = %e, "concurrent append: deciding again");
                last_conflict = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_conflict.unwrap_or(StoreError::Migration(
        "conflict retries exhausted".to_owned(),
    )))
}

/// The log line and the metrics of a job whose outcome was committed.
fn finished(job: &Job, outcome: &Outcome) {
    tracing::info!(job_id = %job.id, job_type = %job.job_type, status = outcome.status.as_str(),
        status_code = outcome.status_code, request_id = %job.request_id, "job finished");
    metrics::job_finished(&job.job_type, outcome.status.as_str(), job.inserted_at);
}

/// What deciding a job wrote in its transaction: its outcome (the job row is finished with it), the outbox
/// rows and the object deletions to run once the transaction has committed.
struct Decided {
    outcome: Outcome,
    messages: Vec<OutboxMessage>,
    deletions: Vec<i64>,
}

/// [`decide`], then finishes the job with the outcome in the same transaction: everything one job writes,
/// shared by the single path ([`process_job`]) and the batch path ([`process_batch`]).
async fn decide_and_finish<A: Handled>(
    tx: &impl GenericClient,
    storage: &Storage,
    job: &Job,
    loaded: Loaded<A>,
    command: A::Command,
) -> Result<Decided, StoreError> {
    let (outcome, messages, deletions) = decide::<A>(tx, storage, job, loaded, command).await?;
    jobs::finish(tx, job.id, &outcome).await?;
    Ok(Decided {
        outcome,
        messages,
        deletions,
    })
}

/// Publishes the committed outbox rows and deletes the committed deletions. Failures stay with the relay.
async fn after_commit(
    pool: &Pool,
    publisher: &Publisher,
    storage: &Storage,
    messages: &[OutboxMessage],
    deletions: &[i64],
) {
    publisher.publish_committed(pool, messages).await;
    if let Err(e) = deletions::run(pool, storage, Some(deletions)).await {
        tracing::warn!(error = %e, "object deletion deferred to the relay");
    }
}

/// Decides one job's command in `tx` on its stream as `loaded`: its outcome, the outbox rows and the object
/// deletions it wrote.
async fn decide<A: Handled>(
    tx: &impl GenericClient,
    storage: &Storage,
    job: &Job,
    loaded: Loaded<A>,
    command: A::Command,
) -> Result<(Outcome, Vec<OutboxMessage>, Vec<i64>), StoreError> {
    // At Postgres's precision: times the domain writes into events read back the same from the projection.
    let mut ctx = Context::new(event_store::now(), job.actor.clone());
    A::facts(&command, &mut ctx, tx).await?;
    let decision = A::decide(&loaded.state, command.clone(), &ctx);
    let effects = A::effects(&command, &loaded.state, &decision, &ctx, storage).await?;
    let mut deletions = Vec::new();
    for (bucket, key) in &effects.deletions {
        deletions.push(deletions::schedule(tx, bucket, key).await?);
    }
    let mut messages = Vec::new();
    for (job_type, command) in &effects.chained {
        let chained = jobs::NewJob {
            job_type: job_type.clone(),
            stream_type: A::STREAM_TYPE.to_owned(),
            stream_id: job.stream_id,
            command: command.clone(),
            actor: job.actor.clone(),
            request_id: job.request_id.clone(),
            idempotency_key: None,
        };
        messages.push(jobs::chain(tx, &chained).await?);
    }
    for (routing_key, event) in &effects.events {
        messages
            .push(outbox::insert(tx, outbox::EVENTS, routing_key, event, Uuid::new_v4()).await?);
    }
    let events = match decision {
        Ok(events) => events,
        Err(rejection) => {
            let outcome = Outcome {
                status: JobStatus::Failed,
                status_code: rejection.status,
                response: rejection.error_object(),
                links: Vec::new(),
            };
            return Ok((outcome, messages, deletions));
        }
    };
    let mut state = loaded.state.clone();
    if !events.is_empty() {
        let metadata = Metadata {
            causation_id: Some(job.id),
            correlation_id: job.request_id.clone(),
            actor_user_id: job.actor.user_id,
            legal_entity_id: job.actor.legal_entity_id,
            client_type: job.actor.client_type.as_str().to_owned(),
        };
        let appended =
            event_store::append::<A>(tx, job.stream_id, &loaded, &events, &metadata).await?;
        state = events.iter().fold(state, A::apply);
        let projected = Projected {
            version: appended.version,
            inserted_at: loaded.first_recorded_at.unwrap_or(appended.recorded_at),
            updated_at: appended.recorded_at,
        };
        let (before, after) = (A::status(&loaded.state), A::status(&state));
        let status_changed = after.filter(|s| Some(*s) != before).map(|new_status| {
            json!({
                "event_type": "StatusChangeEvent",
                "entity_type": A::ENTITY,
                "entity_id": job.stream_id,
                "properties": { "status": { "new_value": new_status } },
                "event_time": appended.recorded_at,
                "changed_by": job.actor.user_id,
            })
        });
        let routing_key = format!("{}.status_changed", A::ENTITY);
        let announce = async {
            match &status_changed {
                Some(event) => {
                    outbox::insert(tx, outbox::EVENTS, &routing_key, event, Uuid::new_v4())
                        .await
                        .map(Some)
                }
                None => Ok(None),
            }
        };
        // One round trip for both writes: they are independent.
        let ((), announced) = tokio::try_join!(
            A::project(
                tx,
                job.stream_id,
                &state,
                projected.version,
                projected.inserted_at,
                projected.updated_at,
            ),
            announce
        )?;
        messages.extend(announced);
        let outcome = A::answer_projected(
            tx,
            job.stream_id,
            &command,
            &loaded.state,
            &state,
            &projected,
        )
        .await?;
        return Ok((outcome, messages, deletions));
    }
    let outcome = A::answer(tx, job.stream_id, &command, &loaded.state, &state).await?;
    Ok((outcome, messages, deletions))
}

/// The error body of a job that ended `failed_with_error`: the eHealth `internal_error`, no details.
pub fn internal_error_body() -> Value {
    json!({ "type": "internal_error", "message": "Internal server error" })
}

fn unexpected(reason: &str) -> Outcome {
    tracing::error!(reason, "job failed with an unexpected error");
    Outcome {
        status: JobStatus::FailedWithError,
        status_code: 500,
        response: internal_error_body(),
        links: Vec::new(),
    }
}

/// Ends a job as `failed_with_error` (500 `internal_error`) at once: its command cannot be run. `reason` is
/// recorded for operators (`error_detail`, ended by the worker), never shown to the client.
async fn finish_unexpected(pool: &Pool, job: &Job, reason: &str) -> Result<Processed, StoreError> {
    let outcome = unexpected(reason);
    let client = pool.get().await?;
    if !jobs::finish_with_error(&client, job.id, &outcome, EndedBy::Worker, reason).await? {
        return Ok(Processed::Skipped);
    }
    metrics::job_finished(&job.job_type, outcome.status.as_str(), job.inserted_at);
    Ok(Processed::Finished(outcome))
}

/// Ends a job that can never be processed (attempts exhausted, poison message, dead-lettered) as
/// `failed_with_error`, so clients stop polling a job that will never finish; `ended_by` and `detail` are
/// recorded for operators (`ehealth-admin dead-letters list`), never shown to the client. A job that is no
/// longer pending is left as it is. Returns the job as it was read when it was still pending (for its
/// request id and the metrics), `None` when it was unknown or already finished. An error means the database
/// did not answer: the caller tries again later.
pub async fn fail_with_error(
    pool: &Pool,
    job_id: Uuid,
    ended_by: EndedBy,
    detail: &str,
) -> Result<Option<Job>, StoreError> {
    let client = pool.get().await?;
    let Some(job) = jobs::get(&client, job_id)
        .await?
        .filter(|job| job.status == JobStatus::Pending)
    else {
        return Ok(None);
    };
    let outcome = unexpected(detail);
    if !jobs::finish_with_error(&client, job_id, &outcome, ended_by, detail).await? {
        return Ok(None);
    }
    metrics::job_finished(&job.job_type, outcome.status.as_str(), job.inserted_at);
    Ok(Some(job))
}
