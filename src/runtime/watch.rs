//! Watchers: resume-from-id replay followed by the live tail, with no gap and no duplicate.
//!
//! Order of operations for a watcher: subscribe to the live broadcast first, then replay the ids
//! after `after` from the ring or the store, then take the live tail, dropping ids already sent.
//! Every watcher has its own pump task and bounded queue, so a slow watcher never blocks the job
//! or another watcher. When a watcher lags past the broadcast capacity it catches up from the
//! store (policy `resume`), or — policy `fail_job`, the original's rule — the job fails with
//! `sse_backpressure` if its queue stays full for `SSE_BACKPRESSURE_FAIL_TIMEOUT_S`.
//!
//! On a store several replicas share, a job this process does not run (or stops running: its
//! lease was taken) is **followed in the store**: the watcher subscribes to the job's wake-ups
//! (the replica's one `LISTEN` connection announces every commit of the job, whoever made it),
//! then replays from the store after its last id, and again at each wake-up (and every
//! second, in case a notice was lost) until the terminal event. Ids only grow and the store has
//! every published event, so an ownership change mid-watch costs no gap and no duplicate.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::{broadcast, mpsc};

use super::Inner;
use super::config::BackpressurePolicy;
use super::event_log::LiveJob;
use crate::domain::{Event, EventPayload};
use crate::error::{Error, Result};

/// Page size of store replays.
const REPLAY_PAGE: usize = 256;

/// The events of one watch, ending after the terminal event. Dropping it releases the watcher.
pub struct WatchStream {
    rx: mpsc::Receiver<Arc<Event>>,
}

impl Stream for WatchStream {
    type Item = Arc<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// How often a watcher following a job in the store looks even without a wake-up.
const TAIL_POLL: std::time::Duration = std::time::Duration::from_secs(1);

pub(super) async fn start(inner: Arc<Inner>, job_id: &str, after: u64) -> Result<WatchStream> {
    // Subscribe before anything is replayed, so nothing published meanwhile is missed.
    let woken = inner
        .replica
        .shared
        .then(|| inner.replica.subscribe(job_id));
    let live = inner.live_job(job_id);
    let subscription = live.as_ref().map(|job| job.tx.subscribe());
    if live.is_none() {
        match inner.store.get_job(job_id).await? {
            None => return Err(Error::JobNotFound(job_id.to_string())),
            Some(record) if record.status.is_terminal() => {}
            // Runs elsewhere (or waits for a claim): follow it in the store.
            Some(_) if woken.is_some() => {
                let (tx, rx) = mpsc::channel(inner.config.watch.buffer_size.max(1));
                let pump = Pump {
                    inner,
                    job_id: job_id.to_string(),
                    live: None,
                    tx,
                    last: after,
                };
                let background = pump.inner.background.clone();
                background.spawn(pump.follow_store(woken));
                return Ok(WatchStream { rx });
            }
            Some(_) => {}
        }
    }
    let (tx, rx) = mpsc::channel(inner.config.watch.buffer_size.max(1));
    let pump = Pump {
        inner,
        job_id: job_id.to_string(),
        live,
        tx,
        last: after,
    };
    let background = pump.inner.background.clone();
    background.spawn(pump.run(subscription, woken));
    Ok(WatchStream { rx })
}

/// Why a pump stopped early.
enum End {
    /// The terminal event was delivered.
    Terminal,
    /// The client went away.
    Gone,
}

struct Pump {
    inner: Arc<Inner>,
    job_id: String,
    live: Option<Arc<LiveJob>>,
    tx: mpsc::Sender<Arc<Event>>,
    /// Id of the last event delivered.
    last: u64,
}

impl Pump {
    async fn run(
        mut self,
        subscription: Option<broadcast::Receiver<Arc<Event>>>,
        woken: Option<tokio::sync::watch::Receiver<()>>,
    ) {
        if let Err(end) = self.replay().await {
            let _ = end;
            return;
        }
        let Some(mut rx) = subscription else {
            // Not live: the store replay was the whole history.
            return;
        };
        let released = match &self.live {
            Some(job) => job.released.clone(),
            None => return,
        };
        loop {
            let received = tokio::select! {
                received = rx.recv() => received,
                _ = self.tx.closed() => return,
                // Another replica runs the job now: follow it in the store.
                _ = released.cancelled(), if woken.is_some() => {
                    self.live = None;
                    return self.follow_store(woken).await;
                }
                // The runtime stopped: a handed-over or paused job's log has no terminal event
                // to end on; deliver what is already published, then end (the client resumes
                // from its last id on the next server).
                _ = self.inner.stop.cancelled() => {
                    let _ = self.replay().await;
                    return;
                }
            };
            let step = match received {
                Ok(event) if event.id <= self.last => Ok(()),
                Ok(event) if event.id == self.last + 1 => self.deliver(event).await,
                // A gap (should not happen) or lag: the store has everything up to the newest
                // published id, so catch up from it.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => self.replay().await,
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = self.replay().await;
                    return;
                }
            };
            if step.is_err() {
                return;
            }
        }
    }

