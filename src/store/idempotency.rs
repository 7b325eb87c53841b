//! The idempotency-key seam: a key claimed for a job creation maps later retries to that job.

use async_trait::async_trait;

use super::StoreFailure;
use crate::domain::JobId;

/// Why claiming or forgetting keys failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyError {
    #[error(transparent)]
    Failed(#[from] StoreFailure),
    /// Other claims kept taking and dropping the key while this one tried to read it.
    #[error("idempotency key {key:?} kept changing while being claimed")]
    Contended { key: String },
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

/// Idempotency keys.
#[async_trait]
pub trait IdempotencyKeys: Send + Sync + 'static {
    /// Maps `key` to `job_id` unless it already maps to a job whose claim has not expired.
    async fn claim_idempotency_key(
        &self,
        key: &str,
        job_id: &str,
        now: f64,
        expires_at: f64,
    ) -> Result<IdempotencyClaim, IdempotencyError> {
        self.claim_idempotency_key_for(key, job_id, None, now, expires_at)
            .await
    }

    /// [`IdempotencyKeys::claim_idempotency_key`], remembering `request_hash` with a new
    /// claim; an unexpired claim made with another hash answers [`IdempotencyClaim::Conflict`]
    /// (a claim without a hash, on either side, never conflicts).
    async fn claim_idempotency_key_for(
        &self,
        key: &str,
        job_id: &str,
        request_hash: Option<&str>,
        now: f64,
        expires_at: f64,
    ) -> Result<IdempotencyClaim, IdempotencyError>;

    /// Deletes idempotency keys that name a job which does not exist, among keys expiring at or
    /// before `expiring_by` (claimed long enough ago that their creation has either finished or
    /// died). A crash, or a failed insert, between claiming a key and writing its job leaves such
    /// a key; without this it would send retries to a job id that does not exist until it
    /// expired. Returns how many were deleted.
    async fn forget_dangling_keys(&self, expiring_by: f64) -> Result<usize, IdempotencyError>;
}
