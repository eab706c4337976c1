//! Command intake through HTTP: 503 while the database is unreachable and recovery without a restart,
//! `Prefer: wait` answered by the `job_finished` notification (no polling), and idempotency that works for
//! creates.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ehealth_tests::{http::Reply, Api, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_postgres::NoTls;
use uuid::Uuid;

/// The statement `jobs::get` runs: how a waiting request reads its job.
const READ_JOB_SQL: &str = "%FROM jobs WHERE id = $1%";

async fn admin() -> tokio_postgres::Client {
    let url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn database_name(app: &TestApp) -> String {
    let config: tokio_postgres::Config = app.config.database_url.parse().unwrap();
    config.get_dbname().unwrap().to_owned()
}

fn create_body(code: &str) -> Value {
    json!({ "category": "laboratory_procedure", "code": code })
}

async fn create(api: &Api<'_>, patient: Uuid, body: Value, headers: &[(&str, &str)]) -> Reply {
    let path = format!("/api/patients/{patient}/service_requests");
    api.request(Method::POST, &path, Some(body), headers).await
}

#[track_caller]
fn assert_unavailable(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(
        reply.body["error"]["type"], "service_unavailable",
        "{reply:?}"
    );
    assert_eq!(reply.body["meta"]["code"], 503, "{reply:?}");
    assert!(reply.headers.contains_key("retry-after"), "{reply:?}");
}

/// Runs the real worker until the returned sender is used or dropped.
fn start_worker(app: &TestApp) -> oneshot::Sender<()> {
    let worker = ehealth_worker::Worker::build(app.config.clone()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));
    stop
}

