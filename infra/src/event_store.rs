//! The append-only event store.
//!
//! A stream is one aggregate instance. [`load`] replays it; [`append`] writes new events in one round trip,
//! bumping the `streams` row only where its version is still the one the writer read, so two writers that
//! read the same version cannot both append ([`StoreError::Conflict`]). Every event carries a link, an
//! HMAC-SHA-256 keyed by `EVENT_CHAIN_KEY` over the RFC 8785 form of the event and the previous link: a
//! per-stream chain that only the key's holder can make, which [`verify_chain`] checks (see [`chain`]).

use std::collections::HashMap;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use ehealth_domain::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::StoreError;

pub mod chain;

/// Who and what caused an event; stored as the event's `metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The job whose command produced the event.
    pub causation_id: Option<Uuid>,
    /// The request id of the HTTP request that submitted the command.
    pub correlation_id: String,
    /// The user who asked.
    pub actor_user_id: Uuid,
    /// The user's legal entity.
    pub legal_entity_id: Uuid,
    /// The token's client type.
    pub client_type: String,
}

/// A stream as read: its folded state, version and the hash to chain the next event to.
#[derive(Debug, Clone)]
pub struct Loaded<A: Aggregate> {
    /// The folded state.
    pub state: A::State,
    /// The version of the last event; 0 for a stream with no events.
    pub version: i64,
    /// The hash of the last event.
    pub last_hash: Option<Vec<u8>>,
    /// When the first event was recorded.
    pub first_recorded_at: Option<DateTime<Utc>>,
    /// When the last event was recorded.
    pub last_recorded_at: Option<DateTime<Utc>>,
}

/// One stored event, as auditors read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// Global position (gap-free order of the feed).
    pub position: i64,
    /// The stream's aggregate type.
    pub stream_type: String,
    /// The stream.
    pub stream_id: Uuid,
    /// The event's version within its stream, from 1.
    pub stream_version: i64,
    /// The event's own id.
    pub event_id: Uuid,
    /// e.g. `released`.
    pub event_type: String,
    /// Version of the payload's schema.
    pub schema_version: i32,
    /// The payload.
    pub data: Value,
    /// See [`Metadata`].
    pub metadata: Value,
    /// When the event was appended.
    pub recorded_at: DateTime<Utc>,
    /// The previous event's hash (hex); null for the first event of a stream.
    pub prev_hash: Option<String>,
    /// This event's hash (hex).
    pub hash: String,
}

const SELECT_STREAM: &str =
    "SELECT position, stream_type, stream_id, stream_version, event_id, event_type, \
     schema_version, data, metadata, recorded_at, prev_hash, hash FROM events WHERE stream_id = $1 \
     ORDER BY stream_version";

// `streams.last_hash` is not written here: the runtime role may not update it. The owner's trigger
// `events_set_stream_head` (V7) sets it to the link of the stream's last event as the events are inserted.
const APPEND_NEW_STREAM: &str = "WITH bump AS ( \
       INSERT INTO streams (stream_id, stream_type, version, last_hash) VALUES ($1, $2, $3, '') \
       ON CONFLICT (stream_id) DO NOTHING RETURNING stream_id) \
     INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, schema_version, data, \
       metadata, recorded_at, prev_hash, hash) \
     SELECT $2, bump.stream_id, e.version, e.event_id, e.event_type, 1, e.data, $4, $5, e.prev_hash, e.hash \
     FROM bump, unnest($6::bigint[], $7::uuid[], $8::text[], $9::jsonb[], $10::bytea[], $11::bytea[]) \
       AS e(version, event_id, event_type, data, prev_hash, hash)";

const APPEND_EXISTING_STREAM: &str = "WITH bump AS ( \
       UPDATE streams SET version = $3, updated_at = now() \
       WHERE stream_id = $1 AND stream_type = $2 AND version = $12 RETURNING stream_id) \
     INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, schema_version, data, \
       metadata, recorded_at, prev_hash, hash) \
     SELECT $2, bump.stream_id, e.version, e.event_id, e.event_type, 1, e.data, $4, $5, e.prev_hash, e.hash \
     FROM bump, unnest($6::bigint[], $7::uuid[], $8::text[], $9::jsonb[], $10::bytea[], $11::bytea[]) \
       AS e(version, event_id, event_type, data, prev_hash, hash)";

