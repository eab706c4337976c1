//! Browser uploads by presigned POST (S3's "POST Object" with a SigV4-signed policy).
//!
//! aws-sdk-s3 presigns GET and PUT but not POST, so the policy is built here and signed with the SDK's own
//! SigV4 primitives (`aws_sigv4::sign::v4`): the signing key is derived from the secret, the date, the
//! region and `s3`, and the signature is the HMAC of the base64 policy under it, as
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-authentication-HTTPPOST.html> specifies.
//!
//! **Invariant:** a form can put exactly one object: the policy pins the bucket, the key (`eq`), every
//! `x-amz-*` field, `success_action_status` and `acl`, bounds the file to `1..=max_bytes` and expires. The
//! store checks the signature and every condition before it keeps a byte (the embedded one included, see
//! `ehealth_api::embedded_s3`).

use std::{collections::BTreeMap, time::Duration, time::SystemTime};

use base64::Engine as _;
use chrono::{DateTime, SubsecRound as _, Utc};
use serde::Serialize;

use super::{embedded_keys, Storage, StorageError};
use crate::Config;

/// The only SigV4 algorithm S3 takes in a POST form.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// `success_action_status` of every form: the store answers 201 with a `PostResponse` XML body.
pub const SUCCESS_ACTION_STATUS: &str = "201";
/// `acl` of every form: the uploaded object is readable by the service's account only.
pub const ACL: &str = "private";

/// A browser upload form: POST multipart to `url` with `fields` (then the `file` part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresignedPost {
    /// The bucket's POST URL as clients reach it (`{public endpoint}/{bucket}` with path-style addressing).
    pub url: String,
    /// The form fields, each sent as it is before the `file` part: `key`, `policy`, `x-amz-credential`,
    /// `x-amz-signature`, `x-amz-algorithm`, `x-amz-date`, `success_action_status`, `acl` (and
    /// `x-amz-security-token` when the service's credentials are temporary ones).
    pub fields: BTreeMap<String, String>,
}

/// The keys a form is signed with.
#[derive(Clone)]
pub(crate) struct SigningKeys {
    /// Access key id (named in `x-amz-credential`).
    pub access_key_id: String,
    /// Secret access key (never leaves the process).
    pub secret_access_key: String,
    /// Session token of temporary credentials: then a form field and a policy condition too.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What one form allows: one key in one bucket, a size range, until a moment.
#[derive(Debug, Clone)]
pub(crate) struct PostForm<'a> {
    /// POST URL of the bucket.
    pub url: String,
    /// Bucket (a policy condition; the URL names it to the store).
    pub bucket: &'a str,
    /// The one key the form may write.
    pub key: &'a str,
    /// The largest file, in bytes (the smallest is 1).
    pub max_bytes: u64,
    /// Region of the credential scope.
    pub region: &'a str,
    /// Signing time (`x-amz-date` and the credential scope's date).
    pub signed_at: DateTime<Utc>,
    /// When the policy stops working.
    pub expires_at: DateTime<Utc>,
}

