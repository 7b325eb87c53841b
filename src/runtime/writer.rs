//! The group-committing writer of job state: every event, new job row and row update goes
//! through it, in queue order, and commits in batches; events are published to their job's ring
//! and broadcast ([`super::event_log`]) only once durable.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::batch::{Part, Parts, Request, assemble};
use super::event_log::{Ack, LiveJob};
use super::store_health::StoreHealth;
use crate::domain::{JobId, JobRecord};
use crate::store::{EventStore, JobUpdate, NewLease, PendingEvent, Turn, WriteBatch};

/// The single writer: everything that changes a job's durable state goes through it, in the
/// order it was queued, and commits in batches (many jobs' rows and events per transaction).
/// Events are published to watchers only after their batch committed.
#[derive(Clone)]
pub(crate) struct EventWriter {
    tx: mpsc::Sender<Request>,
    /// Cancelled by [`EventWriter::close`]: the writer takes nothing more, finishes what is
    /// queued and ends.
    closing: CancellationToken,
    /// The writer's thread, joined by [`EventWriter::close`].
    pub(super) thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// What a failed acknowledgement says when the job's lease was lost.
pub(crate) const LEASE_LOST: &str = "lease lost: another replica runs the job";

/// Largest batch one commit takes.
const MAX_BATCH: usize = 4096;
/// Requests queued for the writer before submitters wait (the backpressure on emitters).
pub(crate) const WRITER_QUEUE: usize = 4096;

impl EventWriter {
    /// Starts the writer on its own thread; it ends when it is closed ([`EventWriter::close`])
    /// or every `EventWriter` clone is dropped, once its last batch is finished.
    ///
    /// Why a thread: the writer is the one serial stage every event passes through, and a
    /// commit is a chain of round trips to the database (or SQLite's worker thread). As a task
    /// among the job tasks, each step of that chain waited in the runtime's queue behind every
    /// runnable job; on its own thread it is woken directly. It still runs on the caller's
    /// runtime (`Handle::block_on`), so database connections opened by a commit belong to the
    /// runtime's I/O driver like every other connection of the store.
    ///
    /// A batch that fails for good marks `health` (cleared by the next batch that commits) and
    /// stops every job whose event it held.
    ///
    /// On a store several processes share, every event and row update carries its job's lease
    /// epoch ([`Fence`]); a job whose writes the store fenced is stopped here
    /// ([`LiveJob::fence`]) and its events never reach a watcher.
    pub fn spawn(
        store: Arc<dyn EventStore>,
        fencing: bool,
        queue: usize,
        health: Arc<StoreHealth>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Request>(queue.max(16));
        let runtime = tokio::runtime::Handle::current();
        let closing = CancellationToken::new();
        let writer_closing = closing.clone();
        let thread = std::thread::Builder::new()
            .name("innerloop-writer".into())
            .spawn(move || runtime.block_on(run_writer(store, fencing, rx, health, writer_closing)))
            .expect("start the event writer thread");
        EventWriter {
            tx,
            closing,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        }
    }

    /// Stops taking requests (later ones are acknowledged with an error), commits and publishes
    /// what is already queued, and waits for the writer's thread to end. Called once every job
    /// task has returned (shutdown).
    pub async fn close(&self) {
        self.closing.cancel();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread
            && let Ok(Err(_)) = tokio::task::spawn_blocking(move || thread.join()).await
        {
            tracing::error!("the event writer thread panicked");
        }
    }

    /// Queues an event with its rendered `data` (see [`PendingEvent`]) and, for a terminal
    /// event, the job's final row, which commits in the same transaction. The returned receiver
    /// resolves once both are durable and the event is published. Callers hold the job's state
    /// lock while calling this, so per-job order is id order.
    pub async fn submit(
        &self,
        pending: PendingEvent,
        job: Arc<LiveJob>,
        update: Option<JobUpdate>,
    ) -> Ack {
        let (ack, rx) = oneshot::channel();
        self.send(Request::Event {
            pending,
            job,
            update: update.map(Box::new),
            ack,
        })
        .await;
        rx
    }

    /// Queues a new job row; the receiver resolves once it is durable.
    /// With a `lease` (a shared store), the row is inserted owned by its creator.
    pub async fn insert(&self, record: JobRecord, lease: Option<NewLease>) -> Ack {
        let (ack, rx) = oneshot::channel();
        self.send(Request::Insert {
            record: Box::new(record),
            lease: lease.map(Box::new),
            ack,
        })
        .await;
        rx
    }

    /// Queues a job row update, ordered after everything already queued, written only while
    /// the job's lease epoch is `epoch`.
    pub async fn update(&self, update: JobUpdate, epoch: u64) -> Ack {
        let (ack, rx) = oneshot::channel();
        self.send(Request::Update { update, epoch, ack }).await;
        rx
    }

