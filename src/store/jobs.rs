//! The job-row seam: reading, listing, deleting and reaping jobs. Rows are written through the
//! group commit ([`super::EventStore::write`]), so a job's row and its events commit together.

use async_trait::async_trait;

use super::StoreFailure;
use crate::domain::{JobId, JobRecord, JobResult, JobStatus};

/// Why reading or deleting job rows failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct JobRowsError(#[from] pub StoreFailure);

/// A page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListJobsQuery {
    /// Empty means every status.
    pub statuses: Vec<JobStatus>,
    pub limit: usize,
    pub offset: usize,
}

/// The mutable part of a job row, as [`super::EventStore::update_job`] writes it.
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

/// Job rows.
#[async_trait]
pub trait JobRows: Send + Sync + 'static {
    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>, JobRowsError>;
    /// Newest first.
    async fn list_jobs(&self, query: &ListJobsQuery) -> Result<Vec<JobRecord>, JobRowsError>;
    /// Jobs in any of these states (restart recovery uses it).
    async fn jobs_with_status(
        &self,
        statuses: &[JobStatus],
    ) -> Result<Vec<JobRecord>, JobRowsError>;
    /// Deletes a job, its events, checkpoint (base and parts) and idempotency keys. Returns
    /// whether it existed.
    async fn delete_job(&self, id: &str) -> Result<bool, JobRowsError>;

    /// Deletes terminal jobs whose `updated_at` is older than the TTL of their status
    /// (`ttl_for` returns `None` to keep that status forever) with their events, checkpoints
    /// and idempotency keys, and expired idempotency keys. Returns the ids of deleted jobs.
    async fn reap(
        &self,
        now: f64,
        ttl_for: &(dyn Fn(JobStatus) -> Option<f64> + Sync),
    ) -> Result<Vec<JobId>, JobRowsError>;
}
