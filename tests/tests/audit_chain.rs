//! Tamper evidence that needs a key: the keyed hash chain against the real Postgres, through the api, an
//! owner's edits and forgeries, and the one-time re-chain of a log chained the pre-V5 way.
//! (`api/tests/admin_cli.rs` runs the real `ehealth-admin audit verify` binary.)

#![allow(clippy::unwrap_used)]

use ehealth_domain::{
    service_request::{Event, ServiceRequestAggregate},
    ClientType,
};
use ehealth_infra::{
    db,
    event_store::{
        self,
        chain::{self, BrokenLink, ChainKey, ChainedEvent},
        Metadata,
    },
};
use ehealth_tests::TestApp;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A service request made, used and released through the api: a stream of three events.
async fn stream_of_three(app: &TestApp) -> Uuid {
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let id = api.created_service_request(Uuid::new_v4(), true).await;
    api.finished(api.use_request(id, msp.legal_entity_id, None).await)
        .await
        .assert_processed();
    api.finished(api.release(id).await).await.assert_processed();
    id
}

/// A service request made through the api: a stream of one event.
async fn stream_of_one(app: &TestApp) -> Uuid {
    let msp = app.msp().await;
    app.api(&msp.token)
        .created_service_request(Uuid::new_v4(), false)
        .await
}

/// Every stream, checked with the process's key (the development key, as the in-process api and worker use).
async fn verify_all(app: &TestApp) -> chain::Verification {
    let client = app.pool.get().await.unwrap();
    chain::verify_streams(&client, chain::chain_key(), None)
        .await
        .unwrap()
}

