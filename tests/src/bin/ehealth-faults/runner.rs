//! The one path every scenario runs: a fresh database and queue prefix, credentials made with
//! `ehealth-admin`, the api and the workers started, the load and the fault at once, then wait until no job
//! is pending and check the database.

use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::time::Instant;

use crate::{
    check::{self, Verdict},
    load,
    procs::{self, Proc, ServiceEnv},
    rng::Rng,
    scenario::{Fault, Scenario},
    servers::{self, Postgres, Rabbit},
    setup,
};

/// The role that owns the database: migrations, credentials, the checks.
const OWNER_ROLE: &str = "postgres";
/// The least-privilege role the api and the workers run as.
const RUNTIME_ROLE: &str = "ehealth_app";

/// What a scenario came to: the row of the report.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// The scenario.
    pub name: String,
    /// Its settings that differ from the defaults.
    pub note: &'static str,
    /// Commands sent.
    pub sent: usize,
    /// Commands answered 202.
    pub accepted: usize,
    /// `10 kills`, `1 × 15 s`, …
    pub faults: String,
    /// Seconds from the end of the fault until no job was pending; `None` if that never happened.
    pub recovery: Option<f64>,
    /// The database's findings.
    pub verdict: Verdict,
    /// Answers other than 202.
    pub refusals: String,
    /// Why the scenario could not run to its checks, if it could not.
    pub error: Option<String>,
    /// Processes that died on their own, and similar remarks.
    pub remarks: Vec<String>,
    /// Tails of the logs, for a failed scenario.
    pub logs: String,
}

impl Row {
    /// Passed: ran to its checks and they found nothing.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.recovery.is_some() && self.verdict.passed()
    }
}

/// The suite's servers and settings, shared by every scenario.
pub struct Bench {
    /// The PostgreSQL cluster.
    pub postgres: Postgres,
    /// The RabbitMQ node.
    pub rabbit: Rabbit,
    /// `target/debug`.
    pub bin_dir: std::path::PathBuf,
    /// Root of the logs (one folder per scenario).
    pub log_dir: std::path::PathBuf,
    /// Root of the embedded object stores.
    pub data_dir: std::path::PathBuf,
    /// Longest wait for no job pending after a scenario.
    pub recovery_timeout: Duration,
    /// The random source.
    pub rng: Rng,
}

/// The processes of one scenario.
struct Services {
    api: Proc,
    workers: Vec<Proc>,
    base: String,
    http: reqwest::Client,
}

impl Services {
    async fn start_api(&mut self) -> Result<()> {
        self.api.start()?;
        procs::wait_healthy(&self.http, &self.base, Duration::from_secs(60)).await
    }

    async fn stop(&mut self) {
        for proc in std::iter::once(&mut self.api).chain(self.workers.iter_mut()) {
            if let Err(e) = proc.stop(Duration::from_secs(15)).await {
                eprintln!("faults: stopping {}: {e:#}", proc.name);
            }
        }
    }

    fn remarks(&mut self) -> Vec<String> {
        std::iter::once(&mut self.api)
            .chain(self.workers.iter_mut())
            .filter_map(|proc| proc.check_alive().err().map(|e| format!("{e:#}")))
            .collect()
    }

    fn log_paths(&self) -> Vec<std::path::PathBuf> {
        std::iter::once(&self.api)
            .chain(self.workers.iter())
            .map(Proc::log_path)
            .collect()
    }
}

/// Runs one scenario to its row. Errors of the scenario itself end up in [`Row::error`].
pub async fn run(bench: &mut Bench, scenario: &Scenario) -> Row {
    let mut row = Row {
        name: scenario.name.to_owned(),
        note: scenario.note,
        ..Row::default()
    };
    let log_dir = bench.log_dir.join(scenario.name);
    let mut services = None;
    if let Err(e) = run_inner(bench, scenario, &log_dir, &mut row, &mut services).await {
        row.error = Some(format!("{e:#}"));
    }
    if let Some(services) = services.as_mut() {
        row.remarks.extend(services.remarks());
        services.stop().await;
    }
    if let Err(e) = restore(bench).await {
        row.remarks.push(format!("restoring the servers: {e:#}"));
    }
    if !row.passed() {
        let paths = services
            .as_ref()
            .map(Services::log_paths)
            .unwrap_or_default();
        for path in paths {
            row.logs.push_str(&format!(
                "  {} ({} ERROR lines, {} WARN lines, {} panics); last lines:\n{}",
                path.display(),
                procs::count_lines(&path, " ERROR "),
                procs::count_lines(&path, " WARN "),
                procs::count_lines(&path, "panicked"),
                procs::tail(&path, 12)
            ));
        }
    }
    row
}

