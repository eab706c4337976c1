-- pgbench baseline of the end-to-end path: the statements the worker runs for one queued create since aea7c67
-- (issue 11), in order, taken from the code (-M prepared). Where each comes from:
--   1. worker/src/handler.rs: jobs::get (is the job still pending?) before the transaction
--   2-8. the job's transaction: jobs::lock (SELECT … FOR UPDATE) pipelined with event_store::load (the
--      stream's events), the append (streams row + events in one statement, infra/src/event_store.rs), the
--      projection upsert (infra/src/projection/service_request.rs) pipelined with the StatusChangeEvent outbox
--      row (outbox::insert), jobs::finish (which also counts the attempt)
-- Not per job, so not here: marking the outbox row published (outbox::PublishedMarker batches it in the
-- background), so pgbench does slightly less than the worker. The jobs are pending rows scripts/bench.sh
-- seeds before the run (id md5('job' || n), stream md5('stream' || n)); each client walks its own range
-- n = base + client_id * 10^7 + k. The event's hash is a SHA-256 here, an HMAC in the service
-- (infra/src/event_store/chain.rs); the JSON values are captured ones, the event's id the stream's (as the
-- service writes it, so that a rebuild folds these streams too). bench/worker_da85656.sql is the job before.
-- The worker groups the jobs the broker hands over together (up to WORKER_BATCH) in one transaction: one
-- jobs read and one lock (id = ANY) pipelined with one load of their streams (stream_id = ANY), the same
-- per-job writes pipelined, one COMMIT (worker/src/handler.rs process_batch). This baseline stays the
-- per-job SQL, one job per transaction, as a job queue without batching would run it.
-- Variables (-D): k=0, base (the seeded range).
\set k :k + 1
\set n :base + :client_id * 10000000 + :k
SELECT id, type, status, status_code, response, links, stream_type, stream_id, command, actor, request_id,
    attempts, eta, inserted_at, updated_at, finished_at, command_hash, idempotency_key
  FROM jobs WHERE id = md5('job' || :n::text)::uuid;
BEGIN;
\startpipeline
SELECT id, type, status, status_code, response, links, stream_type, stream_id, command, actor, request_id,
    attempts, eta, inserted_at, updated_at, finished_at, command_hash, idempotency_key
  FROM jobs WHERE id = md5('job' || :n::text)::uuid FOR UPDATE;
SELECT position, stream_type, stream_id, stream_version, event_id, event_type, schema_version, data, metadata,
    recorded_at, prev_hash, hash
  FROM events WHERE stream_id = md5('stream' || :n::text)::uuid ORDER BY stream_version;
\endpipeline
WITH bump AS (
    INSERT INTO streams (stream_id, stream_type, version, last_hash)
      VALUES (md5('stream' || :n::text)::uuid, 'service_request', 1, '') ON CONFLICT (stream_id) DO NOTHING
      RETURNING stream_id)
  INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type, schema_version, data,
      metadata, recorded_at, prev_hash, hash)
  SELECT 'service_request', bump.stream_id, e.version, e.event_id, e.event_type, 1, e.data,
      '{"client_type": "MSP", "causation_id": "cf179f09-8327-4efc-bbe3-713135bf8ba9", "actor_user_id": "5d8a81b6-3c79-42b9-91e9-0a4ad2bf3682", "correlation_id": "d05727fd-217e-4b76-9a06-8ede2a2c30a1", "legal_entity_id": "2ec46154-fadf-4d46-80e7-aa86213b4604"}',
      now(), e.prev_hash, e.hash
  FROM bump, unnest(ARRAY[1]::bigint[], ARRAY[gen_random_uuid()], ARRAY['created'],
      ARRAY['{"id": "1bc3e7a0-d3ff-4147-a2e6-94fba6537423", "code": "LAB-001", "category": "laboratory_procedure", "patient_id": "a5243c4f-10da-42b9-92e3-4fca1f6a8ee4", "program_id": "4bee8fab-2a99-43ce-9dc5-c0adf13141bf", "expiration_date": null, "requester_user_id": "5d8a81b6-3c79-42b9-91e9-0a4ad2bf3682", "program_processing_status": "new", "requester_legal_entity_id": "2ec46154-fadf-4d46-80e7-aa86213b4604"}'::jsonb
        || jsonb_build_object('id', md5('stream' || :n::text)::uuid)],
      ARRAY[NULL::bytea], ARRAY[sha256(convert_to(:n::text, 'UTF8'))])
    AS e(version, event_id, event_type, data, prev_hash, hash);
