-- Every accepted command ends: what the sweeper, the relay and the per-link upload keys need.

-- The sweeper looks at pending jobs by their last activity (`updated_at`: accepted, started, republished).
CREATE INDEX jobs_pending_updated_idx ON jobs (updated_at) WHERE status = 'pending';

-- The relay claims rows for a short lease, publishes them outside any transaction, then marks them.
ALTER TABLE outbox ADD COLUMN claimed_until timestamptz;
-- Published rows are purged after OUTBOX_TTL_HOURS.
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Spec 000 upload links: every `initialize` gets an object key of its own (`{stream}/{upload_id}`);
-- `finalize` records the newest link's object. Neither a stale link nor the delayed deletion of a refused
-- upload can touch another upload's object.
CREATE TABLE upload_links (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id  uuid NOT NULL,
    file_name  text NOT NULL,
    object_key text NOT NULL UNIQUE,
    issued_by  uuid NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX upload_links_name_idx ON upload_links (stream_id, file_name, id DESC);
CREATE INDEX upload_links_issued_at_idx ON upload_links (issued_at);
