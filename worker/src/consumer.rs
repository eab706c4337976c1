//! Consuming a queue: one task per delivery — or per batch of the deliveries the broker had already handed
//! over (`WORKER_BATCH`), decided in one transaction — acknowledged only after the job's transaction
//! committed, and a connection that is watched and re-established.
//!
//! [`consume`] is the loop both of the worker's consumers share: connect (bounded by `AMQP_TIMEOUT_MS`),
//! declare the topology, consume with a bounded prefetch, and reconnect with back-off (200 ms doubling to
//! 2 s) whenever the broker goes away — an error on the stream, a cancelled consumer, or the watchdog
//! seeing the connection or channel closed (heartbeats every 10 s notice a dead peer). On shutdown the
//! consumer is cancelled and in-flight deliveries finish before it returns.
//!
//! [`Commands`] decides what happens to a command:
//! - success, domain rejection, or a redelivery of a finished job → ack;
//! - transient fault (database down, lost concurrency races) or a panicking handler → the message is parked
//!   in the retry queue of its attempt (`RETRY_DELAY_MS` doubling, with jitter, up to `RETRY_MAX_DELAY_MS`)
//!   and acked; after `WORKER_MAX_ATTEMPTS` attempts it is dead-lettered;
//! - a body that is not a job message, or a fault that no retry can mend → dead-lettered.
//!
//! Dead letters are ended by [`crate::dead_letters`].

use std::{
    collections::{BTreeSet, HashSet},
    future::Future,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};

use deadpool_postgres::Pool;
use ehealth_infra::{
    amqp::{self, AmqpError, Publisher, Topology},
    metrics::{self, RetryReason},
    storage::Storage,
    Config,
};
use futures_util::{FutureExt, StreamExt};
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    },
    types::{AMQPValue, FieldTable},
};
use serde::Deserialize;
use tokio::{sync::watch, task::JoinSet};
use tracing::Instrument;
use uuid::Uuid;

use crate::handler;

/// The header that counts the attempts of a command message.
pub const ATTEMPT_HEADER: &str = "x-attempt";
/// The first wait before reconnecting to a lost broker; it doubles per failed attempt.
pub const RECONNECT_FIRST: Duration = Duration::from_millis(200);
/// The longest wait between two reconnection attempts: a refused connection is cheap, and a broker that is
/// back should be used within seconds (the fault suite measured 10 s of idling with a 10 s cap).
pub const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// The longest wait for the broker to take an ack or nack.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long in-flight deliveries of a lost connection may go on before they are stopped.
pub const LOST_CONNECTION_DRAIN: Duration = Duration::from_secs(10);
/// How often the watchdog looks at the connection.
pub const WATCHDOG_EVERY: Duration = Duration::from_secs(1);

/// The body of a command message.
#[derive(Debug, Deserialize)]
pub struct CommandMessage {
    /// The job the message stands for.
    pub job_id: Uuid,
}

/// What a consumer does with one delivery. It settles the delivery itself.
pub trait Handle: Clone + Send + Sync + 'static {
    /// Handles and settles one delivery.
    fn handle(&self, delivery: Delivery) -> impl Future<Output = ()> + Send;

    /// The most deliveries the consumer hands over at once ([`Handle::handle_batch`]); 1 by default.
    fn batch_limit(&self) -> usize {
        1
    }

    /// Handles and settles deliveries that arrived together (at most [`Handle::batch_limit`]); by default
    /// each on its own, concurrently. `unsettled` is the channel's record of the deliveries not settled yet
    /// (see [`Unsettled::covering`]).
    fn handle_batch(
        &self,
        deliveries: Vec<Delivery>,
        _unsettled: Unsettled,
    ) -> impl Future<Output = ()> + Send {
        async move {
            futures_util::future::join_all(deliveries.into_iter().map(|d| self.handle(d))).await;
        }
    }
}

/// The delivery tags of one channel whose handling has not ended: a tag is added when its delivery arrives,
/// before any task sees it, and removed by the consumer once the task that handled it has ended (so after it
/// was settled). The set may still hold tags that were settled a moment ago, never miss one that is not: it
/// tells when a `multiple` ack of a tag is safe ([`Unsettled::covering`]).
#[derive(Clone, Debug, Default)]
pub struct Unsettled(Arc<Mutex<BTreeSet<u64>>>);

