//! The event store, jobs and delivery semantics against the real Postgres and RabbitMQ.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ehealth_domain::{
    service_request::{Command, Event, ServiceRequestAggregate, State},
    Aggregate, Context,
};
use ehealth_infra::{
    event_store::{self, Metadata},
    jobs::{self, JobStatus, NewJob, Submitted},
    projection,
};
use ehealth_tests::{QueueState, TestApp};
use ehealth_worker::handler::{self, Processed};
use reqwest::StatusCode;
use serde_json::{json, Value};
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
    match jobs::submit(&ehealth_infra::db::Shared::new(app.pool.clone(), 1), new)
        .await
        .unwrap()
    {
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
    ehealth_infra::amqp::Publisher::new(&app.config)
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

/// Rounds of concurrent commands the conflict test runs at most before it gives up on seeing a conflict.
const MAX_ROUNDS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_stream_conflict_are_decided_again_and_all_end_correctly() {
    let mut app = TestApp::spawn().await;
    let (a, b, c) = (app.msp().await, app.msp().await, app.msp().await);
    let queue = app.topology().commands();
    let mut rounds = 0;
    while handler::conflicts() == 0 && rounds < MAX_ROUNDS {
        rounds += 1;
        // A fresh stream at version 2: created and used by `a`, in the program's queue.
        let id = {
            let api = app.api(&a.token);
            let id = api.created_service_request(Uuid::new_v4(), true).await;
            api.finished(api.use_request(id, a.legal_entity_id, None).await)
                .await
                .assert_processed();
            id
        };

        // With the worker down, commands that compete for the same state pile up in the queue ...
        app.stop_worker().await;
        let replies = {
            let (api_a, api_b, api_c) = (app.api(&a.token), app.api(&b.token), app.api(&c.token));
            [
                api_a.release(id).await,
                api_a.action(id, "process").await,
                api_a.action(id, "complete").await,
                api_a.use_request(id, a.legal_entity_id, None).await,
                api_b.use_request(id, b.legal_entity_id, None).await,
                api_b.release(id).await,
                api_c.use_request(id, c.legal_entity_id, None).await,
                api_c.action(id, "process").await,
            ]
        };
        let jobs: Vec<Uuid> = replies
            .iter()
            .map(|reply| {
                assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
                job_id(reply)
            })
            .collect();
        let waiting = u32::try_from(jobs.len()).unwrap();
        assert!(
            app.eventually(Duration::from_secs(10), || async {
                app.queue(&queue).await.map(|q| q.messages) == Some(waiting)
            })
            .await,
            "every command waits in {queue}"
        );
        // ... and reach the worker together (it holds up to WORKER_PREFETCH of them), which decides them
        // at the same time: those that read version 2 and lose the race must be decided again.
        app.start_worker();
        assert!(
            app.eventually(Duration::from_secs(30), || async {
                let rows = app
                    .query(
                        "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'pending'",
                        &[&jobs],
                    )
                    .await;
                rows[0].get::<_, i64>(0) == 0
            })
            .await,
            "every job ends"
        );
        assert_outcomes_follow_the_stream(&app, &a.token, id, 2, &jobs).await;
    }
    assert!(
        handler::conflicts() > 0,
        "no append lost a race in {rounds} rounds of concurrent commands"
    );
}

/// The job id of a 202.
fn job_id(reply: &ehealth_tests::http::Reply) -> Uuid {
    reply
        .job_href()
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap()
}

/// Checks the stream against the jobs that raced on it from version `from`: versions 1..=n with no gap and
/// an intact chain; every event after `from` caused by exactly one of `jobs`; every processed job's events
/// exactly what the domain decides on the state just before them; every failed job's rejection exactly what
/// the domain decides on one of the states the stream went through after `from`; and the projection equal
/// to the final state.
async fn assert_outcomes_follow_the_stream(
    app: &TestApp,
    token: &str,
    id: Uuid,
    from: usize,
    jobs: &[Uuid],
) {
    let client = app.pool.get().await.unwrap();
    let stored = event_store::read_stream(&client, id).await.unwrap();
    let versions: Vec<i64> = stored.iter().map(|e| e.stream_version).collect();
    let expected: Vec<i64> = (1..=i64::try_from(stored.len()).unwrap()).collect();
    assert_eq!(versions, expected, "versions without a gap");
    assert!(event_store::verify_chain(&client, id).await.unwrap());
    let events: Vec<Event> = stored
        .iter()
        .map(|e| {
            event_store::decode_event::<ServiceRequestAggregate>(&e.event_type, &e.data).unwrap()
        })
        .collect();
    // states[k]: the state after the first k events.
    let states: Vec<State> = (0..=events.len())
        .map(|k| ServiceRequestAggregate::fold(&events[..k]))
        .collect();
    let cause = |k: usize| -> Option<Uuid> {
        stored[k].metadata["causation_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
    };
    for (k, event) in stored.iter().enumerate().skip(from) {
        assert!(
            cause(k).is_some_and(|job| jobs.contains(&job)),
            "event {} ({}) was caused by none of the racing jobs",
            event.stream_version,
            event.event_type
        );
    }

    for &job_id in jobs {
        let job = jobs::get(&client, job_id).await.unwrap().unwrap();
        let command: Command = serde_json::from_value(job.command.clone()).unwrap();
        let ctx = Context::new(event_store::now(), job.actor.clone());
        let own: Vec<usize> = (0..stored.len())
            .filter(|&k| cause(k) == Some(job_id))
            .collect();
        match job.status {
            JobStatus::Processed => {
                assert!(
                    !own.is_empty(),
                    "{job:?} was processed but appended nothing"
                );
                let (first, last) = (own[0], own[own.len() - 1]);
                assert_eq!(own.len(), last - first + 1, "{job:?}: one append");
                assert_eq!(
                    ServiceRequestAggregate::decide(&states[first], command, &ctx),
                    Ok(events[first..=last].to_vec()),
                    "{job:?} appended what the state before it decides"
                );
                let after = states[last + 1].0.as_ref().unwrap();
                assert_eq!(job.status_code, Some(200), "{job:?}");
                assert_eq!(
                    job.response.as_ref().unwrap()["status"],
                    json!(after.status),
                    "{job:?} answers the state its events made"
                );
            }
            JobStatus::Failed => {
                assert!(own.is_empty(), "{job:?} failed but appended");
                let response = job.response.clone().unwrap();
                let seen = (from..states.len()).find(|&k| {
                    matches!(
                        ServiceRequestAggregate::decide(&states[k], command.clone(), &ctx),
                        Err(rejection) if Some(i32::from(rejection.status)) == job.status_code
                            && response["message"] == rejection.message.as_str()
                    )
                });
                assert!(
                    seen.is_some(),
                    "{job:?}: no state the stream went through refuses it like this"
                );
            }
            _ => panic!("{job:?} did not end as processed or failed"),
        }
    }

    let last = states.last().unwrap().0.clone().unwrap();
    let row = app
        .api(token)
        .get(&format!("/api/service_requests/{id}"))
        .await;
    let data = &row.body["data"];
    assert_eq!(data["status"], json!(last.status), "{row:?}");
    assert_eq!(
        data["program_processing_status"],
        json!(last.program_processing_status),
        "{row:?}"
    );
    assert_eq!(
        data["used_by_legal_entity"]["identifier"]["value"],
        last.used_by_legal_entity_id
            .map_or(Value::Null, |le| json!(le.to_string())),
        "{row:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_accepted_while_the_worker_is_down_waits_in_the_queue_and_is_processed_after_it_starts(
) {
    let mut app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let queue = app.topology().commands();
    let reply = app
        .api(&msp.token)
        .create_service_request(Uuid::new_v4(), false)
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);

    // The command is on the broker, waiting for a consumer; nothing decided it.
    assert!(
        app.eventually(Duration::from_secs(10), || async {
            app.queue(&queue).await
                == Some(QueueState {
                    messages: 1,
                    consumers: 0,
                })
        })
        .await,
        "the command message waits in {queue}"
    );
    let pending = app.api(&msp.token).get(&reply.job_href()).await;
    assert_eq!(pending.body["data"]["status"], "pending");
    assert_eq!(pending.headers["retry-after"], "1");
    let events = app.query("SELECT count(*) FROM events", &[]).await;
    assert_eq!(events[0].get::<_, i64>(0), 0, "nothing decided yet");

    app.start_worker();
    let id = app
        .api(&msp.token)
        .poll_job(&reply.job_href())
        .await
        .assert_processed();
    let events = app
        .query("SELECT count(*) FROM events WHERE stream_id = $1", &[&id])
        .await;
    assert_eq!(events[0].get::<_, i64>(0), 1);
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
