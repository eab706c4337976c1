//! The command line of `ehealth-admin`: every command, and parsers that refuse a bad value with a clear
//! message before anything connects to the database.

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use ehealth_domain::ClientType;
use ehealth_infra::{identity, jobs::JobStatus, operator};
use uuid::Uuid;

/// The operator's tool of eHealth Jobs: migrations, reference data, credentials, jobs and dead letters.
///
/// Every call prints one JSON object on stdout; logs and errors go to stderr. A failure exits 1, a bad
/// argument 2, with nothing on stdout. It works as the database owner (MIGRATION_DATABASE_URL); `migrate`
/// also reads DATABASE_URL to create and grant the runtime role, and EVENT_CHAIN_KEY is read by `migrate`
/// and `audit verify`. README.md, "Admin CLI", lists every command.
#[derive(Debug, Parser)]
#[command(name = "ehealth-admin", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates the database if missing and applies every pending migration.
    Migrate,
    /// Legal entities.
    #[command(subcommand)]
    LegalEntity(LegalEntityCommand),
    /// Users (employees) of legal entities.
    #[command(subcommand)]
    User(UserCommand),
    /// Reference data a contract request shows: legal entities, divisions and employees from one JSON file.
    #[command(subcommand)]
    Reference(ReferenceCommand),
    /// Divisions of legal entities.
    #[command(subcommand)]
    Division(DivisionCommand),
    /// Employees (users with their party, speciality and position).
    #[command(subcommand)]
    Employee(EmployeeCommand),
    /// Bearer tokens (secrets are shown once, at issue, and never again).
    #[command(subcommand)]
    Token(TokenCommand),
    /// API clients' api-keys (secrets are shown once, at issue, and never again).
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Jobs: list, show (with the internal reason of a failure and the events caused), run a failed one again.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Jobs the dead-letter consumer ended failed_with_error (the broker's dead-letter queue itself stays
    /// empty by design).
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),
    /// Read models.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// The event log's tamper evidence (uses EVENT_CHAIN_KEY).
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `legal-entity …`
#[derive(Debug, Subcommand)]
pub enum LegalEntityCommand {
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
    /// Shows a legal entity with its status and the count of its (active) users.
    Show {
        /// The legal entity.
        id: Uuid,
    },
}

/// `reference …`
#[derive(Debug, Subcommand)]
pub enum ReferenceCommand {
    /// Upserts the legal entities, divisions and employees of FILE (`{"legal_entities":[…],"divisions":[…],
    /// "employees":[…]}`, see docs/reference-example.json) in one transaction, after validating all of it:
    /// a bad entry is named (`divisions[2].legal_entity_id: unknown legal entity …`) and nothing is written.
    /// Importing the same file again changes nothing. Prints {"legal_entities":N,"divisions":N,"employees":N}.
    Import {
        /// The JSON document.
        file: std::path::PathBuf,
    },
}

/// `division …`
#[derive(Debug, Subcommand)]
pub enum DivisionCommand {
    /// Creates (or, with --id of an existing one, replaces) a division; prints {"id":…}.
    Create {
        /// Its legal entity.
        #[arg(long)]
        legal_entity: Uuid,
        /// Its id (default: a new one).
        #[arg(long)]
        id: Option<Uuid>,
        /// Name.
        #[arg(long)]
        name: String,
        /// Addresses, JSON: [{"type":"RESIDENCE","country":"UA",…}].
        #[arg(long)]
        addresses: Option<String>,
        /// Phones, JSON: [{"type":"MOBILE","number":"+380…"}].
        #[arg(long)]
        phones: Option<String>,
        /// E-mail.
        #[arg(long)]
        email: Option<String>,
        /// Working hours, JSON: {"mon":[["08.00","12.00"]],…}.
        #[arg(long)]
        working_hours: Option<String>,
        /// In a mountain area.
        #[arg(long)]
        mountain_group: bool,
        /// Create it INACTIVE.
        #[arg(long)]
        inactive: bool,
    },
}

