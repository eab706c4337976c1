//! The embedded object store: an S3-protocol endpoint served in-process (crates `s3s` + `s3s-fs`) when no
//! `S3_ENDPOINT` is configured, so one machine runs the whole service with no external store.
//!
//! It speaks the real protocol and checks real SigV4 signatures (header, presigned query and POST form) for
//! its one account, `S3_ACCESS_KEY_ID` / `S3_SECRET_ACCESS_KEY`. Objects are files under `DATA_DIR`. Tests
//! start it on port 0.
//!
//! Browser POST forms (`POST` + `multipart/form-data`) are checked by s3s itself: the SigV4 signature of the
//! policy, its expiry, every condition (bucket, key, `x-amz-*`, `acl`, `success_action_status`,
//! `Content-Type`, `content-length-range`) and that every form field is named by one. One setting differs for
//! them: s3s 0.14 refuses a form whose `x-amz-date` is more than 15 minutes old (its clock-skew window for
//! signed requests), while S3 takes a form until its signed policy expires (`PRESIGN_TTL_SECONDS`, up to 7
//! days). The store therefore answers a form with a skew window of 7 days (`FORM_MAX_AGE_SECS`) and every
//! other request with s3s's 15 minutes; the policy's expiry is what ends a form.

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context as _;
use hyper_util::service::TowerToHyperService;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto::Builder as ConnBuilder, graceful::GracefulShutdown},
};
use s3s::{
    auth::SimpleAuth,
    config::{S3Config, S3ConfigProvider},
    service::{S3Service, S3ServiceBuilder},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// The oldest `x-amz-date` a POST form may carry: the longest `PRESIGN_TTL_SECONDS` (7 days). The form's
/// signed policy expiry is what actually ends it; s3s checks that too.
const FORM_MAX_AGE_SECS: u32 = 604_800;

tokio::task_local! {
    /// Set while the store serves one request: whether it is a browser POST form.
    static SERVING_FORM: bool;
}

/// s3s's configuration, per request: [`FORM_MAX_AGE_SECS`] of clock skew for a POST form, the defaults
/// (15 minutes) for everything else.
struct ConfigPerRequest {
    requests: Arc<S3Config>,
    forms: Arc<S3Config>,
}

impl ConfigPerRequest {
    fn new() -> Self {
        let mut forms = S3Config::default();
        forms.presigned_url_max_skew_time_secs = FORM_MAX_AGE_SECS;
        Self {
            requests: Arc::new(S3Config::default()),
            forms: Arc::new(forms),
        }
    }
}

impl S3ConfigProvider for ConfigPerRequest {
    fn snapshot(&self) -> Arc<S3Config> {
        if SERVING_FORM.try_with(|form| *form).unwrap_or(false) {
            Arc::clone(&self.forms)
        } else {
            Arc::clone(&self.requests)
        }
    }
}

/// The s3s service, telling [`ConfigPerRequest`] whether the request it serves is a browser POST form
/// (`POST` + `multipart/form-data`, the requests s3s checks as forms).
#[derive(Clone)]
struct FormsAware(S3Service);

fn is_form<B>(request: &http::Request<B>) -> bool {
    request.method() == http::Method::POST
        && request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_start().get(..19))
            .is_some_and(|t| t.eq_ignore_ascii_case("multipart/form-data"))
}

impl<B> tower::Service<http::Request<B>> for FormsAware
where
    S3Service: tower::Service<http::Request<B>>,
{
    type Response = <S3Service as tower::Service<http::Request<B>>>::Response;
    type Error = <S3Service as tower::Service<http::Request<B>>>::Error;
    type Future = tokio::task::futures::TaskLocalFuture<
        bool,
        <S3Service as tower::Service<http::Request<B>>>::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::<http::Request<B>>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let form = is_form(&request);
        SERVING_FORM.scope(form, tower::Service::call(&mut self.0, request))
    }
}

/// A running embedded store.
pub struct EmbeddedS3 {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl EmbeddedS3 {
    /// Binds `addr` and serves the objects under `data_dir` (created if missing).
    pub async fn start(
        addr: &str,
        data_dir: &Path,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("DATA_DIR {} cannot be created", data_dir.display()))?;
        let fs = s3s_fs::FileSystem::new(data_dir)
            .map_err(|e| anyhow::anyhow!("DATA_DIR {}: {e:?}", data_dir.display()))?;
        let service = {
            let mut builder = S3ServiceBuilder::new(fs);
            builder.set_auth(SimpleAuth::from_single(
                access_key_id.to_owned(),
                secret_access_key.to_owned(),
            ));
            builder.set_config(Arc::new(ConfigPerRequest::new()));
            FormsAware(builder.build())
        };
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("S3_EMBEDDED_ADDR {addr} cannot be bound"))?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            let graceful = GracefulShutdown::new();
            loop {
                let socket = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(e) => {
                            tracing::warn!(error = %e, "embedded S3 could not accept a connection");
                            continue;
                        }
                    },
                    _ = &mut stopped => break,
                };
                let connection = http.serve_connection(
                    TokioIo::new(socket),
                    TowerToHyperService::new(service.clone()),
                );
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            tokio::select! {
                () = graceful.shutdown() => {}
                () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
                    tracing::warn!("embedded S3 connections did not finish in 10 s");
                }
            }
        });
        tracing::info!(%addr, data_dir = %data_dir.display(), "embedded S3 endpoint serving (SigV4 enforced)");
        Ok(Self { addr, stop, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and waits (at most 10 s) for open ones to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
