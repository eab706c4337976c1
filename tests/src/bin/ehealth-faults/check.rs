//! What the database says after a scenario: every accepted command ended, exactly once, with the right
//! outcome, in gap-free streams whose hash chains verify.

use std::{collections::HashSet, time::Duration};

use anyhow::{Context as _, Result};
use deadpool_postgres::{GenericClient, Pool};
use tokio::time::Instant;
use uuid::Uuid;

/// Whether one stream's hash chain verifies: the one place the suite verifies a chain. The services run
/// without `EVENT_CHAIN_KEY`, so they chain with the service's default key, which `verify_chain` in this
/// process uses too. To run the suite with a key of its own, set `EVENT_CHAIN_KEY` in
/// `runner::run_inner`'s environment and make this process verify with the same key.
async fn chain_valid(client: &impl GenericClient, stream_id: Uuid) -> Result<bool> {
    Ok(ehealth_infra::event_store::verify_chain(client, stream_id).await?)
}

/// What a scenario expects of the jobs' outcomes besides consistency.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// Any decided outcome: `processed`, or `failed` with the domain's 4xx.
    Decided,
    /// Jobs whose command contains the marker end `failed_with_error` with 500; every other one `processed`.
    PanicOn(&'static str),
}

/// The findings of one scenario.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    /// Jobs still pending.
    pub pending: usize,
    /// Accepted job ids that are missing or still pending.
    pub lost: usize,
    /// Jobs whose events were appended more than once, plus requests created twice.
    pub duplicated: usize,
    /// Jobs whose outcome contradicts their events or the expectation; events of no processed job.
    pub wrong: usize,
    /// Jobs ended `failed_with_error` (allowed: an ended job; expected in the `panic` scenario).
    pub errored: usize,
    /// Streams checked, streams whose chain verifies, streams without a gap or duplicate version.
    pub streams: usize,
    /// See [`Verdict::streams`].
    pub chains_valid: usize,
    /// See [`Verdict::streams`].
    pub gap_free: usize,
    /// Up to a few examples of each problem, for the report.
    pub examples: Vec<String>,
}

impl Verdict {
    /// True when nothing the suite guards against happened.
    pub fn passed(&self) -> bool {
        self.pending == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.wrong == 0
            && self.chains_valid == self.streams
            && self.gap_free == self.streams
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 12 {
            self.examples.push(text);
        }
    }
}

const PENDING: &str = "SELECT count(*) FROM jobs WHERE status = 'pending'";