/// `employee …`
#[derive(Debug, Subcommand)]
pub enum EmployeeCommand {
    /// Creates (or, with --id of an existing one, replaces) an employee (a user); prints {"id":…}.
    Create {
        /// Its legal entity.
        #[arg(long)]
        legal_entity: Uuid,
        /// Its id (default: a new one).
        #[arg(long)]
        id: Option<Uuid>,
        /// First name.
        #[arg(long)]
        first_name: String,
        /// Last name.
        #[arg(long)]
        last_name: String,
        /// Patronymic.
        #[arg(long)]
        second_name: Option<String>,
        /// Speciality, JSON: {"speciality":"THERAPIST","level":"FIRST",…}.
        #[arg(long)]
        speciality: Option<String>,
        /// Position, e.g. P1.
        #[arg(long)]
        position: Option<String>,
        /// e.g. OWNER, DOCTOR.
        #[arg(long)]
        employee_type: Option<String>,
        /// e.g. APPROVED.
        #[arg(long)]
        employee_status: Option<String>,
        /// Create the user inactive.
        #[arg(long)]
        inactive: bool,
    },
}

/// `user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
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
    /// Deactivates a user: the api answers its tokens 403 "user is not active" from now on.
    Deactivate {
        /// The user.
        id: Uuid,
    },
    /// Activates a user again.
    Activate {
        /// The user.
        id: Uuid,
    },
}

/// `token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issues a bearer token for a user; prints {"id":…,"token":…,"expires_at":…}.
    Issue {
        /// The user; the token's legal entity is the user's.
        #[arg(long)]
        user: Uuid,
        /// MSP, PRIMARY_CARE, PHARMACY, MSP_PHARMACY, NHS or MIS.
        #[arg(long, value_parser = ClientType::ALL.map(ClientType::as_str))]
        client_type: String,
        /// Space-separated scopes, each one of: service_request:write service_request:use
        /// service_request:read job:read gambit:erp audit:read private_contracts:write
        /// patient_attachment:read patient_attachment:write.
        #[arg(long, value_parser = parse_scopes)]
        scopes: Scopes,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(1..=31_536_000))]
        ttl_seconds: i64,
    },
    /// Revokes a token, by its id or by the secret itself: the api answers it 401 from now on.
    #[command(group(ArgGroup::new("which").required(true).args(["id", "token"])))]
    Revoke {
        /// The token's id (from `token issue` or `token list`).
        id: Option<Uuid>,
        /// The bearer token itself (only its hash is looked up); `-` reads it from stdin, out of the shell's
        /// history and the process list. Tokens are base64url and may begin with `-`, so the value is taken
        /// as it is.
        #[arg(long, allow_hyphen_values = true)]
        token: Option<String>,
    },
    /// Lists a user's tokens, newest first, with their status (active, expired, revoked); never a secret.
    List {
        /// The user.
        #[arg(long)]
        user: Uuid,
    },
}

/// `api-key …`
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Issues an api-key for a new API client; prints {"id":…,"api_key":…}.
    Issue {
        /// The client's name.
        #[arg(long)]
        name: String,
    },
    /// Revokes an API client's api-key: the api answers it 401 "invalid api-key" from now on.
    Revoke {
        /// The API client (from `api-key issue` or `api-key list`).
        id: Uuid,
    },
    /// Lists the API clients (id, name, whether active); never a key.
    List,
}

/// A job status, as `--status` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum StatusArg {
    /// Accepted, not yet decided.
    Pending,
    /// Done.
    Processed,
    /// Rejected by a rule (404/409/422…).
    Failed,
    /// Ended by a fault (500).
    FailedWithError,
}

impl From<StatusArg> for JobStatus {
    fn from(status: StatusArg) -> Self {
        match status {
            StatusArg::Pending => JobStatus::Pending,
            StatusArg::Processed => JobStatus::Processed,
            StatusArg::Failed => JobStatus::Failed,
            StatusArg::FailedWithError => JobStatus::FailedWithError,
        }
    }
}

/// `jobs …`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Lists jobs, newest first; prints {"jobs":[…],"count":N}.
    List {
        /// Only jobs in this status.
        #[arg(long)]
        status: Option<StatusArg>,
        /// Only jobs of this type.
        #[arg(long = "type", value_parser = operator::JOB_TYPES)]
        job_type: Option<String>,
        /// Only jobs accepted longer ago than this: a number and a unit, s, m, h or d (10m, 2h, 3d).
        #[arg(long, value_parser = parse_age)]
        older_than: Option<chrono::Duration>,
        /// At most this many (1–1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// Shows a whole job (command, actor, response, links, request id, attempts, error detail) and the
    /// events it caused.
    Show {
        /// The job.
        id: Uuid,
    },
    /// Runs a failed_with_error job again as a new attempt: back to pending, its command republished
    /// through the outbox (the worker's relay sends it within seconds).
    Retry {
        /// The job.
        id: Uuid,
    },
}

