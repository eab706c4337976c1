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

    fn admin(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ehealth-admin"))
            .args(args)
            .env("DATABASE_URL", &self.url)
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
