//! Bad input, as schemathesis and hand probing found it: every answer is a 4xx in the eHealth error shape,
//! never a 5xx, a plain-text body or a 202 for input that cannot be right.

#![allow(clippy::unwrap_used)]

use ehealth_domain::analysis_file::MAX_FILE_NAME_BYTES;
use ehealth_tests::{Party, TestApp};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// A response: status, headers and the JSON body (`Null` when it is not JSON).
struct Answer {
    status: StatusCode,
    headers: header::HeaderMap,
    body: Value,
}

impl Answer {
    /// Asserts the eHealth error shape with this status and `error.type`; returns `error`.
    #[track_caller]
    fn assert_error(&self, status: u16, kind: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/json",
            "{:?}",
            self.body
        );
        assert_eq!(self.body["meta"]["code"], status, "{:?}", self.body);
        assert_eq!(self.body["error"]["type"], kind, "{:?}", self.body);
        assert!(self.body["error"]["message"].is_string(), "{:?}", self.body);
        &self.body["error"]
    }

    /// Asserts a 422 naming `entry`; returns the rule's description.
    #[track_caller]
    fn assert_invalid(&self, entry: &str) -> String {
        let error = self.assert_error(422, "validation_failed");
        assert_eq!(error["invalid"][0]["entry"], entry, "{error}");
        error["invalid"][0]["rules"][0]["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends `body` as it is, with the party's credentials and `content_type` (if any).
async fn send(
    app: &TestApp,
    party: &Party,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(&party.token)
        .header("api-key", &app.api_key)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

fn create_path() -> String {
    format!("/api/patients/{}/service_requests", Uuid::new_v4())
}

fn reason_paths() -> [String; 2] {
    let (patient, id) = (Uuid::new_v4(), Uuid::new_v4());
    ["recall", "cancel"]
        .map(|a| format!("/api/patients/{patient}/service_requests/{id}/actions/{a}"))
}

async fn jobs(app: &TestApp) -> i64 {
    app.query("SELECT count(*) FROM jobs", &[]).await[0].get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_in_category_code_or_status_reason_is_422_naming_the_entry() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    for (body, entry) in [
        (
            json!({"category": "laboratory_procedure\u{0}", "code": "b"}),
            "$.category",
        ),
        (
            json!({"category": "laboratory_procedure", "code": "b\u{0}"}),
            "$.code",
        ),
    ] {
        send(
            &app,
            &msp,
            Method::POST,
            &create_path(),
            Some("application/json"),
            body.to_string(),
        )
        .await
        .assert_invalid(entry);
    }
    for path in reason_paths() {
        let body = json!({"status_reason": "by mistake\u{0}"}).to_string();
        send(
            &app,
            &msp,
            Method::PATCH,
            &path,
            Some("application/json"),
            body,
        )
        .await
        .assert_invalid("$.status_reason");
    }
    assert_eq!(jobs(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_over_64_kb_is_414_in_the_ehealth_shape() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    // hyper answers this itself, before routing; reqwest cannot even build such a URI.
    let long = format!("/api/service_requests/{}", "a".repeat(70_000));
    let (status, body) = raw(&app, &msp, "GET", &long).await;
    assert_eq!(status, 414, "{body}");
    assert_eq!(body["meta"]["code"], 414, "{body}");
    assert_eq!(body["error"]["type"], "request_uri_too_long", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");

    // The server still answers afterwards.
    let answer = send(&app, &msp, Method::GET, "/health", None, "").await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_body_is_413_in_the_ehealth_shape() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let big = format!(r#"{{"status_reason":"{}"}}"#, "a".repeat(10 * 1024 * 1024));
    let files = format!(
        "/api/erp/v1/patients/{}/analysis/{}/files/{}",
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4()
    );
    let [recall, cancel] = reason_paths();
    for (method, path) in [
        (Method::POST, create_path()),
        (Method::PATCH, recall),
        (Method::PATCH, cancel),
        (Method::PATCH, files),
    ] {
        send(
            &app,
            &msp,
            method,
            &path,
            Some("application/json"),
            big.clone(),
        )
        .await
        .assert_error(413, "request_entity_too_large");
    }
    assert_eq!(jobs(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_parameter_given_twice_is_422_naming_it() {
    let app = TestApp::spawn_without_worker().await;
    let party = app
        .party(
            "MSP",
            ehealth_domain::ClientType::Msp,
            "service_request:read audit:read",
        )
        .await;
    let list = format!("{}?page=1&page=2", create_path());
    send(&app, &party, Method::GET, &list, None, "")
        .await
        .assert_invalid("$.page");
    send(
        &app,
        &party,
        Method::GET,
        "/api/audit/events?limit=1&limit=2",
        None,
        "",
    )
    .await
    .assert_invalid("$.limit");
    let stream = format!("/api/audit/streams/{}?as_of=1&as_of=2", Uuid::new_v4());
    send(&app, &party, Method::GET, &stream, None, "")
        .await
        .assert_invalid("$.as_of");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_out_of_range_names_its_range() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    for query in ["page=0", "page=10000001", "page=x"] {
        let path = format!("{}?{query}", create_path());
        let description = send(&app, &msp, Method::GET, &path, None, "")
            .await
            .assert_invalid("$.page");
        assert_eq!(description, "expected an integer from 1 to 10000000");
    }
    let path = format!("{}?page=10000000&page_size=100", create_path());
    let answer = send(&app, &msp, Method::GET, &path, None, "").await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anything_after_the_json_body_is_422() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    for body in [
        r#"{"category":"laboratory_procedure","code":"b"} x"#,
        r#"{"category":"laboratory_procedure","code":"b"}{}"#,
    ] {
        send(
            &app,
            &msp,
            Method::POST,
            &create_path(),
            Some("application/json"),
            body,
        )
        .await
        .assert_invalid("$");
    }
    for path in reason_paths() {
        send(
            &app,
            &msp,
            Method::PATCH,
            &path,
            Some("application/json"),
            "{} []",
        )
        .await
        .assert_invalid("$");
    }
    assert_eq!(jobs(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_type_that_only_looks_like_json_is_415() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let body = r#"{"category":"laboratory_procedure","code":"b"}"#;
    let [recall, cancel] = reason_paths();
    let files = format!(
        "/api/erp/v1/patients/{}/analysis/{}/files/{}",
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4()
    );
    for content_type in ["application/jsonx", "application/json-patch", "text/plain"] {
        send(
            &app,
            &msp,
            Method::POST,
            &create_path(),
            Some(content_type),
            body,
        )
        .await
        .assert_error(415, "unsupported_media_type");
        for path in [&recall, &cancel] {
            send(
                &app,
                &msp,
                Method::PATCH,
                path,
                Some(content_type),
                r#"{"status_reason":"x"}"#,
            )
            .await
            .assert_error(415, "unsupported_media_type");
        }
        send(
            &app,
            &msp,
            Method::PATCH,
            &files,
            Some(content_type),
            r#"{"isSend":true}"#,
        )
        .await
        .assert_error(415, "unsupported_media_type");
    }
    assert_eq!(jobs(&app).await, 0);
    // JSON with parameters, and structured +json types, are JSON.
    for content_type in [
        "application/json; charset=utf-8",
        "application/vnd.api+json",
    ] {
        let answer = send(
            &app,
            &msp,
            Method::POST,
            &create_path(),
            Some(content_type),
            body,
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{content_type}: {:?}",
            answer.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_array_where_an_object_belongs_is_422() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    for path in reason_paths() {
        for body in ["[]", r#"["by mistake"]"#, "1", r#""by mistake""#] {
            send(
                &app,
                &msp,
                Method::PATCH,
                &path,
                Some("application/json"),
                body,
            )
            .await
            .assert_invalid("$");
        }
    }
    // serde would fill a struct from an array, field by field.
    send(
        &app,
        &msp,
        Method::POST,
        &create_path(),
        Some("application/json"),
        r#"["laboratory_procedure","b"]"#,
    )
    .await
    .assert_invalid("$");
    let nested = json!({"used_by_legal_entity": {"identifier": [[{"coding": [["eHealth/resources", "legal_entity"]]}], msp.legal_entity_id]}});
    let path = format!("/api/service_requests/{}/actions/use", Uuid::new_v4());
    send(
        &app,
        &msp,
        Method::PATCH,
        &path,
        Some("application/json"),
        nested.to_string(),
    )
    .await
    .assert_invalid("$.used_by_legal_entity.identifier");
    assert_eq!(jobs(&app).await, 0);
    // An empty body and `null` are no reason: accepted.
    for (path, body) in reason_paths().into_iter().zip(["", "null"]) {
        let answer = send(
            &app,
            &msp,
            Method::PATCH,
            &path,
            Some("application/json"),
            body,
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{body:?}: {:?}",
            answer.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405_method_not_allowed_with_allow() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let answer = send(&app, &msp, Method::PUT, &create_path(), None, "").await;
    answer.assert_error(405, "method_not_allowed");
    assert_eq!(answer.headers[header::ALLOW], "GET,HEAD,POST");
    let answer = send(&app, &msp, Method::DELETE, "/openapi.json", None, "").await;
    answer.assert_error(405, "method_not_allowed");
    assert_eq!(answer.headers[header::ALLOW], "GET,HEAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_expiration_date_or_an_unknown_category_is_422_before_any_job() {
    // Today's date must still be today when the api checks it.
    ehealth_tests::within_one_utc_day().await;
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).date_naive();
    for (body, entry) in [
        (
            json!({"category": "laboratory_procedure", "code": "b", "expiration_date": yesterday}),
            "$.expiration_date",
        ),
        (json!({"category": "c", "code": "b"}), "$.category"),
        (
            json!({"category": "laboratory_procedure", "code": "  "}),
            "$.code",
        ),
        (
            json!({"category": "laboratory_procedure", "code": "b".repeat(256)}),
            "$.code",
        ),
    ] {
        send(
            &app,
            &msp,
            Method::POST,
            &create_path(),
            Some("application/json"),
            body.to_string(),
        )
        .await
        .assert_invalid(entry);
    }
    assert_eq!(jobs(&app).await, 0);
    // Every category of the list, and today, pass.
    let today = chrono::Utc::now().date_naive();
    for category in [
        "laboratory_procedure",
        "diagnostic_procedure",
        "imaging",
        "counselling",
        "procedure",
        "hospitalization",
        "transfer_of_care",
    ] {
        let body = json!({"category": category, "code": "b", "expiration_date": today});
        let answer = send(
            &app,
            &msp,
            Method::POST,
            &create_path(),
            Some("application/json"),
            body.to_string(),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{category}: {:?}",
            answer.body
        );
    }
}

/// Sends one raw HTTP/1.1 request (reqwest would remove a `%2E` dot segment) and returns the status and body.
async fn raw(app: &TestApp, party: &Party, method: &str, path: &str) -> (u16, Value) {
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        party.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_names_the_store_cannot_hold_are_422_at_initialize_and_finalize() {
    let app = TestApp::spawn().await;
    let party = app
        .party(
            "MSP",
            ehealth_domain::ClientType::Msp,
            "gambit:erp job:read",
        )
        .await;
    let files = format!(
        "/api/erp/v1/patients/{}/analysis/{}/files",
        Uuid::new_v4(),
        Uuid::new_v4()
    );
    let too_long = "a".repeat(MAX_FILE_NAME_BYTES + 1);
    for name in ["%2E", "%2e", too_long.as_str()] {
        for path in [
            format!("{files}/initialize/{name}"),
            format!("{files}/{name}"),
        ] {
            let (status, body) = raw(&app, &party, "POST", &path).await;
            assert_eq!(status, 422, "{path}: {body}");
            assert_eq!(body["error"]["invalid"][0]["entry"], "$.fileName", "{body}");
        }
    }

    // The longest name accepted goes all the way: link, upload to the store, finalize.
    let name = format!("{}.pdf", "b".repeat(MAX_FILE_NAME_BYTES - 4));
    let api = app.api(&party.token).without_api_key();
    let link = api
        .request(
            Method::POST,
            &format!("{files}/initialize/{name}"),
            None,
            &[],
        )
        .await;
    assert_eq!(link.status, StatusCode::OK, "{link:?}");
    let url = link.body["data"]["url"].as_str().unwrap();
    let put = reqwest::Client::new()
        .put(url)
        .header(header::CONTENT_TYPE, "application/pdf")
        .body("%PDF-1.4")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);
    let finalized = api
        .request(Method::POST, &format!("{files}/{name}"), None, &[])
        .await;
    assert_eq!(finalized.status, StatusCode::OK, "{finalized:?}");
    assert_eq!(finalized.body["data"]["fileName"], name.as_str());
}
