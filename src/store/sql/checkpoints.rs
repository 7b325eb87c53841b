//! Engine checkpoints in SQL: a base row per job and its parts, replaced together.

use async_trait::async_trait;
use sqlx::{Connection, SqliteConnection};

use super::rows::to_json;
use super::{Pools, SqlStore, closed};
use crate::domain::now_epoch_s;
use crate::store::{CheckpointError, CheckpointStore};

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
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
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
