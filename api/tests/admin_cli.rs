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

    /// Runs a call that must fail: non-zero exit, nothing on stdout, `message` on stderr.
    #[track_caller]
    fn fails(&self, args: &[&str], message: &str) {
        let output = self.admin(args);
        assert!(!output.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?} printed on stdout");
    }

    /// Runs SQL as the owner.
    fn sql(&self, statement: &str) {
        let url = self.url.clone();
        let statement = statement.to_owned();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                client.batch_execute(&statement).await.unwrap();
            });
        })
        .join()
        .unwrap();
    }

    /// A job row as intake writes it, then as it ended: `status`, accepted `age` ago (an SQL interval),
    /// ended by `ended_by` with `detail`; `hash` is its command's fingerprint.
    fn job(&self, job: TestJob<'_>) -> Uuid {
        let id = Uuid::new_v4();
        let ended = job.status != "pending";
        let quote = |v: Option<&str>| {
            v.map_or("NULL".to_owned(), |v| {
                format!("'{}'", v.replace('\'', "''"))
            })
        };
        self.sql(&format!(
            "INSERT INTO jobs (id, type, status, status_code, response, stream_type, stream_id, command, actor, \
               owner_legal_entity_id, command_hash, request_id, eta, inserted_at, updated_at, finished_at, \
               ended_by, error_detail) \
             VALUES ('{id}', '{job_type}', '{status}', {code}, {response}, 'service_request', '{stream}', \
               '{{\"action\": \"release\"}}', '{{\"user_id\": \"{OWNER}\", \"legal_entity_id\": \"{OWNER}\", \
               \"client_type\": \"MSP\"}}', '{OWNER}', '{hash}', 'req-{id}', now(), now() - interval '{age}', \
               now() - interval '{age}', {finished}, {ended_by}, {detail})",
            job_type = job.job_type,
            status = job.status,
            code = if ended { "500" } else { "NULL" },
            response = if ended {
                "'{\"type\": \"internal_error\", \"message\": \"Internal server error\"}'"
            } else {
                "NULL"
            },
            stream = job.stream_id.unwrap_or_else(Uuid::new_v4),
            hash = job.hash.map_or_else(|| id.to_string(), str::to_owned),
            age = job.age,
            finished = if ended { format!("now() - interval '{}'", job.age) } else { "NULL".to_owned() },
            ended_by = quote(job.ended_by),
            detail = quote(job.detail),
        ));
        id
    }
}

/// The legal entity every inserted job belongs to.
const OWNER: &str = "00000000-0000-4000-8000-000000000001";

/// A job for [`Db::job`].
#[derive(Clone, Copy)]
struct TestJob<'a> {
    status: &'a str,
    job_type: &'a str,
    age: &'a str,
    ended_by: Option<&'a str>,
    detail: Option<&'a str>,
    hash: Option<&'a str>,
    stream_id: Option<Uuid>,
}

impl Default for TestJob<'_> {
    fn default() -> Self {
        Self {
            status: "processed",
            job_type: "service_request.release",
            age: "1 second",
            ended_by: None,
            detail: None,
            hash: None,
            stream_id: None,
        }
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap().to_owned())
        .collect()
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
    assert!(token["id"].as_str().unwrap().parse::<Uuid>().is_ok());
    let key = db.json(&["api-key", "issue", "--name", "MIS"]);
    assert!(key["api_key"].as_str().unwrap().len() >= 40);
    assert!(key["id"].as_str().unwrap().parse::<Uuid>().is_ok());
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
                "job:read",
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
    let id = Uuid::new_v4();
    append_three(pool, id, None).await;
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

