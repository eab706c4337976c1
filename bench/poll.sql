-- pgbench baseline of the poll path: one select by primary key of a job, the columns GET /Jobs/{id} reads
-- (infra/src/jobs.rs `view`, as captured with log_statement=all; before issue 11's JobView it read the whole
-- row, `get`). The service also looks the bearer token up first (infra/src/identity.rs SELECT_PRINCIPAL;
-- cached for AUTH_CACHE_TTL_MS): the baseline is what one query by key costs.
-- Variables (-D): job (the polled job's id).
SELECT id, status, status_code, response, links, eta, updated_at, owner_legal_entity_id
  FROM jobs WHERE id = :job;
