-- Spec 000: analysis-result files, and object deletions that run after a commit.

-- Projection of the `analysis_files` streams: one row per live file. Rebuilt from the events alone.
CREATE TABLE analysis_files (
    id              uuid PRIMARY KEY,
    stream_id       uuid NOT NULL,
    legal_entity_id uuid NOT NULL,
    patient_id      uuid NOT NULL,
    analysis_id     uuid NOT NULL,
    file_name       text NOT NULL,
    object_key      text NOT NULL,
    size            bigint NOT NULL,
    content_type    text NOT NULL,
    etag            text NOT NULL,
    is_send         boolean NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    -- A name is unique among an analysis's live files (the aggregate decides it; this is the backstop).
    UNIQUE (stream_id, file_name)
);

-- The storage outbox: objects to delete once the transaction that scheduled them has committed.
CREATE TABLE object_deletions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bucket          text NOT NULL,
    key             text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    inserted_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX object_deletions_due_idx ON object_deletions (next_attempt_at);
