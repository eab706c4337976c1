//! Browser uploads by presigned POST against the real embedded s3s endpoint: a form `Storage::presign_post`
//! signs uploads exactly its object (201 + `PostResponse`), and the store refuses every form that breaks its
//! policy (too large, too small, another key, expired, a bad signature, a tampered policy, a field the policy
//! does not name, another bucket). Then `Storage::digest` and `Storage::copy` on what was uploaded.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::Utc;
use ehealth_infra::storage::{ObjectDigest, PresignedPost};
use ehealth_tests::{
    files::{sha256, PDF, PNG},
    s3_form,
    s3_form::error_code as code,
    TestApp,
};
use reqwest::StatusCode;

const TTL: Duration = Duration::from_secs(600);

fn key(name: &str) -> String {
    format!(
        "le-1/attachments/temp/7/{}/{name}",
        uuid::Uuid::new_v4().simple()
    )
}

/// An app without a worker, and its attachments bucket.
async fn store() -> (TestApp, String) {
    let app = TestApp::spawn_without_worker().await;
    let bucket = app.storage.attachments_bucket.clone();
    (app, bucket)
}

/// What the store holds at `key` of `bucket` (None: nothing).
async fn stored(app: &TestApp, bucket: &str, key: &str) -> Option<ObjectDigest> {
    app.storage.digest(bucket, key).await.unwrap()
}

/// The store refused the upload with `expected` and the S3 error `error`.
#[track_caller]
fn assert_refused(status: StatusCode, body: &str, expected: StatusCode, error: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(code(body), error, "{body}");
}

/// POSTs `fields`, a `Content-Type` field, then the file, as a browser form does.
async fn post(
    url: &str,
    fields: &[(String, String)],
    content_type: &str,
    file: &[u8],
) -> (StatusCode, String) {
    s3_form::upload_fields(url, fields, "upload.bin", content_type, file).await
}

