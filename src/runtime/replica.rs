//! This process as one of several replicas on one database: its id, its leases (heartbeat,
//! claims of claimable jobs, release on a graceful stop), the notices it listens to (one
//! `LISTEN` connection, fanned out in process to watchers and commands), and commands for jobs
//! another replica runs. See `docs/replicas.md`; the store side is `store::lease`.
//!
//! On a store one process uses (SQLite, memory) the same start-up claim recovers every live
//! job, as before, and nothing else runs: no heartbeat, no listener, no routing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use super::Inner;
use super::config::ReplicaConfig;
use super::event_log::LiveJob;
use crate::domain::steering::SteerRequest;
use crate::domain::{JobId, JobStatus, now_epoch_s};
use crate::error::Result;
use crate::store::{Claim, Notice, STEER_COMMAND};

/// Most jobs one claim round takes when the replica has no limit.
const UNLIMITED_CLAIM: usize = 1000;

/// Commands a replica leaves for the owner of a job.
pub(crate) const CANCEL: &str = "cancel";
pub(crate) const PAUSE: &str = "pause";
pub(crate) const RESUME: &str = "resume";

/// The replica's identity, lease settings and in-process fan-out of notices.
pub(crate) struct Replica {
    /// The owner id written on this process's leases.
    pub id: String,
    /// Whether other processes share the store (leases matter).
    pub shared: bool,
    pub lease_s: f64,
    pub heartbeat: Duration,
    /// Most live jobs here (0 = no limit).
    pub max_jobs: usize,
    /// Watchers following jobs in the store, woken when a job's commit is announced.
    wakers: Mutex<HashMap<JobId, watch::Sender<()>>>,
    /// Wakes the claim loop (jobs became claimable, or capacity freed up here).
    pub claim: Notify,
    /// False once the start-up claim ran with a fixed id (it reclaims its own jobs once).
    reclaimed: AtomicBool,
}

impl Replica {
    pub fn new(config: &ReplicaConfig, shared: bool) -> Replica {
        let id = config
            .id
            .clone()
            .unwrap_or_else(|| format!("replica-{}", uuid::Uuid::new_v4().simple()));
        Replica {
            id,
            shared,
            lease_s: config.lease_s,
            heartbeat: config.heartbeat,
            max_jobs: config.max_jobs,
            wakers: Mutex::new(HashMap::new()),
            claim: Notify::new(),
            reclaimed: AtomicBool::new(config.id.is_none()),
        }
    }

    /// A receiver that changes whenever a commit of `job_id` is announced (or notices may
    /// have been lost). Subscribe before reading the store, so nothing committed after the
    /// read is missed.
    pub fn subscribe(&self, job_id: &str) -> watch::Receiver<()> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        match wakers.get(job_id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(());
                wakers.insert(job_id.to_string(), tx);
                rx
            }
        }
    }

    fn wake(&self, job_id: &str) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = wakers.get(job_id)
            && tx.send(()).is_err()
        {
            // Nobody follows it any more.
            wakers.remove(job_id);
        }
    }

    fn wake_all(&self) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        wakers.retain(|_, tx| tx.send(()).is_ok());
    }
}

impl Inner {
    /// How many more jobs this replica takes now.
    fn free_capacity(&self) -> usize {
        let live = self.live_map().len();
        match self.replica.max_jobs {
            0 => UNLIMITED_CLAIM,
            max => max.saturating_sub(live),
        }
    }

    /// Whether a job created here may run here at once (else it waits for a claim).
    pub(super) fn has_capacity(&self) -> bool {
        self.replica.max_jobs == 0 || self.live_map().len() < self.replica.max_jobs
    }

    /// One claim round: takes claimable jobs up to the free capacity and adopts each (resume,
    /// restart or end it; see `Inner::adopt`). At start (`startup`) on a store one process
    /// uses, every live job is taken whatever its lease says.
    pub(super) async fn claim_round(self: &Arc<Self>, startup: bool) -> Result<usize> {
        let limit = if startup && !self.replica.shared {
            usize::MAX
        } else {
            self.free_capacity()
        };
        if limit == 0 {
            return Ok(0);
        }
        let reclaim_own = startup && !self.replica.reclaimed.swap(true, Ordering::SeqCst);
        let claim = Claim {
            owner: &self.replica.id,
            now: now_epoch_s(),
            lease_s: self.replica.lease_s,
            limit,
            job_id: None,
            steal: startup && !self.replica.shared,
            reclaim_own,
        };
        let claimed = self.store.claim_jobs(&claim).await?;
        let count = claimed.len();
        for claimed in claimed {
            self.adopt(claimed).await?;
        }
        Ok(count)
    }

