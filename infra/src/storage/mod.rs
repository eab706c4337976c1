//! Object storage over the S3 protocol: presigned links for clients, HEAD and DELETE for the worker.
//!
//! The service never proxies file bodies: clients PUT and GET straight to presigned URLs. The same code
//! talks to AWS S3, MinIO, Ceph RGW or the embedded store `ehealth-api` serves when `S3_ENDPOINT` is unset.

pub mod attachment_uploads;
pub mod contract_documents;
pub mod deletions;
mod digest;
pub mod embedded_keys;
pub mod post_policy;
pub mod upload_links;

pub use digest::ObjectDigest;
pub use post_policy::PresignedPost;

use std::time::Duration;

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::provider::future;
use aws_sdk_s3::{
    config::{
        timeout::TimeoutConfig, BehaviorVersion, Credentials, ProvideCredentials, Region,
        RequestChecksumCalculation, ResponseChecksumValidation, SharedCredentialsProvider,
    },
    error::{DisplayErrorContext, SdkError},
    presigning::PresigningConfig,
    Client,
};
use chrono::{DateTime, Utc};

use crate::Config;

/// A storage request failed (network, credentials, the store itself).
#[derive(Debug, thiserror::Error)]
#[error("object storage: {0}")]
pub struct StorageError(String);

impl<E: std::error::Error + 'static, R: std::fmt::Debug> From<SdkError<E, R>> for StorageError {
    fn from(e: SdkError<E, R>) -> Self {
        Self(DisplayErrorContext(&e).to_string())
    }
}

/// A presigned link and the moment it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// The URL, with its SigV4 query string.
    pub url: String,
    /// When the signature expires.
    pub expires_at: DateTime<Utc>,
}

/// What a presigned link lets its holder do.
#[derive(Debug, Clone, Copy)]
enum Action {
    Put,
    Get,
}

/// What a HEAD request tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Bytes.
    pub size: u64,
    /// `Content-Type` it was stored with (`application/octet-stream` when none).
    pub content_type: String,
    /// Entity tag.
    pub etag: String,
}

/// The object store: one client for the service's own requests, one for links clients follow (they may
/// reach the store at another address, `S3_PUBLIC_ENDPOINT`).
#[derive(Clone)]
pub struct Storage {
    client: Client,
    presigner: Client,
    /// Lifetime of presigned links.
    pub presign_ttl: Duration,
    /// Bucket of analysis-result files.
    pub files_bucket: String,
    /// Bucket of contract requests' documents (`S3_BUCKET_CONTRACT_REQUESTS`).
    pub contract_requests_bucket: String,
    /// Bucket of patient attachments (`S3_BUCKET_ATTACHMENTS`).
    pub attachments_bucket: String,
    /// Bucket of spec 001's media storage links (`MEDIA_BUCKET`, by default per `APP_ENV`).
    pub media_bucket: String,
    /// Lifetime of a media storage link (`SECRETS_TTL`).
    pub secrets_ttl: Duration,
    post_signer: post_policy::PostSigner,
    /// Longest wait for the next chunk of an object's body (`S3_TIMEOUT_MS`).
    read_timeout: Duration,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("files_bucket", &self.files_bucket)
            .field("attachments_bucket", &self.attachments_bucket)
            .finish_non_exhaustive()
    }
}

/// The AWS default credential chain (environment, profile, web identity, ECS, instance metadata), built on
/// first use so that building a [`Storage`] stays synchronous and offline.
#[derive(Debug)]
struct DefaultChain {
    region: Region,
    chain: tokio::sync::OnceCell<DefaultCredentialsChain>,
}

impl ProvideCredentials for DefaultChain {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| {
                    DefaultCredentialsChain::builder()
                        .region(self.region.clone())
                        .build()
                })
                .await;
            chain.provide_credentials().await
        })
    }
}

/// The embedded store's generated account (`embedded_keys`), read from `DATA_DIR` on first use: the worker
/// may start before the api that creates it.
#[derive(Debug)]
struct EmbeddedAccount {
    data_dir: std::path::PathBuf,
}

impl ProvideCredentials for EmbeddedAccount {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let (id, secret) = embedded_keys::load_or_create(&self.data_dir).map_err(|e| {
                aws_credential_types::provider::error::CredentialsError::provider_error(e)
            })?;
            Ok(Credentials::new(id, secret, None, None, "ehealth-embedded"))
        })
    }
}

fn credentials(config: &Config) -> SharedCredentialsProvider {
    match config.s3_static_keys() {
        Some((id, secret)) => SharedCredentialsProvider::new(Credentials::new(
            id,
            secret,
            None,
            None,
            "ehealth-config",
        )),
        None if config.s3_endpoint.is_none() => SharedCredentialsProvider::new(EmbeddedAccount {
            data_dir: config.data_dir.clone().into(),
        }),
        None => SharedCredentialsProvider::new(DefaultChain {
            region: Region::new(config.s3_region.clone()),
            chain: tokio::sync::OnceCell::new(),
        }),
    }
}

fn client(config: &Config, endpoint: String, credentials: SharedCredentialsProvider) -> Client {
    let s3 = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.s3_region.clone()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .force_path_style(config.s3_force_path_style)
        // Checksums only where the operation requires them: a default CRC32 would be signed into presigned
        // PUT URLs as the checksum of an empty body and refuse every real upload.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(config.s3_timeout_ms.min(5000)))
                .operation_timeout(Duration::from_millis(config.s3_timeout_ms))
                .build(),
        )
        .build();
    Client::from_conf(s3)
}

