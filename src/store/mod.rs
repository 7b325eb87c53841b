//! Persistence behind one trait, [`JobStore`]: jobs, their ordered event logs, idempotency keys,
//! stored examples and engine checkpoints. The runtime is the only writer of job state; stores
//! never interpret payloads beyond serde.
//!
//! Hidden contracts every implementation keeps:
//! - [`JobStore::write`] receives one group commit ([`WriteBatch`]): new job rows, events of many
//!   jobs (each job's in increasing id order) and job-row updates. It is atomic (all or nothing)
//!   and durable when it returns. `insert_job`, `update_job` and `append_events` are one-part
//!   batches. [`JobStore::write_after`] is the same commit ordered after the previous one: the
//!   writer overlaps preparing batch N+1 with committing batch N, but commits land in queue order.
//! - `events_after` returns events in id order.
//! - `claim_idempotency_key` is atomic: of two concurrent claims of one key, one wins.

pub mod lease;
pub mod memory;
pub mod sql;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{Event, Example, JobId, JobRecord, JobResult, JobStatus};
use crate::error::Result;

pub use lease::{Claim, Claimed, Fence, NewLease, Notice, Renewed};
pub use memory::MemoryStore;
pub use sql::SqlStore;

/// A page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListJobsQuery {
    /// Empty means every status.
    pub statuses: Vec<JobStatus>,
    pub limit: usize,
    pub offset: usize,
}

/// Outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key was free (or expired) and now maps to the proposed job id.
    Claimed,
    /// The key already maps to this (live) job id.
    Existing(JobId),
    /// The key maps to this job, which was created by a different request (its request hash
    /// differs from the one offered).
    Conflict(JobId),
}

/// The mutable part of a job row, as [`JobStore::update_job`] writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobUpdate {
    pub id: JobId,
    pub status: JobStatus,
    pub updated_at: f64,
    pub result: Option<JobResult>,
    pub last_event_id: u64,
}

impl JobUpdate {
    pub fn of(job: &JobRecord) -> JobUpdate {
        JobUpdate {
            id: job.id.clone(),
            status: job.status,
            updated_at: job.updated_at,
            result: job.result.clone(),
            last_event_id: job.last_event_id,
        }
    }
}

/// An event on its way to the store, with its JSON text ([`Event::json_text`]) already
/// rendered by the emitting job's task when the store keeps text
/// ([`JobStore::keeps_rendered_data`]); empty otherwise.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub event: Arc<Event>,
    pub json: String,
}

impl PendingEvent {
    /// Renders `json` from the event.
    pub fn rendered(event: Arc<Event>) -> PendingEvent {
        let json = event.json_text();
        PendingEvent { event, json }
    }
}

/// Completes when the commit before this one has completed (see [`JobStore::write_after`]).
pub type Turn = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One group commit: everything in it becomes durable together, in this order: new job rows,
/// events, then row updates (a later update of the same job wins).
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub inserts: Vec<JobRecord>,
    pub events: Vec<PendingEvent>,
    pub updates: Vec<JobUpdate>,
    /// Jobs whose events and updates in this batch are written only while the job still has
    /// this lease epoch (see [`lease`]). Stores shared between processes check them in the
    /// same transaction; a store only one process uses ignores them.
    pub fences: Vec<Fence>,
    /// Leases of new rows in `inserts` (stores shared between processes; others ignore them).
    pub leases: Vec<NewLease>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty() && self.events.is_empty() && self.updates.is_empty()
    }

    pub fn clear(&mut self) {
        self.inserts.clear();
        self.events.clear();
        self.updates.clear();
        self.fences.clear();
        self.leases.clear();
    }
}

