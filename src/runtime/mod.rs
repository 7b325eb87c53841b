//! The job runtime: creates jobs, runs their optimizers, owns their lifecycle (deadline, cancel,
//! shutdown, TTL reaping, idempotency) and their event logs, and serves watchers with resume.
//! Transports call it; it knows nothing about HTTP or gRPC.

mod control;
mod event_log;
mod reaper;
mod replica;
mod run;
mod store_health;
mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::domain::job::ErrorResult;
use crate::domain::{
    Event, EventPayload, JobId, JobRecord, JobResult, JobSpec, JobStatus, Mode, now_epoch_s,
};
use crate::error::{Error, Result};
use crate::optimizer::{EventSink, JobContext, OptimizeError, Optimizer, PartialJob, Stopped};
use crate::store::{
    Claimed, Fence, IdempotencyClaim, JobStore, JobUpdate, ListJobsQuery, PendingEvent, WriteBatch,
};

use event_log::{EventWriter, HaltReason, LiveJob};
pub use store_health::Problems as StoreProblems;
use store_health::StoreHealth;
pub use watch::WatchStream;

use crate::domain::limits::{DEFAULT_PAGE_SIZE, MAX_JOBS_PAGE};

/// The outcome of [`JobRuntime::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub job_id: JobId,
    /// True when an idempotency key matched an existing job and nothing was created.
    pub replayed: bool,
}

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
    settings: Arc<Settings>,
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
        settings: Arc<Settings>,
        store: Arc<dyn JobStore>,
        optimizers: HashMap<Mode, Arc<dyn Optimizer>>,
    ) -> Result<JobRuntime> {
        let health = Arc::new(StoreHealth::default());
        let writer = EventWriter::spawn(
            store.clone(),
            store.shared(),
            event_log::WRITER_QUEUE,
            health.clone(),
        );
        let replica = replica::Replica::new(&settings, store.shared());
        let runtime = JobRuntime {
            inner: Arc::new(Inner {
                replica,
                settings,
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

    pub fn settings(&self) -> &Arc<Settings> {
        &self.inner.settings
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
            (self.inner.store.kind() == "sqlite").then(|| self.inner.settings.sqlite_file());
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

    /// Creates a job (or returns the one an unexpired idempotency key names) and starts it.
    /// `spec` must already be validated.
    pub async fn create(&self, spec: JobSpec, idempotency_key: Option<&str>) -> Result<Created> {
        self.create_from(spec, idempotency_key, None).await
    }

    /// [`JobRuntime::create`] whose job starts from `checkpoint` (another job's, for
    /// `BranchJob`): it is stored for the new job before its run starts.
    pub async fn create_from(
        &self,
        spec: JobSpec,
        idempotency_key: Option<&str>,
        checkpoint: Option<&serde_json::Value>,
    ) -> Result<Created> {
        if !self.is_accepting() {
            return Err(Error::Unavailable("server is shutting down".into()));
        }
        if let Some(why) = self.inner.health.problems().describe() {
            return Err(Error::Unavailable(why));
        }
        let Some(optimizer) = self.inner.optimizers.get(&spec.mode) else {
            return Err(Error::invalid(
                &["mode"],
                "this mode is not available on this server",
            ));
        };
        self.admit(&spec)?;
        optimizer.admit(&spec)?;
        let job_id = uuid::Uuid::new_v4().to_string();
        let now = now_epoch_s();
        if let Some(key) = idempotency_key.filter(|k| !k.is_empty()) {
            let expires = now + self.inner.settings.idempotency_ttl_s;
            let hash = request_hash(&spec);
            match self
                .inner
                .store
                .claim_idempotency_key_for(key, &job_id, Some(&hash), now, expires)
                .await?
            {
                IdempotencyClaim::Existing(existing) => {
                    return Ok(Created {
                        job_id: existing,
                        replayed: true,
                    });
                }
                IdempotencyClaim::Conflict(existing) => {
                    return Err(Error::IdempotencyConflict {
                        key: key.to_string(),
                        job_id: existing,
                    });
                }
                IdempotencyClaim::Claimed => {}
            }
        }
        let record = JobRecord {
            id: job_id.clone(),
            status: JobStatus::Pending,
            created_at: now,
            updated_at: now,
            spec,
            result: None,
            last_event_id: 0,
            progress: Default::default(),
        };
        // On a shared store the job is inserted owned by this replica when it has room (it runs
        // here at once, and no other replica can claim it in between); otherwise it is queued for
        // any replica with room.
        let shared = self.inner.replica.shared;
        let runs_here = !shared || self.inner.has_capacity();
        let lease = (shared && runs_here).then(|| crate::store::NewLease {
            job_id: job_id.clone(),
            owner: self.inner.replica.id.clone(),
            until: now + self.inner.replica.lease_s,
        });
        let epoch = u64::from(lease.is_some());
        // Through the writer: concurrent creations share a commit with each other and with events.
        match self.inner.writer.insert(record.clone(), lease).await.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(Error::Store(err)),
            Err(_) => return Err(Error::Unavailable("server is shutting down".into())),
        }
        if let Some(checkpoint) = checkpoint
            && let Err(err) = self.inner.store.put_checkpoint(&job_id, checkpoint).await
        {
            // The job exists; it runs from its seed rather than not at all.
            tracing::warn!(job_id = %job_id, error = %err, "branch checkpoint not stored");
        }
        if !runs_here {
            if let Err(err) = self.inner.store.announce_claimable().await {
                tracing::warn!(error = %err, "claimable job not announced");
            }
            crate::metrics::global().jobs_created.inc();
            return Ok(Created {
                job_id,
                replayed: false,
            });
        }
        let spec = Arc::new(record.spec.clone());
        let job = Arc::new(LiveJob::claimed(
            record,
            self.inner.settings.sse_buffer_size,
            epoch,
        ));
        self.inner.live_map().insert(job_id.clone(), job.clone());
        crate::metrics::job_created();
        let inner = self.inner.clone();
        self.inner.tasks.spawn(tracing::Instrument::instrument(
            async move { inner.run_job(job, spec, false).await },
            // A child of the creating request's span, so a trace runs request → job.
            tracing::info_span!("job", otel.name = "job", job_id = %job_id),
        ));
        Ok(Created {
            job_id,
            replayed: false,
        })
    }

    /// Server-side limits of a validated request.
    fn admit(&self, spec: &JobSpec) -> Result<()> {
        let settings = &self.inner.settings;
        if let Some(wall) = spec.budget.max_wall_time_s
            && wall > settings.gepa_max_wall_time_s
        {
            return Err(Error::invalid(
                &["budget", "max_wall_time_s"],
                format!(
                    "max_wall_time_s must be <= {} (GEPA_MAX_WALL_TIME_S)",
                    settings.gepa_max_wall_time_s
                ),
            ));
        }
        Ok(())
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
        let grace = Duration::from_secs_f64(self.inner.settings.shutdown_grace_s.max(0.0));
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

impl Inner {
    /// Takes over a job a claim returned: a queued job (created where there was no room,
    /// never run) starts; a resumable one continues from its checkpoint (a `resumed
    /// {reason:"restart"}` event, ids continuing after the last stored one, no second
    /// `started`); a paused one becomes live here, still paused; any other gets exactly one
    /// terminal event (`shutdown {reason:"interrupted"}`) unless its log already has one.
    /// At start this is crash recovery: on a store one process uses, every job a previous
    /// process left live; on a shared one, jobs whose owner's lease expired or was released.
    async fn adopt(self: &Arc<Self>, claimed: Claimed) -> Result<()> {
        let Claimed {
            mut record,
            epoch,
            requested,
        } = claimed;
        if self.live_job(&record.id).is_some() {
            return Ok(());
        }
        let store = &self.store;
        let mut last_id = 0;
        let mut terminal: Option<EventPayload> = None;
        let mut progress = crate::domain::job::Progress::default();
        loop {
            let page = store.events_after(&record.id, last_id, 1000).await?;
            let Some(last) = page.last() else { break };
            last_id = last.id;
            for event in &page {
                progress.observe(&event.payload);
                if event.is_terminal() {
                    terminal = Some(event.payload.clone());
                }
            }
        }
        let resumable = self
            .optimizers
            .get(&record.spec.mode)
            .is_some_and(|o| o.resumable());
        let queued = self.replica.shared
            && record.status == JobStatus::Pending
            && last_id == 0
            && epoch == 1;
        let capacity = self.settings.sse_buffer_size;
        if terminal.is_none() && (queued || resumable) {
            record.last_event_id = last_id;
            record.progress = progress;
            let spec = Arc::new(record.spec.clone());
            let paused = record.status == JobStatus::Paused;
            let job = Arc::new(LiveJob::claimed(record, capacity, epoch));
            self.live_map().insert(job.id.clone(), job.clone());
            crate::metrics::global().job_queue_depth.inc();
            if let Some(command) = requested {
                self.spawn_command(job.id.clone(), command);
            }
            if queued {
                tracing::info!(job_id = %job.id, "claimed a queued job");
                self.spawn_run(job, spec, false);
            } else if paused {
                tracing::info!(job_id = %job.id, "paused job kept paused");
            } else {
                tracing::info!(job_id = %job.id, last_event_id = last_id, "resuming interrupted job");
                let resumed = EventPayload::Resumed {
                    reason: "restart".into(),
                };
                if let Ok((id, ack)) = self.enqueue(&job, resumed).await {
                    let _ = Inner::await_ack(&job, id, ack).await;
                }
                self.spawn_run(job, spec, true);
            }
            return Ok(());
        }
        // The terminal event and the final row commit together.
        let mut batch = WriteBatch::default();
        let payload = match terminal {
            Some(payload) => payload,
            None => {
                let payload = EventPayload::Shutdown {
                    reason: "interrupted".into(),
                };
                last_id += 1;
                batch.events.push(PendingEvent::rendered(Arc::new(Event {
                    id: last_id,
                    job_id: record.id.clone(),
                    ts: now_epoch_s(),
                    payload: payload.clone(),
                })));
                payload
            }
        };
        apply_terminal(&mut record, &payload, last_id, None);
        batch.updates.push(JobUpdate::of(&record));
        if self.replica.shared {
            batch.fences.push(Fence {
                job_id: record.id.clone(),
                epoch,
            });
        }
        let fenced = store
            .write_fenced(&batch, Box::pin(std::future::ready(())))
            .await?;
        if fenced.is_empty() {
            tracing::info!(job_id = %record.id, status = %record.status, "recovered interrupted job");
        }
        Ok(())
    }
}

/// How long after its claim an idempotency key must still name a job. A creation claims its key
/// and then writes the job through the event writer, normally within milliseconds; a key older
/// than this whose job does not exist was left by a crash or a failed insert (or names a job
/// already reaped), and is forgotten so a retry creates the job instead of naming a missing one.
const DANGLING_KEY_GRACE_S: f64 = 120.0;

/// How long [`JobRuntime::pause`] waits for the run to reach a safe point.
const PAUSE_WAIT: Duration = Duration::from_secs(60);

/// A hash of a validated request, remembered with its idempotency key: the same key with a
/// different request is a conflict. FNV-1a over the spec's JSON (stable across processes).
fn request_hash(spec: &JobSpec) -> String {
    let text = serde_json::to_string(spec).unwrap_or_default();
    format!(
        "{:016x}",
        crate::optimizer::gepa::state::fnv1a(&[text.as_str()])
    )
}

/// Puts a record in the terminal state a terminal payload implies. `partial` is the best
/// result so far of a job that ends without finishing (replaces the bare error result).
fn apply_terminal(
    record: &mut JobRecord,
    payload: &EventPayload,
    last_event_id: u64,
    partial: Option<JobResult>,
) {
    if let Some(status) = payload.terminal_status() {
        record.status = status;
    }
    record.updated_at = now_epoch_s();
    record.last_event_id = last_event_id;
    record.result = match payload {
        EventPayload::Finished(result) => Some(result.clone()),
        EventPayload::Failed { error, .. } => partial.or_else(|| {
            Some(JobResult::Error(ErrorResult {
                error: error.clone(),
            }))
        }),
        _ => partial.or_else(|| record.result.take()),
    };
    if let Some(progress) = record
        .result
        .as_ref()
        .and_then(crate::domain::job::Progress::from_result)
    {
        record.progress = progress;
    }
}

/// A state change that comes with an event (see [`Inner::enqueue_with`]).
#[derive(Default)]
struct Transition {
    /// The event is refused (`Stopped`) unless the job is in this status.
    require: Option<JobStatus>,
    /// A non-terminal status the job moves to (its row update commits with the event).
    status: Option<JobStatus>,
    /// A new run starts with it: a fresh halt token.
    fresh_run: bool,
    /// A terminal event's best-so-far result.
    result: Option<JobResult>,
}

impl Inner {
    fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Arc<LiveJob>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live_job(&self, job_id: &str) -> Option<Arc<LiveJob>> {
        self.live_map().get(job_id).cloned()
    }

    /// Appends one event to a live job's log. Returns its id once durable and published.
    /// Appends one event to a live job's log and waits until it is durable and published.
    async fn emit(&self, job: &Arc<LiveJob>, payload: EventPayload) -> Result<u64, Stopped> {
        let (id, ack) = self.enqueue(job, payload).await?;
        Self::await_ack(job, id, ack).await?;
        Ok(id)
    }

    /// Waits for an event's acknowledgement (its batch committed and published).
    async fn await_ack(job: &LiveJob, id: u64, ack: event_log::Ack) -> Result<(), Stopped> {
        let acked = ack.await;
        if job.is_fenced() {
            // Not written: another replica runs the job now.
            return Err(Stopped);
        }
        match acked {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                tracing::error!(job_id = %job.id, event_id = id, error = %err, "event not persisted");
                Ok(())
            }
            Err(_) => Err(Stopped),
        }
    }

    /// Assigns the next id and queues the event for the writer, in id order; returns the
    /// acknowledgement to wait for. Watchers see the event only once it is durable either way.
    async fn enqueue(
        &self,
        job: &Arc<LiveJob>,
        payload: EventPayload,
    ) -> Result<(u64, event_log::Ack), Stopped> {
        self.enqueue_with(job, payload, Transition::default()).await
    }

    /// [`Inner::enqueue`] with a state change decided under the job's lock.
    async fn enqueue_with(
        &self,
        job: &Arc<LiveJob>,
        payload: EventPayload,
        transition: Transition,
    ) -> Result<(u64, event_log::Ack), Stopped> {
        let render = self.store.keeps_rendered_data();
        let (id, ack) = {
            let mut state = job.state.lock().await;
            if job.is_fenced()
                || state.record.status.is_terminal()
                || transition
                    .require
                    .is_some_and(|required| state.record.status != required)
            {
                return Err(Stopped);
            }
            let id = state.next_id;
            state.next_id += 1;
            state.record.progress.observe(&payload);
            // A terminal event (or a status change) commits together with the job's row.
            let update = if payload.terminal_status().is_some() {
                apply_terminal(&mut state.record, &payload, id, transition.result);
                Some(JobUpdate::of(&state.record))
            } else if let Some(status) = transition.status {
                state.record.status = status;
                state.record.updated_at = now_epoch_s();
                state.record.last_event_id = id;
                Some(JobUpdate::of(&state.record))
            } else {
                state.record.last_event_id = id;
                None
            };
            if transition.fresh_run {
                state.halt = CancellationToken::new();
                state.halting = None;
            }
            let ts = now_epoch_s();
            // Rendered here, on the job's own task, not on the single writer: in one pass, so
            // under the job's lock (it only orders this job's own events).
            let json = if render {
                Event::render_json(id, ts, &payload)
            } else {
                String::new()
            };
            let event = Arc::new(Event {
                id,
                job_id: job.id.clone(),
                ts,
                payload,
            });
            let pending = PendingEvent { event, json };
            (id, self.writer.submit(pending, job.clone(), update).await)
        };
        Ok((id, ack))
    }

    /// Ends a live job with a terminal event (first caller wins; the event and the final record
    /// commit together) and releases it. `Err(Stopped)` when it was already terminal.
    async fn terminate(
        self: &Arc<Self>,
        job: &Arc<LiveJob>,
        payload: EventPayload,
    ) -> Result<JobRecord, Stopped> {
        self.terminate_with(job, payload, None).await
    }

    /// [`Inner::terminate`] with the job's best-so-far result.
    async fn terminate_with(
        self: &Arc<Self>,
        job: &Arc<LiveJob>,
        payload: EventPayload,
        partial: Option<JobResult>,
    ) -> Result<JobRecord, Stopped> {
        let transition = Transition {
            result: partial,
            ..Transition::default()
        };
        let (id, ack) = self.enqueue_with(job, payload, transition).await?;
        Self::await_ack(job, id, ack).await?;
        job.cancel.cancel();
        job.halted.notify_waiters();
        if job.store_failure().is_some() {
            // The terminal event itself could not be written.
            return self.end_unpersisted(job).await.ok_or(Stopped);
        }
        let record = job.state.lock().await.record.clone();
        self.live_map().remove(&job.id);
        crate::metrics::job_ended(record.status);
        if self.replica.shared && self.replica.max_jobs > 0 {
            // Room for a job waiting in the shared queue.
            self.replica.claim.notify_one();
        }
        tracing::info!(job_id = %job.id, status = %record.status, "job ended");
        Ok(record)
    }

    /// Ends a job one of whose writes failed for good (the writer stopped it): its watchers get
    /// a terminal `failed` event with error `store_unavailable` at once (it cannot be durable
    /// yet), and a background task writes that ending once the store takes writes again (until
    /// shutdown; a restart's recovery ends the job otherwise). `None` when someone else ended it.
    async fn end_unpersisted(self: &Arc<Self>, job: &Arc<LiveJob>) -> Option<JobRecord> {
        if !job.claim_unpersisted_end() {
            return None;
        }
        let reason = job.store_failure().unwrap_or("write failed").to_string();
        let payload = EventPayload::Failed {
            error: "store_unavailable".into(),
            message: format!(
                "the job's progress could not be saved ({reason}); the job was stopped"
            ),
        };
        let (event, record) = {
            let mut state = job.state.lock().await;
            let id = state.next_id;
            state.next_id += 1;
            apply_terminal(&mut state.record, &payload, id, None);
            let event = Arc::new(Event {
                id,
                job_id: job.id.clone(),
                ts: now_epoch_s(),
                payload,
            });
            (event, state.record.clone())
        };
        job.cancel.cancel();
        // Stays in the live map (readers get its final state from memory, late watchers its
        // terminal event from the ring) until the ending is saved.
        job.publish_unpersisted(event.clone());
        crate::metrics::job_ended(record.status);
        tracing::error!(job_id = %job.id, error = %reason, "job ended: its events could not be saved");
        let fences = if self.replica.shared {
            vec![Fence {
                job_id: job.id.clone(),
                epoch: job.epoch,
            }]
        } else {
            Vec::new()
        };
        let batch = WriteBatch {
            events: vec![PendingEvent::rendered(event)],
            updates: vec![JobUpdate::of(&record)],
            // Not written if another replica took the job over meanwhile.
            fences,
            ..WriteBatch::default()
        };
        let inner = self.clone();
        let job_id = job.id.clone();
        // Not on `tasks`: job tasks are waited for before `stop`, and this one waits for a
        // store that may never come back; it ends on `stop`.
        self.background.spawn(async move {
            loop {
                tokio::select! {
                    _ = inner.stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                if inner.health.problems().files.is_some() {
                    return;
                }
                if inner.store.write(&batch).await.is_ok() {
                    inner.live_map().remove(&job_id);
                    tracing::info!(job_id = %job_id, "ending of a job stopped by a store failure saved");
                    return;
                }
            }
        });
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let runtime = JobRuntime::start(settings, store, optimizers)
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
        let runtime = JobRuntime::start(settings, store, optimizers)
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
        let late = runtime.inner.writer.insert(record_of("late"), None).await;
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

    fn record_of(id: &str) -> JobRecord {
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
}
