//! Spec 004 through HTTP and the real worker: the service-request lifecycle and every answer of the release
//! document.

#![allow(clippy::unwrap_used)]

use ehealth_domain::ClientType;
use ehealth_tests::{TestApp, ALL_SCOPES};
use reqwest::StatusCode;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_of_a_used_request_clears_the_users_and_puts_it_back_to_new() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let patient = Uuid::new_v4();

    let accepted = api.create_service_request(patient, true).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    assert_eq!(accepted.body["data"]["status"], "pending");
    assert_eq!(accepted.body["meta"]["code"], 202);
    assert!(accepted.body["data"]["eta"].is_string());
    let created = api.poll_job(&accepted.job_href()).await;
    assert_eq!(created.status_code(), 201);
    let id = created.assert_processed();
    assert_eq!(created.data["links"][0]["entity"], "service_request");

    let used = api
        .finished(
            api.use_request(id, msp.legal_entity_id, Some(msp.user_id))
                .await,
        )
        .await;
    used.assert_processed();
    let reply = api.get(&format!("/api/service_requests/{id}")).await;
    assert_eq!(reply.body["data"]["program_processing_status"], "in_queue");
    assert_eq!(
        reply.body["data"]["used_by_legal_entity"]["identifier"]["value"],
        msp.legal_entity_id.to_string()
    );

    let release = api.release(id).await;
    assert_eq!(release.status, StatusCode::ACCEPTED);
    assert!(release.job_href().starts_with("/Jobs/"));
    let released = api.poll_job(&release.job_href()).await;
    assert_eq!(released.status_code(), 200);
    assert_eq!(released.assert_processed(), id);

    let reply = api.get(&format!("/api/service_requests/{id}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let data = &reply.body["data"];
    assert_eq!(data["status"], "active");
    assert_eq!(data["program_processing_status"], "new");
    assert!(data["used_by_legal_entity"].is_null());
    assert!(data["used_by_employee"].is_null());

    let events = app
        .query(
            "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version",
            &[&id],
        )
        .await;
    let types: Vec<String> = events.iter().map(|r| r.get(0)).collect();
    assert_eq!(types, ["created", "used", "released"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_of_a_request_not_in_queue_fails_the_job_with_409() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let id = api.created_service_request(Uuid::new_v4(), true).await;

    let job = api.finished(api.release(id).await).await;
    job.assert_failed(409, "Invalid program processing status");
    assert_eq!(job.data["error"]["type"], "request_conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_of_a_request_that_is_not_active_fails_the_job_with_409() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let patient = Uuid::new_v4();
    let id = api.created_service_request(patient, true).await;
    api.finished(api.use_request(id, msp.legal_entity_id, None).await)
        .await
        .assert_processed();
    let recall = api
        .request(
            reqwest::Method::PATCH,
            &format!("/api/patients/{patient}/service_requests/{id}/actions/recall"),
            None,
            &[],
        )
        .await;
    api.finished(recall).await.assert_processed();

    api.finished(api.release(id).await)
        .await
        .assert_failed(409, "Invalid service request status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_of_an_unknown_request_fails_the_job_with_404() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);

    let job = api.finished(api.release(Uuid::new_v4()).await).await;
    job.assert_failed(404, "Service request not found");
    assert_eq!(job.data["error"]["type"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_without_a_valid_token_is_401_unauthorized() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let id = Uuid::new_v4();

    let unknown = app.api("not-a-token").release(id).await;
    unknown.assert_error(401, "unauthorized");
    assert_eq!(unknown.body["error"]["type"], "access_denied");
    assert_eq!(unknown.body["meta"]["code"], 401);

    let expired = app
        .token(
            msp.user_id,
            ClientType::Msp,
            ALL_SCOPES,
            chrono::Duration::seconds(-1),
        )
        .await;
    app.api(&expired)
        .release(id)
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_without_a_valid_api_key_is_401() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let reply = app
        .api(&msp.token)
        .without_api_key()
        .release(Uuid::new_v4())
        .await;
    reply.assert_error(401, "api-key is missing");
    let reply = app
        .api(&msp.token)
        .with_api_key("wrong")
        .release(Uuid::new_v4())
        .await;
    reply.assert_error(401, "invalid api-key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_without_the_use_scope_is_403_invalid_scopes() {
    let app = TestApp::spawn().await;
    let msp = app
        .party("MSP", ClientType::Msp, "service_request:read job:read")
        .await;
    let reply = app.api(&msp.token).release(Uuid::new_v4()).await;
    reply.assert_error(403, "invalid scopes");
    assert_eq!(reply.body["error"]["type"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_by_a_legal_entity_of_a_type_not_allowed_is_409() {
    let app = TestApp::spawn().await;
    let pharmacy = app
        .party("PHARMACY", ClientType::Pharmacy, ALL_SCOPES)
        .await;
    app.api(&pharmacy.token)
        .release(Uuid::new_v4())
        .await
        .assert_error(409, "Action is not allowed for the legal entity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_by_a_legal_entity_that_is_not_active_is_409() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let client = app.pool.get().await.unwrap();
    ehealth_infra::identity::set_legal_entity_status(&client, msp.legal_entity_id, "SUSPENDED")
        .await
        .unwrap();
    app.api(&msp.token)
        .release(Uuid::new_v4())
        .await
        .assert_error(409, "Action is not allowed for the legal entity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_invisible_to_another_legal_entity() {
    let app = TestApp::spawn().await;
    let owner = app.msp().await;
    let other = app.msp().await;
    let accepted = app
        .api(&owner.token)
        .create_service_request(Uuid::new_v4(), false)
        .await;
    let href = accepted.job_href();

    app.api(&other.token)
        .get(&href)
        .await
        .assert_error(404, "Job not found");
    app.api(&owner.token)
        .poll_job(&href)
        .await
        .assert_processed();
    let api_alias = href.replace("/Jobs/", "/api/jobs/");
    let reply = app.api(&owner.token).get(&api_alias).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_request_is_readable_by_its_requester_and_nhs_only() {
    let app = TestApp::spawn().await;
    let owner = app.msp().await;
    let stranger = app.msp().await;
    let nhs = app.party("NHS", ClientType::Nhs, ALL_SCOPES).await;
    let patient = Uuid::new_v4();
    let id = app
        .api(&owner.token)
        .created_service_request(patient, false)
        .await;

    let path = format!("/api/service_requests/{id}");
    assert_eq!(
        app.api(&owner.token).get(&path).await.status,
        StatusCode::OK
    );
    assert_eq!(app.api(&nhs.token).get(&path).await.status, StatusCode::OK);
    app.api(&stranger.token)
        .get(&path)
        .await
        .assert_error(403, "You are not allowed to view this service request");
    app.api(&owner.token)
        .get(&format!("/api/service_requests/{}", Uuid::new_v4()))
        .await
        .assert_error(404, "Service request not found");

    let list = format!("/api/patients/{patient}/service_requests");
    let mine = app.api(&owner.token).get(&list).await;
    assert_eq!(mine.body["paging"]["total_entries"], 1);
    assert_eq!(mine.body["data"][0]["id"], id.to_string());
    assert_eq!(
        app.api(&stranger.token).get(&list).await.body["paging"]["total_entries"],
        0
    );
    assert_eq!(
        app.api(&nhs.token).get(&list).await.body["paging"]["total_entries"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_is_paged() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let patient = Uuid::new_v4();
    for _ in 0..3 {
        let reply = api.create_service_request(patient, false).await;
        api.finished(reply).await.assert_processed();
    }
    let page = api
        .get(&format!(
            "/api/patients/{patient}/service_requests?page=2&page_size=2"
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["paging"]["total_pages"], 2);
    assert_eq!(page.body["paging"]["page_number"], 2);
    let bad = api
        .get(&format!(
            "/api/patients/{patient}/service_requests?page_size=101"
        ))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["error"]["invalid"][0]["entry"], "$.page_size");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_fit_is_422_naming_the_entry() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let path = format!("/api/service_requests/{}/actions/use", Uuid::new_v4());
    let mut body = ehealth_tests::http::use_body(msp.legal_entity_id, None);
    body["used_by_legal_entity"]["identifier"]["value"] = serde_json::json!("not-a-uuid");
    let reply = api
        .request(reqwest::Method::PATCH, &path, Some(body), &[])
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(reply.body["error"]["type"], "validation_failed");
    assert_eq!(
        reply.body["error"]["invalid"][0]["entry"],
        "$.used_by_legal_entity.identifier.value"
    );

    let reply = api
        .request(
            reqwest::Method::POST,
            &format!("/api/patients/{}/service_requests", Uuid::new_v4()),
            Some(serde_json::json!({"code": "x"})),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_of_the_client_is_echoed_and_recorded_in_the_events() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let body = serde_json::json!({"category": "laboratory_procedure", "code": "x"});
    let reply = api
        .request(
            reqwest::Method::POST,
            &format!("/api/patients/{}/service_requests", Uuid::new_v4()),
            Some(body),
            &[("x-request-id", "req-abc-123")],
        )
        .await;
    assert_eq!(reply.body["meta"]["request_id"], "req-abc-123");
    assert_eq!(reply.headers["x-request-id"], "req-abc-123");
    let id = api.poll_job(&reply.job_href()).await.assert_processed();
    let rows = app
        .query("SELECT metadata FROM events WHERE stream_id = $1", &[&id])
        .await;
    let metadata: serde_json::Value = rows[0].get(0);
    assert_eq!(metadata["correlation_id"], "req-abc-123");
    assert_eq!(metadata["actor_user_id"], msp.user_id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_answers_with_the_outcome_of_the_job() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let body = serde_json::json!({"category": "laboratory_procedure", "code": "x"});
    let path = format!("/api/patients/{}/service_requests", Uuid::new_v4());
    let reply = api
        .request(
            reqwest::Method::POST,
            &path,
            Some(body),
            &[("prefer", "wait=10")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(reply.body["data"]["status"], "active");

    let reply = api
        .request(
            reqwest::Method::PATCH,
            &format!("/api/service_requests/{}/actions/release", Uuid::new_v4()),
            None,
            &[("prefer", "wait=10")],
        )
        .await;
    reply.assert_error(404, "Service request not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_stays_202_by_its_document_and_answers_its_outcome_only_under_prefer_wait() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let in_queue = || async {
        let id = api.created_service_request(Uuid::new_v4(), true).await;
        let reply = api
            .use_request(id, msp.legal_entity_id, Some(msp.user_id))
            .await;
        api.finished(reply).await.assert_processed();
        id
    };
    let release = |id: Uuid, prefer: &'static [&'static str]| {
        let api = &api;
        async move {
            let headers: Vec<(&str, &str)> = prefer.iter().map(|p| ("prefer", *p)).collect();
            let path = format!("/api/service_requests/{id}/actions/release");
            api.request(reqwest::Method::PATCH, &path, None, &headers)
                .await
        }
    };
    let applied = |reply: &ehealth_tests::http::Reply| {
        reply
            .headers
            .get("preference-applied")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let varies = |reply: &ehealth_tests::http::Reply| {
        reply.headers.get_all("vary").iter().any(|v| {
            v.to_str()
                .unwrap()
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("prefer"))
        })
    };

    // No preference: 202 with the job, however quick the job would be.
    let reply = release(in_queue().await, &[]).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    assert_eq!(applied(&reply), None);
    assert!(varies(&reply), "{reply:?}");
    api.poll_job(&reply.job_href()).await.assert_processed();

    // respond-async: the same, and it says so.
    let reply = release(in_queue().await, &["respond-async"]).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    assert_eq!(applied(&reply).as_deref(), Some("respond-async"));
    api.poll_job(&reply.job_href()).await.assert_processed();

    // wait=N (several preferences, several headers, an unknown one ignored): the outcome, 200 with the request.
    let id = in_queue().await;
    let reply = release(id, &["handling=lenient", "wait=10"]).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["data"]["id"], id.to_string());
    assert_eq!(reply.body["data"]["program_processing_status"], "new");
    assert_eq!(applied(&reply).as_deref(), Some("wait=10"));
    assert!(varies(&reply), "{reply:?}");
    // A failed job under wait=N: its own status and error.
    release(id, &["wait=10"])
        .await
        .assert_error(409, "Invalid program processing status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_command_while_one_is_pending_returns_the_same_job() {
    let app = TestApp::spawn_without_worker().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let id = Uuid::new_v4();
    let first = api.release(id).await;
    let second = api.release(id).await;
    assert_eq!(first.job_href(), second.job_href());

    let key = [("idempotency-key", "k-1")];
    let keyed = api
        .request(
            reqwest::Method::PATCH,
            &format!("/api/service_requests/{id}/actions/process"),
            None,
            &key,
        )
        .await;
    let again = api
        .request(
            reqwest::Method::PATCH,
            &format!("/api/service_requests/{id}/actions/process"),
            None,
            &key,
        )
        .await;
    assert_eq!(keyed.job_href(), again.job_href());
    let other = api
        .request(
            reqwest::Method::PATCH,
            &format!("/api/service_requests/{id}/actions/complete"),
            None,
            &key,
        )
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY, "{other:?}");
}
