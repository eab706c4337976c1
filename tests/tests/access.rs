//! Who may do what to a service request, every cell of the README's access table, through HTTP and the real
//! worker: the requester (the legal entity that created it), the holder (the legal entity that used it), any
//! other legal entity, and NHS. Also: a job's answer never shows a resource its reader could not GET, a stream
//! of another type is "not found", and an inactive legal entity cannot read its jobs.

#![allow(clippy::unwrap_used)]

use ehealth_domain::{
    service_request::{ACTION_NOT_ALLOWED, NOT_ALLOWED_TO_MODIFY, NOT_FOUND},
    ClientType,
};
use ehealth_infra::identity;
use ehealth_tests::{http::Reply, Api, Party, TestApp, ALL_SCOPES};
use reqwest::{Method, StatusCode};
use uuid::Uuid;

/// What a cell expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// 202, and the job is processed.
    Processed,
    /// 202, and the job fails with this status and message.
    Fails(u64, &'static str),
    /// Answered at once with this status and message.
    Refused(u16, &'static str),
}

use Expect::{Fails, Processed, Refused};

struct Parties {
    requester: Party,
    holder: Party,
    other: Party,
    nhs: Party,
}

impl Parties {
    async fn new(app: &TestApp) -> Self {
        Self {
            requester: app.msp().await,
            holder: app.msp().await,
            other: app.msp().await,
            nhs: app.party("NHS", ClientType::Nhs, ALL_SCOPES).await,
        }
    }

    fn all(&self) -> [(&'static str, &Party); 4] {
        [
            ("requester", &self.requester),
            ("holder", &self.holder),
            ("other", &self.other),
            ("nhs", &self.nhs),
        ]
    }
}

async fn expect(api: &Api<'_>, cell: &str, reply: Reply, expected: Expect) {
    match expected {
        Processed => {
            let job = api.finished(reply).await;
            assert_eq!(job.status(), "processed", "{cell}: {job:?}");
        }
        Fails(status, message) => api.finished(reply).await.assert_failed(status, message),
        Refused(status, message) => reply.assert_error(status, message),
    }
}

/// A request created by the requester with a program; `used` → used by the holder (in queue);
/// `in_progress` → then processed by the holder.
async fn request(app: &TestApp, parties: &Parties, used: bool, in_progress: bool) -> (Uuid, Uuid) {
    let patient = Uuid::new_v4();
    let id = app
        .api(&parties.requester.token)
        .created_service_request(patient, true)
        .await;
    let holder = app.api(&parties.holder.token);
    if used {
        let reply = holder
            .use_request(id, parties.holder.legal_entity_id, None)
            .await;
        holder.finished(reply).await.assert_processed();
    }
    if in_progress {
        holder
            .finished(holder.action(id, "process").await)
            .await
            .assert_processed();
    }
    (patient, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_of_the_service_request_access_table() {
    let app = TestApp::spawn().await;
    let parties = Parties::new(&app).await;
    let nhs_may_not = Refused(409, ACTION_NOT_ALLOWED);
    // (action, needs used, needs in progress, [requester, holder, other, nhs])
    let table: [(&str, bool, bool, [Expect; 4]); 6] = [
        (
            "use",
            false,
            false,
            [Processed, Processed, Processed, nhs_may_not],
        ),
        (
            "release",
            true,
            false,
            [
                Processed,
                Processed,
                Fails(409, ACTION_NOT_ALLOWED),
                nhs_may_not,
            ],
        ),
        (
            "process",
            true,
            false,
            [
                Fails(403, NOT_ALLOWED_TO_MODIFY),
                Processed,
                Fails(403, NOT_ALLOWED_TO_MODIFY),
                nhs_may_not,
            ],
        ),
        (
            "complete",
            true,
            true,
            [
                Fails(403, NOT_ALLOWED_TO_MODIFY),
                Processed,
                Fails(403, NOT_ALLOWED_TO_MODIFY),
                nhs_may_not,
            ],
        ),
        (
            "recall",
            true,
            false,
            [
                Processed,
                Fails(403, NOT_ALLOWED_TO_MODIFY),
                Fails(403, NOT_ALLOWED_TO_MODIFY),
                Fails(403, NOT_ALLOWED_TO_MODIFY),
            ],
        ),
        (
            "cancel",
            true,
            false,
            [
                Processed,
                Fails(403, NOT_ALLOWED_TO_MODIFY),
                Fails(403, NOT_ALLOWED_TO_MODIFY),
                Fails(403, NOT_ALLOWED_TO_MODIFY),
            ],
        ),
    ];
    for (action, used, in_progress, expectations) in table {
        for ((who, party), expected) in parties.all().into_iter().zip(expectations) {
            let (patient, id) = request(&app, &parties, used, in_progress).await;
            let api = app.api(&party.token);
            let reply = match action {
                "use" => api.use_request(id, party.legal_entity_id, None).await,
                "recall" | "cancel" => {
                    let path =
                        format!("/api/patients/{patient}/service_requests/{id}/actions/{action}");
                    api.request(Method::PATCH, &path, None, &[]).await
                }
                _ => api.action(id, action).await,
            };
            expect(&api, &format!("{action} by {who}"), reply, expected).await;
        }
    }

    // Reading: the requester, the holder and NHS; nobody else.
    let (_, id) = request(&app, &parties, true, false).await;
    let path = format!("/api/service_requests/{id}");
    for (who, party) in parties.all() {
        let reply = app.api(&party.token).get(&path).await;
        if who == "other" {
            reply.assert_error(403, "You are not allowed to view this service request");
        } else {
            assert_eq!(reply.status, StatusCode::OK, "get by {who}: {reply:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_answer_never_shows_a_resource_its_reader_could_not_get() {
    let app = TestApp::spawn().await;
    let parties = Parties::new(&app).await;
    let (_, id) = request(&app, &parties, true, false).await;
    let holder = app.api(&parties.holder.token);
    // Released by the holder, the request is the requester's again: the holder may no longer read it.
    let reply = holder
        .request(
            Method::PATCH,
            &format!("/api/service_requests/{id}/actions/release"),
            None,
            &[("prefer", "wait=10")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
    assert_eq!(reply.body["data"]["status"], "processed");
    assert!(
        reply.body["data"].get("id").is_none(),
        "no resource: {reply:?}"
    );
    assert_eq!(
        reply.headers["location"].to_str().unwrap(),
        format!("/api/service_requests/{id}")
    );
    holder
        .get(&format!("/api/service_requests/{id}"))
        .await
        .assert_error(403, "You are not allowed to view this service request");
    // The requester, who may read it, gets the resource under the same preference.
    let (_, id) = request(&app, &parties, true, false).await;
    let reply = app
        .api(&parties.requester.token)
        .request(
            Method::PATCH,
            &format!("/api/service_requests/{id}/actions/release"),
            None,
            &[("prefer", "wait=10")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["data"]["id"], id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_on_a_stream_of_another_type_fails_404_not_found() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let (patient, analysis) = (Uuid::new_v4(), Uuid::new_v4());
    let files = format!("/api/erp/v1/patients/{patient}/analysis/{analysis}/files");
    let api = app.api(&msp.token).without_api_key();
    let url = api
        .request(
            Method::POST,
            &format!("{files}/initialize/a.pdf"),
            None,
            &[],
        )
        .await
        .body["data"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = reqwest::Client::new()
        .put(url)
        .body(b"%PDF-1.4".to_vec())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let finalized = api
        .request(Method::POST, &format!("{files}/a.pdf"), None, &[])
        .await;
    assert_eq!(finalized.status, StatusCode::OK, "{finalized:?}");
    let stream = ehealth_domain::analysis_file::stream_id(msp.legal_entity_id, patient, analysis);
    let sr = app.api(&msp.token);
    sr.finished(sr.release(stream).await)
        .await
        .assert_failed(404, NOT_FOUND);
    let reply = sr.use_request(stream, msp.legal_entity_id, None).await;
    sr.finished(reply).await.assert_failed(404, NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_or_closed_legal_entity_cannot_read_its_jobs() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let reply = api.create_service_request(Uuid::new_v4(), false).await;
    let href = reply.job_href();
    api.poll_job(&href).await.assert_processed();
    for status in ["SUSPENDED", "CLOSED"] {
        let client = app.pool.get().await.unwrap();
        identity::set_legal_entity_status(&client, msp.legal_entity_id, status)
            .await
            .unwrap();
        // The api trusts a verified token for AUTH_CACHE_TTL_MS: a status change takes effect within it.
        let bound = std::time::Duration::from_millis(app.config.auth_cache_ttl_ms)
            + std::time::Duration::from_secs(2);
        let refused = app
            .eventually(bound, || async { api.get(&href).await.status == 403 })
            .await;
        assert!(refused, "{status} takes effect within {bound:?}");
        for path in [href.clone(), href.replace("/Jobs/", "/api/jobs/")] {
            api.get(&path)
                .await
                .assert_error(403, "Client is not active");
        }
    }
}
