//! The live half of a job's event log: each live job's state, its ring of recent events and its
//! broadcast to watchers, which the writer ([`super::writer`]) publishes to.
//!
//! Where the durability line is: an event is handed to watchers (ring + broadcast) only after the
//! store has committed the batch that contains it. So every id a client has ever seen survives a
//! crash, and a watcher that replays from the store can never see an event "un-happen".

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use crate::domain::{Event, JobRecord};

/// Mutable state of a running job, guarded by one async mutex so ids are assigned, terminal
/// transitions decided and events queued for the writer in a single order.
pub(crate) struct LiveState {
    pub next_id: u64,
    /// The authoritative record while the job is live (status, result, last_event_id).
    pub record: JobRecord,
    /// Cancelled to halt the current run at its next safe point (pause, or hand-over on
    /// shutdown); replaced by a fresh token when a paused job resumes.
    pub halt: CancellationToken,
    /// Why the current run is being halted, once it is.
    pub halting: Option<HaltReason>,
}

/// Why a resumable job's run is halted (it stays resumable either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HaltReason {
    /// A client paused it: status `paused`, event `paused`.
    Pause,
    /// The server is stopping: event `suspended`, status stays `running` so the next start
    /// resumes it.
    Suspend,
}

/// A job that is pending or running in this process.
pub(crate) struct LiveJob {
    pub id: String,
    pub state: tokio::sync::Mutex<LiveState>,
    /// The newest events, at most `capacity`, in id order: replays of recent history are served
    /// from here without touching the store.
    recent: Mutex<VecDeque<Arc<Event>>>,
    capacity: usize,
    /// The first id this process publishes for the job (1 for a new job, more for one resumed
    /// after a restart): the ring can only answer for ids from here on.
    first_live_id: u64,
    /// Live fan-out. Bounded: a receiver that falls behind by more than `capacity` observes
    /// `Lagged` and catches up from the store; the sender never waits.
    pub tx: broadcast::Sender<Arc<Event>>,
    /// Cancelled when the job is cancelled or the server shuts down.
    pub cancel: CancellationToken,
    /// Woken when a halted run has stopped (its `paused` or `suspended` event is durable).
    pub halted: tokio::sync::Notify,
    /// The acknowledgement of the newest event its optimizer emitted without waiting.
    unacked: Mutex<Option<(u64, Ack)>>,
    /// Why one of its events could not be written (set by the writer, which then cancels the
    /// job so the runtime ends it: see `Inner::end_unpersisted`).
    store_failure: std::sync::OnceLock<String>,
    /// Claimed by whoever ends the job after a store failure (once).
    ended_unpersisted: std::sync::atomic::AtomicBool,
    /// Human feedback and candidates (`SteerJob`), handed to every run of the job.
    pub steering: crate::domain::steering::Steering,
    /// The lease epoch this process claimed the job with (0 on a store one process uses):
    /// every write of the job is fenced with it (see `store::lease`).
    pub epoch: u64,
    /// Set when another replica claimed the job since (a write was fenced, or a heartbeat
    /// found the lease gone): the job is dropped here without a terminal event.
    fenced: std::sync::atomic::AtomicBool,
    /// Cancelled when the job leaves this process without a terminal event (fenced): its
    /// watchers here go on following it in the store.
    pub released: CancellationToken,
}

/// Resolves once an event's batch is committed and published.
pub(crate) type Ack = oneshot::Receiver<Result<(), String>>;

impl LiveJob {
    pub fn new(record: JobRecord, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        let first_live_id = record.last_event_id + 1;
        LiveJob {
            first_live_id,
            id: record.id.clone(),
            state: tokio::sync::Mutex::new(LiveState {
                next_id: record.last_event_id + 1,
                record,
                halt: CancellationToken::new(),
                halting: None,
            }),
            recent: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity: capacity.max(1),
            tx,
            cancel: CancellationToken::new(),
            halted: tokio::sync::Notify::new(),
            unacked: Mutex::new(None),
            store_failure: std::sync::OnceLock::new(),
            ended_unpersisted: std::sync::atomic::AtomicBool::new(false),
            steering: crate::domain::steering::Steering::default(),
            epoch: 0,
            fenced: std::sync::atomic::AtomicBool::new(false),
            released: CancellationToken::new(),
        }
    }

    /// [`LiveJob::new`] for a job claimed with lease epoch `epoch`.
    pub fn claimed(record: JobRecord, capacity: usize, epoch: u64) -> Self {
        LiveJob {
            epoch,
            ..LiveJob::new(record, capacity)
        }
    }

    /// Another replica owns the job now: stop it here, without a terminal event. True for the
    /// first call.
    pub fn fence(&self) -> bool {
        let first = !self.fenced.swap(true, std::sync::atomic::Ordering::SeqCst);
        if first {
            tracing::warn!(job_id = %self.id, epoch = self.epoch, "job lease lost: another replica runs it now");
            self.cancel.cancel();
        }
        first
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// One of this job's writes failed for good: remember why and stop the job.
    pub fn fail_store(&self, error: &str) {
        let _ = self.store_failure.set(error.to_string());
        self.cancel.cancel();
    }

    /// Why one of its writes failed, if one did.
    pub fn store_failure(&self) -> Option<&str> {
        self.store_failure.get().map(String::as_str)
    }

    /// True for the first caller only: it ends the job after a store failure.
    pub fn claim_unpersisted_end(&self) -> bool {
        !self
            .ended_unpersisted
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// Hands an event that could not be made durable to the watchers: only the terminal event
    /// that tells them a store failure ended the job.
    pub fn publish_unpersisted(&self, event: Arc<Event>) {
        self.publish(event);
    }

    /// Remembers the newest unacknowledged event; returns the one it replaces.
    pub fn set_unacked(&self, id: u64, ack: Ack) -> Option<(u64, Ack)> {
        self.unacked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace((id, ack))
    }

    pub fn take_unacked(&self) -> Option<(u64, Ack)> {
        self.unacked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Makes a durable event visible to watchers.
    pub(super) fn publish(&self, event: Arc<Event>) {
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.len() == self.capacity {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(event);
    }

    /// Events with id > `after_id` when the ring still holds all of them; `None` when the store
    /// must be asked. An empty ring answers for a job that has published nothing yet (a watcher
    /// that arrives right after `create`), so that common case costs no store read.
    pub fn recent_after(&self, after_id: u64, limit: usize) -> Option<Vec<Arc<Event>>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let Some(first) = recent.front().map(|e| e.id) else {
            return (after_id + 1 >= self.first_live_id).then(Vec::new);
        };
        if first > after_id + 1 {
            return None;
        }
        Some(
            recent
                .iter()
                .filter(|e| e.id > after_id)
                .take(limit)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_record;

    #[test]
    fn an_empty_ring_answers_only_for_ids_this_process_will_publish() {
        let fresh = LiveJob::new(test_record("fresh"), 8);
        assert_eq!(fresh.recent_after(0, 10).map(|v| v.len()), Some(0));
        let mut resumed = test_record("resumed");
        resumed.last_event_id = 5;
        let resumed = LiveJob::new(resumed, 8);
        // Ids 1..=5 are only in the store.
        assert!(resumed.recent_after(0, 10).is_none());
        assert!(resumed.recent_after(4, 10).is_none());
        assert_eq!(resumed.recent_after(5, 10).map(|v| v.len()), Some(0));
    }
}
