-- The worker's scheduler asks every SCHEDULER_INTERVAL_SECONDS for active service requests past their
-- expiration date (worker/src/scheduler.rs): a partial index keeps that question cheap however many requests
-- have ended. (Contract requests past their start date have V9's contract_requests_open_start_idx.)
CREATE INDEX service_requests_active_expiration_idx ON service_requests (expiration_date)
    WHERE status = 'active' AND expiration_date IS NOT NULL;
