//! Test databases: one migrated template per migration set, cloned for every test.

use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;
use uuid::Uuid;

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The runtime role the services connect as in tests (created by the template's migration).
pub const RUNTIME_ROLE: &str = "ehealth_app";

/// The URL of database `name` on the admin connection's server, as the owner (the admin connection's user).
pub fn database_url(name: &str) -> String {
    url_as(name, None)
}

/// The URL of database `name` as the least-privilege runtime role, as the api and worker connect.
pub fn runtime_database_url(name: &str) -> String {
    url_as(name, Some(RUNTIME_ROLE))
}

fn url_as(name: &str, role: Option<&str>) -> String {
    let mut config: tokio_postgres::Config = admin_url().parse().unwrap();
    config.dbname(name);
    let user = role.or(config.get_user()).unwrap_or("postgres").to_owned();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let password = config
        .get_password()
        .filter(|_| role.is_none())
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    format!("postgres://{user}{password}@{host}:{port}/{name}")
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&admin_url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The template's name changes with the migrations, so a changed schema gets a fresh template.
fn template_name() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.file_name().unwrap().to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).unwrap());
    }
    // The runtime role's grants are made by the migration step too.
    hasher.update(format!("{:?}", ehealth_infra::db::RUNTIME_GRANTS).as_bytes());
    format!("ehealth_template_{}", &hex::encode(hasher.finalize())[..12])
}

/// Creates a database for one test, cloned from the migrated template (built once, under an advisory lock
/// shared by every test process).
pub async fn create_test_database() -> String {
    let template = template_name();
    let client = admin().await;
    client
        .execute("SELECT pg_advisory_lock(hashtext($1))", &[&template])
        .await
        .unwrap();
    let ready = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate",
            &[&template],
        )
        .await
        .unwrap()
        .is_some();
    if !ready {
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{template}\" WITH (FORCE)"
            ))
            .await
            .unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE \"{template}\""))
            .await
            .unwrap();
        ehealth_infra::db::migrate(&database_url(&template), &runtime_database_url(&template))
            .await
            .unwrap();
        client
            .batch_execute(&format!("ALTER DATABASE \"{template}\" IS_TEMPLATE true"))
            .await
            .unwrap();
    }
    client
        .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&template])
        .await
        .unwrap();
    let name = format!("ehealth_test_{}", Uuid::new_v4().simple());
    client
        .batch_execute(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        ))
        .await
        .unwrap();
    name
}

/// Drops a test database, disconnecting whoever is still connected.
pub async fn drop_test_database(name: &str) {
    let client = admin().await;
    let _ = client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
}
