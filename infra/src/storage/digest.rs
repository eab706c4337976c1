//! Reading an object through SHA-256 and a content sniffer, and copying one within a bucket: what the
//! processing of an uploaded patient attachment needs from the store.
//!
//! **Invariant:** an object is streamed, never held whole: memory stays at one body chunk plus the first
//! [`SNIFF_BYTES`] bytes, whatever the object's size.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{Storage, StorageError};

/// How many leading bytes the content sniffer (crate `infer`) reads, as much as it ever looks at.
pub const SNIFF_BYTES: usize = 8192;

/// What streaming an object through SHA-256 and a content sniffer found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectDigest {
    /// Bytes read.
    pub size: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    /// The MIME type the first bytes show (magic numbers); `None` when they match no known format.
    pub sniffed_type: Option<String>,
    /// The `Content-Type` the object was stored with, if any (what the uploader declared).
    pub declared_type: Option<String>,
}

/// Characters escaped in a `x-amz-copy-source` key: everything but RFC 3986's unreserved ones and `/`.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

impl Storage {
    /// Streams the object (never buffers it whole): its size, SHA-256, the content type sniffed from its
    /// first bytes and the `Content-Type` it was stored with. `None` when it does not exist (`NoSuchKey`; a
    /// store that hides missing keys behind 403 from an account without `ListBucket` gives an error instead).
    /// A body that stalls longer than `S3_TIMEOUT_MS` between chunks, or ends short of its `Content-Length`,
    /// is an error.
    pub async fn digest(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectDigest>, StorageError> {
        let object = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let expected = object.content_length().and_then(|n| u64::try_from(n).ok());
        let declared_type = object
            .content_type()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let mut body = object.body;
        let mut sha256 = Sha256::new();
        let mut size = 0u64;
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        loop {
            let chunk = tokio::time::timeout(self.read_timeout, body.try_next())
                .await
                .map_err(|_| {
                    StorageError(format!(
                        "reading {bucket}/{key} stalled for {} ms",
                        self.read_timeout.as_millis()
                    ))
                })?
                .map_err(|e| StorageError(format!("reading {bucket}/{key}: {e}")))?;
            let Some(chunk) = chunk else { break };
            sha256.update(&chunk);
            size += chunk.len() as u64;
            let wanted = SNIFF_BYTES.saturating_sub(head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..wanted]);
        }
        if let Some(expected) = expected.filter(|&n| n != size) {
            return Err(StorageError(format!(
                "{bucket}/{key} ended after {size} of its {expected} bytes"
            )));
        }
        Ok(Some(ObjectDigest {
            size,
            sha256: hex::encode(sha256.finalize()),
            sniffed_type: infer::get(&head).map(|t| t.mime_type().to_owned()),
            declared_type,
        }))
    }

    /// Server-side copy of `from` to `to` within `bucket` (the bytes never pass through the service); the
    /// copy keeps the source's `Content-Type` and metadata. Up to 5 GiB (`Config::MAX_S3_POST_BYTES`).
    pub async fn copy(&self, bucket: &str, from: &str, to: &str) -> Result<(), StorageError> {
        let source = format!("{bucket}/{}", utf8_percent_encode(from, COPY_SOURCE));
        self.client
            .copy_object()
            .bucket(bucket)
            .key(to)
            .copy_source(source)
            .send()
            .await?;
        Ok(())
    }
}
