//! `ehealth-admin` as an operator runs it: the real binary against a fresh database.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use serde_json::Value;
use uuid::Uuid;

struct Db {
    name: String,
    url: String,
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

impl Db {
    fn new() -> Self {
        let name = format!("ehealth_admin_test_{}", Uuid::new_v4().simple());
        let base = admin_url();
        let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
        Self { name, url }
    }

    /// The same database as the runtime role the services use.
    fn runtime_url(&self) -> String {
        let mut config: tokio_postgres::Config = self.url.parse().unwrap();
        config.user("ehealth_app");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!("postgres://ehealth_app@{host}:{port}/{}", self.name)
    }

    fn admin(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ehealth-admin"))
            .args(args)
            .env("MIGRATION_DATABASE_URL", &self.url)
            .env("DATABASE_URL", self.runtime_url())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = self.admin(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (client, connection) =
                    tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

#[test]
fn an_operator_creates_a_legal_entity_a_user_a_token_and_an_api_key() {
    let db = Db::new();
    assert!(db.json(&["migrate"])["applied"].as_u64().unwrap() >= 1);
    assert_eq!(
        db.json(&["migrate"])["applied"],
        0,
        "migrations are applied once"
    );

    let le = db.json(&[
        "legal-entity",
        "create",
        "--name",
        "Clinic",
        "--edrpou",
        "12345678",
        "--type",
        "MSP",
    ]);
    let le_id = le["id"].as_str().unwrap().to_owned();
    let user = db.json(&[
        "user",
        "create",
        "--legal-entity",
        &le_id,
        "--employee-type",
        "DOCTOR",
        "--employee-status",
        "APPROVED",
    ]);
    let user_id = user["id"].as_str().unwrap().to_owned();
    let token = db.json(&[
        "token",
        "issue",
        "--user",
        &user_id,
        "--client-type",
        "MSP",
        "--scopes",
        "job:read service_request:use",
        "--ttl-seconds",
        "60",
    ]);
    assert!(token["token"].as_str().unwrap().len() >= 40);
    assert!(token["expires_at"].is_string());
    let key = db.json(&["api-key", "issue", "--name", "MIS"]);
    assert!(key["api_key"].as_str().unwrap().len() >= 40);
    assert_eq!(
        db.json(&["legal-entity", "set-status", &le_id, "SUSPENDED"])["status"],
        "SUSPENDED"
    );
    assert_eq!(db.json(&["projections", "rebuild"])["streams"], 0);
}

#[test]
fn bad_input_exits_non_zero_with_a_clear_message() {
    let db = Db::new();
    db.json(&["migrate"]);
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "legal-entity",
                "create",
                "--name",
                "C",
                "--edrpou",
                "12",
                "--type",
                "MSP",
            ],
            "--edrpou must be 8 to 10 digits",
        ),
        (
            &[
                "legal-entity",
                "set-status",
                &Uuid::new_v4().to_string(),
                "ACTIVE",
            ],
            "does not exist",
        ),
        (
            &[
                "user",
                "create",
                "--legal-entity",
                &Uuid::new_v4().to_string(),
            ],
            "does not exist",
        ),
        (
            &[
                "token",
                "issue",
                "--user",
                &Uuid::new_v4().to_string(),
                "--client-type",
                "MSP",
                "--scopes",
                "a",
            ],
            "does not exist",
        ),
        (
            &[
                "token",
                "issue",
                "--user",
                &Uuid::new_v4().to_string(),
                "--client-type",
                "ROBOT",
                "--scopes",
                "a",
            ],
            "invalid value 'ROBOT'",
        ),
    ];
    for (args, message) in cases {
        let output = db.admin(args);
        assert!(!output.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?} printed on stdout");
    }
}

/// `ehealth-admin audit verify` with `EVENT_CHAIN_KEY` set to `key`.
fn audit_verify(db: &Db, key: &str, stream: Option<Uuid>) -> (Option<i32>, Value) {
    let mut args = vec!["audit".to_owned(), "verify".to_owned()];
    args.extend(stream.map(|id| format!("--stream={id}")));
    let output = Command::new(env!("CARGO_BIN_EXE_ehealth-admin"))
        .args(&args)
        .env("MIGRATION_DATABASE_URL", &db.url)
        .env("DATABASE_URL", db.runtime_url())
        .env("EVENT_CHAIN_KEY", key)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), report)
}