\startpipeline
INSERT INTO service_requests (id, patient_id, category, code, program_id, expiration_date, status,
    program_processing_status, status_reason, requester_legal_entity_id, requester_user_id,
    used_by_legal_entity_id, used_by_employee_id, version, inserted_at, updated_at)
  VALUES (md5('stream' || :n::text)::uuid, 'a5243c4f-10da-42b9-92e3-4fca1f6a8ee4', 'laboratory_procedure', 'LAB-001',
    '4bee8fab-2a99-43ce-9dc5-c0adf13141bf', NULL, 'active', 'new', NULL, '2ec46154-fadf-4d46-80e7-aa86213b4604',
    '5d8a81b6-3c79-42b9-91e9-0a4ad2bf3682', NULL, NULL, 1, now(), now())
  ON CONFLICT (id) DO UPDATE SET patient_id = EXCLUDED.patient_id, category = EXCLUDED.category,
    code = EXCLUDED.code, program_id = EXCLUDED.program_id, expiration_date = EXCLUDED.expiration_date,
    status = EXCLUDED.status, program_processing_status = EXCLUDED.program_processing_status,
    status_reason = EXCLUDED.status_reason, requester_legal_entity_id = EXCLUDED.requester_legal_entity_id,
    requester_user_id = EXCLUDED.requester_user_id, used_by_legal_entity_id = EXCLUDED.used_by_legal_entity_id,
    used_by_employee_id = EXCLUDED.used_by_employee_id, version = EXCLUDED.version,
    inserted_at = EXCLUDED.inserted_at, updated_at = EXCLUDED.updated_at;
INSERT INTO outbox (message_id, exchange, routing_key, payload)
  VALUES (gen_random_uuid(), 'events', 'service_request.status_changed',
    '{"entity_id": "1bc3e7a0-d3ff-4147-a2e6-94fba6537423", "changed_by": "5d8a81b6-3c79-42b9-91e9-0a4ad2bf3682", "event_time": "2026-11-26T00:20:53.978770Z", "event_type": "StatusChangeEvent", "properties": {"status": {"new_value": "active"}}, "entity_type": "service_request"}')
  RETURNING id, message_id, exchange, routing_key, payload;
\endpipeline
UPDATE jobs SET status = 'processed', status_code = 201,
    response = '{"id": "1bc3e7a0-d3ff-4147-a2e6-94fba6537423", "code": "LAB-001", "status": "active", "program": {"identifier": {"type": {"coding": [{"code": "medical_program", "system": "eHealth/resources"}]}, "value": "4bee8fab-2a99-43ce-9dc5-c0adf13141bf"}}, "subject": {"identifier": {"type": {"coding": [{"code": "patient", "system": "eHealth/resources"}]}, "value": "a5243c4f-10da-42b9-92e3-4fca1f6a8ee4"}}, "category": "laboratory_procedure", "updated_at": "2026-11-26T00:20:53.978770Z", "inserted_at": "2026-11-26T00:20:53.978770Z", "status_reason": null, "expiration_date": null, "used_by_employee": null, "requester_employee": {"identifier": {"type": {"coding": [{"code": "employee", "system": "eHealth/resources"}]}, "value": "5d8a81b6-3c79-42b9-91e9-0a4ad2bf3682"}}, "used_by_legal_entity": null, "requester_legal_entity": {"identifier": {"type": {"coding": [{"code": "legal_entity", "system": "eHealth/resources"}]}, "value": "2ec46154-fadf-4d46-80e7-aa86213b4604"}}, "program_processing_status": "new"}',
    links = '[{"href": "/api/service_requests/1bc3e7a0-d3ff-4147-a2e6-94fba6537423", "entity": "service_request"}]',
    attempts = attempts + 1, updated_at = now(), finished_at = now()
  WHERE id = md5('job' || :n::text)::uuid AND status = 'pending';
COMMIT;
