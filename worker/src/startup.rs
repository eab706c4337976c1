//! Building and running the worker: the command and dead-letter consumers, the outbox relay and the
//! sweeper, until a shutdown signal.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use ehealth_infra::{amqp::Publisher, db, health::BrokerProbe, storage::Storage, Config};
use tokio::sync::watch;

use crate::{
    consumer::{self, Commands},
    dead_letters::{self, DeadLetters},
    fault, http, relay, scheduler, sweeper,
};

/// A built worker.
pub struct Worker {
    commands: Commands,
    http: std::net::TcpListener,
    http_addr: SocketAddr,
}

impl Worker {
    /// Builds the pool and the publisher and binds `WORKER_HTTP_ADDR` (port 0: see [`Worker::http_addr`]).
    /// Connects lazily: the database and broker may still be starting.
    /// The pool has room for a full prefetch of jobs plus the relay, the sweeper and the dead-letter
    /// consumer (see `Config::worker_pool_size`), so the worker can never starve itself.
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let pool_size = config.worker_pool_size();
        if pool_size > config.db_pool_size {
            tracing::info!(
                db_pool_size = config.db_pool_size,
                pool_size,
                prefetch = config.worker_prefetch,
                "worker pool raised to WORKER_PREFETCH + 4 connections"
            );
        }
        fault::warn_if_ignored();
        let pool = db::pool(&config.database_url, pool_size)?;
        let publisher = Arc::new(Publisher::new(&config));
        // The process's Prometheus registry, before anything records into it.
        ehealth_infra::metrics::install();
        // Bound here, served in `run_until`: a taken port fails the start, and port 0 is known at once.
        let http = std::net::TcpListener::bind(&config.worker_http_addr).with_context(|| {
            format!(
                "WORKER_HTTP_ADDR {} cannot be bound",
                config.worker_http_addr
            )
        })?;
        http.set_nonblocking(true)?;
        let http_addr = http.local_addr()?;
        Ok(Self {
            commands: Commands {
                pool,
                publisher,
                storage: Storage::new(&config),
                config: Arc::new(config),
            },
            http,
            http_addr,
        })
    }

    /// The address the worker's HTTP listener (`/metrics`, `/health/*`) is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Runs until `shutdown` resolves: stops consuming and serving HTTP, finishes in-flight jobs, then
    /// returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop, stopped) = watch::channel(false);
        let Commands {
            pool,
            publisher,
            config,
            ..
        } = self.commands.clone();
        let topology = publisher.topology().clone();
        let broker = Arc::new(BrokerProbe::new(&config.amqp_url));
        let mut tasks = Vec::new();
        match tokio::net::TcpListener::from_std(self.http) {
            Ok(listener) => tasks.push(tokio::spawn(http::serve(
                listener,
                http::HttpState {
                    pool: pool.clone(),
                    storage: self.commands.storage.clone(),
                    broker: broker.clone(),
                    topology: topology.clone(),
                    addr: self.http_addr,
                },
                stopped.clone(),
            ))),
            Err(e) => tracing::error!(error = %e, "worker http listener cannot be served"),
        }
        tasks.extend([
            tokio::spawn(relay::run(
                pool.clone(),
                publisher.clone(),
                self.commands.storage.clone(),
                config.clone(),
                stopped.clone(),
            )),
            tokio::spawn(scheduler::run(
                pool.clone(),
                publisher.clone(),
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
                    max_attempts: config.worker_max_attempts,
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
        ]);
        shutdown.await;
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        broker.close().await;
        tracing::info!("worker stopped");
    }
}
