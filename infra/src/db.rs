//! The Postgres pool and the schema migrations.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
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

/// How long a connection of the api's pool may stay unused before it is closed ([`close_idle_connections`]).
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Closes `pool`'s connections unused for longer than `idle`, checking every `idle / 2`, for as long as the
/// pool exists. A pool sized for bursts of requests (the api's `API_DB_POOL_SIZE`) so gives the server its
/// connections back once the burst is over, instead of holding them idle while other clients need them.
pub fn close_idle_connections(pool: &Pool, idle: Duration) {
    let pool = pool.weak();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(idle / 2);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(pool) = pool.upgrade() else {
                return;
            };
            pool.retain(|_, metrics| metrics.last_used() < idle);
        }
    });
}

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

/// A few pooled connections that many requests use at once, for statements that each run on their own
/// (no transaction, no session state): tokio-postgres pipelines the statements of concurrent callers on one
/// connection, so a burst of such requests costs a few backends a write and a read per batch of statements
/// instead of a backend, a socket round trip and a context switch each. Every statement still ends with its
/// own Sync, so it is its own transaction and one failing statement fails only its own caller.
///
/// The connections are taken from `pool` when first needed and kept; a connection that has closed (its
/// backend terminated, the database restarted) is let go (the pool discards it) and replaced by the next
/// caller of its slot, so the set heals as the pool does. Callers take the slots in turn.
pub struct Shared {
    pool: Pool,
    slots: Box<[Slot]>,
    next: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    client: RwLock<Option<Arc<Object>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    fn open(&self) -> Option<Arc<Object>> {
        self.client
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|client| !client.is_closed())
            .cloned()
    }

    fn set(&self, client: Option<Arc<Object>>) {
        *self
            .client
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = client;
    }
}

