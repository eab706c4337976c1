//! Rebuilding the projections from the event log in short transactions.
//!
//! A rebuild must produce exactly the live tables without holding one transaction open for the whole log:
//! a long transaction would hold the audit feed back (it serves only events of transactions older than the
//! oldest running one) and readers must never see a half-built table. So each projection is built into a
//! shadow table and swapped in at the end:
//!
//! 1. `CREATE TABLE <t>_rebuild (LIKE <t> INCLUDING ALL EXCLUDING INDEXES)` (a leftover of a failed run is
//!    dropped): no index entries while it fills.
//! 2. The events of the projection's stream type are read in chunks of at most `chunk_events`, ordered by
//!    `(stream_id, stream_version)` and paged by that keyset. Every stream a chunk holds whole is folded in
//!    memory and its rows are inserted with one multi-row `INSERT … SELECT FROM unnest(…)`; the stream the
//!    chunk ends in waits for the next chunk. The next chunk's read is sent before a chunk is folded and
//!    written (one connection, pipelined), so PostgreSQL reads while the process folds. Each statement is
//!    its own transaction, so no transaction lives longer than one chunk. The version each stream was folded
//!    at is kept in memory.
//! 3. The live table's indexes and index-backed constraints are made on the filled shadow, from the server's
//!    own definitions (`pg_get_indexdef`, `pg_get_constraintdef`) under temporary names (one sort per index
//!    instead of an entry per row), and the shadow is analyzed.
//! 4. Catch-up without a lock: the streams whose `streams.version` differs from the folded one (appended to
//!    during the build, or created after the keyset passed them) are folded again into the shadow.
//! 5. The swap, in one short transaction: `LOCK TABLE <t> IN ACCESS EXCLUSIVE MODE` (writers and readers wait),
//!    the same catch-up again — now exact, because no writer can project into the table until the commit,
//!    and one that projects afterwards writes its stream's whole state — then the shadow is given the live
//!    table's owner, privileges (its ACL replayed entry by entry, column privileges too), comment and
//!    storage parameters, `DROP TABLE <t>; ALTER TABLE <t>_rebuild RENAME TO <t>`, and the indexes and
//!    constraints get the live names. Catalog changes only: the lock is held for the catch-up, whatever the
//!    table's size. A statement queued behind the lock looks the name up again when it gets the lock, and a
//!    prepared one is planned again, so readers see the old table or the new one, never a half-built one.
//!
//! A live table that something names by its oid (a view, a foreign key, a trigger, a policy, an owned
//! sequence, inheritance, a publication: `RENAME_BLOCKERS`) cannot be replaced by a rename without redoing
//! those; its shadow is `UNLOGGED`, gets no indexes, and the swap copies it instead:
//! `TRUNCATE <t>; INSERT INTO <t> SELECT * FROM <t>_rebuild; DROP TABLE <t>_rebuild` (6–8 s under the lock
//! per 1,000,000 rows, which is why renaming is the rule). (Writing only the difference — two hash anti-joins
//! over whole rows — was tried: 2 × faster at 100,000 rows, 2.4 × slower at 1,000,000, where the hashes
//! spill.)
//!
//! A projection whose stream type has no events skips all of this: its table is emptied under the lock.

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use ehealth_domain::{
    analysis_file::AnalysisFilesAggregate, service_request::ServiceRequestAggregate, Aggregate,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::Projection;
use crate::{event_store, StoreError};

/// The chunk size of `ehealth-admin projections rebuild`: events read, folded and written per statement.
pub const DEFAULT_CHUNK_EVENTS: i64 = 20_000;

/// How long the swap waits for the live table's lock in one attempt. While it waits, every other reader and
/// writer of the table queues behind it, so it waits briefly, lets them through and tries again.
const SWAP_LOCK_TIMEOUT: &str = "1s";

/// How many times the swap tries to lock the live table before the rebuild fails (leaving the live table as
/// it was and the shadow for the next run to drop).
const SWAP_ATTEMPTS: u32 = 120;

const SELECT_CHUNK: &str =
    "SELECT stream_id, stream_version, event_type, data, recorded_at FROM events \
     WHERE stream_type = $1 AND (stream_id, stream_version) > ($2, $3) \
     ORDER BY stream_id, stream_version LIMIT $4";

const SELECT_STREAMS_EVENTS: &str =
    "SELECT stream_id, stream_version, event_type, data, recorded_at FROM events \
     WHERE stream_id = ANY($1) ORDER BY stream_id, stream_version";

const SELECT_VERSIONS: &str = "SELECT stream_id, version FROM streams WHERE stream_type = $1";

/// The oldest transaction the current snapshot does not see: every event written after this statement, or
/// by a transaction still running during it, has a `tx_id` at least this.
const SNAPSHOT_XMIN: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text";

/// The heads of the streams with an event of a transaction at or after `$2` (a [`SNAPSHOT_XMIN`]): the only
/// ones that can have changed since that snapshot. A range of `events_feed_idx` instead of every stream.
const SELECT_CHANGED_VERSIONS: &str = "SELECT stream_id, version FROM streams \
     WHERE stream_type = $1 AND stream_id IN (SELECT stream_id FROM events WHERE tx_id >= $2::text::xid8)";

/// What stops the swap from renaming the shadow into place: anything that names the live table by its oid
/// and would not follow a rename (a view or rule over it, a foreign key from or to it, a trigger, a row
/// security policy, an owned sequence, inheritance, a publication, a replica identity or kind other than a
/// plain table's). Such a table is swapped by copying the shadow's rows into it instead. No rows: renamable.
const RENAME_BLOCKERS: &str = "\
    WITH t AS (SELECT $1::text::regclass AS oid) \
    SELECT 'not a plain table' FROM pg_class c, t WHERE c.oid = t.oid AND (c.relkind <> 'r' \
        OR c.relreplident <> 'd' OR c.relrowsecurity OR c.relhastriggers OR c.relhasrules OR c.relispartition) \
    UNION ALL SELECT 'a view or rule depends on it' FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid, t \
        WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid \
    UNION ALL SELECT 'a foreign key names it' FROM pg_constraint k, t \
        WHERE k.contype = 'f' AND (k.conrelid = t.oid OR k.confrelid = t.oid) \
    UNION ALL SELECT 'a sequence belongs to it' FROM pg_depend d JOIN pg_class s ON s.oid = d.objid, t \
        WHERE d.classid = 'pg_class'::regclass AND d.refobjid = t.oid AND s.relkind = 'S' \
    UNION ALL SELECT 'a policy names it' FROM pg_policy p, t WHERE p.polrelid = t.oid \
    UNION ALL SELECT 'inheritance' FROM pg_inherits i, t WHERE i.inhrelid = t.oid OR i.inhparent = t.oid \
    UNION ALL SELECT 'it is published' FROM pg_publication_rel p, t WHERE p.prrelid = t.oid";

/// The live table's indexes and index-backed constraints (primary key, unique, exclusion), as statements
/// that make each on the shadow ($2) under a temporary name (`<shadow>_ix<n>`), and the statements that give
/// each its live name once the live table is gone. The definitions are the server's own
/// (`pg_get_indexdef`, `pg_get_constraintdef`), so method, columns, order, predicate, options and
/// deferrability are the live table's.
const INDEX_DDL: &str = "\
    WITH p AS (SELECT $1::text AS live, $2::text AS shadow), \
    t AS (SELECT p.live::regclass AS oid FROM p), \
    i AS (SELECT x.indexrelid, c.relname, row_number() OVER (ORDER BY x.indexrelid) AS n \
          FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid, t WHERE x.indrelid = t.oid) \
    SELECT CASE WHEN k.oid IS NULL \
             THEN regexp_replace(pg_get_indexdef(i.indexrelid), '^(CREATE (UNIQUE )?INDEX) \\S+ ON \\S+ ', \
                  format('\\1 %I ON %I ', p.shadow || '_ix' || i.n, p.shadow)) \
             ELSE format('ALTER TABLE %I ADD CONSTRAINT %I %s', p.shadow, p.shadow || '_ix' || i.n, \
                  pg_get_constraintdef(k.oid)) END, \
           CASE WHEN k.oid IS NULL \
             THEN format('ALTER INDEX %I RENAME TO %I', p.shadow || '_ix' || i.n, i.relname) \
             ELSE format('ALTER TABLE %I RENAME CONSTRAINT %I TO %I', p.live, p.shadow || '_ix' || i.n, k.conname) END \
    FROM i CROSS JOIN t CROSS JOIN p LEFT JOIN pg_constraint k \
        ON k.conindid = i.indexrelid AND k.conrelid = t.oid AND k.contype IN ('p', 'u', 'x') \
    ORDER BY i.n";

/// What `CREATE TABLE … (LIKE …)` does not carry over, as statements that give it to the shadow ($2) just before
/// it takes the live table's name: the owner, the privileges (table and column: the owner's
/// entry emptied, then every entry of the live table's ACL granted again in its order, so `relacl` is the
/// same array), the table's comment and its storage parameters.
const TABLE_DDL: &str = "\
    WITH p AS (SELECT $1::text AS live, $2::text AS shadow), \
    t AS (SELECT c.* FROM pg_class c, p WHERE c.oid = p.live::regclass) \
    SELECT ddl FROM ( \
      SELECT 1 AS step, 0::bigint AS n, format('ALTER TABLE %I OWNER TO %I', p.shadow, pg_get_userbyid(t.relowner)) AS ddl \
        FROM t, p WHERE t.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user) \
      UNION ALL SELECT 2, 0, format('REVOKE ALL ON %I FROM %I', p.shadow, pg_get_userbyid(t.relowner)) \
        FROM t, p WHERE t.relacl IS NOT NULL \
      UNION ALL SELECT 3, a.n, format('GRANT %s ON %I TO %s%s', a.privilege_type, p.shadow, \
          CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, \
          CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) \
        FROM t, p, aclexplode(t.relacl) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, n) \
      UNION ALL SELECT 4, att.attnum * 1000 + a.n, format('GRANT %s (%I) ON %I TO %s%s', a.privilege_type, \
          att.attname, p.shadow, CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, \
          CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) \
        FROM t CROSS JOIN p JOIN pg_attribute att ON att.attrelid = t.oid AND att.attacl IS NOT NULL \
          AND NOT att.attisdropped, \
          aclexplode(att.attacl) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, n) \
      UNION ALL SELECT 5, 0, format('COMMENT ON TABLE %I IS %L', p.shadow, obj_description(t.oid, 'pg_class')) \
        FROM t, p WHERE obj_description(t.oid, 'pg_class') IS NOT NULL \
      UNION ALL SELECT 6, 0, format('ALTER TABLE %I SET (%s)', p.shadow, array_to_string(t.reloptions, ', ')) \
        FROM t, p WHERE t.reloptions IS NOT NULL \
    ) s ORDER BY step, n";

/// Events of a stream type, from the stream heads (a stream's version is its number of events: versions run
/// from 1 without gaps), so the progress line costs no scan of `events`.
const COUNT_EVENTS: &str =
    "SELECT coalesce(sum(version), 0)::bigint FROM streams WHERE stream_type = $1";

/// One stream folded from its events: what a projection's row is made of.
#[derive(Debug, Clone)]
pub struct Folded<A: Aggregate> {
    /// The stream.
    pub stream_id: Uuid,
    /// Its state after its last event.
    pub state: A::State,
    /// The version of its last event.
    pub version: i64,
    /// When its first event was recorded.
    pub first_recorded_at: DateTime<Utc>,
    /// When its last event was recorded.
    pub last_recorded_at: DateTime<Utc>,
}

/// What a rebuild did: the CLI prints it as JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RebuildReport {
    /// Streams folded into the rebuilt tables.
    pub streams: u64,
    /// Events read and folded (catch-up included).
    pub events: u64,
    /// Wall-clock time of the whole rebuild.
    pub seconds: f64,
}