impl Unsettled {
    fn tags(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        // A panic while holding the lock leaves a set of numbers, still meaningful.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A delivery with `tag` arrived.
    pub fn received(&self, tag: u64) {
        self.tags().insert(tag);
    }

    /// The handling of these deliveries has ended.
    pub fn ended(&self, tags: &[u64]) {
        let mut set = self.tags();
        for tag in tags {
            set.remove(tag);
        }
    }

    /// The highest of `tags` if acknowledging it with `multiple` acknowledges exactly `tags`: every delivery
    /// of the channel up to it that is not settled yet is one of `tags`. `None` when another delivery below
    /// it is still being handled (then each must be acknowledged on its own).
    pub fn covering(&self, tags: &[u64]) -> Option<u64> {
        let last = *tags.iter().max()?;
        let set = self.tags();
        set.range(..=last)
            .all(|tag| tags.contains(tag))
            .then_some(last)
    }
}

/// Consumes `queue` with `prefetch` until `shutdown` flips to true, reconnecting with back-off.
pub async fn consume<H: Handle>(
    config: Arc<Config>,
    queue: String,
    prefetch: u16,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = RECONNECT_FIRST;
    loop {
        let started = tokio::time::Instant::now();
        match session(&config, &queue, prefetch, &handler, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = RECONNECT_FIRST;
                }
                tracing::warn!(queue, error = %e, backoff_ms = backoff.as_millis() as u64,
                    "consumer lost the broker; reconnecting");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// One connection's worth of consuming. `Ok` only on shutdown.
async fn session<H: Handle>(
    config: &Config,
    queue: &str,
    prefetch: u16,
    handler: &H,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), AmqpError> {
    let limit = Duration::from_millis(config.amqp_timeout_ms);
    let connection = amqp::connect_within(&config.amqp_url, limit).await?;
    let channel = amqp::bounded(limit, async {
        let channel = connection.create_channel().await?;
        Topology::new(config).declare(&channel).await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        Ok(channel)
    })
    .await?;
    let mut consumer = amqp::bounded(limit, async {
        Ok(channel
            .basic_consume(
                queue.into(),
                format!("ehealth-worker-{}", Uuid::new_v4()).as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?)
    })
    .await?;
    tracing::info!(queue, prefetch, "worker consuming");

    let mut watchdog = tokio::time::interval(WATCHDOG_EVERY);
    let mut in_flight = JoinSet::new();
    let batch_limit = handler.batch_limit().max(1);
    let unsettled = Unsettled::default();
    let result = loop {
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break Ok(());
                }
            }
            _ = watchdog.tick() => {
                if !connection.status().connected() || !channel.status().connected() {
                    break Err(AmqpError::ConnectionLost);
                }
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    // With it, whatever the broker has already handed over (no waiting): one task, and
                    // for commands one transaction, for all of them.
                    let mut batch = vec![delivery];
                    let mut ended = None;
                    while batch.len() < batch_limit {
                        match consumer.next().now_or_never() {
                            Some(Some(Ok(delivery))) => batch.push(delivery),
                            Some(Some(Err(e))) => {
                                ended = Some(Err(AmqpError::from(e)));
                                break;
                            }
                            Some(None) => {
                                ended = Some(Err(AmqpError::ConsumerCancelled));
                                break;
                            }
                            None => break,
                        }
                    }
                    let tags: Vec<u64> = batch.iter().map(|d| d.delivery_tag).collect();
                    for tag in &tags {
                        unsettled.received(*tag);
                    }
                    let (handler, record) = (handler.clone(), unsettled.clone());
                    in_flight.spawn(async move {
                        handler.handle_batch(batch, record).await;
                        tags
                    });
                    if let Some(ended) = ended {
                        break ended;
                    }
                }
                Some(Err(e)) => break Err(AmqpError::from(e)),
                None => break Err(AmqpError::ConsumerCancelled),
            },
            Some(ended) = in_flight.join_next(), if !in_flight.is_empty() => {
                // A task that panicked leaves its tags in the set: that only keeps later acks single.
                if let Ok(tags) = ended {
                    unsettled.ended(&tags);
                }
            }
        }
    };
    if result.is_ok() {
        tracing::info!(
            queue,
            in_flight = in_flight.len(),
            "worker stopping: cancelling the consumer"
        );
        let _ = amqp::bounded(limit, async {
            Ok(channel
                .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                .await?)
        })
        .await;
    }
    if result.is_ok() {
        // Shutdown: let in-flight jobs finish (each is bounded: settling, publishing and the pool all are).
        while in_flight.join_next().await.is_some() {}
    } else {
        // The connection is gone: their acks cannot arrive anyway. Give them a moment, then stop them (a
        // transaction in progress rolls back) so the consumer reconnects; the broker redelivers the messages.
        let drained = tokio::time::timeout(LOST_CONNECTION_DRAIN, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                queue,
                aborted = in_flight.len(),
                "in-flight deliveries of a lost connection stopped"
            );
            in_flight.shutdown().await;
        }
    }
    let _ = amqp::bounded(limit, async {
        channel.close(200, "done".into()).await?;
        Ok(connection.close(200, "done".into()).await?)
    })
    .await;
    result
}

