//! Building and running the api: typed config in, a bound listener out (port 0 in tests).

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc};

use axum::{middleware, Router};
use deadpool_postgres::Pool;
use ehealth_infra::{
    amqp::{Publisher, Topology},
    db,
    storage::Storage,
    Config,
};
use tokio::net::TcpListener;

use crate::{context, embedded_s3::EmbeddedS3, routes};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The Postgres pool.
    pub pool: Pool,
    /// The command publisher (confirms on).
    pub publisher: Arc<Publisher>,
    /// The configuration.
    pub config: Arc<Config>,
    /// `PUBLIC_BASE_URL`, without a trailing slash.
    pub base_url: String,
    /// `ME_ALLOWED_TRANSACTIONS_LE_TYPES`.
    pub allowed_le_types: Arc<Vec<String>>,
    /// The object store.
    pub storage: Storage,
}

/// A built api, bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    router: Router,
    embedded_s3: Option<EmbeddedS3>,
}

impl Application {
    /// Builds the api: the pool, the publisher, the object store (the embedded one when `S3_ENDPOINT` is
    /// unset) with its buckets, and the router, and binds `HTTP_ADDR`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let mut config = config;
        let embedded_s3 = match config.s3_endpoint {
            Some(_) => None,
            None => {
                // Without an endpoint there are always static keys: the configured ones or the defaults.
                let (id, secret) = config.s3_static_keys().unwrap_or_default();
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
        let pool = db::pool(&config.database_url, config.db_pool_size)?;
        let publisher = Arc::new(Publisher::new(
            &config.amqp_url,
            Topology::new(&config.queue_prefix),
            config.retry_delay_ms,
        ));
        let listener = TcpListener::bind(&config.http_addr).await?;
        if config.public_base_url.is_none() {
            config.public_base_url = Some(format!("http://{}", listener.local_addr()?));
        }
        let state = AppState {
            pool,
            publisher,
            base_url: config.base_url(),
            allowed_le_types: Arc::new(config.allowed_le_types()),
            storage,
            config: Arc::new(config),
        };
        let router = routes::router(state.clone())
            .layer(middleware::from_fn_with_state(
                state.clone(),
                context::middleware,
            ))
            .layer(tower_http::trace::TraceLayer::new_for_http());
        Ok(Self {
            listener,
            router,
            embedded_s3,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and stops the embedded store.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "api listening");
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        if let Some(s3) = self.embedded_s3 {
            s3.stop().await;
        }
        served
    }
}
