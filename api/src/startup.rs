//! Building and running the api: typed config in, a bound listener out (port 0 in tests).

use std::{future::Future, net::SocketAddr, sync::Arc};

use axum::{middleware, Router};
use deadpool_postgres::Pool;
use ehealth_infra::{
    amqp::{Publisher, Topology},
    db, Config,
};
use tokio::net::TcpListener;

use crate::{context, routes};

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
}

/// A built api, bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// Builds the api: the pool, the publisher and the router, and binds `HTTP_ADDR`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = db::pool(&config.database_url, config.db_pool_size)?;
        let publisher = Arc::new(Publisher::new(
            &config.amqp_url,
            Topology::new(&config.queue_prefix),
            config.retry_delay_ms,
        ));
        let listener = TcpListener::bind(&config.http_addr).await?;
        let mut config = config;
        if config.public_base_url.is_none() {
            config.public_base_url = Some(format!("http://{}", listener.local_addr()?));
        }
        let state = AppState {
            pool,
            publisher,
            base_url: config.base_url(),
            allowed_le_types: Arc::new(config.allowed_le_types()),
            config: Arc::new(config),
        };
        let router = routes::router(state.clone())
            .layer(middleware::from_fn_with_state(
                state.clone(),
                context::middleware,
            ))
            .layer(tower_http::trace::TraceLayer::new_for_http());
        Ok(Self { listener, router })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "api listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
