//! The dead-letter consumer: every message that reaches `<prefix>.commands.dead` — attempts exhausted, the
//! broker's delivery limit, a poison message, a fault no retry can mend — ends its job as
//! `failed_with_error` (500 `internal_error`), so no job waits for a message that will never be processed.
//!
//! The job is finished only if it is still pending, and the message is acknowledged only once that is
//! written: while the database is down the delivery is held and the write retried with back-off (1 s
//! doubling to 30 s), so an outage at that moment loses nothing.
//!
//! So the broker's dead-letter queue stays empty by design; what remembers a dead letter is its job:
//! `ended_by = 'dead_letter'` and the reason in `error_detail` (from the broker's `x-death` header and our
//! `x-attempt`), which `ehealth-admin dead-letters list` shows and `dead-letters requeue` runs again.

use std::time::Duration;

use deadpool_postgres::Pool;
use ehealth_infra::{jobs::EndedBy, metrics};
use lapin::{message::Delivery, types::AMQPValue};
use tokio::sync::watch;
use tracing::Instrument;

use crate::{
    consumer::{attempt_of, settle, CommandMessage, Handle, Settle},
    handler,
};

/// Dead letters one worker holds at once.
pub const PREFETCH: u16 = 8;

/// Ends the jobs of dead-lettered command messages.
#[derive(Clone)]
pub struct DeadLetters {
    /// The pool.
    pub pool: Pool,
    /// Stops the retry loop of a delivery on shutdown (the message stays in the queue).
    pub shutdown: watch::Receiver<bool>,
    /// `WORKER_MAX_ATTEMPTS`: tells "attempts exhausted" from "a fault no retry can mend".
    pub max_attempts: u32,
}

/// Why a command was dead-lettered, for operators: the broker's reason (`x-death`) and our attempt count.
fn reason(delivery: &Delivery, max_attempts: u32) -> String {
    let headers = delivery.properties.headers().as_ref();
    let broker_reason = headers
        .and_then(|h| match h.inner().get("x-death") {
            Some(AMQPValue::FieldArray(deaths)) => deaths.as_slice().first().cloned(),
            _ => None,
        })
        .and_then(|death| match death {
            AMQPValue::FieldTable(table) => match table.inner().get("reason") {
                Some(AMQPValue::LongString(reason)) => Some(reason.to_string()),
                Some(AMQPValue::ShortString(reason)) => Some(reason.to_string()),
                _ => None,
            },
            _ => None,
        });
    let attempt = attempt_of(delivery);
    match broker_reason.as_deref() {
        Some("rejected") if attempt >= max_attempts => {
            format!("dead-lettered: attempts exhausted ({attempt} of {max_attempts})")
        }
        Some("rejected") => {
            format!("dead-lettered: a fault no retry can mend (attempt {attempt})")
        }
        Some("delivery_limit") => {
            "dead-lettered: the broker's delivery limit was reached (delivered \
            without an acknowledgement too often, e.g. workers died mid-job)"
                .to_owned()
        }
        Some(other) => format!("dead-lettered: {other}"),
        None => "dead-lettered: no reason given (no x-death header)".to_owned(),
    }
}

impl Handle for DeadLetters {
    async fn handle(&self, delivery: Delivery) {
        let Ok(message) = serde_json::from_slice::<CommandMessage>(&delivery.data) else {
            tracing::error!(body = %String::from_utf8_lossy(&delivery.data),
                "dead letter that is not a command message: dropped");
            return settle(&delivery, Settle::Ack).await;
        };
        let job_id = message.job_id;
        let reason = reason(&delivery, self.max_attempts);
        // Every line about this dead letter carries the job and, once read, the request that submitted it.
        let span = tracing::info_span!("dead_letter", %job_id, request_id = tracing::field::Empty);
        async {
            let mut backoff = Duration::from_secs(1);
            let mut shutdown = self.shutdown.clone();
            loop {
                match handler::fail_with_error(&self.pool, job_id, EndedBy::DeadLetter, &reason).await {
                    Ok(ended) => {
                        metrics::job_dead_lettered();
                        match ended {
                            Some(job) => {
                                tracing::Span::current().record(
                                    "request_id",
                                    tracing::field::display(&job.request_id),
                                );
                                tracing::warn!(%job_id, %reason, "dead-lettered command: job ended failed_with_error");
                            }
                            None => tracing::info!(%job_id,
                                "dead-lettered command of a job no longer pending: dropped"),
                        }
                        return settle(&delivery, Settle::Ack).await;
                    }
                    Err(e) => {
                        tracing::warn!(%job_id, error = %e, backoff_ms = backoff.as_millis() as u64,
                            "could not end a dead-lettered job; retrying");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    // Not settled: the broker gives the message to the next consumer.
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        .instrument(span)
        .await
    }
}