#[test]
fn every_new_argument_is_checked_before_anything_runs() {
    let db = Db::new();
    db.json(&["migrate"]);
    let unknown = Uuid::new_v4().to_string();
    let user = &["--user", unknown.as_str()];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [
                &["token", "issue"],
                &user[..],
                &["--client-type", "MSP", "--scopes", "job:read job:write"],
            ]
            .concat(),
            "unknown scope 'job:write'",
        ),
        (
            [
                &["token", "issue"],
                &user[..],
                &["--client-type", "MSP", "--scopes", " "],
            ]
            .concat(),
            "name at least one scope",
        ),
        (
            vec!["jobs", "list", "--status", "done"],
            "invalid value 'done' for '--status",
        ),
        (
            vec!["jobs", "list", "--type", "service_request.delete"],
            "invalid value 'service_request.delete' for '--type",
        ),
        (
            vec!["jobs", "list", "--older-than", "10x"],
            "expected a positive number followed by s, m, h or d",
        ),
        (
            vec!["jobs", "list", "--older-than", "0h"],
            "expected a positive number",
        ),
        (vec!["jobs", "list", "--limit", "0"], "0 is not in 1..=1000"),
        (
            vec!["jobs", "list", "--limit", "1001"],
            "1001 is not in 1..=1000",
        ),
        (
            vec!["jobs", "show", "not-a-uuid"],
            "invalid value 'not-a-uuid'",
        ),
        (vec!["jobs", "show", &unknown], "does not exist"),
        (vec!["jobs", "retry", &unknown], "does not exist"),
        (
            vec!["dead-letters", "list", "--limit", "5000"],
            "5000 is not in 1..=1000",
        ),
        (
            vec!["dead-letters", "requeue"],
            "the following required arguments were not provided",
        ),
        (
            vec!["dead-letters", "requeue", "--all", "--id", &unknown],
            "cannot be used with",
        ),
        (
            vec!["dead-letters", "requeue", "--id", &unknown],
            "does not exist",
        ),
        (
            vec!["token", "revoke"],
            "the following required arguments were not provided",
        ),
        (
            vec!["token", "revoke", &unknown, "--token", "x"],
            "cannot be used with",
        ),
        (vec!["token", "revoke", &unknown], "does not exist"),
        (
            vec!["token", "revoke", "--token", "not a token anyone has"],
            "no token has this secret",
        ),
        (vec!["token", "list", "--user", &unknown], "does not exist"),
        (vec!["api-key", "revoke", &unknown], "does not exist"),
        (vec!["user", "deactivate", &unknown], "does not exist"),
        (vec!["legal-entity", "show", &unknown], "does not exist"),
    ];
    for (args, message) in cases {
        db.fails(&args, message);
    }
}

