//! The checkpoint seam: a resumable engine's saved state, one base per job plus the parts
//! appended since (incremental checkpoints; see `docs/durability.md`).

use async_trait::async_trait;

use super::StoreFailure;
use crate::domain::JobId;

/// Why saving or reading a checkpoint failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Failed(#[from] StoreFailure),
    /// The stored base is not JSON.
    #[error("unreadable checkpoint of {job_id}: {reason}")]
    Unreadable { job_id: JobId, reason: String },
}

/// Engine checkpoints.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    /// Saves an engine checkpoint for a job (the base), replacing the previous one and its
    /// parts, in one commit.
    async fn put_checkpoint(
        &self,
        job_id: &str,
        checkpoint: &serde_json::Value,
    ) -> Result<(), CheckpointError>;
    /// [`CheckpointStore::put_checkpoint`] of a checkpoint already rendered as JSON text: the
    /// GEPA engine renders its base (megabytes: every candidate's text) once, straight from its
    /// state, instead of building a `Value` for a SQL store to render again; the text is handed
    /// over, so a store that keeps it does not copy it. The default reads the text back and
    /// saves that.
    async fn put_checkpoint_text(
        &self,
        job_id: &str,
        checkpoint: String,
    ) -> Result<(), CheckpointError> {
        let value = serde_json::from_str(&checkpoint).map_err(|e| CheckpointError::Unreadable {
            job_id: job_id.into(),
            reason: format!("checkpoint is not JSON: {e}"),
        })?;
        self.put_checkpoint(job_id, &value).await
    }
    async fn get_checkpoint(
        &self,
        job_id: &str,
    ) -> Result<Option<serde_json::Value>, CheckpointError>;
    /// Appends a part (JSON text: what changed since the base or the previous part) to a job's
    /// checkpoint. Incremental checkpoints write these instead of rewriting the base.
    async fn append_checkpoint_part(&self, job_id: &str, part: &str)
    -> Result<(), CheckpointError>;
    /// The parts appended since the base, in order.
    async fn checkpoint_parts(&self, job_id: &str) -> Result<Vec<String>, CheckpointError>;
}