async fn run_inner(
    bench: &mut Bench,
    scenario: &Scenario,
    log_dir: &std::path::Path,
    row: &mut Row,
    slot: &mut Option<Services>,
) -> Result<()> {
    std::fs::create_dir_all(log_dir)?;
    let db = format!("faults_{}", scenario.name.replace('-', "_"));
    let http_addr = format!("127.0.0.1:{}", servers::free_port()?);
    let data_dir = bench.data_dir.join(scenario.name);
    let env = ServiceEnv {
        bin_dir: bench.bin_dir.clone(),
        log_dir: log_dir.to_owned(),
        vars: [
            // The owner migrates and makes the credentials; the services run as the runtime role that
            // `ehealth-admin migrate` creates and grants.
            (
                "MIGRATION_DATABASE_URL",
                bench.postgres.url(OWNER_ROLE, &db),
            ),
            ("DATABASE_URL", bench.postgres.url(RUNTIME_ROLE, &db)),
            ("AMQP_URL", bench.rabbit.url()),
            ("HTTP_ADDR", http_addr.clone()),
            ("QUEUE_PREFIX", format!("faults-{}", scenario.name)),
            (
                "S3_EMBEDDED_ADDR",
                format!("127.0.0.1:{}", servers::free_port()?),
            ),
            ("DATA_DIR", data_dir.display().to_string()),
            ("RUST_LOG", "info".to_owned()),
            ("LOG_FORMAT", "text".to_owned()),
            ("NO_COLOR", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(scenario.env.iter().cloned())
        .collect(),
    };
    setup::admin(&env, &["migrate"]).await?;
    let client = setup::credentials(&env, format!("http://{http_addr}")).await?;
    // The checks read as the owner.
    let pool = ehealth_infra::db::pool(&bench.postgres.url(OWNER_ROLE, &db), 2)?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut workers = vec![];
    for i in 1..=scenario.workers {
        // Each worker serves /metrics and /health on a port of its own.
        let extra = [(
            "WORKER_HTTP_ADDR".to_owned(),
            format!("127.0.0.1:{}", servers::free_port()?),
        )];
        workers.push(Proc::new(
            &format!("worker-{i}"),
            "ehealth-worker",
            &env,
            &extra,
        ));
    }
    let services = slot.insert(Services {
        api: Proc::new("api", "ehealth-api", &env, &[]),
        workers,
        base: client.base.clone(),
        http,
    });
    services.start_api().await?;
    for worker in &mut services.workers {
        worker.start()?;
    }

    eprintln!(
        "faults: {}: {} commands over {:?}, {:?}",
        scenario.name, scenario.load.commands, scenario.load.duration, scenario.fault
    );
    let load = tokio::spawn(load::run(client, scenario.load.clone(), bench.rng.fork()));
    tokio::time::sleep(scenario.lead).await;
    let fault_result = inflict(bench, services, scenario).await;
    let mut fault_end = Instant::now();
    let outcome = load.await.context("the load task")??;
    if matches!(scenario.fault, Fault::None) {
        // No fault: recovery counts from the last command.
        fault_end = Instant::now();
    }
    row.sent = outcome.sent;
    row.accepted = outcome.accepted.len();
    row.refusals = outcome.refusals();
    row.faults = fault_result?;
    row.remarks.extend(services.remarks());

    let settled = check::wait_settled(&pool, bench.recovery_timeout).await;
    row.recovery = settled.map(|at| at.duration_since(fault_end).as_secs_f64());
    row.verdict = check::verify(&pool, &outcome.accepted, scenario.expect).await?;
    Ok(())
}

/// Does the scenario's fault; what it did, for the report.
async fn inflict(
    bench: &mut Bench,
    services: &mut Services,
    scenario: &Scenario,
) -> Result<String> {
    Ok(match &scenario.fault {
        Fault::None => "none".to_owned(),
        Fault::KillWorker(kills) => {
            for _ in 0..*kills {
                let pause = bench
                    .rng
                    .between(Duration::from_secs(1), Duration::from_secs(3));
                tokio::time::sleep(pause).await;
                let worker = &mut services.workers[0];
                worker.kill().await?;
                worker.start()?;
            }
            format!("{kills} worker kills")
        }
        Fault::KillApi(kills) => {
            // Spread over the load: evenly, give or take half a gap.
            let gap = scenario.load.duration.saturating_sub(scenario.lead) / (kills + 1);
            for _ in 0..*kills {
                let pause = bench.rng.between(gap / 2, gap * 3 / 2);
                tokio::time::sleep(pause).await;
                services.api.kill().await?;
                services.start_api().await?;
            }
            format!("{kills} api kills")
        }
        Fault::RabbitDown(down) => {
            bench.rabbit.crash().await?;
            tokio::time::sleep(*down).await;
            bench.rabbit.start().await?;
            format!("rabbit down {} s", down.as_secs())
        }
        Fault::RabbitAlarm(down) => {
            bench.rabbit.memory_alarm(true).await?;
            tokio::time::sleep(*down).await;
            bench.rabbit.memory_alarm(false).await?;
            format!("memory alarm {} s", down.as_secs())
        }
        Fault::PostgresDown(down) => {
            bench.postgres.crash().await?;
            tokio::time::sleep(*down).await;
            bench.postgres.start().await?;
            format!("postgres down {} s", down.as_secs())
        }
    })
}

/// Brings the servers back to normal after a scenario that failed half-way through its fault.
async fn restore(bench: &mut Bench) -> Result<()> {
    if !bench.postgres.is_running() {
        bench.postgres.start().await?;
    }
    if !bench.rabbit.is_running() {
        bench.rabbit.start().await?;
    }
    bench.rabbit.memory_alarm(false).await
}