/// `dead-letters …`
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Lists the jobs the dead-letter consumer ended, newest first; prints {"jobs":[…],"count":N}.
    List {
        /// At most this many (1–1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// Runs dead-lettered jobs again, like `jobs retry`; prints {"requeued":[…],"skipped":[…],"count":N}.
    #[command(group(ArgGroup::new("which").required(true).args(["id", "all"])))]
    Requeue {
        /// One dead-lettered job.
        #[arg(long)]
        id: Option<Uuid>,
        /// Every dead-lettered job (one skipped, with its reason, when an identical command is pending).
        #[arg(long)]
        all: bool,
    },
}

/// `projections …`
#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuilds every projection from the event log into shadow tables, in short transactions, and swaps
    /// them in; progress on stderr; prints {"streams":…,"events":…,"seconds":…}.
    Rebuild,
}

/// `audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Checks the keyed hash chain of every stream (or of one) with EVENT_CHAIN_KEY; prints
    /// {"streams":…,"events":…,"invalid":[{"stream_id":…,"version":…,"reason":…}]} and exits 2 when a link is
    /// broken.
    Verify {
        /// Check only this stream.
        #[arg(long)]
        stream: Option<Uuid>,
    },
}

/// The scopes of a token: at least one, each one the api knows ([`identity::SCOPES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(pub Vec<String>);

/// Parses `--scopes`: space-separated, each a known scope.
pub fn parse_scopes(value: &str) -> Result<Scopes, String> {
    let scopes: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
    if scopes.is_empty() {
        return Err("name at least one scope".to_owned());
    }
    if let Some(unknown) = scopes
        .iter()
        .find(|s| !identity::SCOPES.contains(&s.as_str()))
    {
        return Err(format!(
            "unknown scope '{unknown}' (known scopes: {})",
            identity::SCOPES.join(" ")
        ));
    }
    Ok(Scopes(scopes))
}

/// Parses an age such as `90s`, `10m`, `2h` or `3d`.
pub fn parse_age(value: &str) -> Result<chrono::Duration, String> {
    const EXPECTED: &str = "expected a positive number followed by s, m, h or d, e.g. 10m, 2h, 3d";
    let value = value.trim();
    let Some((at, _)) = value.char_indices().last() else {
        return Err(EXPECTED.to_owned());
    };
    let (number, unit) = value.split_at(at);
    let number: i64 = number
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| EXPECTED.to_owned())?;
    let seconds = match unit {
        "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3_600),
        "d" => number.checked_mul(86_400),
        _ => None,
    }
    .filter(|s| *s <= 100 * 365 * 86_400)
    .ok_or_else(|| EXPECTED.to_owned())?;
    Ok(chrono::Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::{parse_age, parse_scopes, Cli};

    #[test]
    fn ages_take_a_positive_number_and_a_unit() {
        assert_eq!(parse_age("10m"), Ok(chrono::Duration::minutes(10)));
        assert_eq!(parse_age("2h"), Ok(chrono::Duration::hours(2)));
        assert_eq!(parse_age("3d"), Ok(chrono::Duration::days(3)));
        assert_eq!(parse_age("45s"), Ok(chrono::Duration::seconds(45)));
        for bad in [
            "",
            "m",
            "10",
            "0m",
            "-1h",
            "1w",
            "1.5h",
            "h2",
            "5é",
            "999999999999d",
        ] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_are_the_apis_own() {
        assert!(parse_scopes("job:read  audit:read").is_ok());
        assert!(parse_scopes(" ").is_err());
        assert!(parse_scopes("job:read job:write")
            .err()
            .is_some_and(|e| e.contains("unknown scope 'job:write'")));
    }

    #[test]
    fn a_token_that_begins_with_a_hyphen_is_a_value() {
        use super::{Command, TokenCommand};
        use clap::Parser;
        for secret in ["-zeajCZkwIEL6bD8dpWy7aPG1hIFCff2MYgjsrenPuQ", "--x", "-"] {
            let cli = Cli::try_parse_from(["ehealth-admin", "token", "revoke", "--token", secret])
                .unwrap_or_else(|e| panic!("{secret}: {e}"));
            assert!(
                matches!(&cli.command, Command::Token(TokenCommand::Revoke { token: Some(t), id: None }) if t == secret),
                "{secret}: {cli:?}"
            );
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
