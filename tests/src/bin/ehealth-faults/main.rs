//! `ehealth-faults`: the fault suite. Runs the real `ehealth-api`, `ehealth-worker` and `ehealth-admin`
//! binaries against a PostgreSQL cluster and a RabbitMQ node of its own, kills and restarts processes and
//! servers under load, and checks from the database after each scenario that every accepted command ended,
//! exactly once, with the right outcome, in gap-free streams whose hash chains verify.
//!
//! ```text
//! ehealth-faults [--ci|--full] [--bin-dir target/debug] [--logs DIR] [--list] [scenario…]
//! ```
//!
//! `scripts/faults.sh` builds the binaries and runs this. Exit status 1 when a scenario failed.

mod check;
mod load;
mod procs;
mod report;
mod rng;
mod runner;
mod scenario;
mod servers;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use runner::{Bench, Row};
use scenario::Form;

/// The service's binaries the suite runs.
const BINARIES: [&str; 3] = ["ehealth-api", "ehealth-worker", "ehealth-admin"];

/// What the command line asked for.
struct Args {
    form: Form,
    bin_dir: PathBuf,
    logs: Option<PathBuf>,
    only: Vec<String>,
    list: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        form: Form::Full,
        bin_dir: PathBuf::from("target/debug"),
        logs: None,
        only: vec![],
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--ci" => args.form = Form::Ci,
            "--full" => args.form = Form::Full,
            "--list" => args.list = true,
            "--bin-dir" => args.bin_dir = it.next().context("--bin-dir needs a path")?.into(),
            "--logs" => args.logs = Some(it.next().context("--logs needs a path")?.into()),
            flag if flag.starts_with('-') => bail!("unknown option {flag}"),
            name => args.only.push(name.to_owned()),
        }
    }
    Ok(args)
}

/// The run's scratch directory: the clusters' data and the embedded stores. Removed at the end.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create() -> Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("ehealth-faults-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        // PostgreSQL runs as its own user and must reach its directory inside.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(Self(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("faults: could not remove {}: {e}", self.0.display());
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("faults: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<bool> {
    let args = parse_args()?;
    let mut scenarios = scenario::table(args.form);
    if args.list {
        for s in &scenarios {
            eprintln!("{}", s.name);
        }
        return Ok(true);
    }
    if !args.only.is_empty() {
        if let Some(unknown) = args
            .only
            .iter()
            .find(|n| !scenarios.iter().any(|s| s.name == n.as_str()))
        {
            let names: Vec<&str> = scenarios.iter().map(|s| s.name).collect();
            bail!("unknown scenario {unknown}; known: {}", names.join(", "));
        }
        scenarios.retain(|s| args.only.iter().any(|n| n == s.name));
    }
    for binary in BINARIES {
        if !args.bin_dir.join(binary).is_file() {
            bail!(
                "{} has no {binary}: build it first (scripts/faults.sh does)",
                args.bin_dir.display()
            );
        }
    }
    let work = WorkDir::create()?;
    let bin_dir = snapshot_binaries(&args.bin_dir, &work.0)?;
    let log_dir = match &args.logs {
        Some(dir) => {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir)?;
            std::fs::canonicalize(dir)?
        }
        None => work.0.join("logs"),
    };
    let (rng, seed) = rng::Rng::from_env();
    eprintln!(
        "faults: work directory {}, logs in {}, seed {seed}",
        work.0.display(),
        log_dir.display()
    );

    let started = std::time::Instant::now();
    let rows = tokio::select! {
        rows = run_scenarios(&work.0, bin_dir, log_dir, rng, args.form, &scenarios) => rows?,
        () = interrupted() => bail!("interrupted: tearing down"),
    };
    report::print(&rows, args.form, seed, started.elapsed())?;
    Ok(rows.iter().all(Row::passed))
}

/// Copies the three binaries into the work directory, so that a build running meanwhile (another checkout's
/// `cargo build` in the same target directory) cannot swap a binary between two starts of a process.
fn snapshot_binaries(from: &Path, work: &Path) -> Result<PathBuf> {
    let to = work.join("bin");
    std::fs::create_dir_all(&to)?;
    for binary in BINARIES {
        std::fs::copy(from.join(binary), to.join(binary))
            .with_context(|| format!("copying {binary} from {}", from.display()))?;
    }
    Ok(to)
}

/// Starts the servers, runs the scenarios one after the other; the servers go when this returns (or is
/// dropped on Ctrl-C).
async fn run_scenarios(
    work: &Path,
    bin_dir: PathBuf,
    log_dir: PathBuf,
    rng: rng::Rng,
    form: Form,
    scenarios: &[scenario::Scenario],
) -> Result<Vec<Row>> {
    eprintln!("faults: starting PostgreSQL and RabbitMQ of the suite's own");
    let (postgres, rabbit) = tokio::try_join!(
        servers::Postgres::create(work),
        servers::Rabbit::create(work)
    )?;
    let mut bench = Bench {
        postgres,
        rabbit,
        bin_dir,
        log_dir,
        data_dir: work.join("data"),
        recovery_timeout: Duration::from_secs(match form {
            Form::Ci => 90,
            Form::Full => 180,
        }),
        rng,
    };
    let mut rows = vec![];
    for scenario in scenarios {
        let started = std::time::Instant::now();
        let row = runner::run(&mut bench, scenario).await;
        eprintln!(
            "faults: {} {} in {:.0} s",
            row.name,
            if row.passed() { "passed" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        rows.push(row);
    }
    Ok(rows)
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
