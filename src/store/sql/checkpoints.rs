//! Engine checkpoints in SQL: a base row per job and its parts, replaced together.

use async_trait::async_trait;
use sqlx::{Connection, SqliteConnection};

use super::rows::to_json;
use super::{Pools, SqlStore, closed};
use crate::domain::now_epoch_s;
use crate::store::{CheckpointError, CheckpointStore};

/// A checkpoint write of a job whose lease another replica took since.
fn fenced(job_id: &str) -> CheckpointError {
    CheckpointError::Failed(super::StoreFailure(format!(
        "checkpoint of {job_id} not written: another replica holds its lease"
    )))
}

#[async_trait]
impl CheckpointStore for SqlStore {
    async fn put_checkpoint(
        &self,
        job_id: &str,
        checkpoint: &serde_json::Value,
    ) -> Result<(), CheckpointError> {
        self.put_checkpoint_text(job_id, to_json(checkpoint)?).await
    }

    async fn put_checkpoint_text(&self, job_id: &str, data: String) -> Result<(), CheckpointError> {
        let fence = self.checkpoint_fence(job_id);
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            if let Some(epoch) = fence {
                // The row stays locked until this commits, so no claim lands in between.
                let held: Option<i64> = sqlx::query_scalar(
                    "SELECT lease_epoch FROM jobs WHERE id = $1 AND lease_epoch = $2 FOR SHARE",
                )
                .bind(job_id)
                .bind(epoch)
                .fetch_optional(&mut *tx)
                .await?;
                if held.is_none() {
                    return Err(fenced(job_id));
                }
            }
            sqlx::query(
                "INSERT INTO checkpoints (job_id, data, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (job_id) DO UPDATE SET data = excluded.data, \
                 updated_at = excluded.updated_at",
            )
            .bind(job_id)
            .bind(&data)
            .bind(now_epoch_s())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM checkpoint_parts WHERE job_id = $1")
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    async fn get_checkpoint(
        &self,
        job_id: &str,
    ) -> Result<Option<serde_json::Value>, CheckpointError> {
        let data: Option<String> = with_pool!(self, read, |pool| sqlx::query_scalar(
            "SELECT data FROM checkpoints WHERE job_id = $1"
        )
        .bind(job_id)
        .fetch_optional(pool)
        .await?);
        data.map(|text| {
            serde_json::from_str(&text).map_err(|e| CheckpointError::Unreadable {
                job_id: job_id.to_string(),
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    async fn append_checkpoint_part(
        &self,
        job_id: &str,
        part: &str,
    ) -> Result<(), CheckpointError> {
        if let (Some(epoch), Pools::Postgres(pool)) = (self.checkpoint_fence(job_id), &self.pools) {
            // Appended only while the job's row still has this process's lease epoch (locked:
            // a claim waits for this statement's commit).
            let written = sqlx::query(
                "INSERT INTO checkpoint_parts (job_id, seq, data) SELECT $1, \
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM checkpoint_parts WHERE job_id = $1), $2 \
                 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND lease_epoch = $3 FOR SHARE)",
            )
            .bind(job_id)
            .bind(part)
            .bind(epoch)
            .execute(pool)
            .await
            .map_err(super::StoreFailure::from)?
            .rows_affected();
            return if written == 1 {
                Ok(())
            } else {
                Err(fenced(job_id))
            };
        }
        with_pool!(self, write, |pool| sqlx::query(
            "INSERT INTO checkpoint_parts (job_id, seq, data) VALUES ($1, \
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM checkpoint_parts WHERE job_id = $1), $2)"
        )
        .bind(job_id)
        .bind(part)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    async fn checkpoint_parts(&self, job_id: &str) -> Result<Vec<String>, CheckpointError> {
        let parts: Vec<String> = with_pool!(self, read, |pool| sqlx::query_scalar(
            "SELECT data FROM checkpoint_parts WHERE job_id = $1 ORDER BY seq"
        )
        .bind(job_id)
        .fetch_all(pool)
        .await?);
        Ok(parts)
    }
}
