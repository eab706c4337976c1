-- The operator's CLI (`ehealth-admin`, issue 10): why a job ended `failed_with_error` and who ended it, jobs an
-- operator ran again, and revoked tokens.

ALTER TABLE jobs
    -- The internal reason a job ended `failed_with_error`, for operators (`ehealth-admin jobs show`): e.g.
    -- "dead-lettered: attempts exhausted", "stored command is not valid: …", "pending past
    -- JOB_DEADLINE_SECONDS". Never shown to API clients: their job answers the generic 500 `internal_error`.
    ADD COLUMN error_detail text,
    -- Who ended it `failed_with_error`: the worker's handler, the dead-letter consumer or the sweeper. The
    -- broker's dead-letter queue is emptied by the consumer by design; this column is what remembers them.
    ADD COLUMN ended_by     text CHECK (ended_by IN ('worker', 'dead_letter', 'sweeper')),
    -- `ehealth-admin jobs retry` / `dead-letters requeue`: how often an operator sent the job again and when
    -- last. The sweeper's deadline counts from the last retry, not from the first acceptance.
    ADD COLUMN retries      integer NOT NULL DEFAULT 0,
    ADD COLUMN retried_at   timestamptz;

-- `ehealth-admin jobs list`: newest first, with or without filters.
CREATE INDEX jobs_inserted_at_idx ON jobs (inserted_at DESC, id DESC);
-- `ehealth-admin dead-letters list`: the jobs the dead-letter consumer ended, newest first.
CREATE INDEX jobs_dead_lettered_idx ON jobs (finished_at DESC, id DESC)
    WHERE status = 'failed_with_error' AND ended_by = 'dead_letter';

-- `ehealth-admin token revoke`: a revoked token is unknown to the api (401) from the moment it is revoked.
ALTER TABLE tokens ADD COLUMN revoked_at timestamptz;
-- `ehealth-admin token list --user`.
CREATE INDEX tokens_user_idx ON tokens (user_id, inserted_at DESC);
