//! RabbitMQ: the topology every process declares, and a publisher with confirms, `mandatory` and time-outs.
//!
//! With `QUEUE_PREFIX = p`:
//! - `p.commands` (direct exchange) → `p.commands` (durable quorum queue, `x-delivery-limit`, dead-lettered to
//!   `p.dead`): one message per job.
//! - `p.commands.retry.<ms>` (durable quorum queues, one per retry delay: `RETRY_DELAY_MS` doubling up to
//!   `RETRY_MAX_DELAY_MS`): where the worker parks a command that hit a transient fault. Each message carries
//!   its own jittered expiration (at most 20 % over the queue's delay, so the head of a queue never holds
//!   back a message much); expired messages are dead-lettered back to `p.commands` **at least once**
//!   (`x-dead-letter-strategy`, which needs `x-overflow = reject-publish`).
//! - `p.dead` (direct exchange) → `p.commands.dead` (quorum): exhausted and poison messages. The worker's
//!   dead-letter consumer ends each one's job as `failed_with_error`.
//! - `p.events` (topic exchange, alternate exchange `p.events.unrouted`): integration events for downstream
//!   consumers. An event no queue is bound for lands in `p.events.unrouted` (a durable quorum queue) instead
//!   of being dropped, so a sender that binds later can still be given it.
//!
//! Every publish is `mandatory` and confirmed: a command no queue takes is an error, never a silent success.
//! Every broker call is bounded by `AMQP_TIMEOUT_MS`.

use std::{
    sync::{Arc, Mutex as StdMutex, OnceLock, Weak},
    time::{Duration, Instant},
};

use lapin::{
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
        QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use rand::Rng;
use tokio::sync::{mpsc, Mutex};
use uuid::Uuid;

use crate::{
    outbox::{self, OutboxMessage},
    Config,
};

/// A broker fault. Always transient from the service's point of view: retried or relayed later.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The client library failed (connection, channel, protocol).
    #[error("amqp: {0}")]
    Lapin(#[from] lapin::Error),
    /// The broker refused a publish (nack).
    #[error("the broker did not confirm the message")]
    NotConfirmed,
    /// No queue took a mandatory message: the broker returned it.
    #[error("the broker returned the message: no queue is bound for {0}")]
    Unroutable(String),
    /// The broker ended a consumer (its queue was deleted, the connection closed).
    #[error("the broker cancelled the consumer")]
    ConsumerCancelled,
    /// The connection or channel was lost (noticed by the watchdog or a heartbeat).
    #[error("the broker connection was lost")]
    ConnectionLost,
    /// The broker blocked publishing (a resource alarm).
    #[error("the broker blocks publishing (resource alarm)")]
    Blocked,
    /// A broker call took longer than `AMQP_TIMEOUT_MS`.
    #[error("the broker did not answer within {0:?}")]
    TimedOut(Duration),
}

/// Redeliveries (crashes, requeues) a quorum queue allows before dead-lettering a message.
pub const DELIVERY_LIMIT: i32 = 10;
/// The heartbeat asked of the broker, in seconds: a dead connection is noticed within two of them.
pub const HEARTBEAT_SECONDS: u16 = 10;
/// The most a retry delay is stretched by jitter, as a fraction of the delay.
pub const RETRY_JITTER: f64 = 0.2;

/// The names of the exchanges and queues for one `QUEUE_PREFIX`, and the retry delays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    retry_delays: Vec<Duration>,
}

impl Topology {
    /// The topology of `config`'s `QUEUE_PREFIX` and retry settings.
    pub fn new(config: &Config) -> Self {
        let mut retry_delays: Vec<Duration> = (1..config.worker_max_attempts.max(2))
            .map(|attempt| config.retry_delay(attempt))
            .collect();
        retry_delays.dedup();
        Self {
            prefix: config.queue_prefix.clone(),
            retry_delays,
        }
    }