impl Storage {
    /// A store configured from `S3_*` settings. Builds clients only: nothing is contacted yet.
    pub fn new(config: &Config) -> Self {
        let endpoint = config.s3_endpoint_url();
        let public = config
            .s3_public_endpoint
            .clone()
            .unwrap_or_else(|| endpoint.clone());
        let credentials = credentials(config);
        Self {
            client: client(config, endpoint, credentials.clone()),
            presigner: client(config, public, credentials),
            presign_ttl: Duration::from_secs(config.presign_ttl_seconds),
            files_bucket: config.s3_bucket_files.clone(),
            attachments_bucket: config.s3_bucket_attachments.clone(),
            contract_requests_bucket: config.s3_bucket_contract_requests.clone(),
            media_bucket: config.media_bucket_name(),
            secrets_ttl: Duration::from_secs(config.secrets_ttl),
            post_signer: post_policy::PostSigner::new(config),
            read_timeout: Duration::from_millis(config.s3_timeout_ms),
        }
    }

    /// Every bucket the service uses.
    pub fn buckets(&self) -> Vec<&str> {
        let mut buckets = vec![self.files_bucket.as_str()];
        if self.attachments_bucket != self.files_bucket {
            buckets.push(self.attachments_bucket.as_str());
        }
        if !buckets.contains(&self.contract_requests_bucket.as_str()) {
            buckets.push(self.contract_requests_bucket.as_str());
        }
        if !buckets.contains(&self.media_bucket.as_str()) {
            buckets.push(self.media_bucket.as_str());
        }
        buckets
    }

    /// Creates every bucket the service uses that does not exist yet.
    pub async fn ensure_buckets(&self) -> Result<(), StorageError> {
        for bucket in self.buckets() {
            if self
                .client
                .head_bucket()
                .bucket(bucket)
                .send()
                .await
                .is_ok()
            {
                continue;
            }
            match self.client.create_bucket().bucket(bucket).send().await {
                Ok(_) => tracing::info!(bucket, "bucket created"),
                Err(e)
                    if e.as_service_error().is_some_and(|s| {
                        s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
                    }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Checks that `bucket` exists and this account may use it (`HeadBucket`): the object store's readiness
    /// check, which creates nothing.
    pub async fn head_bucket(&self, bucket: &str) -> Result<(), StorageError> {
        self.client.head_bucket().bucket(bucket).send().await?;
        Ok(())
    }

    /// A link that uploads one object with `PUT`, valid for `ttl`.
    pub async fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        ttl: Duration,
    ) -> Result<Presigned, StorageError> {
        self.presign(Action::Put, bucket, key, ttl).await
    }

    /// A link that downloads one object with `GET`, valid for `ttl`.
    pub async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        ttl: Duration,
    ) -> Result<Presigned, StorageError> {
        self.presign(Action::Get, bucket, key, ttl).await
    }

    async fn presign(
        &self,
        action: Action,
        bucket: &str,
        key: &str,
        ttl: Duration,
    ) -> Result<Presigned, StorageError> {
        let config = PresigningConfig::expires_in(ttl).map_err(|e| StorageError(e.to_string()))?;
        let expires_at = Utc::now()
            + chrono::Duration::from_std(ttl).map_err(|e| StorageError(e.to_string()))?;
        let request = match action {
            Action::Put => {
                let put = self.presigner.put_object().bucket(bucket).key(key);
                put.presigned(config).await?
            }
            Action::Get => {
                let get = self.presigner.get_object().bucket(bucket).key(key);
                get.presigned(config).await?
            }
        };
        Ok(Presigned {
            url: request.uri().to_owned(),
            expires_at,
        })
    }

    /// A media storage link (spec 001): `PUT` (signed with `content_type` when one is given, so the upload
    /// must send that `Content-Type`), `GET` or `HEAD` of `key` in `bucket`, signed at `signed_at` and working
    /// until `expires_at` — the times the decision recorded, to the second.
    pub async fn presign_media_link(
        &self,
        action: ehealth_domain::media_link::Action,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
        signed_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Presigned, StorageError> {
        use ehealth_domain::media_link::Action as Link;
        let ttl = (expires_at - signed_at)
            .to_std()
            .map_err(|e| StorageError(format!("a link must expire after it is signed: {e}")))?;
        let config = PresigningConfig::builder()
            .start_time(std::time::SystemTime::from(signed_at))
            .expires_in(ttl)
            .build()
            .map_err(|e| StorageError(e.to_string()))?;
        let request = match action {
            Link::Put => {
                let put = self.presigner.put_object().bucket(bucket).key(key);
                put.set_content_type(content_type.map(str::to_owned))
                    .presigned(config)
                    .await?
            }
            Link::Get => {
                let get = self.presigner.get_object().bucket(bucket).key(key);
                get.presigned(config).await?
            }
            Link::Head => {
                let head = self.presigner.head_object().bucket(bucket).key(key);
                head.presigned(config).await?
            }
        };
        Ok(Presigned {
            url: request.uri().to_owned(),
            expires_at,
        })
    }

    /// The object's size, content type and entity tag; `None` when there is no such object.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(ObjectInfo {
                size: head
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
                content_type: head
                    .content_type()
                    .unwrap_or("application/octet-stream")
                    .to_owned(),
                etag: head.e_tag().unwrap_or_default().to_owned(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an object. Deleting an object that does not exist succeeds.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await?;
        Ok(())
    }
}
