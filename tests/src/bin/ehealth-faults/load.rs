//! The load: service-request commands sent over HTTP at a steady pace, as an MIS would, while a fault
//! happens. Most are creates (each body distinct, so no deduplication merges them); some are bursts of
//! lifecycle commands (use, use by the doctor, release) on one already created request, sent at once so
//! that they race for the stream's version. Every job id answered 202 is recorded: a 202 is a promise.
//! Refusals (5xx, timeouts) during an outage promise nothing. A connection refused (the api is down) is
//! retried, since the request never arrived.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Result;
use ehealth_tests::http::use_body;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};
use uuid::Uuid;

use crate::rng::Rng;

/// How many commands, over how long, in which mix.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Commands to send (a lifecycle burst counts as three).
    pub commands: usize,
    /// The time the commands are spread over; zero sends them as fast as `concurrency` allows, with no
    /// time limit (the `backlog` scenario).
    pub duration: Duration,
    /// How many requests are in flight at most.
    pub concurrency: usize,
    /// Share of steps that are lifecycle bursts rather than creates.
    pub lifecycle_share: f64,
    /// Share of creates whose code carries the panic marker, with the marker.
    pub panic: Option<(f64, &'static str)>,
}

/// Who sends the commands.
#[derive(Debug, Clone)]
pub struct Client {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Bearer token of an approved doctor of an MSP.
    pub token: String,
    /// The MIS's api-key.
    pub api_key: String,
    /// The doctor's legal entity.
    pub legal_entity_id: Uuid,
    /// The doctor (a valid `used_by_employee`).
    pub user_id: Uuid,
}

/// What the load did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Job ids answered 202.
    pub accepted: HashSet<Uuid>,
    /// Commands sent (each counted once, whatever its retries; a lifecycle burst whose request was not
    /// created yet sends nothing).
    pub sent: usize,
    /// Answers other than 202, by status.
    pub refused: BTreeMap<u16, usize>,
    /// Requests that got no answer (timeouts, connections cut mid-request, api down past the retries).
    pub unanswered: usize,
}

impl Outcome {
    /// `500×3 503×10 none×2`.
    pub fn refusals(&self) -> String {
        let mut parts: Vec<String> = self
            .refused
            .iter()
            .map(|(status, n)| format!("{status}×{n}"))
            .collect();
        if self.unanswered > 0 {
            parts.push(format!("none×{}", self.unanswered));
        }
        parts.join(" ")
    }
}

#[derive(Default)]
struct Shared {
    outcome: Outcome,
    /// Jobs of accepted creates, to pick lifecycle targets from.
    creates: Vec<Uuid>,
}

/// How many requests the paced scenarios keep in flight at most.
pub const CONCURRENCY: usize = 16;
/// Retries of a request whose connection was refused (the api restarting), 250 ms apart.
const CONNECT_RETRIES: u32 = 40;

