//! Rebuilding the projections from the event log in short transactions.
//!
//! A rebuild must produce exactly the live tables without holding one transaction open for the whole log:
//! a long transaction would hold the audit feed back (it serves only events of transactions older than the
//! oldest running one) and readers must never see a half-built table. So each projection is built into a
//! shadow table and swapped in at the end:
//!
//! 1. `CREATE UNLOGGED TABLE <t>_rebuild (LIKE <t> INCLUDING ALL EXCLUDING INDEXES)` (a leftover of a failed
//!    run is dropped): without indexes, filling it costs a fraction (no index entries per row; the live
//!    table's own indexes are maintained once, by the swap's copy).
//! 2. The events of the projection's stream type are read in chunks of at most `chunk_events`, ordered by
//!    `(stream_id, stream_version)` and paged by that keyset. Every stream a chunk holds whole is folded in
//!    memory and its rows are inserted with one multi-row `INSERT … SELECT FROM unnest(…)`; the stream the
//!    chunk ends in waits for the next chunk. The next chunk's read is sent before a chunk is folded and
//!    written (one connection, pipelined), so PostgreSQL reads while the process folds. Each statement is
//!    its own transaction, so no transaction lives longer than one chunk. The version each stream was folded
//!    at is kept in memory.
//! 3. Catch-up without a lock: the streams whose `streams.version` differs from the folded one (appended to
//!    during the build, or created after the keyset passed them) are folded again into the shadow.
//! 4. The swap, in one short transaction: `LOCK TABLE <t> IN ACCESS EXCLUSIVE MODE` (writers and readers wait),
//!    the same catch-up again — now exact, because no writer can project into the table until the commit,
//!    and one that projects afterwards writes its stream's whole state — then
//!    `TRUNCATE <t>; INSERT INTO <t> SELECT * FROM <t>_rebuild; DROP TABLE <t>_rebuild`. Copying keeps the
//!    live table's own name, indexes, constraints and grants (`db::RUNTIME_GRANTS`); renaming the shadow
//!    into place would have to redo all of them. (Writing only the difference — two hash anti-joins over
//!    whole rows — was tried: 2 × faster at 100,000 rows, 2.4 × slower at 1,000,000, where the hashes spill.)
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
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {shadow}; \
             CREATE UNLOGGED TABLE {shadow} (LIKE {table} INCLUDING ALL EXCLUDING INDEXES)"
        ))
        .await?;
    let mut built = build_shadow::<A>(&*client, &shadow, chunk_events.max(1), progress).await?;
    for attempt in 1.. {
        // Most of the catch-up, with no lock held: what is left for the swap is what commits meanwhile.
        catch_up::<A>(&*client, &shadow, &mut built, progress).await?;
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
        catch_up::<A>(&tx, &shadow, &mut built, progress).await?;
        tx.batch_execute(&format!(
            "TRUNCATE {table}; INSERT INTO {table} SELECT * FROM {shadow}; DROP TABLE {shadow}"
        ))
        .await?;
        tx.commit().await?;
        tracing::info!(
            table,
            locked_ms = locked_at.elapsed().as_millis() as u64,
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

/// Folds again into the shadow every stream whose version is not the one it was folded at.
async fn catch_up<A: Projection>(
    client: &impl GenericClient,
    shadow: &str,
    built: &mut HashMap<Uuid, i64>,
    progress: &mut Progress,
) -> Result<(), StoreError> {
    let versions = client.prepare_cached(SELECT_VERSIONS).await?;
    let stale: Vec<Uuid> = client
        .query(&versions, &[&A::STREAM_TYPE])
        .await?
        .iter()
        .filter(|row| built.get(&row.get::<_, Uuid>(0)) != Some(&row.get::<_, i64>(1)))
        .map(|row| row.get(0))
        .collect();
    if stale.is_empty() {
        return Ok(());
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
    Ok(())
}
