//! The command consumer: one delivery per job, acknowledged only after the job's transaction committed.
//!
//! - success, domain rejection, or a redelivery of a finished job → ack;
//! - transient fault (database down, lost concurrency races) → the message is parked in the retry queue for
//!   `RETRY_DELAY_MS` with its attempt count, then acked; after `WORKER_MAX_ATTEMPTS` it is dead-lettered;
//! - a body that is not a job message, or a non-transient fault → dead-lettered (the job is ended as
//!   `failed_with_error` where possible).
//!
//! A lost broker connection is re-established with backoff. On shutdown the consumer is cancelled and
//! in-flight deliveries finish before the function returns.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use ehealth_infra::{
    amqp::{self, AmqpError, Publisher, Topology},
    storage::Storage,
    Config,
};
use futures_util::StreamExt;
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    },
    types::{AMQPValue, FieldTable},
};
use serde::Deserialize;
use tokio::{sync::watch, task::JoinSet};
use uuid::Uuid;

use crate::handler;

/// The header that counts transient-fault attempts of a command message.
pub const ATTEMPT_HEADER: &str = "x-attempt";

/// The body of a command message.
#[derive(Debug, Deserialize)]
struct CommandMessage {
    job_id: Uuid,
}

/// What the consumer needs, shared by its delivery tasks.
#[derive(Clone)]
pub struct Consumer {
    /// The pool.
    pub pool: Pool,
    /// Publishes retries and integration events.
    pub publisher: Arc<Publisher>,
    /// The object store.
    pub storage: Storage,
    /// The configuration.
    pub config: Arc<Config>,
}

impl Consumer {
    /// Consumes until `shutdown` flips to true, reconnecting with backoff when the broker goes away.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.consume(&mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "consumer lost the broker; reconnecting");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// One connection's worth of consuming. `Ok` only on shutdown.
    async fn consume(&self, shutdown: &mut watch::Receiver<bool>) -> Result<(), AmqpError> {
        let topology = Topology::new(&self.config.queue_prefix);
        let connection = amqp::connect(&self.config.amqp_url).await?;
        let channel = connection.create_channel().await?;
        topology
            .declare(&channel, self.config.retry_delay_ms)
            .await?;
        channel
            .basic_qos(self.config.worker_prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                topology.commands().as_str().into(),
                format!("ehealth-worker-{}", Uuid::new_v4()).as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(queue = %topology.commands(), prefetch = self.config.worker_prefetch, "worker consuming");

        let mut in_flight = JoinSet::new();
        let result = loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break Ok(());
                    }
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let this = self.clone();
                        in_flight.spawn(async move { this.handle(delivery).await });
                    }
                    Some(Err(e)) => break Err(AmqpError::from(e)),
                    None => break Err(AmqpError::ConsumerCancelled),
                },
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        };
        if result.is_ok() {
            tracing::info!(
                in_flight = in_flight.len(),
                "worker stopping: cancelling the consumer"
            );
            let _ = channel
                .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                .await;
        }
        while in_flight.join_next().await.is_some() {}
        if result.is_ok() {
            let _ = channel.close(200, "shutdown".into()).await;
            let _ = connection.close(200, "shutdown".into()).await;
        }
        result
    }

    async fn handle(&self, delivery: Delivery) {
        let Ok(message) = serde_json::from_slice::<CommandMessage>(&delivery.data) else {
            tracing::error!(body = %String::from_utf8_lossy(&delivery.data), "not a command message: dead-lettered");
            return settle(&delivery, Settle::DeadLetter).await;
        };
        let job_id = message.job_id;
        let attempt = attempt_of(&delivery);
        match handler::process_job(&self.pool, &self.publisher, &self.storage, job_id).await {
            Ok(_) => settle(&delivery, Settle::Ack).await,
            Err(e) if e.is_transient() && attempt < self.config.worker_max_attempts => {
                tracing::warn!(%job_id, attempt, error = %e, "transient fault: retrying later");
                let settled = match self.park_for_retry(&delivery, job_id, attempt + 1).await {
                    Ok(()) => Settle::Ack,
                    Err(_) => Settle::Requeue,
                };
                settle(&delivery, settled).await;
            }
            Err(e) => {
                tracing::error!(%job_id, attempt, error = %e, "job cannot be processed: dead-lettered");
                if let Err(e) = handler::fail_with_error(&self.pool, job_id, &e.to_string()).await {
                    tracing::error!(%job_id, error = %e, "could not end the job as failed_with_error");
                }
                settle(&delivery, Settle::DeadLetter).await;
            }
        }
    }

    async fn park_for_retry(
        &self,
        delivery: &Delivery,
        job_id: Uuid,
        attempt: u32,
    ) -> Result<(), AmqpError> {
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
        let retry_queue = self.publisher.topology().retry_queue();
        self.publisher
            .publish("", &retry_queue, &delivery.data, job_id, headers)
            .await
    }
}

fn attempt_of(delivery: &Delivery) -> u32 {
    let value = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPT_HEADER).cloned());
    match value {
        Some(AMQPValue::LongUInt(n)) => n,
        Some(AMQPValue::LongInt(n)) => u32::try_from(n).unwrap_or(1),
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(n).unwrap_or(1),
        Some(AMQPValue::ShortUInt(n)) => u32::from(n),
        Some(AMQPValue::ShortShortUInt(n)) => u32::from(n),
        _ => 1,
    }
}

enum Settle {
    Ack,
    Requeue,
    DeadLetter,
}

async fn settle(delivery: &Delivery, how: Settle) {
    let result = match how {
        Settle::Ack => delivery.ack(BasicAckOptions::default()).await,
        Settle::Requeue => {
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
        Settle::DeadLetter => {
            delivery
                .nack(BasicNackOptions {
                    requeue: false,
                    ..Default::default()
                })
                .await
        }
    };
    if let Err(e) = result {
        // The channel is gone: the broker redelivers the message to another consumer.
        tracing::warn!(error = %e, "could not settle a delivery");
    }
}
