//! The keyed hash chain of every stream: tamper evidence that needs a key.
//!
//! Each event's `hash` column holds its *link*:
//!
//! ```text
//! link(v) = HMAC-SHA-256(key     = the UTF-8 bytes of EVENT_CHAIN_KEY,
//!                        message = the RFC 8785 canonical JSON of
//!   { "stream_type", "stream_id", "stream_version", "event_id", "event_type", "schema_version",
//!     "data", "metadata",
//!     "recorded_at": RFC 3339 in UTC with microseconds and "Z", e.g. "2025-01-02T03:04:05.123456Z",
//!     "prev_hash":   lower-case hex of link(v - 1), or null for version 1 })
//! ```
//!
//! `prev_hash` repeats link(v - 1) and `streams.last_hash` holds the stream's last link. Every column of an
//! event is covered but `position` and `tx_id`, which the database assigns when it stores the row (the order
//! within a stream is covered by `stream_version` and the previous link). Someone who can write the tables
//! but does not hold the key cannot make a changed, inserted, reordered or re-chained event verify. The key
//! lives in the environment of the processes, never in the database.
//!
//! Up to migration V4 the link was an unkeyed SHA-256 ([`legacy_event_hash`]); [`rechain`], run by
//! `db::migrate`, converts such a database once.

use std::{fmt, sync::OnceLock};

use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::GenericClient;
use futures_util::TryStreamExt;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::StoredEvent;
use crate::{canonical, StoreError};

/// The chain's read: every event with its stream's head, then `$tail` (a filter and the order).
macro_rules! select_chain {
    ($tail:literal) => {
        concat!(
            "SELECT e.position, e.stream_type, e.stream_id, e.stream_version, e.event_id, e.event_type, \
             e.schema_version, e.data, e.metadata, e.recorded_at, e.prev_hash, e.hash, \
             s.version AS head_version, s.last_hash AS head_hash \
             FROM events e LEFT JOIN streams s ON s.stream_id = e.stream_id ",
            $tail
        )
    };
}

mod rechain;
pub use rechain::{rechain, Rechained};

/// The default `EVENT_CHAIN_KEY`. It is public (it is in the source and the README), so a chain made with it
/// proves nothing: local development and tests only. The services warn at start when they run with it.
pub const DEVELOPMENT_CHAIN_KEY: &str = "development-only-chain-key";

/// `chain_state.algorithm` of a database whose links are [`event_hash`] links.
pub const ALGORITHM: &str = "hmac-sha256";
/// `chain_state.algorithm` of a database still chained the pre-V5 way ([`legacy_event_hash`]).
pub const LEGACY_ALGORITHM: &str = "sha256";

/// The secret that keys every link. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ChainKey(Vec<u8>);

impl ChainKey {
    /// The key whose bytes are the UTF-8 bytes of `key` (HMAC takes a key of any length; 32 random bytes,
    /// e.g. `openssl rand -hex 32`, are plenty).
    pub fn new(key: &str) -> Self {
        Self(key.as_bytes().to_vec())
    }

    /// The public [`DEVELOPMENT_CHAIN_KEY`].
    pub fn development() -> Self {
        Self::new(DEVELOPMENT_CHAIN_KEY)
    }

    /// True for the public development key, which anybody can use to forge a chain.
    pub fn is_development(&self) -> bool {
        self.0 == DEVELOPMENT_CHAIN_KEY.as_bytes()
    }

    /// Logs a warning when this is the development key: the one place that says so for every service, so
    /// that a deployment which forgot `EVENT_CHAIN_KEY` is visible in its logs from the first line.
    pub fn warn_if_development(&self) {
        if self.is_development() {
            tracing::warn!(
                "EVENT_CHAIN_KEY is the public development key {DEVELOPMENT_CHAIN_KEY:?}: anyone who can \
                 write the database can forge the event chain; set a secret key outside development"
            );
        }
    }

    fn mac(&self) -> Result<Hmac<Sha256>, StoreError> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .map_err(|e| StoreError::Data(serde::ser::Error::custom(format!("chain key: {e}"))))
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_development() {
            "ChainKey(development)"
        } else {
            "ChainKey(<secret>)"
        })
    }
}

/// A process was asked to use a second, different chain key.
#[derive(Debug, thiserror::Error)]
#[error(
    "another EVENT_CHAIN_KEY is already in use in this process: one process links with one key"
)]
pub struct ChainKeyError;

static PROCESS_KEY: OnceLock<ChainKey> = OnceLock::new();

