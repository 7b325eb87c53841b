//! Persistence, split along the seams it serves; each seam is one trait with its own error:
//! - [`EventStore`] ([`events`]): the group commit ([`WriteBatch`]: new job rows, events of many
//!   jobs, row updates) and reading a job's event log back;
//! - [`JobRows`] ([`jobs`]): reading, listing, deleting and reaping job rows;
//! - [`IdempotencyKeys`] ([`idempotency`]): claiming keys for job creation;
//! - [`ExampleStore`] ([`examples`]): the stored example corpus;
//! - [`CheckpointStore`] ([`checkpoints`]): engine checkpoints (a base and incremental parts);
//! - [`LeaseStore`] ([`lease`]): job ownership by several replicas on one database.
//!
//! [`JobStore`] is all of them (a blanket supertrait), so wiring passes one `Arc<dyn JobStore>`
//! and each consumer takes only the seam it uses (an optimizer gets an
//! `Arc<dyn CheckpointStore>` and an `Arc<dyn ExampleStore>`, not the whole store). Each seam's
//! error maps into the crate's [`crate::error::Error::Store`] with the same message.
//! The runtime is the only writer of job state; stores never interpret payloads beyond serde.
//!
//! Hidden contracts every implementation keeps:
//! - [`EventStore::write`] receives one group commit ([`WriteBatch`]): new job rows, events of
//!   many jobs (each job's in increasing id order) and job-row updates. It is atomic (all or
//!   nothing) and durable when it returns. `insert_job`, `update_job` and `append_events` are
//!   one-part batches. [`EventStore::write_after`] is the same commit ordered after the previous
//!   one: the writer overlaps preparing batch N+1 with committing batch N, but commits land in
//!   queue order.
//! - `events_after` returns events in id order.
//! - `claim_idempotency_key` is atomic: of two concurrent claims of one key, one wins.

pub mod checkpoints;
pub mod events;
pub mod examples;
pub mod idempotency;
pub mod jobs;
pub mod lease;
pub mod memory;
pub mod sql;

pub use checkpoints::{CheckpointError, CheckpointStore};
pub use events::{EventStore, EventStoreError, PendingEvent, Turn, WriteBatch};
pub use examples::{ExampleStore, ExampleStoreError};
pub use idempotency::{IdempotencyClaim, IdempotencyError, IdempotencyKeys};
pub use jobs::{JobRows, JobRowsError, JobUpdate, ListJobsQuery};
pub use lease::{
    Claim, Claimed, Fence, LeaseError, LeaseStore, Listener, NewLease, Notice, Renewed,
    STEER_COMMAND,
};
pub use memory::MemoryStore;
pub use sql::SqlStore;

/// What a store's database (or the encoding of its rows) said when an operation failed: the
/// message every seam's error carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreFailure(pub String);

impl From<StoreFailure> for crate::error::Error {
    fn from(failure: StoreFailure) -> Self {
        crate::error::Error::Store(failure.0)
    }
}

/// Maps a seam's error into the crate's `Error` (`Error::Store` with the seam error's message,
/// as before the seams had errors of their own).
macro_rules! into_crate_error {
    ($($seam:ty),* $(,)?) => {$(
        impl From<$seam> for crate::error::Error {
            fn from(err: $seam) -> Self {
                crate::error::Error::Store(err.to_string())
            }
        }
    )*};
}
into_crate_error!(
    EventStoreError,
    JobRowsError,
    IdempotencyError,
    ExampleStoreError,
    CheckpointError,
    LeaseError,
);

/// Every seam of one store: what the runtime is wired with.
pub trait JobStore:
    EventStore + JobRows + IdempotencyKeys + ExampleStore + CheckpointStore + LeaseStore
{
}

impl<T> JobStore for T where
    T: EventStore
        + JobRows
        + IdempotencyKeys
        + ExampleStore
        + CheckpointStore
        + LeaseStore
        + ?Sized
{
}

/// Where the jobs live (`Settings::store_location`: `JOB_STORE` and its settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Memory,
    /// The SQLite file.
    Sqlite(std::path::PathBuf),
    /// `DATABASE_URL` (required).
    Postgres(Option<String>),
}

/// Opens the store at `location`: SQLite creates its data directory and file when missing;
/// SQL stores apply pending migrations before returning.
pub async fn open(location: &Location) -> crate::error::Result<std::sync::Arc<dyn JobStore>> {
    use crate::error::Error;
    match location {
        Location::Memory => Ok(std::sync::Arc::new(MemoryStore::new())),
        Location::Sqlite(file) => {
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir).await.map_err(|e| {
                    Error::Store(format!(
                        "cannot create data directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            Ok(std::sync::Arc::new(SqlStore::open_sqlite(file).await?))
        }
        Location::Postgres(url) => {
            let url = url.as_deref().ok_or_else(|| {
                Error::Store("DATABASE_URL is required when JOB_STORE=postgres".into())
            })?;
            Ok(std::sync::Arc::new(SqlStore::open_postgres(url).await?))
        }
    }
}
