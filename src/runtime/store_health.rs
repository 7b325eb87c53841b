//! Whether the store can take writes, as the runtime sees it.
//!
//! Two kinds of trouble: a **write failure** (a batch that still failed after the writer's
//! retries: a full disk, a lost database connection), which clears at the next successful write
//! — [`monitor`] probes with a real write every couple of seconds while it lasts — and **lost
//! files** (the SQLite database deleted or replaced under the running server), which never
//! clears: the process would be writing into an unlinked file, so it stops taking work until a
//! restart. While either lasts the service reports not ready and refuses new jobs; the jobs
//! whose events could not be saved end as `failed` with `store_unavailable`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::{JobRecord, JobSpec, JobStatus, now_epoch_s};
use crate::store::{JobStore, WriteBatch};

/// What is wrong with the store, if anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    /// The last batch that could not be written, until a write succeeds again.
    pub write: Option<String>,
    /// The database files are gone or replaced (sticky).
    pub files: Option<String>,
}

impl Problems {
    /// A sentence for errors and probes, `None` when the store is fine.
    pub fn describe(&self) -> Option<String> {
        match (&self.files, &self.write) {
            (Some(files), _) => Some(files.clone()),
            (None, Some(write)) => Some(format!("the job store cannot write: {write}")),
            (None, None) => None,
        }
    }
}

/// Shared by the writer (which reports), the runtime (which refuses work) and the server
/// (which turns readiness off).
#[derive(Debug)]
pub struct StoreHealth {
    tx: watch::Sender<Problems>,
}

impl Default for StoreHealth {
    fn default() -> Self {
        StoreHealth {
            tx: watch::Sender::new(Problems::default()),
        }
    }
}

impl StoreHealth {
    pub fn write_failed(&self, error: &str) {
        self.tx.send_if_modified(|p| {
            if p.write.is_none() {
                tracing::error!(error, "the job store cannot write: not ready until it can");
            }
            let changed = p.write.as_deref() != Some(error);
            p.write = Some(error.to_string());
            changed
        });
    }

    pub fn write_succeeded(&self) {
        self.tx.send_if_modified(|p| {
            let was = p.write.take().is_some();
            if was {
                tracing::info!("the job store takes writes again");
            }
            was
        });
    }

    pub fn files_lost(&self, what: String) {
        self.tx.send_if_modified(|p| {
            if p.files.is_some() {
                return false;
            }
            tracing::error!(
                "{what}; refusing new jobs and ending running ones (restart the server to recover)"
            );
            p.files = Some(what);
            true
        });
    }

    pub fn problems(&self) -> Problems {
        self.tx.borrow().clone()
    }

    /// Changes of [`Self::problems`].
    pub fn subscribe(&self) -> watch::Receiver<Problems> {
        self.tx.subscribe()
    }
}

/// The identity of a file: device and inode.
#[cfg(unix)]
fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}

/// Writes one throwaway job row and deletes it: a real write, needing real space.
async fn probe(store: &dyn JobStore) -> crate::error::Result<()> {
    let now = now_epoch_s();
    let id = format!("store-probe-{}", uuid::Uuid::new_v4());
    let record = JobRecord {
        id: id.clone(),
        status: JobStatus::Failed,
        created_at: now,
        updated_at: now,
        spec: JobSpec::from_prompt("store probe"),
        result: None,
        last_event_id: 0,
        progress: Default::default(),
    };
    store
        .write(&WriteBatch {
            inserts: vec![record],
            ..WriteBatch::default()
        })
        .await?;
    store.delete_job(&id).await?;
    Ok(())
}

/// Until `stop`: every second, checks that the SQLite file `sqlite_file` (when the store is
/// SQLite) is still the one opened at start; every two seconds while writes fail, probes the
/// store with a real write and clears the failure when it goes through.
pub async fn monitor(
    health: Arc<StoreHealth>,
    store: Arc<dyn JobStore>,
    sqlite_file: Option<PathBuf>,
    stop: CancellationToken,
) {
    let opened = sqlite_file.as_deref().and_then(identity);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        ticks += 1;
        if let (Some(path), Some(opened)) = (&sqlite_file, opened) {
            match identity(path) {
                None => health.files_lost(format!(
                    "the SQLite database {} was deleted under the running server",
                    path.display()
                )),
                Some(now) if now != opened => health.files_lost(format!(
                    "the SQLite database {} was replaced under the running server",
                    path.display()
                )),
                Some(_) => {}
            }
        }
        if ticks.is_multiple_of(2) && health.problems().write.is_some() {
            match probe(store.as_ref()).await {
                Ok(()) => health.write_succeeded(),
                Err(err) => tracing::debug!(error = %err, "store probe failed"),
            }
        }
    }
}