/// Polls until no job is pending; the moment that happened, or `None` after `timeout`. Database errors
/// (the server still starting) count as "not yet".
pub async fn wait_settled(pool: &Pool, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(client) = pool.get().await {
            if let Ok(row) = client.query_one(PENDING, &[]).await {
                if row.get::<_, i64>(0) == 0 {
                    return Some(Instant::now());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// Jobs pending now.
pub async fn pending(pool: &Pool) -> Result<i64> {
    let client = pool
        .get()
        .await
        .context("connecting to count pending jobs")?;
    Ok(client.query_one(PENDING, &[]).await?.get(0))
}

/// How often [`wait_drained`] counts the pending jobs.
pub const DRAIN_POLL: Duration = Duration::from_millis(250);

/// How a backlog drained.
#[derive(Debug, Clone, Copy)]
pub struct Drained {
    /// When no job was pending any more; `None` if that did not happen within the time-out.
    pub settled: Option<Instant>,
    /// When the first job ended.
    pub first: Option<Instant>,
    /// The longest time, after the first job ended, in which no job ended.
    pub longest_stall: Duration,
}

/// Like [`wait_settled`], polling more often and watching the pending count fall: when the first job ended
/// and the longest pause in which none did.
pub async fn wait_drained(pool: &Pool, timeout: Duration) -> Drained {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut drained = Drained {
        settled: None,
        first: None,
        longest_stall: Duration::ZERO,
    };
    let (mut last, mut last_change) = (None::<i64>, started);
    while Instant::now() < deadline {
        let now = Instant::now();
        if let Ok(pending) = pending(pool).await {
            if last.is_some_and(|last| pending < last) {
                drained.first.get_or_insert(now);
                last_change = now;
            }
            if drained.first.is_some() {
                drained.longest_stall = drained.longest_stall.max(now - last_change);
            }
            last = Some(pending);
            if pending == 0 {
                drained.settled = Some(now);
                break;
            }
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    drained
}

/// Every job with its outcome, what its command was, and its events: how many, in how many transactions.
const JOBS: &str = "SELECT j.id, j.status, j.status_code, j.stream_type, j.command::text, \
       count(e.position) AS events, count(DISTINCT e.tx_id::text) AS transactions \
     FROM jobs j LEFT JOIN events e ON e.metadata->>'causation_id' = j.id::text \
     GROUP BY j.id";

/// Events whose causation is no job at all.
const ORPHAN_EVENTS: &str = "SELECT count(*) FROM events e \
     WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id::text = e.metadata->>'causation_id')";

/// Events of service-request streams.
const SERVICE_REQUEST_EVENTS: &str =
    "SELECT count(*) FROM events WHERE stream_type = 'service_request'";

/// Per stream: events, distinct versions, highest version, `created` events, the `streams` row's version.
const STREAMS: &str = "SELECT e.stream_id, count(*), count(DISTINCT e.stream_version), \
       max(e.stream_version), count(*) FILTER (WHERE e.event_type = 'created'), max(s.version) \
     FROM events e LEFT JOIN streams s ON s.stream_id = e.stream_id GROUP BY e.stream_id";

/// Checks the database against the accepted job ids.
pub async fn verify(pool: &Pool, accepted: &HashSet<Uuid>, expect: Expect) -> Result<Verdict> {
    let client = pool.get().await.context("connecting for the checks")?;
    let mut verdict = Verdict::default();
    let mut known = HashSet::new();
    let mut processed_service_requests = 0i64;
    for row in client.query(JOBS, &[]).await? {
        let id: Uuid = row.get(0);
        let status: String = row.get(1);
        let code: Option<i32> = row.get(2);
        let stream_type: String = row.get(3);
        let command: String = row.get(4);
        let events: i64 = row.get(5);
        let transactions: i64 = row.get(6);
        known.insert(id);
        if status == "pending" {
            verdict.pending += 1;
            if accepted.contains(&id) {
                verdict.lost += 1;
                verdict.example(format!("accepted job {id} still pending"));
            }
        }
        if transactions > 1 || (stream_type == "service_request" && events > 1) {
            verdict.duplicated += 1;
            verdict.example(format!(
                "job {id} ({status}) has {events} events in {transactions} transactions"
            ));
        }
        if status == "processed" && stream_type == "service_request" {
            processed_service_requests += 1;
        }
        let consistent = match status.as_str() {
            "processed" => events > 0,
            "failed" | "failed_with_error" => events == 0,
            _ => true,
        };
        let expected = match expect {
            _ if status == "pending" => true,
            Expect::PanicOn(marker) if command.contains(marker) => {
                status == "failed_with_error" && code == Some(500)
            }
            Expect::PanicOn(_) => status == "processed",
            Expect::Decided => status != "failed" || code.is_some_and(|c| (400..500).contains(&c)),
        };
        if status == "failed_with_error" {
            verdict.errored += 1;
        }
        if !consistent || !expected {
            verdict.wrong += 1;
            verdict.example(format!(
                "job {id}: {status} {code:?} with {events} events ({})",
                command.chars().take(80).collect::<String>()
            ));
        }
    }
    for id in accepted.difference(&known) {
        verdict.lost += 1;
        verdict.example(format!("accepted job {id} does not exist"));
    }
    let orphans: i64 = client.query_one(ORPHAN_EVENTS, &[]).await?.get(0);
    if orphans > 0 {
        verdict.wrong += orphans as usize;
        verdict.example(format!("{orphans} events name no job as their cause"));
    }
    let service_request_events: i64 = client.query_one(SERVICE_REQUEST_EVENTS, &[]).await?.get(0);
    for row in client.query(STREAMS, &[]).await? {
        let stream_id: Uuid = row.get(0);
        let (events, versions, max): (i64, i64, i64) = (row.get(1), row.get(2), row.get(3));
        let created: i64 = row.get(4);
        let head: Option<i64> = row.get(5);
        verdict.streams += 1;
        if events == versions && max == events && head == Some(max) {
            verdict.gap_free += 1;
        } else {
            verdict.example(format!(
                "stream {stream_id}: {events} events, {versions} versions, max {max}, head {head:?}"
            ));
        }
        if created > 1 {
            verdict.duplicated += 1;
            verdict.example(format!("stream {stream_id} was created {created} times"));
        }
        if chain_valid(&client, stream_id).await? {
            verdict.chains_valid += 1;
        } else {
            verdict.example(format!("stream {stream_id}: hash chain does not verify"));
        }
    }
    // Every service-request decision appends exactly one event.
    if service_request_events != processed_service_requests {
        verdict.wrong += 1;
        verdict.example(format!(
            "{service_request_events} service-request events for {processed_service_requests} processed jobs"
        ));
    }
    Ok(verdict)
}
