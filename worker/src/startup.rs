//! Building and running the worker: the command and dead-letter consumers, the outbox relay and the
//! sweeper, until a shutdown signal.

use std::{future::Future, sync::Arc};

use ehealth_infra::{amqp::Publisher, db, storage::Storage, Config};
use tokio::sync::watch;

use crate::{
    consumer::{self, Commands},
    dead_letters::{self, DeadLetters},
    fault, relay, sweeper,
};

/// A built worker.
pub struct Worker {
    commands: Commands,
}

impl Worker {
    /// Builds the pool and the publisher. Connects lazily: the database and broker may still be starting.
    /// The pool has room for a full prefetch of jobs plus the relay, the sweeper and the dead-letter
    /// consumer (see `Config::worker_pool_size`), so the worker can never starve itself.
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let pool_size = config.worker_pool_size();
        if pool_size > config.db_pool_size {
            tracing::info!(
                db_pool_size = config.db_pool_size,
                pool_size,
                prefetch = config.worker_prefetch,
                "worker pool raised to WORKER_PREFETCH + 3 connections"
            );
        }
        fault::warn_if_ignored();
        let pool = db::pool(&config.database_url, pool_size)?;
        let publisher = Arc::new(Publisher::new(&config));
        Ok(Self {
            commands: Commands {
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
        let Commands {
            pool,
            publisher,
            config,
            ..
        } = self.commands.clone();
        let topology = publisher.topology().clone();
        let tasks = vec![
            tokio::spawn(relay::run(
                pool.clone(),
                publisher.clone(),
                self.commands.storage.clone(),
                config.clone(),
                stopped.clone(),
            )),
            tokio::spawn(sweeper::run(
                pool.clone(),
                publisher,
                config.clone(),
                stopped.clone(),
            )),
            tokio::spawn(consumer::consume(
                config.clone(),
                topology.dead_queue(),
                dead_letters::PREFETCH,
                DeadLetters {
                    pool,
                    shutdown: stopped.clone(),
                },
                stopped.clone(),
            )),
            tokio::spawn(consumer::consume(
                config.clone(),
                topology.commands(),
                config.worker_prefetch,
                self.commands,
                stopped,
            )),
        ];
        shutdown.await;
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        tracing::info!("worker stopped");
    }
}