/// The part of an event a fold needs.
struct ChunkEvent {
    stream_id: Uuid,
    stream_version: i64,
    event_type: String,
    data: Value,
    recorded_at: DateTime<Utc>,
}

impl ChunkEvent {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            stream_id: row.get(0),
            stream_version: row.get(1),
            event_type: row.get(2),
            data: row.get(3),
            recorded_at: row.get(4),
        }
    }
}

/// Folds events ordered by `(stream_id, stream_version)`, each stream's from its first, one [`Folded`] per
/// stream.
fn fold_streams<A: Aggregate>(events: &[ChunkEvent]) -> Result<Vec<Folded<A>>, StoreError> {
    let mut folded: Vec<Folded<A>> = Vec::new();
    for event in events {
        let decoded = event_store::decode_event::<A>(&event.event_type, &event.data)?;
        match folded.last_mut() {
            Some(stream) if stream.stream_id == event.stream_id => {
                stream.state = A::apply(std::mem::take(&mut stream.state), &decoded);
                stream.version = event.stream_version;
                stream.last_recorded_at = event.recorded_at;
            }
            _ => folded.push(Folded {
                stream_id: event.stream_id,
                state: A::apply(A::State::default(), &decoded),
                version: event.stream_version,
                first_recorded_at: event.recorded_at,
                last_recorded_at: event.recorded_at,
            }),
        }
    }
    Ok(folded)
}

