//! Test harness for eHealth Jobs: every test gets its own database (cloned from a migrated template), its
//! own RabbitMQ prefix, the api on port 0 and, when asked, the real worker — all in-process, against the real
//! PostgreSQL and RabbitMQ. Everything a test created is removed when its [`TestApp`] is dropped.
//!
//! Environment: `TEST_DATABASE_URL` (an admin connection, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `AMQP_URL`.

#![allow(clippy::unwrap_used, missing_docs)]

mod db;
pub mod files;
pub mod http;
pub mod s3_form;

use std::time::Duration;

use deadpool_postgres::Pool;
use ehealth_domain::ClientType;
use ehealth_infra::{amqp, identity, Config};
use tokio::{sync::oneshot, task::JoinHandle};
use uuid::Uuid;

pub use http::{Api, JobResult};

/// Every scope the service knows, for callers that may do anything.
pub const ALL_SCOPES: &str =
    "service_request:write service_request:use service_request:read job:read gambit:erp \
     private_contracts:write patient_attachment:read patient_attachment:write contract_request:create \
     contract_request:read contract_request:update contract_request:approve contract_request:sign \
     contract_request:terminate";

/// A running api (and optionally worker) over a fresh database and queue prefix.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// A pool on the test's database as its owner (setup and inspection; the services run as the runtime role).
    pub pool: Pool,
    /// The configuration the api and worker run with.
    pub config: Config,
    /// A valid api-key.
    pub api_key: String,
    /// `http://127.0.0.1:<port>` of the running worker's HTTP listener (`/metrics`, `/health/*`), while a
    /// worker started by [`TestApp::start_worker`] runs.
    pub worker_address: Option<String>,
    /// The object store the api and worker use: the embedded one, on its own port and directory.
    pub storage: ehealth_infra::storage::Storage,
    db_name: String,
    data_dir: std::path::PathBuf,
    s3: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    api: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    worker: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// A subscription to integration events (see [`TestApp::subscribe`]).
pub struct Subscription {
    connection: lapin::Connection,
    consumer: lapin::Consumer,
}

impl Subscription {
    /// The next event's JSON body (acknowledged), or `None` if none arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        use futures_util::StreamExt;
        let delivery = tokio::time::timeout(timeout, self.consumer.next())
            .await
            .ok()??
            .unwrap();
        delivery
            .ack(lapin::options::BasicAckOptions::default())
            .await
            .unwrap();
        Some(serde_json::from_slice(&delivery.data).unwrap())
    }

    /// Closes the connection (and with it the exclusive queue).
    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// A legal entity with one user and a token.
#[derive(Debug, Clone)]
pub struct Party {
    pub legal_entity_id: Uuid,
    pub user_id: Uuid,
    pub token: String,
}

impl TestApp {
    /// Starts the api and the worker.
    pub async fn spawn() -> Self {
        let mut app = Self::spawn_without_worker().await;
        app.start_worker();
        app
    }

    /// Starts the api only; commands stay pending until [`TestApp::start_worker`].
    pub async fn spawn_without_worker() -> Self {
        Self::spawn_without_worker_with(|_| {}).await
    }