    /// Claims one job if nobody holds it (a command for a job whose owner is gone) and adopts
    /// it; the live job when it is live here afterwards.
    pub(super) async fn claim_one(self: &Arc<Self>, job_id: &str) -> Result<Option<Arc<LiveJob>>> {
        let claim = Claim {
            owner: &self.replica.id,
            now: now_epoch_s(),
            lease_s: self.replica.lease_s,
            limit: 1,
            job_id: Some(job_id),
            steal: false,
            reclaim_own: false,
        };
        for mut claimed in self.store.claim_jobs(&claim).await? {
            // The caller acts on the job itself: the command left for the owner is done (the
            // adoption takes any steering left with it).
            if let Some(command) = claimed.requested.take() {
                self.store.clear_request(job_id, &command).await?;
            }
            self.adopt(claimed).await?;
        }
        Ok(self.live_job(job_id))
    }

    /// Starts the listener, the notice fan-out and the heartbeat (shared stores only).
    pub(super) fn spawn_replica_loops(self: &Arc<Self>) {
        if !self.replica.shared {
            return;
        }
        let (tx, mut rx) = mpsc::channel::<Notice>(4096);
        if let Some(listener) = self.store.listen(tx, self.stop.clone()) {
            self.background.spawn(listener);
        }
        let inner = self.clone();
        self.background.spawn(async move {
            loop {
                let notice = tokio::select! {
                    _ = inner.stop.cancelled() => return,
                    notice = rx.recv() => match notice { Some(n) => n, None => return },
                };
                match notice {
                    Notice::Events(job_id) => inner.replica.wake(&job_id),
                    Notice::Command { command, job_id } => {
                        if inner.live_job(&job_id).is_some() {
                            inner.spawn_command(job_id, command);
                        }
                    }
                    Notice::Claimable => inner.replica.claim.notify_one(),
                    Notice::Lost => {
                        inner.replica.wake_all();
                        inner.replica.claim.notify_one();
                    }
                }
            }
        });
        let inner = self.clone();
        self.background
            .spawn(async move { inner.heartbeat_loop().await });
    }

