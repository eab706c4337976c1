-- The tables the comparable task of the Graphile Worker baseline writes (bench/graphile/tasks/work.js): an
-- append-only event log and a projection, shaped like the service's events and service_requests.
CREATE TABLE bench_events (
    position    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id   uuid NOT NULL,
    event_type  text NOT NULL,
    data        jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bench_events_stream_idx ON bench_events (stream_id);
CREATE TABLE bench_projection (
    id         uuid PRIMARY KEY,
    data       jsonb NOT NULL,
    version    bigint NOT NULL,
    updated_at timestamptz NOT NULL
);
