//! The command line of the services (`ehealth-api`, `ehealth-worker`): they are configured by the
//! environment alone and take no arguments, but `--help` must describe the binary rather than start it, and
//! `--version` must print its version.

use std::io::Write as _;

/// What to do with a service's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceArgs {
    /// No arguments: run the service.
    Run,
    /// `--help`/`-h`: print this and exit 0.
    Help(String),
    /// `--version`/`-V`: print this and exit 0.
    Version(String),
    /// Anything else: print this on stderr and exit 2, like a clap usage error.
    Usage(String),
}

/// Decides what `args` (without the program name) ask of service `name`, whose help text is `help`.
pub fn parse_service_args(
    name: &str,
    version: &str,
    help: &str,
    args: impl IntoIterator<Item = String>,
) -> ServiceArgs {
    match args.into_iter().next() {
        None => ServiceArgs::Run,
        Some(arg) if arg == "--help" || arg == "-h" => {
            ServiceArgs::Help(format!("{}\n", help.trim_end()))
        }
        Some(arg) if arg == "--version" || arg == "-V" => {
            ServiceArgs::Version(format!("{name} {version}\n"))
        }
        Some(arg) => ServiceArgs::Usage(format!(
            "error: unexpected argument '{arg}' found\n\n\
             Usage: {name}\n\n\
             {name} takes no arguments: it is configured by environment variables (see README.md, \
             \"Configuration\").\nFor more information, try '--help'.\n"
        )),
    }
}

/// Handles the process's own arguments for service `name`: returns when it should run, exits 0 after
/// `--help` or `--version`, and exits 2 with a usage error on any other argument.
pub fn handle_service_args(name: &str, version: &str, help: &str) {
    let exit = match parse_service_args(name, version, help, std::env::args().skip(1)) {
        ServiceArgs::Run => return,
        ServiceArgs::Help(text) | ServiceArgs::Version(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            0
        }
        ServiceArgs::Usage(text) => {
            let _ = std::io::stderr().write_all(text.as_bytes());
            2
        }
    };
    std::process::exit(exit);
}

#[cfg(test)]
mod tests {
    use super::{parse_service_args, ServiceArgs};

    fn parse(args: &[&str]) -> ServiceArgs {
        parse_service_args(
            "ehealth-x",
            "1.2.3",
            "does x",
            args.iter().map(|a| (*a).to_owned()),
        )
    }

    #[test]
    fn a_service_runs_without_arguments_and_answers_help_version_and_anything_else() {
        assert_eq!(parse(&[]), ServiceArgs::Run);
        assert_eq!(parse(&["--help"]), ServiceArgs::Help("does x\n".to_owned()));
        assert_eq!(parse(&["-h"]), ServiceArgs::Help("does x\n".to_owned()));
        assert_eq!(
            parse(&["--version"]),
            ServiceArgs::Version("ehealth-x 1.2.3\n".to_owned())
        );
        assert!(
            matches!(parse(&["--port", "80"]), ServiceArgs::Usage(m) if m.contains("'--port'"))
        );
    }
}

/// Why a service refused to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// `EVENT_CHAIN_KEY` could not be installed.
    #[error(transparent)]
    ChainKey(#[from] crate::event_store::chain::ChainKeyError),
    /// The database role is privileged, or the database never answered.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

/// What both services do before they build: read the configuration, start logging, install the chain key
/// (warning about the public development key), and check the database role — the services never migrate
/// (that is `ehealth-admin migrate`'s, as the owner) and refuse a role that could rewrite the log.
pub async fn prepare_service() -> Result<crate::Config, StartError> {
    let config = crate::Config::from_env()?;
    crate::telemetry::init(&config.log_format);
    crate::event_store::chain::install_chain_key(&config.event_chain_key)?.warn_if_development();
    crate::db::check_runtime_role(
        &crate::db::pool(&config.database_url, 1)?,
        config.allow_privileged_db_role,
        std::time::Duration::from_secs(60),
    )
    .await?;
    Ok(config)
}