impl PostForm<'_> {
    /// The policy document (JSON) this form's fields must satisfy.
    fn policy(&self, keys: &SigningKeys, credential: &str, amz_date: &str) -> serde_json::Value {
        let mut conditions = vec![
            serde_json::json!({ "bucket": self.bucket }),
            serde_json::json!(["eq", "$key", self.key]),
            serde_json::json!({ "acl": ACL }),
            serde_json::json!({ "success_action_status": SUCCESS_ACTION_STATUS }),
            serde_json::json!(["starts-with", "$Content-Type", ""]),
            serde_json::json!(["content-length-range", 1, self.max_bytes]),
            serde_json::json!({ "x-amz-algorithm": ALGORITHM }),
            serde_json::json!({ "x-amz-credential": credential }),
            serde_json::json!({ "x-amz-date": amz_date }),
        ];
        if let Some(token) = &keys.session_token {
            conditions.push(serde_json::json!({ "x-amz-security-token": token }));
        }
        serde_json::json!({
            "expiration": self.expires_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "conditions": conditions,
        })
    }

    /// The signed form.
    pub fn sign(&self, keys: &SigningKeys) -> PresignedPost {
        let amz_date = self.signed_at.format("%Y%m%dT%H%M%SZ").to_string();
        let credential = format!(
            "{}/{}/{}/s3/aws4_request",
            keys.access_key_id,
            self.signed_at.format("%Y%m%d"),
            self.region
        );
        let policy = base64::engine::general_purpose::STANDARD
            .encode(self.policy(keys, &credential, &amz_date).to_string());
        let signature = sign_policy(
            &policy,
            &keys.secret_access_key,
            self.signed_at.into(),
            self.region,
        );
        let mut fields = BTreeMap::from([
            ("key".to_owned(), self.key.to_owned()),
            ("policy".to_owned(), policy),
            ("x-amz-algorithm".to_owned(), ALGORITHM.to_owned()),
            ("x-amz-credential".to_owned(), credential),
            ("x-amz-date".to_owned(), amz_date),
            ("x-amz-signature".to_owned(), signature),
            (
                "success_action_status".to_owned(),
                SUCCESS_ACTION_STATUS.to_owned(),
            ),
            ("acl".to_owned(), ACL.to_owned()),
        ]);
        if let Some(token) = &keys.session_token {
            fields.insert("x-amz-security-token".to_owned(), token.clone());
        }
        PresignedPost {
            url: self.url.clone(),
            fields,
        }
    }
}

/// Where the keys that sign POST forms come from: the same account the service's clients sign with.
#[derive(Debug, Clone)]
enum KeySource {
    /// `S3_ACCESS_KEY_ID` / `S3_SECRET_ACCESS_KEY`.
    Configured(SigningKeys),
    /// The embedded store's generated account under `DATA_DIR` (read on use: the api may create it later).
    Embedded(std::path::PathBuf),
    /// The AWS default credential chain: resolving it is asynchronous, so forms cannot be signed with it.
    DefaultChain,
}

/// Signs POST forms for the configured store, as clients reach it (`S3_PUBLIC_ENDPOINT`).
#[derive(Debug, Clone)]
pub(crate) struct PostSigner {
    endpoint: String,
    path_style: bool,
    region: String,
    keys: KeySource,
}

impl PostSigner {
    /// The signer of the store `config` names, with the account its clients use (`storage::credentials`).
    pub fn new(config: &Config) -> Self {
        let keys = match config.s3_static_keys() {
            Some((access_key_id, secret_access_key)) => KeySource::Configured(SigningKeys {
                access_key_id,
                secret_access_key,
                session_token: None,
            }),
            None if config.s3_endpoint.is_none() => {
                KeySource::Embedded(config.data_dir.clone().into())
            }
            None => KeySource::DefaultChain,
        };
        Self {
            endpoint: config
                .s3_public_endpoint
                .clone()
                .unwrap_or_else(|| config.s3_endpoint_url()),
            path_style: config.s3_force_path_style,
            region: config.s3_region.clone(),
            keys,
        }
    }

    fn keys(&self) -> Result<SigningKeys, StorageError> {
        match &self.keys {
            KeySource::Configured(keys) => Ok(keys.clone()),
            KeySource::Embedded(data_dir) => {
                let (access_key_id, secret_access_key) = embedded_keys::load_or_create(data_dir)
                    .map_err(|e| {
                        StorageError(format!("the embedded store's account cannot be read: {e}"))
                    })?;
                Ok(SigningKeys {
                    access_key_id,
                    secret_access_key,
                    session_token: None,
                })
            }
            KeySource::DefaultChain => Err(StorageError(
                "presigned POST forms are signed with S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY; \
                 set them for an external S3_ENDPOINT"
                    .to_owned(),
            )),
        }
    }
}

impl Storage {
    /// A browser upload form for exactly `key` in `bucket`: a file of 1 to `max_bytes` bytes, any
    /// `Content-Type`, within `ttl` (see [`PresignedPost`] for its fields and the module for the policy).
    pub fn presign_post(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: u64,
        ttl: Duration,
    ) -> Result<PresignedPost, StorageError> {
        self.presign_post_at(bucket, key, max_bytes, ttl, Utc::now())
    }