/// Splits an aggregate event into its `event_type` and `data` (events are adjacently tagged).
pub fn encode_event<A: Aggregate>(event: &A::Event) -> Result<(String, Value), StoreError> {
    let mut value = serde_json::to_value(event)?;
    let event_type = value
        .get("event_type")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| serde::ser::Error::custom("events must be tagged with event_type"))
        .map_err(StoreError::Data)?;
    let data = value
        .as_object_mut()
        .and_then(|o| o.remove("data"))
        .unwrap_or(Value::Null);
    Ok((event_type, data))
}

/// Rebuilds an aggregate event from its `event_type` and `data`.
pub fn decode_event<A: Aggregate>(event_type: &str, data: &Value) -> Result<A::Event, StoreError> {
    let tagged = if data.is_null() {
        json!({ "event_type": event_type })
    } else {
        json!({ "event_type": event_type, "data": data })
    };
    Ok(serde_json::from_value(tagged)?)
}

/// The schema version `append` writes (the `1` of the `APPEND_*` statements). The chain covers the stored
/// value, so the two cannot drift apart unnoticed.
pub const SCHEMA_VERSION: i32 = 1;

fn row_to_stored(row: &tokio_postgres::Row) -> StoredEvent {
    let prev_hash: Option<Vec<u8>> = row.get("prev_hash");
    let hash: Vec<u8> = row.get("hash");
    StoredEvent {
        position: row.get("position"),
        stream_type: row.get("stream_type"),
        stream_id: row.get("stream_id"),
        stream_version: row.get("stream_version"),
        event_id: row.get("event_id"),
        event_type: row.get("event_type"),
        schema_version: row.get("schema_version"),
        data: row.get("data"),
        metadata: row.get("metadata"),
        recorded_at: row.get("recorded_at"),
        prev_hash: prev_hash.map(hex::encode),
        hash: hex::encode(hash),
    }
}

/// Reads every event of one stream, oldest first.
pub async fn read_stream(
    client: &impl GenericClient,
    stream_id: Uuid,
) -> Result<Vec<StoredEvent>, StoreError> {
    let statement = client.prepare_cached(SELECT_STREAM).await?;
    let rows = client.query(&statement, &[&stream_id]).await?;
    Ok(rows.iter().map(row_to_stored).collect())
}

/// Replays a stream into the aggregate's state. A stream of another aggregate type is no stream of `A`: it
/// loads as an empty one (the decision answers "not found"), and an append to it would fail its version
/// check, so one aggregate can never write into another's stream.
pub async fn load<A: Aggregate>(
    client: &impl GenericClient,
    stream_id: Uuid,
) -> Result<Loaded<A>, StoreError> {
    let events = read_stream(client, stream_id).await?;
    fold_stream::<A>(&events)
}

const SELECT_STREAMS: &str =
    "SELECT position, stream_type, stream_id, stream_version, event_id, event_type, \
     schema_version, data, metadata, recorded_at, prev_hash, hash FROM events WHERE stream_id = ANY($1) \
     ORDER BY stream_id, stream_version";

/// [`load`] for several streams in one statement (the worker's batches): every id of `stream_ids` has its
/// entry, an empty stream for one with no events (or of another aggregate type).
pub async fn load_many<A: Aggregate>(
    client: &impl GenericClient,
    stream_ids: &[Uuid],
) -> Result<HashMap<Uuid, Loaded<A>>, StoreError> {
    let statement = client.prepare_cached(SELECT_STREAMS).await?;
    let rows = client.query(&statement, &[&stream_ids]).await?;
    let mut streams: HashMap<Uuid, Vec<StoredEvent>> = HashMap::new();
    for row in &rows {
        let event = row_to_stored(row);
        streams.entry(event.stream_id).or_default().push(event);
    }
    stream_ids
        .iter()
        .map(|id| {
            let events = streams.remove(id).unwrap_or_default();
            Ok((*id, fold_stream::<A>(&events)?))
        })
        .collect()
}