/// The first `Some` that `probe` gives within `timeout`, probing every 50 ms.
async fn first_some<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(value) = probe().await {
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// `(pid, state_change)` of every backend of the test database (but this one and the listener) whose last
/// statement read a job by id, once none of them is running.
async fn job_readers(app: &TestApp) -> Vec<(i32, String)> {
    let rows = app
        .query(
            "SELECT pid, state_change::text, state FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND application_name <> $2 AND query LIKE $1 ORDER BY pid",
            &[
                &READ_JOB_SQL,
                &ehealth_infra::finished_jobs::LISTENER_APPLICATION_NAME,
            ],
        )
        .await;
    rows.iter()
        .filter(|row| row.get::<_, Option<String>>(2).as_deref() == Some("idle"))
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_refuses_connections_every_route_answers_503_and_recovers_by_itself() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let patient = Uuid::new_v4();
    let id = api.created_service_request(patient, false).await;
    let db = database_name(&app);
    let admin = admin().await;

    admin
        .batch_execute(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&db],
        )
        .await
        .unwrap();
    let gone = app
        .eventually(Duration::from_secs(10), || async {
            let rows = admin
                .query("SELECT 1 FROM pg_stat_activity WHERE datname = $1", &[&db])
                .await
                .unwrap();
            rows.is_empty()
        })
        .await;
    assert!(gone, "the test database still has backends");

    let started = Instant::now();
    assert_unavailable(&api.get(&format!("/api/service_requests/{id}")).await);
    assert_unavailable(&api.get(&format!("/Jobs/{}", Uuid::new_v4())).await);
    assert_unavailable(&create(&api, patient, create_body("LAB-002"), &[]).await);
    assert_unavailable(
        &create(
            &api,
            patient,
            create_body("LAB-003"),
            &[("prefer", "wait=5")],
        )
        .await,
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "four 503s took {:?}",
        started.elapsed()
    );

    admin
        .batch_execute(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    let recovered = app
        .eventually(Duration::from_secs(15), || async {
            api.get(&format!("/api/service_requests/{id}")).await.status == StatusCode::OK
        })
        .await;
    assert!(
        recovered,
        "the api did not recover after the database came back"
    );
    let reply = create(
        &api,
        patient,
        create_body("LAB-004"),
        &[("prefer", "wait=10")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_is_answered_when_its_job_finishes_without_polling_the_jobs_table() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let patient = Uuid::new_v4();
    // The api's listener connects in the background after start; a request that waited before its LISTEN
    // would rightly read its job again once it is listening. Wait for the LISTEN to be done.
    let listening = app
        .eventually(Duration::from_secs(10), || async {
            !app.query(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = $1 AND query = 'LISTEN job_finished' AND state = 'idle'",
                &[&ehealth_infra::finished_jobs::LISTENER_APPLICATION_NAME],
            )
            .await
            .is_empty()
        })
        .await;
    assert!(listening, "the api's listener never listened");

    let waiting = create(
        &api,
        patient,
        create_body("LAB-001"),
        &[("prefer", "wait=10")],
    );
    let driver = async {
        // The request has read its job once after subscribing when a backend's last statement is that read.
        let baseline = first_some(Duration::from_secs(10), || async {
            Some(job_readers(&app).await).filter(|readers| !readers.is_empty())
        })
        .await
        .expect("the request never read its job");
        // For 1.5 s (three fallback intervals, thirty polls of the old loop) nobody reads the job again.
        let window = Instant::now();
        while window.elapsed() < Duration::from_millis(1500) {
            let now = job_readers(&app).await;
            assert!(
                now.iter().all(|reader| baseline.contains(reader)),
                "the waiting request polled the jobs table: {baseline:?} then {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stop = start_worker(&app);
        (Instant::now(), stop)
    };
    let (reply, (worker_started, stop)) = tokio::join!(waiting, driver);
    let answered_after = worker_started.elapsed();
    drop(stop);

    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(reply.body["data"]["status"], "active", "{reply:?}");
    assert_eq!(reply.headers["preference-applied"], "wait=10");
    assert!(
        answered_after < Duration::from_secs(5),
        "answered {answered_after:?} after the worker started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_after_its_connection_is_terminated() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let listener_pid = || async {
        app.query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = $1 AND query = 'LISTEN job_finished'",
            &[&ehealth_infra::finished_jobs::LISTENER_APPLICATION_NAME],
        )
        .await
        .first()
        .map(|row| row.get::<_, i32>(0))
    };
    let first = first_some(Duration::from_secs(10), listener_pid)
        .await
        .expect("no listener connection");
    app.query("SELECT pg_terminate_backend($1)", &[&first])
        .await;

    let reconnected = app
        .eventually(Duration::from_secs(15), || async {
            listener_pid().await.is_some_and(|pid| pid != first)
        })
        .await;
    assert!(reconnected, "the listener did not reconnect");
    let reply = create(
        &api,
        Uuid::new_v4(),
        create_body("LAB-001"),
        &[("prefer", "wait=10")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_repeated_with_the_same_idempotency_key_gets_the_first_job_and_then_its_resource()
{
    let mut app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let patient = Uuid::new_v4();
    let key = [("idempotency-key", "create-1")];
    let first = {
        let api = app.api(&msp.token);
        let first = create(&api, patient, create_body("LAB-001"), &key).await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
        let again = create(&api, patient, create_body("LAB-001"), &key).await;
        assert_eq!(again.status, StatusCode::ACCEPTED, "{again:?}");
        assert_eq!(first.job_href(), again.job_href());
        first
    };

    app.start_worker();
    let api = app.api(&msp.token);
    let id = api.poll_job(&first.job_href()).await.assert_processed();
    let retried = create(&api, patient, create_body("LAB-001"), &key).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{retried:?}");
    assert_eq!(retried.body["data"]["id"], id.to_string());
    assert_eq!(
        retried.headers["location"],
        format!("/api/service_requests/{id}").as_str()
    );
    let waited = create(
        &api,
        patient,
        create_body("LAB-001"),
        &[key[0], ("prefer", "wait=5")],
    )
    .await;
    assert_eq!(waited.status, StatusCode::CREATED, "{waited:?}");
    assert_eq!(waited.body["data"]["id"], id.to_string());

    let list = api
        .get(&format!("/api/patients/{patient}/service_requests"))
        .await;
    assert_eq!(list.body["paging"]["total_entries"], 1, "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identical_creates_while_the_first_is_pending_are_one_job() {
    let mut app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let patient = Uuid::new_v4();
    let (href, other_href) = {
        let api = app.api(&msp.token);
        let (a, b) = tokio::join!(
            create(&api, patient, create_body("LAB-001"), &[]),
            create(&api, patient, create_body("LAB-001"), &[]),
        );
        assert_eq!(a.status, StatusCode::ACCEPTED, "{a:?}");
        assert_eq!(b.status, StatusCode::ACCEPTED, "{b:?}");
        assert_eq!(a.job_href(), b.job_href());
        let c = create(&api, patient, create_body("LAB-001"), &[]).await;
        assert_eq!(a.job_href(), c.job_href());
        let other = create(&api, patient, create_body("LAB-002"), &[]).await;
        assert_ne!(
            a.job_href(),
            other.job_href(),
            "another body is another job"
        );
        (a.job_href(), other.job_href())
    };
    let jobs = app
        .query(
            "SELECT count(*) FROM jobs WHERE type = 'service_request.create'",
            &[],
        )
        .await;
    assert_eq!(jobs[0].get::<_, i64>(0), 2);

    app.start_worker();
    let api = app.api(&msp.token);
    api.poll_job(&href).await.assert_processed();
    api.poll_job(&other_href).await.assert_processed();
    let list = api
        .get(&format!("/api/patients/{patient}/service_requests"))
        .await;
    assert_eq!(list.body["paging"]["total_entries"], 2, "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_with_another_body_is_refused_with_422() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let patient = Uuid::new_v4();
    let key = [("idempotency-key", "create-2")];
    let first = create(&api, patient, create_body("LAB-001"), &key).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    let other = create(&api, patient, create_body("LAB-002"), &key).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY, "{other:?}");
    assert_eq!(
        other.body["error"]["invalid"][0]["rules"][0]["description"],
        "Idempotency-Key was already used with a different request",
        "{other:?}"
    );
    let elsewhere = create(&api, Uuid::new_v4(), create_body("LAB-001"), &key).await;
    assert_eq!(
        elsewhere.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{elsewhere:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_left_unused_are_closed_so_a_burst_gives_them_back() {
    let url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let pool = ehealth_infra::db::pool(&url, 4).unwrap();
    let burst = (pool.get().await.unwrap(), pool.get().await.unwrap());
    drop(burst);
    assert_eq!(pool.status().size, 2, "the burst's connections stay pooled");
    ehealth_infra::db::close_idle_connections(&pool, Duration::from_millis(200));
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.status().size > 0 {
        assert!(Instant::now() < deadline, "still open: {:?}", pool.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = pool.get().await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
}
