//! Rebuilding the projections in short transactions: shadow tables filled chunk by chunk, caught up and swapped
//! in. The result is exactly the live tables, events committed meanwhile are in it, and the audit feed goes on
//! serving while it runs.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use deadpool_postgres::Pool;
use ehealth_domain::{
    analysis_file::{self, AnalysisFilesAggregate},
    service_request::{self, ServiceRequestAggregate},
};
use ehealth_infra::{
    event_store::{self, FeedCursor, FeedFilter, Metadata},
    projection::{self, Projection},
};
use ehealth_tests::{eventually, wait_for, TestApp};
use uuid::Uuid;

/// Bounded waits: other tests' transactions hold the feed back while they run.
const WAIT: Duration = Duration::from_secs(30);

fn metadata() -> Metadata {
    Metadata {
        causation_id: None,
        correlation_id: "rebuild-test".to_owned(),
        actor_user_id: Uuid::new_v4(),
        legal_entity_id: Uuid::new_v4(),
        client_type: "MSP".to_owned(),
    }
}

/// Appends `events` to `stream` and projects the new state in one transaction, as the worker does.
async fn record<A: Projection>(pool: &Pool, stream: Uuid, events: &[A::Event]) {
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let loaded = event_store::load::<A>(&tx, stream).await.unwrap();
    let appended = event_store::append::<A>(&tx, stream, &loaded, events, &metadata())
        .await
        .unwrap();
    let state = events.iter().fold(loaded.state.clone(), A::apply);
    let inserted_at = loaded.first_recorded_at.unwrap_or(appended.recorded_at);
    A::project(
        &tx,
        stream,
        &state,
        appended.version,
        inserted_at,
        appended.recorded_at,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

fn created(id: Uuid, program: bool) -> service_request::Event {
    service_request::Event::Created {
        id,
        patient_id: Uuid::new_v4(),
        category: "c".to_owned(),
        code: "x".to_owned(),
        program_id: program.then(Uuid::new_v4),
        expiration_date: None,
        requester_legal_entity_id: Uuid::new_v4(),
        requester_user_id: Uuid::new_v4(),
        program_processing_status: program.then_some(service_request::ProgramProcessingStatus::New),
    }
}

fn used() -> service_request::Event {
    service_request::Event::Used {
        used_by_legal_entity_id: Uuid::new_v4(),
        used_by_employee_id: Some(Uuid::new_v4()),
        program_processing_status: None,
    }
}

fn file_recorded(stream: Uuid, file_id: Uuid, name: &str) -> analysis_file::Event {
    analysis_file::Event::FileRecorded {
        file_id,
        legal_entity_id: stream,
        patient_id: Uuid::new_v4(),
        analysis_id: Uuid::new_v4(),
        file_name: name.to_owned(),
        object_key: format!("{stream}/{file_id}"),
        size: 42,
        content_type: "application/pdf".to_owned(),
        etag: "etag".to_owned(),
        at: event_store::now(),
    }
}

/// A service request with a history of 1 to 6 events, written in several appends.
async fn service_request_with_history(pool: &Pool, i: usize) -> Uuid {
    let id = Uuid::new_v4();
    record::<ServiceRequestAggregate>(pool, id, &[created(id, i % 2 == 0)]).await;
    if i % 3 != 0 {
        record::<ServiceRequestAggregate>(pool, id, &[used()]).await;
    }
    if i % 3 == 2 {
        record::<ServiceRequestAggregate>(pool, id, &[service_request::Event::Released, used()])
            .await;
        record::<ServiceRequestAggregate>(
            pool,
            id,
            &[
                service_request::Event::ProcessingStarted,
                service_request::Event::Completed,
            ],
        )
        .await;
    }
    id
}

/// An analysis with files recorded, flagged and deleted.
async fn analysis_with_files(pool: &Pool, i: usize) -> Uuid {
    let stream = Uuid::new_v4();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    record::<AnalysisFilesAggregate>(pool, stream, &[file_recorded(stream, a, "a.pdf")]).await;
    if i % 2 == 0 {
        record::<AnalysisFilesAggregate>(
            pool,
            stream,
            &[
                file_recorded(stream, b, "b.pdf"),
                analysis_file::Event::SendFlagChanged {
                    file_id: a,
                    is_send: true,
                    at: event_store::now(),
                },
            ],
        )
        .await;
    }
    if i % 4 == 0 {
        record::<AnalysisFilesAggregate>(
            pool,
            stream,
            &[analysis_file::Event::FileDeleted {
                file_id: b,
                file_name: "b.pdf".to_owned(),
                object_key: format!("{stream}/{b}"),
                at: event_store::now(),
            }],
        )
        .await;
    }
    stream
}

async fn dump(
    client: &impl deadpool_postgres::GenericClient,
    table: &str,
) -> Vec<serde_json::Value> {
    projection::dump_table(client, table).await.unwrap()
}

/// Holds `ACCESS SHARE` on `table` in an open, read-only transaction (no transaction id, so the feed is not
/// held back): a rebuild can build its shadow but not swap it in until the transaction ends.
async fn hold_readers_lock<'a>(
    client: &'a mut deadpool_postgres::Object,
    table: &str,
) -> deadpool_postgres::Transaction<'a> {
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!("LOCK TABLE {table} IN ACCESS SHARE MODE"))
        .await
        .unwrap();
    tx
}

