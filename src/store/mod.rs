//! Persistence behind one trait, [`JobStore`]: jobs, their ordered event logs, idempotency keys,
//! stored examples and engine checkpoints. The runtime is the only writer of job state; stores
//! never interpret payloads beyond serde.
//!
//! Hidden contracts every implementation keeps:
//! - `append_events` receives events of many jobs in one batch, each job's in increasing id
//!   order; it is atomic (all or nothing) and durable when it returns.
//! - `events_after` returns events in id order.
//! - `claim_idempotency_key` is atomic: of two concurrent claims of one key, one wins.

pub mod memory;
pub mod sql;

use async_trait::async_trait;

use crate::domain::{Event, Example, JobId, JobRecord, JobStatus};
use crate::error::Result;

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
}

/// Jobs, events, idempotency keys, examples and checkpoints.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// A short name for logs and `innerloop config` (`memory`, `sqlite`, `postgres`).
    fn kind(&self) -> &'static str;

    async fn insert_job(&self, job: &JobRecord) -> Result<()>;
    /// Writes status, updated_at, result and last_event_id of an existing job.
    async fn update_job(&self, job: &JobRecord) -> Result<()>;
    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>>;
    /// Newest first.
    async fn list_jobs(&self, query: &ListJobsQuery) -> Result<Vec<JobRecord>>;
    /// Jobs in any of these states (restart recovery uses it).
    async fn jobs_with_status(&self, statuses: &[JobStatus]) -> Result<Vec<JobRecord>>;
    /// Deletes a job, its events, checkpoint and idempotency keys. Returns whether it existed.
    async fn delete_job(&self, id: &str) -> Result<bool>;

    async fn append_events(&self, events: &[Event]) -> Result<()>;
    /// [`JobStore::append_events`] with each event's `data` object already rendered:
    /// `data[i]` is `events[i].payload.data_json_text()`. The runtime renders it on the emitting
    /// job's task, so stores that keep JSON text do not render it on the single writer. The
    /// default ignores the text.
    async fn append_rendered(&self, events: &[Event], data: &[String]) -> Result<()> {
        let _ = data;
        self.append_events(events).await
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
    ) -> Result<IdempotencyClaim>;

    /// Deletes terminal jobs whose `updated_at` is older than the TTL of their status
    /// (`ttl_for` returns `None` to keep that status forever) and expired idempotency keys.
    /// Returns the ids of deleted jobs.
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

    /// Saves an engine checkpoint for a job, replacing the previous one.
    async fn put_checkpoint(&self, job_id: &str, checkpoint: &serde_json::Value) -> Result<()>;
    async fn get_checkpoint(&self, job_id: &str) -> Result<Option<serde_json::Value>>;
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