    /// [`Storage::presign_post`] signed as at `signed_at` (the policy expires at `signed_at + ttl`): for
    /// tests of expired and skewed forms.
    pub fn presign_post_at(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: u64,
        ttl: Duration,
        signed_at: DateTime<Utc>,
    ) -> Result<PresignedPost, StorageError> {
        if key.is_empty() || max_bytes == 0 {
            return Err(StorageError(
                "a POST form needs a key and a positive size limit".to_owned(),
            ));
        }
        let ttl = chrono::Duration::from_std(ttl).map_err(|e| StorageError(e.to_string()))?;
        let signer = &self.post_signer;
        let form = PostForm {
            url: bucket_url(&signer.endpoint, bucket, signer.path_style),
            bucket,
            key,
            max_bytes,
            region: &signer.region,
            // Whole seconds: `x-amz-date` carries no fraction, and the policy's expiry is counted from it.
            signed_at: signed_at.trunc_subsecs(0),
            expires_at: signed_at.trunc_subsecs(0) + ttl,
        };
        Ok(form.sign(&signer.keys()?))
    }
}

/// The SigV4 signature of a base64 POST policy: the policy itself is the string to sign, under the signing
/// key of `secret`, the date of `signed_at`, `region` and `s3` (both steps are the SDK's).
pub fn sign_policy(
    policy_base64: &str,
    secret_access_key: &str,
    signed_at: SystemTime,
    region: &str,
) -> String {
    let signing_key =
        aws_sigv4::sign::v4::generate_signing_key(secret_access_key, signed_at, region, "s3");
    aws_sigv4::sign::v4::calculate_signature(signing_key, policy_base64.as_bytes())
}

