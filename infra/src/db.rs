//! The Postgres pool and the schema migrations.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::{event_store::chain, StoreError};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// How long opening one connection may take: a database that does not answer fails a request quickly
/// (503) instead of holding it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request waits for a free pooled connection before it is answered 503: under overload or an
/// outage a quick "retry later" beats a hung client.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long checking a pooled connection before handing it out may take.
pub const POOL_RECYCLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds a connection pool for `database_url` with at most `size` connections. Connections are opened
/// lazily, so this succeeds while the database is down, and a closed connection (a restarted or terminated
/// backend) is discarded when it is next taken rather than handed out: the pool heals by itself once the
/// database is back. Every wait is bounded ([`CONNECT_TIMEOUT`], [`POOL_WAIT_TIMEOUT`],
/// [`POOL_RECYCLE_TIMEOUT`]), so an outage surfaces as a `StoreError` within seconds.
pub fn pool(database_url: &str, size: usize) -> Result<Pool, StoreError> {
    let mut pg: tokio_postgres::Config = database_url.parse()?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            // `Fast` checks `is_closed` on every checkout, which drops connections whose backend went away;
            // `Verified` would add a round trip to every checkout for the rare half-open connection, whose
            // query then fails as unavailable (503) and closes it.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(POOL_RECYCLE_TIMEOUT))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Migration(format!("cannot build the pool: {e}")))
}

/// Creates the database named in `database_url` if it does not exist, connecting to the `postgres`
/// maintenance database of the same server.
pub async fn create_database_if_missing(database_url: &str) -> Result<(), StoreError> {
    let mut pg: tokio_postgres::Config = database_url.parse()?;
    let name = pg.get_dbname().unwrap_or("postgres").to_owned();
    pg.dbname("postgres");
    let (client, connection) = pg.connect(NoTls).await?;
    let handle = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let quoted = name.replace('"', "\"\"");
        match client
            .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
            .await
        {
            Ok(()) => tracing::info!(database = %name, "created database"),
            // Another process created it in between.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(client);
    let _ = handle.await;
    Ok(())
}

/// Applies every pending migration of `migrations/` (refinery; each migration in its own transaction), then
/// re-chains the event log with the process's `EVENT_CHAIN_KEY` if it is still chained the pre-V5 way
/// (`event_store::chain::rechain`: once, in one transaction; a no-op ever after).
pub async fn migrate(database_url: &str) -> Result<usize, StoreError> {
    let pg: tokio_postgres::Config = database_url.parse()?;
    let (mut client, connection) = pg.connect(NoTls).await?;
    let handle = tokio::spawn(connection);
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    let rechained = chain::rechain(&mut client, chain::chain_key()).await?;
    if rechained.rechained {
        tracing::info!(
            streams = rechained.streams,
            events = rechained.events,
            already_broken = rechained.already_broken.len(),
            "event chain re-chained with EVENT_CHAIN_KEY"
        );
    }
    drop(client);
    let _ = handle.await;
    let applied = report.applied_migrations().len();
    tracing::info!(applied, "migrations applied");
    Ok(applied)
}
