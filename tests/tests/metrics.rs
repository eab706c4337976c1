//! Operating the service: `/metrics` on the api and the worker after a real create → processed flow, and
//! `/health/live` and `/health/ready` on both — ready while PostgreSQL, RabbitMQ and the files bucket answer,
//! 503 naming RabbitMQ while the broker cannot be reached.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ehealth_infra::Config;
use ehealth_tests::{wait_for, TestApp};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

/// `GET url` without credentials: status and body text.
async fn get(url: &str) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

async fn get_json(url: &str) -> (StatusCode, Value) {
    let (status, body) = get(url).await;
    (status, serde_json::from_str(&body).unwrap())
}

/// The value of the sample of `name` whose labels include every one of `labels`, if the scrape has one.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name).then_some((label_text, value))
        })
        .find(|(label_text, _)| {
            labels.iter().all(|(key, value)| {
                label_text
                    .split(',')
                    .any(|pair| pair == format!("{key}=\"{value}\""))
            })
        })
        .and_then(|(_, value)| value.parse().ok())
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_processed_create_the_metrics_show_the_request_the_job_its_latency_and_the_queues()
{
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let patient = Uuid::new_v4();
    let accepted = api.create_service_request(patient, false).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{accepted:?}");
    api.poll_job(&accepted.job_href()).await.assert_processed();
    let job_type: String = app
        .query("SELECT type FROM jobs", &[])
        .await
        .first()
        .unwrap()
        .get(0);

    let (status, text) = get(&format!("{}/metrics", app.address)).await;
    assert_eq!(status, StatusCode::OK);
    let route = "/api/patients/{patient_id}/service_requests";
    assert_eq!(
        sample(
            &text,
            "http_requests_total",
            &[("method", "POST"), ("route", route), ("status", "202")]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "http_request_duration_seconds_bucket",
            &[("route", route), ("le", "+Inf")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        sample(&text, "http_requests_total", &[("route", "/Jobs/{id}")]).is_some(),
        "the polls count under the job route's template: {text}"
    );
    assert!(
        !text.contains(&patient.to_string()),
        "no id is ever a label: {text}"
    );
    assert_eq!(
        sample(&text, "jobs_accepted_total", &[("type", &job_type)]),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "db_pool_max", &[]).is_some(), "{text}");
    assert!(sample(&text, "feed_lag_seconds", &[]).is_some(), "{text}");

    let worker = app.worker_address.clone().unwrap();
    let (status, text) = get(&format!("{worker}/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sample(
            &text,
            "jobs_finished_total",
            &[("type", &job_type), ("status", "processed")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "job_latency_seconds_bucket",
            &[("type", &job_type), ("le", "+Inf")]
        ),
        Some(1.0),
        "{text}"
    );
    let topology = app.topology();
    for queue in [topology.commands(), topology.dead_queue()] {
        assert_eq!(
            sample(&text, "rabbitmq_queue_messages", &[("queue", &queue)]),
            Some(0.0),
            "{queue} is drained: {text}"
        );
    }
    // The create's status-changed event has no queue bound for it: it waits in the unrouted-events queue, and
    // the gauge, read from the broker at every scrape, shows it once it is published.
    let unrouted = topology.unrouted_events();
    let shown = wait_for(Duration::from_secs(10), || {
        let url = format!("{worker}/metrics");
        let unrouted = unrouted.clone();
        async move {
            let (_, text) = get(&url).await;
            (sample(&text, "rabbitmq_queue_messages", &[("queue", &unrouted)]) == Some(1.0))
                .then_some(())
        }
    })
    .await;
    assert!(shown.is_some(), "{unrouted} holds the status-changed event");
    assert_eq!(
        sample(
            &text,
            "rabbitmq_queue_consumers",
            &[("queue", &topology.commands())]
        ),
        Some(1.0),
        "the worker consumes the commands: {text}"
    );
    assert!(sample(&text, "outbox_unpublished", &[]).is_some(), "{text}");
    assert!(
        sample(&text, "outbox_oldest_unpublished_age_seconds", &[]).is_some(),
        "{text}"
    );
    assert!(
        sample(&text, "db_pool_connections", &[("state", "idle")]).is_some(),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_matches_no_route_counts_as_unmatched_not_by_its_path() {
    let app = TestApp::spawn_without_worker().await;
    let path = format!("/no/such/{}", Uuid::new_v4());
    let (status, _) = get(&format!("{}{path}", app.address)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, text) = get(&format!("{}/metrics", app.address)).await;
    assert!(
        sample(
            &text,
            "http_requests_total",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        )
        .is_some(),
        "{text}"
    );
    assert!(!text.contains(&path), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_worker_are_live_and_ready_while_their_dependencies_answer() {
    let app = TestApp::spawn().await;
    let worker = app.worker_address.clone().unwrap();
    for base in [app.address.as_str(), worker.as_str()] {
        for live in ["/health", "/health/live"] {
            let (status, body) = get_json(&format!("{base}{live}")).await;
            assert_eq!(status, StatusCode::OK, "{base}{live}");
            assert_eq!(body["status"], "ok");
        }
        let (status, body) = get_json(&format!("{base}/health/ready")).await;
        assert_eq!(status, StatusCode::OK, "{base}: {body}");
        assert_eq!(body["status"], "ready");
        for check in ["postgres", "rabbitmq", "s3"] {
            assert_eq!(body["checks"][check]["status"], "up", "{base}: {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_503_naming_rabbitmq_while_the_broker_cannot_be_reached() {
    let app = TestApp::spawn_without_worker().await;
    let config = Config {
        amqp_url: format!("amqp://guest:guest@127.0.0.1:{}/%2f", closed_port()),
        http_addr: "127.0.0.1:0".to_owned(),
        worker_http_addr: "127.0.0.1:0".to_owned(),
        public_base_url: None,
        ..app.config.clone()
    };
    // The api connects to the broker lazily, so it starts without one.
    let application = ehealth_api::Application::build(config.clone())
        .await
        .unwrap();
    let api = format!("http://{}", application.local_addr().unwrap());
    let (stop_api, api_stopped) = oneshot::channel::<()>();
    let api_task = tokio::spawn(application.run_until(async {
        let _ = api_stopped.await;
    }));
    let worker = ehealth_worker::Worker::build(config).unwrap();
    let worker_address = format!("http://{}", worker.http_addr());
    let (stop_worker, worker_stopped) = oneshot::channel::<()>();
    let worker_task = tokio::spawn(worker.run_until(async {
        let _ = worker_stopped.await;
    }));

    for base in [api.as_str(), worker_address.as_str()] {
        let (status, body) = get_json(&format!("{base}/health/live")).await;
        assert_eq!(status, StatusCode::OK, "{base}: live needs no broker");
        assert_eq!(body["status"], "ok");
        let started = std::time::Instant::now();
        let (status, body) = get_json(&format!("{base}/health/ready")).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "checks are bounded"
        );
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{base}: {body}");
        assert_eq!(body["meta"]["code"], 503, "{body}");
        assert_eq!(body["error"]["type"], "service_unavailable", "{body}");
        assert_eq!(body["error"]["message"], "not ready: rabbitmq", "{body}");
        assert_eq!(body["checks"]["rabbitmq"]["status"], "down", "{body}");
        assert_eq!(body["checks"]["postgres"]["status"], "up", "{body}");
        assert_eq!(body["checks"]["s3"]["status"], "up", "{body}");
    }

    // A scrape still answers, without queue depths, and counts the failed refresh.
    let (status, text) = get(&format!("{worker_address}/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        sample(
            &text,
            "metrics_refresh_failures_total",
            &[("source", "rabbitmq")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );

    let _ = stop_worker.send(());
    let _ = stop_api.send(());
    worker_task.await.unwrap();
    api_task.await.unwrap().unwrap();
}
