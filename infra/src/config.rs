//! Typed configuration read from the environment, with defaults that run the service on one machine.

use figment::{
    providers::{Env, Serialized},
    Figment,
};
use serde::{Deserialize, Serialize};

/// Every setting of the service. Each field is read from the environment variable of the same name in upper
/// case (`DATABASE_URL`, `AMQP_URL`, …); README.md documents them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Postgres connection string of the service's database.
    pub database_url: String,
    /// RabbitMQ connection string.
    pub amqp_url: String,
    /// Address the HTTP api binds.
    pub http_addr: String,
    /// Base URL clients reach the api at; used in `meta.url`. Defaults to `http://{HTTP_ADDR}`.
    pub public_base_url: Option<String>,
    /// Legal entity types allowed to use and release service requests (comma-separated).
    pub me_allowed_transactions_le_types: String,
    /// Prefix of every exchange and queue, so several deployments and tests can share one broker.
    pub queue_prefix: String,
    /// Finished jobs older than this many days are purged; their events stay forever.
    pub job_ttl_days: i64,
    /// How many unacknowledged commands one worker holds at a time.
    pub worker_prefetch: u16,
    /// How many times a transient fault is retried before the message is dead-lettered.
    pub worker_max_attempts: u32,
    /// Delay before a command that hit a transient fault is delivered again.
    pub retry_delay_ms: u64,
    /// How often the outbox relay looks for rows that were committed but not yet published.
    pub outbox_relay_interval_ms: u64,
    /// Maximum Postgres connections per process.
    pub db_pool_size: usize,
    /// `text` or `json` log lines.
    pub log_format: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "postgres://postgres@127.0.0.1:5432/ehealth".to_owned(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            http_addr: "127.0.0.1:8080".to_owned(),
            public_base_url: None,
            me_allowed_transactions_le_types: "MSP,PRIMARY_CARE,OUTPATIENT,EMERGENCY,MSP_PHARMACY"
                .to_owned(),
            queue_prefix: "ehealth".to_owned(),
            job_ttl_days: 7,
            worker_prefetch: 16,
            worker_max_attempts: 5,
            retry_delay_ms: 2000,
            outbox_relay_interval_ms: 1000,
            db_pool_size: 16,
            log_format: "text".to_owned(),
        }
    }
}

/// The configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads the configuration from the environment over the defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Env::raw().only(&Self::KEYS))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    const KEYS: [&'static str; 13] = [
        "database_url",
        "amqp_url",
        "http_addr",
        "public_base_url",
        "me_allowed_transactions_le_types",
        "queue_prefix",
        "job_ttl_days",
        "worker_prefetch",
        "worker_max_attempts",
        "retry_delay_ms",
        "outbox_relay_interval_ms",
        "db_pool_size",
        "log_format",
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        if self.http_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError(format!(
                "HTTP_ADDR {:?} is not a socket address",
                self.http_addr
            )));
        }
        if self.queue_prefix.is_empty() || self.queue_prefix.contains(char::is_whitespace) {
            return Err(ConfigError(
                "QUEUE_PREFIX must be a non-empty word".to_owned(),
            ));
        }
        if self.db_pool_size == 0 || self.worker_prefetch == 0 || self.worker_max_attempts == 0 {
            return Err(ConfigError(
                "DB_POOL_SIZE, WORKER_PREFETCH and WORKER_MAX_ATTEMPTS must be positive".to_owned(),
            ));
        }
        Ok(())
    }

    /// The legal entity types of `ME_ALLOWED_TRANSACTIONS_LE_TYPES`.
    pub fn allowed_le_types(&self) -> Vec<String> {
        self.me_allowed_transactions_le_types
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The base URL used in `meta.url`.
    pub fn base_url(&self) -> String {
        self.public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.http_addr))
            .trim_end_matches('/')
            .to_owned()
    }
}
