//! `ehealth-admin`: the operator's tool — migrations, reference data, credentials, jobs and dead letters.
//! Prints one JSON object on stdout; on bad input it prints a clear message on stderr, exits non-zero and
//! prints nothing on stdout. Logs go to stderr.

// The crate root is this file, so its modules are named by path: they live in `admin/`.
#[path = "admin/args.rs"]
mod args;
#[path = "admin/credentials.rs"]
mod credentials;
#[path = "admin/jobs.rs"]
mod jobs;
#[path = "admin/reference.rs"]
mod reference;

use anyhow::{bail, Context as _};
use clap::Parser;
use deadpool_postgres::tokio_postgres::IsolationLevel;
use ehealth_infra::{db, event_store::chain, projection, telemetry, Config};
use serde_json::{json, Value};

use args::{AuditCommand, Cli, Command, ProjectionsCommand};

/// `audit verify` found links that do not verify: its report is printed all the same, and the exit code (2)
/// tells scripts a broken chain from a failure to check (1).
#[derive(Debug, thiserror::Error)]
#[error("the event chain does not verify")]
struct BrokenChain(Value);

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(output) => print_json(&output),
        Err(e) => match e.downcast::<BrokenChain>() {
            Ok(BrokenChain(report)) => {
                print_json(&report);
                eprintln!("ehealth-admin: the event chain does not verify");
                std::process::exit(2);
            }
            Err(e) => {
                eprintln!("ehealth-admin: {e:#}");
                std::process::exit(1);
            }
        },
    }
}

#[allow(clippy::print_stdout)]
fn print_json(value: &Value) {
    println!("{value}");
}

async fn run(cli: Cli) -> anyhow::Result<Value> {
    let config = Config::from_env()?;
    telemetry::init("text");
    // Before `migrate`, which re-chains a pre-V5 log with it.
    let chain_key = chain::install_chain_key(&config.event_chain_key)?;
    if let Command::Migrate = cli.command {
        db::create_database_if_missing(&config.migration_database_url).await?;
        let applied = db::migrate(&config.migration_database_url, &config.database_url).await?;
        return Ok(json!({ "applied": applied }));
    }
    // The operator's tool works as the owner: reference data and credentials are not the runtime role's to
    // write, and a rebuild creates and swaps in tables.
    let pool = db::pool(&config.migration_database_url, 2)?;
    let mut client = pool.get().await.context("cannot connect to the database")?;
    Ok(match cli.command {
        Command::Migrate => unreachable!("handled above"),
        Command::LegalEntity(command) => credentials::legal_entity(&client, command).await?,
        Command::User(command) => credentials::user(&client, command).await?,
        Command::Reference(command) => reference::reference(&mut client, command).await?,
        Command::Division(command) => reference::division(&client, command).await?,
        Command::Employee(command) => reference::employee(&client, command).await?,
        Command::Token(command) => credentials::token(&client, command).await?,
        Command::ApiKey(command) => credentials::api_key(&client, command).await?,
        Command::Jobs(command) => jobs::jobs(&mut client, command).await?,
        Command::DeadLetters(command) => jobs::dead_letters(&mut client, command).await?,
        Command::Projections(ProjectionsCommand::Rebuild) => {
            // Shadow tables built in short transactions, swapped in one by one; progress on stderr.
            json!(
                projection::rebuild_all_in_chunks(&mut client, projection::DEFAULT_CHUNK_EVENTS)
                    .await?
            )
        }
        Command::Audit(AuditCommand::Verify { stream }) => {
            if chain_key.is_development() {
                eprintln!(
                    "ehealth-admin: EVENT_CHAIN_KEY is the public development key: a valid chain proves \
                     nothing outside development"
                );
            }
            // One snapshot for the whole log, while the services go on appending.
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let verification = chain::verify_streams(&tx, chain_key, stream).await?;
            tx.commit().await?;
            if let (Some(id), 0) = (stream, verification.streams) {
                bail!("stream {id} does not exist");
            }
            let report = json!(verification);
            if !verification.invalid.is_empty() {
                return Err(BrokenChain(report).into());
            }
            report
        }
    })
}
