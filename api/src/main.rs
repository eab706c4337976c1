//! `ehealth-api`: the HTTP api. Reads its configuration from the environment (see README.md).

use ehealth_api::Application;
use ehealth_infra::{cli, signal::shutdown_signal};

/// What `ehealth-api --help` prints.
const HELP: &str = "\
ehealth-api: the HTTP api of eHealth Jobs. Authenticates callers (api-key, bearer token), validates commands,
accepts them as jobs (202 with a job link; the worker decides them), answers job polling and reads from the
projections and the audit log, and serves the embedded S3-protocol store unless S3_ENDPOINT is set.

Usage: ehealth-api

It takes no arguments: it is configured by environment variables, all documented in README.md
(\"Configuration\"). The most important:
  DATABASE_URL            PostgreSQL as the least-privilege runtime role (run `ehealth-admin migrate` first)
  AMQP_URL                RabbitMQ
  HTTP_ADDR               address to bind (default 127.0.0.1:8080)
  PUBLIC_BASE_URL         base of meta.url as clients reach the api
  QUEUE_PREFIX            prefix of every exchange and queue (the worker's must match)
  EVENT_CHAIN_KEY         secret keying the event chain (the same for api, worker and ehealth-admin)
  S3_ENDPOINT, DATA_DIR   external object store, or the embedded one's directory (shared with the worker)
  LOG_FORMAT, RUST_LOG    text or json; log filter (logs go to stderr)

Options:
  -h, --help     Print this help
  -V, --version  Print the version
";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::handle_service_args("ehealth-api", env!("CARGO_PKG_VERSION"), HELP);
    let shutdown = shutdown_signal();
    let config = cli::prepare_service().await?;
    Application::build(config)
        .await?
        .run_until(shutdown)
        .await?;
    Ok(())
}
