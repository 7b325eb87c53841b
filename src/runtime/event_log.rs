//! The live half of a job's event log and the group-committing writer.
//!
//! Where the durability line is: an event is handed to watchers (ring + broadcast) only after the
//! store has committed the batch that contains it. So every id a client has ever seen survives a
//! crash, and a watcher that replays from the store can never see an event "un-happen".

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::domain::{Event, JobRecord};
use crate::store::JobStore;

/// Mutable state of a running job, guarded by one async mutex so ids are assigned, terminal
/// transitions decided and events queued for the writer in a single order.
pub(crate) struct LiveState {
    pub next_id: u64,
    /// The authoritative record while the job is live (status, result, last_event_id).
    pub record: JobRecord,
}

/// A job that is pending or running in this process.
pub(crate) struct LiveJob {
    pub id: String,
    pub state: tokio::sync::Mutex<LiveState>,
    /// The newest events, at most `capacity`, in id order: replays of recent history are served
    /// from here without touching the store.
    recent: Mutex<VecDeque<Arc<Event>>>,
    capacity: usize,
    /// Live fan-out. Bounded: a receiver that falls behind by more than `capacity` observes
    /// `Lagged` and catches up from the store; the sender never waits.
    pub tx: broadcast::Sender<Arc<Event>>,
    /// Cancelled when the job is cancelled or the server shuts down.
    pub cancel: CancellationToken,
    /// The acknowledgement of the newest event its optimizer emitted without waiting.
    unacked: Mutex<Option<(u64, Ack)>>,
}

/// Resolves once an event's batch is committed and published.
pub(crate) type Ack = oneshot::Receiver<Result<(), String>>;

impl LiveJob {
    pub fn new(record: JobRecord, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        LiveJob {
            id: record.id.clone(),
            state: tokio::sync::Mutex::new(LiveState {
                next_id: record.last_event_id + 1,
                record,
            }),
            recent: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity: capacity.max(1),
            tx,
            cancel: CancellationToken::new(),
            unacked: Mutex::new(None),
        }
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
    fn publish(&self, event: Arc<Event>) {
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
    /// must be asked.
    pub fn recent_after(&self, after_id: u64, limit: usize) -> Option<Vec<Arc<Event>>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let first = recent.front()?.id;
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

struct AppendRequest {
    event: Arc<Event>,
    /// `event.payload.data_json_text()`, rendered by the emitter.
    data: String,
    job: Arc<LiveJob>,
    ack: oneshot::Sender<Result<(), String>>,
}

/// Sends events to the single writer task, which commits them in batches (many jobs' events per
/// transaction) and then publishes them.
#[derive(Clone)]
pub(crate) struct EventWriter {
    tx: mpsc::Sender<AppendRequest>,
}

/// Largest batch one commit takes.
const MAX_BATCH: usize = 512;

impl EventWriter {
    /// Starts the writer task; it ends when every `EventWriter` clone is dropped.
    pub fn spawn(store: Arc<dyn JobStore>, queue: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<AppendRequest>(queue.max(16));
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut events = Vec::with_capacity(MAX_BATCH);
            let mut data = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                events.clear();
                events.extend(batch.iter().map(|r| (*r.event).clone()));
                data.clear();
                data.extend(batch.iter_mut().map(|r| std::mem::take(&mut r.data)));
                let started = std::time::Instant::now();
                let mut outcome = store.append_rendered(&events, &data).await;
                crate::metrics::observe_store("append_events", started.elapsed());
                let mut attempt = 0;
                while let Err(err) = &outcome {
                    attempt += 1;
                    if attempt > 3 {
                        break;
                    }
                    tracing::warn!(error = %err, attempt, "event append failed, retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
                    outcome = store.append_rendered(&events, &data).await;
                }
                let outcome = outcome.map_err(|e| e.to_string());
                if let Err(err) = &outcome {
                    tracing::error!(error = %err, events = events.len(), "event append failed");
                }
                for request in batch.drain(..) {
                    if outcome.is_ok() {
                        request.job.publish(request.event);
                    }
                    let _ = request.ack.send(outcome.clone());
                }
            }
        });
        EventWriter { tx }
    }

    /// Queues an event with its rendered `data` (`payload.data_json_text()`, rendered by the
    /// caller so the single writer does not); the returned receiver resolves once it is durable
    /// and published. Callers hold the job's state lock while calling this, so per-job order is
    /// id order.
    pub async fn submit(
        &self,
        event: Arc<Event>,
        data: String,
        job: Arc<LiveJob>,
    ) -> oneshot::Receiver<Result<(), String>> {
        let (ack, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(request)) = self
            .tx
            .send(AppendRequest {
                event,
                data,
                job,
                ack,
            })
            .await
        {
            let _ = request.ack.send(Err("event writer stopped".into()));
        }
        rx
    }
}
