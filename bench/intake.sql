-- pgbench baseline of the intake path: what one POST /api/patients/{id}/service_requests runs in PostgreSQL
-- since d119f93/a75f7dc (issue 11), taken from the code (-M prepared, like the service's prepare_cached):
--   infra/src/jobs.rs SUBMIT (run by `insert_or_find`, without a transaction when there is no Idempotency-Key):
--   the identical pending command, else the job and its outbox row, in one statement.
-- Not run per request, so not here: the api key and token lookups (infra/src/identity.rs: a bounded cache
-- answers them), and marking the outbox row published (outbox::PublishedMarker marks many rows per UPDATE in
-- the background) — so pgbench does slightly less than the service. The ids the service makes in Rust (job id
-- = message id) come from gen_random_uuid(); the command hash is a per-transaction number instead of a
-- SHA-256 (same column, unique per request like the service's). bench/intake_da85656.sql is the intake before.
-- Variables (-D): k=0, base (distinct per run), le, actor (JSON).
\set k :k + 1
\set n :base + :client_id * 10000000 + :k
WITH pending AS (
    SELECT id, type, status, status_code, response, links, stream_type, stream_id, command, actor, request_id,
        attempts, eta, inserted_at, updated_at, finished_at, command_hash, idempotency_key
    FROM jobs WHERE owner_legal_entity_id = :le AND command_hash = :n::text AND status = 'pending'),
  job AS (
    INSERT INTO jobs (id, type, stream_type, stream_id, command, actor, owner_legal_entity_id, command_hash,
        idempotency_key, request_id, eta)
    SELECT gen_random_uuid(), 'service_request.create'::text, 'service_request'::text, gen_random_uuid(),
        '{"id": "1bc3e7a0-d3ff-4147-a2e6-94fba6537423", "code": "LAB-001", "action": "create", "category": "laboratory_procedure", "patient_id": "a5243c4f-10da-42b9-92e3-4fca1f6a8ee4", "program_id": "4bee8fab-2a99-43ce-9dc5-c0adf13141bf", "expiration_date": null}'::jsonb,
        :actor::jsonb, :le::uuid, :n::text, NULL::text, 'c0ffee00-0000-4000-8000-000000000000'::text,
        now() + interval '5 seconds'
    WHERE NOT EXISTS (SELECT 1 FROM pending)
    RETURNING id, type, status, status_code, response, links, stream_type, stream_id, command, actor, request_id,
        attempts, eta, inserted_at, updated_at, finished_at, command_hash, idempotency_key),
  message AS (
    INSERT INTO outbox (message_id, exchange, routing_key, payload)
    SELECT id, 'commands'::text, 'command'::text, jsonb_build_object('job_id', id) FROM job RETURNING id)
SELECT id, type, status, status_code, response, links, stream_type, stream_id, command, actor, request_id,
    attempts, eta, inserted_at, updated_at, finished_at, command_hash, idempotency_key,
    (SELECT id FROM message) AS outbox_id FROM job
UNION ALL SELECT id, type, status, status_code, response, links, stream_type, stream_id, command, actor,
    request_id, attempts, eta, inserted_at, updated_at, finished_at, command_hash, idempotency_key, NULL
  FROM pending;
