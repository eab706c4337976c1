//! RabbitMQ: the topology every process declares, and a publisher with confirms.
//!
//! With `QUEUE_PREFIX = p`:
//! - `p.commands` (direct exchange) → `p.commands` (durable quorum queue, `x-delivery-limit`, dead-lettered to
//!   `p.dead`): one message per job.
//! - `p.commands.retry` (durable queue, per-queue TTL `RETRY_DELAY_MS`, dead-lettered back to `p.commands`):
//!   where the worker parks a command that hit a transient fault.
//! - `p.dead` (direct exchange) → `p.commands.dead`: poison messages, for operators.
//! - `p.events` (topic exchange): integration events for downstream consumers.

use lapin::{
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
        QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::outbox::{self, OutboxMessage};

/// A broker fault. Always transient from the service's point of view: retried or relayed later.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The client library failed (connection, channel, protocol).
    #[error("amqp: {0}")]
    Lapin(#[from] lapin::Error),
    /// The broker refused a publish (nack).
    #[error("the broker did not confirm the message")]
    NotConfirmed,
    /// The broker ended a consumer (its queue was deleted, the connection closed).
    #[error("the broker cancelled the consumer")]
    ConsumerCancelled,
}

/// The names of the exchanges and queues for one `QUEUE_PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

/// Redeliveries (crashes, requeues) a quorum queue allows before dead-lettering a message.
pub const DELIVERY_LIMIT: i32 = 10;

impl Topology {
    /// The topology of `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The command exchange and queue name.
    pub fn commands(&self) -> String {
        format!("{}.commands", self.prefix)
    }

    /// The delayed-retry queue.
    pub fn retry_queue(&self) -> String {
        format!("{}.commands.retry", self.prefix)
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

    /// The broker exchange of an outbox row's logical exchange.
    pub fn exchange_for(&self, logical: &str) -> String {
        format!("{}.{logical}", self.prefix)
    }

    /// Declares everything (idempotent).
    pub async fn declare(&self, channel: &Channel, retry_delay_ms: u64) -> Result<(), AmqpError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let queue = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for (name, kind) in [
            (self.commands(), ExchangeKind::Direct),
            (self.dead_exchange(), ExchangeKind::Direct),
            (self.events(), ExchangeKind::Topic),
        ] {
            channel
                .exchange_declare(name.as_str().into(), kind, durable, FieldTable::default())
                .await?;
        }

        let mut dead_args = FieldTable::default();
        dead_args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        channel
            .queue_declare(self.dead_queue().as_str().into(), queue, dead_args)
            .await?;
        channel
            .queue_bind(
                self.dead_queue().as_str().into(),
                self.dead_exchange().as_str().into(),
                outbox::COMMAND_ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let mut command_args = FieldTable::default();
        command_args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        command_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(DELIVERY_LIMIT),
        );
        command_args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dead_exchange().into()),
        );
        command_args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(outbox::COMMAND_ROUTING_KEY.into()),
        );
        channel
            .queue_declare(self.commands().as_str().into(), queue, command_args)
            .await?;
        channel
            .queue_bind(
                self.commands().as_str().into(),
                self.commands().as_str().into(),
                outbox::COMMAND_ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let mut retry_args = FieldTable::default();
        let ttl = i64::try_from(retry_delay_ms).unwrap_or(i64::MAX);
        retry_args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        retry_args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.commands().into()),
        );
        retry_args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(outbox::COMMAND_ROUTING_KEY.into()),
        );
        channel
            .queue_declare(self.retry_queue().as_str().into(), queue, retry_args)
            .await?;
        Ok(())
    }

    /// Deletes everything this topology declared (tests clean up after themselves with it).
    pub async fn delete(&self, channel: &Channel) -> Result<(), AmqpError> {
        for queue in [self.commands(), self.retry_queue(), self.dead_queue()] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in [self.commands(), self.dead_exchange(), self.events()] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

/// Opens a connection on the tokio runtime.
pub async fn connect(amqp_url: &str) -> Result<Connection, AmqpError> {
    Ok(Connection::connect(amqp_url, ConnectionProperties::default()).await?)
}

/// Publishes with publisher confirms over one lazily (re)opened channel. Cheap to share.
pub struct Publisher {
    amqp_url: String,
    topology: Topology,
    retry_delay_ms: u64,
    channel: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    /// A publisher that connects on first use.
    pub fn new(amqp_url: &str, topology: Topology, retry_delay_ms: u64) -> Self {
        Self {
            amqp_url: amqp_url.to_owned(),
            topology,
            retry_delay_ms,
            channel: Mutex::new(None),
        }
    }

    /// The topology it publishes into.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn channel(&self) -> Result<Channel, AmqpError> {
        let mut guard = self.channel.lock().await;
        if let Some((connection, channel)) = guard.as_ref() {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        let connection = connect(&self.amqp_url).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        self.topology.declare(&channel, self.retry_delay_ms).await?;
        *guard = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// Publishes one persistent JSON message and waits for the broker's confirm.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        message_id: Uuid,
        headers: FieldTable,
    ) -> Result<(), AmqpError> {
        let result = self
            .try_publish(exchange, routing_key, body, message_id, headers)
            .await;
        if result.is_err() {
            // Drop the channel: the next publish reconnects.
            *self.channel.lock().await = None;
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
    ) -> Result<(), AmqpError> {
        let channel = self.channel().await?;
        let properties = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(message_id.to_string()))
            .with_headers(headers);
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
            Confirmation::Nack(_) => Err(AmqpError::NotConfirmed),
        }
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
        )
        .await
    }

    /// Publishes rows that were just committed and marks them published. A failure is logged and left to
    /// the worker's outbox relay, which publishes whatever stays unmarked.
    pub async fn publish_committed(
        &self,
        pool: &deadpool_postgres::Pool,
        messages: &[OutboxMessage],
    ) {
        for message in messages {
            if let Err(e) = self.publish_outbox(message).await {
                tracing::warn!(error = %e, outbox_id = message.id, "publish failed; the outbox relay will retry");
                continue;
            }
            let marked = match pool.get().await {
                Ok(client) => outbox::mark_published(&client, message.id).await,
                Err(e) => Err(e.into()),
            };
            if let Err(e) = marked {
                tracing::warn!(error = %e, outbox_id = message.id, "published but not marked; the relay will publish it again");
            }
        }
    }
}
