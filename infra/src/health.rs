//! Readiness: whether the process can do its work now — PostgreSQL answers `SELECT 1`, the broker answers on
//! a connection, and the object store answers `HeadBucket` for the files bucket. The checks run
//! concurrently, each within [`CHECK_TIMEOUT`], so a readiness probe answers within about that long whatever
//! is down. The api and the worker render a [`Readiness`] as HTTP (`/health/ready`); liveness needs no check.
//!
//! [`BrokerProbe`] keeps one broker connection for these checks and for the queue-depth gauges
//! (`metrics::refresh_queues`), so probes and scrapes do not open a connection each.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use lapin::{
    options::{ExchangeDeclareOptions, QueueDeclareOptions},
    types::FieldTable,
    Channel, Connection, ExchangeKind,
};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use crate::{
    amqp::{self, AmqpError},
    storage::Storage,
};

/// The longest one readiness check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A broker exchange every RabbitMQ has: declaring it passively is a round trip that proves the broker
/// answers, whatever topology is declared yet.
const PROBE_EXCHANGE: &str = "amq.direct";

/// One broker connection and channel for health checks and queue gauges, opened on first use and again
/// after it broke. Every call is bounded by the limit it is given, including the wait for the connection.
pub struct BrokerProbe {
    amqp_url: String,
    open: Mutex<Option<(Connection, Option<Channel>)>>,
}

/// What a passive declare tells about a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    /// Messages ready for delivery (not those delivered and awaiting an acknowledgement).
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

impl BrokerProbe {
    /// A probe of the broker at `amqp_url`; connects on first use.
    pub fn new(amqp_url: &str) -> Self {
        Self {
            amqp_url: amqp_url.to_owned(),
            open: Mutex::new(None),
        }
    }

    /// Proves the broker answers: a passive declare of a built-in exchange, within `limit`.
    pub async fn check(&self, limit: Duration) -> Result<(), AmqpError> {
        amqp::bounded(limit, async {
            let mut open = self.open.lock().await;
            let channel = self.channel(&mut open, limit).await?;
            let passive = ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let declared = channel
                .exchange_declare(
                    PROBE_EXCHANGE.into(),
                    ExchangeKind::Direct,
                    passive,
                    FieldTable::default(),
                )
                .await;
            if declared.is_err() {
                forget_channel(&mut open);
            }
            Ok(declared?)
        })
        .await
    }

    /// The state of each of `queues` that exists, by passive declares, within `limit` in all. A queue that
    /// does not exist (its declare closes the channel) is left out and the next one gets a new channel.
    pub async fn queue_states(
        &self,
        queues: &[String],
        limit: Duration,
    ) -> Result<Vec<(String, QueueState)>, AmqpError> {
        amqp::bounded(limit, async {
            let mut open = self.open.lock().await;
            let mut states = Vec::with_capacity(queues.len());
            for queue in queues {
                let channel = self.channel(&mut open, limit).await?;
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                };
                match channel
                    .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                    .await
                {
                    Ok(declared) => states.push((
                        queue.clone(),
                        QueueState {
                            messages: declared.message_count(),
                            consumers: declared.consumer_count(),
                        },
                    )),
                    // The queue is missing (the channel is closed with 404) or the connection broke; the next
                    // `channel` call tells which.
                    Err(_) => forget_channel(&mut open),
                }
            }
            Ok(states)
        })
        .await
    }

    /// Closes the connection, if one is open (at shutdown), within [`CHECK_TIMEOUT`].
    pub async fn close(&self) {
        let taken = self.open.lock().await.take();
        if let Some((connection, _)) = taken {
            let _ = amqp::bounded(CHECK_TIMEOUT, async {
                Ok(connection.close(200, "done".into()).await?)
            })
            .await;
        }
    }

    /// The open channel, opening the connection and channel as needed.
    async fn channel(
        &self,
        open: &mut Option<(Connection, Option<Channel>)>,
        limit: Duration,
    ) -> Result<Channel, AmqpError> {
        if open
            .as_ref()
            .is_some_and(|(connection, _)| !connection.status().connected())
        {
            *open = None;
        }
        if open.is_none() {
            *open = Some((amqp::connect_within(&self.amqp_url, limit).await?, None));
        }
        let Some((connection, channel)) = open.as_mut() else {
            return Err(AmqpError::ConnectionLost);
        };
        if let Some(channel) = channel.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let fresh = connection.create_channel().await?;
        *channel = Some(fresh.clone());
        Ok(fresh)
    }
}

