//! The durable stores: one [`SqlStore`] over SQLite (the embedded default) or PostgreSQL.
//!
//! One set of runtime queries (`$n` placeholders, `ON CONFLICT`, `RETURNING`: portable between
//! the two) serves both backends: `with_pool!` compiles each method body once per backend. The
//! only backend-specific code is connection set-up and the group commit's set-based statements
//! ([`batch`]). Event logs are stored packed, one row per job per group commit ([`chunks`]).
//!
//! Every bound `LIMIT` is written `LIMIT $n + 0`: SQLite (3.51, STAT4) treats a bare `LIMIT ?`
//! as a plan-time constant and recompiles the statement each time it is rebound (measured: ~10 %
//! of the CPU of a run of short jobs went to `sqlite3Reprepare`). Postgres reads it the same.
//!
//! SQLite is tuned for a server: WAL (readers never block the writer), `synchronous=NORMAL`
//! (a commit survives a process crash; see docs/durability.md for power loss), a busy timeout,
//! ONE writer connection, owned by the store rather than pooled (writes queue on its lock
//! instead of fighting over the database lock, and no pool hand-back sits between two group
//! commits), and a pool of reader connections. Temporary storage is in memory, and the group
//! commit's statements keep no statement journal ([`batch`]). The example corpus is cached in
//! process ([`corpus`]).

mod batch;
mod chunks;
mod corpus;
mod migrations;
mod open;
mod rows;

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::Connection;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};

use super::{IdempotencyClaim, JobStore, ListJobsQuery, Turn, WriteBatch};
use crate::domain::{Event, Example, JobId, JobRecord, JobStatus, now_epoch_s};
use crate::error::{Error, Result};
use rows::{ExampleRow, JobRow, job_columns, to_i64, to_json};

enum Pools {
    Sqlite {
        /// The one writer connection, owned rather than pooled: a pooled connection goes back
        /// through a spawned task that pings it before the next `acquire` sees it, which queued
        /// every group commit behind the job tasks (milliseconds per batch). `None` once closed.
        write: tokio::sync::Mutex<Option<SqliteConnection>>,
        /// How to open the writer connection again (after a failed group commit).
        writer_options: Box<SqliteConnectOptions>,
        read: SqlitePool,
        /// The example corpus, read once (see [`corpus`]).
        corpus: corpus::Corpus,
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
            Pools::Sqlite { write, .. } => {
                let mut writer = write.lock().await;
                let $pool: &mut SqliteConnection = writer.as_mut().ok_or_else(closed)?;
                $body
            }
            Pools::Postgres($pool) => $body,
        }
    };
}

fn closed() -> Error {
    Error::Store("the store is closed".into())
}

/// A driver error is a store error (`?` on sqlx calls); the crate's `Error` knows no driver.
impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Error::Store(err.to_string())
    }
}