    /// The command exchange and queue name.
    pub fn commands(&self) -> String {
        format!("{}.commands", self.prefix)
    }

    /// The delayed-retry queue of `delay`.
    fn retry_queue_of(&self, delay: Duration) -> String {
        format!("{}.commands.retry.{}", self.prefix, delay.as_millis())
    }

    /// Every delayed-retry queue.
    pub fn retry_queues(&self) -> Vec<String> {
        self.retry_delays
            .iter()
            .map(|d| self.retry_queue_of(*d))
            .collect()
    }

    /// The retry queue a command parks in before attempt `attempt` + 1, and the jittered expiration of its
    /// message there.
    pub fn retry_route(&self, delay: Duration) -> (String, Duration) {
        let queue_delay = self
            .retry_delays
            .iter()
            .copied()
            .filter(|d| *d <= delay)
            .max()
            .or_else(|| self.retry_delays.first().copied())
            .unwrap_or(delay);
        let jitter = rand::thread_rng().gen_range(0.0..RETRY_JITTER);
        (
            self.retry_queue_of(queue_delay),
            queue_delay.mul_f64(1.0 + jitter),
        )
    }

    /// The dead-letter exchange.
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The dead-letter queue.
    pub fn dead_queue(&self) -> String {
        format!("{}.commands.dead", self.prefix)
    }

    /// The integration-event exchange.
    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The alternate exchange and queue of integration events no queue was bound for.
    pub fn unrouted_events(&self) -> String {
        format!("{}.events.unrouted", self.prefix)
    }

    /// The broker exchange of an outbox row's logical exchange.
    pub fn exchange_for(&self, logical: &str) -> String {
        format!("{}.{logical}", self.prefix)
    }

    /// Declares everything (idempotent).
    pub async fn declare(&self, channel: &Channel) -> Result<(), AmqpError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut events_args = FieldTable::default();
        events_args.insert(
            "alternate-exchange".into(),
            AMQPValue::LongString(self.unrouted_events().into()),
        );
        for (name, kind, args) in [
            (self.commands(), ExchangeKind::Direct, FieldTable::default()),
            (
                self.dead_exchange(),
                ExchangeKind::Direct,
                FieldTable::default(),
            ),
            (
                self.unrouted_events(),
                ExchangeKind::Fanout,
                FieldTable::default(),
            ),
            (self.events(), ExchangeKind::Topic, events_args),
        ] {
            channel
                .exchange_declare(name.as_str().into(), kind, durable, args)
                .await?;
        }

        self.declare_queue(channel, &self.dead_queue(), quorum())
            .await?;
        self.bind(
            channel,
            &self.dead_queue(),
            &self.dead_exchange(),
            outbox::COMMAND_ROUTING_KEY,
        )
        .await?;
        self.declare_queue(channel, &self.unrouted_events(), quorum())
            .await?;
        self.bind(
            channel,
            &self.unrouted_events(),
            &self.unrouted_events(),
            "",
        )
        .await?;

        let mut command_args = quorum();
        command_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(DELIVERY_LIMIT),
        );
        dead_letter_to(
            &mut command_args,
            &self.dead_exchange(),
            outbox::COMMAND_ROUTING_KEY,
        );
        self.declare_queue(channel, &self.commands(), command_args)
            .await?;
        self.bind(
            channel,
            &self.commands(),
            &self.commands(),
            outbox::COMMAND_ROUTING_KEY,
        )
        .await?;

        for queue in self.retry_queues() {
            let mut retry_args = quorum();
            dead_letter_to(
                &mut retry_args,
                &self.commands(),
                outbox::COMMAND_ROUTING_KEY,
            );
            retry_args.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            retry_args.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
            self.declare_queue(channel, &queue, retry_args).await?;
        }
        Ok(())
    }

    async fn declare_queue(
        &self,
        channel: &Channel,
        name: &str,
        args: FieldTable,
    ) -> Result<(), AmqpError> {
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel.queue_declare(name.into(), options, args).await?;
        Ok(())
    }

    async fn bind(
        &self,
        channel: &Channel,
        queue: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), AmqpError> {
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    /// Deletes everything this topology declared (tests clean up after themselves with it).
    pub async fn delete(&self, channel: &Channel) -> Result<(), AmqpError> {
        let mut queues = vec![self.commands(), self.dead_queue(), self.unrouted_events()];
        queues.extend(self.retry_queues());
        for queue in queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in [
            self.commands(),
            self.dead_exchange(),
            self.events(),
            self.unrouted_events(),
        ] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

fn dead_letter_to(args: &mut FieldTable, exchange: &str, routing_key: &str) {
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(exchange.into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(routing_key.into()),
    );
}

/// Bounds a broker call by `limit`.
pub async fn bounded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, AmqpError>>,
) -> Result<T, AmqpError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(AmqpError::TimedOut(limit)))
}

