//! The worker's batches (`WORKER_BATCH`): several jobs decided in one transaction, and the single path for
//! whatever a batch cannot take or when its transaction fails, against the real Postgres and RabbitMQ.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ehealth_domain::service_request::{Command, Event, ServiceRequestAggregate};
use ehealth_infra::{
    event_store::{self, Metadata},
    jobs::{self, JobStatus, NewJob, Submitted},
};
use ehealth_tests::{Api, TestApp};
use ehealth_worker::handler::{self, Batched, Processed};
use serde_json::json;
use uuid::Uuid;

fn actor_of(party: &ehealth_tests::Party) -> ehealth_domain::Actor {
    ehealth_domain::Actor {
        user_id: party.user_id,
        legal_entity_id: party.legal_entity_id,
        client_type: ehealth_domain::ClientType::Msp,
    }
}

/// Submits a create of service request `stream_id` (with `code`) as a job, as the api does, and returns
/// the job's id.
async fn submit_create(
    app: &TestApp,
    party: &ehealth_tests::Party,
    stream_id: Uuid,
    code: &str,
) -> Uuid {
    let command = Command::Create {
        id: stream_id,
        patient_id: Uuid::new_v4(),
        category: "laboratory_procedure".to_owned(),
        code: code.to_owned(),
        program_id: None,
        expiration_date: None,
    };
    let new = NewJob {
        job_type: "service_request.create".to_owned(),
        stream_type: "service_request".to_owned(),
        stream_id,
        command: serde_json::to_value(&command).unwrap(),
        actor: actor_of(party),
        request_id: format!("test-{code}"),
        idempotency_key: None,
    };
    match jobs::submit(&ehealth_infra::db::Shared::new(app.pool.clone(), 1), new)
        .await
        .unwrap()
    {
        Submitted::Created(job, _) | Submitted::Existing(job) => job.id,
    }
}

fn publisher(app: &TestApp) -> ehealth_infra::amqp::Publisher {
    ehealth_infra::amqp::Publisher::new(&app.config)
}

async fn job(app: &TestApp, id: Uuid) -> jobs::Job {
    let client = app.pool.get().await.unwrap();
    jobs::get(&client, id).await.unwrap().unwrap()
}

async fn event_count(app: &TestApp, stream_id: Uuid) -> i64 {
    app.query(
        "SELECT count(*) FROM events WHERE stream_id = $1",
        &[&stream_id],
    )
    .await[0]
        .get(0)
}