    /// Every heartbeat: renews this replica's leases (fencing jobs whose lease is gone, acting
    /// on commands left for them), refreshes the queue metrics, and claims work; between
    /// beats, claims when woken. A replica that cannot renew for a whole lease stops its jobs
    /// (another replica may have taken them) and reports the store unhealthy meanwhile.
    async fn heartbeat_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.replica.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed_at = tokio::time::Instant::now();
        let lease = Duration::from_secs_f64(self.replica.lease_s);
        loop {
            let beat = tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tick.tick() => true,
                _ = self.replica.claim.notified() => false,
            };
            if self.draining.load(Ordering::SeqCst) {
                // Draining: renew only (the hand-over releases the leases).
                if beat {
                    let _ = self.renew().await;
                }
                continue;
            }
            if beat {
                match self.renew().await {
                    Ok(()) => {
                        renewed_at = tokio::time::Instant::now();
                        self.health.write_succeeded();
                    }
                    Err(err) => {
                        self.health
                            .write_failed(&format!("lease heartbeat failed: {err}"));
                        if renewed_at.elapsed() > lease {
                            self.fence_all("no lease renewal for a whole lease period");
                        }
                        continue;
                    }
                }
                match self.store.claimable_count(now_epoch_s()).await {
                    Ok(n) => {
                        crate::metrics::global()
                            .jobs_claimable
                            .set(i64::try_from(n).unwrap_or(i64::MAX));
                    }
                    Err(err) => tracing::debug!(error = %err, "claimable count failed"),
                }
            }
            if let Err(err) = self.claim_round(false).await {
                tracing::warn!(error = %err, "claim round failed");
            }
        }
    }

    /// Renews the leases; fences live jobs whose lease is gone; runs commands left for them.
    async fn renew(self: &Arc<Self>) -> Result<()> {
        // Taken before the renewal: every job in it was claimed before the renewal started.
        let before: Vec<Arc<LiveJob>> = self.live_map().values().cloned().collect();
        let until = now_epoch_s() + self.replica.lease_s;
        let renewed = self.store.renew_leases(&self.replica.id, until).await?;
        crate::metrics::global()
            .job_leases_held
            .set(i64::try_from(renewed.len()).unwrap_or(i64::MAX));
        let held: HashMap<&str, u64> = renewed
            .iter()
            .map(|r| (r.job_id.as_str(), r.epoch))
            .collect();
        for job in before {
            if job.is_fenced() || held.get(job.id.as_str()) == Some(&job.epoch) {
                continue;
            }
            // A job that just ended is no longer live in the store; only a live one is lost.
            let ended = match job.state.try_lock() {
                Ok(state) => state.record.status.is_terminal(),
                Err(_) => true,
            };
            if !ended
                && self
                    .live_job(&job.id)
                    .is_some_and(|j| Arc::ptr_eq(&j, &job))
            {
                job.fence();
            }
        }
        for r in renewed {
            if let Some(command) = r.requested {
                self.spawn_command(r.job_id, command);
            }
        }
        Ok(())
    }

    /// Stops every live job here without a terminal event (this replica lost its leases).
    fn fence_all(&self, why: &str) {
        let jobs: Vec<Arc<LiveJob>> = self.live_map().values().cloned().collect();
        if !jobs.is_empty() {
            tracing::error!(
                jobs = jobs.len(),
                why,
                "stopping every job: leases may be lost"
            );
        }
        for job in jobs {
            job.fence();
        }
    }

    /// Acts on a command another replica left for a job that runs here, then clears it.
    pub(super) fn spawn_command(self: &Arc<Self>, job_id: JobId, command: String) {
        let runtime = super::JobRuntime {
            inner: self.clone(),
        };
        self.tasks.spawn(async move {
            // Steering left for the job is taken whatever the command (its flag on the row
            // yields to a later command).
            runtime.inner.take_steering(&job_id).await;
            let outcome = match command.as_str() {
                CANCEL => runtime.cancel(&job_id).await.map(|_| ()),
                PAUSE => runtime.pause(&job_id).await.map(|_| ()),
                RESUME => runtime.resume(&job_id).await.map(|_| ()),
                STEER_COMMAND => Ok(()),
                other => {
                    tracing::warn!(job_id = %job_id, command = other, "unknown command ignored");
                    Ok(())
                }
            };
            if let Err(err) = outcome {
                tracing::info!(job_id = %job_id, command = %command, error = %err, "command not applied");
            }
            if let Err(err) = runtime.inner.store.clear_request(&job_id, &command).await {
                tracing::warn!(job_id = %job_id, error = %err, "command not cleared");
            }
        });
    }

    /// Moves the steering other replicas left for a job that runs here into its inbox.
    pub(super) async fn take_steering(&self, job_id: &str) {
        let Some(job) = self.live_job(job_id) else {
            return;
        };
        let requests = match self.store.take_steering(job_id).await {
            Ok(requests) => requests,
            Err(err) => {
                tracing::warn!(job_id = %job_id, error = %err, "steering left for the job not taken");
                return;
            }
        };
        for text in requests {
            let taken = serde_json::from_str::<SteerRequest>(&text)
                .map_err(|e| crate::error::Error::Internal(e.to_string()))
                .and_then(|request| job.steering.push(request));
            if let Err(err) = taken {
                tracing::warn!(job_id = %job_id, error = %err, "steering left for the job dropped");
            }
        }
    }

    /// Drops a job whose lease another replica took: no terminal event here (the new owner
    /// writes the rest of its log); watchers here follow it in the store.
    pub(super) fn drop_fenced(&self, job: &Arc<LiveJob>) {
        let removed = {
            let mut live = self.live_map();
            match live.get(&job.id) {
                Some(current) if Arc::ptr_eq(current, job) => live.remove(&job.id).is_some(),
                _ => false,
            }
        };
        job.released.cancel();
        job.halted.notify_waiters();
        if removed {
            crate::metrics::global().job_queue_depth.dec();
            self.replica.claim.notify_one();
        }
    }

    /// After a graceful stop's hand-over: gives up every lease at once, so other replicas
    /// claim the handed-over and paused jobs without waiting for expiry.
    pub(super) async fn release_leases(&self) {
        if !self.replica.shared {
            return;
        }
        match self.store.release_leases(&self.replica.id).await {
            Ok(()) => tracing::info!(replica = %self.replica.id, "leases released"),
            Err(err) => {
                tracing::warn!(error = %err, "leases not released; they expire after JOB_LEASE_S")
            }
        }
    }

    /// Waits until `done` holds for the stored job (a command's effect, written by its owner),
    /// claiming the job meanwhile if its owner is gone (then the live job is returned). Bounded
    /// by twice the lease plus a margin.
    pub(super) async fn await_stored(
        self: &Arc<Self>,
        job_id: &str,
        done: impl Fn(JobStatus) -> bool,
    ) -> Result<Awaited> {
        let mut woken = self.replica.subscribe(job_id);
        let bound = Duration::from_secs_f64(2.0 * self.replica.lease_s + 5.0);
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let Some(record) = self.store.get_job(job_id).await? else {
                return Err(crate::error::Error::JobNotFound(job_id.to_string()));
            };
            if done(record.status) {
                return Ok(Awaited::Stored(Box::new(record)));
            }
            if let Some(job) = self.claim_one(job_id).await? {
                return Ok(Awaited::Live(job));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(crate::error::Error::Unavailable(format!(
                    "the replica running job {job_id} did not act within {} s",
                    bound.as_secs()
                )));
            }
            tokio::select! {
                _ = woken.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = self.stop.cancelled() => {
                    return Err(crate::error::Error::Unavailable("server is shutting down".into()));
                }
            }
        }
    }
}

/// What [`Inner::await_stored`] found.
pub(super) enum Awaited {
    /// The stored job reached the awaited state.
    Stored(Box<crate::domain::JobRecord>),
    /// Its owner was gone and this replica claimed it: act on it here.
    Live(Arc<LiveJob>),
}