    /// Starts the api only, with the test configuration changed by `configure` (the worker started later
    /// runs with it too).
    pub async fn spawn_without_worker_with(configure: impl FnOnce(&mut Config)) -> Self {
        let db_name = db::create_test_database().await;
        let data_dir =
            std::env::temp_dir().join(format!("ehealth-test-{}", Uuid::new_v4().simple()));
        // The account the api would generate at first start, made here so the harness knows it.
        let (key_id, secret) =
            ehealth_infra::storage::embedded_keys::load_or_create(&data_dir).unwrap();
        let (key_id, secret) = (key_id.as_str(), secret.as_str());
        let s3 =
            ehealth_api::embedded_s3::EmbeddedS3::start("127.0.0.1:0", &data_dir, key_id, secret)
                .await
                .unwrap();
        let s3_endpoint = s3.endpoint();
        let (stop_s3, s3_stopped) = oneshot::channel::<()>();
        let s3_handle = tokio::spawn(async move {
            let _ = s3_stopped.await;
            s3.stop().await;
        });
        let mut config = Config {
            s3_endpoint: Some(s3_endpoint),
            s3_access_key_id: Some(key_id.to_owned()),
            s3_secret_access_key: Some(secret.to_owned()),
            max_upload_bytes: 1024 * 1024,
            // The services run as the least-privilege runtime role, so a privilege rule can fail a test.
            database_url: db::runtime_database_url(&db_name),
            migration_database_url: db::database_url(&db_name),
            amqp_url: std::env::var("AMQP_URL").unwrap_or_else(|_| Config::default().amqp_url),
            http_addr: "127.0.0.1:0".to_owned(),
            worker_http_addr: "127.0.0.1:0".to_owned(),
            queue_prefix: format!("test-{}", Uuid::new_v4().simple()),
            retry_delay_ms: 200,
            // Few retry queues per test: 200, 400 and 800 ms.
            worker_max_attempts: 4,
            outbox_relay_interval_ms: 100,
            db_pool_size: 8,
            // Tests run several apis at once against one server: small pools (opened on demand).
            api_db_pool_size: 8,
            ..Config::default()
        };
        configure(&mut config);
        ehealth_infra::telemetry::init("text");
        // The test's own connection is the owner's, like the admin CLI: it sets up reference data and
        // credentials, which the runtime role may not write.
        let pool = ehealth_infra::db::pool(&config.migration_database_url, 4).unwrap();
        let application = ehealth_api::Application::build(config.clone())
            .await
            .unwrap();
        let address = format!("http://{}", application.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            application
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        let api_key = {
            let client = pool.get().await.unwrap();
            identity::issue_api_key(&client, "test MIS").await.unwrap()
        };
        Self {
            address,
            pool,
            storage: ehealth_infra::storage::Storage::new(&config),
            config,
            api_key,
            worker_address: None,
            db_name,
            data_dir,
            s3: Some((stop_s3, s3_handle)),
            api: Some((stop, handle)),
            worker: None,
        }
    }

    /// Starts the worker (consumer + outbox relay).
    pub fn start_worker(&mut self) {
        let worker = ehealth_worker::Worker::build(self.config.clone()).unwrap();
        self.worker_address = Some(format!("http://{}", worker.http_addr()));
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(worker.run_until(async {
            let _ = stopped.await;
        }));
        self.worker = Some((stop, handle));
    }

    /// Stops the worker gracefully and waits for it.
    pub async fn stop_worker(&mut self) {
        if let Some((stop, handle)) = self.worker.take() {
            let _ = stop.send(());
            let _ = handle.await;
        }
        self.worker_address = None;
    }

    /// Creates a legal entity of `le_type` with an approved, active doctor and a token of `client_type`
    /// with `scopes`.
    pub async fn party(&self, le_type: &str, client_type: ClientType, scopes: &str) -> Party {
        let client = self.pool.get().await.unwrap();
        let legal_entity_id =
            identity::create_legal_entity(&client, "Clinic", "12345678", le_type, "ACTIVE")
                .await
                .unwrap();
        let user_id = identity::create_user(
            &client,
            legal_entity_id,
            Some("DOCTOR"),
            Some("APPROVED"),
            true,
        )
        .await
        .unwrap();
        let token = self
            .token(user_id, client_type, scopes, chrono::Duration::hours(1))
            .await;
        Party {
            legal_entity_id,
            user_id,
            token,
        }
    }

    /// An MSP with every scope.
    pub async fn msp(&self) -> Party {
        self.party("MSP", ClientType::Msp, ALL_SCOPES).await
    }

    /// Issues a token for an existing user.
    pub async fn token(
        &self,
        user_id: Uuid,
        client_type: ClientType,
        scopes: &str,
        ttl: chrono::Duration,
    ) -> String {
        let client = self.pool.get().await.unwrap();
        let scopes: Vec<String> = scopes.split_whitespace().map(str::to_owned).collect();
        identity::issue_token(&client, user_id, client_type, &scopes, ttl)
            .await
            .unwrap()
            .token
    }

    /// An HTTP client acting with `token`.
    pub fn api(&self, token: &str) -> Api<'_> {
        Api::new(self, token)
    }