fn finished_with(result: &Batched, status: JobStatus, status_code: u16) -> bool {
    matches!(result, Batched::Done(Processed::Finished(outcome))
        if outcome.status == status && outcome.status_code == status_code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_creates_is_decided_and_committed_in_one_transaction() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let mut streams = Vec::new();
    let mut job_ids = Vec::new();
    for n in 0..5 {
        let stream_id = Uuid::new_v4();
        streams.push(stream_id);
        job_ids.push(submit_create(&app, &msp, stream_id, &format!("BATCH-{n}")).await);
    }

    let results = handler::process_batch(&app.pool, &publisher(&app), &app.storage, &job_ids)
        .await
        .unwrap();

    assert_eq!(results.len(), job_ids.len());
    assert!(
        results
            .iter()
            .all(|r| finished_with(r, JobStatus::Processed, 201)),
        "{results:?}"
    );
    assert_eq!(handler::batches(), 1);
    // `finished_at` is the transaction's time (now()): one value for all of them, one commit.
    let rows = app
        .query(
            "SELECT count(DISTINCT finished_at), count(*) FILTER (WHERE status = 'processed') \
             FROM jobs WHERE id = ANY($1)",
            &[&job_ids],
        )
        .await;
    assert_eq!(
        rows[0].get::<_, i64>(0),
        1,
        "one transaction finished them all"
    );
    assert_eq!(rows[0].get::<_, i64>(1), 5);
    for (stream_id, job_id) in streams.iter().zip(&job_ids) {
        assert_eq!(event_count(&app, *stream_id).await, 1);
        let job = job(&app, *job_id).await;
        assert_eq!(job.attempts, 1);
        assert_eq!(job.response.unwrap()["id"], json!(stream_id));
        assert!(
            event_store::verify_chain(&app.pool.get().await.unwrap(), *stream_id)
                .await
                .unwrap()
        );
    }
    let projected = app
        .query(
            "SELECT count(*) FROM service_requests WHERE id = ANY($1)",
            &[&streams],
        )
        .await;
    assert_eq!(projected[0].get::<_, i64>(0), 5);
    let announced = app
        .query(
            "SELECT count(*) FROM outbox WHERE routing_key = 'service_request.status_changed' \
             AND (payload->>'entity_id')::uuid = ANY($1)",
            &[&streams],
        )
        .await;
    assert_eq!(
        announced[0].get::<_, i64>(0),
        5,
        "every job's status change is in the outbox"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_command_on_a_stream_of_the_batch_and_redelivered_finished_jobs_are_left_out() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let (shared, other) = (Uuid::new_v4(), Uuid::new_v4());
    let first = submit_create(&app, &msp, shared, "SAME-1").await;
    let second = submit_create(&app, &msp, shared, "SAME-2").await;
    let third = submit_create(&app, &msp, other, "OTHER").await;
    let publisher = publisher(&app);

    let results =
        handler::process_batch(&app.pool, &publisher, &app.storage, &[first, second, third])
            .await
            .unwrap();
    assert!(
        finished_with(&results[0], JobStatus::Processed, 201),
        "{results:?}"
    );
    assert_eq!(
        results[1],
        Batched::Single,
        "the second command on the stream waits for the first"
    );
    assert!(
        finished_with(&results[2], JobStatus::Processed, 201),
        "{results:?}"
    );
    assert_eq!(job(&app, second).await.status, JobStatus::Pending);

    // The single path decides it on the stream the batch wrote: the request exists already.
    let Processed::Finished(outcome) =
        handler::process_job(&app.pool, &publisher, &app.storage, second)
            .await
            .unwrap()
    else {
        panic!("the second create was not decided");
    };
    assert_eq!(outcome.status, JobStatus::Failed, "{outcome:?}");
    assert_eq!(event_count(&app, shared).await, 1);

    // Redeliveries of finished jobs are skipped, next to a job the batch finishes.
    let fourth = submit_create(&app, &msp, Uuid::new_v4(), "FOURTH").await;
    let again = handler::process_batch(
        &app.pool,
        &publisher,
        &app.storage,
        &[first, second, fourth],
    )
    .await
    .unwrap();
    assert_eq!(again[0], Batched::Done(Processed::Skipped));
    assert_eq!(again[1], Batched::Done(Processed::Skipped));
    assert!(
        finished_with(&again[2], JobStatus::Processed, 201),
        "{again:?}"
    );
    assert_eq!(event_count(&app, shared).await, 1);
    assert_eq!(event_count(&app, other).await, 1);
    assert_eq!(job(&app, first).await.attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_loses_a_concurrency_race_writes_nothing_and_its_jobs_end_on_the_single_path()
{
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let streams = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    let mut job_ids = Vec::new();
    for (n, stream_id) in streams.iter().enumerate() {
        job_ids.push(submit_create(&app, &msp, *stream_id, &format!("RACE-{n}")).await);
    }
    let contested = streams[1];

    // Another writer creates the middle stream and holds its transaction open ...
    let mut client = app.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let writer: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let loaded = event_store::load::<ServiceRequestAggregate>(&tx, contested)
        .await
        .unwrap();
    let created = Event::Created {
        id: contested,
        patient_id: Uuid::new_v4(),
        category: "laboratory_procedure".to_owned(),
        code: "WINNER".to_owned(),
        program_id: None,
        expiration_date: None,
        requester_legal_entity_id: msp.legal_entity_id,
        requester_user_id: msp.user_id,
        program_processing_status: None,
    };
    let metadata = Metadata {
        causation_id: None,
        correlation_id: "winner".to_owned(),
        actor_user_id: msp.user_id,
        legal_entity_id: msp.legal_entity_id,
        client_type: "MSP".to_owned(),
    };
    event_store::append::<ServiceRequestAggregate>(&tx, contested, &loaded, &[created], &metadata)
        .await
        .unwrap();

    // ... while the batch, which read the stream empty, waits on it; then the other writer commits.
    let batch = {
        let (pool, storage, publisher) = (app.pool.clone(), app.storage.clone(), publisher(&app));
        let job_ids = job_ids.clone();
        tokio::spawn(
            async move { handler::process_batch(&pool, &publisher, &storage, &job_ids).await },
        )
    };
    // Blocked by this writer's backend: `pg_locks` is the whole server's, where other tests wait on locks too.
    assert!(
        app.eventually(Duration::from_secs(10), || async {
            let waiting = app
                .query(
                    "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                    &[&writer],
                )
                .await;
            waiting[0].get::<_, i64>(0) > 0
        })
        .await,
        "the batch waits for the other writer"
    );
    tx.commit().await.unwrap();
    drop(client);
    let lost = batch.await.unwrap();
    assert!(
        matches!(lost, Err(ehealth_infra::StoreError::Conflict { .. })),
        "{lost:?}"
    );

    // Nothing of the batch was written ...
    let pending = app
        .query(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'pending'",
            &[&job_ids],
        )
        .await;
    assert_eq!(pending[0].get::<_, i64>(0), 3);
    assert_eq!(event_count(&app, streams[0]).await, 0);
    assert_eq!(event_count(&app, streams[2]).await, 0);

    // ... and the single path ends every job, as the consumer does after a failed batch.
    let publisher = publisher(&app);
    let mut outcomes = Vec::new();
    for job_id in &job_ids {
        match handler::process_job(&app.pool, &publisher, &app.storage, *job_id)
            .await
            .unwrap()
        {
            Processed::Finished(outcome) => outcomes.push(outcome),
            Processed::Skipped => panic!("job {job_id} was skipped"),
        }
    }
    assert_eq!(outcomes[0].status, JobStatus::Processed);
    assert_eq!(
        outcomes[1].status,
        JobStatus::Failed,
        "the winner created it first"
    );
    assert_eq!(outcomes[2].status, JobStatus::Processed);
    for stream_id in streams {
        assert_eq!(event_count(&app, stream_id).await, 1);
    }
}

/// Sends a create with `code` and returns its job's href (asserting 202).
async fn create(api: &Api<'_>, code: &str) -> String {
    api.create_coded(code).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_the_worker_takes_in_batches_ends_with_every_job_processed_once() {
    let mut app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    let mut hrefs = Vec::new();
    for n in 0..32 {
        hrefs.push(create(&app.api(&party.token), &format!("BACKLOG-{n}")).await);
    }
    app.start_worker();
    let api = app.api(&party.token);
    for href in &hrefs {
        api.poll_job(href).await.assert_processed();
    }
    let ids: Vec<Uuid> = hrefs
        .iter()
        .map(|href| Uuid::parse_str(href.trim_start_matches("/Jobs/")).unwrap())
        .collect();
    assert!(
        handler::batches() > 0,
        "the backlog reached the worker in batches"
    );
    let rows = app
        .query(
            "SELECT count(DISTINCT finished_at), count(*) FILTER (WHERE attempts = 1) \
             FROM jobs WHERE id = ANY($1)",
            &[&ids],
        )
        .await;
    assert!(
        rows[0].get::<_, i64>(0) < 32,
        "some jobs shared a transaction"
    );
    assert_eq!(rows[0].get::<_, i64>(1), 32);
    let events = app
        .query(
            "SELECT count(*), count(DISTINCT stream_id) FROM events WHERE metadata->>'causation_id' \
             = ANY($1::text[])",
            &[&ids.iter().map(Uuid::to_string).collect::<Vec<_>>()],
        )
        .await;
    assert_eq!(events[0].get::<_, i64>(0), 32, "one event per job");
    assert_eq!(events[0].get::<_, i64>(1), 32);
}