/// Makes `key` (`EVENT_CHAIN_KEY`) the key [`chain_key`] returns, the one `append`, `verify_chain` and
/// `db::migrate` use. Binaries call it once at start, before anything is appended; calling it again with the
/// same key is harmless, with a different one an error, so links of one process never mix keys.
pub fn install_chain_key(key: &str) -> Result<&'static ChainKey, ChainKeyError> {
    let key = ChainKey::new(key);
    let installed = PROCESS_KEY.get_or_init(|| key.clone());
    if *installed == key {
        Ok(installed)
    } else {
        Err(ChainKeyError)
    }
}

/// The process's chain key: the one [`install_chain_key`] installed, else (in-process tests, which run with
/// `Config::default()`) the development key, which then stays installed.
pub fn chain_key() -> &'static ChainKey {
    PROCESS_KEY.get_or_init(ChainKey::development)
}

/// The fields of one event that its link covers, as they are stored.
#[derive(Debug, Clone, Copy)]
pub struct ChainedEvent<'a> {
    /// The stream's aggregate type.
    pub stream_type: &'a str,
    /// The stream.
    pub stream_id: Uuid,
    /// The event's version within its stream.
    pub stream_version: i64,
    /// The event's own id.
    pub event_id: Uuid,
    /// e.g. `released`.
    pub event_type: &'a str,
    /// The version of the payload's schema, as stored.
    pub schema_version: i32,
    /// The payload.
    pub data: &'a Value,
    /// Causation, correlation and actor.
    pub metadata: &'a Value,
    /// When the event was appended (microseconds, as Postgres stores it).
    pub recorded_at: DateTime<Utc>,
}

impl<'a> From<&'a StoredEvent> for ChainedEvent<'a> {
    fn from(e: &'a StoredEvent) -> Self {
        Self {
            stream_type: &e.stream_type,
            stream_id: e.stream_id,
            stream_version: e.stream_version,
            event_id: e.event_id,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            data: &e.data,
            metadata: &e.metadata,
            recorded_at: e.recorded_at,
        }
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The exact bytes a link MACs: the RFC 8785 form of the event's covered fields and the previous link. An
/// auditor with the key can recompute any link from them with any RFC 8785 and HMAC implementation.
pub fn canonical_event(
    prev_hash: Option<&[u8]>,
    event: &ChainedEvent<'_>,
) -> Result<Vec<u8>, StoreError> {
    Ok(canonical::to_vec(&json!({
        "stream_type": event.stream_type,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "data": event.data,
        "metadata": event.metadata,
        "recorded_at": timestamp(event.recorded_at),
        "prev_hash": prev_hash.map(hex::encode),
    }))?)
}

/// The link of one event: HMAC-SHA-256 keyed by `key` over [`canonical_event`].
pub fn event_hash(
    key: &ChainKey,
    prev_hash: Option<&[u8]>,
    event: &ChainedEvent<'_>,
) -> Result<Vec<u8>, StoreError> {
    let mut mac = key.mac()?;
    mac.update(&canonical_event(prev_hash, event)?);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// The pre-V5 link, SHA-256(previous link ‖ a home-made canonical JSON with `schema_version` fixed at 1 and
/// no key). Kept only so that [`rechain`] re-chains what was intact and nothing else.
pub fn legacy_event_hash(prev_hash: Option<&[u8]>, event: &ChainedEvent<'_>) -> Vec<u8> {
    let mut canonical_event = String::new();
    legacy_canonical(
        &json!({
            "stream_type": event.stream_type,
            "stream_id": event.stream_id,
            "stream_version": event.stream_version,
            "event_id": event.event_id,
            "event_type": event.event_type,
            "schema_version": 1,
            "data": event.data,
            "metadata": event.metadata,
            "recorded_at": timestamp(event.recorded_at),
        }),
        &mut canonical_event,
    );
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.unwrap_or_default());
    hasher.update(canonical_event.as_bytes());
    hasher.finalize().to_vec()
}

/// The canonical JSON of up to V4, byte for byte: keys sorted as Rust strings, serde_json's scalars.
fn legacy_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                legacy_canonical(&map[key.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                legacy_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// One event (or stream head) whose link does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// The stream.
    pub stream_id: Uuid,
    /// The version whose link is broken (for a head that does not match: the version the head names).
    pub version: i64,
    /// What does not match, for the auditor.
    pub reason: String,
}

/// What a verification checked and what did not verify; serializes as `ehealth-admin audit verify` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Streams checked (with events, or with a `streams` row).
    pub streams: u64,
    /// Events checked.
    pub events: u64,
    /// Every link that does not verify: stream by stream in version order, then heads without events.
    pub invalid: Vec<BrokenLink>,
}

const VERIFY_ALL: &str = select_chain!("ORDER BY e.stream_id, e.stream_version");

const VERIFY_ONE: &str = select_chain!("WHERE e.stream_id = $1 ORDER BY e.stream_version");

const HEADS_WITHOUT_EVENTS: &str = "SELECT s.stream_id, s.version FROM streams s \
     WHERE ($1::uuid IS NULL OR s.stream_id = $1) \
       AND NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = s.stream_id) ORDER BY s.stream_id";

/// One event row with its stream's head, as the chain reads it.
struct Row {
    position: i64,
    stream_type: String,
    stream_id: Uuid,
    stream_version: i64,
    event_id: Uuid,
    event_type: String,
    schema_version: i32,
    data: Value,
    metadata: Value,
    recorded_at: DateTime<Utc>,
    prev_hash: Option<Vec<u8>>,
    hash: Vec<u8>,
    head: Option<(i64, Vec<u8>)>,
}

impl Row {
    fn read(row: &tokio_postgres::Row) -> Self {
        let head_version: Option<i64> = row.get("head_version");
        let head_hash: Option<Vec<u8>> = row.get("head_hash");
        Self {
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
            prev_hash: row.get("prev_hash"),
            hash: row.get("hash"),
            head: head_version.zip(head_hash),
        }
    }

    fn event(&self) -> ChainedEvent<'_> {
        ChainedEvent {
            stream_type: &self.stream_type,
            stream_id: self.stream_id,
            stream_version: self.stream_version,
            event_id: self.event_id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            data: &self.data,
            metadata: &self.metadata,
            recorded_at: self.recorded_at,
        }
    }
}

