//! Browser-style uploads to the object store: the multipart form a [`PresignedPost`] describes, POSTed as a
//! browser (or `curl -F`) sends it — every field in order, a `Content-Type` field, then the `file` part.

use ehealth_infra::storage::PresignedPost;
use reqwest::StatusCode;

/// Uploads `bytes` as `file_name` with `form`, declaring `content_type`. Answers the store's status and body
/// (201 and a `PostResponse` XML document when the form is honoured, an S3 `<Error>` document otherwise).
pub async fn upload(
    form: &PresignedPost,
    file_name: &str,
    content_type: &str,
    bytes: &[u8],
) -> (StatusCode, String) {
    let fields: Vec<(String, String)> = form
        .fields
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    upload_fields(&form.url, &fields, file_name, content_type, bytes).await
}

/// Like [`upload`] with the form's fields given one by one (to change, add or drop some).
pub async fn upload_fields(
    url: &str,
    fields: &[(String, String)],
    file_name: &str,
    content_type: &str,
    bytes: &[u8],
) -> (StatusCode, String) {
    let mut multipart = reqwest::multipart::Form::new();
    for (name, value) in fields {
        multipart = multipart.text(name.clone(), value.clone());
    }
    multipart = multipart
        .text("Content-Type", content_type.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes.to_vec())
                .file_name(file_name.to_owned())
                .mime_str(content_type)
                .unwrap(),
        );
    let response = reqwest::Client::new()
        .post(url)
        .multipart(multipart)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// The `<Code>` of an S3 error document (empty when there is none).
pub fn error_code(body: &str) -> &str {
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map_or("", |(code, _)| code)
}