    async fn send(&self, request: Request) {
        if let Err(mpsc::error::SendError(request)) = self.tx.send(request).await {
            let _ = request.ack().send(Err("event writer stopped".into()));
        }
    }
}

/// A batch's commit, polled by the writer loop itself.
type InFlight = futures_util::future::BoxFuture<'static, std::thread::Result<Committed>>;

/// The writer loop. Two batches overlap: while batch N commits, batch N+1 is collected and
/// prepared (the store renders its rows before it needs the connection). Commits still land in
/// queue order (N+1 takes its turn when N is done), and batches finish — publish, acknowledge —
/// strictly in order.
async fn run_writer(
    store: Arc<dyn EventStore>,
    fencing: bool,
    mut rx: mpsc::Receiver<Request>,
    health: Arc<StoreHealth>,
    closing: CancellationToken,
) {
    let mut inflight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    // Resolves when the newest commit is done.
    let mut turn: Option<oneshot::Receiver<()>> = None;
    let mut open = true;
    let mut closing_seen = false;
    // Reused: room for MAX_BATCH requests is most of a MiB, which the allocator would hand back
    // to the OS and fault in again page by page for every batch.
    let mut requests = Vec::with_capacity(MAX_BATCH);
    loop {
        if inflight.len() >= 2 || (!open && !inflight.is_empty()) {
            // N+1 is prepared: finish N before taking more.
            if let Some(done) = inflight.next().await {
                finish(done, &health);
            }
            continue;
        }
        if !open {
            break;
        }
        // Wait for new requests, or for the batch in flight (its submitters may be waiting for
        // it before they queue anything else). Both are cancel-safe.
        tokio::select! {
            received = rx.recv_many(&mut requests, MAX_BATCH) => {
                if received == 0 {
                    open = false;
                    continue;
                }
            }
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                finish(done, &health);
                continue;
            }
            // Takes nothing more; what is queued is still received, then `recv_many` says 0.
            _ = closing.cancelled(), if !closing_seen => {
                closing_seen = true;
                rx.close();
                continue;
            }
        }
        let (batch, parts) = assemble(&mut requests, fencing);
        let (done, next_turn) = oneshot::channel::<()>();
        let previous: Turn = match turn.replace(next_turn) {
            // A panicked commit drops its sender, which ends its turn too.
            Some(previous) => Box::pin(async move {
                let _ = previous.await;
            }),
            None => Box::pin(std::future::ready(())),
        };
        let store = store.clone();
        let commit = async move {
            let (outcome, fenced) = commit(store.as_ref(), &batch, &parts, previous).await;
            let _ = done.send(());
            Committed {
                batch,
                parts,
                outcome,
                fenced,
            }
        };
        inflight.push_back(AssertUnwindSafe(commit).catch_unwind().boxed());
    }
}

/// How a batch's commit went.
enum Outcome {
    /// The batch committed, or failed, as a whole.
    Batch(Result<(), String>),
    /// The batch failed as a whole and its requests were committed one by one: one outcome
    /// per part.
    Each(Vec<Result<(), String>>),
}

/// A batch after its commit, waiting to be published and acknowledged.
struct Committed {
    batch: WriteBatch,
    parts: Parts,
    outcome: Outcome,
    /// Jobs whose writes the store refused: another replica holds their lease.
    fenced: Vec<JobId>,
}

/// Publishes and acknowledges a committed batch, in request order.
fn finish(joined: std::thread::Result<Committed>, health: &StoreHealth) {
    let Ok(Committed {
        batch,
        parts,
        outcome,
        fenced,
    }) = joined
    else {
        // The commit panicked: its acknowledgements are dropped, and submitters see the writer
        // as stopped.
        tracing::error!("batch commit panicked");
        return;
    };
    let outcomes = match outcome {
        Outcome::Batch(outcome) => vec![outcome; parts.len()],
        Outcome::Each(outcomes) => outcomes,
    };
    match outcomes.iter().find_map(|o| o.as_ref().err()) {
        Some(err) => health.write_failed(err),
        None => health.write_succeeded(),
    }
    for ((part, ack), outcome) in parts.into_iter().zip(outcomes) {
        let lost = !fenced.is_empty()
            && part
                .fenced_job(&batch)
                .is_some_and(|id| fenced.iter().any(|f| f == id));
        if lost {
            // Not written: another replica runs the job now.
            if let Part::Event { job, .. } = &part {
                job.fence();
            }
            let _ = ack.send(Err(LEASE_LOST.into()));
            continue;
        }
        match &outcome {
            Ok(()) => part.publish(&batch),
            // An event that is not durable never reaches a watcher: its job cannot go on (its
            // log would have a hole), so it is stopped and ended by the runtime.
            Err(err) => {
                if let Part::Event { job, .. } = &part {
                    job.fail_store(err);
                }
            }
        }
        let _ = ack.send(outcome);
    }
}

/// Writes one batch once `previous` is done, retrying a failed commit three times. A batch
/// that still fails is not published as a whole: its requests are then committed one by one
/// (still before the next batch's turn), so only the ones that fail on their own are lost
/// (their events never reach a watcher, and their submitters see the error).
async fn commit(
    store: &dyn EventStore,
    batch: &WriteBatch,
    parts: &Parts,
    previous: Turn,
) -> (Outcome, Vec<JobId>) {
    let mut fenced = Vec::new();
    let outcome = commit_fenced(store, batch, parts, previous, &mut fenced).await;
    (outcome, fenced)
}

