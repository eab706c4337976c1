//! Prometheus metrics: one process-wide registry (the `metrics` facade with the Prometheus exporter's
//! recorder), the names and labels of every metric the service exports, and the gauges read from the
//! database and the broker when `/metrics` is scraped.
//!
//! Every metric is named here and only here, so that the api and the worker cannot drift apart and a reader
//! finds the whole list in one place (README "Operating" documents it). Labels carry bounded values only —
//! route templates, job types, statuses, queue names — never ids.
//!
//! The exporter's own HTTP listener is not used: the api and the worker render [`render`] from their own
//! axum routes. Gauges read from outside the process ([`refresh_database`], [`refresh_queues`]) are bounded
//! by [`REFRESH_TIMEOUT`] each, so a database or broker that does not answer costs a scrape at most that
//! long; a failed refresh keeps the previous values and counts `metrics_refresh_failures_total{source}`.

use std::{
    collections::HashMap,
    sync::{LazyLock, OnceLock, RwLock},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{amqp::Topology, health::BrokerProbe, StoreError};

/// The longest a scrape waits for one source of gauges (the database, the broker).
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(1);
/// How often histogram samples are folded into their buckets when nobody scrapes, so memory stays bounded.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// HTTP requests by `method`, `route` (the route template) and `status`.
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// HTTP request latency by `method`, `route` and `status`.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Commands accepted as new jobs, by `type`.
pub const JOBS_ACCEPTED: &str = "jobs_accepted_total";
/// Jobs ended, by `type` and `status` (`processed`, `failed`, `failed_with_error`).
pub const JOBS_FINISHED: &str = "jobs_finished_total";
/// Seconds from a job's acceptance (`inserted_at`) to its end, by `type`.
pub const JOB_LATENCY: &str = "job_latency_seconds";
/// Attempts parked in a retry queue, by `reason` (`fault`, `panic`).
pub const JOB_RETRIES: &str = "job_retries_total";
/// Handler panics caught by the worker.
pub const JOB_PANICS: &str = "job_panics_total";
/// Jobs ended by the dead-letter consumer.
pub const JOBS_DEAD_LETTERED: &str = "jobs_dead_lettered_total";
/// Appends that lost an optimistic-concurrency race and were decided again.
pub const EVENT_STORE_CONFLICTS: &str = "event_store_conflicts_total";
/// Messages ready in a queue (not those delivered and awaiting an acknowledgement), by `queue`.
pub const QUEUE_MESSAGES: &str = "rabbitmq_queue_messages";
/// Consumers attached to a queue, by `queue`.
pub const QUEUE_CONSUMERS: &str = "rabbitmq_queue_consumers";
/// Outbox rows not yet published.
pub const OUTBOX_UNPUBLISHED: &str = "outbox_unpublished";
/// Age of the oldest outbox row not yet published.
pub const OUTBOX_OLDEST_AGE: &str = "outbox_oldest_unpublished_age_seconds";
/// Age of the oldest committed event the audit feed cannot serve yet.
pub const FEED_LAG: &str = "feed_lag_seconds";
/// Pooled database connections by `state` (`in_use`, `idle`).
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
/// The pool's maximum size.
pub const DB_POOL_MAX: &str = "db_pool_max";
/// Gauge refreshes that failed or timed out, by `source` (`postgres`, `rabbitmq`).
pub const REFRESH_FAILURES: &str = "metrics_refresh_failures_total";

const HTTP_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const JOB_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];

// Unprepared on purpose: scrapes are rare, and a prepared statement per pooled connection buys nothing.
const OUTBOX_BACKLOG: &str = "SELECT count(*), \
     COALESCE(EXTRACT(EPOCH FROM now() - min(inserted_at))::float8, 0) \
     FROM outbox WHERE published_at IS NULL";
// Events whose transaction is not older than the oldest one still running are committed but not yet served
// by `event_store::read_feed`; the oldest of them has waited this long.
const FEED_LAG_SQL: &str =
    "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(recorded_at))::float8, 0) \
     FROM events WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot())";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's Prometheus recorder once (later calls return the same handle), describes every
/// metric, and starts a thread that folds histogram samples every [`UPKEEP_EVERY`]. Both binaries call it
/// at build time; tests that run the api and the worker in one process share the one registry.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics stays empty");
            }
            describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "metrics upkeep thread not started; scrapes still fold samples");
            }
            handle
        })
        .clone()
}