    /// Follows a job another replica runs: replays from the store after every wake-up (or
    /// [`TAIL_POLL`]) until the terminal event, the client leaving, or this server stopping.
    async fn follow_store(mut self, woken: Option<tokio::sync::watch::Receiver<()>>) {
        let Some(mut woken) = woken else { return };
        loop {
            woken.borrow_and_update();
            if self.replay().await.is_err() {
                return;
            }
            tokio::select! {
                changed = woken.changed() => if changed.is_err() {
                    tokio::time::sleep(TAIL_POLL).await;
                },
                _ = tokio::time::sleep(TAIL_POLL) => {}
                _ = self.tx.closed() => return,
                _ = self.inner.stop.cancelled() => return,
            }
        }
    }

    /// Delivers events after `last` from the ring or the store until none are left.
    async fn replay(&mut self) -> Result<(), End> {
        loop {
            let page: Vec<Arc<Event>> = match self
                .live
                .as_ref()
                .and_then(|job| job.recent_after(self.last, REPLAY_PAGE))
            {
                Some(page) => page,
                None => match self
                    .inner
                    .store
                    .events_after(&self.job_id, self.last, REPLAY_PAGE)
                    .await
                {
                    Ok(page) => page.into_iter().map(Arc::new).collect(),
                    Err(err) => {
                        tracing::warn!(job_id = %self.job_id, error = %err, "watch replay failed");
                        return Err(End::Gone);
                    }
                },
            };
            let full = page.len() == REPLAY_PAGE;
            let before = self.last;
            for event in page {
                if event.id > self.last {
                    self.deliver(event).await?;
                }
            }
            // A full page that delivered nothing new (ids that do not grow) would be read again
            // forever.
            if !full || self.last == before {
                return Ok(());
            }
        }
    }

    async fn deliver(&mut self, event: Arc<Event>) -> Result<(), End> {
        let terminal = event.is_terminal();
        let id = event.id;
        match self.inner.config.watch.backpressure {
            BackpressurePolicy::Resume => {
                self.tx.send(event).await.map_err(|_| End::Gone)?;
            }
            BackpressurePolicy::FailJob => {
                let timeout = self.inner.config.watch.fail_timeout;
                match tokio::time::timeout(timeout, self.tx.reserve()).await {
                    Ok(Ok(permit)) => permit.send(event),
                    Ok(Err(_)) => return Err(End::Gone),
                    Err(_) => {
                        if let Some(job) = &self.live {
                            let failed = EventPayload::Failed {
                                error: "sse_backpressure".into(),
                                message: "a watcher's queue stayed full".into(),
                            };
                            let _ = self.inner.terminate(job, failed).await;
                        }
                        self.tx.send(event).await.map_err(|_| End::Gone)?;
                    }
                }
            }
        }
        self.last = id;
        if terminal { Err(End::Terminal) } else { Ok(()) }
    }
}