/// [`commit`], collecting the jobs the store fenced into `fenced`.
async fn commit_fenced(
    store: &dyn EventStore,
    batch: &WriteBatch,
    parts: &Parts,
    previous: Turn,
    fenced: &mut Vec<JobId>,
) -> Outcome {
    // Timed from the turn, not from the spawn: the metric is the commit's own latency.
    let turn_at = Arc::new(std::sync::OnceLock::new());
    let previous: Turn = {
        let turn_at = turn_at.clone();
        Box::pin(async move {
            previous.await;
            let _ = turn_at.set(std::time::Instant::now());
        })
    };
    let mut outcome = store.write_fenced(batch, previous).await;
    if let Some(started) = turn_at.get() {
        crate::metrics::observe_store("append_events", started.elapsed());
    }
    let mut attempt = 0;
    while let Err(err) = &outcome {
        attempt += 1;
        if attempt > 3 {
            break;
        }
        tracing::warn!(error = %err, attempt, "batch commit failed, retrying");
        tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
        outcome = store
            .write_fenced(batch, Box::pin(std::future::ready(())))
            .await;
    }
    let err = match outcome {
        Ok(lost) => {
            fenced.extend(lost);
            return Outcome::Batch(Ok(()));
        }
        Err(err) => err,
    };
    tracing::error!(
        error = %err,
        events = batch.events.len(),
        jobs = batch.inserts.len() + batch.updates.len(),
        "batch commit failed"
    );
    if parts.len() <= 1 {
        return Outcome::Batch(Err(crate::error::Error::from(err).to_string()));
    }
    let mut outcomes = Vec::with_capacity(parts.len());
    for (part, _) in parts {
        let written = store
            .write_fenced(&part.alone(batch), Box::pin(std::future::ready(())))
            .await;
        outcomes.push(match written {
            Ok(lost) => {
                fenced.extend(lost);
                Ok(())
            }
            Err(err) => Err(crate::error::Error::from(err).to_string()),
        });
    }
    Outcome::Each(outcomes)
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::domain::Event;
    use crate::runtime::test_record;
    use crate::store::{EventStoreError, JobRows, MemoryStore, StoreFailure};

    /// A memory store that refuses any batch inserting the job `bad`, and takes 100 ms over any
    /// batch holding event 1.
    struct Picky(MemoryStore);

    #[async_trait]
    impl EventStore for Picky {
        fn kind(&self) -> &'static str {
            "picky"
        }
        async fn write(&self, batch: &WriteBatch) -> Result<(), EventStoreError> {
            if batch.inserts.iter().any(|j| j.id == "bad") {
                return Err(StoreFailure("refused".into()).into());
            }
            if batch.events.iter().any(|e| e.event.id == 1) {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            self.0.write(batch).await
        }
        async fn events_after(
            &self,
            id: &str,
            after: u64,
            limit: usize,
        ) -> Result<Vec<Event>, EventStoreError> {
            self.0.events_after(id, after, limit).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_commit_is_not_overtaken_by_the_next_batch() {
        let store = Arc::new(Picky(MemoryStore::new()));
        let writer = EventWriter::spawn(store.clone(), false, 16, Arc::default());
        let job = Arc::new(LiveJob::new(test_record("job"), 8));
        let event = |id: u64| PendingEvent {
            event: Arc::new(Event {
                id,
                job_id: "job".into(),
                ts: id as f64,
                payload: crate::domain::EventPayload::Started {},
            }),
            json: String::new(),
        };
        let first = writer.submit(event(1), job.clone(), None).await;
        // Let the writer take event 1 alone, so 2 and 3 form the next batch while 1 commits.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let second = writer.submit(event(2), job.clone(), None).await;
        let third = writer.submit(event(3), job.clone(), None).await;
        for ack in [first, second, third] {
            assert_eq!(ack.await.unwrap(), Ok(()));
        }
        let ids: Vec<u64> = store
            .events_after("job", 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [1, 2, 3], "commits land in queue order");
        let published: Vec<u64> = job
            .recent_after(0, 10)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(published, [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_request_that_fails_on_its_own_does_not_fail_its_batch_neighbours() {
        let store = Arc::new(Picky(MemoryStore::new()));
        let writer = EventWriter::spawn(store.clone(), false, 16, Arc::default());
        // Queued back to back (the writer has not run yet): one batch.
        let good = writer.insert(test_record("good"), None).await;
        let bad = writer.insert(test_record("bad"), None).await;
        let also_good = writer.insert(test_record("also-good"), None).await;
        assert_eq!(good.await.unwrap(), Ok(()));
        assert!(bad.await.unwrap().is_err());
        assert_eq!(also_good.await.unwrap(), Ok(()));
        assert!(store.0.get_job("good").await.unwrap().is_some());
        assert!(store.0.get_job("also-good").await.unwrap().is_some());
        assert!(store.0.get_job("bad").await.unwrap().is_none());
    }
}
