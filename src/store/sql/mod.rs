//! The durable stores: one [`SqlStore`] over SQLite (the embedded default) or PostgreSQL.
//!
//! One set of runtime queries (`$n` placeholders, `ON CONFLICT`, `RETURNING`: portable between
//! the two) serves both backends: `with_pool!` compiles each method body once per backend. The
//! only backend-specific code is connection set-up and the batched event insert.
//!
//! SQLite is tuned for a server: WAL (readers never block the writer), `synchronous=NORMAL`
//! (a commit survives a process crash; see docs/durability.md for power loss), a busy timeout, and
//! two pools: ONE writer connection, so writes queue in the pool instead of fighting over the
//! database lock, and a few reader connections.

mod migrations;
mod open;
mod rows;
mod sqlite_log;

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use super::{IdempotencyClaim, JobStore, ListJobsQuery};
use crate::domain::{Event, Example, JobId, JobRecord, JobStatus, now_epoch_s};
use crate::error::{Error, Result};
use rows::{EventRow, ExampleRow, JobRow, JobValues, job_columns, to_i64, to_json};

enum Pools {
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
        /// Staged rows and the background checkpoint (see [`sqlite_log`]).
        log: sqlite_log::LogState,
    },
    Postgres(PgPool),
}

/// A [`JobStore`] in SQLite or PostgreSQL.
pub struct SqlStore {
    pools: Pools,
}

/// Runs `$body` with `$pool` bound to the backend's reader or writer pool. The body is expanded
/// once per backend, so the same query text and binds compile against both drivers.
macro_rules! with_pool {
    ($store:expr, read, |$pool:ident| $body:expr) => {
        match &$store.pools {
            Pools::Sqlite { read: $pool, .. } => $body,
            Pools::Postgres($pool) => $body,
        }
    };
    ($store:expr, write, |$pool:ident| $body:expr) => {
        match &$store.pools {
            Pools::Sqlite { write: $pool, .. } => $body,
            Pools::Postgres($pool) => $body,
        }
    };
}

