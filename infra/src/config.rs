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
    /// Postgres connection string of the service's database, as the least-privilege runtime role the api and
    /// worker run as (its user is the role `ehealth-admin migrate` creates and grants).
    pub database_url: String,
    /// Postgres connection string of the owner role that `ehealth-admin` migrates and administers with.
    pub migration_database_url: String,
    /// Lets api and worker run as a superuser, the owner of `events` or a role that may rewrite it. Unsafe:
    /// the service itself could then rewrite the log.
    pub allow_privileged_db_role: bool,
    /// RabbitMQ connection string.
    pub amqp_url: String,
    /// Address the HTTP api binds.
    pub http_addr: String,
    /// Address the worker's own HTTP listener binds: `/metrics` and `/health/*` for Prometheus and the
    /// orchestrator (the worker serves nothing else over HTTP).
    pub worker_http_addr: String,
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
    /// The most command deliveries the worker decides together in one transaction: those the broker has
    /// already handed over when one arrives (it never waits to fill a batch). At most half of
    /// `WORKER_PREFETCH`, so that two batches can be in flight; 1 turns batching off.
    pub worker_batch: u16,
    /// How many times a command is attempted (transient faults, panics) before its job ends
    /// `failed_with_error`.
    pub worker_max_attempts: u32,
    /// Delay before the first retry of a command that hit a transient fault; it doubles with every attempt
    /// (with up to 20 % jitter), up to `RETRY_MAX_DELAY_MS`.
    pub retry_delay_ms: u64,
    /// The longest delay between two attempts of a command.
    pub retry_max_delay_ms: u64,
    /// Time-out of every broker call (connect, declare, publish and its confirm), in milliseconds.
    pub amqp_timeout_ms: u64,
    /// Time-out of every object-storage call, in milliseconds.
    pub s3_timeout_ms: u64,
    /// A job pending this long without activity has its command message published again (it may have been
    /// lost); the worker skips messages of finished jobs, so a duplicate is harmless.
    pub job_republish_after_seconds: u64,
    /// A job still pending this long after it was accepted ends `failed_with_error`.
    pub job_deadline_seconds: u64,
    /// Published outbox rows are deleted after this many hours.
    pub outbox_ttl_hours: u64,
    /// How often the outbox relay looks for rows that were committed but not yet published.
    pub outbox_relay_interval_ms: u64,
    /// How often the worker's scheduler runs (one worker at a time): it recalls active service requests past
    /// their expiration date and terminates contract requests past their start date that are not signed, by
    /// submitting ordinary jobs.
    pub scheduler_interval_seconds: u64,
    /// Maximum Postgres connections of a worker process (the api's pool is `API_DB_POOL_SIZE`). The worker
    /// uses at least `WORKER_PREFETCH` + 4 (one per job in flight, the relay, the sweeper, the scheduler and
    /// the dead-letter consumer), whatever this says.
    pub db_pool_size: usize,
    /// Maximum Postgres connections of the api's pool (the worker's is `DB_POOL_SIZE`). An intake request
    /// holds a pooled connection for its one statement, so with fewer connections than concurrent requests
    /// the requests queue for the pool rather than in PostgreSQL; the connections are opened on demand.
    /// Mind the server's `max_connections`: the api's pool + its `job_finished` listener + the worker's pool
    /// (per worker process) + `ehealth-admin` and other clients must fit.
    pub api_db_pool_size: usize,
    /// How many of the api's pooled connections are shared by concurrent requests for statements that run
    /// on their own (the poll's read, intake's insert without an `Idempotency-Key`): tokio-postgres pipelines
    /// them, so a burst costs PostgreSQL a few busy backends instead of one per request. `0` gives every
    /// such statement a pooled connection of its own. Fewer than `API_DB_POOL_SIZE`.
    pub api_db_shared_connections: usize,
    /// How long the api trusts a verified api-key or bearer token without asking the database again, in
    /// milliseconds (a bounded in-process cache keyed by the secret's SHA-256). A revocation, or a change of
    /// the user's or legal entity's status, takes effect within this bound; a token's expiry is checked on
    /// every request. At most 60000; 0 asks the database on every request.
    pub auth_cache_ttl_ms: u64,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// URL of an external S3-compatible object store (AWS S3, MinIO, Ceph RGW). Unset: `ehealth-api` serves
    /// an embedded one on `S3_EMBEDDED_ADDR` and the worker talks to it there.
    pub s3_endpoint: Option<String>,
    /// The object store's URL as clients reach it, used in presigned links. Defaults to the endpoint.
    pub s3_public_endpoint: Option<String>,
    /// Region used to sign requests.
    pub s3_region: String,
    /// Access key id. Unset with `S3_ENDPOINT` set: the AWS default credential chain (environment, profile,
    /// web identity, ECS, instance metadata). Unset for the embedded store: the account generated at first start
    /// under `DATA_DIR` (`storage::embedded_keys`).
    pub s3_access_key_id: Option<String>,
    /// Secret access key, set together with `S3_ACCESS_KEY_ID`.
    pub s3_secret_access_key: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), as MinIO, Ceph and the embedded store need.
    pub s3_force_path_style: bool,
    /// Bucket of analysis-result files (spec 000).
    pub s3_bucket_files: String,
    /// Bucket of patient attachments (spec 002): browser uploads by presigned POST land under a temporary
    /// key there and are copied to their final key once processed.
    pub s3_bucket_attachments: String,
    /// Bucket of contract requests' documents (spec 003): statute, additional document and signed content,
    /// under the request's id.
    pub s3_bucket_contract_requests: String,
    /// The deployment's environment, `prod`, `preprod` or `demo` (any lower-case word): names the default
    /// `MEDIA_BUCKET`.
    pub app_env: String,
    /// Bucket of spec 001's media storage links (the ambulatory-contracts process). Unset:
    /// `ambulatory-contracts` for `APP_ENV=prod`, else `ambulatory-contracts-{APP_ENV}` (the source document's
    /// `ambulatory_contracts…` names hold `_`, which S3 bucket names may not).
    pub media_bucket: Option<String>,
    /// Lifetime of a media storage link (spec 001), in seconds.
    pub secrets_ttl: u64,
    /// Lifetime of presigned upload and download links, in seconds.
    pub presign_ttl_seconds: u64,
    /// The largest file accepted at finalize, in bytes; larger uploads are refused (422) and removed.
    pub max_upload_bytes: u64,
    /// The largest patient attachment a presigned POST form accepts, in bytes (its policy's
    /// `content-length-range` is 1 to this); the store refuses a larger file. At most 5 GiB, S3's limit for
    /// one POST upload and for one copy.
    pub max_attachment_bytes: u64,
    /// How long a command route whose source document answers synchronously (spec 000's finalize, isSend and
    /// delete; spec 002's create and archive) waits for its job before it answers 202 with the job link, in
    /// seconds (at most `intake::MAX_WAIT_SECONDS`, 30). 0: such routes answer 202 at once, like the async ones.
    pub sync_wait_seconds: u64,
    /// Where the embedded object store keeps its data.
    pub data_dir: String,
    /// Address of the embedded object store.
    pub s3_embedded_addr: String,
    /// The secret that keys the event chain's HMAC links (`event_store::chain`). It lives only in the
    /// processes' environment, never in the database, so that whoever can write the tables cannot forge a
    /// chain. The default is the public `event_store::chain::DEVELOPMENT_CHAIN_KEY`; the services warn at
    /// start while they run with it.
    pub event_chain_key: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "postgres://ehealth_app@127.0.0.1:5432/ehealth".to_owned(),
            migration_database_url: "postgres://postgres@127.0.0.1:5432/ehealth".to_owned(),
            allow_privileged_db_role: false,
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            http_addr: "127.0.0.1:8080".to_owned(),
            worker_http_addr: "127.0.0.1:8081".to_owned(),
            public_base_url: None,
            me_allowed_transactions_le_types: "MSP,PRIMARY_CARE,OUTPATIENT,EMERGENCY,MSP_PHARMACY"
                .to_owned(),
            queue_prefix: "ehealth".to_owned(),
            job_ttl_days: 7,
            worker_prefetch: 16,
            worker_batch: 8,
            worker_max_attempts: 10,
            retry_delay_ms: 1000,
            retry_max_delay_ms: 300_000,
            amqp_timeout_ms: 5000,
            s3_timeout_ms: 30_000,
            job_republish_after_seconds: 60,
            job_deadline_seconds: 3600,
            outbox_ttl_hours: 24,
            outbox_relay_interval_ms: 1000,
            scheduler_interval_seconds: 60,
            db_pool_size: 16,
            api_db_pool_size: Self::DEFAULT_API_DB_POOL_SIZE,
            api_db_shared_connections: 4,
            auth_cache_ttl_ms: 5000,
            log_format: "text".to_owned(),
            s3_endpoint: None,
            s3_public_endpoint: None,
            s3_region: "us-east-1".to_owned(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_force_path_style: true,
            s3_bucket_files: "analysis-files".to_owned(),
            s3_bucket_attachments: "patient-attachments".to_owned(),
            s3_bucket_contract_requests: "contract-requests".to_owned(),
            app_env: "prod".to_owned(),
            media_bucket: None,
            secrets_ttl: 600,
            presign_ttl_seconds: 600,
            max_upload_bytes: 50 * 1024 * 1024,
            max_attachment_bytes: 50 * 1024 * 1024,
            sync_wait_seconds: 10,
            data_dir: "./data".to_owned(),
            s3_embedded_addr: "127.0.0.1:9000".to_owned(),
            event_chain_key: crate::event_store::chain::DEVELOPMENT_CHAIN_KEY.to_owned(),
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
            .merge(Env::raw().only(Self::KEYS))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    const KEYS: &'static [&'static str] = &[
        "database_url",
        "migration_database_url",
        "allow_privileged_db_role",
        "amqp_url",
        "http_addr",
        "worker_http_addr",
        "public_base_url",
        "me_allowed_transactions_le_types",
        "queue_prefix",
        "job_ttl_days",
        "worker_prefetch",
        "worker_batch",
        "worker_max_attempts",
        "retry_delay_ms",
        "retry_max_delay_ms",
        "amqp_timeout_ms",
        "s3_timeout_ms",
        "job_republish_after_seconds",
        "job_deadline_seconds",
        "outbox_ttl_hours",
        "outbox_relay_interval_ms",
        "scheduler_interval_seconds",
        "db_pool_size",
        "api_db_pool_size",
        "api_db_shared_connections",
        "auth_cache_ttl_ms",
        "log_format",
        "s3_endpoint",
        "s3_public_endpoint",
        "s3_region",
        "s3_access_key_id",
        "s3_secret_access_key",
        "s3_force_path_style",
        "s3_bucket_files",
        "s3_bucket_attachments",
        "s3_bucket_contract_requests",
        "app_env",
        "media_bucket",
        "secrets_ttl",
        "presign_ttl_seconds",
        "max_upload_bytes",
        "max_attachment_bytes",
        "sync_wait_seconds",
        "data_dir",
        "s3_embedded_addr",
        "event_chain_key",
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        if self.http_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError(format!(
                "HTTP_ADDR {:?} is not a socket address",
                self.http_addr
            )));
        }
        if self
            .worker_http_addr
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return Err(ConfigError(format!(
                "WORKER_HTTP_ADDR {:?} is not a socket address",
                self.worker_http_addr
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
        if self.api_db_pool_size == 0 {
            return Err(ConfigError("API_DB_POOL_SIZE must be positive".to_owned()));
        }
        if self.api_db_shared_connections >= self.api_db_pool_size {
            return Err(ConfigError(
                "API_DB_SHARED_CONNECTIONS must be less than API_DB_POOL_SIZE".to_owned(),
            ));
        }
        if self.retry_delay_ms == 0 || self.retry_max_delay_ms < self.retry_delay_ms {
            return Err(ConfigError(
                "RETRY_DELAY_MS must be positive and at most RETRY_MAX_DELAY_MS".to_owned(),
            ));
        }
        if self.amqp_timeout_ms == 0 || self.s3_timeout_ms == 0 {
            return Err(ConfigError(
                "AMQP_TIMEOUT_MS and S3_TIMEOUT_MS must be positive".to_owned(),
            ));
        }
        if self.job_republish_after_seconds == 0
            || self.job_deadline_seconds <= self.job_republish_after_seconds
        {
            return Err(ConfigError(
                "JOB_REPUBLISH_AFTER_SECONDS must be positive and below JOB_DEADLINE_SECONDS"
                    .to_owned(),
            ));
        }
        if self.s3_endpoint.is_none()
            && self
                .s3_embedded_addr
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return Err(ConfigError(format!(
                "S3_EMBEDDED_ADDR {:?} is not a socket address",
                self.s3_embedded_addr
            )));
        }
        if !(1..=604_800).contains(&self.presign_ttl_seconds) {
            return Err(ConfigError(
                "PRESIGN_TTL_SECONDS must be 1 to 604800 (7 days, the SigV4 limit)".to_owned(),
            ));
        }
        if self.sync_wait_seconds > 30 {
            return Err(ConfigError(
                "SYNC_WAIT_SECONDS must be 0 to 30 (the longest wait a request may hold)"
                    .to_owned(),
            ));
        }
        if !(1..=Self::MAX_S3_POST_BYTES).contains(&self.max_attachment_bytes) {
            return Err(ConfigError(
                "MAX_ATTACHMENT_BYTES must be 1 to 5368709120 (5 GiB, S3's limit for one POST upload)"
                    .to_owned(),
            ));
        }
        if self.s3_bucket_files.is_empty() || self.s3_bucket_attachments.is_empty() {
            return Err(ConfigError(
                "S3_BUCKET_FILES and S3_BUCKET_ATTACHMENTS must name buckets".to_owned(),
            ));
        }
        if self.auth_cache_ttl_ms > 60_000 {
            return Err(ConfigError(
                "AUTH_CACHE_TTL_MS must be 0 to 60000 (a revocation must take effect within a minute)"
                    .to_owned(),
            ));
        }
        if self.app_env.is_empty()
            || !self
                .app_env
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ConfigError(format!(
                "APP_ENV {:?} must be a lower-case word such as prod, preprod or demo",
                self.app_env
            )));
        }
        let media_bucket = self.media_bucket_name();
        if let Err(problem) = check_bucket_name(&media_bucket) {
            return Err(ConfigError(format!(
                "MEDIA_BUCKET {media_bucket:?} is not a valid S3 bucket name: {problem}"
            )));
        }
        if !(1..=604_800).contains(&self.secrets_ttl) {
            return Err(ConfigError(
                "SECRETS_TTL must be 1 to 604800 (7 days, the SigV4 limit)".to_owned(),
            ));
        }
        if self.scheduler_interval_seconds == 0 {
            return Err(ConfigError(
                "SCHEDULER_INTERVAL_SECONDS must be positive".to_owned(),
            ));
        }
        if self.s3_access_key_id.is_some() != self.s3_secret_access_key.is_some() {
            return Err(ConfigError(
                "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are set together or not at all"
                    .to_owned(),
            ));
        }
        if self.event_chain_key.len() < 16 {
            return Err(ConfigError(
                "EVENT_CHAIN_KEY must be at least 16 bytes (e.g. `openssl rand -hex 32`)"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The largest object S3 takes in one POST upload or copies in one `CopyObject`: 5 GiB.
    pub const MAX_S3_POST_BYTES: u64 = 5 * 1024 * 1024 * 1024;

    /// The object store the service talks to: `S3_ENDPOINT`, or the embedded one on `S3_EMBEDDED_ADDR`.
    pub fn s3_endpoint_url(&self) -> String {
        self.s3_endpoint
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.s3_embedded_addr))
    }

    /// The configured S3 keys (`S3_ACCESS_KEY_ID` and `S3_SECRET_ACCESS_KEY`). Without them: the embedded
    /// store's generated account when no `S3_ENDPOINT` is set (`storage::embedded_keys`), else the AWS default
    /// credential chain.
    pub fn s3_static_keys(&self) -> Option<(String, String)> {
        match (&self.s3_access_key_id, &self.s3_secret_access_key) {
            (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
            _ => None,
        }
    }

    /// The api's pool size when `API_DB_POOL_SIZE` is unset: measured with 64 concurrent intake requests on 2
    /// cores (issue 11), 16 connections queued the requests for the pool while PostgreSQL sat partly idle;
    /// 48 kept PostgreSQL at pgbench's cost per statement. With the worker's default pool (20) and the
    /// listener, 69 of PostgreSQL's default 100 connections.
    pub const DEFAULT_API_DB_POOL_SIZE: usize = 48;

    /// Connections the worker's pool needs besides one per job in flight: the outbox relay, the sweeper,
    /// the scheduler and the dead-letter consumer.
    pub const WORKER_RESERVED_CONNECTIONS: usize = 4;

    /// The media storage links' bucket: `MEDIA_BUCKET`, or the default of `APP_ENV`.
    pub fn media_bucket_name(&self) -> String {
        match (&self.media_bucket, self.app_env.as_str()) {
            (Some(bucket), _) => bucket.clone(),
            (None, "prod") => "ambulatory-contracts".to_owned(),
            (None, env) => format!("ambulatory-contracts-{env}"),
        }
    }

    /// The worker's pool size: `DB_POOL_SIZE`, raised to `WORKER_PREFETCH` + the reserved connections so
    /// that a full prefetch of jobs can never starve the relay, the sweeper or each other.
    pub fn worker_pool_size(&self) -> usize {
        self.db_pool_size
            .max(usize::from(self.worker_prefetch) + Self::WORKER_RESERVED_CONNECTIONS)
    }

    /// The delay before attempt `attempt` + 1 of a command (`attempt` ≥ 1), before jitter:
    /// `RETRY_DELAY_MS` doubled per attempt, at most `RETRY_MAX_DELAY_MS`.
    pub fn retry_delay(&self, attempt: u32) -> std::time::Duration {
        let doubled = self
            .retry_delay_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(40));
        std::time::Duration::from_millis(doubled.min(self.retry_max_delay_ms))
    }

    /// How often the worker's scheduler runs.
    pub fn scheduler_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.scheduler_interval_seconds)
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

