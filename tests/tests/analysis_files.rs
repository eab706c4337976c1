//! Spec 000, analysis-result files, through HTTP, the real worker, RabbitMQ, Postgres and the embedded S3
//! endpoint with SigV4 enforced. Finalize, `isSend` and delete answer as the document does (200) by waiting
//! for their job; 202 with the job link past `SYNC_WAIT_SECONDS` or under `Prefer: respond-async`.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use ehealth_domain::{
    analysis_file::{FILE_EXISTS, FILE_NOT_FOUND, MAX_FILE_NAME_BYTES, NOT_UPLOADED},
    ClientType,
};
use ehealth_infra::{identity, projection};
use ehealth_tests::{eventually, http::Reply, wait_for, Api, Party, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// The files of one analysis, as one caller sees them.
struct Files<'a> {
    api: Api<'a>,
    base: String,
}

impl<'a> Files<'a> {
    fn new(app: &'a TestApp, party: &Party, patient_id: Uuid, analysis_id: Uuid) -> Self {
        Self {
            api: app.api(&party.token).without_api_key(),
            base: format!("/api/erp/v1/patients/{patient_id}/analysis/{analysis_id}/files"),
        }
    }

    async fn initialize(&self, name: &str) -> Reply {
        let path = format!("{}/initialize/{name}", self.base);
        self.api.request(Method::POST, &path, None, &[]).await
    }

    async fn finalize(&self, name: &str) -> Reply {
        self.finalize_with(name, &[]).await
    }

    async fn finalize_with(&self, name: &str, headers: &[(&str, &str)]) -> Reply {
        let path = format!("{}/{name}", self.base);
        self.api.request(Method::POST, &path, None, headers).await
    }

    async fn list(&self) -> Reply {
        self.api.get(&self.base).await
    }

    async fn set_send(&self, id: &str, body: Value) -> Reply {
        self.set_send_with(id, body, &[]).await
    }

    async fn set_send_with(&self, id: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
        let path = format!("{}/{id}", self.base);
        self.api
            .request(Method::PATCH, &path, Some(body), headers)
            .await
    }

    /// Sets `isSend` and asserts the document's answer: 200 with the file as it now is.
    async fn set_send_processed(&self, id: &str, is_send: bool) {
        let reply = self.set_send(id, json!({ "isSend": is_send })).await;
        reply.assert_file();
        assert_eq!(reply.body["data"]["id"], id, "{reply:?}");
        assert_eq!(reply.body["data"]["isSend"], is_send, "{reply:?}");
    }

    /// `isSend` of one file as the list shows it.
    async fn is_send(&self, id: &str) -> Value {
        let list = self.list().await;
        let files = list.body["data"].as_array().unwrap();
        files
            .iter()
            .find(|file| file["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {list:?}"))["isSend"]
            .clone()
    }

    async fn delete(&self, id: &str) -> Reply {
        self.delete_with(id, &[]).await
    }

    async fn delete_with(&self, id: &str, headers: &[(&str, &str)]) -> Reply {
        let path = format!("{}/{id}", self.base);
        self.api.request(Method::DELETE, &path, None, headers).await
    }

    /// Initialize, PUT `bytes`, finalize: finalize's answer.
    async fn upload(&self, name: &str, bytes: &[u8]) -> Reply {
        self.put_upload(name, bytes).await;
        self.finalize(name).await
    }

    /// Initialize and PUT `bytes`: ready to finalize.
    async fn put_upload(&self, name: &str, bytes: &[u8]) {
        let url = self.upload_url(name).await;
        let put = put(&url, bytes.to_vec()).await;
        assert!(put.status().is_success(), "{put:?}");
    }

    async fn upload_url(&self, name: &str) -> String {
        let reply = self.initialize(name).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert!(reply.body["data"]["expiresAt"].is_string(), "{reply:?}");
        reply.body["data"]["url"].as_str().unwrap().to_owned()
    }

    /// The file id of a 200 answer with the file.
    #[track_caller]
    fn file_id(reply: &Reply) -> String {
        reply.assert_file();
        reply.body["data"]["id"].as_str().unwrap().to_owned()
    }
}

/// What the document's synchronous answers look like.
trait FileAnswer {
    /// 200 with a file, and `Vary: Prefer` (the answer depends on it).
    fn assert_file(&self);
    /// 202 with the job link, `Preference-Applied` as given (or none).
    fn assert_accepted(&self, applied: Option<&str>);
}