/// Streams and events done so far, for the progress lines and the report.
struct Progress {
    started: Instant,
    streams: u64,
    events: u64,
    /// Events of the projection being built that were folded into its shadow so far.
    table_events: u64,
    /// Events of its stream type when its build started.
    table_total: u64,
}

impl Progress {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            streams: 0,
            events: 0,
            table_events: 0,
            table_total: 0,
        }
    }

    /// One line on stderr: the table's events done of its total, and the whole rebuild's streams, events
    /// and rate.
    fn log(&self, table: &str, phase: &'static str) {
        let seconds = self.started.elapsed().as_secs_f64();
        tracing::info!(
            table,
            phase,
            done = %format_args!("{}/{}", self.table_events, self.table_total),
            streams = self.streams,
            events = self.events,
            events_per_second = (self.events as f64 / seconds.max(1e-9)).round(),
            "projection rebuild progress"
        );
    }
}

/// Rebuilds every projection with [`DEFAULT_CHUNK_EVENTS`]; returns the number of streams folded.
pub async fn rebuild_all(client: &mut deadpool_postgres::Object) -> Result<u64, StoreError> {
    Ok(rebuild_all_in_chunks(client, DEFAULT_CHUNK_EVENTS)
        .await?
        .streams)
}

/// Rebuilds every projection, reading at most `chunk_events` events per statement (see the module's
/// documentation). Each projection is swapped in as soon as it is built.
pub async fn rebuild_all_in_chunks(
    client: &mut deadpool_postgres::Object,
    chunk_events: i64,
) -> Result<RebuildReport, StoreError> {
    // One rebuild at a time: two would share the shadow tables. A session lock, released below and by the
    // server if this process dies.
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&REBUILD_LOCK_KEY])
        .await?
        .get(0);
    if !locked {
        return Err(StoreError::Migration(
            "another projection rebuild is running; try again when it has finished".to_owned(),
        ));
    }
    let mut progress = Progress::new();
    let mut result =
        rebuild_with::<ServiceRequestAggregate>(client, chunk_events, &mut progress).await;
    if result.is_ok() {
        result = rebuild_with::<AnalysisFilesAggregate>(client, chunk_events, &mut progress).await;
    }
    if result.is_ok() {
        result = rebuild_with::<ehealth_domain::patient_attachment::PatientAttachmentAggregate>(
            client,
            chunk_events,
            &mut progress,
        )
        .await;
    }
    if result.is_ok() {
        result = rebuild_with::<ehealth_domain::contract_request::ContractRequestAggregate>(
            client,
            chunk_events,
            &mut progress,
        )
        .await;
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&REBUILD_LOCK_KEY])
        .await?;
    result?;
    Ok(RebuildReport {
        streams: progress.streams,
        events: progress.events,
        seconds: progress.started.elapsed().as_secs_f64(),
    })
}