/// Folds one stream's events as [`load`] does: a stream of another aggregate type folds as an empty one.
fn fold_stream<A: Aggregate>(events: &[StoredEvent]) -> Result<Loaded<A>, StoreError> {
    if events
        .first()
        .is_some_and(|e| e.stream_type != A::STREAM_TYPE)
    {
        return fold_stored::<A>(&[]);
    }
    fold_stored::<A>(events)
}

const SELECT_HEAD: &str =
    "SELECT stream_type, version, last_hash FROM streams WHERE stream_id = $1";
const LOCK_HEAD: &str =
    "SELECT stream_type, version, last_hash FROM streams WHERE stream_id = $1 FOR UPDATE";

/// A stream's head — its version and the link to chain the next event to — without its events, for an
/// aggregate whose decisions read no history (`media_link`): appending at the head then costs the same on a
/// stream of a million events as on a new one. The state is the default one and the recorded times are
/// unknown (`None`). A stream of another aggregate type loads as a new stream of `A`, like [`load`]: an
/// append to it fails its version check.
pub async fn load_head<A: Aggregate>(
    client: &impl GenericClient,
    stream_id: Uuid,
) -> Result<Loaded<A>, StoreError> {
    head::<A>(client, stream_id, SELECT_HEAD).await
}

/// [`load_head`], and the stream's row stays locked until the caller's transaction ends: writers appending
/// at the head of one stream queue behind each other instead of failing each other's version check. Only
/// the first events of a new stream can still meet a [`StoreError::Conflict`] (there is no row to lock yet).
pub async fn lock_head<A: Aggregate>(
    tx: &impl GenericClient,
    stream_id: Uuid,
) -> Result<Loaded<A>, StoreError> {
    head::<A>(tx, stream_id, LOCK_HEAD).await
}

async fn head<A: Aggregate>(
    client: &impl GenericClient,
    stream_id: Uuid,
    sql: &str,
) -> Result<Loaded<A>, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    let row = client
        .query_opt(&statement, &[&stream_id])
        .await?
        .filter(|row| row.get::<_, &str>("stream_type") == A::STREAM_TYPE);
    Ok(Loaded {
        state: A::State::default(),
        version: row.as_ref().map_or(0, |row| row.get("version")),
        last_hash: row.map(|row| row.get("last_hash")),
        first_recorded_at: None,
        last_recorded_at: None,
    })
}

/// Folds already-read stored events into a [`Loaded`] state.
pub fn fold_stored<A: Aggregate>(events: &[StoredEvent]) -> Result<Loaded<A>, StoreError> {
    let mut state = A::State::default();
    for stored in events {
        state = A::apply(state, &decode_event::<A>(&stored.event_type, &stored.data)?);
    }
    let last = events.last();
    Ok(Loaded {
        state,
        version: last.map_or(0, |e| e.stream_version),
        last_hash: last
            .map(|e| hex::decode(&e.hash))
            .transpose()
            .map_err(|e| {
                StoreError::Data(serde::de::Error::custom(format!(
                    "stored hash is not hex: {e}"
                )))
            })?,
        first_recorded_at: events.first().map(|e| e.recorded_at),
        last_recorded_at: last.map(|e| e.recorded_at),
    })
}

/// What an append wrote.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The stream's version after the append.
    pub version: i64,
    /// The hash of the last appended event.
    pub last_hash: Vec<u8>,
    /// The timestamp recorded with the events.
    pub recorded_at: DateTime<Utc>,
}

