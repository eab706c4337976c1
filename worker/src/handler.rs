//! One job: load → decide → append + project + finish, in one transaction.

use chrono::Utc;
use deadpool_postgres::{GenericClient, Pool};
use ehealth_domain::{
    service_request::{Command as ServiceRequestCommand, ServiceRequestAggregate},
    Aggregate, Context,
};
use ehealth_infra::{
    event_store::{self, Metadata},
    identity,
    jobs::{self, Job, JobStatus, Link, Outcome},
    outbox::{self, OutboxMessage},
    projection::Projection,
    StoreError,
};
use serde_json::json;
use uuid::Uuid;

/// How often a job is decided again after losing an optimistic-concurrency race, before the message is
/// retried later.
pub const MAX_CONFLICT_RETRIES: usize = 5;

/// An aggregate the worker can run commands for: a projection plus the reference data its decisions need.
pub trait Handled: Projection {
    /// The employee a command names, to look up before deciding.
    fn employee_to_look_up(_command: &Self::Command) -> Option<Uuid> {
        None
    }
}

impl Handled for ServiceRequestAggregate {
    fn employee_to_look_up(command: &ServiceRequestCommand) -> Option<Uuid> {
        match command {
            ServiceRequestCommand::Use {
                used_by_employee_id,
                ..
            } => *used_by_employee_id,
            _ => None,
        }
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

/// Processes one job. `Ok` means the message can be acknowledged; `Err` is a fault (transient or not) and
/// nothing was written. Integration events it recorded are published after the commit.
pub async fn process_job(
    pool: &Pool,
    publisher: &ehealth_infra::amqp::Publisher,
    job_id: Uuid,
) -> Result<Processed, StoreError> {
    let mut last_conflict = None;
    for _ in 0..MAX_CONFLICT_RETRIES {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let Some(job) = jobs::lock(&tx, job_id).await? else {
            tracing::warn!(%job_id, "message for an unknown job: skipped");
            return Ok(Processed::Skipped);
        };
        if job.status != JobStatus::Pending {
            tracing::info!(%job_id, status = job.status.as_str(), "job already finished: redelivery skipped");
            return Ok(Processed::Skipped);
        }
        let result = match job.stream_type.as_str() {
            ServiceRequestAggregate::STREAM_TYPE => run::<ServiceRequestAggregate>(&tx, &job).await,
            other => Ok((
                unexpected(&format!("no handler for stream type {other}")),
                Vec::new(),
            )),
        };
        match result {
            Ok((outcome, messages)) => {
                jobs::finish(&tx, job.id, &outcome).await?;
                tx.commit().await?;
                tracing::info!(%job_id, job_type = %job.job_type, status = outcome.status.as_str(),
                    status_code = outcome.status_code, "job finished");
                publisher.publish_committed(pool, &messages).await;
                return Ok(Processed::Finished(outcome));
            }
            Err(e @ StoreError::Conflict { .. }) => {
                tracing::info!(%job_id, error = %e, "concurrent append: deciding again");
                last_conflict = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_conflict.unwrap_or(StoreError::Migration(
        "conflict retries exhausted".to_owned(),
    )))
}

async fn run<A: Handled>(
    tx: &impl GenericClient,
    job: &Job,
) -> Result<(Outcome, Vec<OutboxMessage>), StoreError> {
    let command: A::Command = match serde_json::from_value(job.command.clone()) {
        Ok(command) => command,
        Err(e) => {
            return Ok((
                unexpected(&format!("stored command is not valid: {e}")),
                Vec::new(),
            ))
        }
    };
    let loaded = event_store::load::<A>(tx, job.stream_id).await?;
    let mut ctx = Context::new(Utc::now(), job.actor.clone());
    if let Some(employee_id) = A::employee_to_look_up(&command) {
        ctx.employee = identity::employee(tx, employee_id).await?;
    }
    let events = match A::decide(&loaded.state, command, &ctx) {
        Ok(events) => events,
        Err(rejection) => {
            let outcome = Outcome {
                status: JobStatus::Failed,
                status_code: rejection.status,
                response: rejection.error_object(),
                links: Vec::new(),
            };
            return Ok((outcome, Vec::new()));
        }
    };
    let metadata = Metadata {
        causation_id: Some(job.id),
        correlation_id: job.request_id.clone(),
        actor_user_id: job.actor.user_id,
        legal_entity_id: job.actor.legal_entity_id,
        client_type: job.actor.client_type.as_str().to_owned(),
    };
    let appended = event_store::append::<A>(tx, job.stream_id, &loaded, &events, &metadata).await?;
    let state = events.iter().fold(loaded.state.clone(), A::apply);
    let inserted_at = loaded.first_recorded_at.unwrap_or(appended.recorded_at);
    A::project(
        tx,
        job.stream_id,
        &state,
        appended.version,
        inserted_at,
        appended.recorded_at,
    )
    .await?;

    let mut messages = Vec::new();
    let (before, after) = (A::status(&loaded.state), A::status(&state));
    if let Some(new_status) = after.filter(|s| Some(*s) != before) {
        let event = json!({
            "event_type": "StatusChangeEvent",
            "entity_type": A::ENTITY,
            "entity_id": job.stream_id,
            "properties": { "status": { "new_value": new_status } },
            "event_time": appended.recorded_at,
            "changed_by": job.actor.user_id,
        });
        let routing_key = format!("{}.status_changed", A::ENTITY);
        messages
            .push(outbox::insert(tx, outbox::EVENTS, &routing_key, &event, Uuid::new_v4()).await?);
    }

    let outcome = Outcome {
        status: JobStatus::Processed,
        status_code: if loaded.version == 0 { 201 } else { 200 },
        response: A::view(tx, job.stream_id).await?.unwrap_or_default(),
        links: vec![Link {
            entity: A::ENTITY.to_owned(),
            href: A::href(job.stream_id),
        }],
    };
    Ok((outcome, messages))
}

fn unexpected(reason: &str) -> Outcome {
    tracing::error!(reason, "job failed with an unexpected error");
    Outcome {
        status: JobStatus::FailedWithError,
        status_code: 500,
        response: json!({ "type": "internal_error", "message": "Internal server error" }),
        links: Vec::new(),
    }
}

/// Ends a job whose processing keeps failing with a non-transient fault, so clients stop polling a job that
/// will never finish. Best effort: the caller logs a failure.
pub async fn fail_with_error(pool: &Pool, job_id: Uuid, reason: &str) -> Result<(), StoreError> {
    let client = pool.get().await?;
    jobs::finish(&client, job_id, &unexpected(reason)).await
}
