//! Every accepted command ends: a lost message is republished by the sweeper, an overdue job ends
//! `failed_with_error`, dead letters end their jobs, a panicking handler is retried and then ended, a returned
//! command is an error, an event no queue is bound for is kept, and a small pool drains a backlog. Against
//! the real PostgreSQL, RabbitMQ and worker.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ehealth_infra::amqp::{AmqpError, Publisher};
use ehealth_tests::{eventually, wait_for, Api, TestApp};
use lapin::{options::BasicPublishOptions, BasicProperties};
use serde_json::json;
use uuid::Uuid;

/// Sends a create with `code` and returns its job's href (asserting 202).
async fn create(api: &Api<'_>, code: &str) -> String {
    api.create_coded(code).await
}

fn job_id(href: &str) -> Uuid {
    Uuid::parse_str(href.trim_start_matches("/Jobs/")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_message_was_lost_is_republished_by_the_sweeper_and_processed() {
    let mut app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    let href = create(&app.api(&party.token), "LOST-1").await;
    app.lose_command(job_id(&href)).await;
    app.config.job_republish_after_seconds = 1;
    app.start_worker();
    app.api(&party.token)
        .poll_job(&href)
        .await
        .assert_processed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_pending_past_its_deadline_ends_failed_with_error() {
    let mut app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    let href = create(&app.api(&party.token), "OVERDUE-1").await;
    app.lose_command(job_id(&href)).await;
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE jobs SET inserted_at = now() - interval '2 hours' WHERE id = $1",
            &[&job_id(&href)],
        )
        .await
        .unwrap();
    app.start_worker();
    let job = app.api(&party.token).poll_job(&href).await;
    assert_eq!(job.status(), "failed_with_error", "{job:?}");
    assert_eq!(job.status_code(), 500);
    assert_eq!(job.data["error"]["type"], "internal_error", "{job:?}");
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE metadata->>'causation_id' = $1",
            &[&job_id(&href).to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 0, "an expired job decided nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_command_ends_its_job_failed_with_error() {
    let mut app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    let href = create(&app.api(&party.token), "DEAD-1").await;
    app.lose_command(job_id(&href)).await;
    let connection = ehealth_infra::amqp::connect(&app.config.amqp_url)
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_publish(
            app.topology().dead_exchange().as_str().into(),
            "command".into(),
            BasicPublishOptions::default(),
            json!({ "job_id": job_id(&href) }).to_string().as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
    app.start_worker();
    let job = app.api(&party.token).poll_job(&href).await;
    assert_eq!(job.status(), "failed_with_error", "{job:?}");
    assert_eq!(job.status_code(), 500);
    let dead = app.topology().dead_queue();
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.queue(&dead).await.is_some_and(|q| q.messages == 0)
        })
        .await,
        "the dead letter was acknowledged once its job ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_retried_with_back_off_then_its_job_ends_and_the_worker_goes_on() {
    // Debug builds only (worker/src/fault.rs); the test process is this test's alone under nextest.
    std::env::set_var(ehealth_worker::fault::PANIC_ON, "PANIC-ME");
    let app = TestApp::spawn().await;
    let party = app.msp().await;
    let api = app.api(&party.token);
    let started = Instant::now();
    let panicking = create(&api, "PANIC-ME-1").await;
    let job = api.poll_job(&panicking).await;
    assert_eq!(job.status(), "failed_with_error", "{job:?}");
    assert_eq!(job.status_code(), 500);
    // Attempts 1, 2 and 3 were parked 200, 400 and 800 ms (plus jitter) in the quorum retry queues before
    // the 4th and last attempt was dead-lettered.
    let backoff: Duration = (1..app.config.worker_max_attempts)
        .map(|attempt| app.config.retry_delay(attempt))
        .sum();
    assert!(
        started.elapsed() >= backoff,
        "{:?} < {backoff:?}",
        started.elapsed()
    );
    let fine = create(&api, "LAB-FINE").await;
    api.poll_job(&fine).await.assert_processed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_no_queue_takes_is_an_error_not_a_success() {
    let app = TestApp::spawn_without_worker().await;
    let publisher = Publisher::new(&app.config);
    let result = publisher
        .publish(
            &app.topology().commands(),
            "no-such-routing-key",
            b"{}",
            Uuid::new_v4(),
            Default::default(),
            None,
        )
        .await;
    assert!(
        matches!(result, Err(AmqpError::Unroutable(_))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_event_no_queue_is_bound_for_is_kept_in_the_unrouted_queue() {
    let app = TestApp::spawn().await;
    let party = app.msp().await;
    let api = app.api(&party.token);
    let href = create(&api, "LAB-UNROUTED").await;
    api.poll_job(&href).await.assert_processed();
    let unrouted = app.topology().unrouted_events();
    let kept = wait_for(Duration::from_secs(10), || async {
        app.queue(&unrouted)
            .await
            .filter(|q| q.messages >= 1)
            .map(|q| q.messages)
    })
    .await;
    assert_eq!(kept, Some(1), "the status change event was kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_with_a_configured_pool_smaller_than_the_prefetch() {
    let mut app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    let mut hrefs = Vec::new();
    for n in 0..60 {
        hrefs.push(create(&app.api(&party.token), &format!("BACKLOG-{n}")).await);
    }
    app.config.db_pool_size = 1;
    app.config.worker_prefetch = 16;
    app.start_worker();
    let api = app.api(&party.token);
    for href in &hrefs {
        api.poll_job(href).await.assert_processed();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_round_the_broker_refuses_leaves_its_rows_to_the_next_round_at_once() {
    let app = TestApp::spawn_without_worker().await;
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO outbox (message_id, exchange, routing_key, payload, inserted_at) \
             VALUES (gen_random_uuid(), 'events', 'test.relay', '{}', now() - interval '1 minute')",
            &[],
        )
        .await
        .unwrap();
    let down = Publisher::new(&ehealth_infra::Config {
        amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".to_owned(),
        amqp_timeout_ms: 500,
        ..app.config.clone()
    });
    let published = ehealth_worker::relay::relay_once(&app.pool, &down, 3000)
        .await
        .unwrap();
    assert_eq!(published, 0, "the broker is down");
    let claimed: i64 = client
        .query_one(
            "SELECT count(*) FROM outbox WHERE claimed_until IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(claimed, 0, "the failed round gave its claims up");
    let up = Publisher::new(&app.config);
    let published = ehealth_worker::relay::relay_once(&app.pool, &up, 3000)
        .await
        .unwrap();
    assert_eq!(published, 1, "the next round publishes it at once");
}

/// Inserts `n` outbox rows of integration events and returns them as committed messages.
async fn committed_events(app: &TestApp, n: usize) -> Vec<ehealth_infra::outbox::OutboxMessage> {
    let client = app.pool.get().await.unwrap();
    let mut messages = Vec::new();
    for _ in 0..n {
        messages.push(
            ehealth_infra::outbox::insert(
                &client,
                ehealth_infra::outbox::EVENTS,
                "test.background",
                &json!({ "n": messages.len() }),
                Uuid::new_v4(),
            )
            .await
            .unwrap(),
        );
    }
    messages
}

async fn published_count(app: &TestApp, ids: &[i64]) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one(
            "SELECT count(*) FROM outbox WHERE id = ANY($1) AND published_at IS NOT NULL",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_rows_handed_to_the_background_publisher_are_published_and_marked_without_the_caller_waiting(
) {
    let app = TestApp::spawn_without_worker().await;
    let up = std::sync::Arc::new(Publisher::new(&app.config));
    let messages = committed_events(&app, 40).await;
    let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
    for message in &messages {
        up.publish_in_background(&app.pool, std::slice::from_ref(message));
    }
    let marked = wait_for(Duration::from_secs(10), || async {
        Some(published_count(&app, &ids).await).filter(|n| *n == 40)
    })
    .await;
    assert_eq!(marked, Some(40), "every row published and marked");

    // A broker that cannot be reached: the caller returns at once, and the rows stay for the relay.
    let down = std::sync::Arc::new(Publisher::new(&ehealth_infra::Config {
        amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".to_owned(),
        amqp_timeout_ms: 500,
        ..app.config.clone()
    }));
    let messages = committed_events(&app, 3).await;
    let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
    // `publish_in_background` is a plain function (not async): the caller cannot wait for the broker.
    down.publish_in_background(&app.pool, &messages);
    wait_for(Duration::from_secs(10), || async {
        down.is_standing_back().then_some(())
    })
    .await
    .expect("the failed round makes the publisher stand back");
    assert_eq!(published_count(&app, &ids).await, 0, "left to the relay");
    let relayed = ehealth_worker::relay::relay_once(&app.pool, &up, 0)
        .await
        .unwrap();
    assert!(relayed >= 3, "the relay publishes them ({relayed})");
    assert_eq!(published_count(&app, &ids).await, 3);
}
