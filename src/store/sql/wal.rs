//! SQLite's WAL checkpoints, off the writer's path.
//!
//! In WAL mode every commit appends pages to the `-wal` file; a checkpoint copies them back into
//! the database file. The automatic checkpoint runs inside whichever commit crosses
//! `wal_autocheckpoint` and stalled that batch by 100+ ms, so it is only a backstop: after every
//! [`CHECKPOINT_EVERY_BYTES`] of appended event data a passive checkpoint runs on a reader
//! connection, concurrently with the writer (WAL readers never block the writer).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::sqlite::SqlitePool;
use tokio::task::JoinHandle;

/// Appended event bytes between two background checkpoints.
const CHECKPOINT_EVERY_BYTES: usize = 8 << 20;

/// Bytes appended since the last checkpoint and the running checkpoint, if any.
#[derive(Default)]
pub(super) struct Checkpoints {
    appended: AtomicUsize,
    /// Owned here; [`Checkpoints::finish`] waits for it.
    running: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpoints {
    /// Counts `bytes` of committed data; starts a checkpoint when enough has accumulated.
    pub fn appended(&self, bytes: usize, read: &SqlitePool) {
        let total = self.appended.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total >= CHECKPOINT_EVERY_BYTES && self.spawn(read) {
            self.appended.store(0, Ordering::Relaxed);
        }
    }

    /// Waits for a running checkpoint (before the pools close).
    pub async fn finish(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(running) = running {
            let _ = running.await;
        }
    }

    /// Starts a passive checkpoint on a reader connection unless one is running.
    fn spawn(&self, read: &SqlitePool) -> bool {
        let mut slot = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|running| !running.is_finished()) {
            return false;
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
        true
    }
}