impl Shared {
    /// `connections` connections of `pool`, shared; with none, [`Shared::get`] takes a pooled connection of
    /// the caller's own every time.
    pub fn new(pool: Pool, connections: usize) -> Self {
        Self {
            pool,
            slots: (0..connections).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The pool the connections come from, for work that needs a connection of its own (a transaction).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A shared connection, for one statement run on its own (never a transaction: it would take every
    /// other caller's statements into it). Waits as long as taking a pooled connection does at most.
    pub async fn get(&self) -> Result<Arc<Object>, StoreError> {
        if self.slots.is_empty() {
            return Ok(Arc::new(self.pool.get().await?));
        }
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(client) = slot.open() {
            return Ok(client);
        }
        let Ok(_connecting) = slot.connecting.try_lock() else {
            // Another caller is opening this slot's connection (which may take up to the connect timeout while
            // the database does not answer): rather than queue behind it, this one takes a pooled connection
            // of its own, so no request waits longer than it would without sharing.
            return Ok(Arc::new(self.pool.get().await?));
        };
        if let Some(client) = slot.open() {
            return Ok(client);
        }
        // Let the closed connection go first: once its last user is done, the pool discards it.
        slot.set(None);
        let client = Arc::new(self.pool.get().await?);
        slot.set(Some(client.clone()));
        Ok(client)
    }
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

/// What the runtime role may do, table by table: read and append the log, never change it; run jobs, the
/// outbox and the projections; read reference data, never write it (that is the admin CLI's, as the owner).
/// Applied by [`migrate`] after every migration set, so a table added later gets its grants on the next
/// migrate. Every table not listed here is the owner's alone.
pub const RUNTIME_GRANTS: &[(&str, &str)] = &[
    ("events", "SELECT, INSERT"),
    ("streams", "SELECT, INSERT, UPDATE (version, updated_at)"),
    ("jobs", "SELECT, INSERT, UPDATE, DELETE"),
    ("outbox", "SELECT, INSERT, UPDATE, DELETE"),
    ("object_deletions", "SELECT, INSERT, UPDATE, DELETE"),
    ("upload_links", "SELECT, INSERT, DELETE"),
    ("service_requests", "SELECT, INSERT, UPDATE, DELETE"),
    ("analysis_files", "SELECT, INSERT, UPDATE, DELETE"),
    ("patient_attachments", "SELECT, INSERT, UPDATE, DELETE"),
    ("attachment_uploads", "SELECT, INSERT, DELETE"),
    ("contract_requests", "SELECT, INSERT, UPDATE, DELETE"),
    ("divisions", "SELECT"),
    ("legal_entities", "SELECT"),
    ("users", "SELECT"),
    ("api_clients", "SELECT"),
    ("tokens", "SELECT"),
    ("chain_state", "SELECT"),
];

/// Applies every pending migration of `migrations/` as the owner (`MIGRATION_DATABASE_URL`; refinery, each
/// migration in its own transaction), re-chains the event log with the process's `EVENT_CHAIN_KEY` if it is
/// still chained the pre-V5 way (`event_store::chain::rechain`: once, in one transaction; a no-op ever
/// after), then creates or updates the runtime role named by `runtime_url`'s user with exactly
/// [`RUNTIME_GRANTS`]. With `runtime_url` naming the owner itself nothing is granted (a single-role setup,
/// which the services refuse unless `ALLOW_PRIVILEGED_DB_ROLE`).
pub async fn migrate(migration_url: &str, runtime_url: &str) -> Result<usize, StoreError> {
    let pg: tokio_postgres::Config = migration_url.parse()?;
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
    let runtime: tokio_postgres::Config = runtime_url.parse()?;
    grant_runtime_role(&client, &runtime).await?;
    drop(client);
    let _ = handle.await;
    let applied = report.applied_migrations().len();
    tracing::info!(applied, "migrations applied");
    Ok(applied)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates the runtime role if missing (LOGIN, nothing else), sets its password when the URL has one, and
/// replaces its privileges on every table with [`RUNTIME_GRANTS`].
async fn grant_runtime_role(
    client: &tokio_postgres::Client,
    runtime: &tokio_postgres::Config,
) -> Result<(), StoreError> {
    let Some(role) = runtime.get_user().map(str::to_owned) else {
        return Ok(());
    };
    let owner: String = client.query_one("SELECT current_user", &[]).await?.get(0);
    if role == owner {
        tracing::warn!(
            role,
            "DATABASE_URL names the owner: no separate runtime role"
        );
        return Ok(());
    }
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await?
        .is_some();
    let quoted = quote_ident(&role);
    if !exists {
        let created = client
            .batch_execute(&format!(
                "CREATE ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
            ))
            .await;
        match created {
            Ok(()) => tracing::info!(role, "created the runtime role"),
            // Another migrating process created it in between: `role already exists` once it has
            // committed, a unique violation on `pg_authid` when both inserted it at the same time.
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT)
                    || e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(password) = runtime.get_password() {
        let password = String::from_utf8_lossy(password).replace('\'', "''");
        client
            .batch_execute(&format!("ALTER ROLE {quoted} PASSWORD '{password}'"))
            .await?;
    }
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .await?
        .get(0);
    let mut sql = format!(
        "GRANT CONNECT, TEMPORARY ON DATABASE {} TO {quoted}; GRANT USAGE ON SCHEMA public TO {quoted}; \
         REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted};",
        quote_ident(&database)
    );
    for (table, privileges) in RUNTIME_GRANTS {
        sql.push_str(&format!(" GRANT {privileges} ON {table} TO {quoted};"));
    }
    client
        .batch_execute(&format!("BEGIN; {sql} COMMIT;"))
        .await?;
    tracing::info!(role, "runtime role granted");
    Ok(())
}

/// Why the services refuse a database role.
const PRIVILEGE_CHECK: &str = "SELECT r.rolsuper, \
       (SELECT c.relowner = r.oid FROM pg_class c WHERE c.oid = 'events'::regclass), \
       has_table_privilege('events', 'UPDATE'), has_table_privilege('events', 'DELETE'), \
       has_table_privilege('events', 'TRUNCATE') \
     FROM pg_roles r WHERE r.rolname = current_user";

/// Refuses to run (a clear error) when the pool's role is a superuser, owns `events`, or may UPDATE, DELETE
/// or TRUNCATE it, unless `allow_privileged` (`ALLOW_PRIVILEGED_DB_ROLE=true`, unsafe: the service itself
/// could then rewrite the log). Waits up to `patience` for the database to answer.
pub async fn check_runtime_role(
    pool: &Pool,
    allow_privileged: bool,
    patience: Duration,
) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + patience;
    let row = loop {
        let attempt = async {
            let client = pool.get().await?;
            Ok::<_, StoreError>(client.query_one(PRIVILEGE_CHECK, &[]).await?)
        };
        match attempt.await {
            Ok(row) => break row,
            Err(e) if e.is_unavailable() && tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "database not reachable yet; waiting to check the role");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let flags = [
        (row.get::<_, bool>(0), "is a superuser"),
        (
            row.get::<_, Option<bool>>(1).unwrap_or(false),
            "owns the events table",
        ),
        (row.get::<_, bool>(2), "may UPDATE events"),
        (row.get::<_, bool>(3), "may DELETE from events"),
        (row.get::<_, bool>(4), "may TRUNCATE events"),
    ];
    let problems: Vec<&str> = flags
        .iter()
        .filter(|(bad, _)| *bad)
        .map(|(_, why)| *why)
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    let message = format!(
        "the database role of DATABASE_URL {}; the services connect as the least-privilege runtime role \
         that `ehealth-admin migrate` creates (see README, \"Database roles\")",
        problems.join(", ")
    );
    if allow_privileged {
        tracing::warn!(%message, "ALLOW_PRIVILEGED_DB_ROLE=true: running anyway (unsafe)");
        Ok(())
    } else {
        Err(StoreError::Migration(format!(
            "refusing to start: {message}, or set ALLOW_PRIVILEGED_DB_ROLE=true (unsafe)"
        )))
    }
}
