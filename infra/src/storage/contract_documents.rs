//! Writing an object the service itself holds the bytes of: a contract request's signed content, which
//! arrives base64 in a sign command and is written by the worker before the job's transaction.

use aws_sdk_s3::primitives::ByteStream;

use super::{Storage, StorageError};

impl Storage {
    /// Writes `body` at `key` (replacing what is there) and returns the stored object's entity tag without
    /// quotes.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<String, StorageError> {
        let out = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await?;
        Ok(out.e_tag().unwrap_or_default().trim_matches('"').to_owned())
    }
}

/// Decodes standard base64 (padding optional, surrounding whitespace ignored); `None` if it is not base64.
pub fn decode_base64(value: &str) -> Option<Vec<u8>> {
    use base64::{
        engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig},
        Engine,
    };
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(value.trim()).ok()
}
