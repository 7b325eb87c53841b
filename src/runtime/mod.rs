//! The job runtime: creates jobs, runs their optimizers, owns their lifecycle (deadline, cancel,
//! shutdown, TTL reaping, idempotency) and their event logs, and serves watchers with resume.
//! Transports call it; it knows nothing about HTTP or gRPC.

mod append;
mod batch;
mod config;
mod control;
mod create;
mod event_log;
mod reaper;
mod recovery;
mod replica;
mod run;
mod store_health;
mod watch;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::job::ErrorResult;
use crate::domain::{
    Event, EventPayload, JobId, JobRecord, JobResult, JobSpec, JobStatus, Mode, now_epoch_s,
};
use crate::error::{Error, Result};
use crate::optimizer::{EventSink, JobContext, OptimizeError, Optimizer, PartialJob, Stopped};
use crate::store::{Claimed, Fence, JobStore, JobUpdate, ListJobsQuery, PendingEvent, WriteBatch};

use append::{Transition, apply_terminal};
pub use config::{BackpressurePolicy, ReplicaConfig, RetentionConfig, RuntimeConfig, WatchConfig};
pub use create::Created;
use event_log::{HaltReason, LiveJob};
pub use store_health::Problems as StoreProblems;
use store_health::StoreHealth;
pub use watch::WatchStream;
use writer::EventWriter;

use crate::domain::limits::{DEFAULT_PAGE_SIZE, MAX_JOBS_PAGE};

/// A page of jobs.
#[derive(Debug, Clone)]
pub struct JobPage {
    pub jobs: Vec<JobRecord>,
    /// Offset of the next page, `None` on the last one.
    pub next_offset: Option<usize>,
}

/// Handle to the runtime; cheap to clone.
#[derive(Clone)]
pub struct JobRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: RuntimeConfig,
    store: Arc<dyn JobStore>,
    optimizers: HashMap<Mode, Arc<dyn Optimizer>>,
    /// Jobs pending or running in this process. A job leaves the map once its terminal event is
    /// durable; later readers go to the store.
    live: Mutex<HashMap<JobId, Arc<LiveJob>>>,
    writer: EventWriter,
    /// Job tasks; waited for on shutdown.
    tasks: TaskTracker,
    /// Everything else the runtime spawns: the reaper, the store monitor, the replica loops
    /// (notice listener and fan-out, heartbeat), watch pumps, and retries of a failed job's
    /// last write. Each ends on `stop` (a pump also when its watcher goes); shutdown cancels
    /// `stop` and waits for them.
    background: TaskTracker,
    /// Ends the background tasks; cancelled on shutdown.
    stop: CancellationToken,
    draining: AtomicBool,
    /// Whether the store takes writes (see [`store_health`]).
    health: Arc<StoreHealth>,
    /// This process as one replica among several on a shared store ([`replica`]).
    replica: replica::Replica,
}