fn fields(post: &PresignedPost) -> Vec<(String, String)> {
    post.fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn with(post: &PresignedPost, name: &str, value: &str) -> Vec<(String, String)> {
    let mut fields = fields(post);
    match fields.iter_mut().find(|(k, _)| k == name) {
        Some(field) => field.1 = value.to_owned(),
        None => fields.push((name.to_owned(), value.to_owned())),
    }
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_form_uploads_its_file_with_201_and_a_post_response() {
    let (app, bucket) = store().await;
    assert!(
        app.storage.buckets().contains(&bucket.as_str()),
        "created at start"
    );
    let key = key("scan one.png");
    let form = app
        .storage
        .presign_post(&bucket, &key, app.config.max_attachment_bytes, TTL)
        .unwrap();
    assert_eq!(
        form.url,
        format!("{}/{bucket}", app.config.s3_endpoint_url())
    );
    assert_eq!(form.fields["key"], key);
    assert_eq!(form.fields["success_action_status"], "201");
    assert_eq!(form.fields["acl"], "private");
    assert_eq!(form.fields["x-amz-algorithm"], "AWS4-HMAC-SHA256");

    let (status, body) = s3_form::upload(&form, "scan one.png", "image/png", PNG).await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.contains("<PostResponse"), "{body}");
    assert!(
        body.contains(&format!("<Bucket>{bucket}</Bucket>")),
        "{body}"
    );
    assert!(body.contains(&format!("<Key>{key}</Key>")), "{body}");
    assert!(body.contains("<ETag>"), "{body}");
    assert!(body.contains("<Location>"), "{body}");
    let digest = stored(&app, &bucket, &key).await.unwrap();
    assert_eq!(digest.size, PNG.len() as u64);
    assert_eq!(digest.sha256, sha256(PNG));
    assert_eq!(digest.sniffed_type.as_deref(), Some("image/png"));
    assert_eq!(digest.declared_type.as_deref(), Some("image/png"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_larger_than_the_policy_allows_or_empty_is_refused_and_nothing_is_stored() {
    let (app, bucket) = store().await;
    let key = key("big.bin");
    let form = app.storage.presign_post(&bucket, &key, 1024, TTL).unwrap();

    let (status, body) = post(&form.url, &fields(&form), "text/plain", &[b'x'; 1025]).await;
    assert_refused(status, &body, StatusCode::BAD_REQUEST, "EntityTooLarge");
    let (status, body) = post(&form.url, &fields(&form), "text/plain", b"").await;
    assert_refused(status, &body, StatusCode::BAD_REQUEST, "EntityTooSmall");
    assert_eq!(stored(&app, &bucket, &key).await, None);

    // The limit itself is allowed.
    let (status, body) = post(&form.url, &fields(&form), "text/plain", &[b'x'; 1024]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(stored(&app, &bucket, &key).await.unwrap().size, 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_whose_key_was_changed_is_refused() {
    let (app, bucket) = store().await;
    let key = key("scan.png");
    let form = app
        .storage
        .presign_post(&bucket, &key, app.config.max_attachment_bytes, TTL)
        .unwrap();
    let other = "le-2/attachments/temp/9/stolen.png";

    let (status, body) = post(&form.url, &with(&form, "key", other), "image/png", PNG).await;

    assert_refused(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "InvalidPolicyDocument",
    );
    assert_eq!(stored(&app, &bucket, other).await, None);
    assert_eq!(stored(&app, &bucket, &key).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_form_is_refused() {
    let (app, bucket) = store().await;
    let key = key("late.png");
    // Signed 10 minutes ago, valid for 5: expired 5 minutes ago (its signing time is within the store's
    // 15-minute clock-skew window, so the expiry alone refuses it).
    let form = app
        .storage
        .presign_post_at(
            &bucket,
            &key,
            app.config.max_attachment_bytes,
            Duration::from_secs(300),
            Utc::now() - chrono::Duration::minutes(10),
        )
        .unwrap();

    let (status, body) = post(&form.url, &fields(&form), "image/png", PNG).await;

    assert_refused(status, &body, StatusCode::FORBIDDEN, "AccessDenied");
    assert!(body.contains("expired"), "{body}");
    assert_eq!(stored(&app, &bucket, &key).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_signature_a_tampered_policy_or_another_account_is_refused() {
    let (app, bucket) = store().await;
    let key = key("scan.png");
    let form = app.storage.presign_post(&bucket, &key, 1024, TTL).unwrap();

    // One hex digit of the signature changed.
    let signature = &form.fields["x-amz-signature"];
    let flipped = format!(
        "{}{}",
        if signature.starts_with('0') { "1" } else { "0" },
        &signature[1..]
    );
    let (status, body) = post(
        &form.url,
        &with(&form, "x-amz-signature", &flipped),
        "image/png",
        PNG,
    )
    .await;
    assert_refused(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "SignatureDoesNotMatch",
    );

    // The policy rewritten to allow 1 GiB, under the original signature.
    let bigger = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let policy = String::from_utf8(engine.decode(&form.fields["policy"]).unwrap()).unwrap();
        assert!(
            policy.contains(r#"["content-length-range",1,1024]"#),
            "{policy}"
        );
        engine.encode(policy.replace(
            r#"["content-length-range",1,1024]"#,
            r#"["content-length-range",1,1073741824]"#,
        ))
    };
    let (status, body) = post(
        &form.url,
        &with(&form, "policy", &bigger),
        "text/plain",
        &[b'x'; 2048],
    )
    .await;
    assert_refused(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "SignatureDoesNotMatch",
    );

    // A form signed with AWS's published example account.
    let stranger = ehealth_infra::storage::Storage::new(&ehealth_infra::Config {
        s3_access_key_id: Some("AKIAIOSFODNN7EXAMPLE".to_owned()),
        s3_secret_access_key: Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned()),
        ..app.config.clone()
    });
    let forged = stranger.presign_post(&bucket, &key, 1024, TTL).unwrap();
    let (status, body) = post(&forged.url, &fields(&forged), "image/png", PNG).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(stored(&app, &bucket, &key).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_the_policy_does_not_name_or_another_bucket_is_refused() {
    let (app, bucket) = store().await;
    let key = key("scan.png");
    let form = app.storage.presign_post(&bucket, &key, 1024, TTL).unwrap();

    let (status, body) = post(
        &form.url,
        &with(&form, "x-amz-meta-owner", "someone-else"),
        "image/png",
        PNG,
    )
    .await;
    assert_refused(status, &body, StatusCode::FORBIDDEN, "AccessDenied");

    let (status, body) = post(
        &form.url,
        &with(&form, "acl", "public-read"),
        "image/png",
        PNG,
    )
    .await;
    assert_refused(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "InvalidPolicyDocument",
    );

    let files = format!(
        "{}/{}",
        app.config.s3_endpoint_url(),
        app.storage.files_bucket
    );
    let (status, body) = post(&files, &fields(&form), "image/png", PNG).await;
    assert_refused(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "InvalidPolicyDocument",
    );
    assert_eq!(stored(&app, &app.storage.files_bucket, &key).await, None);
    assert_eq!(stored(&app, &bucket, &key).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_streams_size_sha256_and_the_sniffed_type_and_copy_keeps_the_bytes() {
    let (app, bucket) = store().await;
    assert_eq!(stored(&app, &bucket, "no/such/object").await, None);

    // A PDF declared as something else: the bytes tell, the declaration is kept beside.
    let pdf_key = key("report.pdf");
    let form = app
        .storage
        .presign_post(&bucket, &pdf_key, 1024, TTL)
        .unwrap();
    let (status, body) = post(&form.url, &fields(&form), "application/octet-stream", PDF).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let pdf = stored(&app, &bucket, &pdf_key).await.unwrap();
    assert_eq!(pdf.size, PDF.len() as u64);
    assert_eq!(pdf.sha256, sha256(PDF));
    assert_eq!(pdf.sniffed_type.as_deref(), Some("application/pdf"));
    assert_eq!(
        pdf.declared_type.as_deref(),
        Some("application/octet-stream")
    );

    // Bytes no sniffer knows: no sniffed type, the declared one stays.
    let text_key = key("notes.txt");
    let form = app
        .storage
        .presign_post(&bucket, &text_key, 1024, TTL)
        .unwrap();
    let (status, _) = post(
        &form.url,
        &fields(&form),
        "text/plain",
        b"blood pressure 120/80",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let text = stored(&app, &bucket, &text_key).await.unwrap();
    assert_eq!(text.sniffed_type, None);
    assert_eq!(text.declared_type.as_deref(), Some("text/plain"));
    assert_eq!(text.sha256, sha256(b"blood pressure 120/80"));

    // Larger than the sniffer's window and than one body chunk: the whole object is hashed.
    let big: Vec<u8> = PNG
        .iter()
        .copied()
        .chain((0..3_000_000u32).map(|i| (i % 251) as u8))
        .collect();
    let big_key = key("big.png");
    let form = app
        .storage
        .presign_post(&bucket, &big_key, app.config.max_attachment_bytes, TTL)
        .unwrap();
    let (status, _) = post(&form.url, &fields(&form), "image/png", &big).await;
    assert_eq!(status, StatusCode::CREATED);
    let digest = stored(&app, &bucket, &big_key).await.unwrap();
    assert_eq!(digest.size, big.len() as u64);
    assert_eq!(digest.sha256, sha256(&big));
    assert_eq!(digest.sniffed_type.as_deref(), Some("image/png"));

    // A server-side copy to a key with spaces and non-ASCII characters keeps bytes and type.
    let final_key = "le-1/attachments/7/42/Знімок екрана 100%.pdf";
    app.storage
        .copy(&bucket, &pdf_key, final_key)
        .await
        .unwrap();
    assert_eq!(stored(&app, &bucket, final_key).await.unwrap(), pdf);
    assert_eq!(
        stored(&app, &bucket, &pdf_key).await.unwrap(),
        pdf,
        "the source stays until it is deleted"
    );
    app.storage.delete(&bucket, &pdf_key).await.unwrap();
    assert_eq!(stored(&app, &bucket, &pdf_key).await, None);
    assert!(
        app.storage
            .copy(&bucket, &pdf_key, "le-1/attachments/7/43/x.pdf")
            .await
            .is_err(),
        "copying a missing object fails"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_works_until_its_policy_expires_however_long_ago_it_was_signed() {
    let (app, bucket) = store().await;
    // Signed 20 minutes ago for an hour (past s3s's 15-minute clock skew), and 2 days ago for 3 days.
    for (age, ttl) in [
        (chrono::Duration::minutes(20), Duration::from_secs(3600)),
        (chrono::Duration::days(2), Duration::from_secs(3 * 86_400)),
    ] {
        let key = key("slow.png");
        let form = app
            .storage
            .presign_post_at(&bucket, &key, 1024, ttl, Utc::now() - age)
            .unwrap();
        let (status, body) = post(&form.url, &fields(&form), "image/png", PNG).await;
        assert_eq!(status, StatusCode::CREATED, "{age}: {body}");
        assert_eq!(
            stored(&app, &bucket, &key).await.unwrap().sha256,
            sha256(PNG)
        );
    }
}

/// A `GET {bucket}` (ListObjects) signed in its `Authorization` header as at `signed_at`.
async fn list_signed_at(
    app: &TestApp,
    bucket: &str,
    signed_at: std::time::SystemTime,
) -> (StatusCode, String) {
    use aws_sigv4::http_request::{
        sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
    };
    let (id, secret) = app.config.s3_static_keys().unwrap();
    let identity = aws_credential_types::Credentials::new(id, secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&app.config.s3_region)
        .name("s3")
        .time(signed_at)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let url = format!("{}/{bucket}", app.config.s3_endpoint_url());
    let signable = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::empty(),
        SignableBody::Bytes(&[]),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = reqwest::Client::new().get(&url);
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_other_than_forms_keep_the_fifteen_minute_clock_skew() {
    let (app, bucket) = store().await;
    let now = std::time::SystemTime::now();
    let (status, body) = list_signed_at(&app, &bucket, now).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = list_signed_at(&app, &bucket, now - Duration::from_secs(20 * 60)).await;
    assert_refused(status, &body, StatusCode::FORBIDDEN, "RequestTimeTooSkewed");
}