impl SqlStore {
    async fn list_where(
        &self,
        statuses: &[JobStatus],
        limit: usize,
        offset: usize,
    ) -> Result<Vec<JobRecord>> {
        let rows: Vec<JobRow> = if statuses.is_empty() {
            const SQL: &str = concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
            );
            with_pool!(self, read, |pool| sqlx::query_as(SQL)
                .bind(to_i64(limit))
                .bind(to_i64(offset))
                .fetch_all(pool)
                .await?)
        } else {
            // Six slots, one per status; unused ones repeat the first status.
            const SQL: &str = concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE status IN ($3, $4, $5, $6, $7, $8)",
                " ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
            );
            let slot = |i: usize| statuses.get(i).unwrap_or(&statuses[0]).as_str();
            with_pool!(self, read, |pool| sqlx::query_as(SQL)
                .bind(to_i64(limit))
                .bind(to_i64(offset))
                .bind(slot(0))
                .bind(slot(1))
                .bind(slot(2))
                .bind(slot(3))
                .bind(slot(4))
                .bind(slot(5))
                .fetch_all(pool)
                .await?)
        };
        rows.into_iter().map(JobRecord::try_from).collect()
    }

    /// Appends a batch in one transaction. SQLite: see [`sqlite_log`]; Postgres: one `UNNEST`
    /// insert for the whole batch (one round trip, one implicit transaction).
    async fn insert_events(&self, events: &[Event], data: &[String]) -> Result<()> {
        match &self.pools {
            Pools::Sqlite { write, read, log } => {
                sqlite_log::append(write, read, log, events, data).await?
            }
            Pools::Postgres(pool) => {
                let mut job_ids = Vec::with_capacity(events.len());
                let mut ids = Vec::with_capacity(events.len());
                let mut stamps = Vec::with_capacity(events.len());
                let mut kinds = Vec::with_capacity(events.len());
                for event in events {
                    job_ids.push(event.job_id.clone());
                    ids.push(to_i64(event.id));
                    stamps.push(event.ts);
                    kinds.push(event.payload.type_name().to_string());
                }
                // A single statement is its own transaction.
                sqlx::query(
                    "INSERT INTO events (job_id, id, ts, type, data) \
                     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::float8[], $4::text[], $5::text[])",
                )
                .bind(job_ids)
                .bind(ids)
                .bind(stamps)
                .bind(kinds)
                .bind(data)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl JobStore for SqlStore {
    fn kind(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite { .. } => "sqlite",
            Pools::Postgres(_) => "postgres",
        }
    }

    async fn insert_job(&self, job: &JobRecord) -> Result<()> {
        let values = JobValues::of(job)?;
        with_pool!(self, write, |pool| sqlx::query(
            "INSERT INTO jobs (id, status, created_at, updated_at, spec, result, last_event_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(&job.id)
        .bind(values.status)
        .bind(job.created_at)
        .bind(job.updated_at)
        .bind(&values.spec)
        .bind(&values.result)
        .bind(values.last_event_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    async fn update_job(&self, job: &JobRecord) -> Result<()> {
        let values = JobValues::of(job)?;
        with_pool!(self, write, |pool| sqlx::query(
            "UPDATE jobs SET status = $2, updated_at = $3, result = $4, last_event_id = $5 \
             WHERE id = $1"
        )
        .bind(&job.id)
        .bind(values.status)
        .bind(job.updated_at)
        .bind(&values.result)
        .bind(values.last_event_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        const SQL: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");
        let row: Option<JobRow> = with_pool!(self, read, |pool| sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(JobRecord::try_from).transpose()
    }

    async fn list_jobs(&self, query: &ListJobsQuery) -> Result<Vec<JobRecord>> {
        self.list_where(&query.statuses, query.limit, query.offset)
            .await
    }

    async fn jobs_with_status(&self, statuses: &[JobStatus]) -> Result<Vec<JobRecord>> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        self.list_where(statuses, usize::MAX, 0).await
    }

    async fn delete_job(&self, id: &str) -> Result<bool> {
        let deleted = with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            for sql in [
                "DELETE FROM events WHERE job_id = $1",
                "DELETE FROM event_staging WHERE job_id = $1",
            ] {
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM checkpoints WHERE job_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM idempotency_keys WHERE job_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let jobs = sqlx::query("DELETE FROM jobs WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            jobs.rows_affected() > 0
        });
        Ok(deleted)
    }

    async fn append_events(&self, events: &[Event]) -> Result<()> {
        let data: Vec<String> = events.iter().map(|e| e.payload.data_json_text()).collect();
        self.append_rendered(events, &data).await
    }

    async fn append_rendered(&self, events: &[Event], data: &[String]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        if data.len() != events.len() {
            return Err(Error::Store(format!(
                "{} events but {} rendered data objects",
                events.len(),
                data.len()
            )));
        }
        self.insert_events(events, data).await
    }

    async fn events_after(&self, job_id: &str, after_id: u64, limit: usize) -> Result<Vec<Event>> {
        const SQL: &str = "SELECT id, ts, type AS kind, data FROM ( \
                 SELECT id, ts, type, data FROM events WHERE job_id = $1 AND id > $2 \
                 UNION ALL \
                 SELECT id, ts, type, data FROM event_staging WHERE job_id = $1 AND id > $2 \
             ) AS log ORDER BY id LIMIT $3";
        let rows: Vec<EventRow> = with_pool!(self, read, |pool| sqlx::query_as(SQL)
            .bind(job_id)
            .bind(to_i64(after_id))
            .bind(to_i64(limit))
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(|row| row.into_event(job_id)).collect()
    }

    async fn claim_idempotency_key(
        &self,
        key: &str,
        job_id: &str,
        now: f64,
        expires_at: f64,
    ) -> Result<IdempotencyClaim> {
        // Insert, or take over an expired claim, atomically; no row back means a live claim holds
        // the key. Retried because that claim can expire or be deleted before it is read.
        for _ in 0..3 {
            let claimed: Option<String> = with_pool!(self, write, |pool| sqlx::query_scalar(
                "INSERT INTO idempotency_keys (key, job_id, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET job_id = excluded.job_id, \
                 expires_at = excluded.expires_at WHERE idempotency_keys.expires_at <= $4 \
                 RETURNING job_id"
            )
            .bind(key)
            .bind(job_id)
            .bind(expires_at)
            .bind(now)
            .fetch_optional(pool)
            .await?);
            if claimed.is_some() {
                return Ok(IdempotencyClaim::Claimed);
            }
            let existing: Option<String> = with_pool!(self, write, |pool| sqlx::query_scalar(
                "SELECT job_id FROM idempotency_keys WHERE key = $1 AND expires_at > $2"
            )
            .bind(key)
            .bind(now)
            .fetch_optional(pool)
            .await?);
            if let Some(existing) = existing {
                return Ok(IdempotencyClaim::Existing(existing));
            }
        }
        Err(Error::Store(format!(
            "idempotency key {key:?} kept changing while being claimed"
        )))
    }

    async fn reap(
        &self,
        now: f64,
        ttl_for: &(dyn Fn(JobStatus) -> Option<f64> + Sync),
    ) -> Result<Vec<JobId>> {
        let expiring: Vec<(JobStatus, f64)> = JobStatus::ALL
            .into_iter()
            .filter(|status| status.is_terminal())
            .filter_map(|status| ttl_for(status).map(|ttl| (status, ttl)))
            .collect();
        let deleted = with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let mut deleted: Vec<JobId> = Vec::new();
            for (status, ttl) in &expiring {
                for sql in [
                    "DELETE FROM events WHERE job_id IN \
                     (SELECT id FROM jobs WHERE status = $1 AND updated_at + $2 <= $3)",
                    "DELETE FROM event_staging WHERE job_id IN \
                     (SELECT id FROM jobs WHERE status = $1 AND updated_at + $2 <= $3)",
                    "DELETE FROM checkpoints WHERE job_id IN \
                     (SELECT id FROM jobs WHERE status = $1 AND updated_at + $2 <= $3)",
                ] {
                    sqlx::query(sql)
                        .bind(status.as_str())
                        .bind(*ttl)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                let ids: Vec<String> = sqlx::query_scalar(
                    "DELETE FROM jobs WHERE status = $1 AND updated_at + $2 <= $3 RETURNING id",
                )
                .bind(status.as_str())
                .bind(*ttl)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                deleted.extend(ids);
            }
            sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            deleted
        });
        Ok(deleted)
    }

    async fn upsert_examples(&self, examples: &[Example]) -> Result<usize> {
        let metas = examples
            .iter()
            .map(|e| to_json(&e.meta))
            .collect::<Result<Vec<_>>>()?;
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            for (example, meta) in examples.iter().zip(&metas) {
                sqlx::query(
                    "INSERT INTO examples (id, input, expected, meta) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO UPDATE SET input = excluded.input, \
                     expected = excluded.expected, meta = excluded.meta",
                )
                .bind(&example.id)
                .bind(&example.input)
                .bind(&example.expected)
                .bind(meta)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(examples.len())
    }

    async fn list_examples(&self, limit: usize, offset: usize) -> Result<Vec<Example>> {
        let rows: Vec<ExampleRow> = with_pool!(self, read, |pool| sqlx::query_as(
            "SELECT id, input, expected, meta FROM examples ORDER BY id LIMIT $1 OFFSET $2"
        )
        .bind(to_i64(limit))
        .bind(to_i64(offset))
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(Example::try_from).collect()
    }

    async fn delete_example(&self, id: &str) -> Result<bool> {
        let done = with_pool!(self, write, |pool| sqlx::query(
            "DELETE FROM examples WHERE id = $1"
        )
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(done > 0)
    }

    async fn put_checkpoint(&self, job_id: &str, checkpoint: &serde_json::Value) -> Result<()> {
        let data = to_json(checkpoint)?;
        with_pool!(self, write, |pool| {
            sqlx::query(
            "INSERT INTO checkpoints (job_id, data, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (job_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at"
        )
        .bind(job_id)
        .bind(&data)
        .bind(now_epoch_s())
        .execute(pool)
        .await?
        .rows_affected()
        });
        Ok(())
    }

    async fn get_checkpoint(&self, job_id: &str) -> Result<Option<serde_json::Value>> {
        let data: Option<String> = with_pool!(self, read, |pool| sqlx::query_scalar(
            "SELECT data FROM checkpoints WHERE job_id = $1"
        )
        .bind(job_id)
        .fetch_optional(pool)
        .await?);
        data.map(|text| {
            serde_json::from_str(&text)
                .map_err(|e| Error::Store(format!("unreadable checkpoint of {job_id}: {e}")))
        })
        .transpose()
    }
}
