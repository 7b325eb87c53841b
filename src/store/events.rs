//! The event seam: one group commit ([`WriteBatch`]: new job rows, events of many jobs, row
//! updates) and a job's event log read back. The runtime's single event writer is the only
//! writer on the hot path (see `docs/durability.md`); watchers and the workbench read.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use super::StoreFailure;
use super::jobs::JobUpdate;
use super::lease::{Fence, NewLease};
use crate::domain::{Event, JobId, JobRecord};

/// Why a group commit or a read of an event log failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventStoreError {
    /// The database failed (nothing of the batch is written).
    #[error(transparent)]
    Failed(#[from] StoreFailure),
    /// A stored chunk of the job's log does not decode.
    #[error("unreadable event chunk of {job_id}: {reason}")]
    Unreadable { job_id: JobId, reason: String },
}

/// An event on its way to the store, with its JSON text ([`Event::json_text`]) already
/// rendered by the emitting job's task when the store keeps text
/// ([`EventStore::keeps_rendered_data`]); empty otherwise.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub event: Arc<Event>,
    pub json: String,
}

impl PendingEvent {
    /// Renders `json` from the event.
    pub fn rendered(event: Arc<Event>) -> PendingEvent {
        let json = event.json_text();
        PendingEvent { event, json }
    }
}

/// Completes when the commit before this one has completed (see [`EventStore::write_after`]).
pub type Turn = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One group commit: everything in it becomes durable together, in this order: new job rows,
/// events, then row updates (a later update of the same job wins).
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub inserts: Vec<JobRecord>,
    pub events: Vec<PendingEvent>,
    pub updates: Vec<JobUpdate>,
    /// Jobs whose events and updates in this batch are written only while the job still has
    /// this lease epoch (see [`super::lease`]). Stores shared between processes check them in
    /// the same transaction; a store only one process uses ignores them.
    pub fences: Vec<Fence>,
    /// Leases of new rows in `inserts` (stores shared between processes; others ignore them).
    pub leases: Vec<NewLease>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty() && self.events.is_empty() && self.updates.is_empty()
    }

    pub fn clear(&mut self) {
        self.inserts.clear();
        self.events.clear();
        self.updates.clear();
        self.fences.clear();
        self.leases.clear();
    }
}

/// Group commits and event logs.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// A short name for logs and `innerloop config` (`memory`, `sqlite`, `postgres`).
    fn kind(&self) -> &'static str;

    /// Commits a batch atomically; durable when it returns. The runtime's single event writer
    /// is the only caller on the hot path (see `docs/durability.md`).
    async fn write(&self, batch: &WriteBatch) -> Result<(), EventStoreError>;

    /// [`EventStore::write`], started only once `previous` (the commit queued before this one)
    /// has completed, so commits land in queue order and a reader never sees a later batch
    /// without an earlier one. A store may prepare the batch (render its rows) before waiting;
    /// the default only waits.
    async fn write_after(&self, batch: &WriteBatch, previous: Turn) -> Result<(), EventStoreError> {
        previous.await;
        self.write(batch).await
    }

    /// [`EventStore::write_after`] that checks the batch's [`WriteBatch::fences`] in the same
    /// transaction: the events and updates of a job whose lease epoch is no longer the fence's
    /// (claimed by another replica since, or deleted) are not written, and the job's id is
    /// returned; the rest of the batch commits. The default (a store one process uses) checks
    /// nothing.
    async fn write_fenced(
        &self,
        batch: &WriteBatch,
        previous: Turn,
    ) -> Result<Vec<JobId>, EventStoreError> {
        self.write_after(batch, previous).await?;
        Ok(Vec::new())
    }

    /// Whether [`PendingEvent::json`] is used (stores that keep JSON text). When false the
    /// runtime does not render it.
    fn keeps_rendered_data(&self) -> bool {
        true
    }

    async fn insert_job(&self, job: &JobRecord) -> Result<(), EventStoreError> {
        self.write(&WriteBatch {
            inserts: vec![job.clone()],
            ..WriteBatch::default()
        })
        .await
    }

    /// Writes status, updated_at, result and last_event_id of an existing job.
    async fn update_job(&self, job: &JobRecord) -> Result<(), EventStoreError> {
        self.write(&WriteBatch {
            updates: vec![JobUpdate::of(job)],
            ..WriteBatch::default()
        })
        .await
    }

    /// Appends events of one or many jobs (each job's in increasing id order) in one commit.
    async fn append_events(&self, events: &[Event]) -> Result<(), EventStoreError> {
        let keeps = self.keeps_rendered_data();
        let events = events
            .iter()
            .map(|e| {
                let event = Arc::new(e.clone());
                if keeps {
                    PendingEvent::rendered(event)
                } else {
                    PendingEvent {
                        event,
                        json: String::new(),
                    }
                }
            })
            .collect();
        self.write(&WriteBatch {
            events,
            ..WriteBatch::default()
        })
        .await
    }

    /// Events of `job_id` with id > `after_id`, in order, at most `limit`.
    async fn events_after(
        &self,
        job_id: &str,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<Event>, EventStoreError>;
}
