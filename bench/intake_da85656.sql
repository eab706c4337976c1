-- pgbench reference of the intake path as it was at da85656 (before issue 11): the statements one
-- POST /api/patients/{id}/service_requests ran then, in order, as captured with log_statement=all at da85656
-- (scripts/bench.sh runs it with -M prepared, like the service's prepared statements). Where each comes from:
--   1. api/src/auth.rs `ApiKey` -> infra/src/identity.rs (api_clients by key hash)
--   2. api/src/auth.rs `Caller` -> infra/src/identity.rs SELECT_PRINCIPAL (token, user, legal entity)
--   3-7. infra/src/jobs.rs `try_submit`: the identical pending command, the job, the outbox row (outbox::insert)
--   8. infra/src/outbox.rs `mark_published`, after api/src/intake.rs has published the command to RabbitMQ
-- Differences: ids the service makes in Rust (job id, message id) come from gen_random_uuid(); the command
-- hash is a per-transaction number instead of a SHA-256 (same column, unique per request like the service's).
-- Kept as a fixed amount of work to compare commits with; bench/intake.sql follows the code.
-- Variables (-D): k=0, base (distinct per run), le, keyhash, tokenhash ('\x…'), actor (JSON).
\set k :k + 1
\set n :base + :client_id * 10000000 + :k
SELECT 1 FROM api_clients WHERE key_hash = :keyhash AND is_active;
SELECT t.user_id, u.is_active, u.legal_entity_id, le.type, le.status, t.client_type, t.scopes, t.expires_at
  FROM tokens t JOIN users u ON u.id = t.user_id JOIN legal_entities le ON le.id = u.legal_entity_id
  WHERE t.token_hash = :tokenhash AND t.revoked_at IS NULL;
BEGIN;
SELECT id, type, status, status_code, response, links, stream_type, stream_id, command, actor, request_id,
    attempts, eta, inserted_at, updated_at, finished_at, command_hash, idempotency_key
  FROM jobs WHERE owner_legal_entity_id = :le AND command_hash = :n AND status = 'pending';
INSERT INTO jobs (id, type, stream_type, stream_id, command, actor, owner_legal_entity_id, command_hash,
    idempotency_key, request_id, eta)
  VALUES (gen_random_uuid(), 'service_request.create', 'service_request', gen_random_uuid(),
    '{"id": "1bc3e7a0-d3ff-4147-a2e6-94fba6537423", "code": "LAB-001", "action": "create", "category": "laboratory_procedure", "patient_id": "a5243c4f-10da-42b9-92e3-4fca1f6a8ee4", "program_id": "4bee8fab-2a99-43ce-9dc5-c0adf13141bf", "expiration_date": null}',
    :actor, :le, :n, NULL, 'c0ffee00-0000-4000-8000-000000000000', now() + interval '5 seconds')
  RETURNING id, type, status, status_code, response, links, stream_type, stream_id, command, actor, request_id,
    attempts, eta, inserted_at, updated_at, finished_at, command_hash, idempotency_key;
INSERT INTO outbox (message_id, exchange, routing_key, payload)
  VALUES (gen_random_uuid(), 'commands', 'command', '{"job_id": "cf179f09-8327-4efc-bbe3-713135bf8ba9"}')
  RETURNING id, message_id, exchange, routing_key, payload \gset o_
COMMIT;
UPDATE outbox SET published_at = now() WHERE id = ANY(ARRAY[:o_id::bigint]);