/// The current time at the precision Postgres stores (microseconds), so that a time written into an event
/// or a row reads back exactly as it was computed.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Appends `events` to `stream_id`, expecting the stream to be exactly as `loaded` saw it. Runs inside the
/// caller's transaction so that projections and the job are written atomically with the events.
pub async fn append<A: Aggregate>(
    tx: &impl GenericClient,
    stream_id: Uuid,
    loaded: &Loaded<A>,
    events: &[A::Event],
    metadata: &Metadata,
) -> Result<Appended, StoreError> {
    // Microsecond precision: what Postgres stores, so the hash can be recomputed from the row.
    let recorded_at = now();
    let metadata = serde_json::to_value(metadata)?;

    let mut prev = loaded.last_hash.clone();
    let (mut versions, mut ids, mut types, mut datas, mut prevs, mut hashes) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, event) in events.iter().enumerate() {
        let version = loaded.version + 1 + i as i64;
        let event_id = Uuid::new_v4();
        let (event_type, data) = encode_event::<A>(event)?;
        let hash = chain::event_hash(
            chain::chain_key(),
            prev.as_deref(),
            &chain::ChainedEvent {
                stream_type: A::STREAM_TYPE,
                stream_id,
                stream_version: version,
                event_id,
                event_type: &event_type,
                schema_version: SCHEMA_VERSION,
                data: &data,
                metadata: &metadata,
                recorded_at,
            },
        )?;
        versions.push(version);
        ids.push(event_id);
        types.push(event_type);
        datas.push(data);
        prevs.push(prev.clone());
        hashes.push(hash.clone());
        prev = Some(hash);
    }
    let Some(last_hash) = prev.filter(|_| !events.is_empty()) else {
        return Ok(Appended {
            version: loaded.version,
            last_hash: loaded.last_hash.clone().unwrap_or_default(),
            recorded_at,
        });
    };
    let new_version = loaded.version + events.len() as i64;

    let sql = if loaded.version == 0 {
        APPEND_NEW_STREAM
    } else {
        APPEND_EXISTING_STREAM
    };
    let statement = tx.prepare_cached(sql).await?;
    let stream_type = A::STREAM_TYPE.to_owned();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
        &stream_id,
        &stream_type,
        &new_version,
        &metadata,
        &recorded_at,
        &versions,
        &ids,
        &types,
        &datas,
        &prevs,
        &hashes,
    ];
    if loaded.version != 0 {
        params.push(&loaded.version);
    }
    let inserted = match tx.execute(&statement, &params).await {
        Ok(n) => n,
        // The unique (stream_id, stream_version) backstop.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => 0,
        Err(e) => return Err(e.into()),
    };
    if inserted as usize != events.len() {
        return Err(StoreError::Conflict {
            stream_id,
            expected: loaded.version,
        });
    }
    Ok(Appended {
        version: new_version,
        last_hash,
        recorded_at,
    })
}

/// Recomputes every link of a stream with the process's key ([`chain::chain_key`]); `Ok(true)` when the chain
/// links from the first event to the last and matches the `streams` row. [`chain::verify_streams`] says
/// what is broken, and checks every stream.
pub async fn verify_chain(
    client: &impl GenericClient,
    stream_id: Uuid,
) -> Result<bool, StoreError> {
    let report = chain::verify_streams(client, chain::chain_key(), Some(stream_id)).await?;
    Ok(report.invalid.is_empty())
}

/// A place in the global feed: the writing transaction's id and the event's position, the feed's order.
///
/// Clients see it only as an opaque string ([`FeedCursor::encode`]: base64url, no padding, of
/// `tx_id:position`), so the order can change again without breaking them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedCursor {
    /// The writing transaction (`pg_current_xact_id()`, an xid8).
    pub tx_id: u64,
    /// The event's global position.
    pub position: i64,
}

impl FeedCursor {
    /// Before the first event.
    pub const START: FeedCursor = FeedCursor {
        tx_id: 0,
        position: 0,
    };

    /// The opaque form given to clients as `paging.next_after`.
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.tx_id, self.position))
    }

    /// Reads a cursor given by [`FeedCursor::encode`]; `None` for anything else (a bare position included).
    pub fn decode(value: &str) -> Option<FeedCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let (tx_id, position) = text.split_once(':')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(tx_id) || !digits(position) {
            return None;
        }
        Some(FeedCursor {
            tx_id: tx_id.parse().ok()?,
            position: position.parse().ok()?,
        })
    }
}

/// What a feed page is restricted to; every `None` filter lets everything through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    /// Only events of streams of this aggregate type.
    pub stream_type: Option<String>,
    /// Only events of this stream.
    pub stream_id: Option<Uuid>,
    /// Only events of streams that hold at least one event written for this legal entity
    /// (`metadata.legal_entity_id`): the streams that legal entity took part in.
    pub legal_entity_id: Option<Uuid>,
    /// Only events recorded at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events recorded before this time.
    pub to: Option<DateTime<Utc>>,
}

