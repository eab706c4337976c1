//! The one-time re-chain of a log chained the pre-V5 way (unkeyed SHA-256) into keyed links, run by
//! `db::migrate` because only the processes know `EVENT_CHAIN_KEY`.

use serde::Serialize;
use uuid::Uuid;

use super::{
    event_hash, legacy_event_hash, BrokenLink, ChainKey, Row, ALGORITHM, LEGACY_ALGORITHM,
};
use crate::StoreError;

/// What [`rechain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rechained {
    /// False when the database was already chained with [`ALGORITHM`]: nothing was read or written.
    pub rechained: bool,
    /// Streams re-chained.
    pub streams: u64,
    /// Events re-chained.
    pub events: u64,
    /// Links that did not verify the old way either. They keep their old value, so that they go on failing
    /// verification at the same version: re-chaining must not launder earlier tampering.
    pub already_broken: Vec<BrokenLink>,
}

const READ_MARKER: &str = "SELECT algorithm FROM chain_state FOR UPDATE";

const RECHAIN_BEGIN: &str = "LOCK TABLE streams, events IN SHARE ROW EXCLUSIVE MODE; \
     ALTER TABLE events DISABLE TRIGGER events_refuse_update_delete;";

const RECHAIN_CURSOR: &str = concat!(
    "DECLARE rechain NO SCROLL CURSOR FOR ",
    select_chain!("ORDER BY e.stream_id, e.stream_version")
);

const RECHAIN_FETCH: &str = "FETCH 1000 FROM rechain";

const RECHAIN_EVENTS: &str = "UPDATE events AS e SET prev_hash = u.prev_hash, hash = u.hash \
     FROM unnest($1::bigint[], $2::bytea[], $3::bytea[]) AS u(position, prev_hash, hash) \
     WHERE e.position = u.position";

const RECHAIN_HEADS: &str = "UPDATE streams AS s SET last_hash = u.last_hash \
     FROM unnest($1::uuid[], $2::bytea[]) AS u(stream_id, last_hash) WHERE s.stream_id = u.stream_id";

const RECHAIN_END: &str = "CLOSE rechain; \
     ALTER TABLE events ENABLE TRIGGER events_refuse_update_delete;";

const WRITE_MARKER: &str =
    "UPDATE chain_state SET algorithm = $1, rechained_at = now() RETURNING rechained_at";

/// A stream being re-chained: its previous link the old way (as stored) and the new way.
struct Rechaining {
    stream_id: Uuid,
    old_hash: Vec<u8>,
    new_hash: Vec<u8>,
    version: i64,
    head: Option<(i64, Vec<u8>)>,
}

/// Rows re-chained and not yet written.
#[derive(Default)]
struct Pending {
    positions: Vec<i64>,
    prevs: Vec<Option<Vec<u8>>>,
    hashes: Vec<Vec<u8>>,
    head_ids: Vec<Uuid>,
    head_hashes: Vec<Vec<u8>>,
}

impl Pending {
    async fn write(&mut self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), StoreError> {
        tx.execute(
            RECHAIN_EVENTS,
            &[&self.positions, &self.prevs, &self.hashes],
        )
        .await?;
        tx.execute(RECHAIN_HEADS, &[&self.head_ids, &self.head_hashes])
            .await?;
        *self = Self::default();
        Ok(())
    }
}

/// Re-chains a database chained the pre-V5 way with `key`, once: every link whose old SHA-256 link still
/// verifies becomes its HMAC link, in stream order, with `prev_hash` and `streams.last_hash` to match; then
/// `chain_state` records [`ALGORITHM`]. A link that was already broken keeps its old value, and a head that
/// did not match keeps its value, so verification goes on reporting them.
///
/// One transaction, run by the owner of `events` (`db::migrate`): it locks `streams` and `events` against
/// appends and switches the append-only trigger off only inside it, so nobody else ever sees it off. The
/// `chain_state` row is locked first, so concurrent migrations wait and then find nothing to do; once it
/// says [`ALGORITHM`] this returns at once.
pub async fn rechain(
    client: &mut tokio_postgres::Client,
    key: &ChainKey,
) -> Result<Rechained, StoreError> {
    let tx = client.transaction().await?;
    let algorithm: String = tx.query_one(READ_MARKER, &[]).await?.get(0);
    if algorithm == ALGORITHM {
        return Ok(Rechained::default());
    }
    if algorithm != LEGACY_ALGORITHM {
        return Err(StoreError::Migration(format!(
            "chain_state names an unknown chain algorithm {algorithm:?}"
        )));
    }
    tx.batch_execute(RECHAIN_BEGIN).await?;
    tx.batch_execute(RECHAIN_CURSOR).await?;
    let mut done = Rechained {
        rechained: true,
        ..Rechained::default()
    };
    let mut current: Option<Rechaining> = None;
    let mut pending = Pending::default();
    loop {
        let rows = tx.query(RECHAIN_FETCH, &[]).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows.iter().map(Row::read) {
            if current.as_ref().map(|c| c.stream_id) != Some(row.stream_id) {
                end_rechain(current.take(), &mut pending, &mut done);
                done.streams += 1;
            }
            done.events += 1;
            let (old_prev, new_prev) = match &current {
                Some(c) => (Some(c.old_hash.as_slice()), Some(c.new_hash.clone())),
                None => (None, None),
            };
            let intact = row.prev_hash.as_deref() == old_prev
                && legacy_event_hash(row.prev_hash.as_deref(), &row.event()) == row.hash;
            let new_hash = if intact {
                event_hash(key, new_prev.as_deref(), &row.event())?
            } else {
                tracing::warn!(stream_id = %row.stream_id, version = row.stream_version,
                    "event link already broken before re-chaining: left as it is");
                done.already_broken.push(BrokenLink {
                    stream_id: row.stream_id,
                    version: row.stream_version,
                    reason: "the link was already broken in the SHA-256 chain".to_owned(),
                });
                row.hash.clone()
            };
            pending.positions.push(row.position);
            pending.prevs.push(new_prev);
            pending.hashes.push(new_hash.clone());
            current = Some(Rechaining {
                stream_id: row.stream_id,
                old_hash: row.hash,
                new_hash,
                version: row.stream_version,
                head: row.head,
            });
        }
        pending.write(&tx).await?;
    }
    end_rechain(current.take(), &mut pending, &mut done);
    pending.write(&tx).await?;
    tx.batch_execute(RECHAIN_END).await?;
    tx.execute(WRITE_MARKER, &[&ALGORITHM]).await?;
    tx.commit().await?;
    Ok(done)
}

/// Moves a re-chained stream's head to its new last link, if the head named its old last link.
fn end_rechain(stream: Option<Rechaining>, pending: &mut Pending, done: &mut Rechained) {
    let Some(stream) = stream else { return };
    match stream.head {
        Some((version, hash)) if version == stream.version && hash == stream.old_hash => {
            pending.head_ids.push(stream.stream_id);
            pending.head_hashes.push(stream.new_hash);
        }
        head => {
            let version = head.map_or(stream.version, |(version, _)| version);
            tracing::warn!(stream_id = %stream.stream_id, version,
                "stream head already did not match its last event before re-chaining: left as it is");
            done.already_broken.push(BrokenLink {
                stream_id: stream.stream_id,
                version,
                reason: "the stream's head already did not match its last event".to_owned(),
            });
        }
    }
}
