//! Finished-job notifications: requests that wait for their job (`Prefer: wait`) wake when it ends instead of
//! polling the `jobs` table.
//!
//! A trigger on `jobs` (`migrations/V3__job_finished_notify.sql`) runs `pg_notify('job_finished', id)` when a
//! job leaves `pending`, whoever finishes it; Postgres delivers it at commit. One [`Listener`] per process
//! holds a connection of its own (outside the pool) that `LISTEN`s on the channel and hands each job id to
//! the requests waiting for it ([`FinishedJobs::wait`]). When that connection dies the listener reconnects
//! with back-off, and meanwhile the waiters fall back to reading their job every
//! [`FALLBACK_POLL_INTERVAL`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tokio_postgres::{AsyncMessage, NoTls};
use uuid::Uuid;

use crate::{
    jobs::{self, Job, JobStatus},
    StoreError,
};

/// The channel the `jobs` trigger notifies, with the finished job's id as payload.
pub const CHANNEL: &str = "job_finished";
/// The `application_name` of the listening connection, so operators (and tests) can tell it apart.
pub const LISTENER_APPLICATION_NAME: &str = "ehealth-api job_finished listener";
/// How often a waiter reads its job while the listener is down: notifications sent meanwhile are lost.
pub const FALLBACK_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// The most requests that may wait at once; beyond it a request is answered without waiting, which keeps
/// the memory of the waiter table bounded.
pub const MAX_WAITERS: usize = 10_000;

const LISTEN: &str = "LISTEN job_finished";
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The waiters of one process and the state of its listener. Cheap to clone: clones share the waiters.
#[derive(Clone)]
pub struct FinishedJobs {
    shared: Arc<Shared>,
}

struct Shared {
    waiters: Mutex<Waiters>,
    /// `Some(generation)` while a `LISTEN` is active; the generation grows with every new connection, so a
    /// waiter can tell that notifications may have been lost in between.
    listening: watch::Sender<Option<u64>>,
    /// Set when the process shuts down: waiters answer at once instead of holding the shutdown.
    releasing: watch::Sender<bool>,
}

#[derive(Default)]
struct Waiters {
    by_job: HashMap<Uuid, Entry>,
    total: usize,
}

struct Entry {
    finished: watch::Sender<bool>,
    count: usize,
}

impl Default for FinishedJobs {
    fn default() -> Self {
        Self::new()
    }
}