    /// Runs a query on the test database.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        let client = self.pool.get().await.unwrap();
        client.query(sql, params).await.unwrap()
    }

    /// Subscribes to integration events on `<prefix>.events` whose routing key matches `pattern` (topic
    /// syntax), through an exclusive queue that goes with the returned connection.
    pub async fn subscribe(&self, pattern: &str) -> Subscription {
        use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let connection = amqp::connect(&self.config.amqp_url).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let topology = amqp::Topology::new(&self.config);
        topology.declare(&channel).await.unwrap();
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare("".into(), exclusive, FieldTable::default())
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.name().as_str().into(),
                topology.events().as_str().into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let consumer = channel
            .basic_consume(
                queue.name().as_str().into(),
                "test".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        Subscription {
            connection,
            consumer,
        }
    }

    /// Waits until `check` is true, polling, for at most `timeout`.
    pub async fn eventually<F, Fut>(&self, timeout: Duration, check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        eventually(timeout, check).await
    }

    /// Loses job `job_id`'s command message as a broker could: waits until the api has published it (its
    /// outbox row is marked), then purges the commands queue, asserting that exactly that message was there.
    /// Only a message sent later (the sweeper's, an operator's retry) can then run the job.
    pub async fn lose_command(&self, job_id: Uuid) {
        let published = eventually(Duration::from_secs(10), || async {
            self.query(
                "SELECT 1 FROM outbox WHERE message_id = $1 AND published_at IS NOT NULL",
                &[&job_id],
            )
            .await
            .len()
                == 1
        })
        .await;
        assert!(published, "the api published the command");
        let connection = amqp::connect(&self.config.amqp_url).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let purged = channel
            .queue_purge(
                self.topology().commands().as_str().into(),
                lapin::options::QueuePurgeOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(purged, 1, "exactly the command's message was in the queue");
        let _ = connection.close(200, "done".into()).await;
    }

    /// The exchange and queue names of this test's prefix.
    pub fn topology(&self) -> amqp::Topology {
        amqp::Topology::new(&self.config)
    }

    /// What the broker says about one queue (a passive declare), or `None` while it does not exist.
    pub async fn queue(&self, name: &str) -> Option<QueueState> {
        use lapin::options::QueueDeclareOptions;
        let connection = amqp::connect(&self.config.amqp_url).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(name.into(), passive, lapin::types::FieldTable::default())
            .await
            .ok()
            .map(|queue| QueueState {
                messages: queue.message_count(),
                consumers: queue.consumer_count(),
            });
        let _ = connection.close(200, "done".into()).await;
        declared
    }
}

/// A queue as a passive declare reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    /// Messages ready for delivery (not those delivered and awaiting an acknowledgement).
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// Waits until `check` is true, polling every 50 ms, for at most `timeout`; whether it became true. For
/// conditions that become true on their own (a commit, a delivery, an expiry) instead of a fixed sleep.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(timeout, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await
    .is_some()
}

/// How long before the end of a UTC day [`within_one_utc_day`] waits for the next one.
pub const DAY_END_MARGIN: Duration = Duration::from_secs(120);

/// For a test that compares dates with "today" (the service's date rules are in UTC days, read by the api
/// and the worker when they decide): when the UTC day ends within [`DAY_END_MARGIN`], waits until the next
/// one has begun, so that the test, the api and the worker all see the same day until the test ends.
pub async fn within_one_utc_day() {
    let now = chrono::Utc::now();
    let next_day = now
        .date_naive()
        .succ_opt()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc());
    let left = next_day.and_then(|midnight| (midnight - now).to_std().ok());
    if let Some(left) = left.filter(|left| *left < DAY_END_MARGIN) {
        tokio::time::sleep(left + Duration::from_secs(1)).await;
    }
}

/// Like [`eventually`], for a condition that yields a value: the first `Some`, or `None` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = attempt().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let db_name = self.db_name.clone();
        let config = self.config.clone();
        let api = self.api.take();
        let worker = self.worker.take();
        let s3 = self.s3.take();
        let data_dir = self.data_dir.clone();
        // Async cleanup on a runtime of its own: the test's runtime may be shutting down.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                // The test's runtime is multi-threaded, so its tasks still run: stop them gracefully first, or
                // the worker would reconnect and declare the queues again after they are deleted.
                for (stop, handle) in [worker, api, s3].into_iter().flatten() {
                    let _ = stop.send(());
                    let abort = handle.abort_handle();
                    if tokio::time::timeout(Duration::from_secs(10), handle)
                        .await
                        .is_err()
                    {
                        abort.abort();
                    }
                }
                match amqp::connect(&config.amqp_url).await {
                    Ok(connection) => {
                        match connection.create_channel().await {
                            Ok(channel) => {
                                if let Err(e) = amqp::Topology::new(&config).delete(&channel).await
                                {
                                    eprintln!("test cleanup could not delete the queues: {e}");
                                }
                            }
                            Err(e) => eprintln!("test cleanup could not open a channel: {e}"),
                        }
                        let _ = connection.close(200, "test done".into()).await;
                    }
                    Err(e) => eprintln!("test cleanup could not reach the broker: {e}"),
                }
                db::drop_test_database(&db_name).await;
                let _ = std::fs::remove_dir_all(&data_dir);
            });
        });
        let _ = cleanup.join();
    }
}