#[test]
fn an_operator_lists_tokens_and_api_keys_without_secrets_and_revokes_them() {
    let db = Db::new();
    db.json(&["migrate"]);
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
    let user = db.json(&["user", "create", "--legal-entity", &le_id])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    db.json(&["user", "create", "--legal-entity", &le_id, "--inactive"]);
    let issue = || {
        db.json(&[
            "token",
            "issue",
            "--user",
            &user,
            "--client-type",
            "MSP",
            "--scopes",
            "job:read audit:read",
        ])
    };
    let (first, second, third) = (issue(), issue(), issue());

    let listed = db.admin(&["token", "list", "--user", &user]);
    let text = String::from_utf8(listed.stdout).unwrap();
    for token in [&first, &second, &third] {
        assert!(
            !text.contains(token["token"].as_str().unwrap()),
            "a secret was listed: {text}"
        );
    }
    assert!(!text.contains("hash"), "{text}");
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed["count"], 3);
    assert_eq!(listed["tokens"][0]["id"], third["id"], "newest first");
    assert_eq!(listed["tokens"][0]["status"], "active");
    assert_eq!(
        listed["tokens"][0]["scopes"],
        serde_json::json!(["job:read", "audit:read"])
    );

    // By id, by the secret, and by the secret read from stdin.
    let revoked = db.json(&["token", "revoke", first["id"].as_str().unwrap()]);
    assert_eq!(
        (&revoked["status"], revoked["revoked_at"].is_string()),
        (&"revoked".into(), true)
    );
    assert!(!revoked
        .to_string()
        .contains(first["token"].as_str().unwrap()));
    let again = db.json(&["token", "revoke", first["id"].as_str().unwrap()]);
    assert_eq!(
        again["revoked_at"], revoked["revoked_at"],
        "revoking twice keeps the first time"
    );
    let revoked = db.json(&[
        "token",
        "revoke",
        "--token",
        second["token"].as_str().unwrap(),
    ]);
    assert_eq!(revoked["id"], second["id"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ehealth-admin"))
        .args(["token", "revoke", "--token", "-"])
        .env("MIGRATION_DATABASE_URL", &db.url)
        .env("DATABASE_URL", db.runtime_url())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    writeln!(
        child.stdin.take().unwrap(),
        "{}",
        third["token"].as_str().unwrap()
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let revoked: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(revoked["id"], third["id"]);
    let listed = db.json(&["token", "list", "--user", &user]);
    assert!(
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "revoked"),
        "{listed}"
    );

    let key = db.json(&["api-key", "issue", "--name", "MIS one"]);
    db.json(&["api-key", "issue", "--name", "MIS two"]);
    let listed = db.admin(&["api-key", "list"]);
    let text = String::from_utf8(listed.stdout).unwrap();
    assert!(
        !text.contains(key["api_key"].as_str().unwrap()) && !text.contains("hash"),
        "{text}"
    );
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed["count"], 2);
    assert_eq!(listed["api_keys"][0]["name"], "MIS one");
    let revoked = db.json(&["api-key", "revoke", key["id"].as_str().unwrap()]);
    assert_eq!(
        (&revoked["name"], &revoked["is_active"]),
        (&"MIS one".into(), &false.into())
    );

    let shown = db.json(&["legal-entity", "show", &le_id]);
    assert_eq!(
        (
            &shown["status"],
            &shown["type"],
            &shown["users"],
            &shown["active_users"]
        ),
        (&"ACTIVE".into(), &"MSP".into(), &2.into(), &1.into()),
        "{shown}"
    );
    let deactivated = db.json(&["user", "deactivate", &user]);
    assert_eq!(
        deactivated,
        serde_json::json!({ "id": user, "is_active": false })
    );
    assert_eq!(
        db.json(&["legal-entity", "show", &le_id])["active_users"],
        0
    );
    assert_eq!(db.json(&["user", "activate", &user])["is_active"], true);
}