// After `with_pool!`, which it uses.
mod lease;

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
                " FROM jobs ORDER BY created_at DESC, id DESC LIMIT $1 + 0 OFFSET $2"
            );
            with_pool!(self, read, |pool| sqlx::query_as(SQL)
                .bind(to_i64(limit))
                .bind(to_i64(offset))
                .fetch_all(pool)
                .await?)
        } else {
            // Seven slots, one per status; unused ones repeat the first status.
            const SQL: &str = concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE status IN ($3, $4, $5, $6, $7, $8, $9)",
                " ORDER BY created_at DESC, id DESC LIMIT $1 + 0 OFFSET $2"
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
                .bind(slot(6))
                .fetch_all(pool)
                .await?)
        };
        rows.into_iter().map(JobRecord::try_from).collect()
    }

    /// A page of `examples` in id order, from the table.
    async fn examples_page(&self, limit: usize, offset: usize) -> Result<Vec<Example>> {
        let rows: Vec<ExampleRow> = with_pool!(self, read, |pool| sqlx::query_as(
            "SELECT id, input, expected, meta FROM examples ORDER BY id LIMIT $1 + 0 OFFSET $2"
        )
        .bind(to_i64(limit))
        .bind(to_i64(offset))
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(Example::try_from).collect()
    }

    /// After a committed write to `examples`.
    fn examples_changed(&self) {
        if let Pools::Sqlite { corpus, .. } = &self.pools {
            corpus.invalidate();
        }
    }

    /// How event chunks are stored: compressed on SQLite ([`chunks`]).
    fn codec(&self) -> chunks::Codec {
        match self.pools {
            Pools::Sqlite { .. } => chunks::Codec::Lz4,
            Pools::Postgres(_) => chunks::Codec::Text,
        }
    }

    /// Commits rendered rows: one transaction (or one statement). Returns the fenced jobs
    /// (Postgres; SQLite has one process and checks no fences).
    async fn write_rows(&self, rows: &batch::Rows<'_>) -> Result<Vec<JobId>> {
        match &self.pools {
            Pools::Sqlite {
                write,
                writer_options,
                ..
            } => {
                let mut connection = write.lock().await;
                let conn = connection.as_mut().ok_or_else(closed)?;
                let written = sqlite_rows(conn, rows).await;
                if written.is_err() {
                    // On some errors (disk full, I/O) SQLite rolls the transaction back by
                    // itself, which sqlx does not see: its next BEGIN would then be a SAVEPOINT
                    // of a transaction that no longer exists. A failed batch is rare, so the
                    // writer starts over on a fresh connection rather than guess at its state.
                    match SqliteConnection::connect_with(writer_options).await {
                        Ok(fresh) => {
                            if let Some(old) = connection.replace(fresh) {
                                let _ = old.close().await;
                            }
                        }
                        Err(err) => tracing::warn!(
                            error = %err,
                            "cannot reopen the SQLite writer connection; keeping the old one"
                        ),
                    }
                }
                written?;
            }
            Pools::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let fenced = batch::postgres(&mut tx, rows, rows.fences).await?;
                tx.commit().await?;
                return Ok(fenced);
            }
        }
        Ok(Vec::new())
    }
}

/// One group commit on the SQLite writer: a single statement is its own transaction (many
/// batches are one chunk insert).
async fn sqlite_rows(conn: &mut SqliteConnection, rows: &batch::Rows<'_>) -> Result<()> {
    if rows.sqlite_statements() > 1 {
        let mut tx = conn.begin().await?;
        batch::sqlite(&mut tx, rows, true).await?;
        tx.commit().await?;
    } else {
        batch::sqlite(conn, rows, false).await?;
    }
    Ok(())
}

