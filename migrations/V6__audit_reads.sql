-- Audit reads: the global feed's order and the tenant filter of personal tokens.

-- The feed pages by (tx_id, position): events of older transactions first, so a position that commits after
-- a higher one is served on a later page instead of being skipped (infra/src/event_store.rs `read_feed`).
CREATE INDEX events_feed_idx ON events (tx_id, position);

-- A personal token reads the streams that hold at least one event written for its legal entity.
CREATE INDEX events_legal_entity_stream_idx ON events ((metadata->>'legal_entity_id'), stream_id);