impl JobRuntime {
    /// Builds the runtime, ends jobs a previous process left running, and starts the reaper.
    pub async fn start(
        config: RuntimeConfig,
        store: Arc<dyn JobStore>,
        optimizers: HashMap<Mode, Arc<dyn Optimizer>>,
    ) -> Result<JobRuntime> {
        let health = Arc::new(StoreHealth::default());
        let writer = EventWriter::spawn(
            store.clone(),
            store.shared(),
            writer::WRITER_QUEUE,
            health.clone(),
        );
        let replica = replica::Replica::new(&config.replica, store.shared());
        let runtime = JobRuntime {
            inner: Arc::new(Inner {
                replica,
                config,
                store,
                optimizers,
                live: Mutex::new(HashMap::new()),
                writer,
                tasks: TaskTracker::new(),
                background: TaskTracker::new(),
                stop: CancellationToken::new(),
                draining: AtomicBool::new(false),
                health,
            }),
        };
        // Start-up recovery: a claim round. On a store one process uses it takes every live job
        // (left by the previous process); on a shared one only jobs nobody holds a lease on.
        runtime.inner.claim_round(true).await?;
        runtime.inner.spawn_replica_loops();
        runtime.spawn_reaper();
        runtime.spawn_store_monitor();
        tracing::info!(replica = %runtime.inner.replica.id, shared = runtime.inner.replica.shared, "job runtime started");
        Ok(runtime)
    }

    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.inner.store
    }

    /// This process's owner id on job leases (`REPLICA_ID`, or a random one).
    pub fn replica_id(&self) -> &str {
        &self.inner.replica.id
    }

    /// False once shutdown has begun (readiness probes use it).
    pub fn is_accepting(&self) -> bool {
        !self.inner.draining.load(Ordering::SeqCst)
    }

    /// What keeps the store from taking writes, if anything (readiness turns off while it
    /// lasts).
    pub fn store_problems(&self) -> StoreProblems {
        self.inner.health.problems()
    }

    /// Changes of [`Self::store_problems`].
    pub fn subscribe_store_problems(&self) -> tokio::sync::watch::Receiver<StoreProblems> {
        self.inner.health.subscribe()
    }

    /// Watches the store's health until shutdown: probes a failing store, notices its SQLite
    /// files disappearing, and then stops every live job (each ends `store_unavailable`).
    fn spawn_store_monitor(&self) {
        let sqlite =
            (self.inner.store.kind() == "sqlite").then(|| self.inner.config.sqlite_file.clone());
        self.inner.background.spawn(store_health::monitor(
            self.inner.health.clone(),
            self.inner.store.clone(),
            sqlite,
            self.inner.stop.clone(),
        ));
        let inner = self.inner.clone();
        let mut problems = self.inner.health.subscribe();
        self.inner.background.spawn(async move {
            loop {
                tokio::select! {
                    _ = inner.stop.cancelled() => return,
                    changed = problems.changed() => if changed.is_err() { return },
                }
                let lost = problems.borrow_and_update().files.clone();
                if let Some(lost) = lost {
                    let jobs: Vec<Arc<LiveJob>> = inner.live_map().values().cloned().collect();
                    for job in jobs {
                        job.fail_store(&lost);
                    }
                }
            }
        });
    }

    /// The job's current state. Live jobs answer from memory, others from the store.
    pub async fn get(&self, job_id: &str) -> Result<JobRecord> {
        if let Some(job) = self.inner.live_job(job_id) {
            return Ok(job.state.lock().await.record.clone());
        }
        self.inner
            .store
            .get_job(job_id)
            .await?
            .ok_or_else(|| Error::JobNotFound(job_id.to_string()))
    }

    /// Jobs newest first; `page_size` 0 means [`DEFAULT_PAGE_SIZE`], capped at [`MAX_JOBS_PAGE`].
    pub async fn list(
        &self,
        statuses: Vec<JobStatus>,
        page_size: usize,
        offset: usize,
    ) -> Result<JobPage> {
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE as usize,
            n => n.min(MAX_JOBS_PAGE as usize),
        };
        let query = ListJobsQuery {
            statuses,
            limit: limit + 1,
            offset,
        };
        let mut jobs = self.inner.store.list_jobs(&query).await?;
        let next_offset = (jobs.len() > limit).then_some(offset + limit);
        jobs.truncate(limit);
        // Live jobs' statuses in the store can lag (running is written lazily): overlay them.
        for job in &mut jobs {
            if let Some(live) = self.inner.live_job(&job.id) {
                let current = live.state.lock().await.record.clone();
                job.status = current.status;
                job.updated_at = current.updated_at;
                job.progress = current.progress;
            }
        }
        Ok(JobPage { jobs, next_offset })
    }

    /// Deletes a job and its events, cancelling it first when it runs. Unknown ids are fine.
    pub async fn delete(&self, job_id: &str) -> Result<bool> {
        if let Some(job) = self.inner.live_job(job_id) {
            let _ = self.inner.terminate(&job, EventPayload::Cancelled {}).await;
        }
        self.inner.live_map().remove(job_id);
        Ok(self.inner.store.delete_job(job_id).await?)
    }

    /// Streams the events with id > `after_event_id`, then the live tail, ending after the
    /// terminal event. NOT_FOUND when the job is unknown.
    pub async fn watch(&self, job_id: &str, after_event_id: u64) -> Result<WatchStream> {
        watch::start(self.inner.clone(), job_id, after_event_id).await
    }

    /// Stops accepting jobs and waits up to `SHUTDOWN_GRACE_S` for job tasks to return.
    /// Resumable (GEPA) jobs are handed over: halted at their next safe point, checkpointed,
    /// given a `suspended` event and left `running` in the store, so the next start resumes
    /// them; paused jobs stay paused. Other jobs end with `shutdown` (with their best result so
    /// far when their optimizer saved one).
    pub async fn shutdown(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        let jobs: Vec<Arc<LiveJob>> = self.inner.live_map().values().cloned().collect();
        for job in jobs {
            let resumable = self.inner.resumable(&job).await;
            {
                let mut state = job.state.lock().await;
                match state.record.status {
                    JobStatus::Paused => continue,
                    JobStatus::Pending | JobStatus::Running if resumable => {
                        if state.halting.is_none() {
                            state.halting = Some(HaltReason::Suspend);
                        }
                        state.halt.cancel();
                        continue;
                    }
                    _ => {}
                }
            }
            let partial = self.inner.partial_result(&job, "shutdown").await;
            let _ = self
                .inner
                .terminate_with(
                    &job,
                    EventPayload::Shutdown {
                        reason: "shutdown".into(),
                    },
                    partial,
                )
                .await;
        }
        self.inner.tasks.close();
        let grace = self.inner.config.shutdown_grace;
        let drained = tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!("job tasks still running after the shutdown grace period");
        }
        // Hand-over done: other replicas take the jobs now, not after the leases expire.
        self.inner.release_leases().await;
        // Ends the background tasks, among them every watcher still following a live tail
        // (handed-over and paused jobs have no terminal event to end them).
        self.inner.stop.cancel();
        self.inner.background.close();
        if tokio::time::timeout(grace, self.inner.background.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks still running after the shutdown grace period");
        }
        // Every job task has returned, so nothing emits any more: the writer commits what is
        // queued and its thread ends. (Job tasks still running past the grace period keep it.)
        if drained {
            self.inner.writer.close().await;
        }
    }
}