/// Sends `plan`'s commands, paced evenly over its duration (never past twice the duration) or, with a zero
/// duration, as fast as its concurrency allows; waits for every answer.
pub async fn run(client: Client, plan: LoadPlan, mut rng: Rng) -> Result<Outcome> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(2))
        .build()?;
    let client = Arc::new((client, http));
    let shared = Arc::new(Mutex::new(Shared::default()));
    let permits = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let started = Instant::now();
    let paced = !plan.duration.is_zero();
    let hard_stop = started + plan.duration * 2;
    let per_command = plan.duration.as_secs_f64() / plan.commands.max(1) as f64;
    let mut tasks = JoinSet::new();
    let mut sent = 0usize;
    let mut serial = 0u64;
    while sent < plan.commands {
        if paced {
            let due = started + Duration::from_secs_f64(per_command * sent as f64);
            tokio::time::sleep_until(due).await;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        if paced && Instant::now() > hard_stop {
            break;
        }
        serial += 1;
        let target = if rng.chance(plan.lifecycle_share) {
            pick(&shared, &mut rng)
        } else {
            None
        };
        let (client, shared, mut task_rng) = (client.clone(), shared.clone(), rng.fork());
        match target {
            Some(create_job) => {
                sent += 3;
                tasks.spawn(async move {
                    lifecycle(&client.0, &client.1, &shared, create_job).await;
                    drop(permit);
                });
            }
            None => {
                sent += 1;
                let code = match plan.panic {
                    Some((share, marker)) if task_rng.chance(share) => format!("{marker}-{serial}"),
                    _ => format!("LAB-{serial}"),
                };
                tasks.spawn(async move {
                    create(&client.0, &client.1, &shared, &code).await;
                    drop(permit);
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let mut shared = shared
        .lock()
        .map_err(|_| anyhow::anyhow!("load state poisoned"))?;
    Ok(std::mem::take(&mut shared.outcome))
}

fn pick(shared: &Mutex<Shared>, rng: &mut Rng) -> Option<Uuid> {
    let shared = shared.lock().ok()?;
    let n = shared.creates.len() as u64;
    (n > 0).then(|| shared.creates[rng.below(n) as usize])
}

async fn create(client: &Client, http: &reqwest::Client, shared: &Mutex<Shared>, code: &str) {
    let body = json!({
        "category": "laboratory_procedure",
        "code": code,
        "program_id": Uuid::new_v4(),
    });
    let path = format!("/api/patients/{}/service_requests", Uuid::new_v4());
    if let Some(job) = command(client, http, shared, Method::POST, &path, Some(body)).await {
        if let Ok(mut shared) = shared.lock() {
            shared.creates.push(job);
        }
    }
}

/// Finds the request a create made (`GET /Jobs/{id}` → 303 `Location`), then sends use, use by the doctor
/// and release at once. A create not processed yet is skipped (nothing is sent).
async fn lifecycle(client: &Client, http: &reqwest::Client, shared: &Mutex<Shared>, job: Uuid) {
    let Some(request) = created_request(client, http, job).await else {
        return;
    };
    let base = format!("/api/service_requests/{request}/actions");
    let doctor = use_body(client.legal_entity_id, Some(client.user_id));
    let anyone = use_body(client.legal_entity_id, None);
    let (use_path, release_path) = (format!("{base}/use"), format!("{base}/release"));
    tokio::join!(
        command(client, http, shared, Method::PATCH, &use_path, Some(anyone)),
        command(client, http, shared, Method::PATCH, &use_path, Some(doctor)),
        command(client, http, shared, Method::PATCH, &release_path, None),
    );
}

async fn created_request(client: &Client, http: &reqwest::Client, job: Uuid) -> Option<Uuid> {
    let response = http
        .get(format!("{}/Jobs/{job}", client.base))
        .bearer_auth(&client.token)
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::SEE_OTHER {
        return None;
    }
    response
        .headers()
        .get("location")?
        .to_str()
        .ok()?
        .rsplit('/')
        .next()?
        .parse()
        .ok()
}

/// Sends one command; its job id when answered 202.
async fn command(
    client: &Client,
    http: &reqwest::Client,
    shared: &Mutex<Shared>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Option<Uuid> {
    if let Ok(mut shared) = shared.lock() {
        shared.outcome.sent += 1;
    }
    let mut attempt = 0;
    let response = loop {
        let mut request = http
            .request(method.clone(), format!("{}{path}", client.base))
            .bearer_auth(&client.token)
            .header("api-key", &client.api_key);
        if let Some(body) = &body {
            request = request.json(body);
        }
        match request.send().await {
            Ok(response) => break Some(response),
            Err(e) if e.is_connect() && attempt < CONNECT_RETRIES => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(_) => break None,
        }
    };
    let answer = match response {
        Some(response) => {
            let status = response.status();
            let body: Option<Value> = response.json().await.ok();
            Some((status, body))
        }
        None => None,
    };
    let mut shared = shared.lock().ok()?;
    match answer {
        Some((StatusCode::ACCEPTED, Some(body))) => {
            let job = body["data"]["links"][0]["href"]
                .as_str()
                .and_then(|href| href.strip_prefix("/Jobs/"))
                .and_then(|id| id.parse().ok());
            match job {
                Some(job) => {
                    shared.outcome.accepted.insert(job);
                }
                None => *shared.outcome.refused.entry(202).or_default() += 1,
            }
            job
        }
        Some((status, _)) => {
            *shared.outcome.refused.entry(status.as_u16()).or_default() += 1;
            None
        }
        None => {
            shared.outcome.unanswered += 1;
            None
        }
    }
}
