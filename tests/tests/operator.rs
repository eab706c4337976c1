//! What the operator's CLI (`ehealth-admin`) does, seen from the running services: a revoked token or api-key
//! is answered 401 (within the api's credential cache TTL; an expired token at once); a job run again ends once the worker takes it; every way a job ends `failed_with_error`
//! records who ended it and why, for operators only. The CLI surface itself is tested in
//! `api/tests/admin_cli.rs`; here the same infra functions it calls run against the real api and worker.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ehealth_infra::{
    identity::{self, TokenRef},
    operator::{self, Retryable},
};
use ehealth_tests::{eventually, Api, TestApp};
use uuid::Uuid;

/// Sends a create with `code` and returns its job id (asserting 202).
async fn create(api: &Api<'_>, code: &str) -> (Uuid, String) {
    let href = api.create_coded(code).await;
    let id = href.trim_start_matches("/Jobs/").parse().unwrap();
    (id, href)
}

/// The job's `(status, ended_by, error_detail)` as stored.
async fn ending(app: &TestApp, id: Uuid) -> (String, Option<String>, Option<String>) {
    let rows = app
        .query(
            "SELECT status, ended_by, error_detail FROM jobs WHERE id = $1",
            &[&id],
        )
        .await;
    (rows[0].get(0), rows[0].get(1), rows[0].get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_or_api_key_is_answered_401_like_one_never_issued() {
    let app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    // A route that checks the api-key, then the token, then answers 404 for an unknown request.
    let path = format!("/api/service_requests/{}", Uuid::new_v4());
    let never_issued = app.api("never issued").get(&path).await;
    assert_eq!(never_issued.status, 401, "{never_issued:?}");
    assert_eq!(app.api(&party.token).get(&path).await.status, 404);

    let client = app.pool.get().await.unwrap();
    let revoked = identity::revoke_token(&client, &TokenRef::Secret(party.token.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.status, "revoked");
    // The api trusts a verified token for AUTH_CACHE_TTL_MS: the revocation takes effect within that bound.
    let bound = cache_bound(&app);
    let refused = eventually(bound, || async {
        let reply = app.api(&party.token).get(&path).await;
        (reply.status, reply.body["error"].clone())
            == (never_issued.status, never_issued.body["error"].clone())
    })
    .await;
    assert!(refused, "a revoked token is refused within {bound:?}");

    // Another token of the same user still works: revocation is per token.
    let other = app
        .token(
            party.user_id,
            ehealth_domain::ClientType::Msp,
            "service_request:read",
            chrono::Duration::hours(1),
        )
        .await;
    assert_eq!(app.api(&other).get(&path).await.status, 404);

    let issued = identity::issue_api_client(&client, "MIS to revoke")
        .await
        .unwrap();
    let with_key = || app.api(&other).with_api_key(&issued.api_key);
    assert_eq!(with_key().get(&path).await.status, 404);
    identity::revoke_api_client(&client, issued.id)
        .await
        .unwrap()
        .unwrap();
    let refused = eventually(bound, || async {
        with_key().get(&path).await.status == 401
    })
    .await;
    assert!(refused, "a revoked api-key is refused within {bound:?}");
    with_key()
        .get(&path)
        .await
        .assert_error(401, "invalid api-key");
}

/// How long a revocation may take to reach the api: its credential cache's TTL, and a margin for the
/// requests themselves.
fn cache_bound(app: &TestApp) -> Duration {
    Duration::from_millis(app.config.auth_cache_ttl_ms) + Duration::from_secs(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_while_cached_is_refused_at_once() {
    let app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    let path = format!("/api/service_requests/{}", Uuid::new_v4());
    let lifetime = chrono::Duration::seconds(2);
    let token = app
        .token(
            party.user_id,
            ehealth_domain::ClientType::Msp,
            "service_request:read",
            lifetime,
        )
        .await;
    let expires_at = chrono::Utc::now() + lifetime;
    // Verified once, and so cached for AUTH_CACHE_TTL_MS (longer than the token lives).
    let first_use = std::time::Instant::now();
    assert_eq!(app.api(&token).get(&path).await.status, 404);
    assert!(Duration::from_millis(app.config.auth_cache_ttl_ms) > Duration::from_secs(3));
    let refused = eventually(Duration::from_secs(10), || async {
        app.api(&token).get(&path).await.status == 401
    })
    .await;
    assert!(refused, "the expired token is refused");
    // Refused when it expired, not when its cache entry lapsed: expiry is checked on every request.
    assert!(
        chrono::Utc::now() < expires_at + chrono::Duration::milliseconds(1500),
        "refused {:?} after its first use, too late for an expiry check",
        first_use.elapsed()
    );
    app.api(&token)
        .get(&path)
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_with_error_job_run_again_by_an_operator_ends_processed() {
    let mut app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    let api = app.api(&party.token);
    let (id, href) = create(&api, "RETRY-1").await;
    app.lose_command(id).await;
    // Ended by a fault two hours after it was accepted, well past JOB_DEADLINE_SECONDS: a retry must not be
    // ended by the sweeper before the worker had its chance.
    app.query(
        "UPDATE jobs SET status = 'failed_with_error', status_code = 500, \
           response = '{\"type\": \"internal_error\", \"message\": \"Internal server error\"}', \
           finished_at = now(), inserted_at = now() - interval '2 hours', ended_by = 'dead_letter', \
           error_detail = 'dead-lettered: attempts exhausted (10 of 10)' WHERE id = $1",
        &[&id],
    )
    .await;
    let failed = api.poll_job(&href).await;
    assert_eq!(failed.status(), "failed_with_error");
    assert!(
        !failed.data.to_string().contains("dead-lettered"),
        "the reason is never shown to API clients: {failed:?}"
    );

    let mut client = app.pool.get().await.unwrap();
    let retried = operator::retry(&mut client, id, Retryable::FailedWithError)
        .await
        .unwrap();
    assert_eq!((retried.status, retried.retries), ("pending", 1));
    assert_eq!(api.get(&href).await.body["data"]["status"], "pending");
    app.start_worker();
    let api = app.api(&party.token);
    api.poll_job(&href).await.assert_processed();

    let shown = operator::show_job(&client, id).await.unwrap().unwrap();
    assert_eq!(
        (shown.status.as_str(), shown.status_code),
        ("processed", Some(201))
    );
    assert_eq!(
        (shown.retries, &shown.error_detail, &shown.ended_by),
        (1, &None, &None)
    );
    assert_eq!(shown.events.len(), 1, "{shown:?}");
    assert_eq!(shown.events[0].metadata["causation_id"], id.to_string());
    // Run again only once: a processed job keeps its outcome.
    let again = operator::retry(&mut client, id, Retryable::FailedWithError).await;
    assert!(
        matches!(again, Err(operator::RetryError::NotFailedWithError { .. })),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_recorded_on_its_job_and_requeued_it_ends_processed() {
    // Debug builds only (worker/src/fault.rs); the test process is this test's alone under nextest.
    std::env::set_var(ehealth_worker::fault::PANIC_ON, "PANIC-OPERATOR");
    let app = TestApp::spawn().await;
    let party = app.msp().await;
    let api = app.api(&party.token);
    let (id, href) = create(&api, "PANIC-OPERATOR-1").await;
    let failed = api.poll_job(&href).await;
    assert_eq!(failed.status(), "failed_with_error", "{failed:?}");
    let (_, ended_by, detail) = ending(&app, id).await;
    assert_eq!(ended_by.as_deref(), Some("dead_letter"));
    assert_eq!(
        detail.as_deref(),
        Some("dead-lettered: attempts exhausted (4 of 4)"),
        "the broker said `rejected`, after WORKER_MAX_ATTEMPTS"
    );
    // The broker's dead-letter queue is empty by design: the job is what remembers the dead letter.
    let dead = app.topology().dead_queue();
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.queue(&dead).await.is_some_and(|q| q.messages == 0)
        })
        .await
    );
    let client = app.pool.get().await.unwrap();
    let listed = operator::dead_lettered(&client, 50).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);

    // The operator mends the cause, then requeues every dead letter.
    app.query(
        "UPDATE jobs SET command = jsonb_set(command, '{code}', '\"LAB-MENDED\"') WHERE id = $1",
        &[&id],
    )
    .await;
    let mut client = client;
    let requeued = operator::requeue_dead_letters(&mut client).await.unwrap();
    assert_eq!(requeued.requeued.len(), 1, "{requeued:?}");
    assert!(requeued.skipped.is_empty());
    api.poll_job(&href).await.assert_processed();
    assert_eq!(ending(&app, id).await, ("processed".to_owned(), None, None));
    assert!(operator::dead_lettered(&client, 50)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_stored_command_is_not_valid_is_ended_by_the_worker_with_the_reason() {
    let mut app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    let (id, href) = create(&app.api(&party.token), "BROKEN-1").await;
    app.query(
        "UPDATE jobs SET command = '{\"action\": \"no_such_action\"}' WHERE id = $1",
        &[&id],
    )
    .await;
    app.start_worker();
    let job = app.api(&party.token).poll_job(&href).await;
    assert_eq!(
        (job.status(), job.status_code()),
        ("failed_with_error", 500)
    );
    assert_eq!(job.data["error"]["type"], "internal_error");
    let (_, ended_by, detail) = ending(&app, id).await;
    assert_eq!(ended_by.as_deref(), Some("worker"));
    let detail = detail.unwrap();
    assert!(
        detail.starts_with("stored command is not valid: ") && detail.contains("no_such_action"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_sweeper_ends_past_its_deadline_records_why() {
    let mut app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    let (id, href) = create(&app.api(&party.token), "OVERDUE-OP-1").await;
    app.lose_command(id).await;
    app.query(
        "UPDATE jobs SET inserted_at = now() - interval '2 hours' WHERE id = $1",
        &[&id],
    )
    .await;
    app.start_worker();
    let job = app.api(&party.token).poll_job(&href).await;
    assert_eq!(job.status(), "failed_with_error", "{job:?}");
    let deadline = app.config.job_deadline_seconds;
    assert_eq!(
        ending(&app, id).await,
        (
            "failed_with_error".to_owned(),
            Some("sweeper".to_owned()),
            Some(format!("pending past JOB_DEADLINE_SECONDS ({deadline} s)"))
        )
    );
}
