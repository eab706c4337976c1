//! `ehealth-worker`: consumes commands, relays the outbox. Reads its configuration from the environment.

use ehealth_infra::{db, signal::shutdown_signal, telemetry, Config};
use ehealth_worker::Worker;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let config = Config::from_env()?;
    telemetry::init(&config.log_format);
    ehealth_infra::event_store::chain::install_chain_key(&config.event_chain_key)?
        .warn_if_development();
    db::create_database_if_missing(&config.database_url).await?;
    db::migrate(&config.database_url).await?;
    Worker::build(config)?.run_until(shutdown).await;
    Ok(())
}