fn forget_channel(open: &mut Option<(Connection, Option<Channel>)>) {
    if let Some((_, channel)) = open.as_mut() {
        *channel = None;
    }
}

/// The outcome of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `postgres`, `rabbitmq` or `s3`.
    pub name: &'static str,
    /// `None` when the dependency answered; otherwise `timeout` or `error` (the details are logged, never
    /// sent: they may name hosts and accounts).
    pub failure: Option<&'static str>,
    /// How long the check took.
    pub elapsed: Duration,
}

/// The outcome of every readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// One per dependency, in a fixed order.
    pub checks: Vec<Check>,
}

impl Readiness {
    /// True when every dependency answered.
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|c| c.failure.is_none())
    }

    /// The names of the dependencies that did not answer.
    pub fn failing(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.failure.is_some())
            .map(|c| c.name)
            .collect()
    }

    /// `not ready: rabbitmq, s3` — the message of a 503.
    pub fn message(&self) -> String {
        format!("not ready: {}", self.failing().join(", "))
    }

    /// The eHealth `error` object of the 503 answer: `service_unavailable`, naming what failed.
    pub fn error_json(&self) -> Value {
        json!({ "type": "service_unavailable", "message": self.message() })
    }

    /// `{"postgres":{"status":"up","duration_ms":2},"rabbitmq":{"status":"down","reason":"timeout",…},…}`.
    pub fn checks_json(&self) -> Value {
        let checks: Map<String, Value> = self
            .checks
            .iter()
            .map(|c| {
                let mut check = json!({
                    "status": if c.failure.is_none() { "up" } else { "down" },
                    "duration_ms": c.elapsed.as_millis() as u64,
                });
                if let (Some(reason), Some(object)) = (c.failure, check.as_object_mut()) {
                    object.insert("reason".to_owned(), json!(reason));
                }
                (c.name.to_owned(), check)
            })
            .collect();
        Value::Object(checks)
    }
}

/// Checks PostgreSQL, the broker and the object store concurrently, each within [`CHECK_TIMEOUT`].
pub async fn readiness(pool: &Pool, broker: &Arc<BrokerProbe>, storage: &Storage) -> Readiness {
    let postgres = timed("postgres", async {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        client
            .query_one("SELECT 1", &[])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let rabbitmq = timed("rabbitmq", async {
        broker.check(CHECK_TIMEOUT).await.map_err(|e| e.to_string())
    });
    let s3 = timed("s3", async {
        storage
            .head_bucket(&storage.files_bucket)
            .await
            .map_err(|e| e.to_string())
    });
    let (postgres, rabbitmq, s3) = tokio::join!(postgres, rabbitmq, s3);
    Readiness {
        checks: vec![postgres, rabbitmq, s3],
    }
}

async fn timed(
    name: &'static str,
    check: impl std::future::Future<Output = Result<(), String>>,
) -> Check {
    let started = Instant::now();
    let failure = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            tracing::warn!(check = name, error = %e, "readiness check failed");
            Some("error")
        }
        Err(_) => {
            tracing::warn!(
                check = name,
                timeout_ms = CHECK_TIMEOUT.as_millis() as u64,
                "readiness check timed out"
            );
            Some("timeout")
        }
    };
    Check {
        name,
        failure,
        elapsed: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_what_failed_and_never_sends_details() {
        let readiness = Readiness {
            checks: vec![
                Check {
                    name: "postgres",
                    failure: None,
                    elapsed: Duration::from_millis(2),
                },
                Check {
                    name: "rabbitmq",
                    failure: Some("error"),
                    elapsed: Duration::from_millis(1),
                },
            ],
        };
        assert!(!readiness.is_ready());
        assert_eq!(readiness.message(), "not ready: rabbitmq");
        assert_eq!(
            readiness.checks_json(),
            json!({
                "postgres": {"status": "up", "duration_ms": 2},
                "rabbitmq": {"status": "down", "duration_ms": 1, "reason": "error"},
            })
        );
    }
}