fn builder() -> PrometheusBuilder {
    let with_buckets = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(HTTP_REQUEST_DURATION.to_owned()),
            &HTTP_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(JOB_LATENCY.to_owned()), &JOB_BUCKETS)
        });
    // Fails only for empty bucket lists, which these are not; the fallback would render summaries.
    with_buckets.unwrap_or_else(|_| PrometheusBuilder::new())
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by method, route template and status."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency by method, route template and status."
    );
    describe_counter!(JOBS_ACCEPTED, "Commands accepted as new jobs, by job type.");
    describe_counter!(JOBS_FINISHED, "Jobs ended, by job type and final status.");
    describe_histogram!(
        JOB_LATENCY,
        Unit::Seconds,
        "Seconds from a job's acceptance to its end, by job type."
    );
    describe_counter!(
        JOB_RETRIES,
        "Command attempts parked for a retry, by reason."
    );
    describe_counter!(JOB_PANICS, "Handler panics caught by the worker.");
    describe_counter!(
        JOBS_DEAD_LETTERED,
        "Jobs ended failed_with_error by the dead-letter consumer."
    );
    describe_counter!(
        EVENT_STORE_CONFLICTS,
        "Appends that lost an optimistic-concurrency race and were decided again."
    );
    describe_gauge!(
        QUEUE_MESSAGES,
        "Messages ready in a queue (passive declare when scraped)."
    );
    describe_gauge!(
        QUEUE_CONSUMERS,
        "Consumers attached to a queue (passive declare when scraped)."
    );
    describe_gauge!(OUTBOX_UNPUBLISHED, "Outbox rows not yet published.");
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest outbox row not yet published (0 when none)."
    );
    describe_gauge!(
        FEED_LAG,
        Unit::Seconds,
        "Age of the oldest committed event the audit feed holds back because an older transaction is still running (0 when none)."
    );
    describe_gauge!(DB_POOL_CONNECTIONS, "Pooled database connections by state.");
    describe_gauge!(DB_POOL_MAX, "The database pool's maximum size.");
    describe_counter!(
        REFRESH_FAILURES,
        "Gauge refreshes at scrape time that failed or timed out, by source."
    );
}

/// The Prometheus text exposition of every metric (installing the recorder if nobody did).
pub fn render() -> String {
    let handle = install();
    handle.run_upkeep();
    handle.render()
}

/// The `method` label: the standard methods as they are, anything else `other`, so a client cannot grow the
/// label set.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Records one answered HTTP request. `route` must be the route template (`/Jobs/{id}`), never the path.
///
/// The counter and histogram of each (method, route, status) are registered once and kept: recording then
/// costs a read lock and two atomic updates, not the three label strings and two registry look-ups of
/// `counter!`/`histogram!` on every request. The set is bounded like the labels themselves (route
/// templates, methods, statuses).
pub fn http_request(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    let recorded = |series: &HttpSeries| {
        series.requests.increment(1);
        series.duration.record(elapsed.as_secs_f64());
    };
    let find = |routes: &HashMap<String, Vec<HttpSeries>>| {
        routes.get(route).and_then(|series| {
            series
                .iter()
                .find(|s| s.method == method && s.status == status)
                .cloned()
        })
    };
    let known = HTTP_SERIES.read().ok().and_then(|routes| find(&routes));
    if let Some(series) = known {
        return recorded(&series);
    }
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    let series = HttpSeries {
        method,
        status,
        requests: counter!(HTTP_REQUESTS, &labels),
        duration: histogram!(HTTP_REQUEST_DURATION, &labels),
    };
    recorded(&series);
    if let Ok(mut routes) = HTTP_SERIES.write() {
        if find(&routes).is_none() {
            routes.entry(route.to_owned()).or_default().push(series);
        }
    }
}

/// The registered metrics of one (method, route, status) of [`http_request`].
#[derive(Clone)]
struct HttpSeries {
    method: &'static str,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// [`HttpSeries`] by route template.
static HTTP_SERIES: LazyLock<RwLock<HashMap<String, Vec<HttpSeries>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// Records a command accepted as a new job (not a repeated one that returned an existing job).
pub fn job_accepted(job_type: &str) {
    counter!(JOBS_ACCEPTED, "type" => job_type.to_owned()).increment(1);
}

/// Records a job that ended with `status`, and its latency since it was accepted at `inserted_at`.
pub fn job_finished(job_type: &str, status: &str, inserted_at: DateTime<Utc>) {
    counter!(JOBS_FINISHED, "type" => job_type.to_owned(), "status" => status.to_owned())
        .increment(1);
    let latency = (Utc::now() - inserted_at).num_milliseconds().max(0) as f64 / 1000.0;
    histogram!(JOB_LATENCY, "type" => job_type.to_owned()).record(latency);
}

/// Why an attempt was parked for a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// A transient fault: database down, lost races, object store down.
    Fault,
    /// The handler panicked.
    Panic,
}