impl FileAnswer for Reply {
    #[track_caller]
    fn assert_file(&self) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert_eq!(self.body["meta"]["code"], 200, "{self:?}");
        assert!(self.body["data"]["id"].is_string(), "{self:?}");
        assert!(self.body["data"]["fileName"].is_string(), "{self:?}");
        assert!(varies_on_prefer(self), "{self:?}");
    }

    #[track_caller]
    fn assert_accepted(&self, applied: Option<&str>) {
        assert_eq!(self.status, StatusCode::ACCEPTED, "{self:?}");
        assert_eq!(self.body["data"]["status"], "pending", "{self:?}");
        assert!(self.job_href().starts_with("/Jobs/"), "{self:?}");
        assert_eq!(
            self.headers
                .get("preference-applied")
                .map(|v| v.to_str().unwrap()),
            applied,
            "{self:?}"
        );
        assert!(varies_on_prefer(self), "{self:?}");
    }
}

fn varies_on_prefer(reply: &Reply) -> bool {
    reply
        .headers
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("prefer"))
}

async fn put(url: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .put(url)
        .header("content-type", "application/pdf")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn download(url: &str) -> reqwest::Response {
    reqwest::get(url).await.unwrap()
}

async fn erp(app: &TestApp) -> Party {
    app.party("MSP", ClientType::Msp, "gambit:erp job:read")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_uploaded_in_three_steps_and_downloaded_with_the_same_bytes() {
    let app = TestApp::spawn().await;
    let party = erp(&app).await;
    let (patient, analysis) = (Uuid::new_v4(), Uuid::new_v4());
    let files = Files::new(&app, &party, patient, analysis);
    let bytes: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();

    // The document answers finalize 200: the route waits for its job and answers the file.
    let finalized = files.upload("результат аналізу (1).pdf", &bytes).await;
    let id = Files::file_id(&finalized);
    assert_eq!(finalized.body["data"]["isSend"], false, "{finalized:?}");
    assert_eq!(
        finalized.headers["location"],
        format!("{}/{id}", files.base).as_str()
    );
    assert!(
        finalized.headers.get("preference-applied").is_none(),
        "no preference was sent: {finalized:?}"
    );

    let list = files.list().await;
    assert_eq!(list.status, StatusCode::OK, "{list:?}");
    let data = list.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{list:?}");
    let file = &data[0];
    assert_eq!(file["id"], id);
    assert_eq!(file["fileName"], "результат аналізу (1).pdf");
    assert_eq!(file["size"], bytes.len());
    assert_eq!(file["contentType"], "application/pdf");
    assert_eq!(file["isSend"], false);
    assert!(file["createdAt"].is_string() && file["updatedAt"].is_string());
    let got = download(file["url"].as_str().unwrap()).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let one = files.api.get(&format!("{}/{id}", files.base)).await;
    assert_eq!(one.status, StatusCode::OK, "{one:?}");
    assert_eq!(one.body["data"]["fileName"], "результат аналізу (1).pdf");
    let without_link = |mut file: Value| {
        file.as_object_mut()
            .unwrap()
            .retain(|k, _| !k.starts_with("url"));
        file
    };
    assert_eq!(
        without_link(one.body["data"].clone()),
        without_link(finalized.body["data"].clone()),
        "finalize answered the file as GET shows it"
    );

    // The projection is exactly what a rebuild from the events writes.
    let live = {
        let client = app.pool.get().await.unwrap();
        projection::dump_table(&client, "analysis_files")
            .await
            .unwrap()
    };
    let mut client = app.pool.get().await.unwrap();
    projection::rebuild_all(&mut client).await.unwrap();
    assert_eq!(
        projection::dump_table(&client, "analysis_files")
            .await
            .unwrap(),
        live
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_under_prefer_wait_answers_200_with_the_file_and_names_the_preference() {
    let app = TestApp::spawn().await;
    let party = erp(&app).await;
    let files = Files::new(&app, &party, Uuid::new_v4(), Uuid::new_v4());
    // Initializing again before finalizing is fine (200 every time) and gives a fresh link: at the latest
    // once the clock reaches the next second, to which links are signed.
    let first = files.upload_url("a.txt").await;
    let url = wait_for(Duration::from_secs(5), || async {
        Some(files.upload_url("a.txt").await).filter(|url| *url != first)
    })
    .await
    .expect("a fresh link");
    assert!(put(&url, b"hello".to_vec()).await.status().is_success());
    let path = format!("{}/a.txt", files.base);
    let reply = files
        .api
        .request(Method::POST, &path, None, &[("prefer", "wait=10")])
        .await;
    reply.assert_file();
    assert_eq!(reply.headers["preference-applied"], "wait=10");
    assert_eq!(reply.body["data"]["fileName"], "a.txt");
    assert_eq!(reply.body["data"]["size"], 5);
    let listed = files.list().await.body["data"][0].clone();
    assert_eq!(
        listed["createdAt"], reply.body["data"]["createdAt"],
        "the job's answer and the projection agree"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_command_answers_202_with_its_job_under_prefer_respond_async() {
    let app = TestApp::spawn().await;
    let party = erp(&app).await;
    let files = Files::new(&app, &party, Uuid::new_v4(), Uuid::new_v4());
    let async_ = [("prefer", "respond-async")];

    files.put_upload("a.pdf", b"bytes").await;
    let finalized = files.finalize_with("a.pdf", &async_).await;
    finalized.assert_accepted(Some("respond-async"));
    let job = files.api.poll_job(&finalized.job_href()).await;
    assert_eq!(job.status(), "processed", "{job:?}");
    assert_eq!(job.status_code(), 200, "{job:?}");
    let id = job
        .location
        .clone()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();

    // Unknown preferences are ignored, in one header or several.
    let marked = files
        .set_send_with(
            &id,
            json!({ "isSend": true }),
            &[
                ("prefer", "handling=lenient"),
                ("prefer", "return=minimal, respond-async"),
            ],
        )
        .await;
    marked.assert_accepted(Some("respond-async"));
    let job = files.api.poll_job(&marked.job_href()).await;
    assert_eq!(
        (job.status(), job.status_code()),
        ("processed", 200),
        "{job:?}"
    );
    assert_eq!(files.is_send(&id).await, json!(true));

    // `respond-async, wait=N`: 202 only if the job takes longer than N; this one does not.
    let unmarked = files
        .set_send_with(
            &id,
            json!({ "isSend": false }),
            &[("prefer", "respond-async, wait=10")],
        )
        .await;
    unmarked.assert_file();
    assert_eq!(unmarked.body["data"]["isSend"], false, "{unmarked:?}");
    assert_eq!(unmarked.headers["preference-applied"], "wait=10");

    let deleted = files.delete_with(&id, &async_).await;
    deleted.assert_accepted(Some("respond-async"));
    let job = files.api.poll_job(&deleted.job_href()).await;
    assert_eq!(
        (job.status(), job.status_code()),
        ("processed", 200),
        "{job:?}"
    );
    assert_eq!(job.data["response_data"]["id"], id, "{job:?}");
    assert_eq!(files.list().await.body["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_sync_wait_seconds_the_file_commands_answer_202_with_their_job() {
    let mut app = TestApp::spawn_without_worker_with(|config| config.sync_wait_seconds = 1).await;
    let party = erp(&app).await;
    let (patient, analysis) = (Uuid::new_v4(), Uuid::new_v4());
    let wait = Duration::from_secs(app.config.sync_wait_seconds);
    // No worker: a command waits SYNC_WAIT_SECONDS for its job, then answers 202 with the job link.
    let timed = |reply: Reply, started: Instant| {
        assert!(
            started.elapsed() >= wait,
            "answered after {:?}",
            started.elapsed()
        );
        reply.assert_accepted(None);
        reply.job_href()
    };

    let finalized = {
        let files = Files::new(&app, &party, patient, analysis);
        let mut hrefs = Vec::new();
        for name in ["a.pdf", "b.pdf"] {
            files.put_upload(name, b"bytes").await;
            let started = Instant::now();
            hrefs.push(timed(files.finalize(name).await, started));
        }
        hrefs
    };
    app.start_worker();
    let mut ids = Vec::new();
    {
        let files = Files::new(&app, &party, patient, analysis);
        for href in &finalized {
            let job = files.api.poll_job(href).await;
            assert_eq!(
                (job.status(), job.status_code()),
                ("processed", 200),
                "{job:?}"
            );
            ids.push(
                job.location
                    .clone()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
    }

    app.stop_worker().await;
    // Two files, so the two jobs do not depend on the order the worker runs them in.
    let (marked, deleted) = {
        let files = Files::new(&app, &party, patient, analysis);
        let started = Instant::now();
        let marked = timed(
            files.set_send(&ids[0], json!({ "isSend": true })).await,
            started,
        );
        let started = Instant::now();
        (marked, timed(files.delete(&ids[1]).await, started))
    };
    app.start_worker();
    let files = Files::new(&app, &party, patient, analysis);
    for href in [marked, deleted] {
        let job = files.api.poll_job(&href).await;
        assert_eq!(
            (job.status(), job.status_code()),
            ("processed", 200),
            "{job:?}"
        );
    }
    let list = files.list().await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1, "{list:?}");
    assert_eq!(list.body["data"][0]["id"], ids[0].as_str());
    assert_eq!(list.body["data"][0]["isSend"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_refuses_tampered_and_expired_links() {
    let app = TestApp::spawn().await;
    let party = erp(&app).await;
    let files = Files::new(&app, &party, Uuid::new_v4(), Uuid::new_v4());

    let url = files.upload_url("a.pdf").await;
    // Another key: the link's upload id with its last digit changed.
    let (path, query) = url.split_once('?').unwrap();
    let last = path.chars().last().unwrap();
    let other = if last == '0' { '1' } else { '0' };
    let tampered_key = format!("{}{other}?{query}", &path[..path.len() - 1]);
    assert_eq!(
        put(&tampered_key, b"x".to_vec()).await.status(),
        StatusCode::FORBIDDEN
    );
    let signature = url.split("X-Amz-Signature=").nth(1).unwrap()[..64].to_owned();
    let flipped = format!(
        "{}{}",
        if signature.starts_with('0') { '1' } else { '0' },
        &signature[1..]
    );
    let tampered_signature = url.replace(&signature, &flipped);
    assert_eq!(
        put(&tampered_signature, b"x".to_vec()).await.status(),
        StatusCode::FORBIDDEN
    );

    let id = Files::file_id(&files.upload("a.pdf", b"content").await);
    let key = {
        let rows = app
            .query(
                "SELECT object_key FROM analysis_files WHERE id = $1",
                &[&id.parse::<Uuid>().unwrap()],
            )
            .await;
        rows[0].get::<_, String>(0)
    };
    // Signed at a whole second (`X-Amz-Date`), so a 1 s link may have only a few milliseconds left when the
    // download below starts: 2 s leave it at least one.
    let short = app
        .storage
        .presign_get(&app.storage.files_bucket, &key, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(download(&short.url).await.status(), StatusCode::OK);
    // The same link, unchanged, stops working once its time is over (and the object is still there).
    assert!(
        eventually(Duration::from_secs(10), || async {
            download(&short.url).await.status() == StatusCode::FORBIDDEN
        })
        .await,
        "an expired link is refused"
    );
    assert!(app
        .storage
        .head(&app.storage.files_bucket, &key)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_without_an_upload_answers_the_jobs_409() {
    let app = TestApp::spawn().await;
    let party = erp(&app).await;
    let files = Files::new(&app, &party, Uuid::new_v4(), Uuid::new_v4());
    files.upload_url("never.pdf").await;
    // The job's own error, as a synchronous service would have answered it.
    let reply = files.finalize("never.pdf").await;
    reply.assert_error(409, NOT_UPLOADED);
    assert_eq!(reply.body["meta"]["code"], 409, "{reply:?}");
    assert_eq!(reply.body["error"]["type"], "request_conflict", "{reply:?}");
    assert!(varies_on_prefer(&reply), "{reply:?}");
    // The same failure under respond-async: 202, and the job says it.
    let accepted = files
        .finalize_with("never.pdf", &[("prefer", "respond-async")])
        .await;
    accepted.assert_accepted(Some("respond-async"));
    files
        .api
        .poll_job(&accepted.job_href())
        .await
        .assert_failed(409, NOT_UPLOADED);
    assert_eq!(files.list().await.body["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_exists_is_409_at_initialize_and_at_finalize() {
    let app = TestApp::spawn().await;
    let party = erp(&app).await;
    let files = Files::new(&app, &party, Uuid::new_v4(), Uuid::new_v4());
    files.upload("a.pdf", b"one").await.assert_file();
    files
        .initialize("a.pdf")
        .await
        .assert_error(409, FILE_EXISTS);
    files.finalize("a.pdf").await.assert_error(409, FILE_EXISTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_finalizes_of_one_name_make_exactly_one_file() {
    let mut app = TestApp::spawn_without_worker().await;
    let party = erp(&app).await;
    let colleague = {
        let client = app.pool.get().await.unwrap();
        let user = identity::create_user(&client, party.legal_entity_id, None, None, true)
            .await
            .unwrap();
        app.token(
            user,
            ClientType::Msp,
            "gambit:erp job:read",
            chrono::Duration::hours(1),
        )
        .await
    };
    let (patient, analysis) = (Uuid::new_v4(), Uuid::new_v4());
    let (first, second) = {
        let files = Files::new(&app, &party, patient, analysis);
        files.put_upload("a.pdf", b"bytes").await;
        let async_ = [("prefer", "respond-async")];
        let first = files.finalize_with("a.pdf", &async_).await;
        let second = Files {
            api: app.api(&colleague).without_api_key(),
            base: files.base.clone(),
        }
        .finalize_with("a.pdf", &async_)
        .await;
        first.assert_accepted(Some("respond-async"));
        second.assert_accepted(Some("respond-async"));
        (first.job_href(), second.job_href())
    };
    assert_ne!(first, second, "two callers, two jobs");
    app.start_worker();
    let files = Files::new(&app, &party, patient, analysis);
    let results = [
        files.api.poll_job(&first).await,
        files.api.poll_job(&second).await,
    ];
    let processed = results.iter().filter(|r| r.status() == "processed").count();
    assert_eq!(processed, 1, "{results:?}");
    let failed = results.iter().find(|r| r.status() == "failed").unwrap();
    failed.assert_failed(409, FILE_EXISTS);
    assert_eq!(files.list().await.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_file_names_are_422() {
    let app = TestApp::spawn().await;
    let party = erp(&app).await;
    let files = Files::new(&app, &party, Uuid::new_v4(), Uuid::new_v4());
    let long = "a".repeat(MAX_FILE_NAME_BYTES + 1);
    for name in [
        "a%2Fb.pdf",
        "a%5Cb.pdf",
        "...",
        "x..y",
        "tab%09name",
        "nul%00",
        &long,
    ] {
        let reply = files.initialize(name).await;
        assert_eq!(reply.status.as_u16(), 422, "{name}: {reply:?}");
        assert_eq!(reply.body["error"]["type"], "validation_failed");
        assert_eq!(reply.body["error"]["invalid"][0]["entry"], "$.fileName");
        let reply = files.finalize(name).await;
        assert_eq!(reply.status.as_u16(), 422, "{name}: {reply:?}");
    }
    // MAX_FILE_NAME_BYTES (80) is the longest name.
    assert_eq!(
        files
            .initialize(&"a".repeat(MAX_FILE_NAME_BYTES))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_body_that_is_not_exactly_is_send_is_422() {
    let app = TestApp::spawn().await;
    let party = erp(&app).await;
    let files = Files::new(&app, &party, Uuid::new_v4(), Uuid::new_v4());
    let id = Files::file_id(&files.upload("a.pdf", b"x").await);
    for body in [
        json!({}),
        json!({ "isSend": "yes" }),
        json!({ "isSend": null }),
        json!({ "isSend": true, "extra": 1 }),
        json!({ "is_send": true }),
        json!([true]),
    ] {
        let reply = files.set_send(&id, body.clone()).await;
        assert_eq!(reply.status.as_u16(), 422, "{body}: {reply:?}");
        assert_eq!(reply.body["error"]["type"], "validation_failed");
    }
    let path = format!("{}/{id}", files.base);
    for raw in ["", "not json"] {
        let reply = reqwest::Client::new()
            .patch(format!("{}{path}", app.address))
            .bearer_auth(&party.token)
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), 422, "{raw:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_send_true_publishes_exactly_one_integration_event() {
    let app = TestApp::spawn().await;
    let party = erp(&app).await;
    let (patient, analysis) = (Uuid::new_v4(), Uuid::new_v4());
    let files = Files::new(&app, &party, patient, analysis);
    let id = Files::file_id(&files.upload("a.pdf", b"send me").await);
    // A second file whose announcements are the positive signal that nothing was published before them.
    let sentinel = Files::file_id(&files.upload("sentinel.pdf", b"s").await);
    let mut events = app.subscribe("analysis_file.send_requested").await;

    files.set_send_processed(&id, true).await;
    let event = events
        .next(Duration::from_secs(10))
        .await
        .expect("an integration event");
    assert_eq!(event["event_type"], "analysis_file.send_requested");
    assert_eq!(event["file_id"], id);
    assert_eq!(event["patient_id"], patient.to_string());
    assert_eq!(event["analysis_id"], analysis.to_string());
    assert!(event["download_url_expires_at"].is_string());
    let got = download(event["download_url"].as_str().unwrap()).await;
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"send me");

    // A second isSend=true changes nothing and publishes nothing: the next event is the sentinel's.
    files.set_send_processed(&id, true).await;
    assert_eq!(files.is_send(&id).await, json!(true));
    files.set_send_processed(&sentinel, true).await;
    let next = events
        .next(Duration::from_secs(10))
        .await
        .expect("the sentinel's event");
    assert_eq!(next["file_id"], sentinel, "{next}");

    // Back to false: recorded, not announced (for either file); the sentinel's next announcement comes first.
    files.set_send_processed(&id, false).await;
    assert_eq!(files.is_send(&id).await, json!(false));
    files.set_send_processed(&sentinel, false).await;
    files.set_send_processed(&sentinel, true).await;
    let next = events
        .next(Duration::from_secs(10))
        .await
        .expect("the sentinel's event");
    assert_eq!(next["file_id"], sentinel, "{next}");
    events.close().await;

    // Nothing is left for the relay to publish later: one outbox row per announcement, all published and
    // marked by the worker that wrote them (its marks are batched in the background: within moments, well
    // before the relay would take a row, `relay::MIN_AGE_MS`).
    let expected = [
        (id.clone(), true),
        (sentinel.clone(), true),
        (sentinel, true),
    ];
    let announced = || async {
        let rows = app
            .query(
                "SELECT payload->>'file_id', published_at IS NOT NULL FROM outbox \
                 WHERE routing_key = 'analysis_file.send_requested' ORDER BY id",
                &[],
            )
            .await;
        rows.iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect::<Vec<(String, bool)>>()
    };
    let marked = app
        .eventually(Duration::from_millis(2500), || async {
            announced().await == expected
        })
        .await;
    assert!(marked, "{:?}", announced().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_file_and_its_object() {
    let app = TestApp::spawn().await;
    let party = erp(&app).await;
    let files = Files::new(&app, &party, Uuid::new_v4(), Uuid::new_v4());
    let id = Files::file_id(&files.upload("a.pdf", b"bytes").await);
    let url = files.list().await.body["data"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(download(&url).await.status(), StatusCode::OK);

    // The document answers delete 200: the file as it was.
    let deleted = files.delete(&id).await;
    assert_eq!(Files::file_id(&deleted), id);
    assert_eq!(deleted.body["data"]["fileName"], "a.pdf");
    assert_eq!(files.list().await.body["data"], json!([]));
    // The job's transaction scheduled the object's deletion; after the commit it is carried out, and a
    // scheduled deletion is removed only once its object is gone (it stays for the relay otherwise). So:
    // once nothing is scheduled any more, the object is gone, at once.
    assert!(
        app.eventually(Duration::from_secs(10), || async {
            app.query("SELECT 1 FROM object_deletions", &[])
                .await
                .is_empty()
        })
        .await,
        "the scheduled deletion is carried out"
    );
    assert_eq!(
        download(&url).await.status(),
        StatusCode::NOT_FOUND,
        "the object is deleted from storage"
    );
    // The history stays; the name is free again and goes to a new object.
    assert_eq!(
        app.query(
            "SELECT 1 FROM events WHERE stream_type = 'analysis_files'",
            &[]
        )
        .await
        .len(),
        2
    );
    let again = files.upload("a.pdf", b"new bytes").await;
    assert_ne!(Files::file_id(&again), id);

    files.delete(&id).await.assert_error(404, FILE_NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_limit_fails_422_and_is_removed() {
    let app = TestApp::spawn().await;
    let party = erp(&app).await;
    let files = Files::new(&app, &party, Uuid::new_v4(), Uuid::new_v4());
    let url = files.upload_url("big.bin").await;
    let too_big = vec![7u8; usize::try_from(app.config.max_upload_bytes).unwrap() + 1];
    assert!(put(&url, too_big).await.status().is_success());
    let reply = files.finalize("big.bin").await;
    assert_eq!(reply.status.as_u16(), 422, "{reply:?}");
    assert_eq!(
        reply.body["error"]["type"], "validation_failed",
        "{reply:?}"
    );
    assert_eq!(reply.body["error"]["invalid"][0]["entry"], "$.file");
    let object_url = url.split('?').next().unwrap();
    let key = object_url
        .split(&format!("/{}/", app.config.s3_bucket_files))
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        app.eventually(Duration::from_secs(10), || async {
            app.storage
                .head(&app.storage.files_bucket, &key)
                .await
                .unwrap()
                .is_none()
        })
        .await,
        "the refused object is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_gambit_scope_every_call_is_403() {
    let app = TestApp::spawn().await;
    let party = app
        .party("MSP", ClientType::Msp, "service_request:read job:read")
        .await;
    let files = Files::new(&app, &party, Uuid::new_v4(), Uuid::new_v4());
    let id = Uuid::new_v4().to_string();
    for reply in [
        files.initialize("a.pdf").await,
        files.finalize("a.pdf").await,
        files.list().await,
        files.set_send(&id, json!({ "isSend": true })).await,
        files.delete(&id).await,
    ] {
        reply.assert_error(403, "invalid scopes");
    }
    let anonymous = app.api("not-a-token").without_api_key();
    anonymous
        .get(&files.base)
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_legal_entity_sees_nothing_of_a_clinics_files() {
    let app = TestApp::spawn().await;
    let (owner, other) = (erp(&app).await, erp(&app).await);
    let (patient, analysis) = (Uuid::new_v4(), Uuid::new_v4());
    let mine = Files::new(&app, &owner, patient, analysis);
    let theirs = Files::new(&app, &other, patient, analysis);
    let id = Files::file_id(&mine.upload("a.pdf", b"private").await);

    assert_eq!(theirs.list().await.body["data"], json!([]));
    theirs
        .api
        .get(&format!("{}/{id}", theirs.base))
        .await
        .assert_error(404, FILE_NOT_FOUND);
    theirs
        .set_send(&id, json!({ "isSend": true }))
        .await
        .assert_error(404, FILE_NOT_FOUND);
    theirs.delete(&id).await.assert_error(404, FILE_NOT_FOUND);
    // Their own namespace: the same name is free for them.
    assert_eq!(theirs.initialize("a.pdf").await.status, StatusCode::OK);
    // And the owner's file is untouched.
    let list = mine.list().await;
    assert_eq!(list.body["data"][0]["isSend"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deletion_that_fails_is_kept_and_retried_until_it_succeeds() {
    use ehealth_infra::storage::{deletions, Storage};
    let app = TestApp::spawn_without_worker().await;
    let bucket = app.storage.files_bucket.clone();
    let url = app
        .storage
        .presign_put(&bucket, "k/0/x.bin", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(put(&url.url, b"x".to_vec()).await.status().is_success());
    let id = {
        let client = app.pool.get().await.unwrap();
        deletions::schedule(&client, &bucket, "k/0/x.bin")
            .await
            .unwrap()
    };

    let unreachable = Storage::new(&ehealth_infra::Config {
        s3_endpoint: Some("http://127.0.0.1:9".to_owned()),
        ..app.config.clone()
    });
    assert_eq!(
        deletions::run(&app.pool, &unreachable, Some(&[id]))
            .await
            .unwrap(),
        0
    );
    let row = &app
        .query(
            "SELECT attempts, last_error, next_attempt_at > now() FROM object_deletions WHERE id = $1",
            &[&id],
        )
        .await[0];
    assert_eq!(row.get::<_, i32>(0), 1);
    assert!(row.get::<_, Option<String>>(1).is_some());
    assert!(row.get::<_, bool>(2), "the retry waits");
    assert!(app
        .storage
        .head(&bucket, "k/0/x.bin")
        .await
        .unwrap()
        .is_some());

    // Not due yet: a sweep leaves it; once due, the sweep deletes the object and the row.
    assert_eq!(
        deletions::run(&app.pool, &app.storage, None).await.unwrap(),
        0
    );
    app.query(
        "UPDATE object_deletions SET next_attempt_at = now() WHERE id = $1",
        &[&id],
    )
    .await;
    assert_eq!(
        deletions::run(&app.pool, &app.storage, None).await.unwrap(),
        1
    );
    assert!(app
        .storage
        .head(&bucket, "k/0/x.bin")
        .await
        .unwrap()
        .is_none());
    assert!(app
        .query("SELECT 1 FROM object_deletions", &[])
        .await
        .is_empty());
    // Deleting what is already gone succeeds.
    app.storage.delete(&bucket, "k/0/x.bin").await.unwrap();
}
