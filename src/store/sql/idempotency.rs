//! Idempotency keys in SQL: claimed with one `INSERT … ON CONFLICT … WHERE expired RETURNING`,
//! so of two concurrent claims one wins.

use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::{Pools, SqlStore, closed};
use crate::store::{IdempotencyClaim, IdempotencyError, IdempotencyKeys};

#[async_trait]
impl IdempotencyKeys for SqlStore {
    async fn claim_idempotency_key_for(
        &self,
        key: &str,
        job_id: &str,
        request_hash: Option<&str>,
        now: f64,
        expires_at: f64,
    ) -> Result<IdempotencyClaim, IdempotencyError> {
        // Insert, or take over an expired claim, atomically; no row back means a live claim holds
        // the key. Retried because that claim can expire or be deleted before it is read.
        for _ in 0..3 {
            let claimed: Option<String> = with_pool!(self, write, |pool| sqlx::query_scalar(
                "INSERT INTO idempotency_keys (key, job_id, expires_at, request_hash) \
                 VALUES ($1, $2, $3, $5) \
                 ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, \
                 expires_at = excluded.expires_at, request_hash = excluded.request_hash \
                 WHERE idempotency_keys.expires_at <= $4 \
                 RETURNING job_id"
            )
            .bind(key)
            .bind(job_id)
            .bind(expires_at)
            .bind(now)
            .bind(request_hash)
            .fetch_optional(pool)
            .await?);
            if claimed.is_some() {
                return Ok(IdempotencyClaim::Claimed);
            }
            let existing: Option<(String, Option<String>)> =
                with_pool!(self, write, |pool| sqlx::query_as(
                    "SELECT job_id, request_hash FROM idempotency_keys \
                     WHERE key = $1 AND expires_at > $2"
                )
                .bind(key)
                .bind(now)
                .fetch_optional(pool)
                .await?);
            if let Some((existing, hash)) = existing {
                let differs =
                    matches!((hash.as_deref(), request_hash), (Some(a), Some(b)) if a != b);
                return Ok(if differs {
                    IdempotencyClaim::Conflict(existing)
                } else {
                    IdempotencyClaim::Existing(existing)
                });
            }
        }
        Err(IdempotencyError::Contended {
            key: key.to_string(),
        })
    }

    async fn forget_dangling_keys(&self, expiring_by: f64) -> Result<usize, IdempotencyError> {
        let deleted = with_pool!(self, write, |pool| sqlx::query(
            "DELETE FROM idempotency_keys WHERE expires_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = idempotency_keys.job_id)"
        )
        .bind(expiring_by)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }
}