/// The advisory lock that lets one projection rebuild run at a time.
pub const REBUILD_LOCK_KEY: i64 = 0x6548_6561_6c74_6802;

/// Rebuilds one projection, reading at most `chunk_events` events per statement.
pub async fn rebuild<A: Projection>(
    client: &mut deadpool_postgres::Object,
    chunk_events: i64,
) -> Result<RebuildReport, StoreError> {
    let mut progress = Progress::new();
    rebuild_with::<A>(client, chunk_events, &mut progress).await?;
    Ok(RebuildReport {
        streams: progress.streams,
        events: progress.events,
        seconds: progress.started.elapsed().as_secs_f64(),
    })
}

async fn rebuild_with<A: Projection>(
    client: &mut deadpool_postgres::Object,
    chunk_events: i64,
    progress: &mut Progress,
) -> Result<(), StoreError> {
    let table = A::TABLE;
    if rebuilt_empty::<A>(client).await? {
        (progress.table_events, progress.table_total) = (0, 0);
        progress.log(table, "swapped");
        return Ok(());
    }
    let shadow = format!("{table}_rebuild");
    // Renaming the shadow into place needs a logged table (it becomes the live one); copying it needs none.
    let blockers = client.prepare_cached(RENAME_BLOCKERS).await?;
    let blocker: Option<String> = client
        .query(&blockers, &[&table])
        .await?
        .first()
        .map(|row| row.get(0));
    if let Some(reason) = &blocker {
        tracing::info!(
            table,
            reason,
            "projection rebuild: swap by copy, not by rename"
        );
    }
    let persistence = if blocker.is_none() { "" } else { "UNLOGGED" };
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {shadow}; \
             CREATE {persistence} TABLE {shadow} (LIKE {table} INCLUDING ALL EXCLUDING INDEXES)"
        ))
        .await?;
    let mut built = build_shadow::<A>(&*client, &shadow, chunk_events.max(1), progress).await?;
    // The live table's indexes and constraints, built once over the filled shadow (a sort each, rather than
    // an entry per inserted row), and its statistics; the names wait for the swap.
    let renames = if blocker.is_none() {
        let indexes = client.prepare_cached(INDEX_DDL).await?;
        let mut renames = Vec::new();
        for row in client.query(&indexes, &[&table, &shadow]).await? {
            client.batch_execute(row.get::<_, &str>(0)).await?;
            renames.push(row.get::<_, String>(1));
        }
        client.batch_execute(&format!("ANALYZE {shadow}")).await?;
        progress.log(table, "indexed");
        Some(renames)
    } else {
        None
    };
    for attempt in 1.. {
        // Most of the catch-up, with no lock held: what is left for the swap is what commits meanwhile.
        let since = catch_up::<A>(&*client, &shadow, &mut built, progress, None).await?;
        let tx = client.transaction().await?;
        let locked = tx
            .batch_execute(&format!(
                "SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'; \
                 LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            ))
            .await;
        match locked {
            Ok(()) => {}
            // A long reader or writer holds the table: let the queue behind us go, and try again.
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
                    && attempt < SWAP_ATTEMPTS =>
            {
                tracing::warn!(
                    table,
                    attempt,
                    "projection rebuild: the table is busy, swap retried"
                );
                tx.rollback().await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let locked_at = Instant::now();
        catch_up::<A>(&tx, &shadow, &mut built, progress, Some(&since)).await?;
        match &renames {
            // The shadow becomes the live table: its owner, privileges, comment and storage parameters, then
            // the live table's name and its indexes' and constraints' names. Catalog changes only, whatever
            // the table's size. A reader queued behind the lock looks the name up again once it is granted,
            // so it reads the new table; a statement prepared on the old one is planned again.
            Some(renames) => {
                let extras = tx.prepare_cached(TABLE_DDL).await?;
                for row in tx.query(&extras, &[&table, &shadow]).await? {
                    tx.batch_execute(row.get::<_, &str>(0)).await?;
                }
                tx.batch_execute(&format!(
                    "DROP TABLE {table}; ALTER TABLE {shadow} RENAME TO {table}; {}",
                    renames.join("; ")
                ))
                .await?;
            }
            // Copying keeps the live table and everything that names it.
            None => {
                tx.batch_execute(&format!(
                    "TRUNCATE {table}; INSERT INTO {table} SELECT * FROM {shadow}; DROP TABLE {shadow}"
                ))
                .await?;
            }
        }
        tx.commit().await?;
        tracing::info!(
            table,
            locked_ms = locked_at.elapsed().as_millis() as u64,
            renamed = renames.is_some(),
            "projection rebuild: shadow swapped in"
        );
        break;
    }
    progress.log(table, "swapped");
    Ok(())
}

/// A projection whose stream type has no events: its table is emptied under the lock (it holds no rows unless
/// something wrote them without events) with no shadow table, catch-up or comparison, so the rebuild of an
/// unused projection costs two short statements. False (nothing done) when it has events, or when the table
/// is busy (the ordinary path retries).
async fn rebuilt_empty<A: Projection>(
    client: &mut deadpool_postgres::Object,
) -> Result<bool, StoreError> {
    let count = client.prepare_cached(COUNT_EVENTS).await?;
    let total: i64 = client.query_one(&count, &[&A::STREAM_TYPE]).await?.get(0);
    if total != 0 {
        return Ok(false);
    }
    let tx = client.transaction().await?;
    let locked = tx
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'; \
             LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            A::TABLE
        ))
        .await;
    match locked {
        Ok(()) => {}
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            tx.rollback().await?;
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    }
    // Events appended before the lock was granted are committed now, and their writer projected them.
    let total: i64 = tx.query_one(&count, &[&A::STREAM_TYPE]).await?.get(0);
    if total != 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.execute(&format!("DELETE FROM {}", A::TABLE), &[])
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Fills the shadow chunk by chunk; returns the version each stream was folded at.
async fn build_shadow<A: Projection>(
    client: &impl GenericClient,
    shadow: &str,
    chunk_events: i64,
    progress: &mut Progress,
) -> Result<HashMap<Uuid, i64>, StoreError> {
    let count = client.prepare_cached(COUNT_EVENTS).await?;
    let total: i64 = client.query_one(&count, &[&A::STREAM_TYPE]).await?.get(0);
    progress.table_total = u64::try_from(total).unwrap_or_default();
    progress.table_events = 0;
    let select = client.prepare_cached(SELECT_CHUNK).await?;
    let mut built = HashMap::new();
    let mut after = (Uuid::nil(), 0_i64);
    // The events of the stream the last chunk ended in: it may go on in the next one.
    let mut pending: Vec<ChunkEvent> = Vec::new();
    let mut rows = client
        .query(
            &select,
            &[&A::STREAM_TYPE, &after.0, &after.1, &chunk_events],
        )
        .await?;
    loop {
        let last_chunk = (rows.len() as i64) < chunk_events;
        pending.extend(rows.iter().map(ChunkEvent::from_row));
        drop(rows);
        if let Some(last) = pending.last() {
            after = (last.stream_id, last.stream_version);
        }
        let whole = if last_chunk {
            pending.len()
        } else {
            let open = pending.last().map(|e| e.stream_id);
            pending
                .iter()
                .position(|e| Some(e.stream_id) == open)
                .unwrap_or(0)
        };
        let rest = pending.split_off(whole);
        let complete = std::mem::replace(&mut pending, rest);
        let write = async {
            if complete.is_empty() {
                return Ok::<_, StoreError>(Vec::new());
            }
            let folded = fold_streams::<A>(&complete)?;
            A::insert_folded(client, shadow, &folded).await?;
            Ok(folded)
        };
        // The next chunk's read is sent before this one is folded and written: the connection pipelines
        // the two statements, so PostgreSQL reads while this process folds.
        let (next, written) = if last_chunk {
            (None, write.await)
        } else {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&A::STREAM_TYPE, &after.0, &after.1, &chunk_events];
            let (next, written) = tokio::join!(client.query(&select, &params), write);
            (Some(next), written)
        };
        let folded = written?;
        if !folded.is_empty() {
            built.extend(folded.iter().map(|f| (f.stream_id, f.version)));
            progress.streams += folded.len() as u64;
            progress.events += complete.len() as u64;
            progress.table_events += complete.len() as u64;
            progress.log(A::TABLE, "chunk");
        }
        match next {
            None => return Ok(built),
            Some(next) => rows = next?,
        }
    }
}

/// Folds again into the shadow every stream whose version is not the one it was folded at: of all the
/// stream type's streams, or with `since` (the xmin this returned from the previous catch-up) of those that
/// can have changed after that one read its versions. Returns the xmin of a snapshot taken before its own
/// read, for the next.
async fn catch_up<A: Projection>(
    client: &impl GenericClient,
    shadow: &str,
    built: &mut HashMap<Uuid, i64>,
    progress: &mut Progress,
    since: Option<&str>,
) -> Result<String, StoreError> {
    let xmin: String = client.query_one(SNAPSHOT_XMIN, &[]).await?.get(0);
    let heads = match since {
        None => {
            let versions = client.prepare_cached(SELECT_VERSIONS).await?;
            client.query(&versions, &[&A::STREAM_TYPE]).await?
        }
        Some(since) => {
            let versions = client.prepare_cached(SELECT_CHANGED_VERSIONS).await?;
            client.query(&versions, &[&A::STREAM_TYPE, &since]).await?
        }
    };
    let stale: Vec<Uuid> = heads
        .iter()
        .filter(|row| built.get(&row.get::<_, Uuid>(0)) != Some(&row.get::<_, i64>(1)))
        .map(|row| row.get(0))
        .collect();
    if stale.is_empty() {
        return Ok(xmin);
    }
    client
        .execute(
            &format!("DELETE FROM {shadow} WHERE {} = ANY($1)", A::STREAM_COLUMN),
            &[&stale],
        )
        .await?;
    let read = client.prepare_cached(SELECT_STREAMS_EVENTS).await?;
    let events: Vec<ChunkEvent> = client
        .query(&read, &[&stale])
        .await?
        .iter()
        .map(ChunkEvent::from_row)
        .collect();
    let folded = fold_streams::<A>(&events)?;
    A::insert_folded(client, shadow, &folded).await?;
    for stream in &folded {
        if built.insert(stream.stream_id, stream.version).is_none() {
            progress.streams += 1;
        }
    }
    progress.events += events.len() as u64;
    Ok(xmin)
}
