//! The worker's side of RabbitMQ: it survives losing its consumer and comes back with backoff.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ehealth_infra::amqp;
use ehealth_tests::TestApp;
use lapin::options::QueueDeleteOptions;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reconnects_after_losing_its_queue_and_processes_commands_again() {
    let app = TestApp::spawn().await;
    let party = app.msp().await;
    let api = app.api(&party.token);
    // The worker is up: a command is processed.
    api.created_service_request(Uuid::new_v4(), false).await;

    let queue = app.topology().commands();
    let consumers = || async { app.queue(&queue).await.map(|q| q.consumers) };
    assert_eq!(consumers().await, Some(1));

    // Deleting the queue cancels the worker's consumer, as a broker failover or an operator would.
    let connection = amqp::connect(&app.config.amqp_url).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;

    // The worker reconnects, declares its topology again and consumes.
    assert!(
        app.eventually(Duration::from_secs(15), || async {
            consumers().await == Some(1)
        })
        .await,
        "the worker is consuming again"
    );
    api.created_service_request(Uuid::new_v4(), false).await;
}
