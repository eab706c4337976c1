//! One job: observe the outside world, then load → decide → append + project + finish in one transaction,
//! then publish and delete after the commit.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
};

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use ehealth_domain::{
    analysis_file::AnalysisFilesAggregate,
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
    match job.stream_type.as_str() {
        ServiceRequestAggregate::STREAM_TYPE => {
            run::<ServiceRequestAggregate>(pool, publisher, storage, &job).await
        }
        AnalysisFilesAggregate::STREAM_TYPE => {
            run::<AnalysisFilesAggregate>(pool, publisher, storage, &job).await
        }
        PatientAttachmentAggregate::STREAM_TYPE => {
            run::<PatientAttachmentAggregate>(pool, publisher, storage, &job).await
        }
        ehealth_domain::contract_request::ContractRequestAggregate::STREAM_TYPE => {
            run::<ehealth_domain::contract_request::ContractRequestAggregate>(
                pool, publisher, storage, &job,
            )
            .await
        }
        other => {
            finish_unexpected(pool, &job, &format!("no handler for stream type {other}")).await
        }
    }
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
        match decide::<A>(&tx, storage, &locked, loaded, command.clone()).await {
            Ok((outcome, messages, deletions)) => {
                jobs::finish(&tx, job.id, &outcome).await?;
                tx.commit().await?;
                drop(client);
                tracing::info!(job_id = %job.id, job_type = %job.job_type, status = outcome.status.as_str(),
                    status_code = outcome.status_code, request_id = %job.request_id, "job finished");
                metrics::job_finished(&job.job_type, outcome.status.as_str(), job.inserted_at);
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
