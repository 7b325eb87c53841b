//! What the writer commits and how queued requests become one batch: a request (an event with
//! the row update that must commit with it, a new job row, a row update), where each landed in
//! the batch (to publish, acknowledge, or retry it alone), and each job's lease fence once.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::event_log::LiveJob;
use crate::domain::JobRecord;
use crate::store::{Fence, JobUpdate, NewLease, PendingEvent, WriteBatch};

/// What the writer commits: an event (with the row update that must commit with it: a terminal
/// event's final job state), a new job row, or a row update.
pub(super) enum Request {
    Event {
        pending: PendingEvent,
        job: Arc<LiveJob>,
        /// Boxed: most events have none, and every request is moved into the queue, out of
        /// it and into the batch (an inline update made a request 264 bytes, not 56).
        update: Option<Box<JobUpdate>>,
        ack: oneshot::Sender<Result<(), String>>,
    },
    Insert {
        record: Box<JobRecord>,
        lease: Option<Box<NewLease>>,
        ack: oneshot::Sender<Result<(), String>>,
    },
    Update {
        update: JobUpdate,
        /// The lease epoch the update is written under (see [`Fence`]).
        epoch: u64,
        ack: oneshot::Sender<Result<(), String>>,
    },
}

impl Request {
    pub(super) fn ack(self) -> oneshot::Sender<Result<(), String>> {
        match self {
            Request::Event { ack, .. }
            | Request::Insert { ack, .. }
            | Request::Update { ack, .. } => ack,
        }
    }
}

/// Where a request landed in the batch.
pub(super) enum Part {
    Event {
        event: usize,
        update: Option<usize>,
        job: Arc<LiveJob>,
    },
    Insert(usize),
    Update(usize),
}

impl Part {
    /// Makes a committed event visible to its job's watchers.
    pub(super) fn publish(&self, batch: &WriteBatch) {
        if let Part::Event { event, job, .. } = self {
            job.publish(batch.events[*event].event.clone());
        }
    }

    /// The job whose lease guards this request (none for a new row).
    pub(super) fn fenced_job<'a>(&'a self, batch: &'a WriteBatch) -> Option<&'a str> {
        match self {
            Part::Event { job, .. } => Some(job.id.as_str()),
            Part::Update(u) => Some(batch.updates[*u].id.as_str()),
            Part::Insert(_) => None,
        }
    }

    /// This request as a batch of its own.
    pub(super) fn alone(&self, batch: &WriteBatch) -> WriteBatch {
        let mut single = WriteBatch::default();
        if let Some(job_id) = self.fenced_job(batch) {
            single.fences = batch
                .fences
                .iter()
                .filter(|f| f.job_id == job_id)
                .cloned()
                .collect();
        }
        match self {
            Part::Event { event, update, .. } => {
                single.events.push(batch.events[*event].clone());
                single
                    .updates
                    .extend(update.map(|u| batch.updates[u].clone()));
            }
            Part::Insert(i) => {
                let job = &batch.inserts[*i];
                single.leases = batch
                    .leases
                    .iter()
                    .filter(|l| l.job_id == job.id)
                    .cloned()
                    .collect();
                single.inserts.push(job.clone());
            }
            Part::Update(u) => single.updates.push(batch.updates[*u].clone()),
        }
        single
    }
}

/// Each request of a batch: where it landed, and its acknowledgement.
pub(super) type Parts = Vec<(Part, oneshot::Sender<Result<(), String>>)>;

/// Turns queued requests (leaving `requests` empty) into one batch and, per request, where it
/// landed; with `fencing`, each job's lease epoch once.
pub(super) fn assemble(requests: &mut Vec<Request>, fencing: bool) -> (WriteBatch, Parts) {
    let events = requests
        .iter()
        .filter(|r| matches!(r, Request::Event { .. }))
        .count();
    let mut batch = WriteBatch {
        events: Vec::with_capacity(events),
        ..WriteBatch::default()
    };
    let mut parts = Vec::with_capacity(requests.len());
    let mut fenced: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut fence = |batch: &mut WriteBatch, job_id: &str, epoch: u64| {
        if fencing && !fenced.contains(job_id) {
            fenced.insert(job_id.to_string());
            batch.fences.push(Fence {
                job_id: job_id.to_string(),
                epoch,
            });
        }
    };
    for request in requests.drain(..) {
        parts.push(match request {
            Request::Event {
                pending,
                job,
                update,
                ack,
            } => {
                fence(&mut batch, &job.id, job.epoch);
                let part = Part::Event {
                    event: batch.events.len(),
                    update: update.is_some().then_some(batch.updates.len()),
                    job,
                };
                batch.events.push(pending);
                batch.updates.extend(update.map(|u| *u));
                (part, ack)
            }
            Request::Insert { record, lease, ack } => {
                batch.leases.extend(lease.map(|l| *l));
                batch.inserts.push(*record);
                (Part::Insert(batch.inserts.len() - 1), ack)
            }
            Request::Update { update, epoch, ack } => {
                fence(&mut batch, &update.id, epoch);
                batch.updates.push(update);
                (Part::Update(batch.updates.len() - 1), ack)
            }
        });
    }
    (batch, parts)
}
