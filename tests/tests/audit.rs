//! The audit reads: a feed that neither skips a late commit nor stalls past it, who may read which stream,
//! the feed's filters and cursor, and a stream read as it was at a position or a time.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use ehealth_api::routes::audit::{OTHER_LEGAL_ENTITY, STREAM_NOT_FOUND};
use ehealth_domain::{
    service_request::{Event, ServiceRequestAggregate},
    ClientType,
};
use ehealth_infra::event_store::{self, Metadata};
use ehealth_tests::{http::Reply, wait_for, Party, TestApp, ALL_SCOPES};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// How long a test waits for the feed to serve what has committed: every transaction of the server that is
/// still open (other tests run beside this one) holds the feed back until it ends.
const FEED_WAIT: Duration = Duration::from_secs(30);

fn created(id: Uuid, legal_entity_id: Uuid) -> Event {
    Event::Created {
        id,
        patient_id: Uuid::new_v4(),
        category: "c".to_owned(),
        code: "x".to_owned(),
        program_id: None,
        expiration_date: None,
        requester_legal_entity_id: legal_entity_id,
        requester_user_id: Uuid::new_v4(),
        program_processing_status: None,
    }
}

fn metadata(legal_entity_id: Uuid) -> Metadata {
    Metadata {
        causation_id: None,
        correlation_id: "audit-test".to_owned(),
        actor_user_id: Uuid::new_v4(),
        legal_entity_id,
        client_type: "MSP".to_owned(),
    }
}

/// An NHS auditor.
async fn nhs(app: &TestApp) -> Party {
    app.party("NHS", ClientType::Nhs, "audit:read").await
}

