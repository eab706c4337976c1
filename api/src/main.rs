//! `ehealth-api`: the HTTP api. Reads its configuration from the environment (see README.md).

use ehealth_api::Application;
use ehealth_infra::{db, signal::shutdown_signal, telemetry, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let config = Config::from_env()?;
    telemetry::init(&config.log_format);
    ehealth_infra::event_store::chain::install_chain_key(&config.event_chain_key)?
        .warn_if_development();
    // Migrations are `ehealth-admin migrate`'s, as the owner; the service runs as the runtime role only.
    db::check_runtime_role(
        &db::pool(&config.database_url, 1)?,
        config.allow_privileged_db_role,
        std::time::Duration::from_secs(60),
    )
    .await?;
    Application::build(config)
        .await?
        .run_until(shutdown)
        .await?;
    Ok(())
}
