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

/// What a rebuild must leave as it was on a projection table, from the catalogs: its columns, indexes,
/// constraints, owner, persistence, storage parameters, comment, and privileges (table and column).
async fn table_facts(client: &impl deadpool_postgres::GenericClient, table: &str) -> Vec<String> {
    let facts = "\
        SELECT 'column ' || attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull::text \
            || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' ' || coalesce(attacl::text, '') \
          FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
          WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped \
        UNION ALL SELECT 'index ' || indexname || ' ' || indexdef FROM pg_indexes WHERE tablename = $1 \
        UNION ALL SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint \
          WHERE conrelid = $1::text::regclass \
        UNION ALL SELECT 'table ' || pg_get_userbyid(relowner) || ' ' || relpersistence::text || ' ' \
            || coalesce(relacl::text, '') || ' ' || coalesce(reloptions::text, '') || ' ' \
            || coalesce(obj_description(oid, 'pg_class'), '') \
          FROM pg_class WHERE oid = $1::text::regclass \
        UNION ALL SELECT 'grant ' || grantee || ' ' || privilege_type FROM information_schema.role_table_grants \
          WHERE table_name = $1 \
        ORDER BY 1";
    client
        .query(facts, &[&table])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn oid(client: &impl deadpool_postgres::GenericClient, table: &str) -> u32 {
    client
        .query_one("SELECT $1::text::regclass::oid", &[&table])
        .await
        .unwrap()
        .get(0)
}

const PROJECTION_TABLES: [&str; 4] = [
    "service_requests",
    "analysis_files",
    "patient_attachments",
    "contract_requests",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_keeps_each_tables_indexes_constraints_owner_and_privileges() {
    let app = TestApp::spawn_without_worker().await;
    for i in 0..30 {
        service_request_with_history(&app.pool, i).await;
    }
    for i in 0..10 {
        analysis_with_files(&app.pool, i).await;
    }
    let mut client = app.pool.get().await.unwrap();
    // Beyond the migrations' grants: a column privilege, a grant to PUBLIC, a comment, a storage parameter.
    client
        .batch_execute(
            "GRANT SELECT (id, status) ON service_requests TO PUBLIC; \
             GRANT REFERENCES ON analysis_files TO PUBLIC; \
             COMMENT ON TABLE service_requests IS 'the service requests'; \
             ALTER TABLE analysis_files SET (fillfactor = 90, autovacuum_enabled = true)",
        )
        .await
        .unwrap();
    let mut before = Vec::new();
    for table in PROJECTION_TABLES {
        before.push(table_facts(&client, table).await);
    }
    let oids = (
        oid(&client, "service_requests").await,
        oid(&client, "analysis_files").await,
    );
    let live_requests = dump(&client, "service_requests").await;
    let live_files = dump(&client, "analysis_files").await;

    projection::rebuild_all_in_chunks(&mut client, 16)
        .await
        .unwrap();

    for (table, before) in PROJECTION_TABLES.into_iter().zip(before) {
        assert_eq!(table_facts(&client, table).await, before, "{table}");
    }
    assert_ne!(
        (
            oid(&client, "service_requests").await,
            oid(&client, "analysis_files").await
        ),
        oids,
        "the shadows were renamed into place"
    );
    assert_eq!(dump(&client, "service_requests").await, live_requests);
    assert_eq!(dump(&client, "analysis_files").await, live_files);
    let runtime_may_write: bool = client
        .query_one(
            "SELECT has_table_privilege($1, 'service_requests', 'SELECT, INSERT, UPDATE, DELETE')",
            &[&"ehealth_app"],
        )
        .await
        .unwrap()
        .get(0);
    assert!(runtime_may_write);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_a_view_depends_on_is_swapped_by_copying_and_keeps_its_view() {
    let app = TestApp::spawn_without_worker().await;
    for i in 0..30 {
        service_request_with_history(&app.pool, i).await;
    }
    let mut client = app.pool.get().await.unwrap();
    client
        .batch_execute(
            "CREATE VIEW active_service_requests AS SELECT id FROM service_requests WHERE status = 'active'",
        )
        .await
        .unwrap();
    let before = table_facts(&client, "service_requests").await;
    let table_oid = oid(&client, "service_requests").await;
    let live = dump(&client, "service_requests").await;
    let active: i64 = client
        .query_one("SELECT count(*) FROM active_service_requests", &[])
        .await
        .unwrap()
        .get(0);

    projection::rebuild_all_in_chunks(&mut client, 16)
        .await
        .unwrap();

    assert_eq!(oid(&client, "service_requests").await, table_oid);
    assert_eq!(table_facts(&client, "service_requests").await, before);
    assert_eq!(dump(&client, "service_requests").await, live);
    let after: i64 = client
        .query_one("SELECT count(*) FROM active_service_requests", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_during_the_swap_see_the_old_table_or_the_new_one_never_an_empty_one() {
    let app = TestApp::spawn_without_worker().await;
    for i in 0..60 {
        service_request_with_history(&app.pool, i).await;
    }
    let live = dump(&app.pool.get().await.unwrap(), "service_requests").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two readers: one with a statement prepared once (planned again after the swap), one sending its
    // query afresh each time (parsed and planned again), both queued behind the swap's lock when they meet it.
    let mut readers = Vec::new();
    for prepared in [true, false] {
        let pool = app.pool.clone();
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let client = pool.get().await.unwrap();
            let query = "SELECT count(*), coalesce(sum(version), 0)::bigint FROM service_requests";
            let statement = client.prepare(query).await.unwrap();
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let row = if prepared {
                    client.query_one(&statement, &[]).await
                } else {
                    client.query_one(query, &[]).await
                };
                seen.push(row.map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1))));
            }
            seen
        }));
    }
    let mut client = app.pool.get().await.unwrap();
    for _ in 0..3 {
        projection::rebuild_all_in_chunks(&mut client, 8)
            .await
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let versions: i64 = live
        .iter()
        .map(|row| row["version"].as_i64().unwrap())
        .sum();
    for reader in readers {
        let seen = reader.await.unwrap();
        assert!(!seen.is_empty());
        for result in seen {
            assert_eq!(result.unwrap(), (60, versions));
        }
    }
    assert_eq!(dump(&client, "service_requests").await, live);
}
