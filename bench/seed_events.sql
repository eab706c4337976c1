-- Events for the rebuild path: `count` more service-request streams, each one `created` event cloned from an
-- event the service wrote during the end-to-end path (same shape, a new stream id, patient id and event id),
-- with its streams row, in one statement per chunk. What the rebuild reads (stream type, versions, event type,
-- data) is valid; the chain links (hash) are not recomputed — `ehealth-admin audit verify` would flag these
-- streams, the rebuild does not read the links. psql variable: count.
WITH template AS (
    SELECT data, metadata FROM events WHERE stream_type = 'service_request' AND event_type = 'created'
    ORDER BY position LIMIT 1),
fresh AS MATERIALIZED (
    SELECT gen_random_uuid() AS id, gen_random_uuid() AS patient_id FROM generate_series(1, :count)),
head AS (
    INSERT INTO streams (stream_id, stream_type, version, last_hash)
    SELECT id, 'service_request', 1, '' FROM fresh)
INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, schema_version, data, metadata,
    recorded_at, prev_hash, hash)
SELECT 'service_request', fresh.id, 1, gen_random_uuid(), 'created', 1,
    template.data || jsonb_build_object('id', fresh.id, 'patient_id', fresh.patient_id),
    template.metadata, now(), NULL, sha256(uuid_send(fresh.id))
FROM fresh, template;