#[async_trait]
impl JobStore for SqlStore {
    fn kind(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite { .. } => "sqlite",
            Pools::Postgres(_) => "postgres",
        }
    }

    async fn write(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let fenced = self
            .write_rows(&batch::Rows::of(batch, self.codec())?)
            .await?;
        if !fenced.is_empty() {
            tracing::warn!(jobs = ?fenced, "writes of jobs claimed by another replica dropped");
        }
        Ok(())
    }

    /// Renders the rows while the previous batch commits, then takes its turn.
    async fn write_after(&self, batch: &WriteBatch, previous: Turn) -> Result<()> {
        self.write_fenced(batch, previous).await.map(|_| ())
    }

    async fn write_fenced(&self, batch: &WriteBatch, previous: Turn) -> Result<Vec<JobId>> {
        let rows = batch::Rows::of(batch, self.codec());
        previous.await;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.write_rows(&rows?).await
    }

    fn shared(&self) -> bool {
        matches!(self.pools, Pools::Postgres(_))
    }

    async fn claim_jobs(&self, claim: &super::Claim<'_>) -> Result<Vec<super::Claimed>> {
        self.claim(claim).await
    }

    async fn renew_leases(&self, owner: &str, until: f64) -> Result<Vec<super::Renewed>> {
        self.renew(owner, until).await
    }

    async fn release_leases(&self, owner: &str) -> Result<()> {
        self.release(owner).await
    }

    async fn request(&self, job_id: &str, command: &str) -> Result<bool> {
        self.leave_request(job_id, command).await
    }

    async fn clear_request(&self, job_id: &str) -> Result<()> {
        self.forget_request(job_id).await
    }

    async fn claimable_count(&self, now: f64) -> Result<u64> {
        self.count_claimable(now).await
    }

    async fn announce_claimable(&self) -> Result<()> {
        self.notify(super::lease::CLAIMABLE_CHANNEL, "").await
    }

    fn listen(
        &self,
        tx: tokio::sync::mpsc::Sender<super::Notice>,
        stop: tokio_util::sync::CancellationToken,
    ) -> bool {
        self.spawn_listener(tx, stop)
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
            sqlx::query("DELETE FROM event_chunks WHERE job_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM checkpoints WHERE job_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM checkpoint_parts WHERE job_id = $1")
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

    async fn events_after(&self, job_id: &str, after_id: u64, limit: usize) -> Result<Vec<Event>> {
        // Each chunk holds at least one event, so `limit` chunks always suffice; the stream stops
        // as soon as `limit` events are unpacked.
        const SQL: &str = "SELECT events FROM event_chunks WHERE job_id = $1 AND last_id > $2 \
                           ORDER BY last_id LIMIT $3 + 0";
        let mut events = Vec::new();
        if limit == 0 {
            return Ok(events);
        }
        with_pool!(self, read, |pool| {
            let mut scratch = Vec::new();
            let mut rows = sqlx::query_scalar::<_, chunks::Body>(SQL)
                .bind(job_id)
                .bind(to_i64(after_id))
                .bind(to_i64(limit))
                .fetch(pool);
            while let Some(text) = rows.try_next().await? {
                chunks::unpack(job_id, &text, after_id, limit, &mut events, &mut scratch)?;
                if events.len() >= limit {
                    break;
                }
            }
        });
        Ok(events)
    }

    async fn claim_idempotency_key_for(
        &self,
        key: &str,
        job_id: &str,
        request_hash: Option<&str>,
        now: f64,
        expires_at: f64,
    ) -> Result<IdempotencyClaim> {
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
        Err(Error::Store(format!(
            "idempotency key {key:?} kept changing while being claimed"
        )))
    }

    async fn forget_dangling_keys(&self, expiring_by: f64) -> Result<usize> {
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
                    "DELETE FROM event_chunks WHERE job_id IN \
                     (SELECT id FROM jobs WHERE status = $1 AND updated_at + $2 <= $3)",
                    "DELETE FROM checkpoints WHERE job_id IN \
                     (SELECT id FROM jobs WHERE status = $1 AND updated_at + $2 <= $3)",
                    "DELETE FROM checkpoint_parts WHERE job_id IN \
                     (SELECT id FROM jobs WHERE status = $1 AND updated_at + $2 <= $3)",
                    // A key never outlives its job.
                    "DELETE FROM idempotency_keys WHERE job_id IN \
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
        self.examples_changed();
        Ok(examples.len())
    }

    async fn list_examples(&self, limit: usize, offset: usize) -> Result<Vec<Example>> {
        if let Pools::Sqlite { corpus, .. } = &self.pools {
            let all = match corpus.get() {
                (corpus::Snapshot::Cached(all), _) => Some(all),
                (corpus::Snapshot::TooBig, _) => None,
                (corpus::Snapshot::Unread, generation) => {
                    let all = self.examples_page(corpus::MAX_CACHED + 1, 0).await?;
                    if all.len() > corpus::MAX_CACHED {
                        corpus.fill(generation, corpus::Snapshot::TooBig);
                        None
                    } else {
                        let all = Arc::new(all);
                        corpus.fill(generation, corpus::Snapshot::Cached(all.clone()));
                        Some(all)
                    }
                }
            };
            if let Some(all) = all {
                return Ok(all.iter().skip(offset).take(limit).cloned().collect());
            }
        }
        self.examples_page(limit, offset).await
    }

    async fn delete_example(&self, id: &str) -> Result<bool> {
        let done = with_pool!(self, write, |pool| sqlx::query(
            "DELETE FROM examples WHERE id = $1"
        )
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected());
        self.examples_changed();
        Ok(done > 0)
    }

    async fn put_checkpoint(&self, job_id: &str, checkpoint: &serde_json::Value) -> Result<()> {
        self.put_checkpoint_text(job_id, to_json(checkpoint)?).await
    }

    async fn put_checkpoint_text(&self, job_id: &str, data: String) -> Result<()> {
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

    async fn append_checkpoint_part(&self, job_id: &str, part: &str) -> Result<()> {
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

    async fn checkpoint_parts(&self, job_id: &str) -> Result<Vec<String>> {
        let parts: Vec<String> = with_pool!(self, read, |pool| sqlx::query_scalar(
            "SELECT data FROM checkpoint_parts WHERE job_id = $1 ORDER BY seq"
        )
        .bind(job_id)
        .fetch_all(pool)
        .await?);
        Ok(parts)
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
