//! Building and running the api: typed config in, a bound listener out (port 0 in tests).

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc};

use axum::{middleware, Router};
use deadpool_postgres::Pool;
use ehealth_infra::{
    amqp::Publisher,
    db,
    finished_jobs::{FinishedJobs, Listener},
    health::BrokerProbe,
    identity::Credentials,
    storage::{embedded_keys, Storage},
    Config,
};
use tokio::net::TcpListener;

use crate::{context, embedded_s3::EmbeddedS3, metrics, routes};

/// What every handler shares: one `Arc`, so that the clones axum makes for every request (the router's, the
/// `State` extractor's) are a reference count each, not a copy of every field. The services are reached
/// through `Deref` (`state.pool`).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    /// The Postgres pool.
    pub pool: Pool,
    /// A few of the pool's connections shared by concurrent requests for their single statements (the
    /// poll's read, intake's insert): see [`db::Shared`].
    pub shared: db::Shared,
    /// The command publisher (confirms on).
    pub publisher: Arc<Publisher>,
    /// The configuration.
    pub config: Arc<Config>,
    /// `PUBLIC_BASE_URL`, without a trailing slash (shared: the state is cloned for every request).
    pub base_url: Arc<str>,
    /// `ME_ALLOWED_TRANSACTIONS_LE_TYPES`.
    pub allowed_le_types: Arc<Vec<String>>,
    /// The object store.
    pub storage: Storage,
    /// Requests waiting for their job (`Prefer: wait`), woken by the process's `job_finished` listener.
    pub finished_jobs: FinishedJobs,
    /// One broker connection for readiness checks, so probes do not open a connection each.
    pub broker: Arc<BrokerProbe>,
    /// Verified api-keys and tokens, kept for `AUTH_CACHE_TTL_MS`.
    pub credentials: Arc<Credentials>,
}

/// A built api, bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    router: Router,
    embedded_s3: Option<EmbeddedS3>,
    finished_jobs: FinishedJobs,
    job_listener: Listener,
    broker: Arc<BrokerProbe>,
}

impl Application {
    /// Builds the api: the pool, the publisher, the object store (the embedded one when `S3_ENDPOINT` is
    /// unset) with its buckets, the `job_finished` listener (one connection outside the pool) and the router,
    /// and binds `HTTP_ADDR`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let mut config = config;
        let embedded_s3 = match config.s3_endpoint {
            Some(_) => None,
            None => {
                // The configured keys, or the account generated at first start under DATA_DIR.
                let (id, secret) = match config.s3_static_keys() {
                    Some(keys) => keys,
                    None => embedded_keys::load_or_create(Path::new(&config.data_dir))?,
                };
                let s3 = EmbeddedS3::start(
                    &config.s3_embedded_addr,
                    Path::new(&config.data_dir),
                    &id,
                    &secret,
                )
                .await?;
                config.s3_embedded_addr = s3.local_addr().to_string();
                Some(s3)
            }
        };
        let storage = Storage::new(&config);
        match storage.ensure_buckets().await {
            Ok(()) => {}
            Err(e) if embedded_s3.is_some() => return Err(e.into()),
            // An external store may refuse HeadBucket/CreateBucket to this account and still hold the buckets.
            Err(e) => tracing::warn!(error = %e, "buckets could not be checked or created"),
        }
        let pool = db::pool(&config.database_url, config.api_db_pool_size)?;
        // Sized for bursts of concurrent requests: what a burst opened is closed again once unused.
        db::close_idle_connections(&pool, db::IDLE_CONNECTION_TIMEOUT);
        let publisher = Arc::new(Publisher::new(&config));
        let broker = Arc::new(BrokerProbe::new(&config.amqp_url));
        // The process's Prometheus registry, before anything records into it.
        ehealth_infra::metrics::install();
        let finished_jobs = FinishedJobs::new();
        let job_listener = finished_jobs.spawn_listener(&config.database_url)?;
        let listener = TcpListener::bind(&config.http_addr).await?;
        if config.public_base_url.is_none() {
            config.public_base_url = Some(format!("http://{}", listener.local_addr()?));
        }
        let state = AppState(Arc::new(Services {
            shared: db::Shared::new(pool.clone(), config.api_db_shared_connections),
            pool,
            publisher,
            base_url: config.base_url().into(),
            allowed_le_types: Arc::new(config.allowed_le_types()),
            storage,
            finished_jobs: finished_jobs.clone(),
            broker: broker.clone(),
            credentials: Arc::new(Credentials::new(std::time::Duration::from_millis(
                config.auth_cache_ttl_ms,
            ))),
            config: Arc::new(config),
        }));
        let router = routes::router(state.clone())
            // Innermost, so it runs after routing (the route template is known) and times the handler.
            .layer(middleware::from_fn(metrics::track))
            .layer(middleware::from_fn_with_state(
                state.base_url.clone(),
                context::middleware,
            ))
            .layer(tower_http::trace::TraceLayer::new_for_http());
        Ok(Self {
            listener,
            router,
            embedded_s3,
            finished_jobs,
            job_listener,
            broker,
        })
    }

    /// The router as it is served, layers included (tests compare its routes with the OpenAPI document).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests (those waiting for their job are
    /// answered 202 at once) and stops the `job_finished` listener and the embedded store.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "api listening");
        let finished_jobs = self.finished_jobs;
        let base_url = format!("http://{}", self.listener.local_addr()?);
        let listener = crate::http_errors::ShapedListener::new(self.listener, base_url);
        let served = axum::serve(listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                finished_jobs.release_all();
            })
            .await;
        self.job_listener.stop().await;
        self.broker.close().await;
        if let Some(s3) = self.embedded_s3 {
            s3.stop().await;
        }
        served
    }
}