/// Opens a connection on the tokio runtime with a [`HEARTBEAT_SECONDS`] heartbeat (unless the URL asks for
/// another), within `limit`.
pub async fn connect_within(amqp_url: &str, limit: Duration) -> Result<Connection, AmqpError> {
    let url = if amqp_url.contains("heartbeat=") {
        amqp_url.to_owned()
    } else {
        let separator = if amqp_url.contains('?') { '&' } else { '?' };
        format!("{amqp_url}{separator}heartbeat={HEARTBEAT_SECONDS}")
    };
    bounded(limit, async {
        Ok(Connection::connect(&url, ConnectionProperties::default()).await?)
    })
    .await
}

/// Opens a connection (see [`connect_within`]) within 10 seconds.
pub async fn connect(amqp_url: &str) -> Result<Connection, AmqpError> {
    connect_within(amqp_url, Duration::from_secs(10)).await
}

/// Publishes with publisher confirms over one lazily (re)opened channel. Cheap to share.
///
/// No call waits longer than `AMQP_TIMEOUT_MS` (the channel's mutex is only held inside that bound), and
/// after a failure the publisher stands back for a moment: [`Publisher::publish_committed`] then leaves the
/// rows to the outbox relay at once instead of making every request wait for a broker that is down.
pub struct Publisher {
    amqp_url: String,
    topology: Topology,
    timeout: Duration,
    channel: Mutex<Option<(Connection, Channel)>>,
    standing_back_until: StdMutex<Option<Instant>>,
    marker: OnceLock<outbox::PublishedMarker>,
    background: OnceLock<mpsc::Sender<OutboxMessage>>,
}

/// How many committed messages may wait for [`Publisher::publish_in_background`]'s task; past that (a slow or
/// unreachable broker) new ones are left to the outbox relay, so an outage piles up nothing in memory.
pub const BACKGROUND_QUEUE: usize = 4096;

/// The most messages the background task publishes in one pipelined round (one confirm wait).
const BACKGROUND_BATCH: usize = 256;

/// How long the publisher stands back after a failure.
pub const STAND_BACK: Duration = Duration::from_secs(1);

impl Publisher {
    /// A publisher that connects on first use.
    pub fn new(config: &Config) -> Self {
        Self {
            amqp_url: config.amqp_url.clone(),
            topology: Topology::new(config),
            timeout: Duration::from_millis(config.amqp_timeout_ms),
            channel: Mutex::new(None),
            standing_back_until: StdMutex::new(None),
            marker: OnceLock::new(),
            background: OnceLock::new(),
        }
    }

