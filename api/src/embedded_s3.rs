//! The embedded object store: an S3-protocol endpoint served in-process (crates `s3s` + `s3s-fs`) when no
//! `S3_ENDPOINT` is configured, so one machine runs the whole service with no external store.
//!
//! It speaks the real protocol and checks real SigV4 signatures (header and presigned query) for its one
//! account, `S3_ACCESS_KEY_ID` / `S3_SECRET_ACCESS_KEY`. Objects are files under `DATA_DIR`. Tests start it
//! on port 0.

use std::{net::SocketAddr, path::Path};

use anyhow::Context as _;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto::Builder as ConnBuilder, graceful::GracefulShutdown},
};
use s3s::{auth::SimpleAuth, service::S3ServiceBuilder};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

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
            builder.build()
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
                let connection = http.serve_connection(TokioIo::new(socket), service.clone());
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
