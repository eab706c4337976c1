//! `ehealth-admin`: migrations, reference data and credentials. Prints one JSON object on stdout; on bad
//! input it prints a clear message on stderr and exits non-zero.

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use deadpool_postgres::tokio_postgres::IsolationLevel;
use ehealth_domain::ClientType;
use ehealth_infra::{
    db, error::SqlState, event_store::chain, identity, projection, telemetry, Config, StoreError,
};
use serde_json::{json, Value};
use uuid::Uuid;

/// Administration of eHealth Jobs. Uses DATABASE_URL like the services.
#[derive(Debug, Parser)]
#[command(name = "ehealth-admin", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates the database if missing and applies every pending migration.
    Migrate,
    /// Legal entities.
    #[command(subcommand)]
    LegalEntity(LegalEntityCommand),
    /// Users (employees) of legal entities.
    #[command(subcommand)]
    User(UserCommand),
    /// Bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// API clients' api-keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Read models.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// The event log's tamper evidence (uses EVENT_CHAIN_KEY).
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum LegalEntityCommand {
    /// Creates a legal entity; prints {"id":…}.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// EDRPOU code (8–10 digits).
        #[arg(long)]
        edrpou: String,
        /// Type, e.g. MSP, PRIMARY_CARE, PHARMACY, NHS, OUTPATIENT.
        #[arg(long = "type")]
        le_type: String,
        /// Status.
        #[arg(long, default_value = "ACTIVE", value_parser = identity::LEGAL_ENTITY_STATUSES)]
        status: String,
    },
    /// Sets a legal entity's status.
    SetStatus {
        /// The legal entity.
        id: Uuid,
        /// ACTIVE, SUSPENDED or CLOSED.
        #[arg(value_parser = identity::LEGAL_ENTITY_STATUSES)]
        status: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Creates a user of a legal entity; prints {"id":…}.
    Create {
        /// The user's legal entity.
        #[arg(long)]
        legal_entity: Uuid,
        /// Employee type, e.g. DOCTOR.
        #[arg(long)]
        employee_type: Option<String>,
        /// Employee status, e.g. APPROVED.
        #[arg(long)]
        employee_status: Option<String>,
        /// Create the user inactive.
        #[arg(long)]
        inactive: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Issues a bearer token for a user; prints {"token":…,"expires_at":…}.
    Issue {
        /// The user; the token's legal entity is the user's.
        #[arg(long)]
        user: Uuid,
        /// MSP, PRIMARY_CARE, PHARMACY, MSP_PHARMACY, NHS or MIS.
        #[arg(long, value_parser = ClientType::ALL.map(ClientType::as_str))]
        client_type: String,
        /// Space-separated scopes, e.g. "service_request:use job:read".
        #[arg(long)]
        scopes: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(1..=31_536_000))]
        ttl_seconds: i64,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Issues an api-key for a new API client; prints {"api_key":…}.
    Issue {
        /// The client's name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Rebuilds every projection from the event log; prints {"streams":…}.
    Rebuild,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Checks the keyed hash chain of every stream (or of one) with EVENT_CHAIN_KEY; prints
    /// {"streams":…,"events":…,"invalid":[{"stream_id":…,"version":…,"reason":…}]} and exits 2 when a link is
    /// broken.
    Verify {
        /// Check only this stream.
        #[arg(long)]
        stream: Option<Uuid>,
    },
}

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
    // write, and a rebuild truncates projections.
    let pool = db::pool(&config.migration_database_url, 2)?;
    let mut client = pool.get().await.context("cannot connect to the database")?;
    let client_ref = &client;
    Ok(match cli.command {
        Command::Migrate => unreachable!("handled above"),
        Command::LegalEntity(LegalEntityCommand::Create {
            name,
            edrpou,
            le_type,
            status,
        }) => {
            if name.trim().is_empty() || le_type.trim().is_empty() {
                bail!("--name and --type must not be empty");
            }
            if !(8..=10).contains(&edrpou.len()) || !edrpou.bytes().all(|b| b.is_ascii_digit()) {
                bail!("--edrpou must be 8 to 10 digits");
            }
            json!({ "id": identity::create_legal_entity(client_ref, &name, &edrpou, &le_type, &status).await? })
        }
        Command::LegalEntity(LegalEntityCommand::SetStatus { id, status }) => {
            if !identity::set_legal_entity_status(client_ref, id, &status).await? {
                bail!("legal entity {id} does not exist");
            }
            json!({ "id": id, "status": status })
        }
        Command::User(UserCommand::Create {
            legal_entity,
            employee_type,
            employee_status,
            inactive,
        }) => {
            let created = identity::create_user(
                client_ref,
                legal_entity,
                employee_type.as_deref(),
                employee_status.as_deref(),
                !inactive,
            )
            .await;
            match created {
                Ok(id) => json!({ "id": id }),
                Err(e) if is_foreign_key_violation(&e) => {
                    bail!("legal entity {legal_entity} does not exist")
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Token(TokenCommand::Issue {
            user,
            client_type,
            scopes,
            ttl_seconds,
        }) => {
            let client_type = ClientType::parse(&client_type).context("unknown client type")?;
            let scopes: Vec<String> = scopes.split_whitespace().map(str::to_owned).collect();
            if scopes.is_empty() {
                bail!("--scopes must name at least one scope");
            }
            let ttl = chrono::Duration::seconds(ttl_seconds);
            match identity::issue_token(client_ref, user, client_type, &scopes, ttl).await {
                Ok(issued) => json!(issued),
                Err(e) if is_foreign_key_violation(&e) => bail!("user {user} does not exist"),
                Err(e) => return Err(e.into()),
            }
        }
        Command::ApiKey(ApiKeyCommand::Issue { name }) => {
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            json!({ "api_key": identity::issue_api_key(client_ref, &name).await? })
        }
        Command::Projections(ProjectionsCommand::Rebuild) => {
            json!({ "streams": projection::rebuild_all(&mut client).await? })
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

fn is_foreign_key_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres(pg) if pg.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION))
}