    /// The topology it publishes into.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn channel(&self) -> Result<Channel, AmqpError> {
        let mut guard = self.channel.lock().await;
        if let Some((connection, channel)) = guard.as_ref() {
            if connection.status().blocked() {
                return Err(AmqpError::Blocked);
            }
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        *guard = None;
        let connection = connect_within(&self.amqp_url, self.timeout).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        self.topology.declare(&channel).await?;
        *guard = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// Publishes one persistent, mandatory JSON message and waits for the broker's confirm, within
    /// `AMQP_TIMEOUT_MS`. `expiration` sets the message's TTL (retry queues).
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        message_id: Uuid,
        headers: FieldTable,
        expiration: Option<Duration>,
    ) -> Result<(), AmqpError> {
        let result = bounded(
            self.timeout,
            self.try_publish(exchange, routing_key, body, message_id, headers, expiration),
        )
        .await;
        if let Err(e) = &result {
            if !matches!(e, AmqpError::Unroutable(_)) {
                self.stand_back();
                // Drop the channel so the next publish reconnects; if another publish holds it, that one
                // is bounded and finds out by itself.
                if let Ok(mut guard) = self.channel.try_lock() {
                    *guard = None;
                }
            }
        }
        result
    }

    async fn try_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        message_id: Uuid,
        headers: FieldTable,
        expiration: Option<Duration>,
    ) -> Result<(), AmqpError> {
        let channel = self.channel().await?;
        let mut properties = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(message_id.to_string()))
            .with_headers(headers);
        if let Some(expiration) = expiration {
            properties =
                properties.with_expiration(ShortString::from(expiration.as_millis().to_string()));
        }
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) => Err(AmqpError::Unroutable(format!(
                "{exchange} with routing key {routing_key}"
            ))),
            Confirmation::Nack(_) => Err(AmqpError::NotConfirmed),
        }
    }

    fn stand_back(&self) {
        if let Ok(mut until) = self.standing_back_until.lock() {
            *until = Some(Instant::now() + STAND_BACK);
        }
    }

    /// True while the publisher stands back after a failure.
    pub fn is_standing_back(&self) -> bool {
        self.standing_back_until
            .lock()
            .map(|until| until.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false)
    }

    /// Publishes an outbox row to its exchange.
    pub async fn publish_outbox(&self, message: &OutboxMessage) -> Result<(), AmqpError> {
        let body = serde_json::to_vec(&message.payload).unwrap_or_default();
        let exchange = self.topology.exchange_for(&message.exchange);
        self.publish(
            &exchange,
            &message.routing_key,
            &body,
            message.message_id,
            FieldTable::default(),
            None,
        )
        .await
    }

    /// Publishes rows that were just committed (pipelined: every message sent, then every confirm awaited)
    /// and hands the published ones to the process's
    /// [`outbox::PublishedMarker`] (started with `pool` on first use), which marks them in batches without
    /// the caller waiting. Nothing is tried while the publisher stands back after a failure; whatever stays
    /// unmarked is published by the worker's outbox relay. Takes no pooled connection.
    pub async fn publish_committed(
        &self,
        pool: &deadpool_postgres::Pool,
        messages: &[OutboxMessage],
    ) {
        if messages.is_empty() {
            return;
        }
        if self.is_standing_back() {
            tracing::info!(
                count = messages.len(),
                "broker recently failed: left to the outbox relay"
            );
            return;
        }
        let published = self.publish_outbox_pipelined(messages).await;
        if published.is_empty() {
            return;
        }
        self.marker
            .get_or_init(|| outbox::PublishedMarker::spawn(pool.clone()))
            .mark(&published);
    }

    /// Hands rows that were just committed to one background task of this publisher (started on first use)
    /// and returns at once: the caller (a request) does not wait for the broker's confirm. The task publishes
    /// what queued up meanwhile in one pipelined round — every message sent, then every confirm awaited,
    /// within `AMQP_TIMEOUT_MS` — and hands the confirmed ones to the [`outbox::PublishedMarker`]. The queue is
    /// bounded ([`BACKGROUND_QUEUE`]): when it is full, or while the publisher stands back after a failure,
    /// the rows are left to the worker's outbox relay, which publishes every row that stays unmarked.
    pub fn publish_in_background(
        self: &Arc<Self>,
        pool: &deadpool_postgres::Pool,
        messages: &[OutboxMessage],
    ) {
        if messages.is_empty() {
            return;
        }
        if self.is_standing_back() {
            tracing::info!(
                count = messages.len(),
                "broker recently failed: left to the outbox relay"
            );
            return;
        }
        let sender = self.background.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(BACKGROUND_QUEUE);
            tokio::spawn(background_publisher(
                Arc::downgrade(self),
                pool.clone(),
                receiver,
            ));
            sender
        });
        for message in messages {
            if let Err(e) = sender.try_send(message.clone()) {
                let full = matches!(e, mpsc::error::TrySendError::Full(_));
                tracing::warn!(
                    outbox_id = message.id,
                    full,
                    "publish queue unavailable: left to the outbox relay"
                );
            }
        }
    }

    /// Publishes `messages` pipelined on the channel (all sent, then every confirm awaited), within
    /// `AMQP_TIMEOUT_MS` for the whole round; returns the ids the broker confirmed. A failure other than a
    /// returned (unroutable) message makes the publisher stand back and reconnect, as [`Publisher::publish`].
    pub async fn publish_outbox_pipelined(&self, messages: &[OutboxMessage]) -> Vec<i64> {
        let round = bounded(self.timeout, async {
            let channel = self.channel().await?;
            let mut confirms = Vec::with_capacity(messages.len());
            for message in messages {
                let body = serde_json::to_vec(&message.payload).unwrap_or_default();
                let exchange = self.topology.exchange_for(&message.exchange);
                let properties = BasicProperties::default()
                    .with_content_type(ShortString::from("application/json"))
                    .with_delivery_mode(2)
                    .with_message_id(ShortString::from(message.message_id.to_string()))
                    .with_headers(FieldTable::default());
                let confirm = channel
                    .basic_publish(
                        exchange.as_str().into(),
                        message.routing_key.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &body,
                        properties,
                    )
                    .await?;
                confirms.push((message.id, confirm));
            }
            let mut confirmed = Vec::with_capacity(confirms.len());
            for (id, confirm) in confirms {
                match confirm.await? {
                    Confirmation::Ack(None) | Confirmation::NotRequested => confirmed.push(id),
                    Confirmation::Ack(Some(_)) => {
                        tracing::warn!(outbox_id = id, "the broker returned the message: no queue is bound; the outbox relay will retry");
                    }
                    Confirmation::Nack(_) => {
                        tracing::warn!(outbox_id = id, "the broker did not confirm the message; the outbox relay will retry");
                    }
                }
            }
            Ok::<_, AmqpError>(confirmed)
        })
        .await;
        match round {
            Ok(confirmed) => confirmed,
            Err(e) => {
                tracing::warn!(error = %e, count = messages.len(), "publish failed; the outbox relay will retry");
                self.stand_back();
                if let Ok(mut guard) = self.channel.try_lock() {
                    *guard = None;
                }
                Vec::new()
            }
        }
    }
}

/// The task behind [`Publisher::publish_in_background`]: publishes what queued up, round after round, until
/// the publisher is dropped. While the publisher stands back it drops what it receives (the relay has it).
async fn background_publisher(
    publisher: Weak<Publisher>,
    pool: deadpool_postgres::Pool,
    mut receiver: mpsc::Receiver<OutboxMessage>,
) {
    let mut batch = Vec::with_capacity(BACKGROUND_BATCH);
    while receiver.recv_many(&mut batch, BACKGROUND_BATCH).await > 0 {
        let Some(publisher) = publisher.upgrade() else {
            return;
        };
        if publisher.is_standing_back() {
            tracing::info!(
                count = batch.len(),
                "broker recently failed: left to the outbox relay"
            );
        } else {
            let published = publisher.publish_outbox_pipelined(&batch).await;
            if !published.is_empty() {
                publisher
                    .marker
                    .get_or_init(|| outbox::PublishedMarker::spawn(pool.clone()))
                    .mark(&published);
            }
        }
        batch.clear();
    }
}
