//! `db::Shared`: statements of concurrent callers pipelined on a few connections of a pool, each still its
//! own transaction, and a connection whose backend went away replaced by the next caller, against the real
//! PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::{collections::HashSet, time::Duration};

use ehealth_infra::db::Shared;
use ehealth_tests::{wait_for, TestApp};

/// `SELECT pg_backend_pid(), 10 / $1`: the backend that ran it, or the statement's error.
async fn backend_dividing_by(shared: &Shared, divisor: i32) -> Result<i32, String> {
    let client = shared.get().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one("SELECT pg_backend_pid(), 10 / $1::int", &[&divisor])
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        })?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_statements_share_one_backend_and_a_failing_one_fails_alone() {
    let app = TestApp::spawn_without_worker().await;
    let shared = Shared::new(app.pool.clone(), 1);
    let answers = futures_util::future::join_all(
        (0..64).map(|i| backend_dividing_by(&shared, if i == 17 { 0 } else { 1 })),
    )
    .await;
    let failed: Vec<usize> = (0..answers.len())
        .filter(|&i| answers[i].is_err())
        .collect();
    assert_eq!(failed, [17], "only the division by zero fails: {answers:?}");
    assert!(answers[17]
        .as_ref()
        .unwrap_err()
        .contains("division by zero"));
    let backends: HashSet<i32> = answers.into_iter().flatten().collect();
    assert_eq!(backends.len(), 1, "63 statements on one connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_are_spread_over_the_shared_connections_and_none_is_a_transaction_left_open() {
    let app = TestApp::spawn_without_worker().await;
    let shared = Shared::new(app.pool.clone(), 3);
    let mut backends = HashSet::new();
    for _ in 0..6 {
        backends.insert(backend_dividing_by(&shared, 1).await.unwrap());
    }
    assert_eq!(
        backends.len(),
        3,
        "the callers take the three slots in turn"
    );
    // Each statement committed on its own: a write through a shared connection is seen at once elsewhere.
    let client = shared.get().await.unwrap();
    client
        .batch_execute("CREATE TABLE shared_probe (n int); INSERT INTO shared_probe VALUES (1)")
        .await
        .unwrap();
    let other = app.pool.get().await.unwrap();
    let row = other
        .query_one("SELECT count(*) FROM shared_probe", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_connection_whose_backend_was_terminated_is_replaced_by_the_next_caller() {
    let app = TestApp::spawn_without_worker().await;
    let shared = Shared::new(app.pool.clone(), 1);
    let first = backend_dividing_by(&shared, 1).await.unwrap();
    let admin = app.pool.get().await.unwrap();
    let terminated: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&first])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);
    // The statements sent before the client has seen the connection close fail; then the slot reconnects.
    let next = wait_for(Duration::from_secs(10), || async {
        backend_dividing_by(&shared, 1).await.ok()
    })
    .await
    .expect("a new connection answers");
    assert_ne!(next, first, "a new backend");
    assert_eq!(backend_dividing_by(&shared, 1).await.unwrap(), next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_shared_connections_every_caller_has_a_connection_of_its_own() {
    let app = TestApp::spawn_without_worker().await;
    let shared = Shared::new(app.pool.clone(), 0);
    let first = shared.get().await.unwrap();
    let second = shared.get().await.unwrap();
    let pid = |row: tokio_postgres::Row| row.get::<_, i32>(0);
    let a = pid(first
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap());
    let b = pid(second
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap());
    assert_ne!(a, b, "two connections held at once are two backends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_do_not_queue_behind_a_connection_being_opened_to_a_database_that_does_not_answer()
{
    // A "database" that accepts connections and never answers: every connection attempt takes the pool's
    // whole create timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let url = format!("postgres://nobody@127.0.0.1:{port}/nothing");
    let pool = ehealth_infra::db::pool(&url, 16).unwrap();
    let shared = Shared::new(pool, 1);
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all((0..8).map(|_| shared.get())).await;
    let took = started.elapsed();
    held.abort();
    assert!(answers.iter().all(Result::is_err), "nobody answered");
    // Each attempt is bounded by the create timeout (2 s); queued one behind another on the slot, the eighth
    // would have waited eight of them.
    let one = ehealth_infra::db::CONNECT_TIMEOUT;
    assert!(
        took < one * 3,
        "8 callers took {took:?}: they queued behind one connection attempt"
    );
}