/// The command consumer: runs each job and settles its message.
#[derive(Clone)]
pub struct Commands {
    /// The pool.
    pub pool: Pool,
    /// Publishes retries and integration events.
    pub publisher: Arc<Publisher>,
    /// The object store.
    pub storage: Storage,
    /// The configuration.
    pub config: Arc<Config>,
}

impl Handle for Commands {
    async fn handle(&self, delivery: Delivery) {
        let Ok(message) = serde_json::from_slice::<CommandMessage>(&delivery.data) else {
            tracing::error!(body = %String::from_utf8_lossy(&delivery.data), "not a command message: dead-lettered");
            return settle(&delivery, Settle::DeadLetter).await;
        };
        let job_id = message.job_id;
        let attempt = attempt_of(&delivery);
        // Every line about this delivery carries the job and the request that submitted it (the correlation
        // id); `handler::process_job` fills in `request_id` once it has read the job.
        let span = tracing::info_span!("job", %job_id, request_id = tracing::field::Empty, attempt);
        async {
            let processed = AssertUnwindSafe(handler::process_job(
                &self.pool,
                &self.publisher,
                &self.storage,
                job_id,
            ))
            .catch_unwind()
            .await;
            let (fault, reason) = match processed {
                Ok(Ok(_)) => return settle(&delivery, Settle::Ack).await,
                Ok(Err(e)) if !e.is_transient() => {
                    tracing::error!(%job_id, attempt, error = %e, "job cannot be processed: dead-lettered");
                    return settle(&delivery, Settle::DeadLetter).await;
                }
                Ok(Err(e)) => (e.to_string(), RetryReason::Fault),
                Err(panic) => {
                    metrics::job_panicked();
                    let reason = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    (
                        format!("the handler panicked: {reason}"),
                        RetryReason::Panic,
                    )
                }
            };
            if attempt >= self.config.worker_max_attempts {
                tracing::error!(%job_id, attempt, error = %fault, "attempts exhausted: dead-lettered");
                return settle(&delivery, Settle::DeadLetter).await;
            }
            let delay = self.config.retry_delay(attempt);
            tracing::warn!(%job_id, attempt, error = %fault, delay_ms = delay.as_millis() as u64,
                "transient fault: retrying later");
            let settled = match self.park_for_retry(&delivery, job_id, attempt, delay).await {
                Ok(()) => {
                    metrics::job_retried(reason);
                    Settle::Ack
                }
                Err(e) => {
                    tracing::warn!(%job_id, error = %e, "could not park for retry: requeued");
                    Settle::Requeue
                }
            };
            settle(&delivery, settled).await;
        }
        .instrument(span)
        .await
    }

    /// `WORKER_BATCH`, at most half of `WORKER_PREFETCH`: two batches can always be in flight, one in its
    /// transaction while the broker hands over the next.
    fn batch_limit(&self) -> usize {
        usize::from(self.config.worker_batch)
            .min(usize::from(self.config.worker_prefetch / 2).max(1))
    }

    async fn handle_batch(&self, deliveries: Vec<Delivery>, unsettled: Unsettled) {
        self.handle_together(deliveries, &unsettled).await
    }
}

impl Commands {
    /// Settles a batch of command deliveries: their jobs go through one transaction
    /// ([`handler::process_batch`]), then each is acknowledged after the commit. What the batch leaves to
    /// the single path — a job it cannot take, a second message of one job, a body that is not a command
    /// message, or every job when its transaction failed or panicked (rolled back, nothing written) — is
    /// handled as a delivery of its own ([`Handle::handle`]), with its retries, parking and dead-lettering.
    async fn handle_together(&self, deliveries: Vec<Delivery>, unsettled: &Unsettled) {
        let mut batch: Vec<(Uuid, Delivery)> = Vec::with_capacity(deliveries.len());
        let mut single = Vec::new();
        let mut seen = HashSet::new();
        for delivery in deliveries {
            match serde_json::from_slice::<CommandMessage>(&delivery.data) {
                Ok(message) if seen.insert(message.job_id) => {
                    batch.push((message.job_id, delivery))
                }
                _ => single.push(delivery),
            }
        }
        if batch.len() > 1 {
            let job_ids: Vec<Uuid> = batch.iter().map(|(job_id, _)| *job_id).collect();
            let span = tracing::info_span!("batch", size = job_ids.len());
            let processed = AssertUnwindSafe(handler::process_batch(
                &self.pool,
                &self.publisher,
                &self.storage,
                &job_ids,
            ))
            .catch_unwind()
            .instrument(span)
            .await;
            let results = match processed {
                Ok(Ok(results)) => results,
                Ok(Err(e)) => {
                    tracing::info!(size = job_ids.len(), error = %e,
                        "batch rolled back: its jobs run one by one");
                    vec![handler::Batched::Single; job_ids.len()]
                }
                Err(_) => {
                    tracing::warn!(
                        size = job_ids.len(),
                        "batch panicked and rolled back: its jobs run one by one"
                    );
                    vec![handler::Batched::Single; job_ids.len()]
                }
            };
            let mut done = Vec::with_capacity(batch.len());
            for ((_, delivery), result) in batch.into_iter().zip(results) {
                match result {
                    handler::Batched::Done(_) => done.push(delivery),
                    handler::Batched::Single => single.push(delivery),
                }
            }
            let acks = ack_together(&done, unsettled);
            let rest = futures_util::future::join_all(single.into_iter().map(|d| self.handle(d)));
            tokio::join!(acks, rest);
        } else {
            let all = batch
                .into_iter()
                .map(|(_, delivery)| delivery)
                .chain(single);
            futures_util::future::join_all(all.map(|d| self.handle(d))).await;
        }
    }