/// Jobs, events, idempotency keys, examples and checkpoints.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// A short name for logs and `innerloop config` (`memory`, `sqlite`, `postgres`).
    fn kind(&self) -> &'static str;

    /// Commits a batch atomically; durable when it returns. The runtime's single event writer
    /// is the only caller on the hot path (see `docs/durability.md`).
    async fn write(&self, batch: &WriteBatch) -> Result<()>;

    /// [`JobStore::write`], started only once `previous` (the commit queued before this one)
    /// has completed, so commits land in queue order and a reader never sees a later batch
    /// without an earlier one. A store may prepare the batch (render its rows) before waiting;
    /// the default only waits.
    async fn write_after(&self, batch: &WriteBatch, previous: Turn) -> Result<()> {
        previous.await;
        self.write(batch).await
    }

    /// [`JobStore::write_after`] that checks the batch's [`WriteBatch::fences`] in the same
    /// transaction: the events and updates of a job whose lease epoch is no longer the fence's
    /// (claimed by another replica since, or deleted) are not written, and the job's id is
    /// returned; the rest of the batch commits. The default (a store one process uses) checks
    /// nothing.
    async fn write_fenced(&self, batch: &WriteBatch, previous: Turn) -> Result<Vec<JobId>> {
        self.write_after(batch, previous).await?;
        Ok(Vec::new())
    }

    /// Whether several processes may share this store (Postgres): leases are then taken,
    /// renewed and checked, and watchers follow jobs other processes run.
    fn shared(&self) -> bool {
        false
    }

    /// Claims up to `claim.limit` claimable jobs (oldest first): live jobs with no owner or an
    /// expired lease (any live job with `steal`); each gets `owner`, a lease and the next
    /// epoch. The default (the memory store, which nothing outlives) returns every live job
    /// with epoch 0, unclaimed.
    async fn claim_jobs(&self, claim: &Claim<'_>) -> Result<Vec<Claimed>> {
        let live = [JobStatus::Pending, JobStatus::Running, JobStatus::Paused];
        Ok(self
            .jobs_with_status(&live)
            .await?
            .into_iter()
            .filter(|r| claim.job_id.is_none_or(|id| id == r.id))
            .take(claim.limit)
            .map(|record| Claimed {
                record,
                epoch: 0,
                requested: None,
            })
            .collect())
    }

    /// Extends the leases `owner` holds on live jobs to `until`; returns them.
    async fn renew_leases(&self, _owner: &str, _until: f64) -> Result<Vec<Renewed>> {
        Ok(Vec::new())
    }

    /// Gives up `owner`'s leases on live jobs at once (graceful stop: others claim them
    /// without waiting for expiry) and tells the other replicas.
    async fn release_leases(&self, _owner: &str) -> Result<()> {
        Ok(())
    }

    /// Leaves `command` for the owner of a live job and notifies it. False when the job is
    /// not live.
    async fn request(&self, _job_id: &str, _command: &str) -> Result<bool> {
        Ok(false)
    }

    /// Clears a command once its owner has acted on it.
    async fn clear_request(&self, _job_id: &str) -> Result<()> {
        Ok(())
    }

    /// Live jobs nobody holds a lease on at `now` (the claimable queue).
    async fn claimable_count(&self, _now: f64) -> Result<u64> {
        Ok(0)
    }

    /// Tells the other replicas that jobs are claimable.
    async fn announce_claimable(&self) -> Result<()> {
        Ok(())
    }

    /// Starts forwarding notices (other replicas' commits, commands, claimable jobs) to `tx`
    /// until `stop`; false when the store has none (one process).
    fn listen(
        &self,
        _tx: tokio::sync::mpsc::Sender<Notice>,
        _stop: tokio_util::sync::CancellationToken,
    ) -> bool {
        false
    }

    /// Whether [`PendingEvent::json`] is used (stores that keep JSON text). When false the
    /// runtime does not render it.
    fn keeps_rendered_data(&self) -> bool {
        true
    }

    async fn insert_job(&self, job: &JobRecord) -> Result<()> {
        self.write(&WriteBatch {
            inserts: vec![job.clone()],
            ..WriteBatch::default()
        })
        .await
    }

    /// Writes status, updated_at, result and last_event_id of an existing job.
    async fn update_job(&self, job: &JobRecord) -> Result<()> {
        self.write(&WriteBatch {
            updates: vec![JobUpdate::of(job)],
            ..WriteBatch::default()
        })
        .await
    }
    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>>;
    /// Newest first.
    async fn list_jobs(&self, query: &ListJobsQuery) -> Result<Vec<JobRecord>>;
    /// Jobs in any of these states (restart recovery uses it).
    async fn jobs_with_status(&self, statuses: &[JobStatus]) -> Result<Vec<JobRecord>>;
    /// Deletes a job, its events, checkpoint (base and parts) and idempotency keys. Returns
    /// whether it existed.
    async fn delete_job(&self, id: &str) -> Result<bool>;

    /// Appends events of one or many jobs (each job's in increasing id order) in one commit.
    async fn append_events(&self, events: &[Event]) -> Result<()> {
        let keeps = self.keeps_rendered_data();
        let events = events
            .iter()
            .map(|e| {
                let event = Arc::new(e.clone());
                if keeps {
                    PendingEvent::rendered(event)
                } else {
                    PendingEvent {
                        event,
                        json: String::new(),
                    }
                }
            })
            .collect();
        self.write(&WriteBatch {
            events,
            ..WriteBatch::default()
        })
        .await
    }
    /// Events of `job_id` with id > `after_id`, in order, at most `limit`.
    async fn events_after(&self, job_id: &str, after_id: u64, limit: usize) -> Result<Vec<Event>>;

    /// Maps `key` to `job_id` unless it already maps to a job whose claim has not expired.
    async fn claim_idempotency_key(
        &self,
        key: &str,
        job_id: &str,
        now: f64,
        expires_at: f64,
    ) -> Result<IdempotencyClaim> {
        self.claim_idempotency_key_for(key, job_id, None, now, expires_at)
            .await
    }

    /// [`JobStore::claim_idempotency_key`], remembering `request_hash` with a new claim; an
    /// unexpired claim made with another hash answers [`IdempotencyClaim::Conflict`] (a claim
    /// without a hash, on either side, never conflicts).
    async fn claim_idempotency_key_for(
        &self,
        key: &str,
        job_id: &str,
        request_hash: Option<&str>,
        now: f64,
        expires_at: f64,
    ) -> Result<IdempotencyClaim>;

    /// Deletes idempotency keys that name a job which does not exist, among keys expiring at or
    /// before `expiring_by` (claimed long enough ago that their creation has either finished or
    /// died). A crash, or a failed insert, between claiming a key and writing its job leaves such
    /// a key; without this it would send retries to a job id that does not exist until it
    /// expired. Returns how many were deleted.
    async fn forget_dangling_keys(&self, expiring_by: f64) -> Result<usize>;

    /// Deletes terminal jobs whose `updated_at` is older than the TTL of their status
    /// (`ttl_for` returns `None` to keep that status forever) with their events, checkpoints
    /// and idempotency keys, and expired idempotency keys. Returns the ids of deleted jobs.
    async fn reap(
        &self,
        now: f64,
        ttl_for: &(dyn Fn(JobStatus) -> Option<f64> + Sync),
    ) -> Result<Vec<JobId>>;

    /// Inserts or replaces examples by id. Returns how many were written.
    async fn upsert_examples(&self, examples: &[Example]) -> Result<usize>;
    /// Examples ordered by id.
    async fn list_examples(&self, limit: usize, offset: usize) -> Result<Vec<Example>>;
    async fn delete_example(&self, id: &str) -> Result<bool>;

    /// Saves an engine checkpoint for a job (the base), replacing the previous one and its
    /// parts, in one commit.
    async fn put_checkpoint(&self, job_id: &str, checkpoint: &serde_json::Value) -> Result<()>;
    /// [`JobStore::put_checkpoint`] of a checkpoint already rendered as JSON text: the GEPA
    /// engine renders its base (megabytes: every candidate's text) once, straight from its
    /// state, instead of building a `Value` for a SQL store to render again; the text is
    /// handed over, so a store that keeps it does not copy it. The default reads the text back
    /// and saves that.
    async fn put_checkpoint_text(&self, job_id: &str, checkpoint: String) -> Result<()> {
        let value = serde_json::from_str(&checkpoint)
            .map_err(|e| crate::error::Error::Store(format!("checkpoint is not JSON: {e}")))?;
        self.put_checkpoint(job_id, &value).await
    }
    async fn get_checkpoint(&self, job_id: &str) -> Result<Option<serde_json::Value>>;
    /// Appends a part (JSON text: what changed since the base or the previous part) to a job's
    /// checkpoint. Incremental checkpoints write these instead of rewriting the base.
    async fn append_checkpoint_part(&self, job_id: &str, part: &str) -> Result<()>;
    /// The parts appended since the base, in order.
    async fn checkpoint_parts(&self, job_id: &str) -> Result<Vec<String>>;
}

/// Opens the store `JOB_STORE` names: SQLite creates its data directory and file when missing;
/// SQL stores apply pending migrations before returning.
pub async fn open(settings: &crate::config::Settings) -> Result<std::sync::Arc<dyn JobStore>> {
    use crate::config::StoreKind;
    use crate::error::Error;
    match settings.job_store {
        StoreKind::Memory => Ok(std::sync::Arc::new(MemoryStore::new())),
        StoreKind::Sqlite => {
            let file = settings.sqlite_file();
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir).await.map_err(|e| {
                    Error::Store(format!(
                        "cannot create data directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            Ok(std::sync::Arc::new(SqlStore::open_sqlite(&file).await?))
        }
        StoreKind::Postgres => {
            let url = settings.database_url.as_deref().ok_or_else(|| {
                Error::Store("DATABASE_URL is required when JOB_STORE=postgres".into())
            })?;
            Ok(std::sync::Arc::new(SqlStore::open_postgres(url).await?))
        }
    }
}