/// Records an attempt parked in a retry queue.
pub fn job_retried(reason: RetryReason) {
    let reason = match reason {
        RetryReason::Fault => "fault",
        RetryReason::Panic => "panic",
    };
    counter!(JOB_RETRIES, "reason" => reason).increment(1);
}

/// Records a caught handler panic.
pub fn job_panicked() {
    counter!(JOB_PANICS).increment(1);
}

/// Records a job ended by the dead-letter consumer.
pub fn job_dead_lettered() {
    counter!(JOBS_DEAD_LETTERED).increment(1);
}

/// Records an append that lost an optimistic-concurrency race.
pub fn event_store_conflict() {
    counter!(EVENT_STORE_CONFLICTS).increment(1);
}

/// Sets the pool gauges from the pool's own bookkeeping (no I/O).
pub fn record_pool(pool: &Pool) {
    let status = pool.status();
    let idle = status.available as f64;
    let in_use = status.size.saturating_sub(status.available) as f64;
    gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(in_use);
    gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(idle);
    gauge!(DB_POOL_MAX).set(status.max_size as f64);
}

/// What [`refresh_database`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseGauges {
    /// The outbox backlog (the worker, whose relay drains it).
    pub outbox: bool,
    /// The audit feed's lag (the api, which serves the feed).
    pub feed_lag: bool,
}

/// Reads the chosen gauges from the database within [`REFRESH_TIMEOUT`] and sets them, with the pool
/// gauges. On failure the previous values stay and `metrics_refresh_failures_total{source="postgres"}` counts.
pub async fn refresh_database(pool: &Pool, gauges: DatabaseGauges) {
    record_pool(pool);
    if !gauges.outbox && !gauges.feed_lag {
        return;
    }
    let read = async {
        let client = pool.get().await?;
        if gauges.outbox {
            let row = client.query_one(OUTBOX_BACKLOG, &[]).await?;
            gauge!(OUTBOX_UNPUBLISHED).set(row.get::<_, i64>(0) as f64);
            gauge!(OUTBOX_OLDEST_AGE).set(row.get::<_, f64>(1).max(0.0));
        }
        if gauges.feed_lag {
            let row = client.query_one(FEED_LAG_SQL, &[]).await?;
            gauge!(FEED_LAG).set(row.get::<_, f64>(0).max(0.0));
        }
        Ok::<_, StoreError>(())
    };
    let failure = match tokio::time::timeout(REFRESH_TIMEOUT, read).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {REFRESH_TIMEOUT:?}"),
    };
    tracing::debug!(error = %failure, "database gauges not refreshed");
    counter!(REFRESH_FAILURES, "source" => "postgres").increment(1);
}

/// Reads the depth of the command queue, the dead-letter queue and the unrouted-events queue with passive
/// declares over `broker`'s connection, within [`REFRESH_TIMEOUT`], and sets `rabbitmq_queue_messages` and
/// `rabbitmq_queue_consumers`. A queue that does not exist yet is left out.
pub async fn refresh_queues(broker: &BrokerProbe, topology: &Topology) {
    let queues = [
        topology.commands(),
        topology.dead_queue(),
        topology.unrouted_events(),
    ];
    let started = Instant::now();
    match broker.queue_states(&queues, REFRESH_TIMEOUT).await {
        Ok(states) => {
            for (queue, state) in states {
                gauge!(QUEUE_MESSAGES, "queue" => queue.clone()).set(f64::from(state.messages));
                gauge!(QUEUE_CONSUMERS, "queue" => queue).set(f64::from(state.consumers));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, elapsed_ms = started.elapsed().as_millis() as u64,
                "queue gauges not refreshed");
            counter!(REFRESH_FAILURES, "source" => "rabbitmq").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label_and_counters_render_with_their_labels() {
        assert_eq!(method_label("PATCH"), "PATCH");
        assert_eq!(method_label("BREW"), "other");
        install();
        http_request("GET", "/Jobs/{id}", 200, Duration::from_millis(3));
        http_request("GET", "/Jobs/{id}", 200, Duration::from_millis(4));
        job_finished("service_request.create", "processed", Utc::now());
        let text = render();
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="/Jobs/{id}",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains("http_request_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(text.contains("job_latency_seconds_bucket{"), "{text}");
        assert!(text.contains("# HELP jobs_finished_total"), "{text}");
    }
}
