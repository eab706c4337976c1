//! The worker's side of RabbitMQ: it survives losing its consumer and comes back with backoff.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ehealth_infra::amqp;
use ehealth_tests::TestApp;
use lapin::{
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};
use uuid::Uuid;

/// The number of consumers on the commands queue, or `None` while it does not exist.
async fn consumers(connection: &lapin::Connection, queue: &str) -> Option<u32> {
    let channel = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .ok()?;
    let _ = channel.close(200, "done".into()).await;
    Some(declared.consumer_count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reconnects_after_losing_its_queue_and_processes_commands_again() {
    let app = TestApp::spawn().await;
    let party = app.msp().await;
    let api = app.api(&party.token);
    // The worker is up: a command is processed.
    api.created_service_request(Uuid::new_v4(), false).await;

    let connection = amqp::connect(&app.config.amqp_url).await.unwrap();
    let queue = amqp::Topology::new(&app.config.queue_prefix).commands();
    assert_eq!(consumers(&connection, &queue).await, Some(1));

    // Deleting the queue cancels the worker's consumer, as a broker failover or an operator would.
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();

    // The worker reconnects, declares its topology again and consumes.
    assert!(
        app.eventually(Duration::from_secs(15), || async {
            consumers(&connection, &queue).await == Some(1)
        })
        .await,
        "the worker is consuming again"
    );
    api.created_service_request(Uuid::new_v4(), false).await;
    let _ = connection.close(200, "done".into()).await;
}