/// `chain_valid` of `GET /api/audit/streams/{id}`, as an NHS auditor reads it.
async fn chain_valid_over_http(app: &TestApp, stream: Uuid) -> bool {
    let auditor = app.party("NHS", ClientType::Nhs, "audit:read").await;
    let reply = app
        .api(&auditor.token)
        .get(&format!("/api/audit/streams/{stream}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body["data"]["chain_valid"].as_bool().unwrap()
}

/// What an owner might change: the service code of a request's `created` event (version 1). The event still
/// decodes, so the api still shows the stream, with `chain_valid` false.
const FORGE_CODE: &str = "UPDATE events SET data = jsonb_set(data, '{code}', '\"forged\"') \
     WHERE stream_id = $1 AND stream_version = 1";

/// Runs `sql` as the owner with the append-only trigger switched off, as only the owner can.
async fn as_owner(app: &TestApp, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) {
    let mut client = app.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("ALTER TABLE events DISABLE TRIGGER events_refuse_update_delete")
        .await
        .unwrap();
    tx.execute(sql, params).await.unwrap();
    tx.batch_execute("ALTER TABLE events ENABLE TRIGGER events_refuse_update_delete")
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Rewrites a stream's whole chain, `prev_hash`, `hash` and the head, with `link`: the most someone who can
/// write the tables can do.
async fn rewrite_chain(
    app: &TestApp,
    stream: Uuid,
    link: impl Fn(Option<&[u8]>, &ChainedEvent<'_>) -> Vec<u8>,
) {
    let mut client = app.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let events = event_store::read_stream(&tx, stream).await.unwrap();
    tx.batch_execute("ALTER TABLE events DISABLE TRIGGER events_refuse_update_delete")
        .await
        .unwrap();
    let mut prev: Option<Vec<u8>> = None;
    for event in &events {
        let hash = link(prev.as_deref(), &ChainedEvent::from(event));
        tx.execute(
            "UPDATE events SET prev_hash = $1, hash = $2 WHERE event_id = $3",
            &[&prev, &hash, &event.event_id],
        )
        .await
        .unwrap();
        prev = Some(hash);
    }
    tx.execute(
        "UPDATE streams SET last_hash = $1 WHERE stream_id = $2",
        &[&prev, &stream],
    )
    .await
    .unwrap();
    tx.batch_execute("ALTER TABLE events ENABLE TRIGGER events_refuse_update_delete")
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Appends `n` events to a new stream in one append, as the worker would (the chain does not care what the
/// events mean): a stream longer than one batch of the re-chain.
async fn long_stream(app: &TestApp, n: usize) -> Uuid {
    let id = Uuid::new_v4();
    let client = app.pool.get().await.unwrap();
    let empty = event_store::load::<ServiceRequestAggregate>(&client, id)
        .await
        .unwrap();
    let events: Vec<Event> = (0..n).map(|_| Event::Completed).collect();
    event_store::append::<ServiceRequestAggregate>(&client, id, &empty, &events, &metadata())
        .await
        .unwrap();
    id
}

fn metadata() -> Metadata {
    Metadata {
        causation_id: None,
        correlation_id: "audit chain test".to_owned(),
        actor_user_id: Uuid::new_v4(),
        legal_entity_id: Uuid::new_v4(),
        client_type: "NHS".to_owned(),
    }
}

/// Every stored link and head, to compare before and after.
async fn links(app: &TestApp) -> Vec<(Uuid, i64, Option<Vec<u8>>, Vec<u8>)> {
    app.query(
        "SELECT stream_id, stream_version, prev_hash, hash FROM events \
             UNION ALL SELECT stream_id, -version, NULL, last_hash FROM streams ORDER BY 1, 2",
        &[],
    )
    .await
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// The stream and version of every broken link, sorted.
fn broken(report: &chain::Verification) -> Vec<(Uuid, i64)> {
    let mut broken: Vec<_> = report
        .invalid
        .iter()
        .map(|b| (b.stream_id, b.version))
        .collect();
    broken.sort();
    broken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_made_through_the_api_is_chained_with_the_key_and_verifies_clean() {
    let app = TestApp::spawn().await;
    let id = stream_of_three(&app).await;

    let client = app.pool.get().await.unwrap();
    assert!(event_store::verify_chain(&client, id).await.unwrap());
    let report = verify_all(&app).await;
    assert_eq!((report.streams, report.events), (1, 3), "{report:?}");
    assert!(report.invalid.is_empty(), "{report:?}");
    assert!(chain_valid_over_http(&app, id).await);

    // Each link is the HMAC of the RFC 8785 event and the previous link, and nothing else.
    let events = event_store::read_stream(&client, id).await.unwrap();
    let mut prev: Option<Vec<u8>> = None;
    for event in &events {
        let fields = ChainedEvent::from(event);
        let link = chain::event_hash(&ChainKey::development(), prev.as_deref(), &fields).unwrap();
        assert_eq!(hex::encode(&link), event.hash);
        assert_eq!(event.prev_hash, prev.as_deref().map(hex::encode));
        assert_ne!(link, chain::legacy_event_hash(prev.as_deref(), &fields));
        prev = Some(link);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_edited_by_the_owner_is_reported_at_its_stream_and_version() {
    let app = TestApp::spawn().await;
    let tampered = stream_of_three(&app).await;
    let untouched = stream_of_three(&app).await;

    as_owner(&app, FORGE_CODE, &[&tampered]).await;

    let report = verify_all(&app).await;
    assert_eq!((report.streams, report.events), (2, 6), "{report:?}");
    assert_eq!(broken(&report), [(tampered, 1)], "{report:?}");
    assert!(
        report.invalid[0].reason.contains("link does not match"),
        "{report:?}"
    );
    let client = app.pool.get().await.unwrap();
    assert!(!event_store::verify_chain(&client, tampered).await.unwrap());
    assert!(event_store::verify_chain(&client, untouched).await.unwrap());
    assert!(!chain_valid_over_http(&app, tampered).await);
    assert!(chain_valid_over_http(&app, untouched).await);

    // A deleted event: in the middle, the next link names a link that is gone; at the end, the head does.
    as_owner(
        &app,
        "DELETE FROM events WHERE stream_id = $1 AND stream_version IN (1, 3)",
        &[&untouched],
    )
    .await;
    let report = verify_all(&app).await;
    assert_eq!(
        broken(&report)
            .into_iter()
            .filter(|(stream, _)| *stream == untouched)
            .collect::<Vec<_>>(),
        [(untouched, 2), (untouched, 3)],
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_recomputed_without_the_key_does_not_verify() {
    let app = TestApp::spawn().await;
    let by_sha256 = stream_of_three(&app).await;
    let by_other_key = stream_of_three(&app).await;
    as_owner(&app, FORGE_CODE, &[&by_sha256]).await;
    as_owner(&app, FORGE_CODE, &[&by_other_key]).await;

    // Whoever lacks the key can only chain the changed events with plain SHA-256 over the very same bytes…
    rewrite_chain(&app, by_sha256, |prev, event| {
        Sha256::digest(chain::canonical_event(prev, event).unwrap()).to_vec()
    })
    .await;
    // …or with a key of their own.
    let other_key = ChainKey::new("an attacker's own chain key");
    rewrite_chain(&app, by_other_key, |prev, event| {
        chain::event_hash(&other_key, prev, event).unwrap()
    })
    .await;

    let report = verify_all(&app).await;
    let mut expected: Vec<(Uuid, i64)> = [by_sha256, by_other_key]
        .into_iter()
        .flat_map(|stream| (1..=3).map(move |version| (stream, version)))
        .collect();
    expected.sort();
    assert_eq!(broken(&report), expected, "every forged link: {report:?}");
    let client = app.pool.get().await.unwrap();
    assert!(!event_store::verify_chain(&client, by_sha256).await.unwrap());
    assert!(!event_store::verify_chain(&client, by_other_key)
        .await
        .unwrap());
    assert!(!chain_valid_over_http(&app, by_other_key).await);

    // The forged chain is consistent in itself: only the key tells it apart.
    let with_their_key = chain::verify_streams(&client, &other_key, Some(by_other_key))
        .await
        .unwrap();
    assert!(with_their_key.invalid.is_empty(), "{with_their_key:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_re_chains_a_sha256_log_once_and_keeps_earlier_tampering_visible() {
    let app = TestApp::spawn().await;
    let intact = stream_of_three(&app).await;
    let tampered_before = stream_of_three(&app).await;
    let single = stream_of_one(&app).await;
    let long = long_stream(&app, 2500).await;
    // The log as V4 left it: every stream chained with the unkeyed SHA-256 links, one row changed since.
    for stream in [intact, tampered_before, single, long] {
        rewrite_chain(&app, stream, chain::legacy_event_hash).await;
    }
    app.query(
        "UPDATE chain_state SET algorithm = $1, rechained_at = NULL",
        &[&chain::LEGACY_ALGORITHM],
    )
    .await;
    as_owner(&app, FORGE_CODE, &[&tampered_before]).await;
    assert_eq!(
        verify_all(&app).await.invalid.len(),
        2507,
        "SHA-256 links are no HMAC links"
    );

    // The migration step, as the api, the worker and `ehealth-admin migrate` run it.
    assert_eq!(
        db::migrate(&app.config.migration_database_url, &app.config.database_url)
            .await
            .unwrap(),
        0
    );
    let report = verify_all(&app).await;
    assert_eq!((report.streams, report.events), (4, 2507), "{report:?}");
    assert_eq!(
        report.invalid,
        [BrokenLink {
            stream_id: tampered_before,
            version: 1,
            reason: "the link does not match the event: the row was changed, or chained without this key"
                .to_owned(),
        }],
        "re-chaining must not launder a change made before it"
    );
    let state = app
        .query(
            "SELECT algorithm, rechained_at IS NOT NULL FROM chain_state",
            &[],
        )
        .await;
    assert_eq!(
        (state[0].get::<_, String>(0), state[0].get::<_, bool>(1)),
        (chain::ALGORITHM.to_owned(), true)
    );
    let client = app.pool.get().await.unwrap();
    assert!(event_store::verify_chain(&client, intact).await.unwrap());
    assert!(chain_valid_over_http(&app, single).await);
    drop(client);

    // Once done, never again: a second migration changes nothing, and the step itself says so.
    let after_first = links(&app).await;
    assert_eq!(
        db::migrate(&app.config.migration_database_url, &app.config.database_url)
            .await
            .unwrap(),
        0
    );
    assert_eq!(links(&app).await, after_first);
    let mut client = app.pool.get().await.unwrap();
    let again = chain::rechain(&mut client, chain::chain_key())
        .await
        .unwrap();
    assert_eq!(again, chain::Rechained::default());
    assert_eq!(links(&app).await, after_first);

    // And the stream goes on: a new event links onto the re-chained head.
    let loaded = event_store::load::<ServiceRequestAggregate>(&client, intact)
        .await
        .unwrap();
    event_store::append::<ServiceRequestAggregate>(
        &client,
        intact,
        &loaded,
        &[Event::Completed],
        &metadata(),
    )
    .await
    .unwrap();
    assert!(event_store::verify_chain(&client, intact).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_edited_so_it_no_longer_decodes_is_shown_with_chain_valid_false_and_no_state() {
    let app = TestApp::spawn().await;
    let stream = stream_of_one(&app).await;
    as_owner(
        &app,
        "UPDATE events SET data = '{\"not\": \"an event\"}'::jsonb WHERE stream_id = $1",
        &[&stream],
    )
    .await;
    let auditor = app.party("NHS", ClientType::Nhs, "audit:read").await;
    let reply = app
        .api(&auditor.token)
        .get(&format!("/api/audit/streams/{stream}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["data"]["chain_valid"], false, "{reply:?}");
    assert!(reply.body["data"]["state"].is_null(), "{reply:?}");
    assert_eq!(reply.body["data"]["events"][0]["data"]["not"], "an event");
}
