//! The scenarios, in one table: one row per fault kind, with its commands, its workers and what it expects.
//! [`crate::runner`] runs every row the same way.

use std::time::Duration;

use crate::{
    check::Expect,
    load::{self, LoadPlan},
};

/// The short form (CI) or the full one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Fewer commands, ten worker kills, a 30 s PostgreSQL outage instead of 90 s.
    Ci,
    /// Everything as named.
    Full,
}

/// What goes wrong during a scenario.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Nothing (the scenario's own setup is the test: two workers, a panicking handler).
    None,
    /// `kill -9` of the (first) worker this many times, 1–3 s apart, restarting it each time.
    KillWorker(u32),
    /// `kill -9` of the api this many times, spread over the load, restarting it each time.
    KillApi(u32),
    /// The RabbitMQ node killed, started again after this long.
    RabbitDown(Duration),
    /// RabbitMQ's memory alarm raised (every publisher blocked) for this long.
    RabbitAlarm(Duration),
    /// PostgreSQL stopped with `-m immediate`, started again after this long.
    PostgresDown(Duration),
    /// No worker runs while the load is sent, so every accepted command waits in the queue; then the
    /// workers start and the drain is timed. Fails if no job ends for `max_stall` once the first one did
    /// (a worker that starves itself stops for the pool's time-outs).
    Backlog {
        /// The longest pause without a job ending that the drain may have.
        max_stall: Duration,
    },
}

/// One row of the table of scenarios.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name on the command line and in the report.
    pub name: &'static str,
    /// Worker processes.
    pub workers: usize,
    /// The fault.
    pub fault: Fault,
    /// The commands.
    pub load: LoadPlan,
    /// How long the load runs before the fault starts.
    pub lead: Duration,
    /// The outcomes it expects.
    pub expect: Expect,
    /// Variables added to the environment of the api and the workers alike (one deployment's settings: the
    /// queues' arguments come from them, so both sides must agree).
    pub env: Vec<(String, String)>,
    /// Settings that differ from the defaults, for the report.
    pub note: &'static str,
    /// Longest wait for no job pending, if not the suite's (`--ci` 90 s, `--full` 180 s).
    pub recovery_timeout: Option<Duration>,
}

/// The marker of commands the `panic` scenario's worker panics on.
pub const PANIC_MARKER: &str = "PANIC-ME";

/// Every scenario, in the order they run.
pub fn table(form: Form) -> Vec<Scenario> {
    let full = form == Form::Full;
    let pick = |ci: usize, full_n: usize| if full { full_n } else { ci };
    let secs = |ci: u64, full_s: u64| Duration::from_secs(if full { full_s } else { ci });
    let plan = |commands: usize, duration: Duration| LoadPlan {
        commands,
        duration,
        lifecycle_share: 0.1,
        panic: None,
        concurrency: load::CONCURRENCY,
    };
    let lead = secs(3, 5);
    // Outage scenarios: the load runs before, during and a while after the outage.
    let outage = |name, fault: FaultFn, down: Duration, commands| Scenario {
        name,
        workers: 1,
        fault: fault(down),
        load: plan(commands, lead + down + secs(5, 10)),
        lead,
        expect: Expect::Decided,
        env: vec![],
        note: "",
        recovery_timeout: None,
    };
    let kills = pick(10, 100) as u32;
    vec![
        Scenario {
            name: "worker-kill",
            workers: 1,
            fault: Fault::KillWorker(kills),
            // The kills come every 2 s on average; the load spans them.
            load: plan(
                pick(400, 2000),
                Duration::from_secs(2 * u64::from(kills) + 2),
            ),
            lead: Duration::from_secs(2),
            expect: Expect::Decided,
            env: vec![],
            note: "",
            recovery_timeout: None,
        },
        Scenario {
            name: "two-workers",
            workers: 2,
            fault: Fault::None,
            load: LoadPlan {
                lifecycle_share: 0.3,
                ..plan(pick(400, 2000), secs(10, 40))
            },
            lead,
            expect: Expect::Decided,
            env: vec![],
            note: "",
            recovery_timeout: None,
        },
        Scenario {
            name: "api-kill",
            workers: 1,
            fault: Fault::KillApi(5),
            load: plan(pick(300, 1000), secs(20, 50)),
            lead: Duration::from_secs(2),
            expect: Expect::Decided,
            env: vec![],
            note: "",
            recovery_timeout: None,
        },
        outage(
            "rabbit-stop",
            Fault::RabbitDown,
            secs(15, 15),
            pick(300, 1000),
        ),
        outage(
            "rabbit-alarm",
            Fault::RabbitAlarm,
            secs(15, 15),
            pick(300, 1000),
        ),
        outage(
            "pg-stop-15",
            Fault::PostgresDown,
            secs(15, 15),
            pick(300, 1000),
        ),
        outage(
            "pg-stop-90",
            Fault::PostgresDown,
            secs(30, 90),
            pick(300, 1500),
        ),
        Scenario {
            name: "panic",
            workers: 1,
            fault: Fault::None,
            load: LoadPlan {
                lifecycle_share: 0.0,
                panic: Some((0.1, PANIC_MARKER)),
                ..plan(pick(200, 1000), secs(10, 20))
            },
            lead,
            expect: Expect::PanicOn(PANIC_MARKER),
            env: [
                ("WORKER_FAULT_PANIC_ON", PANIC_MARKER),
                ("WORKER_MAX_ATTEMPTS", "3"),
                ("RETRY_DELAY_MS", "200"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec(),
            note: "WORKER_MAX_ATTEMPTS=3 RETRY_DELAY_MS=200 (defaults back off for minutes); \
                   10% of creates carry PANIC-ME, only creates",
            recovery_timeout: None,
        },
        Scenario {
            name: "backlog",
            // One worker, started once the load is accepted, with the default settings: the scenario's
            // environment adds nothing (no WORKER_PREFETCH, DB_POOL_SIZE, RETRY_DELAY_MS …).
            workers: 1,
            fault: Fault::Backlog {
                max_stall: MAX_STALL,
            },
            load: LoadPlan {
                lifecycle_share: 0.0,
                concurrency: BACKLOG_CONCURRENCY,
                ..plan(pick(2000, 20_000), Duration::ZERO)
            },
            lead: Duration::ZERO,
            expect: Expect::Decided,
            env: vec![],
            note:
                "only creates, sent 32 at a time with no worker running; then ONE worker with the \
                   default settings; fails if no job ends for 5 s",
            // Generous: a starving worker fails on its pauses (MAX_STALL) long before this.
            recovery_timeout: Some(secs(600, 1800)),
        },
    ]
}

type FaultFn = fn(Duration) -> Fault;

/// Requests the `backlog` scenario keeps in flight while it fills the queue.
const BACKLOG_CONCURRENCY: usize = 32;
/// The longest pause without a job ending that the `backlog` drain may have (the starvation it guards
/// against: a prefetch of jobs each holding a connection and waiting for another, ended by the pool's
/// time-outs after seconds).
const MAX_STALL: Duration = Duration::from_secs(5);
