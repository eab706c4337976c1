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
    /// How the backlog drained (the `backlog` scenario).
    pub drain: Option<Drain>,
}

impl Row {
    /// Passed: ran to its checks and they found nothing.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.recovery.is_some()
            && self.verdict.passed()
            && self.drain.as_ref().is_none_or(Drain::passed)
    }
}

/// What the `backlog` scenario measured.
#[derive(Debug, Clone)]
pub struct Drain {
    /// Seconds the load took to be accepted (no worker running).
    pub accept_secs: f64,
    /// Jobs pending when the worker started.
    pub backlog: i64,
    /// Seconds from the worker's start until the first job ended.
    pub first_secs: Option<f64>,
    /// Seconds from the worker's start until no job was pending.
    pub drain_secs: Option<f64>,
    /// The longest pause in which no job ended, after the first one did.
    pub longest_stall: Duration,
    /// The longest pause allowed.
    pub max_stall: Duration,
}

impl Drain {
    /// No pause longer than allowed.
    pub fn passed(&self) -> bool {
        self.longest_stall <= self.max_stall
    }

    /// Jobs drained per second, from the worker's start.
    pub fn rate(&self) -> Option<f64> {
        self.drain_secs
            .filter(|s| *s > 0.0)
            .map(|s| self.backlog as f64 / s)
    }

    /// `2000 accepted in 8.5 s (235/s); drained 2000 jobs in 9.8 s = 205 jobs/s (…)`, for the report.
    pub fn describe(&self, accepted: usize) -> String {
        let drained = match (self.drain_secs, self.rate()) {
            (Some(secs), Some(rate)) => {
                format!(
                    "drained {} jobs in {secs:.1} s = {rate:.0} jobs/s",
                    self.backlog
                )
            }
            _ => format!("{} jobs not drained", self.backlog),
        };
        let first = self.first_secs.map_or_else(
            || "no job ended".to_owned(),
            |s| format!("first job ended after {s:.1} s"),
        );
        format!(
            "{accepted} accepted in {:.1} s ({:.0}/s); {drained} ({first}; longest pause without a job \
             ending {:.1} s{}, polled every {} s)",
            self.accept_secs,
            accepted as f64 / self.accept_secs.max(0.001),
            self.longest_stall.as_secs_f64(),
            if self.passed() {
                String::new()
            } else {
                format!(": over {} s, STARVED", self.max_stall.as_secs())
            },
            check::DRAIN_POLL.as_secs_f64()
        )
    }
}

/// The suite's servers and settings, shared by every scenario.
pub struct Bench {
    /// The PostgreSQL cluster.
    pub postgres: Postgres,
    /// The RabbitMQ node.
    pub rabbit: Rabbit,
    /// `target/debug` or `target/release`.
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
    let backlog = match scenario.fault {
        Fault::Backlog { max_stall } => Some(max_stall),
        _ => None,
    };
    if backlog.is_none() {
        for worker in &mut services.workers {
            worker.start()?;
        }
    }

    eprintln!(
        "faults: {}: {} commands over {:?}, {:?}",
        scenario.name, scenario.load.commands, scenario.load.duration, scenario.fault
    );
    let load_started = Instant::now();
    let load = tokio::spawn(load::run(client, scenario.load.clone(), bench.rng.fork()));
    let recovery_timeout = scenario.recovery_timeout.unwrap_or(bench.recovery_timeout);
    if let Some(max_stall) = backlog {
        // Every command accepted before any worker runs; then the workers start and the drain is timed.
        let outcome = load.await.context("the load task")??;
        let accept_secs = load_started.elapsed().as_secs_f64();
        let pending = check::pending(&pool).await?;
        eprintln!(
            "faults: {}: {} accepted in {accept_secs:.1} s, {pending} jobs pending; starting the worker",
            scenario.name,
            outcome.accepted.len()
        );
        for worker in &mut services.workers {
            worker.start()?;
        }
        let started = Instant::now();
        record_load(row, &outcome);
        row.faults = format!("no worker for {} commands", outcome.sent);
        let drained = check::wait_drained(&pool, recovery_timeout).await;
        let since = |at: Instant| at.duration_since(started).as_secs_f64();
        row.recovery = drained.settled.map(since);
        let drain = Drain {
            accept_secs,
            backlog: pending,
            first_secs: drained.first.map(since),
            drain_secs: drained.settled.map(since),
            longest_stall: drained.longest_stall,
            max_stall,
        };
        eprintln!(
            "faults: {}: {}",
            scenario.name,
            drain.describe(row.accepted)
        );
        row.drain = Some(drain);
        row.remarks.extend(services.remarks());
        row.remarks.extend(services.workers.iter().map(log_summary));
        row.verdict = check::verify(&pool, &outcome.accepted, scenario.expect).await?;
        return Ok(());
    }
    tokio::time::sleep(scenario.lead).await;
    let fault_result = inflict(bench, services, scenario).await;
    let mut fault_end = Instant::now();
    let outcome = load.await.context("the load task")??;
    if matches!(scenario.fault, Fault::None) {
        // No fault: recovery counts from the last command.
        fault_end = Instant::now();
    }
    record_load(row, &outcome);
    row.faults = fault_result?;
    row.remarks.extend(services.remarks());

    let settled = check::wait_settled(&pool, recovery_timeout).await;
    row.recovery = settled.map(|at| at.duration_since(fault_end).as_secs_f64());
    row.verdict = check::verify(&pool, &outcome.accepted, scenario.expect).await?;
    Ok(())
}

fn record_load(row: &mut Row, outcome: &load::Outcome) {
    row.sent = outcome.sent;
    row.accepted = outcome.accepted.len();
    row.refusals = outcome.refusals();
}

/// `worker-1 log: 0 ERROR, 2 WARN lines (…)`: what a process complained about, with its distinct WARN and
/// ERROR messages.
fn log_summary(proc: &Proc) -> String {
    let path = proc.log_path();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut messages: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut errors, mut warnings) = (0, 0);
    for line in text.lines() {
        let level = if line.contains(" ERROR ") {
            errors += 1;
            " ERROR "
        } else if line.contains(" WARN ") {
            warnings += 1;
            " WARN "
        } else {
            continue;
        };
        let message = line.split_once(level).map_or(line, |(_, rest)| rest);
        *messages.entry(message_kind(message)).or_default() += 1;
    }
    let mut summary = format!("{} log: {errors} ERROR, {warnings} WARN lines", proc.name);
    for (message, n) in messages.iter().take(8) {
        summary.push_str(&format!("\n    {n} × {message}"));
    }
    summary
}

/// A log message without what differs from one occurrence to the next: `job{job_id=… attempt=2}: target:
/// transient fault: retrying later job_id=… attempt=2 error=…` → `target: transient fault: retrying later
/// error=…` (spans and fields whose value is an id or a number dropped), at most 160 characters.
fn message_kind(message: &str) -> String {
    let is_id = |v: &str| {
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_hexdigit() || c == '-' || c == '.')
    };
    let kept: Vec<&str> = message
        .split_whitespace()
        .filter(|token| !token.contains(['{', '}']))
        .filter(|token| token.split_once('=').is_none_or(|(_, v)| !is_id(v)))
        .collect();
    kept.join(" ").chars().take(160).collect()
}

/// Does the scenario's fault; what it did, for the report.
async fn inflict(
    bench: &mut Bench,
    services: &mut Services,
    scenario: &Scenario,
) -> Result<String> {
    Ok(match &scenario.fault {
        // The backlog's fault (no worker during the load) is `run_inner`'s own path.
        Fault::None | Fault::Backlog { .. } => "none".to_owned(),
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
