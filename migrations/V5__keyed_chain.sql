-- Tamper evidence that needs a key. Up to V4 each event's link was SHA-256(prev_hash || canonical event):
-- anyone who could write the table could recompute a valid chain. From here on the link is an HMAC-SHA-256
-- keyed by EVENT_CHAIN_KEY (infra/src/event_store/chain.rs). A SQL migration cannot know the key, which never
-- enters the database, so `db::migrate` re-chains the existing streams in Rust right after the SQL
-- migrations, in one transaction, and records it here. One row: the algorithm the stored links use.
CREATE TABLE chain_state (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- 'sha256' until the re-chain ran, then 'hmac-sha256'.
    algorithm    text NOT NULL CHECK (algorithm IN ('sha256', 'hmac-sha256')),
    -- When the re-chain ran; null for a database that had no events to re-chain.
    rechained_at timestamptz
);
INSERT INTO chain_state (algorithm)
    SELECT CASE WHEN EXISTS (SELECT 1 FROM events) THEN 'sha256' ELSE 'hmac-sha256' END;

COMMENT ON COLUMN events.hash IS
    'HMAC-SHA-256 keyed by EVENT_CHAIN_KEY over the RFC 8785 event and prev_hash (see chain_state)';
COMMENT ON COLUMN events.prev_hash IS 'the previous event''s hash in the stream; null for version 1';
