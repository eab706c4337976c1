//! Least privilege in the database: the services' runtime role can read and append the log but never change
//! it, nor the head of a stream's chain; and the services refuse to start as a privileged role.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ehealth_infra::{db, error::SqlState};
use ehealth_tests::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_role_cannot_rewrite_the_log_or_a_streams_head() {
    let app = TestApp::spawn().await;
    let msp = app.msp().await;
    let api = app.api(&msp.token);
    let id = api
        .created_service_request(uuid::Uuid::new_v4(), false)
        .await;

    let runtime = db::pool(&app.config.database_url, 1).unwrap();
    let client = runtime.get().await.unwrap();
    let role: String = client
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, "ehealth_app", "the services run as the runtime role");
    // What it may do: read and append (the api and worker just did, as this role).
    let events: i64 = client
        .query_one("SELECT count(*) FROM events WHERE stream_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 1);
    for statement in [
        "UPDATE events SET data = '{}'::jsonb",
        "DELETE FROM events",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER events_refuse_update_delete",
        "UPDATE streams SET last_hash = '\\x00'::bytea",
        "DROP TABLE events",
        "INSERT INTO tokens (id, token_hash, user_id, client_type, scopes, expires_at) \
         VALUES (gen_random_uuid(), '\\x00', gen_random_uuid(), 'NHS', '{}', now())",
    ] {
        let error = client.batch_execute(statement).await.unwrap_err();
        let code = error.code().cloned();
        assert!(
            code == Some(SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {error:?}"
        );
    }
    let head: Vec<u8> = app
        .query("SELECT last_hash FROM streams WHERE stream_id = $1", &[&id])
        .await[0]
        .get(0);
    let last: Vec<u8> = app
        .query(
            "SELECT hash FROM events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1",
            &[&id],
        )
        .await[0]
        .get(0);
    assert_eq!(head, last, "the owner's trigger keeps the stream's head");
    drop(client);
    assert!(
        db::check_runtime_role(&runtime, false, Duration::from_secs(5))
            .await
            .is_ok(),
        "the runtime role passes the start-up check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_refuse_a_privileged_role_unless_allowed() {
    let app = TestApp::spawn_without_worker().await;
    let owner = db::pool(&app.config.migration_database_url, 1).unwrap();
    let refused = db::check_runtime_role(&owner, false, Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("refusing to start"), "{refused}");
    assert!(refused.contains("ALLOW_PRIVILEGED_DB_ROLE"), "{refused}");
    assert!(
        db::check_runtime_role(&owner, true, Duration::from_secs(5))
            .await
            .is_ok(),
        "ALLOW_PRIVILEGED_DB_ROLE=true lets it run"
    );
}