#[test]
fn an_operator_lists_and_shows_jobs_with_why_they_failed() {
    let db = Db::new();
    db.json(&["migrate"]);
    let old = db.job(TestJob {
        age: "3 hours",
        ..TestJob::default()
    });
    let dead = db.job(TestJob {
        status: "failed_with_error",
        job_type: "analysis_files.finalize",
        age: "2 hours",
        ended_by: Some("dead_letter"),
        detail: Some("dead-lettered: attempts exhausted (10 of 10)"),
        ..TestJob::default()
    });
    let stream = Uuid::new_v4();
    let pending = db.job(TestJob {
        status: "pending",
        age: "1 minute",
        stream_id: Some(stream),
        ..TestJob::default()
    });
    let recent = db.job(TestJob {
        ..TestJob::default()
    });

    let all = db.json(&["jobs", "list"]);
    assert_eq!(all["count"], 4);
    let newest_first: Vec<String> = [recent, pending, dead, old]
        .iter()
        .map(Uuid::to_string)
        .collect();
    assert_eq!(ids(&all), newest_first);
    let line = &all["jobs"][2];
    assert_eq!(
        (
            &line["type"],
            &line["status"],
            &line["status_code"],
            &line["attempts"]
        ),
        (
            &"analysis_files.finalize".into(),
            &"failed_with_error".into(),
            &500.into(),
            &0.into()
        )
    );
    assert_eq!(
        line["error_detail"],
        "dead-lettered: attempts exhausted (10 of 10)"
    );
    assert_eq!(line["ended_by"], "dead_letter");
    assert!(
        line["finished_at"].is_string()
            && line["inserted_at"].is_string()
            && line["updated_at"].is_string()
    );
    assert!(
        all["jobs"][0].get("error_detail").is_none(),
        "only when there is one"
    );

    assert_eq!(
        ids(&db.json(&["jobs", "list", "--status", "failed_with_error"])),
        [dead.to_string()]
    );
    assert_eq!(
        ids(&db.json(&["jobs", "list", "--status", "pending"])),
        [pending.to_string()]
    );
    assert_eq!(
        ids(&db.json(&["jobs", "list", "--type", "analysis_files.finalize"])),
        [dead.to_string()]
    );
    assert_eq!(
        ids(&db.json(&["jobs", "list", "--older-than", "90m"])),
        [dead.to_string(), old.to_string()]
    );
    assert_eq!(
        ids(&db.json(&[
            "jobs",
            "list",
            "--older-than",
            "30s",
            "--status",
            "processed"
        ])),
        [old.to_string()]
    );
    assert_eq!(
        ids(&db.json(&["jobs", "list", "--limit", "1"])),
        [recent.to_string()]
    );
    assert_eq!(db.json(&["jobs", "list", "--older-than", "3d"])["count"], 0);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pool = ehealth_infra::db::pool(&db.url, 2).unwrap();
    runtime.block_on(append_three(&pool, stream, Some(pending)));
    let shown = db.json(&["jobs", "show", &pending.to_string()]);
    assert_eq!(
        (&shown["status"], &shown["stream_id"]),
        (&"pending".into(), &stream.to_string().into())
    );
    assert_eq!(shown["command"], serde_json::json!({"action": "release"}));
    assert_eq!(shown["actor"]["legal_entity_id"], OWNER);
    assert_eq!(shown["request_id"], format!("req-{pending}"));
    assert_eq!(shown["retries"], 0);
    let events = shown["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{shown}");
    assert_eq!(events[0]["event_type"], "processing_started");
    assert_eq!(events[2]["stream_version"], 3);
    assert_eq!(events[1]["metadata"]["causation_id"], pending.to_string());

    let shown = db.json(&["jobs", "show", &dead.to_string()]);
    assert_eq!(
        shown["error_detail"],
        "dead-lettered: attempts exhausted (10 of 10)"
    );
    assert_eq!(shown["response"]["type"], "internal_error");
    assert_eq!(shown["events"], serde_json::json!([]));
}

