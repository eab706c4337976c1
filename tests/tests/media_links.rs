//! Media storage links (spec 001) through HTTP against the embedded S3 store: every 401/403/422, links that
//! upload and download the same bytes, the folder rule, and the `media_link.issued` events auditors read.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use ehealth_api::routes::media_links::UNKNOWN_FOLDER;
use ehealth_domain::{
    media_link::{self, FOREIGN_FOLDER},
    ClientType,
};
use ehealth_tests::{http::Reply, wait_for, Party, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

const PATH: &str = "/api/media_storage_links";
const SCOPE: &str = "private_contracts:write";

async fn link(app: &TestApp, token: &str, secret: Value) -> Reply {
    app.api(token)
        .request(Method::POST, PATH, Some(json!({ "secret": secret })), &[])
        .await
}

/// A 201's `data`, after checking the answer's shape.
#[track_caller]
fn issued(reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let data = reply.body["data"].clone();
    assert_eq!(reply.body["meta"]["code"], 201);
    assert_eq!(
        reply.headers["location"].to_str().unwrap(),
        data["secret_url"].as_str().unwrap(),
        "Location is the link"
    );
    data
}

#[track_caller]
fn url(data: &Value) -> String {
    data["secret_url"].as_str().unwrap().to_owned()
}

#[track_caller]
fn assert_invalid(reply: &Reply, entry: &str) {
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{reply:?}");
    assert_eq!(
        reply.body["error"]["type"], "validation_failed",
        "{reply:?}"
    );
    let entries: Vec<&str> = reply.body["error"]["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].as_str().unwrap())
        .collect();
    assert!(entries.contains(&entry), "expected {entry} in {reply:?}");
}

async fn post(api: ehealth_tests::Api<'_>, body: Value) -> Reply {
    api.request(Method::POST, PATH, Some(body), &[]).await
}

async fn nhs(app: &TestApp, scopes: &str) -> Party {
    app.party("NHS", ClientType::Nhs, scopes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_link_uploads_and_get_and_head_links_reach_the_same_bytes() {
    let app = TestApp::spawn_without_worker().await;
    let clinic = app.msp().await;
    let bytes = b"%PDF-1.7 the statute".to_vec();
    let put = issued(
        &link(
            &app,
            &clinic.token,
            json!({"action": "PUT", "resource_name": "contract%20statute.pdf", "content_type": "application/pdf"}),
        )
        .await,
    );
    assert_eq!(put["action"], "PUT");
    assert_eq!(put["bucket"], app.config.media_bucket_name());
    assert_eq!(put["bucket"], "ambulatory-contracts");
    assert_eq!(put["resource_id"], clinic.legal_entity_id.to_string());
    assert_eq!(put["resource_name"], "contract statute.pdf");
    let expires_at: DateTime<Utc> = put["expires_at"].as_str().unwrap().parse().unwrap();
    let lifetime = expires_at - Utc::now();
    assert!(
        lifetime <= chrono::Duration::seconds(600) && lifetime > chrono::Duration::seconds(590),
        "SECRETS_TTL is 600 s: {lifetime}"
    );
    let http = reqwest::Client::new();
    let uploaded = http
        .put(url(&put))
        .header("content-type", "application/pdf")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert!(uploaded.status().is_success(), "{uploaded:?}");

    let get = issued(
        &link(
            &app,
            &clinic.token,
            json!({"action": "GET", "resource_name": "contract%20statute.pdf"}),
        )
        .await,
    );
    assert_eq!(get["action"], "GET");
    let downloaded = http.get(url(&get)).send().await.unwrap();
    assert_eq!(downloaded.status(), StatusCode::OK);
    assert_eq!(downloaded.headers()["content-type"], "application/pdf");
    assert_eq!(downloaded.bytes().await.unwrap().to_vec(), bytes);

    let head = issued(
        &link(
            &app,
            &clinic.token,
            json!({"action": "HEAD", "resource_name": "contract%20statute.pdf"}),
        )
        .await,
    );
    let looked = http.head(url(&head)).send().await.unwrap();
    assert_eq!(looked.status(), StatusCode::OK);
    assert_eq!(
        looked.headers()["content-length"].to_str().unwrap(),
        bytes.len().to_string()
    );

    // A link works for its own method only, and a PUT link only with the content type it was signed with.
    assert!(http
        .get(url(&put))
        .send()
        .await
        .unwrap()
        .status()
        .is_client_error());
    assert!(http
        .head(url(&get))
        .send()
        .await
        .unwrap()
        .status()
        .is_client_error());
    let unsigned_type = http
        .put(url(&put))
        .header("content-type", "text/plain")
        .body("replaced")
        .send()
        .await
        .unwrap();
    assert!(
        unsigned_type.status().is_client_error(),
        "{unsigned_type:?}"
    );
    let still = http.get(url(&get)).send().await.unwrap();
    assert_eq!(still.bytes().await.unwrap().to_vec(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_the_token_and_the_scope_are_checked_in_that_order() {
    let app = TestApp::spawn_without_worker().await;
    let clinic = app.msp().await;
    let secret = json!({"secret": {"action": "GET", "resource_name": "a.pdf"}});

    let reply = post(app.api(&clinic.token).without_api_key(), secret.clone()).await;
    reply.assert_error(401, "api-key is missing");
    let reply = post(
        app.api(&clinic.token).with_api_key("not-a-key"),
        secret.clone(),
    )
    .await;
    reply.assert_error(401, "invalid api-key");
    // The api-key comes before the token: no key and no token is still the api-key's 401.
    let reply = post(app.api("").without_api_key(), secret.clone()).await;
    reply.assert_error(401, "api-key is missing");

    post(app.api("unknown-token"), secret.clone())
        .await
        .assert_error(401, "unauthorized");
    let expired = app
        .token(
            clinic.user_id,
            ClientType::Msp,
            SCOPE,
            chrono::Duration::seconds(-1),
        )
        .await;
    post(app.api(&expired), secret.clone())
        .await
        .assert_error(401, "unauthorized");

    let without_scope = app
        .party("MSP", ClientType::Msp, "service_request:read gambit:erp")
        .await;
    post(app.api(&without_scope.token), secret.clone())
        .await
        .assert_error(403, "invalid scopes");
    // The scope comes before the body: a bad body without the scope is still 403.
    post(app.api(&without_scope.token), json!({"nonsense": true}))
        .await
        .assert_error(403, "invalid scopes");

    let with_scope = app.party("MSP", ClientType::Msp, SCOPE).await;
    let reply = post(app.api(&with_scope.token), secret).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_do_not_fit_the_schema_or_name_no_safe_object_are_422() {
    let app = TestApp::spawn_without_worker().await;
    let clinic = app.msp().await;
    let api = app.api(&clinic.token);

    let reply = api
        .request(Method::POST, PATH, Some(json!({"action": "PUT"})), &[])
        .await;
    assert_invalid(&reply, "$.secret");
    assert_invalid(&reply, "$.action");
    let reply = api
        .request(Method::POST, PATH, Some(json!({"secret": {}})), &[])
        .await;
    assert_invalid(&reply, "$.secret.action");
    assert_invalid(&reply, "$.secret.resource_name");
    for (secret, entry) in [
        (
            json!({"action": "DELETE", "resource_name": "a.pdf"}),
            "$.secret.action",
        ),
        (
            json!({"action": "put", "resource_name": "a.pdf"}),
            "$.secret.action",
        ),
        (
            json!({"action": "GET", "resource_name": 5}),
            "$.secret.resource_name",
        ),
        (
            json!({"action": "GET", "resource_name": ""}),
            "$.secret.resource_name",
        ),
        (
            json!({"action": "GET", "resource_name": "a/b.pdf"}),
            "$.secret.resource_name",
        ),
        (
            json!({"action": "GET", "resource_name": "a\u{1}b"}),
            "$.secret.resource_name",
        ),
        (
            json!({"action": "GET", "resource_name": "a.pdf", "resource_id": "clinic"}),
            "$.secret.resource_id",
        ),
        (
            json!({"action": "PUT", "resource_name": "a.pdf", "content_type": "pdf"}),
            "$.secret.content_type",
        ),
        (
            json!({"action": "GET", "resource_name": "a.pdf", "bucket": "other"}),
            "$.secret.bucket",
        ),
        // Decoded once, the name must still be a safe object name.
        (
            json!({"action": "GET", "resource_name": "a%2Fb.pdf"}),
            "$.secret.resource_name",
        ),
        (
            json!({"action": "GET", "resource_name": "..%2Fother"}),
            "$.secret.resource_name",
        ),
        (
            json!({"action": "GET", "resource_name": "%2E"}),
            "$.secret.resource_name",
        ),
        (
            json!({"action": "GET", "resource_name": "100%"}),
            "$.secret.resource_name",
        ),
        (
            json!({"action": "GET", "resource_name": "%FF.pdf"}),
            "$.secret.resource_name",
        ),
        (
            json!({"action": "GET", "resource_name": "tab%09.pdf"}),
            "$.secret.resource_name",
        ),
        (
            json!({"action": "GET", "resource_name": "%61".repeat(256)}),
            "$.secret.resource_name",
        ),
        // A content type is for PUT links only.
        (
            json!({"action": "GET", "resource_name": "a.pdf", "content_type": "application/pdf"}),
            "$.secret.content_type",
        ),
        (
            json!({"action": "HEAD", "resource_name": "a.pdf", "content_type": "application/pdf"}),
            "$.secret.content_type",
        ),
    ] {
        assert_invalid(&link(&app, &clinic.token, secret).await, entry);
    }
    // Not JSON at all.
    let reply = api
        .request(Method::POST, PATH, None, &[("content-type", "text/plain")])
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{reply:?}"
    );
    let reply = api
        .request(Method::POST, PATH, Some(json!([1, 2])), &[])
        .await;
    assert_invalid(&reply, "$");
    // Nothing was recorded for any of them.
    let recorded = app
        .query(
            "SELECT count(*) FROM events WHERE stream_type = 'media_link'",
            &[],
        )
        .await;
    assert_eq!(recorded[0].get::<_, i64>(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nhs_may_name_another_legal_entitys_folder() {
    let app = TestApp::spawn_without_worker().await;
    let clinic = app.msp().await;
    let other = app.msp().await;
    let reply = link(
        &app,
        &other.token,
        json!({"action": "GET", "resource_name": "statute.pdf", "resource_id": clinic.legal_entity_id}),
    )
    .await;
    reply.assert_error(403, FOREIGN_FOLDER);
    for client_type in [ClientType::Pharmacy, ClientType::Mis] {
        let party = app.party("PHARMACY", client_type, SCOPE).await;
        link(
            &app,
            &party.token,
            json!({"action": "PUT", "resource_name": "x.pdf", "resource_id": clinic.legal_entity_id}),
        )
        .await
        .assert_error(403, FOREIGN_FOLDER);
    }
    // Naming its own folder is the same as naming none.
    let own = issued(
        &link(
            &app,
            &clinic.token,
            json!({"action": "PUT", "resource_name": "statute.pdf", "resource_id": clinic.legal_entity_id}),
        )
        .await,
    );
    let bytes = b"statute bytes".to_vec();
    let http = reqwest::Client::new();
    let put = http
        .put(url(&own))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{put:?}");

    // NHS reads the clinic's folder.
    let nhs = nhs(&app, SCOPE).await;
    let get = issued(
        &link(
            &app,
            &nhs.token,
            json!({"action": "GET", "resource_name": "statute.pdf", "resource_id": clinic.legal_entity_id}),
        )
        .await,
    );
    assert_eq!(get["resource_id"], clinic.legal_entity_id.to_string());
    let downloaded = http.get(url(&get)).send().await.unwrap();
    assert_eq!(downloaded.bytes().await.unwrap().to_vec(), bytes);
    // Without a resource_id NHS gets its own folder, which does not hold the clinic's file.
    let own_folder = issued(
        &link(
            &app,
            &nhs.token,
            json!({"action": "GET", "resource_name": "statute.pdf"}),
        )
        .await,
    );
    assert_eq!(own_folder["resource_id"], nhs.legal_entity_id.to_string());
    assert_eq!(
        http.get(url(&own_folder)).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // A folder no legal entity has.
    let reply = link(
        &app,
        &nhs.token,
        json!({"action": "PUT", "resource_name": "x.pdf", "resource_id": Uuid::new_v4()}),
    )
    .await;
    assert_invalid(&reply, "$.secret.resource_id");
    assert_eq!(
        reply.body["error"]["invalid"][0]["rules"][0]["description"],
        UNKNOWN_FOLDER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_is_recorded_in_its_folders_stream_for_auditors() {
    let app = TestApp::spawn_without_worker().await;
    let clinic = app
        .party("MSP", ClientType::Msp, &format!("{SCOPE} audit:read"))
        .await;
    let nhs = nhs(&app, &format!("{SCOPE} audit:read")).await;
    let put = issued(
        &link(
            &app,
            &clinic.token,
            json!({"action": "PUT", "resource_name": "statute.pdf", "content_type": "application/pdf"}),
        )
        .await,
    );
    issued(
        &link(
            &app,
            &nhs.token,
            json!({"action": "GET", "resource_name": "statute.pdf", "resource_id": clinic.legal_entity_id}),
        )
        .await,
    );

    let stream = media_link::stream_id(clinic.legal_entity_id);
    let reply = app
        .api(&nhs.token)
        .get(&format!("/api/audit/streams/{stream}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let data = &reply.body["data"];
    assert_eq!(data["stream_type"], "media_link");
    assert_eq!(data["chain_valid"], true);
    assert_eq!(data["version"], 2);
    assert_eq!(
        data["state"],
        json!({
            "resource_id": clinic.legal_entity_id,
            "links_issued": 2,
            "last_issued_at": data["events"][1]["data"]["issued_at"],
        })
    );
    let events = data["events"].as_array().unwrap();
    let first = &events[0];
    assert_eq!(first["event_type"], "issued");
    let object_key = format!("{}/statute.pdf", clinic.legal_entity_id);
    assert_eq!(
        first["data"],
        json!({
            "issued_to": {"user_id": clinic.user_id, "legal_entity_id": clinic.legal_entity_id, "client_type": "MSP"},
            "action": "PUT",
            "bucket": "ambulatory-contracts",
            "resource_id": clinic.legal_entity_id,
            "resource_name": "statute.pdf",
            "object_key": object_key,
            "content_type": "application/pdf",
            "issued_at": first["data"]["issued_at"],
            "expires_at": put["expires_at"],
        })
    );
    assert_eq!(
        first["metadata"]["legal_entity_id"],
        clinic.legal_entity_id.to_string()
    );
    let second = &events[1]["data"];
    assert_eq!(second["issued_to"]["user_id"], nhs.user_id.to_string());
    assert_eq!(second["issued_to"]["client_type"], "NHS");
    assert_eq!(second["action"], "GET");
    assert_eq!(second["object_key"], object_key);

    // The clinic reads its own folder's stream too (it wrote to it); another clinic does not.
    let own = app
        .api(&clinic.token)
        .get(&format!("/api/audit/streams/{stream}"))
        .await;
    assert_eq!(own.status, StatusCode::OK, "{own:?}");
    let stranger = app
        .party("MSP", ClientType::Msp, &format!("{SCOPE} audit:read"))
        .await;
    let reply = app
        .api(&stranger.token)
        .get(&format!("/api/audit/streams/{stream}"))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");

    // And the feed, filtered to media links, serves both (once no older transaction holds it back).
    let served = wait_for(Duration::from_secs(30), || async {
        let reply = app
            .api(&nhs.token)
            .get("/api/audit/events?stream_type=media_link&limit=1000")
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let events = reply.body["data"].as_array().unwrap().clone();
        (events.len() == 2).then_some(events)
    })
    .await
    .expect("the feed serves the two links");
    assert!(served
        .iter()
        .all(|e| e["stream_type"] == "media_link" && e["stream_id"] == stream.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_links_to_one_folder_are_all_recorded_in_order() {
    let app = TestApp::spawn_without_worker().await;
    let clinic = app.msp().await;
    let replies = futures_util::future::join_all((0..8).map(|i| {
        let token = clinic.token.clone();
        let app = &app;
        async move {
            link(
                app,
                &token,
                json!({"action": "PUT", "resource_name": format!("file-{i}.pdf")}),
            )
            .await
        }
    }))
    .await;
    for reply in &replies {
        issued(reply);
    }
    let stream = media_link::stream_id(clinic.legal_entity_id);
    let versions = app
        .query(
            "SELECT stream_version FROM events WHERE stream_id = $1 ORDER BY stream_version",
            &[&stream],
        )
        .await;
    let versions: Vec<i64> = versions.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=8).collect::<Vec<i64>>());
}