/// The stream a walk is in: its last event and the head its rows carry.
struct Tail {
    stream_id: Uuid,
    version: i64,
    hash: Vec<u8>,
    head: Option<(i64, Vec<u8>)>,
}

/// Checks rows in stream and version order, one at a time, so that a whole log verifies in constant memory.
struct Verifier<'k> {
    key: &'k ChainKey,
    tail: Option<Tail>,
    report: Verification,
}

impl Verifier<'_> {
    fn check(&mut self, row: Row) -> Result<(), StoreError> {
        if self.tail.as_ref().map(|t| t.stream_id) != Some(row.stream_id) {
            self.end_stream();
            self.report.streams += 1;
        }
        self.report.events += 1;
        let (prev_version, prev_hash) = match &self.tail {
            Some(t) => (t.version, Some(t.hash.as_slice())),
            None => (0, None),
        };
        let mut reasons = Vec::new();
        if row.stream_version != prev_version + 1 {
            reasons.push(format!(
                "versions jump from {prev_version} to {}: events are missing",
                row.stream_version
            ));
        }
        if row.prev_hash.as_deref() != prev_hash {
            reasons.push(match prev_hash {
                None => "the first event has a prev_hash".to_owned(),
                Some(_) => format!("prev_hash is not the link of version {prev_version}"),
            });
        }
        if event_hash(self.key, row.prev_hash.as_deref(), &row.event())? != row.hash {
            reasons.push(
                "the link does not match the event: the row was changed, or chained without this key"
                    .to_owned(),
            );
        }
        if !reasons.is_empty() {
            self.report.invalid.push(BrokenLink {
                stream_id: row.stream_id,
                version: row.stream_version,
                reason: reasons.join("; "),
            });
        }
        self.tail = Some(Tail {
            stream_id: row.stream_id,
            version: row.stream_version,
            hash: row.hash,
            head: row.head,
        });
        Ok(())
    }

    /// The head of the stream just walked (`streams.version`, `streams.last_hash`) must name its last link.
    fn end_stream(&mut self) {
        let Some(tail) = self.tail.take() else { return };
        let reason = match &tail.head {
            None => Some((tail.version, "the stream has events but no streams row".to_owned())),
            Some((version, hash)) if (*version, hash) != (tail.version, &tail.hash) => Some((
                *version,
                format!(
                    "the stream's head (version {version}) is not the link of its last event (version {})",
                    tail.version
                ),
            )),
            Some(_) => None,
        };
        if let Some((version, reason)) = reason {
            self.report.invalid.push(BrokenLink {
                stream_id: tail.stream_id,
                version,
                reason,
            });
        }
    }
}

