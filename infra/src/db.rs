//! The Postgres pool and the schema migrations.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::StoreError;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Builds a connection pool for `database_url` with at most `size` connections. Connections are opened
/// lazily, so this succeeds while the database is down.
pub fn pool(database_url: &str, size: usize) -> Result<Pool, StoreError> {
    let pg: tokio_postgres::Config = database_url.parse()?;
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
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

/// Applies every pending migration of `migrations/` (refinery; each migration in its own transaction).
pub async fn migrate(database_url: &str) -> Result<usize, StoreError> {
    let pg: tokio_postgres::Config = database_url.parse()?;
    let (mut client, connection) = pg.connect(NoTls).await?;
    let handle = tokio::spawn(connection);
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    drop(client);
    let _ = handle.await;
    let applied = report.applied_migrations().len();
    tracing::info!(applied, "migrations applied");
    Ok(applied)
}
