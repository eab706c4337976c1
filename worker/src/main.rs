//! `ehealth-worker`: consumes commands, relays the outbox. Reads its configuration from the environment.

use ehealth_infra::{cli, signal::shutdown_signal};
use ehealth_worker::Worker;

/// What `ehealth-worker --help` prints.
const HELP: &str = "\
ehealth-worker: the worker of eHealth Jobs. Consumes command messages from RabbitMQ and decides each job in
one transaction (load the stream, decide, append events, project, finish the job); retries transient faults
with back-off, ends dead-lettered and overdue jobs failed_with_error, republishes lost commands, relays the
outbox and runs object deletions. Serves /metrics and /health/* on WORKER_HTTP_ADDR.

Usage: ehealth-worker

It takes no arguments: it is configured by environment variables, all documented in README.md
(\"Configuration\"). The most important:
  DATABASE_URL            PostgreSQL as the least-privilege runtime role (run `ehealth-admin migrate` first)
  AMQP_URL                RabbitMQ
  QUEUE_PREFIX            prefix of every exchange and queue (the api's must match)
  WORKER_HTTP_ADDR        address of /metrics and /health/* (default 127.0.0.1:8081)
  WORKER_PREFETCH         commands held at once (default 16)
  WORKER_MAX_ATTEMPTS     attempts before a command is dead-lettered (default 10)
  JOB_DEADLINE_SECONDS    a job pending this long ends failed_with_error (default 3600)
  EVENT_CHAIN_KEY         secret keying the event chain (the same for api, worker and ehealth-admin)
  S3_ENDPOINT, DATA_DIR   external object store, or the embedded one's directory (shared with the api)
  LOG_FORMAT, RUST_LOG    text or json; log filter (logs go to stderr)

Options:
  -h, --help     Print this help
  -V, --version  Print the version
";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::handle_service_args("ehealth-worker", env!("CARGO_PKG_VERSION"), HELP);
    let shutdown = shutdown_signal();
    let config = cli::prepare_service().await?;
    Worker::build(config)?.run_until(shutdown).await;
    Ok(())
}