    async fn park_for_retry(
        &self,
        delivery: &Delivery,
        job_id: Uuid,
        attempt: u32,
        delay: Duration,
    ) -> Result<(), AmqpError> {
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt + 1));
        let (queue, expiration) = self.publisher.topology().retry_route(delay);
        self.publisher
            .publish(
                "",
                &queue,
                &delivery.data,
                job_id,
                headers,
                Some(expiration),
            )
            .await
    }
}

/// The attempt a command message is on: its `x-attempt` header, 1 without one.
pub(crate) fn attempt_of(delivery: &Delivery) -> u32 {
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

/// Acknowledges deliveries whose jobs committed together: with one `multiple` ack of the highest tag when
/// no other delivery of the channel below it is still being handled ([`Unsettled::covering`]) — one
/// settlement for the broker's quorum queue instead of one per message — else each on its own.
async fn ack_together(done: &[Delivery], unsettled: &Unsettled) {
    let tags: Vec<u64> = done.iter().map(|d| d.delivery_tag).collect();
    let last = unsettled
        .covering(&tags)
        .and_then(|last| done.iter().find(|d| d.delivery_tag == last));
    match last {
        Some(last) if done.len() > 1 => settle(last, Settle::AckThrough).await,
        _ => {
            futures_util::future::join_all(done.iter().map(|d| settle(d, Settle::Ack))).await;
        }
    }
}

/// How a delivery is settled.
pub enum Settle {
    /// Done with it.
    Ack,
    /// Done with it and with every delivery of the channel before it (`multiple`): only when none of those
    /// is still being handled ([`Unsettled::covering`]).
    AckThrough,
    /// Give it back to the queue (counts toward the delivery limit).
    Requeue,
    /// Send it to the dead-letter exchange.
    DeadLetter,
}

/// Settles `delivery`. A failure means the channel is gone: the broker redelivers the message.
pub async fn settle(delivery: &Delivery, how: Settle) {
    let settling = async {
        match how {
            Settle::Ack => delivery.ack(BasicAckOptions::default()).await,
            Settle::AckThrough => delivery.ack(BasicAckOptions { multiple: true }).await,
            Settle::Requeue | Settle::DeadLetter => {
                delivery
                    .nack(BasicNackOptions {
                        requeue: matches!(how, Settle::Requeue),
                        ..Default::default()
                    })
                    .await
            }
        }
    };
    // On a connection that died under it, an ack may never be answered: bounded, so the delivery's task ends
    // and the consumer can reconnect (the broker redelivers what was not settled).
    match tokio::time::timeout(SETTLE_TIMEOUT, settling).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not settle a delivery; the broker will redeliver it");
        }
        Err(_) => tracing::warn!("settling a delivery timed out; the broker will redeliver it"),
    }
}

#[cfg(test)]
mod tests {
    use super::Unsettled;

    #[test]
    fn a_multiple_ack_covers_only_deliveries_of_its_own() {
        let unsettled = Unsettled::default();
        for tag in 1..=16 {
            unsettled.received(tag);
        }
        // The first batch, with nothing below it: one ack of 8 settles 1..=8.
        assert_eq!(unsettled.covering(&[3, 1, 2, 4, 5, 6, 7, 8]), Some(8));
        // The second batch while the first is still being handled: each on its own.
        assert_eq!(unsettled.covering(&[9, 10, 11, 12, 13, 14, 15, 16]), None);
        // A batch that leaves one of its deliveries (5) to the single path.
        assert_eq!(unsettled.covering(&[1, 2, 3, 4, 6, 7, 8]), None);
        assert_eq!(unsettled.covering(&[1, 2, 3, 4]), Some(4));
        unsettled.ended(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            unsettled.covering(&[9, 10, 11, 12, 13, 14, 15, 16]),
            Some(16)
        );
        assert_eq!(unsettled.covering(&[]), None);
    }
}
