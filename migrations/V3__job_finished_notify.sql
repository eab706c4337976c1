-- Finished jobs are announced on the `job_finished` channel (payload: the job id), so that api requests
-- under `Prefer: wait` wake when their job ends instead of polling. Whoever finishes a job — the worker, a
-- sweeper, the dead-letter consumer — notifies through this trigger; the notification is delivered when the
-- finishing transaction commits, and never if it rolls back.

CREATE FUNCTION notify_job_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_finished', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_finished_notify
    AFTER UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (OLD.status = 'pending' AND NEW.status <> 'pending')
    EXECUTE FUNCTION notify_job_finished();