#[test]
fn an_operator_runs_a_failed_with_error_job_again_and_only_such_a_job() {
    let db = Db::new();
    db.json(&["migrate"]);
    let failed = db.job(TestJob {
        status: "failed_with_error",
        age: "2 hours",
        ended_by: Some("sweeper"),
        detail: Some("pending past JOB_DEADLINE_SECONDS (3600 s)"),
        ..TestJob::default()
    });
    let retried = db.json(&["jobs", "retry", &failed.to_string()]);
    assert_eq!(
        (&retried["status"], &retried["retries"]),
        (&"pending".into(), &1.into()),
        "{retried}"
    );
    assert_eq!(retried["previous"]["ended_by"], "sweeper");
    assert_eq!(retried["previous"]["status_code"], 500);
    let shown = db.json(&["jobs", "show", &failed.to_string()]);
    assert_eq!(
        (
            &shown["status"],
            &shown["status_code"],
            &shown["response"],
            &shown["finished_at"]
        ),
        (&"pending".into(), &Value::Null, &Value::Null, &Value::Null),
        "{shown}"
    );
    assert_eq!(
        (&shown["error_detail"], &shown["ended_by"]),
        (&Value::Null, &Value::Null)
    );
    assert!(shown["retried_at"].is_string());
    assert!(
        shown["updated_at"].as_str() > shown["inserted_at"].as_str(),
        "updated now: {shown}"
    );
    // The command waits in the outbox for the worker's relay.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pool = ehealth_infra::db::pool(&db.url, 2).unwrap();
    let payload: Value = runtime.block_on(async {
        let client = pool.get().await.unwrap();
        client
            .query_one(
                "SELECT payload FROM outbox WHERE message_id = $1 AND exchange = 'commands' \
                 AND routing_key = 'command' AND published_at IS NULL",
                &[&retried["message_id"]
                    .as_str()
                    .unwrap()
                    .parse::<Uuid>()
                    .unwrap()],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(payload, serde_json::json!({ "job_id": failed }));

    db.fails(
        &["jobs", "retry", &failed.to_string()],
        "is pending: only a failed_with_error job can be run again",
    );
    let processed = db.job(TestJob::default());
    db.fails(
        &["jobs", "retry", &processed.to_string()],
        "is processed: only a failed_with_error job",
    );
    let rejected = db.job(TestJob {
        status: "failed",
        ..TestJob::default()
    });
    db.fails(
        &["jobs", "retry", &rejected.to_string()],
        "is failed: only a failed_with_error job",
    );

    // The same command of the same legal entity is pending as another job: that one gives the outcome.
    let twin = db.job(TestJob {
        status: "failed_with_error",
        hash: Some("same"),
        ..TestJob::default()
    });
    let pending = db.job(TestJob {
        status: "pending",
        hash: Some("same"),
        ..TestJob::default()
    });
    db.fails(
        &["jobs", "retry", &twin.to_string()],
        &format!("an identical command is already pending as job {pending}"),
    );
    assert_eq!(
        db.json(&["jobs", "show", &twin.to_string()])["status"],
        "failed_with_error"
    );
}

#[test]
fn dead_letters_are_listed_from_their_jobs_and_requeued() {
    let db = Db::new();
    db.json(&["migrate"]);
    let dead = |age, hash| {
        db.job(TestJob {
            status: "failed_with_error",
            age,
            ended_by: Some("dead_letter"),
            detail: Some("dead-lettered: the broker's delivery limit was reached"),
            hash,
            ..TestJob::default()
        })
    };
    let (first, second, third) = (
        dead("3 hours", None),
        dead("2 hours", None),
        dead("1 hour", Some("twin")),
    );
    let by_worker = db.job(TestJob {
        status: "failed_with_error",
        ended_by: Some("worker"),
        detail: Some("stored command is not valid: unknown variant"),
        ..TestJob::default()
    });
    let twin = db.job(TestJob {
        status: "pending",
        hash: Some("twin"),
        ..TestJob::default()
    });

    let listed = db.json(&["dead-letters", "list"]);
    assert_eq!(
        ids(&listed),
        [third, second, first].map(|id| id.to_string())
    );
    assert_eq!(
        listed["jobs"][0]["error_detail"],
        "dead-lettered: the broker's delivery limit was reached"
    );
    assert_eq!(
        ids(&db.json(&["dead-letters", "list", "--limit", "1"])),
        [third.to_string()]
    );

    db.fails(
        &["dead-letters", "requeue", "--id", &by_worker.to_string()],
        "was not ended by the dead-letter consumer",
    );
    let one = db.json(&["dead-letters", "requeue", "--id", &first.to_string()]);
    assert_eq!(
        (&one["count"], &one["requeued"][0]["id"]),
        (&1.into(), &first.to_string().into()),
        "{one}"
    );
    assert_eq!(
        ids(&db.json(&["dead-letters", "list"])),
        [third.to_string(), second.to_string()]
    );

    let all = db.json(&["dead-letters", "requeue", "--all"]);
    assert_eq!(all["count"], 1, "{all}");
    assert_eq!(all["requeued"][0]["id"], second.to_string());
    assert_eq!(all["skipped"][0]["id"], third.to_string());
    let reason = all["skipped"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("already pending as job {twin}")),
        "{reason}"
    );
    assert_eq!(
        ids(&db.json(&["dead-letters", "list"])),
        [third.to_string()]
    );
    assert_eq!(
        db.json(&["jobs", "show", &by_worker.to_string()])["status"],
        "failed_with_error"
    );
}

#[test]
fn every_binary_describes_itself_and_takes_no_stray_arguments() {
    let run = |binary: &str, args: &[&str]| Command::new(binary).args(args).output().unwrap();
    let admin = env!("CARGO_BIN_EXE_ehealth-admin");
    let help = run(admin, &["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success());
    assert!(text.contains("operator's tool of eHealth Jobs"), "{text}");
    assert!(
        !text.contains("HTTP api"),
        "the api crate's description: {text}"
    );
    for command in [
        "jobs",
        "dead-letters",
        "token",
        "api-key",
        "user",
        "legal-entity",
        "audit",
    ] {
        assert!(text.contains(command), "{command} missing from {text}");
    }
    let jobs_help = String::from_utf8(run(admin, &["jobs", "list", "--help"]).stdout).unwrap();
    assert!(
        jobs_help.contains("failed_with_error") && jobs_help.contains("service_request.release"),
        "{jobs_help}"
    );

    let api = env!("CARGO_BIN_EXE_ehealth-api");
    for flag in ["--help", "-h"] {
        let help = run(api, &[flag]);
        let text = String::from_utf8_lossy(&help.stdout);
        assert_eq!(help.status.code(), Some(0));
        assert!(
            text.starts_with("ehealth-api: the HTTP api of eHealth Jobs"),
            "{text}"
        );
        assert!(
            text.contains("README.md")
                && text.contains("DATABASE_URL")
                && text.contains("AMQP_URL"),
            "{text}"
        );
    }
    let version = run(api, &["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("ehealth-api {}\n", env!("CARGO_PKG_VERSION"))
    );
    let stray = run(api, &["--port", "80"]);
    assert_eq!(stray.status.code(), Some(2));
    assert!(stray.stdout.is_empty());
    assert!(String::from_utf8_lossy(&stray.stderr).contains("unexpected argument '--port'"));
}

#[test]
fn the_known_scopes_are_every_scope_a_route_asks_for() {
    use ehealth_api::routes::{analysis_files, audit, jobs, service_requests};
    let routes = [
        service_requests::SCOPE_WRITE,
        service_requests::SCOPE_USE,
        service_requests::SCOPE_READ,
        jobs::SCOPE,
        analysis_files::SCOPE,
        audit::SCOPE,
        ehealth_api::routes::media_links::SCOPE,
        ehealth_api::routes::patient_attachments::READ,
        ehealth_api::routes::patient_attachments::WRITE,
    ];
    let mut known = ehealth_infra::identity::SCOPES.to_vec();
    known.sort_unstable();
    let mut asked = routes.to_vec();
    asked.extend(ehealth_api::routes::contract_requests::SCOPES);
    asked.sort_unstable();
    assert_eq!(known, asked);
}

/// Appends three events to `stream` as job `causation` caused them.
async fn append_three(pool: &deadpool_postgres::Pool, stream: Uuid, causation: Option<Uuid>) {
    use ehealth_domain::service_request::{Event, ServiceRequestAggregate};
    use ehealth_infra::event_store::{self, Metadata};
    let client = pool.get().await.unwrap();
    let loaded = event_store::load::<ServiceRequestAggregate>(&client, stream)
        .await
        .unwrap();
    let metadata = Metadata {
        causation_id: causation,
        correlation_id: "admin cli test".to_owned(),
        actor_user_id: Uuid::new_v4(),
        legal_entity_id: Uuid::new_v4(),
        client_type: "MSP".to_owned(),
    };
    let events = [Event::ProcessingStarted, Event::Completed, Event::Released];
    event_store::append::<ServiceRequestAggregate>(&client, stream, &loaded, &events, &metadata)
        .await
        .unwrap();
}

#[test]
fn an_operator_imports_reference_data_and_creates_divisions_and_employees() {
    let db = Db::new();
    db.json(&["migrate"]);
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/reference-example.json"
    );
    let imported = db.json(&["reference", "import", example]);
    assert_eq!(
        imported,
        serde_json::json!({"legal_entities": 2, "divisions": 1, "employees": 2})
    );
    // Idempotent: the same file again changes nothing and says the same.
    assert_eq!(db.json(&["reference", "import", example]), imported);

    // A bad document names its entry and writes nothing of itself.
    let dir = std::env::temp_dir().join(format!("ehealth-reference-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    let (new_le, unknown) = (Uuid::new_v4(), Uuid::new_v4());
    std::fs::write(
        &bad,
        serde_json::json!({
            "legal_entities": [{"id": new_le, "name": "Нова", "edrpou": "12345678", "type": "MSP"}],
            "divisions": [
                {"id": Uuid::new_v4(), "legal_entity_id": new_le, "name": "A"},
                {"id": Uuid::new_v4(), "legal_entity_id": new_le, "name": "B"},
                {"id": Uuid::new_v4(), "legal_entity_id": unknown, "name": "C"},
            ],
        })
        .to_string(),
    )
    .unwrap();
    db.fails(
        &["reference", "import", bad.to_str().unwrap()],
        &format!("divisions[2].legal_entity_id: unknown legal entity {unknown}"),
    );
    db.fails(
        &["legal-entity", "show", &new_le.to_string()],
        "does not exist",
    );
    std::fs::write(&bad, r#"{"legal_entities":[{"id":"x"}]}"#).unwrap();
    db.fails(
        &["reference", "import", bad.to_str().unwrap()],
        "legal_entities[0].id",
    );
    db.fails(
        &["reference", "import", "/nonexistent/reference.json"],
        "cannot read",
    );

    let clinic = "df9f70ee-4b12-4740-b0f5-bb5aea116863";
    let division = db.json(&[
        "division",
        "create",
        "--legal-entity",
        clinic,
        "--name",
        "Відділення 2",
        "--phones",
        r#"[{"type":"MOBILE","number":"+380500000000"}]"#,
        "--working-hours",
        r#"{"mon":[["08.00","12.00"]]}"#,
        "--mountain-group",
    ]);
    assert!(division["id"].as_str().unwrap().parse::<Uuid>().is_ok());
    db.fails(
        &[
            "division",
            "create",
            "--legal-entity",
            &unknown.to_string(),
            "--name",
            "X",
        ],
        &format!("division.legal_entity_id: unknown legal entity {unknown}"),
    );
    db.fails(
        &[
            "division",
            "create",
            "--legal-entity",
            clinic,
            "--name",
            "X",
            "--working-hours",
            r#"{"monday":[]}"#,
        ],
        "division.working_hours.monday: is not a weekday",
    );
    let employee = db.json(&[
        "employee",
        "create",
        "--legal-entity",
        clinic,
        "--first-name",
        "Ганна",
        "--last-name",
        "Коваль",
        "--speciality",
        r#"{"speciality":"PEDIATRICIAN","level":"FIRST"}"#,
        "--position",
        "P2",
        "--employee-type",
        "DOCTOR",
        "--employee-status",
        "APPROVED",
    ]);
    let employee_id = employee["id"].as_str().unwrap().to_owned();
    // The employee is a user a token can be issued to.
    db.json(&[
        "token",
        "issue",
        "--user",
        &employee_id,
        "--client-type",
        "MSP",
        "--scopes",
        "contract_request:read",
    ]);
    db.fails(
        &[
            "employee",
            "create",
            "--legal-entity",
            clinic,
            "--first-name",
            "A",
            "--last-name",
            "B",
            "--speciality",
            "{",
        ],
        "--speciality is not valid JSON",
    );
    db.fails(
        &[
            "employee",
            "create",
            "--legal-entity",
            clinic,
            "--first-name",
            " ",
            "--last-name",
            "B",
        ],
        "employee.party.first_name: must not be empty",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
