//! Jobs and dead letters: what operators look at when a job did not end well, and how they run it again.

use anyhow::bail;
use ehealth_infra::operator::{self, JobFilter, Requeued, Retryable};
use serde_json::{json, Value};

use crate::args::{DeadLettersCommand, JobsCommand};

/// `jobs …`
pub async fn jobs(
    client: &mut deadpool_postgres::Client,
    command: JobsCommand,
) -> anyhow::Result<Value> {
    Ok(match command {
        JobsCommand::List {
            status,
            job_type,
            older_than,
            limit,
        } => {
            let filter = JobFilter {
                status: status.map(Into::into),
                job_type,
                older_than,
                limit,
            };
            let jobs = operator::list_jobs(&*client, &filter).await?;
            json!({ "count": jobs.len(), "jobs": jobs })
        }
        JobsCommand::Show { id } => match operator::show_job(&*client, id).await? {
            Some(job) => json!(job),
            None => bail!("job {id} does not exist"),
        },
        JobsCommand::Retry { id } => {
            let retried = operator::retry(client, id, Retryable::FailedWithError).await?;
            tracing::info!(job_id = %id, retries = retried.retries, "job sent again");
            json!(retried)
        }
    })
}

/// `dead-letters …`
pub async fn dead_letters(
    client: &mut deadpool_postgres::Client,
    command: DeadLettersCommand,
) -> anyhow::Result<Value> {
    Ok(match command {
        DeadLettersCommand::List { limit } => {
            let jobs = operator::dead_lettered(&*client, limit).await?;
            json!({ "count": jobs.len(), "jobs": jobs })
        }
        DeadLettersCommand::Requeue { id: Some(id), .. } => {
            let retried = operator::retry(client, id, Retryable::DeadLettered).await?;
            report(Requeued {
                requeued: vec![retried],
                skipped: Vec::new(),
            })
        }
        DeadLettersCommand::Requeue { id: None, all } => {
            if !all {
                bail!("name one job with --id, or every dead letter with --all");
            }
            report(operator::requeue_dead_letters(client).await?)
        }
    })
}

fn report(requeued: Requeued) -> Value {
    json!({
        "count": requeued.requeued.len(),
        "requeued": requeued.requeued,
        "skipped": requeued.skipped,
    })
}