/// The POST URL of `bucket` at `endpoint` (`scheme://host[:port][/path]`): `{endpoint}/{bucket}` with
/// path-style addressing, `scheme://{bucket}.host[:port][/path]` without.
pub(crate) fn bucket_url(endpoint: &str, bucket: &str, path_style: bool) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if path_style {
        return format!("{endpoint}/{bucket}");
    }
    match endpoint.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{bucket}.{rest}"),
        None => format!("{bucket}.{endpoint}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;

    /// AWS's published example ("Example: Browser-Based Upload using HTTP POST (Using AWS Signature Version
    /// 4)", S3 API reference, sigv4-post-example): this base64 policy (CRLF line ends), signed with the
    /// example secret on 2015-12-29 for us-east-1/s3, has this signature.
    const AWS_EXAMPLE_POLICY: &str = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
    const AWS_EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const AWS_EXAMPLE_SIGNATURE: &str =
        "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e";

    #[test]
    fn the_aws_published_post_policy_example_signs_to_its_published_signature() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(AWS_EXAMPLE_POLICY)
            .unwrap();
        let decoded = String::from_utf8(decoded).unwrap();
        assert!(decoded.starts_with("{ \"expiration\": \"2015-12-30T12:00:00.000Z\",\r\n"));
        assert!(decoded.contains("AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request"));
        // Any moment of the day gives the same key: the scope holds the date only.
        let signed_at = Utc.with_ymd_and_hms(2015, 12, 29, 0, 0, 0).unwrap();
        assert_eq!(
            sign_policy(
                AWS_EXAMPLE_POLICY,
                AWS_EXAMPLE_SECRET,
                signed_at.into(),
                "us-east-1"
            ),
            AWS_EXAMPLE_SIGNATURE
        );
        let later = Utc.with_ymd_and_hms(2015, 12, 29, 23, 59, 59).unwrap();
        assert_eq!(
            sign_policy(
                AWS_EXAMPLE_POLICY,
                AWS_EXAMPLE_SECRET,
                later.into(),
                "us-east-1"
            ),
            AWS_EXAMPLE_SIGNATURE
        );
        let next_day = Utc.with_ymd_and_hms(2015, 12, 30, 0, 0, 0).unwrap();
        assert_ne!(
            sign_policy(
                AWS_EXAMPLE_POLICY,
                AWS_EXAMPLE_SECRET,
                next_day.into(),
                "us-east-1"
            ),
            AWS_EXAMPLE_SIGNATURE
        );
        assert_ne!(
            sign_policy(
                AWS_EXAMPLE_POLICY,
                AWS_EXAMPLE_SECRET,
                signed_at.into(),
                "eu-west-1"
            ),
            AWS_EXAMPLE_SIGNATURE
        );
    }

    fn keys(session_token: Option<&str>) -> SigningKeys {
        SigningKeys {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_access_key: AWS_EXAMPLE_SECRET.to_owned(),
            session_token: session_token.map(str::to_owned),
        }
    }

    fn form(signed_at: DateTime<Utc>) -> PostForm<'static> {
        PostForm {
            url: bucket_url("http://127.0.0.1:9000/", "patient-attachments", true),
            bucket: "patient-attachments",
            key: "le/attachments/temp/7/abc/scan.pdf",
            max_bytes: 52_428_800,
            region: "us-east-1",
            signed_at,
            expires_at: signed_at + chrono::Duration::seconds(600),
        }
    }

    #[test]
    fn a_form_pins_its_key_fields_size_and_expiry_in_a_policy_signed_over_its_base64() {
        let signed_at = Utc.with_ymd_and_hms(2026, 11, 26, 1, 2, 3).unwrap();
        let post = form(signed_at).sign(&keys(None));
        assert_eq!(post.url, "http://127.0.0.1:9000/patient-attachments");
        let names: Vec<&str> = post.fields.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "acl",
                "key",
                "policy",
                "success_action_status",
                "x-amz-algorithm",
                "x-amz-credential",
                "x-amz-date",
                "x-amz-signature"
            ]
        );
        assert_eq!(post.fields["key"], "le/attachments/temp/7/abc/scan.pdf");
        assert_eq!(post.fields["acl"], "private");
        assert_eq!(post.fields["success_action_status"], "201");
        assert_eq!(post.fields["x-amz-algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(post.fields["x-amz-date"], "20261126T010203Z");
        assert_eq!(
            post.fields["x-amz-credential"],
            "AKIAIOSFODNN7EXAMPLE/20261126/us-east-1/s3/aws4_request"
        );
        let policy: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(&post.fields["policy"])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            policy,
            serde_json::json!({
                "expiration": "2026-11-26T01:12:03.000Z",
                "conditions": [
                    {"bucket": "patient-attachments"},
                    ["eq", "$key", "le/attachments/temp/7/abc/scan.pdf"],
                    {"acl": "private"},
                    {"success_action_status": "201"},
                    ["starts-with", "$Content-Type", ""],
                    ["content-length-range", 1, 52_428_800],
                    {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
                    {"x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20261126/us-east-1/s3/aws4_request"},
                    {"x-amz-date": "20261126T010203Z"},
                ]
            })
        );
        assert_eq!(
            post.fields["x-amz-signature"],
            sign_policy(
                &post.fields["policy"],
                AWS_EXAMPLE_SECRET,
                signed_at.into(),
                "us-east-1"
            )
        );
        assert_eq!(post.fields["x-amz-signature"].len(), 64);
    }

    #[test]
    fn temporary_credentials_add_their_session_token_as_a_field_and_a_condition() {
        let signed_at = Utc.with_ymd_and_hms(2026, 11, 26, 1, 2, 3).unwrap();
        let post = form(signed_at).sign(&keys(Some("token==")));
        assert_eq!(post.fields["x-amz-security-token"], "token==");
        let policy = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(&post.fields["policy"])
                .unwrap(),
        )
        .unwrap();
        assert!(policy.contains(r#"{"x-amz-security-token":"token=="}"#));
    }

    #[test]
    fn the_post_url_is_path_style_or_virtual_hosted_as_configured() {
        assert_eq!(
            bucket_url("http://127.0.0.1:9000", "b", true),
            "http://127.0.0.1:9000/b"
        );
        assert_eq!(
            bucket_url("https://s3.eu-central-1.amazonaws.com/", "b", false),
            "https://b.s3.eu-central-1.amazonaws.com"
        );
        assert_eq!(
            bucket_url("https://store.example/prefix", "b", true),
            "https://store.example/prefix/b"
        );
    }
}
