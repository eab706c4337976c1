//! Building and running the worker: the consumer and the outbox relay, until a shutdown signal.

use std::{future::Future, sync::Arc};

use ehealth_infra::{
    amqp::{Publisher, Topology},
    db,
    storage::Storage,
    Config,
};
use tokio::sync::watch;

use crate::{consumer::Consumer, relay};

/// A built worker.
pub struct Worker {
    consumer: Consumer,
}

impl Worker {
    /// Builds the pool and the publisher. Connects lazily: the database and broker may still be starting.
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let pool = db::pool(&config.database_url, config.db_pool_size)?;
        let publisher = Arc::new(Publisher::new(
            &config.amqp_url,
            Topology::new(&config.queue_prefix),
            config.retry_delay_ms,
        ));
        Ok(Self {
            consumer: Consumer {
                pool,
                publisher,
                storage: Storage::new(&config),
                config: Arc::new(config),
            },
        })
    }

    /// Runs until `shutdown` resolves: stops consuming, finishes in-flight jobs, then returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop, stopped) = watch::channel(false);
        let relay = tokio::spawn(relay::run(
            self.consumer.pool.clone(),
            self.consumer.publisher.clone(),
            self.consumer.storage.clone(),
            (*self.consumer.config).clone(),
            stopped.clone(),
        ));
        let consumer = tokio::spawn(self.consumer.run(stopped));
        shutdown.await;
        let _ = stop.send(true);
        let _ = consumer.await;
        let _ = relay.await;
        tracing::info!("worker stopped");
    }
}
