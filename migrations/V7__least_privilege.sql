-- Least privilege: the runtime role (DATABASE_URL's user) may not update `streams.last_hash`, so the head of
-- a stream's chain is set by this trigger, which runs with the owner's rights (SECURITY DEFINER), as events are
-- inserted. The grants themselves are made by `ehealth-admin migrate` (infra/src/db.rs, RUNTIME_GRANTS): they
-- name a role that only the migrating process knows.

CREATE FUNCTION events_set_stream_head() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    UPDATE streams SET last_hash = NEW.hash
        WHERE stream_id = NEW.stream_id AND version = NEW.stream_version;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION events_set_stream_head() FROM PUBLIC;

CREATE TRIGGER events_set_stream_head AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_set_stream_head();