/// Whether `name` is a valid S3 bucket name (AWS's general-purpose bucket naming rules): 3 to 63 characters,
/// lower-case letters, digits, `.` and `-`, starting and ending with a letter or digit, no `..`, not an IP
/// address, not starting with `xn--` or ending with `-s3alias`. `Err` says which rule it breaks.
pub fn check_bucket_name(name: &str) -> Result<(), &'static str> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&name.len()) {
        Err("it must be 3 to 63 characters long")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        Err("only lower-case letters, digits, '.' and '-' are allowed ('_' is not)")
    } else if !edge(name.chars().next()) || !edge(name.chars().last()) {
        Err("it must start and end with a letter or a digit")
    } else if name.contains("..") {
        Err("it must not contain '..'")
    } else if name.parse::<std::net::Ipv4Addr>().is_ok() {
        Err("it must not be an IP address")
    } else if name.starts_with("xn--") || name.ends_with("-s3alias") {
        Err("it must not start with 'xn--' or end with '-s3alias'")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_media_bucket_defaults_per_app_env_and_must_be_a_valid_bucket_name() {
        let env = |app_env: &str| Config {
            app_env: app_env.to_owned(),
            ..Config::default()
        };
        assert_eq!(env("prod").media_bucket_name(), "ambulatory-contracts");
        assert_eq!(
            env("preprod").media_bucket_name(),
            "ambulatory-contracts-preprod"
        );
        assert_eq!(env("demo").media_bucket_name(), "ambulatory-contracts-demo");
        for env in ["prod", "preprod", "demo"] {
            assert!(Config {
                app_env: env.to_owned(),
                ..Config::default()
            }
            .validate()
            .is_ok());
        }
        let named = Config {
            media_bucket: Some("contracts-media".to_owned()),
            ..env("demo")
        };
        assert_eq!(named.media_bucket_name(), "contracts-media");
        // The source document's names: S3 refuses '_'.
        for bad in [
            "ambulatory_contracts",
            "ambulatory_contracts-preprod",
            "ab",
            "-x-",
            "a..b",
            "Upper",
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
            let config = Config {
                media_bucket: Some(bad.to_owned()),
                ..Config::default()
            };
            assert!(config.validate().is_err(), "{bad}");
        }
        assert!(env("Prod").validate().is_err());
        assert!(Config {
            secrets_ttl: 0,
            ..Config::default()
        }
        .validate()
        .is_err());
        assert!(Config {
            scheduler_interval_seconds: 0,
            ..Config::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn the_worker_pool_always_serves_a_full_prefetch_and_retries_double_up_to_the_cap() {
        let defaults = Config::default();
        assert!(defaults.worker_pool_size() >= usize::from(defaults.worker_prefetch) + 3);
        let big = Config {
            db_pool_size: 50,
            ..Config::default()
        };
        assert_eq!(big.worker_pool_size(), 50);
        let delays: Vec<u64> = (1..=11)
            .map(|a| defaults.retry_delay(a).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000]
        );
    }

    #[test]
    fn the_api_has_a_pool_of_its_own_within_the_servers_default_connections() {
        let defaults = Config::default();
        assert_eq!(defaults.api_db_pool_size, 48);
        assert_eq!(defaults.db_pool_size, 16, "the worker keeps DB_POOL_SIZE");
        // The api's pool, its `job_finished` listener and one worker's pool leave room for the admin CLI
        // and a second worker's relay under PostgreSQL's default `max_connections` of 100.
        assert!(defaults.api_db_pool_size + 1 + defaults.worker_pool_size() <= 75);
        let small_worker = Config {
            db_pool_size: 1,
            ..Config::default()
        };
        assert_eq!(
            small_worker.api_db_pool_size, 48,
            "independent of DB_POOL_SIZE"
        );
        assert!(small_worker.validate().is_ok());
        let none = Config {
            api_db_pool_size: 0,
            ..Config::default()
        };
        assert!(none.validate().is_err());
        assert!(Config::KEYS.contains(&"api_db_pool_size"));
        // The shared connections come out of the pool and leave room in it for transactions.
        for (shared, valid) in [(0, true), (4, true), (47, true), (48, false)] {
            let config = Config {
                api_db_shared_connections: shared,
                ..Config::default()
            };
            assert_eq!(config.validate().is_ok(), valid, "{shared}");
        }
        assert!(Config::KEYS.contains(&"api_db_shared_connections"));
    }

    #[test]
    fn attachments_have_a_bucket_of_their_own_and_a_size_limit_within_one_s3_post() {
        let defaults = Config::default();
        assert_eq!(defaults.s3_bucket_attachments, "patient-attachments");
        assert_eq!(defaults.max_attachment_bytes, 52_428_800);
        assert!(defaults.validate().is_ok());
        for bytes in [0, Config::MAX_S3_POST_BYTES + 1] {
            let config = Config {
                max_attachment_bytes: bytes,
                ..Config::default()
            };
            assert!(config.validate().is_err(), "{bytes}");
        }
        let largest = Config {
            max_attachment_bytes: Config::MAX_S3_POST_BYTES,
            ..Config::default()
        };
        assert!(largest.validate().is_ok());
        let unnamed = Config {
            s3_bucket_attachments: String::new(),
            ..Config::default()
        };
        assert!(unnamed.validate().is_err());
    }

    #[test]
    fn s3_keys_are_the_configured_ones_and_set_together() {
        assert_eq!(
            Config::default().s3_static_keys(),
            None,
            "no constant account"
        );
        let keyed = Config {
            s3_access_key_id: Some("id".to_owned()),
            s3_secret_access_key: Some("secret".to_owned()),
            ..Config::default()
        };
        assert_eq!(
            keyed.s3_static_keys(),
            Some(("id".to_owned(), "secret".to_owned()))
        );
        let half = Config {
            s3_access_key_id: Some("id".to_owned()),
            ..Config::default()
        };
        assert!(half.validate().is_err());
    }
}