/// How long after its claim an idempotency key must still name a job. A creation claims its key
/// and then writes the job through the event writer, normally within milliseconds; a key older
/// than this whose job does not exist was left by a crash or a failed insert (or names a job
/// already reaped), and is forgotten so a retry creates the job instead of naming a missing one.
const DANGLING_KEY_GRACE_S: f64 = 120.0;

/// How long [`JobRuntime::pause`] waits for the run to reach a safe point.
const PAUSE_WAIT: Duration = Duration::from_secs(60);

/// A pending job row named `id`, for the runtime's unit tests.
#[cfg(test)]
fn test_record(id: &str) -> JobRecord {
    JobRecord {
        id: id.into(),
        status: JobStatus::Pending,
        created_at: 1.0,
        updated_at: 1.0,
        spec: JobSpec::from_prompt("p"),
        result: None,
        last_event_id: 0,
        progress: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn a_key_left_dangling_by_a_crash_creates_the_job_on_retry() {
        let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
        let settings = Arc::new(Settings {
            job_reaper_interval_s: 0.05,
            ..Settings::default()
        });
        // Claimed 200 s ago by a process that died before writing the job: still unexpired.
        let now = now_epoch_s();
        let claimed_at = now - 200.0;
        store
            .claim_idempotency_key(
                "k",
                "lost",
                claimed_at,
                claimed_at + settings.idempotency_ttl_s,
            )
            .await
            .unwrap();
        let optimizers = crate::server::optimizers(&settings);
        let runtime = JobRuntime::start(settings.runtime(), store, optimizers)
            .await
            .unwrap();
        // The reaper sweeps on its first tick.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let created = runtime
            .create(JobSpec::from_prompt("p"), Some("k"))
            .await
            .unwrap();
        assert!(!created.replayed);
        assert_ne!(created.job_id, "lost");
        assert!(runtime.get(&created.job_id).await.is_ok());
        let again = runtime
            .create(JobSpec::from_prompt("p"), Some("k"))
            .await
            .unwrap();
        assert_eq!(again.job_id, created.job_id);
        assert!(again.replayed);
        runtime.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_ends_and_joins_every_task_the_runtime_spawned() {
        use futures_util::StreamExt;
        let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
        let settings = Arc::new(Settings {
            // A job that is still running when the server stops.
            default_mode_iteration_delay_ms: 60_000,
            ..Settings::default()
        });
        let optimizers = crate::server::optimizers(&settings);
        let runtime = JobRuntime::start(settings.runtime(), store, optimizers)
            .await
            .unwrap();
        let created = runtime
            .create(JobSpec::from_prompt("p"), None)
            .await
            .unwrap();
        let mut watch = runtime.watch(&created.job_id, 0).await.unwrap();
        assert!(
            !runtime.inner.background.is_empty(),
            "reaper, monitor, pump"
        );
        runtime.shutdown().await;
        assert!(runtime.inner.tasks.is_empty(), "job tasks returned");
        assert!(
            runtime.inner.background.is_empty(),
            "background tasks ended"
        );
        let writer_thread = runtime.inner.writer.thread.lock().unwrap().take();
        assert!(writer_thread.is_none(), "writer thread joined");
        let late = runtime.inner.writer.insert(test_record("late"), None).await;
        assert!(
            late.await.unwrap().is_err(),
            "a closed writer takes nothing"
        );
        // The watcher got everything up to the job's `shutdown` event, then its stream ended.
        let mut last = None;
        while let Some(event) = watch.next().await {
            last = Some(event);
        }
        assert!(matches!(
            last.as_deref().map(|e| &e.payload),
            Some(EventPayload::Shutdown { .. })
        ));
    }
}