impl FinishedJobs {
    /// No waiters, no listener: until [`FinishedJobs::spawn_listener`] runs, waiters poll.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                waiters: Mutex::new(Waiters::default()),
                listening: watch::Sender::new(None),
                releasing: watch::Sender::new(false),
            }),
        }
    }

    /// True while the listener's `LISTEN` is active.
    pub fn is_listening(&self) -> bool {
        self.shared.listening.borrow().is_some()
    }

    /// Ends every wait now and makes later waits return at once: a shutting-down process answers its waiting
    /// requests (202) rather than keep them, and the drain, for up to their whole wait.
    pub fn release_all(&self) {
        self.shared.releasing.send_replace(true);
    }

    /// Starts the listener on a connection of its own to `database_url`. It runs until the returned
    /// [`Listener`] is stopped or dropped, reconnecting with back-off whenever its connection fails.
    pub fn spawn_listener(&self, database_url: &str) -> Result<Listener, StoreError> {
        let mut pg: tokio_postgres::Config = database_url.parse()?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(crate::db::CONNECT_TIMEOUT);
        }
        pg.application_name(LISTENER_APPLICATION_NAME);
        // The connection is idle for long stretches: keepalives notice a peer that vanished silently.
        pg.keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(listen(Arc::clone(&self.shared), pg, stopped));
        Ok(Listener { stop, task })
    }

    /// Waits until `job` is no longer pending or `deadline` passes, and returns the job as last read (still
    /// pending when the deadline passed, the database failed, or too many requests wait already).
    ///
    /// The waiter is registered before the job is read again, so a notification that arrives between
    /// intake and the wait is not missed.
    pub async fn wait(&self, pool: &Pool, job: Job, deadline: Instant) -> Job {
        let Some(mut waiter) = self.subscribe(job.id) else {
            tracing::warn!(job_id = %job.id, "too many waiting requests: not waiting");
            return job;
        };
        let mut current = job;
        if *waiter.releasing.borrow_and_update() {
            return current;
        }
        let mut must_read = true;
        // The listener generation under which the job was last read.
        let mut read_under = None;
        loop {
            let listening = *waiter.listening.borrow_and_update();
            if must_read || (listening.is_some() && listening != read_under) {
                must_read = false;
                read_under = listening;
                match read(pool, current.id).await {
                    Ok(Some(job)) => current = job,
                    Ok(None) => return current,
                    Err(e) => {
                        tracing::warn!(job_id = %current.id, error = %e, "cannot read the awaited job");
                        return current;
                    }
                }
                if current.status != JobStatus::Pending {
                    return current;
                }
            }
            let fallback = async {
                match listening {
                    Some(_) => std::future::pending::<()>().await,
                    None => tokio::time::sleep(FALLBACK_POLL_INTERVAL).await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return current,
                _ = waiter.finished.changed() => must_read = true,
                _ = waiter.listening.changed() => {}
                _ = waiter.releasing.changed() => return current,
                () = fallback => must_read = true,
            }
        }
    }

    /// Registers interest in `job_id`; `None` when [`MAX_WAITERS`] requests wait already.
    fn subscribe(&self, job_id: Uuid) -> Option<Waiter> {
        let mut waiters = self.lock();
        if waiters.total >= MAX_WAITERS {
            return None;
        }
        waiters.total += 1;
        let entry = waiters.by_job.entry(job_id).or_insert_with(|| Entry {
            finished: watch::Sender::new(false),
            count: 0,
        });
        entry.count += 1;
        let finished = entry.finished.subscribe();
        drop(waiters);
        Some(Waiter {
            shared: Arc::clone(&self.shared),
            job_id,
            finished,
            listening: self.shared.listening.subscribe(),
            releasing: self.shared.releasing.subscribe(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.shared.lock()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        // The table stays consistent at every await-free step, so a panic elsewhere leaves it usable.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finished(&self, job_id: Uuid) {
        if let Some(entry) = self.lock().by_job.get(&job_id) {
            entry.finished.send_replace(true);
        }
    }
}

/// One waiting request's registration; dropping it (the request gave up or got its answer) removes it.
struct Waiter {
    shared: Arc<Shared>,
    job_id: Uuid,
    finished: watch::Receiver<bool>,
    listening: watch::Receiver<Option<u64>>,
    releasing: watch::Receiver<bool>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut waiters = self.shared.lock();
        waiters.total = waiters.total.saturating_sub(1);
        if let Some(entry) = waiters.by_job.get_mut(&self.job_id) {
            entry.count = entry.count.saturating_sub(1);
            if entry.count == 0 {
                waiters.by_job.remove(&self.job_id);
            }
        }
    }
}

async fn read(pool: &Pool, id: Uuid) -> Result<Option<Job>, StoreError> {
    let client = pool.get().await?;
    jobs::get(&client, id).await
}

/// The running listener task of a process.
pub struct Listener {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Stops listening and closes the connection; waiters fall back to polling.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the job_finished listener ended abnormally");
        }
    }
}

/// Listens until stopped: connect, `LISTEN`, forward notifications; on failure wait (growing back-off) and
/// connect again.
async fn listen(shared: Arc<Shared>, pg: tokio_postgres::Config, mut stop: watch::Receiver<bool>) {
    let mut backoff = FIRST_BACKOFF;
    let mut generation = 0;
    loop {
        generation += 1;
        let mut listened = false;
        let ended = tokio::select! {
            ended = listen_once(&shared, &pg, generation, &mut listened) => ended,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        shared.listening.send_replace(None);
        if listened {
            backoff = FIRST_BACKOFF;
        }
        match ended {
            Ok(()) => tracing::warn!("the job_finished listener's connection closed; reconnecting"),
            Err(e) => {
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "the job_finished listener failed; reconnecting");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    shared.listening.send_replace(None);
    tracing::info!("the job_finished listener stopped");
}

/// One connection's life: `Ok` when the server closed it, `Err` when it failed.
async fn listen_once(
    shared: &Shared,
    pg: &tokio_postgres::Config,
    generation: u64,
    listened: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = pg.connect(NoTls).await?;
    // Notifications only arrive through the connection's own message stream, which must also be driven
    // for the client's statements to make progress.
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let listen = client.batch_execute(LISTEN);
    tokio::pin!(listen);
    loop {
        tokio::select! {
            done = &mut listen => { done?; break; }
            message = messages.next() => match message {
                Some(message) => dispatch(shared, message?),
                None => return Ok(()),
            },
        }
    }
    *listened = true;
    shared.listening.send_replace(Some(generation));
    tracing::info!("listening for finished jobs");
    while let Some(message) = messages.next().await {
        dispatch(shared, message?);
    }
    Ok(())
}

fn dispatch(shared: &Shared, message: AsyncMessage) {
    match message {
        AsyncMessage::Notification(n) if n.channel() == CHANNEL => {
            match Uuid::parse_str(n.payload()) {
                Ok(job_id) => shared.finished(job_id),
                Err(_) => {
                    tracing::warn!(
                        payload = n.payload(),
                        "job_finished payload is not a job id"
                    )
                }
            }
        }
        AsyncMessage::Notice(notice) => {
            tracing::debug!(notice = %notice, "notice on the job_finished listener")
        }
        _ => {}
    }
}