/// The `(stream_id, position)` of every event of a feed page.
fn served(reply: &Reply) -> Vec<(String, i64)> {
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["stream_id"].as_str().unwrap().to_owned(),
                e["position"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn next_after(reply: &Reply) -> String {
    reply.body["paging"]["next_after"]
        .as_str()
        .unwrap_or_else(|| panic!("no paging.next_after in {reply:?}"))
        .to_owned()
}

/// The feed page after `after` (from the start when `None`), with `query` added.
async fn feed_page(app: &TestApp, token: &str, after: Option<&str>, query: &str) -> Reply {
    let mut path = format!("/api/audit/events?limit=1000{query}");
    if let Some(after) = after {
        path.push_str(&format!("&after={after}"));
    }
    app.api(token).get(&path).await
}

/// Reads pages from `after` until one serves an event of `stream`; that page.
async fn page_serving(app: &TestApp, token: &str, after: Option<&str>, stream: Uuid) -> Reply {
    wait_for(FEED_WAIT, || async {
        let page = feed_page(app, token, after, "").await;
        served(&page)
            .iter()
            .any(|(s, _)| *s == stream.to_string())
            .then_some(page)
    })
    .await
    .unwrap_or_else(|| panic!("the feed never served {stream}"))
}

/// The transaction id (xid8) a transaction writes with, assigned now.
async fn xact_id(tx: &deadpool_postgres::Transaction<'_>) -> u64 {
    let row = tx
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap();
    row.get::<_, String>(0).parse().unwrap()
}

/// Appends a `created` event to a new stream in `tx`; its position.
async fn append_created(tx: &deadpool_postgres::Transaction<'_>, stream: Uuid, le: Uuid) -> i64 {
    let empty = event_store::load::<ServiceRequestAggregate>(tx, stream)
        .await
        .unwrap();
    event_store::append::<ServiceRequestAggregate>(
        tx,
        stream,
        &empty,
        &[created(stream, le)],
        &metadata(le),
    )
    .await
    .unwrap();
    tx.query_one(
        "SELECT position FROM events WHERE stream_id = $1",
        &[&stream],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_position_that_commits_late_is_served_on_the_next_page_not_skipped() {
    let app = TestApp::spawn_without_worker().await;
    let auditor = nhs(&app).await;
    let le = Uuid::new_v4();
    let (stream_a, stream_b, stream_c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (mut conn_a, mut conn_b, mut conn_c) = (
        app.pool.get().await.unwrap(),
        app.pool.get().await.unwrap(),
        app.pool.get().await.unwrap(),
    );

    // A starts first (the older transaction id), then B; B inserts first (the lower position).
    let tx_a = conn_a.transaction().await.unwrap();
    let xid_a = xact_id(&tx_a).await;
    let tx_b = conn_b.transaction().await.unwrap();
    let xid_b = xact_id(&tx_b).await;
    let position_b = append_created(&tx_b, stream_b, le).await;
    let position_a = append_created(&tx_a, stream_a, le).await;
    assert!(xid_a < xid_b && position_b < position_a);
    tx_a.commit().await.unwrap();

    // While B is open, A's event is served: a reader tailing by position would now be past B's position.
    let first = page_serving(&app, &auditor.token, None, stream_a).await;
    assert_eq!(served(&first), vec![(stream_a.to_string(), position_a)]);
    let cursor = next_after(&first);

    // C starts after B and commits while B is still open: B holds the feed back, nothing is skipped.
    let tx_c = conn_c.transaction().await.unwrap();
    let xid_c = xact_id(&tx_c).await;
    let position_c = append_created(&tx_c, stream_c, le).await;
    tx_c.commit().await.unwrap();
    assert!(xid_b < xid_c);
    let held = feed_page(&app, &auditor.token, Some(&cursor), "").await;
    assert_eq!(
        served(&held),
        vec![],
        "an open transaction holds the feed back"
    );
    assert_eq!(next_after(&held), cursor, "an empty page keeps the cursor");

    // B commits: the next page serves B's lower position, then C's.
    tx_b.commit().await.unwrap();
    let second = page_serving(&app, &auditor.token, Some(&cursor), stream_c).await;
    assert_eq!(
        served(&second),
        vec![
            (stream_b.to_string(), position_b),
            (stream_c.to_string(), position_c)
        ]
    );
    let rest = feed_page(&app, &auditor.token, Some(&next_after(&second)), "").await;
    assert_eq!(served(&rest), vec![], "each event is served once");

    // Read from the start, the feed is in transaction order, not position order.
    let all = feed_page(&app, &auditor.token, None, "").await;
    assert_eq!(
        served(&all).iter().map(|(_, p)| *p).collect::<Vec<_>>(),
        vec![position_a, position_b, position_c]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_one_event_walk_the_whole_feed_with_the_opaque_cursor() {
    let app = TestApp::spawn().await;
    let auditor = nhs(&app).await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let id = api.created_service_request(Uuid::new_v4(), true).await;
    api.finished(api.use_request(id, msp.legal_entity_id, None).await)
        .await
        .assert_processed();
    api.finished(api.release(id).await).await.assert_processed();

    // All three events are served before the walk starts, so an empty page ends it.
    assert!(
        wait_for(FEED_WAIT, || async {
            (served(&feed_page(&app, &auditor.token, None, "").await).len() == 3).then_some(())
        })
        .await
        .is_some(),
        "the feed serves the three events"
    );
    let mut after: Option<String> = None;
    let mut versions = vec![];
    loop {
        let mut path = "/api/audit/events?limit=1".to_owned();
        if let Some(after) = &after {
            path.push_str(&format!("&after={after}"));
        }
        let page = app.api(&auditor.token).get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        assert_eq!(page.body["paging"]["limit"], 1);
        assert_eq!(page.body["paging"]["after"], json!(after));
        let data = page.body["data"].as_array().unwrap();
        if data.is_empty() {
            break;
        }
        versions.push(data[0]["stream_version"].as_i64().unwrap());
        let next = next_after(&page);
        assert!(
            next.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "base64url: {next}"
        );
        after = Some(next);
    }
    assert_eq!(versions, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_and_old_numeric_cursors_are_422_naming_the_parameter() {
    let app = TestApp::spawn_without_worker().await;
    let auditor = nhs(&app).await;
    let api = app.api(&auditor.token);
    for (query, entry) in [
        ("after=42", "$.after"),
        ("after=0", "$.after"),
        ("after=not-a-cursor", "$.after"),
        ("limit=0", "$.limit"),
        ("limit=1001", "$.limit"),
        ("stream_type=patients", "$.stream_type"),
        ("stream_id=42", "$.stream_id"),
        ("legal_entity_id=clinic", "$.legal_entity_id"),
        ("from=yesterday", "$.from"),
        ("to=2026-13-01T00:00:00Z", "$.to"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "$.to"),
    ] {
        let reply = api.get(&format!("/api/audit/events?{query}")).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {reply:?}"
        );
        assert_eq!(
            reply.body["error"]["type"], "validation_failed",
            "{reply:?}"
        );
        assert_eq!(
            reply.body["error"]["invalid"][0]["entry"], entry,
            "{query}: {reply:?}"
        );
    }
    let stream = Uuid::new_v4();
    for as_of in ["soon", "-1", "99999999999999999999", "2026-01-01 00:00:00"] {
        let reply = api
            .get(&format!("/api/audit/streams/{stream}?as_of={as_of}"))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{as_of}: {reply:?}"
        );
        assert_eq!(
            reply.body["error"]["invalid"][0]["entry"], "$.as_of",
            "{reply:?}"
        );
    }
    let fine = api
        .get("/api/audit/events?stream_type=analysis_files&from=2026-01-01T00:00:00%2B02:00&to=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(fine.status, StatusCode::OK, "{fine:?}");
}

/// The callers of the authorization matrix and the streams they act on.
struct Matrix {
    app: TestApp,
    nhs: Party,
    /// A personal token of the clinic whose stream is read.
    own: String,
    /// A personal token of another clinic, which has a stream of its own.
    other: Party,
    /// An MIS token of the other clinic: not NHS, so restricted like a personal one.
    other_mis: String,
    /// A token of the clinic without `audit:read`.
    no_scope: String,
    clinic: Party,
    ours: Uuid,
    theirs: Uuid,
}

impl Matrix {
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        let clinic = app.party("MSP", ClientType::Msp, ALL_SCOPES).await;
        let other = app
            .party("MSP", ClientType::Msp, &format!("{ALL_SCOPES} audit:read"))
            .await;
        let nhs = nhs(&app).await;
        let hour = chrono::Duration::hours(1);
        let own = app
            .token(clinic.user_id, ClientType::PrimaryCare, "audit:read", hour)
            .await;
        let other_mis = app
            .token(other.user_id, ClientType::Mis, "audit:read", hour)
            .await;
        let no_scope = clinic.token.clone();
        let ours = app
            .api(&clinic.token)
            .created_service_request(Uuid::new_v4(), false)
            .await;
        let theirs = app
            .api(&other.token)
            .created_service_request(Uuid::new_v4(), false)
            .await;
        let matrix = Self {
            app,
            nhs,
            own,
            other,
            other_mis,
            no_scope,
            clinic,
            ours,
            theirs,
        };
        // Both streams are in the feed before the matrix is read.
        for stream in [ours, theirs] {
            page_serving(&matrix.app, &matrix.nhs.token, None, stream).await;
        }
        matrix
    }

    async fn get(&self, token: &str, path: &str) -> Reply {
        self.app.api(token).get(path).await
    }

    /// The streams a feed page serves, deduplicated in order.
    async fn feed_streams(&self, token: &str, query: &str) -> Vec<Uuid> {
        let page = feed_page(&self.app, token, None, query).await;
        let mut streams: Vec<Uuid> = vec![];
        for (stream, _) in served(&page) {
            let stream = stream.parse().unwrap();
            if !streams.contains(&stream) {
                streams.push(stream);
            }
        }
        streams
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audit_route_answers_each_kind_of_caller_exactly() {
    let m = Matrix::new().await;
    let (ours, theirs) = (m.ours, m.theirs);
    let stream_path = format!("/api/audit/streams/{ours}");

    // GET /api/audit/streams/{id}
    let by_nhs = m.get(&m.nhs.token, &stream_path).await;
    assert_eq!(by_nhs.status, StatusCode::OK, "{by_nhs:?}");
    assert_eq!(by_nhs.body["data"]["stream_id"], ours.to_string());
    let by_own = m.get(&m.own, &stream_path).await;
    assert_eq!(by_own.status, StatusCode::OK, "{by_own:?}");
    assert_eq!(by_own.body["data"], by_nhs.body["data"]);
    m.get(&m.other.token, &stream_path)
        .await
        .assert_error(404, STREAM_NOT_FOUND);
    m.get(&m.other_mis, &stream_path)
        .await
        .assert_error(404, STREAM_NOT_FOUND);
    m.get(&m.no_scope, &stream_path)
        .await
        .assert_error(403, "invalid scopes");
    // The other clinic reads its own stream; a stream that does not exist looks the same as ours to it.
    let own_theirs = m
        .get(&m.other.token, &format!("/api/audit/streams/{theirs}"))
        .await;
    assert_eq!(own_theirs.status, StatusCode::OK, "{own_theirs:?}");
    m.get(
        &m.other.token,
        &format!("/api/audit/streams/{}", Uuid::new_v4()),
    )
    .await
    .assert_error(404, STREAM_NOT_FOUND);

    // GET /api/audit/events: everything for NHS, each clinic's own streams for the others.
    assert_eq!(m.feed_streams(&m.nhs.token, "").await, vec![ours, theirs]);
    assert_eq!(m.feed_streams(&m.own, "").await, vec![ours]);
    assert_eq!(m.feed_streams(&m.other.token, "").await, vec![theirs]);
    assert_eq!(m.feed_streams(&m.other_mis, "").await, vec![theirs]);
    feed_page(&m.app, &m.no_scope, None, "")
        .await
        .assert_error(403, "invalid scopes");

    // ?legal_entity_id=: NHS chooses any clinic; the others only their own, another is 403.
    let ours_only = format!("&legal_entity_id={}", m.clinic.legal_entity_id);
    assert_eq!(m.feed_streams(&m.nhs.token, &ours_only).await, vec![ours]);
    assert_eq!(m.feed_streams(&m.own, &ours_only).await, vec![ours]);
    feed_page(&m.app, &m.other.token, None, &ours_only)
        .await
        .assert_error(403, OTHER_LEGAL_ENTITY);
    feed_page(&m.app, &m.other_mis, None, &ours_only)
        .await
        .assert_error(403, OTHER_LEGAL_ENTITY);
    let theirs_only = format!("&legal_entity_id={}", m.other.legal_entity_id);
    assert_eq!(
        m.feed_streams(&m.other.token, &theirs_only).await,
        vec![theirs]
    );
    assert_eq!(
        m.feed_streams(&m.nhs.token, &theirs_only).await,
        vec![theirs]
    );

    // ?stream_id= of a stream the caller may not read is an empty page, as for one that does not exist.
    let ours_stream = format!("&stream_id={ours}");
    assert_eq!(m.feed_streams(&m.nhs.token, &ours_stream).await, vec![ours]);
    assert_eq!(m.feed_streams(&m.own, &ours_stream).await, vec![ours]);
    assert_eq!(
        m.feed_streams(&m.other.token, &ours_stream).await,
        Vec::<Uuid>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_that_used_another_clinics_request_reads_its_whole_stream() {
    let m = Matrix::new().await;
    let stream_path = format!("/api/audit/streams/{}", m.ours);
    m.get(&m.other.token, &stream_path)
        .await
        .assert_error(404, STREAM_NOT_FOUND);
    let api = m.app.api(&m.other.token);
    api.finished(api.use_request(m.ours, m.other.legal_entity_id, None).await)
        .await
        .assert_processed();

    let reply = m.get(&m.other.token, &stream_path).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let types: Vec<&str> = reply.body["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["created", "used"]);
    let streams = wait_for(FEED_WAIT, || async {
        Some(m.feed_streams(&m.other.token, "").await).filter(|s| s.len() == 2)
    })
    .await
    .expect("the used stream joins the other clinic's feed");
    assert_eq!(streams, vec![m.ours, m.theirs]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_filters_by_stream_type_stream_and_time() {
    let app = TestApp::spawn().await;
    let auditor = nhs(&app).await;
    let msp = app.msp().await;
    let first = app
        .api(&msp.token)
        .created_service_request(Uuid::new_v4(), false)
        .await;
    let second = app
        .api(&msp.token)
        .created_service_request(Uuid::new_v4(), false)
        .await;
    page_serving(&app, &auditor.token, None, second).await;
    let all = feed_page(&app, &auditor.token, None, "").await;
    let recorded: Vec<DateTime<Utc>> = all.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["recorded_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(recorded.len(), 2);
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let streams =
        |reply: Reply| -> Vec<String> { served(&reply).into_iter().map(|(s, _)| s).collect() };

    let by_type = |t: &'static str| {
        let (app, token) = (&app, auditor.token.clone());
        async move { streams(feed_page(app, &token, None, &format!("&stream_type={t}")).await) }
    };
    assert_eq!(by_type("service_request").await.len(), 2);
    assert_eq!(by_type("analysis_files").await.len(), 0);
    assert_eq!(
        streams(feed_page(&app, &auditor.token, None, &format!("&stream_id={second}")).await),
        vec![second.to_string()]
    );
    // `from` is inclusive, `to` exclusive.
    assert_eq!(
        streams(
            feed_page(
                &app,
                &auditor.token,
                None,
                &format!("&from={}", at(recorded[1]))
            )
            .await
        ),
        vec![second.to_string()]
    );
    assert_eq!(
        streams(
            feed_page(
                &app,
                &auditor.token,
                None,
                &format!("&to={}", at(recorded[1]))
            )
            .await
        ),
        vec![first.to_string()]
    );
    assert_eq!(
        streams(
            feed_page(
                &app,
                &auditor.token,
                None,
                &format!("&from={}&to={}", at(recorded[0]), at(recorded[0]))
            )
            .await
        ),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_request_stream_read_as_of_a_position_or_a_time_shows_the_events_and_state_of_then(
) {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let auditor = app
        .token(
            msp.user_id,
            ClientType::Msp,
            "audit:read",
            chrono::Duration::hours(1),
        )
        .await;
    let api = app.api(&msp.token);
    let id = api.created_service_request(Uuid::new_v4(), true).await;
    api.finished(api.use_request(id, msp.legal_entity_id, None).await)
        .await
        .assert_processed();
    api.finished(api.release(id).await).await.assert_processed();
    let audit = app.api(&auditor);
    let path = format!("/api/audit/streams/{id}");

    let now = audit.get(&path).await;
    assert_eq!(now.status, StatusCode::OK, "{now:?}");
    let data = &now.body["data"];
    assert_eq!(data["version"], 3);
    assert_eq!(data["as_of"], Value::Null);
    assert_eq!(data["chain_valid"], true);
    assert_eq!(data["stream_type"], "service_request");
    // The state folded from every event is the live projection's answer.
    let live = api.get(&format!("/api/service_requests/{id}")).await;
    assert_eq!(data["state"], live.body["data"], "{now:?}");
    let events = data["events"].as_array().unwrap().clone();

    // As of the `used` event's position: two events, reserved by the clinic.
    let position = events[1]["position"].as_i64().unwrap();
    let used = audit.get(&format!("{path}?as_of={position}")).await;
    assert_eq!(used.status, StatusCode::OK, "{used:?}");
    let then = &used.body["data"];
    assert_eq!(then["as_of"], position);
    assert_eq!(then["version"], 2);
    assert_eq!(then["events"], json!(events[..2]));
    assert_eq!(then["state"]["program_processing_status"], "in_queue");
    assert_eq!(
        then["state"]["used_by_legal_entity"]["identifier"]["value"],
        msp.legal_entity_id.to_string()
    );
    assert_eq!(then["state"]["updated_at"], events[1]["recorded_at"]);
    assert_eq!(
        then["chain_valid"], true,
        "the chain check covers the whole stream"
    );

    // As of the first event's time (URL-encoded offset): created, not yet used.
    let created_at: DateTime<Utc> = events[0]["recorded_at"].as_str().unwrap().parse().unwrap();
    let local = created_at
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(SecondsFormat::Micros, false)
        .replace('+', "%2B");
    let created = audit.get(&format!("{path}?as_of={local}")).await;
    assert_eq!(created.status, StatusCode::OK, "{created:?}");
    assert_eq!(created.body["data"]["version"], 1);
    assert_eq!(created.body["data"]["state"]["status"], "active");
    assert_eq!(
        created.body["data"]["state"]["program_processing_status"],
        "new"
    );
    assert_eq!(
        created.body["data"]["state"]["used_by_legal_entity"],
        Value::Null
    );

    // Before the first event the stream had no events and no state; it still exists, so it is 200.
    let before =
        (created_at - chrono::Duration::seconds(1)).to_rfc3339_opts(SecondsFormat::Micros, true);
    let empty = audit.get(&format!("{path}?as_of={before}")).await;
    assert_eq!(empty.status, StatusCode::OK, "{empty:?}");
    assert_eq!(empty.body["data"]["events"], json!([]));
    assert_eq!(empty.body["data"]["state"], Value::Null);
    assert_eq!(empty.body["data"]["version"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysis_file_names_its_stream_and_the_stream_read_as_of_then_lists_the_files_of_then()
{
    let app = TestApp::spawn().await;
    let party = app
        .party("MSP", ClientType::Msp, "gambit:erp job:read audit:read")
        .await;
    let api = app.api(&party.token).without_api_key();
    let base = format!(
        "/api/erp/v1/patients/{}/analysis/{}/files",
        Uuid::new_v4(),
        Uuid::new_v4()
    );
    let upload = |name: &'static str| {
        let (api, base) = (&api, base.clone());
        async move {
            let init = api
                .request(
                    Method::POST,
                    &format!("{base}/initialize/{name}"),
                    None,
                    &[],
                )
                .await;
            assert_eq!(init.status, StatusCode::OK, "{init:?}");
            let put = reqwest::Client::new()
                .put(init.body["data"]["url"].as_str().unwrap())
                .body(name.as_bytes().to_vec())
                .send()
                .await
                .unwrap();
            assert!(put.status().is_success(), "{put:?}");
            let done = api
                .request(Method::POST, &format!("{base}/{name}"), None, &[])
                .await;
            assert_eq!(done.status, StatusCode::OK, "{done:?}");
            done.body["data"].clone()
        }
    };
    let a = upload("a.txt").await;
    let b = upload("b.txt").await;
    let stream = a["streamId"].as_str().unwrap().to_owned();
    assert_eq!(b["streamId"], stream, "one stream per analysis");
    let listed = api.get(&base).await;
    assert_eq!(listed.body["data"][0]["streamId"], stream, "{listed:?}");

    let without_links = |mut file: Value| {
        let object = file.as_object_mut().unwrap();
        object.remove("url");
        object.remove("urlExpiresAt");
        file
    };
    let path = format!("/api/audit/streams/{stream}");
    let now = api.get(&path).await;
    assert_eq!(now.status, StatusCode::OK, "{now:?}");
    assert_eq!(now.body["data"]["stream_type"], "analysis_files");
    let live: Vec<Value> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .map(without_links)
        .collect();
    assert_eq!(
        now.body["data"]["state"],
        json!(live),
        "the live files, as listed"
    );

    let first = now.body["data"]["events"][0]["position"].as_i64().unwrap();
    let then = api.get(&format!("{path}?as_of={first}")).await;
    assert_eq!(
        then.body["data"]["state"],
        json!([without_links(a)]),
        "{then:?}"
    );
}
