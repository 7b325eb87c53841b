//! How SQLite appends events cheaply.
//!
//! `events` is clustered by `(job_id, id)`, which makes a job's replay one range scan but scatters
//! a batch of N jobs' events over N B-tree pages: every commit would rewrite N pages (4 KiB each)
//! for N small rows. So a batch goes to `event_staging` instead, an append-only rowid table where
//! it fills a few consecutive pages. Every [`COMPACT_AFTER`] staged rows one transaction moves them
//! into `events`, sorted, so each page there is written once per many events. Readers query both
//! tables; in any snapshot a row is in exactly one of them. After every few compactions a passive
//! WAL checkpoint runs on a reader connection, concurrently with the writer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::task::JoinHandle;

use sqlx::sqlite::SqlitePool;

use super::rows::{to_i64, to_json};
use crate::domain::Event;
use crate::error::Result;

/// Staged rows that trigger a compaction. Bounds the unindexed scan a read does on the staging
/// table (a few thousand rows, a millisecond or two).
pub(super) const COMPACT_AFTER: usize = 4096;

/// Compactions between two WAL checkpoints (each compaction cycle adds a few MiB to the WAL).
const CHECKPOINT_EVERY: usize = 2;

/// The SQLite append path's state: rows waiting in `event_staging` and the background WAL
/// checkpoint.
#[derive(Default)]
pub(super) struct LogState {
    pub staged: AtomicUsize,
    compactions: AtomicUsize,
    /// The running checkpoint, if any. Owned here; [`LogState::finish`] waits for it.
    checkpoint: Mutex<Option<JoinHandle<()>>>,
}

impl LogState {
    pub fn new(staged: usize) -> Self {
        LogState {
            staged: AtomicUsize::new(staged),
            ..LogState::default()
        }
    }

    /// Waits for a running checkpoint (before the pools close).
    pub async fn finish(&self) {
        let running = self
            .checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(running) = running {
            let _ = running.await;
        }
    }

    /// Starts a passive WAL checkpoint on a reader connection unless one is running. In WAL mode
    /// a checkpoint runs concurrently with the writer, so copying pages back into the database
    /// file no longer stalls the commit that happened to cross `wal_autocheckpoint`.
    fn spawn_checkpoint(&self, read: &SqlitePool) {
        let mut slot = self.checkpoint.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|running| !running.is_finished()) {
            return;
        }
        let read = read.clone();
        *slot = Some(tokio::spawn(async move {
            if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&read)
                .await
            {
                tracing::warn!(error = %err, "WAL checkpoint failed; will retry");
            }
        }));
    }
}

/// Appends one batch with ONE statement (a single statement is its own transaction: the
/// durability point), then compacts when due. The batch travels as one JSON array bound as one
/// parameter and SQLite's `json_each` unpacks it: one bind and one hop to the connection's worker
/// thread per batch instead of five binds per row and three or more statements per batch. A
/// failed compaction is only logged: the batch is already durable and must not be appended twice.
pub(super) async fn append(
    write: &SqlitePool,
    read: &SqlitePool,
    log: &LogState,
    events: &[Event],
    data: &[String],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO event_staging (job_id, id, ts, type, data) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
         FROM json_each(?1)",
    )
    .bind(batch_json(events, data)?)
    .execute(write)
    .await?;
    if log.staged.fetch_add(events.len(), Ordering::Relaxed) + events.len() >= COMPACT_AFTER {
        match compact(write).await {
            Ok(()) => {
                log.staged.store(0, Ordering::Relaxed);
                if log.compactions.fetch_add(1, Ordering::Relaxed) % CHECKPOINT_EVERY
                    == CHECKPOINT_EVERY - 1
                {
                    log.spawn_checkpoint(read);
                }
            }
            Err(err) => tracing::warn!(error = %err, "event log compaction failed; will retry"),
        }
    }
    Ok(())
}

/// `[[job_id, id, ts, type, data], …]`, `data` as a JSON string holding the rendered object.
fn batch_json(events: &[Event], data: &[String]) -> Result<String> {
    let rows: Vec<_> = events
        .iter()
        .zip(data)
        .map(|(event, data)| {
            (
                &event.job_id,
                to_i64(event.id),
                event.ts,
                event.payload.type_name(),
                data,
            )
        })
        .collect();
    to_json(&rows)
}

/// Moves every staged event into `events` in one transaction.
pub(super) async fn compact(write: &SqlitePool) -> Result<()> {
    let mut tx = write.begin().await?;
    sqlx::query(
        "INSERT INTO events (job_id, id, ts, type, data) \
         SELECT job_id, id, ts, type, data FROM event_staging ORDER BY job_id, id",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM event_staging")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Rows waiting in the staging table (at open).
pub(super) async fn staged_rows(write: &SqlitePool) -> Result<usize> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_staging")
        .fetch_one(write)
        .await?;
    Ok(usize::try_from(n).unwrap_or(0))
}
