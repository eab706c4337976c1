//! Spec 002, patient attachments (Cliniko-compatible), through HTTP, the real worker, RabbitMQ, Postgres and
//! the embedded S3 endpoint: the browser's upload by presigned POST, create, processing, content, archive,
//! the lists' filters, sorting and paging, auth and tenancy, and Cliniko's error shapes.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ehealth_domain::{patient_attachment::NOT_PRESIGNED, ClientType};
use ehealth_tests::{
    eventually,
    files::{sha256, PDF, PNG},
    s3_form, wait_for, Party, TestApp,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// How a client authenticates.
#[derive(Clone)]
enum Auth {
    Basic(String),
    Bearer(String),
    Raw(String),
    Nothing,
}

/// An answer: status, headers, JSON body (`Null` when empty).
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    #[track_caller]
    fn assert_invalid(&self, field: &str) {
        assert_eq!(self.status, StatusCode::UNPROCESSABLE_ENTITY, "{self:?}");
        assert_eq!(self.body["message"], "Validation Failed", "{self:?}");
        assert!(
            self.body["errors"][field].is_string(),
            "{field} in {self:?}"
        );
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A Cliniko client of one legal entity.
struct Cliniko<'a> {
    app: &'a TestApp,
    auth: Auth,
    http: reqwest::Client,
}

impl<'a> Cliniko<'a> {
    fn new(app: &'a TestApp, auth: Auth) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { app, auth, http }
    }

    /// Cliniko's way: the token as the Basic user name, an empty password.
    fn basic(app: &'a TestApp, party: &Party) -> Self {
        Self::new(app, Auth::Basic(party.token.clone()))
    }

    fn bearer(app: &'a TestApp, party: &Party) -> Self {
        Self::new(app, Auth::Bearer(party.token.clone()))
    }

    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.app.address));
        request = match &self.auth {
            Auth::Basic(token) => request.basic_auth(token, Some("")),
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Raw(value) => request.header("authorization", value),
            Auth::Nothing => request,
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send_raw(Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.send_raw(Method::POST, path, Some(("application/json", bytes)), &[])
            .await
    }

    async fn form(&self, patient_id: i64, filename: &str) -> Value {
        let reply = self
            .get(&format!(
                "/v1/patients/{patient_id}/attachment_presigned_post?filename={filename}"
            ))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body
    }

    /// Presigned form → browser upload → the `upload_url` to create with.
    async fn upload(
        &self,
        patient_id: i64,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> String {
        let form = self.form(patient_id, filename).await;
        let fields: Vec<(String, String)> = form["fields"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let url = form["url"].as_str().unwrap();
        let (status, body) =
            s3_form::upload_fields(url, &fields, filename, content_type, bytes).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(body.contains("<PostResponse"), "{body}");
        format!("{url}/{}", form["fields"]["key"].as_str().unwrap())
    }

    async fn create(&self, body: Value) -> Reply {
        self.post("/v1/patient_attachments", body).await
    }

    /// Uploads and creates; returns the created attachment.
    async fn attachment(
        &self,
        patient_id: i64,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Value {
        let upload_url = self.upload(patient_id, filename, content_type, bytes).await;
        let reply = self
            .create(json!({"patient_id": patient_id.to_string(), "upload_url": upload_url}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        reply.body
    }

    /// Waits until processing completed; returns the attachment.
    async fn processed(&self, id: &str) -> Value {
        wait_for(WAIT, || async {
            let reply = self.get(&format!("/v1/patient_attachments/{id}")).await;
            (reply.body["processing_completed"] == true).then_some(reply.body)
        })
        .await
        .unwrap_or_else(|| panic!("attachment {id} was not processed"))
    }

    async fn list(&self, path_and_query: &str) -> Reply {
        let reply = self.get(path_and_query).await;
        assert_eq!(reply.status, StatusCode::OK, "{path_and_query}: {reply:?}");
        reply
    }

    async fn ids(&self, path_and_query: &str) -> Vec<String> {
        self.list(path_and_query).await.body["patient_attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The path of an absolute link of this api.
fn path_of(app: &TestApp, link: &Value) -> String {
    link.as_str()
        .unwrap()
        .strip_prefix(&app.address)
        .unwrap_or_else(|| panic!("{link} is not under {}", app.address))
        .to_owned()
}

/// The event types of attachment `id`'s stream, in order.
async fn event_types(app: &TestApp, id: &str) -> Vec<String> {
    let stream = ehealth_domain::patient_attachment::stream_id(id.parse().unwrap());
    app.query(
        "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version",
        &[&stream],
    )
    .await
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_upload_becomes_a_processed_attachment_whose_content_is_the_same_bytes() {
    let app = TestApp::spawn().await;
    let party = app.msp().await;
    let clinic = Cliniko::basic(&app, &party);

    let upload_url = clinic.upload(7, "scan.png", "image/png", PNG).await;
    let reply = clinic
        .create(json!({"patient_id": "7", "upload_url": upload_url, "description": "X-ray", "patient_case_id": "9"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let created = &reply.body;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.parse::<i64>().unwrap() > 0, "int64 id as a string");
    assert_eq!(created["processing_completed"], false);
    assert_eq!(created["filename"], "scan.png");
    assert_eq!(created["description"], "X-ray");
    assert_eq!(
        reply.header("location"),
        Some(format!("{}/v1/patient_attachments/{id}", app.address).as_str())
    );
    assert_eq!(
        created["links"]["self"],
        json!(format!("{}/v1/patient_attachments/{id}", app.address))
    );
    assert_eq!(
        created["patient"]["links"]["self"],
        json!(format!("{}/v1/patients/7", app.address))
    );
    assert_eq!(
        created["patient_case"]["links"]["self"],
        json!(format!("{}/v1/patient_cases/9", app.address))
    );

    let attachment = clinic.processed(&id).await;
    assert_eq!(attachment["content_type"], "image/png");
    assert_eq!(attachment["size"], PNG.len());
    assert_eq!(attachment["sha256"], sha256(PNG));
    assert!(attachment["processed_at"].is_string());

    let content = clinic
        .get(&path_of(&app, &attachment["content"]["links"]["self"]))
        .await;
    assert_eq!(content.status, StatusCode::FOUND, "{content:?}");
    let download = reqwest::get(content.header("location").unwrap())
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.bytes().await.unwrap().as_ref(), PNG);

    // The temporary object is deleted after the processing commit.
    let temp_key = upload_url
        .split_once(&format!("/{}/", app.storage.attachments_bucket))
        .unwrap()
        .1
        .to_owned();
    let bucket = app.storage.attachments_bucket.clone();
    assert!(
        eventually(WAIT, || async {
            app.storage
                .head(&bucket, &temp_key)
                .await
                .unwrap()
                .is_none()
        })
        .await,
        "the temporary object is deleted"
    );

    // Every change is in the event log, and status changes were announced.
    assert_eq!(event_types(&app, &id).await, ["created", "processed"]);
    let stream = ehealth_domain::patient_attachment::stream_id(id.parse().unwrap());
    let announced = app
        .query(
            "SELECT payload->'properties'->'status'->>'new_value' FROM outbox \
             WHERE routing_key = 'patient_attachment.status_changed' AND payload->>'entity_id' = $1 ORDER BY id",
            &[&stream.to_string()],
        )
        .await;
    let statuses: Vec<String> = announced.iter().map(|r| r.get(0)).collect();
    assert_eq!(statuses, ["processing", "processed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdf_declared_as_octet_stream_is_sniffed_and_bearer_auth_works_too() {
    let app = TestApp::spawn().await;
    let party = app.msp().await;
    let clinic = Cliniko::bearer(&app, &party);
    let created = clinic
        .attachment(3, "letter.pdf", "application/octet-stream", PDF)
        .await;
    let attachment = clinic.processed(created["id"].as_str().unwrap()).await;
    assert_eq!(attachment["content_type"], "application/pdf");
    assert_eq!(attachment["sha256"], sha256(PDF));
    assert_eq!(attachment["patient_case"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_create_is_a_cliniko_422_naming_its_field() {
    let app = TestApp::spawn().await;
    let party = app.msp().await;
    let clinic = Cliniko::basic(&app, &party);
    let bucket_url = format!(
        "{}/{}",
        app.config.s3_endpoint.clone().unwrap(),
        app.storage.attachments_bucket
    );

    // A key this service never presigned, even under the caller's own prefix.
    let forged = format!(
        "{bucket_url}/{}/attachments/temp/7/{}/x.png",
        party.legal_entity_id,
        Uuid::new_v4().simple()
    );
    let reply = clinic
        .create(json!({"patient_id": "7", "upload_url": forged}))
        .await;
    reply.assert_invalid("upload_url");
    assert_eq!(reply.body["errors"]["upload_url"], NOT_PRESIGNED);
    clinic
        .create(json!({"patient_id": "7", "upload_url": "not a url"}))
        .await
        .assert_invalid("upload_url");

    // Presigned for patient 7, created for patient 8.
    let upload_url = clinic.upload(7, "a.png", "image/png", PNG).await;
    clinic
        .create(json!({"patient_id": "8", "upload_url": upload_url}))
        .await
        .assert_invalid("upload_url");

    // Presigned, but nothing was uploaded: the job finds no object.
    let form = clinic.form(7, "never.png").await;
    let never = format!(
        "{}/{}",
        form["url"].as_str().unwrap(),
        form["fields"]["key"].as_str().unwrap()
    );
    let reply = clinic
        .create(json!({"patient_id": "7", "upload_url": never}))
        .await;
    reply.assert_invalid("upload_url");
    assert_eq!(
        reply.body["errors"]["upload_url"],
        "no file was uploaded to this URL"
    );

    // A description over 255 characters (255 is fine).
    let reply = clinic
        .create(
            json!({"patient_id": "7", "upload_url": upload_url, "description": "é".repeat(256)}),
        )
        .await;
    reply.assert_invalid("description");
    assert_eq!(
        reply.body["errors"]["description"],
        "is too long (maximum is 255 characters)"
    );

    clinic
        .create(json!({"patient_id": "7", "upload_url": upload_url, "description": "a\u{0}b"}))
        .await
        .assert_invalid("description");
    clinic
        .create(json!({"patient_id": "7", "upload_url": format!("{upload_url}%00")}))
        .await
        .assert_invalid("upload_url");

    // Bad bodies.
    clinic
        .create(json!({"patient_id": "abc", "upload_url": upload_url}))
        .await
        .assert_invalid("patient_id");
    clinic
        .create(json!({"patient_id": "7"}))
        .await
        .assert_invalid("base");
    clinic
        .create(json!({"patient_id": "7", "upload_url": 5}))
        .await
        .assert_invalid("upload_url");
    let reply = clinic
        .send_raw(
            Method::POST,
            "/v1/patient_attachments",
            Some(("application/json", b"{\"patient_id\":".to_vec())),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.body["message"], "Validation Failed");
    let reply = clinic
        .send_raw(
            Method::POST,
            "/v1/patient_attachments",
            Some(("text/plain", b"x".to_vec())),
            &[],
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{reply:?}"
    );
    assert!(reply.body["message"].is_string(), "{reply:?}");

    // The upload works once; a second create from it is refused.
    let first = clinic
        .create(json!({"patient_id": 7, "upload_url": upload_url, "description": "é".repeat(255)}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    clinic
        .create(json!({"patient_id": "7", "upload_url": upload_url, "description": "again"}))
        .await
        .assert_invalid("upload_url");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_scopes_and_bad_paths_answer_in_clinikos_shapes() {
    let app = TestApp::spawn().await;
    let party = app.msp().await;
    for auth in [
        Auth::Nothing,
        Auth::Basic("unknown-token".to_owned()),
        Auth::Bearer("unknown-token".to_owned()),
        Auth::Raw("Basic !!!".to_owned()),
    ] {
        let reply = Cliniko::new(&app, auth)
            .get("/v1/patient_attachments")
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        assert!(reply.body["message"].is_string(), "{reply:?}");
        assert!(
            reply.body.get("error").is_none(),
            "not the eHealth shape: {reply:?}"
        );
        assert!(reply
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic"));
    }
    let read_only = app
        .token(
            party.user_id,
            ClientType::Msp,
            "patient_attachment:read",
            chrono::Duration::hours(1),
        )
        .await;
    let reader = Cliniko::new(&app, Auth::Basic(read_only));
    assert_eq!(
        reader.get("/v1/patient_attachments").await.status,
        StatusCode::OK
    );
    let reply = reader.get("/v1/patients/7/attachment_presigned_post").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_eq!(reply.body, json!({"message": "invalid scopes"}));
    let reply = reader
        .post("/v1/patient_attachments/1/archive", json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");

    let clinic = Cliniko::basic(&app, &party);
    for path in [
        "/v1/patient_attachments/abc",
        "/v1/patient_attachments/-1",
        "/v1/patient_attachments/99999999999999999999",
        "/v1/patient_attachments/12345",
        "/v1/patient_attachments/12345/content",
        "/v1/patients/x/patient_attachments",
        "/v1/patient_cases/0/patient_attachments",
        "/v1/patients/x/attachment_presigned_post",
    ] {
        let reply = clinic.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}: {reply:?}");
        assert_eq!(reply.body, json!({"message": "Not found"}), "{path}");
    }
    let reply = clinic
        .post("/v1/patient_attachments/12345/archive", json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_legal_entity_sees_404_and_empty_lists() {
    let app = TestApp::spawn().await;
    let owner = app.msp().await;
    let stranger = app.msp().await;
    let clinic = Cliniko::basic(&app, &owner);
    let created = clinic.attachment(7, "a.png", "image/png", PNG).await;
    let id = created["id"].as_str().unwrap();
    clinic.processed(id).await;

    let other = Cliniko::basic(&app, &stranger);
    for path in [
        format!("/v1/patient_attachments/{id}"),
        format!("/v1/patient_attachments/{id}/content"),
    ] {
        assert_eq!(
            other.get(&path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let reply = other
        .post(&format!("/v1/patient_attachments/{id}/archive"), json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    for path in [
        "/v1/patient_attachments",
        "/v1/patients/7/patient_attachments",
    ] {
        let reply = other.list(path).await;
        assert_eq!(reply.body["total_entries"], 0, "{path}");
        assert_eq!(reply.body["patient_attachments"], json!([]));
    }
    // The stranger cannot create from the owner's upload either.
    let upload_url = clinic.upload(7, "b.png", "image/png", PNG).await;
    other
        .create(json!({"patient_id": "7", "upload_url": upload_url}))
        .await
        .assert_invalid("upload_url");
    assert_eq!(clinic.ids("/v1/patient_attachments").await, [id.to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_twice_appends_once_and_the_deprecated_delete_archives_too() {
    let app = TestApp::spawn().await;
    let party = app.msp().await;
    let clinic = Cliniko::basic(&app, &party);
    let first = clinic.attachment(7, "a.png", "image/png", PNG).await;
    let second = clinic.attachment(7, "b.pdf", "application/pdf", PDF).await;
    let (a, b) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );

    for _ in 0..2 {
        let reply = clinic
            .post(&format!("/v1/patient_attachments/{a}/archive"), json!({}))
            .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    }
    let stream = ehealth_domain::patient_attachment::stream_id(a.parse().unwrap());
    let archived = app
        .query(
            "SELECT count(*) FROM events WHERE stream_id = $1 AND event_type = 'archived'",
            &[&stream],
        )
        .await[0]
        .get::<_, i64>(0);
    assert_eq!(archived, 1, "the second archive appends nothing");

    let reply = clinic
        .send_raw(
            Method::DELETE,
            &format!("/v1/patient_attachments/{b}"),
            None,
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    assert_eq!(reply.header("deprecation"), Some("true"));

    // Archived ones are hidden unless a filter names archived_at; they can still be read.
    assert_eq!(
        clinic.ids("/v1/patient_attachments").await,
        Vec::<String>::new()
    );
    let mut shown = clinic
        .ids("/v1/patient_attachments?q[]=archived_at:%3E2000-01-01T00:00:00Z")
        .await;
    shown.sort();
    let mut expected = vec![a.to_owned(), b.to_owned()];
    expected.sort();
    assert_eq!(shown, expected);
    let reply = clinic.get(&format!("/v1/patient_attachments/{a}")).await;
    assert!(reply.body["archived_at"].is_string(), "{reply:?}");

    // Under Prefer: respond-async the archive answers 202 with the job link.
    let reply = clinic
        .send_raw(
            Method::POST,
            &format!("/v1/patient_attachments/{a}/archive"),
            None,
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
}

/// One seeded row: id, patient, patient case, filename, content type, description, size, user number,
/// created at.
type SeedRow<'a> = (
    i64,
    i64,
    Option<i64>,
    &'a str,
    &'a str,
    Option<&'a str>,
    i64,
    i64,
    &'a str,
);

/// Seeds projection rows of `legal_entity_id` directly (the lists read the projection only).
async fn seed(app: &TestApp, legal_entity_id: Uuid, rows: &[SeedRow<'_>]) {
    for (id, patient, case, filename, content_type, description, size, user, created_at) in rows {
        let created: chrono::DateTime<chrono::Utc> = created_at.parse().unwrap();
        app.query(
            "INSERT INTO patient_attachments (id, stream_id, legal_entity_id, patient_id, patient_case_id, \
             user_id, user_number, description, filename, upload_key, object_key, content_type, size, sha256, \
             processed_at, processing_completed, archived_at, created_at, updated_at) VALUES ($1, $2, $3, $4, \
             $5, $6, $7, $8, $9, 'k', 'k', $10, $11, 'h', $12, true, NULL, $12, $12)",
            &[id, &Uuid::new_v4(), &legal_entity_id, patient, case, &Uuid::new_v4(), user, description, filename, content_type, size, &created],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_every_operator_of_every_type_sorting_and_paging() {
    let app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    let le = party.legal_entity_id;
    seed(
        &app,
        le,
        &[
            (
                1,
                7,
                Some(9),
                "scan_one.png",
                "image/png",
                Some("X-ray"),
                100,
                1,
                "2024-01-01T00:00:00Z",
            ),
            (
                2,
                7,
                None,
                "letter.pdf",
                "application/pdf",
                None,
                200,
                2,
                "2024-01-02T00:00:00Z",
            ),
            (
                3,
                8,
                Some(9),
                "SCAN_two.png",
                "image/png",
                Some("50% off"),
                300,
                1,
                "2024-01-03T00:00:00Z",
            ),
            (
                4,
                8,
                None,
                "notes.txt",
                "text/plain",
                Some("a_b"),
                400,
                3,
                "2024-01-04T00:00:00Z",
            ),
        ],
    )
    .await;
    let clinic = Cliniko::basic(&app, &party);
    let ids = |q: &'static str| {
        let clinic = &clinic;
        async move { clinic.ids(&format!("/v1/patient_attachments?{q}")).await }
    };
    let cases: &[(&str, &[&str])] = &[
        // date-time
        ("q[]=created_at:%3E2024-01-02T00:00:00Z", &["3", "4"]),
        (
            "q[]=created_at:%3E%3D2024-01-02T00:00:00Z",
            &["2", "3", "4"],
        ),
        ("q[]=created_at:%3C2024-01-02T00:00:00Z", &["1"]),
        ("q[]=created_at:%3C%3D2024-01-02T00:00:00Z", &["1", "2"]),
        ("q[]=updated_at:%3E2024-01-03T12:00:00%2B00:00", &["4"]),
        ("q[]=processed_at:%3C2024-01-02T00:00:00Z", &["1"]),
        // integers and ids
        ("q[]=size:=200", &["2"]),
        ("q[]=size:!=200", &["1", "3", "4"]),
        ("q[]=size:%3E200", &["3", "4"]),
        ("q[]=size:%3E%3D200", &["2", "3", "4"]),
        ("q[]=size:%3C200", &["1"]),
        ("q[]=size:%3C%3D200", &["1", "2"]),
        ("q[]=id:=1,3,4", &["1", "3", "4"]),
        ("q[]=patient_id:=8", &["3", "4"]),
        ("q[]=user_id:=1", &["1", "3"]),
        // strings
        ("q[]=content_type:=image/png", &["1", "3"]),
        ("q[]=content_type:!=image/png", &["2", "4"]),
        ("q[]=filename:~scan", &["1", "3"]),
        ("q[]=filename:~~%25.p%25", &["1", "2", "3"]),
        ("q[]=description:!=X-ray", &["2", "3", "4"]),
        ("q[]=description:~%25", &["3"]),
        ("q[]=description:~_", &["4"]),
        // several, ANDed; a single q= too
        ("q[]=filename:~scan&q[]=size:%3E100", &["3"]),
        ("q=patient_id:=7", &["1", "2"]),
    ];
    for (query, expected) in cases {
        assert_eq!(ids(query).await, *expected, "{query}");
    }
    // The patient and patient-case lists.
    assert_eq!(
        clinic
            .ids("/v1/patients/8/patient_attachments?q[]=size:%3E300")
            .await,
        ["4"]
    );
    assert_eq!(
        clinic.ids("/v1/patient_cases/9/patient_attachments").await,
        ["1", "3"]
    );

    // Sorting: several keys, per-field direction, the deprecated order.
    assert_eq!(ids("sort=created_at:desc").await, ["4", "3", "2", "1"]);
    assert_eq!(
        ids("sort=content_type,size:desc").await,
        ["2", "3", "1", "4"]
    );
    assert_eq!(ids("order=desc").await, ["4", "3", "2", "1"]);
    assert_eq!(ids("sort=user_id:desc,id").await, ["4", "2", "1", "3"]);

    // Paging and its links.
    let reply = clinic
        .list("/v1/patient_attachments?per_page=1&page=2&sort=id")
        .await;
    assert_eq!(reply.body["total_entries"], 4);
    assert_eq!(reply.body["patient_attachments"][0]["id"], "2");
    let links = &reply.body["links"];
    assert!(
        links["self"].as_str().unwrap().contains("page=2"),
        "{links}"
    );
    let next = path_of(&app, &links["next"]);
    let previous = path_of(&app, &links["previous"]);
    assert_eq!(clinic.ids(&next).await, ["3"]);
    assert_eq!(clinic.ids(&previous).await, ["1"]);
    let last = clinic
        .list("/v1/patient_attachments?per_page=2&page=2")
        .await;
    assert!(last.body["links"].get("next").is_none(), "{last:?}");
    let first = clinic.list("/v1/patient_attachments").await;
    assert!(first.body["links"].get("previous").is_none());
    assert!(first.body["links"].get("next").is_none());
    assert_eq!(
        first.body["patient_attachments"].as_array().unwrap().len(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_list_parameters_are_422_naming_them() {
    let app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    let clinic = Cliniko::basic(&app, &party);
    let cases = [
        ("q[]=colour:=red", "q"),
        ("q[]=nocolon", "q"),
        ("q[]=created_at:=2024-01-01T00:00:00Z", "created_at"),
        ("q[]=created_at:%3Eyesterday", "created_at"),
        ("q[]=size:~1", "size"),
        ("q[]=size:=one", "size"),
        ("q[]=id:%3E1,2", "id"),
        ("q[]=filename:%3Ea", "filename"),
        ("q[]=filename:a", "filename"),
        ("sort=colour", "sort"),
        ("sort=id:up", "sort"),
        ("order=up", "order"),
        ("page=0", "page"),
        ("page=x", "page"),
        ("per_page=101", "per_page"),
        ("per_page=0", "per_page"),
        ("page=1&page=2", "page"),
    ];
    for (query, field) in cases {
        let reply = clinic
            .get(&format!("/v1/patient_attachments?{query}"))
            .await;
        reply.assert_invalid(field);
        let message = reply.body["errors"][field].as_str().unwrap();
        if query.starts_with("q[]=colour") {
            assert!(message.contains("colour"), "names the field: {message}");
        }
        if query.starts_with("q[]=created_at:=") {
            assert!(message.contains('='), "names the operator: {message}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_in_every_filter_value_is_only_data() {
    let app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    seed(
        &app,
        party.legal_entity_id,
        &[(
            1,
            7,
            None,
            "a.png",
            "image/png",
            Some("x"),
            1,
            1,
            "2024-01-01T00:00:00Z",
        )],
    )
    .await;
    let clinic = Cliniko::basic(&app, &party);
    let injection = "x' OR '1'='1'; DROP TABLE events; --";
    let encoded: String = injection.bytes().map(|b| format!("%{b:02X}")).collect();
    for field in ["content_type", "description", "filename"] {
        for op in ["=", "!=", "~", "~~"] {
            let op_encoded: String = op.bytes().map(|b| format!("%{b:02X}")).collect();
            let reply = clinic
                .get(&format!(
                    "/v1/patient_attachments?q[]={field}:{op_encoded}{encoded}"
                ))
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{field}{op}: {reply:?}");
            let expected = if op == "!=" { 1 } else { 0 };
            assert_eq!(reply.body["total_entries"], expected, "{field}{op}");
        }
    }
    for field in [
        "id",
        "patient_id",
        "size",
        "user_id",
        "created_at",
        "updated_at",
        "processed_at",
        "archived_at",
    ] {
        let reply = clinic
            .get(&format!("/v1/patient_attachments?q[]={field}:%3E{encoded}"))
            .await;
        reply.assert_invalid(field);
    }
    let reply = clinic
        .get(&format!("/v1/patient_attachments?sort={encoded}"))
        .await;
    reply.assert_invalid("sort");
    let events = app
        .query("SELECT to_regclass('events') IS NOT NULL", &[])
        .await[0]
        .get::<_, bool>(0);
    assert!(events, "the events table is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_fails_processing_visibly_and_the_attachment_stays_incomplete() {
    use ehealth_worker::handler::{self, Processed};
    let app = TestApp::spawn_without_worker().await;
    let party = app.msp().await;
    let clinic = Cliniko::basic(&app, &party);
    let upload_url = clinic.upload(7, "gone.png", "image/png", PNG).await;
    let body = serde_json::to_vec(&json!({"patient_id": "7", "upload_url": upload_url})).unwrap();
    let reply = clinic
        .send_raw(
            Method::POST,
            "/v1/patient_attachments",
            Some(("application/json", body)),
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    let job_id: Uuid = reply.body["data"]["links"][0]["href"]
        .as_str()
        .unwrap()
        .trim_start_matches("/Jobs/")
        .parse()
        .unwrap();
    let publisher = ehealth_infra::amqp::Publisher::new(&app.config);

    // The create job records the upload and chains the processing job in its transaction.
    let created = handler::process_job(&app.pool, &publisher, &app.storage, job_id)
        .await
        .unwrap();
    let Processed::Finished(outcome) = created else {
        panic!("{created:?}")
    };
    assert_eq!(outcome.status_code, 201, "{outcome:?}");
    let id = outcome.response["id"].as_str().unwrap().to_owned();
    let process_job: Uuid = app
        .query(
            "SELECT id FROM jobs WHERE type = 'patient_attachment.process' AND status = 'pending'",
            &[],
        )
        .await[0]
        .get(0);

    // The object disappears before processing reads it.
    let temp_key = upload_url
        .split_once(&format!("/{}/", app.storage.attachments_bucket))
        .unwrap()
        .1
        .to_owned();
    app.storage
        .delete(&app.storage.attachments_bucket, &temp_key)
        .await
        .unwrap();
    let processed = handler::process_job(&app.pool, &publisher, &app.storage, process_job)
        .await
        .unwrap();
    let Processed::Finished(outcome) = processed else {
        panic!("{processed:?}")
    };
    assert_eq!(outcome.status_code, 422, "{outcome:?}");
    assert_eq!(
        outcome.response["invalid"][0]["rules"][0]["description"],
        ehealth_worker::patient_attachments::OBJECT_MISSING
    );
    let job = app
        .query("SELECT status FROM jobs WHERE id = $1", &[&process_job])
        .await[0]
        .get::<_, String>(0);
    assert_eq!(job, "failed", "the job says why");

    let attachment = clinic.get(&format!("/v1/patient_attachments/{id}")).await;
    assert_eq!(
        attachment.body["processing_completed"], false,
        "{attachment:?}"
    );
    assert_eq!(attachment.body["processed_at"], Value::Null);
    let content = clinic
        .get(&format!("/v1/patient_attachments/{id}/content"))
        .await;
    assert_eq!(content.status, StatusCode::NOT_FOUND, "{content:?}");
    assert_eq!(
        event_types(&app, &id).await,
        ["created", "processing_failed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_gives_every_attachment_the_same_row_and_id() {
    let app = TestApp::spawn().await;
    let party = app.msp().await;
    let clinic = Cliniko::basic(&app, &party);
    let first = clinic.attachment(7, "a.png", "image/png", PNG).await;
    let second = clinic.attachment(8, "b.pdf", "application/pdf", PDF).await;
    let (a, b) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    clinic.processed(a).await;
    clinic.processed(b).await;
    let reply = clinic
        .post(&format!("/v1/patient_attachments/{b}/archive"), json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");

    let mut client = app.pool.get().await.unwrap();
    let live = ehealth_infra::projection::dump_table(&client, "patient_attachments")
        .await
        .unwrap();
    assert_eq!(live.len(), 2);
    ehealth_infra::projection::rebuild_all_in_chunks(&mut client, 1)
        .await
        .unwrap();
    let rebuilt = ehealth_infra::projection::dump_table(&client, "patient_attachments")
        .await
        .unwrap();
    assert_eq!(rebuilt, live);
}
