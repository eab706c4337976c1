//! The event store, jobs and delivery semantics against the real Postgres and RabbitMQ.

#![allow(clippy::unwrap_used)]

use ehealth_domain::service_request::{Command, Event, ServiceRequestAggregate};
use ehealth_infra::{
    event_store::{self, Metadata},
    jobs::{self, NewJob, Submitted},
    projection,
};
use ehealth_tests::TestApp;
use ehealth_worker::handler::{self, Processed};
use reqwest::StatusCode;
use uuid::Uuid;

fn metadata() -> Metadata {
    Metadata {
        causation_id: None,
        correlation_id: "test".to_owned(),
        actor_user_id: Uuid::new_v4(),
        legal_entity_id: Uuid::new_v4(),
        client_type: "MSP".to_owned(),
    }
}

fn created(id: Uuid) -> Event {
    Event::Created {
        id,
        patient_id: Uuid::new_v4(),
        category: "c".to_owned(),
        code: "x".to_owned(),
        program_id: None,
        expiration_date: None,
        requester_legal_entity_id: Uuid::new_v4(),
        requester_user_id: Uuid::new_v4(),
        program_processing_status: None,
    }
}

/// Appends one `created` event to a new stream and returns the stream id.
async fn stream_with_one_event(app: &TestApp) -> Uuid {
    let id = Uuid::new_v4();
    let mut client = app.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let loaded = event_store::load::<ServiceRequestAggregate>(&tx, id)
        .await
        .unwrap();
    event_store::append::<ServiceRequestAggregate>(&tx, id, &loaded, &[created(id)], &metadata())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_delete_and_truncate_on_events_are_refused() {
    let app = TestApp::spawn_without_worker().await;
    let id = stream_with_one_event(&app).await;
    let client = app.pool.get().await.unwrap();
    for sql in [
        "UPDATE events SET event_type = 'tampered'",
        "DELETE FROM events",
        "TRUNCATE events",
        "TRUNCATE events CASCADE",
    ] {
        let error = client.batch_execute(sql).await.expect_err(sql);
        assert!(
            error
                .as_db_error()
                .unwrap()
                .message()
                .contains("events are append-only"),
            "{sql}: {error}"
        );
    }
    let rows = client
        .query("SELECT 1 FROM events WHERE stream_id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_of_the_same_version_gets_a_conflict() {
    let app = TestApp::spawn_without_worker().await;
    let id = stream_with_one_event(&app).await;
    let client = app.pool.get().await.unwrap();
    let seen = event_store::load::<ServiceRequestAggregate>(&client, id)
        .await
        .unwrap();
    assert_eq!(seen.version, 1);

    event_store::append::<ServiceRequestAggregate>(
        &client,
        id,
        &seen,
        &[Event::Completed],
        &metadata(),
    )
    .await
    .unwrap();
    let second = event_store::append::<ServiceRequestAggregate>(
        &client,
        id,
        &seen,
        &[Event::Completed],
        &metadata(),
    )
    .await;
    assert!(
        matches!(
            second,
            Err(ehealth_infra::StoreError::Conflict { expected: 1, .. })
        ),
        "{second:?}"
    );

    let fresh = Uuid::new_v4();
    let empty = event_store::load::<ServiceRequestAggregate>(&client, fresh)
        .await
        .unwrap();
    event_store::append::<ServiceRequestAggregate>(
        &client,
        fresh,
        &empty,
        &[created(fresh)],
        &metadata(),
    )
    .await
    .unwrap();
    let again = event_store::append::<ServiceRequestAggregate>(
        &client,
        fresh,
        &empty,
        &[created(fresh)],
        &metadata(),
    )
    .await;
    assert!(
        matches!(
            again,
            Err(ehealth_infra::StoreError::Conflict { expected: 0, .. })
        ),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hash_chain_of_a_stream_links_and_detects_tampering() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let id = api.created_service_request(Uuid::new_v4(), true).await;
    api.finished(api.use_request(id, msp.legal_entity_id, None).await)
        .await
        .assert_processed();
    api.finished(api.release(id).await).await.assert_processed();

    let client = app.pool.get().await.unwrap();
    assert!(event_store::verify_chain(&client, id).await.unwrap());
    let events = event_store::read_stream(&client, id).await.unwrap();
    assert_eq!(events.len(), 3);
    assert!(events[0].prev_hash.is_none());
    assert_eq!(
        events[1].prev_hash.as_deref(),
        Some(events[0].hash.as_str())
    );
    assert_eq!(
        events[2].prev_hash.as_deref(),
        Some(events[1].hash.as_str())
    );

    // Tampering needs the trigger out of the way: only a superuser could do it, and the chain still shows it.
    client
        .batch_execute(
            "ALTER TABLE events DISABLE TRIGGER events_refuse_update_delete; \
             UPDATE events SET data = jsonb_set(data, '{code}', '\"forged\"') WHERE stream_version = 1; \
             ALTER TABLE events ENABLE TRIGGER events_refuse_update_delete;",
        )
        .await
        .unwrap();
    assert!(!event_store::verify_chain(&client, id).await.unwrap());
}

async fn submit(
    app: &TestApp,
    stream_id: Uuid,
    command: &Command,
    actor: ehealth_domain::Actor,
) -> Uuid {
    let new = NewJob {
        job_type: format!("service_request.{}", command.name()),
        stream_type: "service_request".to_owned(),
        stream_id,
        command: serde_json::to_value(command).unwrap(),
        actor,
        request_id: "test".to_owned(),
        idempotency_key: None,
    };
    match jobs::submit(&app.pool, new).await.unwrap() {
        Submitted::Created(job, _) | Submitted::Existing(job) => job.id,
    }
}

fn actor_of(party: &ehealth_tests::Party) -> ehealth_domain::Actor {
    ehealth_domain::Actor {
        user_id: party.user_id,
        legal_entity_id: party.legal_entity_id,
        client_type: ehealth_domain::ClientType::Msp,
    }
}

fn publisher(app: &TestApp) -> ehealth_infra::amqp::Publisher {
    ehealth_infra::amqp::Publisher::new(
        &app.config.amqp_url,
        ehealth_infra::amqp::Topology::new(&app.config.queue_prefix),
        app.config.retry_delay_ms,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_delivered_twice_appends_once() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let id = Uuid::new_v4();
    let create = Command::Create {
        id,
        patient_id: Uuid::new_v4(),
        category: "c".to_owned(),
        code: "x".to_owned(),
        program_id: None,
        expiration_date: None,
    };
    let job_id = submit(&app, id, &create, actor_of(&msp)).await;
    let publisher = publisher(&app);

    let (first, second) = tokio::join!(
        handler::process_job(&app.pool, &publisher, &app.storage, job_id),
        handler::process_job(&app.pool, &publisher, &app.storage, job_id)
    );
    let outcomes = [first.unwrap(), second.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Processed::Finished(_)))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Processed::Skipped)
            .count(),
        1,
        "{outcomes:?}"
    );
    let third = handler::process_job(&app.pool, &publisher, &app.storage, job_id)
        .await
        .unwrap();
    assert_eq!(third, Processed::Skipped);

    let rows = app
        .query("SELECT count(*) FROM events WHERE stream_id = $1", &[&id])
        .await;
    assert_eq!(rows[0].get::<_, i64>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_commands_on_one_stream_both_end_correctly() {
    let mut app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let id = api.created_service_request(Uuid::new_v4(), true).await;
    api.finished(api.use_request(id, msp.legal_entity_id, None).await)
        .await
        .assert_processed();
    app.stop_worker().await;

    // Both read version 2; one appends, the other conflicts, decides again on the new state and fails.
    let release = submit(&app, id, &Command::Release, actor_of(&msp)).await;
    let process = submit(&app, id, &Command::Process, actor_of(&msp)).await;
    let publisher = publisher(&app);
    let (a, b) = tokio::join!(
        handler::process_job(&app.pool, &publisher, &app.storage, release),
        handler::process_job(&app.pool, &publisher, &app.storage, process)
    );
    let (Processed::Finished(a), Processed::Finished(b)) = (a.unwrap(), b.unwrap()) else {
        panic!("both jobs must finish");
    };
    let statuses = [a.status_code, b.status_code];
    assert!(
        statuses.contains(&200) && statuses.contains(&409),
        "{statuses:?}"
    );

    let rows = app
        .query(
            "SELECT stream_version FROM events WHERE stream_id = $1 ORDER BY 1",
            &[&id],
        )
        .await;
    let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, [1, 2, 3]);
    let client = app.pool.get().await.unwrap();
    assert!(event_store::verify_chain(&client, id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_accepted_while_the_worker_is_down_is_processed_after_it_starts() {
    let mut app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let reply = api.create_service_request(Uuid::new_v4(), false).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pending = api.get(&reply.job_href()).await;
    assert_eq!(pending.body["data"]["status"], "pending");
    assert_eq!(pending.headers["retry-after"], "1");

    app.start_worker();
    app.api(&msp.token)
        .poll_job(&reply.job_href())
        .await
        .assert_processed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_a_command_whose_publish_was_lost() {
    let mut app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    // Written as intake writes it, but never published: as if the api died right after its commit.
    let id = Uuid::new_v4();
    let create = Command::Create {
        id,
        patient_id: Uuid::new_v4(),
        category: "c".to_owned(),
        code: "x".to_owned(),
        program_id: None,
        expiration_date: None,
    };
    let job_id = submit(&app, id, &create, actor_of(&msp)).await;
    app.query(
        "UPDATE outbox SET inserted_at = now() - interval '1 minute'",
        &[],
    )
    .await;

    app.start_worker();
    let href = format!("/Jobs/{job_id}");
    app.api(&msp.token).poll_job(&href).await.assert_processed();
    let rows = app
        .query(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND exchange = 'commands'",
            &[],
        )
        .await;
    assert_eq!(rows[0].get::<_, i64>(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilding_the_projection_from_the_log_gives_exactly_the_live_table() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let patient = Uuid::new_v4();
    let a = api.created_service_request(patient, true).await;
    let _b = api.created_service_request(patient, false).await;
    api.finished(
        api.use_request(a, msp.legal_entity_id, Some(msp.user_id))
            .await,
    )
    .await
    .assert_processed();
    api.finished(api.release(a).await).await.assert_processed();

    let mut client = app.pool.get().await.unwrap();
    let live = projection::dump_table(&client, "service_requests")
        .await
        .unwrap();
    assert_eq!(live.len(), 2);
    let streams = projection::rebuild_all(&mut client).await.unwrap();
    assert_eq!(streams, 2);
    let rebuilt = projection::dump_table(&client, "service_requests")
        .await
        .unwrap();
    assert_eq!(live, rebuilt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_change_is_published_as_an_integration_event() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let mut events = app.subscribe("service_request.#").await;

    let id = app
        .api(&msp.token)
        .created_service_request(Uuid::new_v4(), false)
        .await;
    let event = events
        .next(std::time::Duration::from_secs(10))
        .await
        .expect("a StatusChangeEvent");
    assert_eq!(event["event_type"], "StatusChangeEvent");
    assert_eq!(event["entity_type"], "service_request");
    assert_eq!(event["entity_id"], id.to_string());
    assert_eq!(event["properties"]["status"]["new_value"], "active");
    assert_eq!(event["changed_by"], msp.user_id.to_string());
    events.close().await;
}
