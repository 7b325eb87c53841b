//! The durable stores: one [`SqlStore`] over SQLite (the embedded default) or PostgreSQL.
//!
//! One set of runtime queries (`$n` placeholders, `ON CONFLICT`, `RETURNING`: portable between
//! the two) serves both backends: `with_pool!` compiles each method body once per backend. The
//! only backend-specific code is connection set-up and the group commit's set-based statements
//! (`batch`). Event logs are stored packed, one row per job per group commit (`chunks`).
//! This file holds the pools and the event and job-row seams; the other seams are in
//! `idempotency.rs`, `examples.rs`, `checkpoints.rs` and `lease.rs`.
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
//! commit's statements keep no statement journal (`batch`). The example corpus is cached in
//! process (`corpus`).

mod batch;
mod chunks;
mod corpus;
mod migrations;
mod open;
mod rows;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::Connection;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};

use super::{
    CheckpointError, EventStore, EventStoreError, ExampleStoreError, IdempotencyError, JobRows,
    JobRowsError, LeaseError, ListJobsQuery, StoreFailure, Turn, WriteBatch,
};
use crate::domain::{Event, Example, JobId, JobRecord, JobStatus};
use rows::{ExampleRow, JobRow, job_columns, to_i64};

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

/// A [`super::JobStore`] in SQLite or PostgreSQL.
pub struct SqlStore {
    pools: Pools,
    /// Postgres: the lease epoch this process last wrote each job's events under (from the
    /// group commits' fences), so checkpoint writes are fenced like events: a replica that
    /// lost a job's lease cannot add to its checkpoint (see `checkpoints.rs`). Dropped when
    /// the job's terminal row is written.
    held: std::sync::Mutex<std::collections::HashMap<JobId, u64>>,
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

/// What the store's internals return; each seam's error converts from it.
type Result<T, E = StoreFailure> = std::result::Result<T, E>;

fn closed() -> StoreFailure {
    StoreFailure("the store is closed".into())
}

/// A driver error is a store failure (`?` on sqlx calls); the crate's `Error` knows no driver.
impl From<sqlx::Error> for StoreFailure {
    fn from(err: sqlx::Error) -> Self {
        StoreFailure(err.to_string())
    }
}

/// `?` on sqlx calls in each seam's methods.
macro_rules! seam_from_sqlx {
    ($($seam:ty),* $(,)?) => {$(
        impl From<sqlx::Error> for $seam {
            fn from(err: sqlx::Error) -> Self {
                StoreFailure::from(err).into()
            }
        }
    )*};
}
seam_from_sqlx!(
    EventStoreError,
    JobRowsError,
    IdempotencyError,
    ExampleStoreError,
    CheckpointError,
    LeaseError,
);

// After `with_pool!`, which they use.
mod checkpoints;
mod examples;
mod idempotency;
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

    /// Remembers the epochs a committed batch wrote under (Postgres only: SQLite has one
    /// process and no leases).
    fn note_fences(&self, batch: &WriteBatch, fenced: &[JobId]) {
        if !matches!(self.pools, Pools::Postgres(_)) || batch.fences.is_empty() {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        // A fenced job keeps the epoch it wrote under: its checkpoint writes are refused too.
        for fence in &batch.fences {
            held.insert(fence.job_id.clone(), fence.epoch);
        }
        for update in &batch.updates {
            if update.status.is_terminal() && !fenced.contains(&update.id) {
                held.remove(&update.id);
            }
        }
    }

    /// The epoch a checkpoint write of `job_id` must still find on its row (Postgres, once
    /// this process has written the job's events under a lease).
    fn checkpoint_fence(&self, job_id: &str) -> Option<i64> {
        if !matches!(self.pools, Pools::Postgres(_)) {
            return None;
        }
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(job_id).map(|epoch| to_i64(*epoch))
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
impl EventStore for SqlStore {
    fn kind(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite { .. } => "sqlite",
            Pools::Postgres(_) => "postgres",
        }
    }

    async fn write(&self, batch: &WriteBatch) -> Result<(), EventStoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let fenced = self
            .write_rows(&batch::Rows::of(batch, self.codec())?)
            .await?;
        self.note_fences(batch, &fenced);
        if !fenced.is_empty() {
            tracing::warn!(jobs = ?fenced, "writes of jobs claimed by another replica dropped");
        }
        Ok(())
    }

    /// Renders the rows while the previous batch commits, then takes its turn.
    async fn write_after(&self, batch: &WriteBatch, previous: Turn) -> Result<(), EventStoreError> {
        self.write_fenced(batch, previous).await.map(|_| ())
    }

    async fn write_fenced(
        &self,
        batch: &WriteBatch,
        previous: Turn,
    ) -> Result<Vec<JobId>, EventStoreError> {
        let rows = batch::Rows::of(batch, self.codec());
        previous.await;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let fenced = self.write_rows(&rows?).await?;
        self.note_fences(batch, &fenced);
        Ok(fenced)
    }

    async fn events_after(
        &self,
        job_id: &str,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<Event>, EventStoreError> {
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
}

#[async_trait]
impl JobRows for SqlStore {
    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>, JobRowsError> {
        const SQL: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");
        let row: Option<JobRow> = with_pool!(self, read, |pool| sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        Ok(row.map(JobRecord::try_from).transpose()?)
    }

    async fn list_jobs(&self, query: &ListJobsQuery) -> Result<Vec<JobRecord>, JobRowsError> {
        Ok(self
            .list_where(&query.statuses, query.limit, query.offset)
            .await?)
    }

    async fn jobs_with_status(
        &self,
        statuses: &[JobStatus],
    ) -> Result<Vec<JobRecord>, JobRowsError> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.list_where(statuses, usize::MAX, 0).await?)
    }

    async fn delete_job(&self, id: &str) -> Result<bool, JobRowsError> {
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

    async fn reap(
        &self,
        now: f64,
        ttl_for: &(dyn Fn(JobStatus) -> Option<f64> + Sync),
    ) -> Result<Vec<JobId>, JobRowsError> {
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
}
