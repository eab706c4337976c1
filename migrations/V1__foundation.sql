-- Foundation schema: reference data and identity, the append-only event store, jobs, the outbox and the
-- service-request projection. Applied by refinery (see infra/src/db.rs).

-- Reference data and identity ------------------------------------------------------------------------------

CREATE TABLE legal_entities (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    edrpou      text NOT NULL,
    type        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'CLOSED')),
    inserted_at timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id              uuid PRIMARY KEY,
    legal_entity_id uuid NOT NULL REFERENCES legal_entities (id),
    employee_type   text,
    employee_status text,
    is_active       boolean NOT NULL DEFAULT true,
    inserted_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_legal_entity_idx ON users (legal_entity_id);

-- API clients (MIS systems) authenticate with the `api-key` header; only its SHA-256 is stored.
CREATE TABLE api_clients (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE,
    is_active   boolean NOT NULL DEFAULT true,
    inserted_at timestamptz NOT NULL DEFAULT now()
);

-- Opaque bearer tokens; only their SHA-256 is stored. The token's legal entity is its user's.
CREATE TABLE tokens (
    id          uuid PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    user_id     uuid NOT NULL REFERENCES users (id),
    client_type text NOT NULL
        CHECK (client_type IN ('MSP', 'PRIMARY_CARE', 'PHARMACY', 'MSP_PHARMACY', 'NHS', 'MIS')),
    scopes      text[] NOT NULL,
    expires_at  timestamptz NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now()
);

-- Event store --------------------------------------------------------------------------------------------

-- One row per stream: its current version and the hash of its last event. Appends bump this row where the
-- version is the one the writer read (optimistic concurrency).
CREATE TABLE streams (
    stream_id   uuid PRIMARY KEY,
    stream_type text NOT NULL,
    version     bigint NOT NULL CHECK (version > 0),
    last_hash   bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction: feed readers serve only events of transactions older than the oldest one
    -- still running, so a position that commits late is never skipped.
    tx_id          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_type    text NOT NULL,
    stream_id      uuid NOT NULL,
    stream_version bigint NOT NULL CHECK (stream_version > 0),
    event_id       uuid NOT NULL UNIQUE,
    event_type     text NOT NULL,
    schema_version integer NOT NULL DEFAULT 1,
    data           jsonb NOT NULL,
    -- causation_id (job), correlation_id (request), actor_user_id, legal_entity_id, client_type
    metadata       jsonb NOT NULL,
    recorded_at    timestamptz NOT NULL,
    -- SHA-256 over prev_hash and the canonical event: a per-stream hash chain.
    prev_hash      bytea,
    hash           bytea NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_stream_type_idx ON events (stream_type, position);

CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % is refused', TG_OP USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER events_refuse_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

-- Jobs ---------------------------------------------------------------------------------------------------

CREATE TABLE jobs (
    id                    uuid PRIMARY KEY,
    type                  text NOT NULL,
    status                text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processed', 'failed', 'failed_with_error')),
    -- What the command would have answered synchronously, and its body (result or eHealth error).
    status_code           integer,
    response              jsonb,
    links                 jsonb NOT NULL DEFAULT '[]',
    stream_type           text NOT NULL,
    stream_id             uuid NOT NULL,
    command               jsonb NOT NULL,
    actor                 jsonb NOT NULL,
    owner_legal_entity_id uuid NOT NULL,
    -- SHA-256 of (type, stream, command): an identical command while one is pending returns that job.
    command_hash          text NOT NULL,
    idempotency_key       text,
    request_id            text NOT NULL,
    attempts              integer NOT NULL DEFAULT 0,
    eta                   timestamptz NOT NULL,
    inserted_at           timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    finished_at           timestamptz
);
CREATE UNIQUE INDEX jobs_pending_command_uq ON jobs (owner_legal_entity_id, command_hash)
    WHERE status = 'pending';
CREATE UNIQUE INDEX jobs_idempotency_key_uq ON jobs (owner_legal_entity_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_finished_at_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Transactional outbox: written in the same transaction as the state it announces, published after commit
-- (publisher confirms), republished by the worker's relay while published_at is null.
CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   uuid NOT NULL UNIQUE,
    -- Logical exchange ('commands' or 'events'); the broker name adds QUEUE_PREFIX at publish time.
    exchange     text NOT NULL,
    routing_key  text NOT NULL,
    payload      jsonb NOT NULL,
    inserted_at  timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

-- Projections --------------------------------------------------------------------------------------------

CREATE TABLE service_requests (
    id                        uuid PRIMARY KEY,
    patient_id                uuid NOT NULL,
    category                  text NOT NULL,
    code                      text NOT NULL,
    program_id                uuid,
    expiration_date           date,
    status                    text NOT NULL,
    program_processing_status text,
    status_reason             text,
    requester_legal_entity_id uuid NOT NULL,
    requester_user_id         uuid NOT NULL,
    used_by_legal_entity_id   uuid,
    used_by_employee_id       uuid,
    version                   bigint NOT NULL,
    inserted_at               timestamptz NOT NULL,
    updated_at                timestamptz NOT NULL
);
CREATE INDEX service_requests_patient_idx ON service_requests (patient_id, inserted_at DESC, id);