/// One page of the feed and the cursor to read the next one from.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    /// The events, in `(tx_id, position)` order.
    pub events: Vec<StoredEvent>,
    /// After the last event of the page; the requested cursor when the page is empty.
    pub next_after: FeedCursor,
}

// The feed's statement is this head, one clause per filter given, and the tail. Parameters keep their numbers
// whichever clauses are present (they are prepared with explicit types), so each combination of filters is
// its own cached statement with a plan of its own.
const FEED_HEAD: &str = "SELECT e.tx_id::text AS tx_id, e.position, e.stream_type, e.stream_id, \
     e.stream_version, e.event_id, e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at, \
     e.prev_hash, e.hash FROM events e \
     WHERE (e.tx_id, e.position) > ($1::xid8, $2) AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())";
const FEED_BY_STREAM_TYPE: &str = " AND e.stream_type = $4";
const FEED_BY_STREAM: &str = " AND e.stream_id = $5";
const FEED_BY_LEGAL_ENTITY: &str = " AND e.stream_id IN \
     (SELECT t.stream_id FROM events t WHERE t.metadata->>'legal_entity_id' = $6)";
const FEED_FROM: &str = " AND e.recorded_at >= $7";
const FEED_TO: &str = " AND e.recorded_at < $8";
const FEED_TAIL: &str = " ORDER BY e.tx_id, e.position LIMIT $3";
const FEED_PARAM_TYPES: [tokio_postgres::types::Type; 8] = {
    use tokio_postgres::types::Type;
    [
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::UUID,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
    ]
};

/// The global feed after `after`, at most `limit` events that pass `filter`, in `(tx_id, position)` order.
///
/// Positions are handed out when a transaction inserts, not when it commits, so a lower position can
/// commit after a higher one. The feed therefore serves only events whose transaction is older than the
/// oldest one still running (`pg_snapshot_xmin`) — those can gain no more events — and orders them by
/// transaction first: an event that commits late belongs to a transaction the feed has not passed yet, so
/// it comes on a later page and is never skipped. A transaction that stays open holds the feed back
/// (nothing is skipped; the feed waits).
pub async fn read_feed(
    client: &impl GenericClient,
    after: FeedCursor,
    limit: i64,
    filter: &FeedFilter,
) -> Result<FeedPage, StoreError> {
    let mut sql = String::from(FEED_HEAD);
    for (present, clause) in [
        (filter.stream_type.is_some(), FEED_BY_STREAM_TYPE),
        (filter.stream_id.is_some(), FEED_BY_STREAM),
        (filter.legal_entity_id.is_some(), FEED_BY_LEGAL_ENTITY),
        (filter.from.is_some(), FEED_FROM),
        (filter.to.is_some(), FEED_TO),
    ] {
        if present {
            sql.push_str(clause);
        }
    }
    sql.push_str(FEED_TAIL);
    let statement = client.prepare_typed_cached(&sql, &FEED_PARAM_TYPES).await?;
    let after_tx = after.tx_id.to_string();
    // `metadata` is JSON written by serde, where a UUID is its lower-case hyphenated text.
    let legal_entity = filter.legal_entity_id.map(|id| id.to_string());
    let rows = client
        .query(
            &statement,
            &[
                &after_tx,
                &after.position,
                &limit,
                &filter.stream_type,
                &filter.stream_id,
                &legal_entity,
                &filter.from,
                &filter.to,
            ],
        )
        .await?;
    let mut next_after = after;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let event = row_to_stored(row);
        let tx_id: String = row.get("tx_id");
        next_after = FeedCursor {
            tx_id: tx_id.parse().map_err(|e| {
                StoreError::Data(serde::de::Error::custom(format!(
                    "tx_id {tx_id} is not an xid8: {e}"
                )))
            })?,
            position: event.position,
        };
        events.push(event);
    }
    Ok(FeedPage { events, next_after })
}

/// Whether any of `events` was written for `legal_entity_id` (`metadata.legal_entity_id`), the rule the
/// feed's [`FeedFilter::legal_entity_id`] applies to whole streams.
pub fn written_for(events: &[StoredEvent], legal_entity_id: Uuid) -> bool {
    events.iter().any(|e| {
        e.metadata
            .get("legal_entity_id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse::<Uuid>().ok())
            == Some(legal_entity_id)
    })
}