/// Whether the rebuild's shadow of `table` exists and holds rows.
async fn shadow_has_rows(pool: &Pool, table: &str) -> bool {
    let client = pool.get().await.unwrap();
    let shadow = format!("{table}_rebuild");
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&shadow])
        .await
        .unwrap()
        .get(0);
    exists
        && client
            .query_one(&format!("SELECT count(*) > 0 FROM {shadow}"), &[])
            .await
            .map(|row| row.get::<_, bool>(0))
            .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_in_many_small_chunks_gives_exactly_the_live_tables() {
    let app = TestApp::spawn_without_worker().await;
    for i in 0..300 {
        service_request_with_history(&app.pool, i).await;
    }
    for i in 0..150 {
        analysis_with_files(&app.pool, i).await;
    }
    let mut client = app.pool.get().await.unwrap();
    let live_requests = dump(&client, "service_requests").await;
    let live_files = dump(&client, "analysis_files").await;
    assert_eq!(live_requests.len(), 300);
    // Every analysis keeps `a.pdf`; half recorded `b.pdf`, and half of those deleted it again.
    assert_eq!(live_files.len(), 150 + 37);
    let events: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);

    // Streams have up to 6 events: many of them straddle two chunks of 4.
    let report = projection::rebuild_all_in_chunks(&mut client, 4)
        .await
        .unwrap();

    assert_eq!(report.streams, 450);
    assert_eq!(report.events, u64::try_from(events).unwrap());
    assert_eq!(dump(&client, "service_requests").await, live_requests);
    assert_eq!(dump(&client, "analysis_files").await, live_files);
    let leftovers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_rebuild'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "the shadow tables are dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_the_worker_carries_out_during_a_rebuild_are_in_the_rebuilt_table() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    for i in 0..150 {
        service_request_with_history(&app.pool, i).await;
    }
    let mut existing = Vec::new();
    for _ in 0..5 {
        existing.push(api.created_service_request(Uuid::new_v4(), true).await);
    }

    // Readers hold the table: the rebuild builds its shadow and then waits to swap it in, so every command
    // below lands while it runs, first during the build, then while it waits.
    let mut reader = app.pool.get().await.unwrap();
    let readers = hold_readers_lock(&mut reader, "service_requests").await;
    let mut client = app.pool.get().await.unwrap();
    let rebuild =
        tokio::spawn(async move { projection::rebuild_all_in_chunks(&mut client, 1).await });

    for &id in &existing {
        api.finished(
            api.use_request(id, msp.legal_entity_id, Some(msp.user_id))
                .await,
        )
        .await
        .assert_processed();
    }
    for _ in 0..5 {
        api.created_service_request(Uuid::new_v4(), false).await;
    }
    api.finished(api.release(existing[0]).await)
        .await
        .assert_processed();
    assert!(!rebuild.is_finished(), "the rebuild waits for the readers");
    let live = dump(&readers, "service_requests").await;
    assert_eq!(live.len(), 150 + 5 + 5);
    readers.commit().await.unwrap();

    let report = rebuild.await.unwrap().unwrap();
    assert_eq!(report.streams, 160);
    let client = app.pool.get().await.unwrap();
    assert_eq!(dump(&client, "service_requests").await, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_feed_keeps_serving_new_events_while_a_rebuild_runs() {
    let app = TestApp::spawn_without_worker().await;
    for i in 0..200 {
        service_request_with_history(&app.pool, i).await;
    }
    // The rebuild cannot finish while this reader holds the table, so whatever the feed serves below, it
    // serves while the rebuild runs.
    let mut reader = app.pool.get().await.unwrap();
    let readers = hold_readers_lock(&mut reader, "service_requests").await;
    let mut client = app.pool.get().await.unwrap();
    let rebuild =
        tokio::spawn(async move { projection::rebuild_all_in_chunks(&mut client, 1).await });
    assert!(
        eventually(WAIT, || shadow_has_rows(&app.pool, "service_requests")).await,
        "the rebuild writes its shadow table"
    );

    let late = Uuid::new_v4();
    record::<ServiceRequestAggregate>(&app.pool, late, &[created(late, false)]).await;
    let filter = FeedFilter {
        stream_id: Some(late),
        ..FeedFilter::default()
    };
    let served = wait_for(WAIT, || async {
        let client = app.pool.get().await.unwrap();
        let page = event_store::read_feed(&client, FeedCursor::START, 10, &filter)
            .await
            .unwrap();
        (!page.events.is_empty()).then_some(page.events)
    })
    .await
    .expect("the feed serves an event committed while the rebuild runs");
    assert_eq!(served[0].stream_id, late);
    assert!(
        !rebuild.is_finished(),
        "the feed served it during the rebuild"
    );

    let live = dump(&readers, "service_requests").await;
    readers.commit().await.unwrap();
    rebuild.await.unwrap().unwrap();
    let client = app.pool.get().await.unwrap();
    let rebuilt = dump(&client, "service_requests").await;
    assert_eq!(rebuilt, live);
    assert!(rebuilt.iter().any(|row| row["id"] == late.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_repairs_live_tables_that_drifted_from_the_log() {
    let app = TestApp::spawn_without_worker().await;
    for i in 0..20 {
        service_request_with_history(&app.pool, i).await;
    }
    for i in 0..10 {
        analysis_with_files(&app.pool, i).await;
    }
    let mut client = app.pool.get().await.unwrap();
    let live_requests = dump(&client, "service_requests").await;
    let live_files = dump(&client, "analysis_files").await;
    // A changed column, a lost row and a row no event made, in each table.
    client
        .batch_execute(
            "UPDATE service_requests SET code = 'drifted' \
               WHERE id = (SELECT id FROM service_requests ORDER BY id LIMIT 1); \
             DELETE FROM service_requests WHERE id = (SELECT id FROM service_requests ORDER BY id DESC LIMIT 1); \
             INSERT INTO service_requests SELECT (jsonb_populate_record(NULL::service_requests, \
               to_jsonb(s) || jsonb_build_object('id', gen_random_uuid()))).* FROM service_requests s LIMIT 1; \
             DELETE FROM analysis_files WHERE ctid = (SELECT min(ctid) FROM analysis_files); \
             INSERT INTO analysis_files SELECT (jsonb_populate_record(NULL::analysis_files, \
               to_jsonb(f) || jsonb_build_object('id', gen_random_uuid(), 'stream_id', gen_random_uuid()))).* \
               FROM analysis_files f LIMIT 1",
        )
        .await
        .unwrap();
    assert_ne!(dump(&client, "service_requests").await, live_requests);
    assert_ne!(dump(&client, "analysis_files").await, live_files);

    projection::rebuild_all_in_chunks(&mut client, 7)
        .await
        .unwrap();

    assert_eq!(dump(&client, "service_requests").await, live_requests);
    assert_eq!(dump(&client, "analysis_files").await, live_files);
}
