-- pgbench baseline of the poll path: one select by primary key of a job, the row GET /Jobs/{id} reads
-- (infra/src/jobs.rs `get`, as captured with log_statement=all). The service also looks the bearer token up
-- first (infra/src/identity.rs SELECT_PRINCIPAL): the baseline is what one query by key costs.
-- Variables (-D): job (the polled job's id).
SELECT id, type, status, status_code, response, links, stream_type, stream_id, command, actor, request_id,
    attempts, eta, inserted_at, updated_at, finished_at, command_hash, idempotency_key
  FROM jobs WHERE id = :job;