/// Appends three events to a new stream the way the worker does, with this process's key (the development
/// key). The chain does not care what the events mean.
async fn stream_of_three(pool: &deadpool_postgres::Pool) -> Uuid {
    use ehealth_domain::service_request::{Event, ServiceRequestAggregate};
    use ehealth_infra::event_store::{self, Metadata};
    let id = Uuid::new_v4();
    let client = pool.get().await.unwrap();
    let loaded = event_store::load::<ServiceRequestAggregate>(&client, id)
        .await
        .unwrap();
    let metadata = Metadata {
        causation_id: None,
        correlation_id: "admin cli test".to_owned(),
        actor_user_id: Uuid::new_v4(),
        legal_entity_id: Uuid::new_v4(),
        client_type: "MSP".to_owned(),
    };
    let events = [Event::ProcessingStarted, Event::Completed, Event::Released];
    event_store::append::<ServiceRequestAggregate>(&client, id, &loaded, &events, &metadata)
        .await
        .unwrap();
    id
}

#[test]
fn audit_verify_reports_a_row_changed_by_the_owner_and_exits_non_zero() {
    use ehealth_infra::event_store::chain::DEVELOPMENT_CHAIN_KEY;
    let db = Db::new();
    db.json(&["migrate"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pool = ehealth_infra::db::pool(&db.url, 2).unwrap();
    let (tampered, intact) =
        runtime.block_on(async { (stream_of_three(&pool).await, stream_of_three(&pool).await) });

    let (code, report) = audit_verify(&db, DEVELOPMENT_CHAIN_KEY, None);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(
        report,
        serde_json::json!({"streams": 2, "events": 6, "invalid": []})
    );

    // The owner switches the append-only trigger off, changes a payload and switches it on again.
    runtime.block_on(async {
        let client = pool.get().await.unwrap();
        client
            .batch_execute(&format!(
                "ALTER TABLE events DISABLE TRIGGER events_refuse_update_delete; \
                 UPDATE events SET data = '{{\"forged\": true}}' \
                   WHERE stream_id = '{tampered}' AND stream_version = 2; \
                 ALTER TABLE events ENABLE TRIGGER events_refuse_update_delete;"
            ))
            .await
            .unwrap();
    });
    let (code, report) = audit_verify(&db, DEVELOPMENT_CHAIN_KEY, None);
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(
        (&report["streams"], &report["events"]),
        (&2.into(), &6.into())
    );
    let invalid = report["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 1, "{report}");
    assert_eq!(invalid[0]["stream_id"], tampered.to_string());
    assert_eq!(invalid[0]["version"], 2);
    assert!(invalid[0]["reason"]
        .as_str()
        .unwrap()
        .contains("link does not match"));

    let (code, report) = audit_verify(&db, DEVELOPMENT_CHAIN_KEY, Some(intact));
    assert_eq!((code, &report["events"]), (Some(0), &3.into()), "{report}");
    let (code, _) = audit_verify(&db, DEVELOPMENT_CHAIN_KEY, Some(tampered));
    assert_eq!(code, Some(2));

    // The key matters: with another one not a single link of the intact stream verifies.
    let (code, report) = audit_verify(&db, "another key of 16 bytes or more", Some(intact));
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(report["invalid"].as_array().unwrap().len(), 3, "{report}");

    let unknown = Uuid::new_v4();
    let output = db.admin(&["audit", "verify", "--stream", &unknown.to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
    assert!(output.stdout.is_empty());
}