/// Verifies the chain of one stream, or of every stream, with `key`: every link, every `prev_hash`, gap-free
/// versions and each stream's head. Run it in a repeatable-read transaction to check a whole log against
/// one snapshot while the service appends.
pub async fn verify_streams(
    client: &impl GenericClient,
    key: &ChainKey,
    stream_id: Option<Uuid>,
) -> Result<Verification, StoreError> {
    let statement = client
        .prepare_cached(if stream_id.is_some() {
            VERIFY_ONE
        } else {
            VERIFY_ALL
        })
        .await?;
    let params: Vec<Uuid> = stream_id.into_iter().collect();
    let rows = client.query_raw(&statement, params).await?;
    futures_util::pin_mut!(rows);
    let mut verifier = Verifier {
        key,
        tail: None,
        report: Verification::default(),
    };
    while let Some(row) = rows.try_next().await? {
        verifier.check(Row::read(&row))?;
    }
    verifier.end_stream();
    let mut report = verifier.report;
    let headless = client.prepare_cached(HEADS_WITHOUT_EVENTS).await?;
    for row in client.query(&headless, &[&stream_id]).await? {
        report.streams += 1;
        let version: i64 = row.get("version");
        report.invalid.push(BrokenLink {
            stream_id: row.get("stream_id"),
            version,
            reason: format!(
                "the stream's head names version {version} but the stream has no events"
            ),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-02T03:04:05.123456Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn uuid(n: u8) -> Uuid {
        Uuid::parse_str(&format!("00000000-0000-4000-8000-0000000000{n:02}")).unwrap()
    }

    /// Two events whose links were computed independently (Python's `hmac`, `hashlib` and `json` with sorted
    /// keys, which is RFC 8785 for these values).
    fn with_two_events(check: impl Fn(ChainedEvent<'_>, ChainedEvent<'_>)) {
        let data = json!({"code": "LAB-001", "size": 5, "nested": {"b": [true, null], "a": "x"}});
        let metadata = json!({"correlation_id": "r-1", "causation_id": null});
        let first = ChainedEvent {
            stream_type: "service_request",
            stream_id: uuid(1),
            stream_version: 1,
            event_id: uuid(2),
            event_type: "created",
            schema_version: 1,
            data: &data,
            metadata: &metadata,
            recorded_at: at(),
        };
        let second = ChainedEvent {
            stream_version: 2,
            event_id: uuid(3),
            event_type: "released",
            data: &Value::Null,
            ..first
        };
        check(first, second);
    }

    #[test]
    fn a_link_is_hmac_sha256_over_the_rfc_8785_event_and_the_previous_link() {
        with_two_events(|first, second| {
            let key = ChainKey::development();
            let one = event_hash(&key, None, &first).unwrap();
            assert_eq!(
                hex::encode(&one),
                "8598424bedf19142dd7b326bf855663f1668893fd411d1a19b6e8aa0f6a1a503"
            );
            let two = event_hash(&key, Some(&one), &second).unwrap();
            assert_eq!(
                hex::encode(two),
                "109cc85514033dd0a7ed7628d17c68d81b842e36c67a46396b0afa711a80feed"
            );
            assert_eq!(
                String::from_utf8(canonical_event(None, &first).unwrap()).unwrap(),
                r#"{"data":{"code":"LAB-001","nested":{"a":"x","b":[true,null]},"size":5},"event_id":"00000000-0000-4000-8000-000000000002","event_type":"created","metadata":{"causation_id":null,"correlation_id":"r-1"},"prev_hash":null,"recorded_at":"2025-01-02T03:04:05.123456Z","schema_version":1,"stream_id":"00000000-0000-4000-8000-000000000001","stream_type":"service_request","stream_version":1}"#
            );
        });
    }

    #[test]
    fn the_key_the_schema_version_and_the_previous_link_all_change_the_link() {
        with_two_events(|first, _| {
            let key = ChainKey::development();
            let link = event_hash(&key, None, &first).unwrap();
            let other_key = event_hash(&ChainKey::new("another key"), None, &first).unwrap();
            let schema = ChainedEvent {
                schema_version: 2,
                ..first
            };
            assert_ne!(link, other_key);
            assert_ne!(link, event_hash(&key, None, &schema).unwrap());
            assert_ne!(link, event_hash(&key, Some(&[0; 32]), &first).unwrap());
        });
    }

    #[test]
    fn legacy_links_are_the_pre_v5_sha256_ones() {
        with_two_events(|first, second| {
            let one = legacy_event_hash(None, &first);
            assert_eq!(
                hex::encode(&one),
                "54842405dac315e3f043046adcef4a2f5749219d89354f3f20e2f1eee61e1cfd"
            );
            assert_eq!(
                hex::encode(legacy_event_hash(Some(&one), &second)),
                "368bfac675c90bdc9207d5126d7285b66ef5757c19b1653111996b4514c886e8"
            );
        });
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        assert_eq!(
            format!("{:?}", ChainKey::new("s3cr3t")),
            "ChainKey(<secret>)"
        );
        assert_eq!(
            format!("{:?}", ChainKey::development()),
            "ChainKey(development)"
        );
    }
}
