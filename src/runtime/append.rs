//! The append path, next to the state it changes: ids assigned under the job's lock, events
//! queued for the writer in id order, and terminal transitions (the first terminal event wins;
//! the job's final row commits with it).

use super::*;

/// Puts a record in the terminal state a terminal payload implies. `partial` is the best
/// result so far of a job that ends without finishing (replaces the bare error result).
pub(super) fn apply_terminal(
    record: &mut JobRecord,
    payload: &EventPayload,
    last_event_id: u64,
    partial: Option<JobResult>,
) {
    if let Some(status) = payload.terminal_status() {
        record.status = status;
    }
    record.updated_at = now_epoch_s();
    record.last_event_id = last_event_id;
    record.result = match payload {
        EventPayload::Finished(result) => Some(result.clone()),
        EventPayload::Failed { error, .. } => partial.or_else(|| {
            Some(JobResult::Error(ErrorResult {
                error: error.clone(),
            }))
        }),
        _ => partial.or_else(|| record.result.take()),
    };
    if let Some(progress) = record
        .result
        .as_ref()
        .and_then(crate::domain::job::Progress::from_result)
    {
        record.progress = progress;
    }
}

/// A state change that comes with an event (see [`Inner::enqueue_with`]).
#[derive(Default)]
pub(super) struct Transition {
    /// The event is refused (`Stopped`) unless the job is in this status.
    pub(super) require: Option<JobStatus>,
    /// A non-terminal status the job moves to (its row update commits with the event).
    pub(super) status: Option<JobStatus>,
    /// A new run starts with it: a fresh halt token.
    pub(super) fresh_run: bool,
    /// A terminal event's best-so-far result.
    pub(super) result: Option<JobResult>,
}

impl Inner {
    pub(super) fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Arc<LiveJob>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn live_job(&self, job_id: &str) -> Option<Arc<LiveJob>> {
        self.live_map().get(job_id).cloned()
    }

    /// Appends one event to a live job's log. Returns its id once durable and published.
    /// Appends one event to a live job's log and waits until it is durable and published.
    pub(super) async fn emit(
        &self,
        job: &Arc<LiveJob>,
        payload: EventPayload,
    ) -> Result<u64, Stopped> {
        let (id, ack) = self.enqueue(job, payload).await?;
        Self::await_ack(job, id, ack).await?;
        Ok(id)
    }

    /// Waits for an event's acknowledgement (its batch committed and published).
    pub(super) async fn await_ack(
        job: &LiveJob,
        id: u64,
        ack: event_log::Ack,
    ) -> Result<(), Stopped> {
        let acked = ack.await;
        if job.is_fenced() {
            // Not written: another replica runs the job now.
            return Err(Stopped);
        }
        match acked {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                tracing::error!(job_id = %job.id, event_id = id, error = %err, "event not persisted");
                Ok(())
            }
            Err(_) => Err(Stopped),
        }
    }

    /// Assigns the next id and queues the event for the writer, in id order; returns the
    /// acknowledgement to wait for. Watchers see the event only once it is durable either way.
    pub(super) async fn enqueue(
        &self,
        job: &Arc<LiveJob>,
        payload: EventPayload,
    ) -> Result<(u64, event_log::Ack), Stopped> {
        self.enqueue_with(job, payload, Transition::default()).await
    }

    /// [`Inner::enqueue`] with a state change decided under the job's lock.
    pub(super) async fn enqueue_with(
        &self,
        job: &Arc<LiveJob>,
        payload: EventPayload,
        transition: Transition,
    ) -> Result<(u64, event_log::Ack), Stopped> {
        let render = self.store.keeps_rendered_data();
        let (id, ack) = {
            let mut state = job.state.lock().await;
            if job.is_fenced()
                || state.record.status.is_terminal()
                || transition
                    .require
                    .is_some_and(|required| state.record.status != required)
            {
                return Err(Stopped);
            }
            let id = state.next_id;
            state.next_id += 1;
            state.record.progress.observe(&payload);
            // A terminal event (or a status change) commits together with the job's row.
            let update = if payload.terminal_status().is_some() {
                apply_terminal(&mut state.record, &payload, id, transition.result);
                Some(JobUpdate::of(&state.record))
            } else if let Some(status) = transition.status {
                state.record.status = status;
                state.record.updated_at = now_epoch_s();
                state.record.last_event_id = id;
                Some(JobUpdate::of(&state.record))
            } else {
                state.record.last_event_id = id;
                None
            };
            if transition.fresh_run {
                state.halt = CancellationToken::new();
                state.halting = None;
            }
            let ts = now_epoch_s();
            // Rendered here, on the job's own task, not on the single writer: in one pass, so
            // under the job's lock (it only orders this job's own events).
            let json = if render {
                Event::render_json(id, ts, &payload)
            } else {
                String::new()
            };
            let event = Arc::new(Event {
                id,
                job_id: job.id.clone(),
                ts,
                payload,
            });
            let pending = PendingEvent { event, json };
            (id, self.writer.submit(pending, job.clone(), update).await)
        };
        Ok((id, ack))
    }

    /// Ends a live job with a terminal event (first caller wins; the event and the final record
    /// commit together) and releases it. `Err(Stopped)` when it was already terminal.
    pub(super) async fn terminate(
        self: &Arc<Self>,
        job: &Arc<LiveJob>,
        payload: EventPayload,
    ) -> Result<JobRecord, Stopped> {
        self.terminate_with(job, payload, None).await
    }

    /// [`Inner::terminate`] with the job's best-so-far result.
    pub(super) async fn terminate_with(
        self: &Arc<Self>,
        job: &Arc<LiveJob>,
        payload: EventPayload,
        partial: Option<JobResult>,
    ) -> Result<JobRecord, Stopped> {
        let transition = Transition {
            result: partial,
            ..Transition::default()
        };
        let (id, ack) = self.enqueue_with(job, payload, transition).await?;
        Self::await_ack(job, id, ack).await?;
        job.cancel.cancel();
        job.halted.notify_waiters();
        if job.store_failure().is_some() {
            // The terminal event itself could not be written.
            return self.end_unpersisted(job).await.ok_or(Stopped);
        }
        let record = job.state.lock().await.record.clone();
        self.live_map().remove(&job.id);
        crate::metrics::job_ended(record.status);
        if self.replica.shared && self.replica.max_jobs > 0 {
            // Room for a job waiting in the shared queue.
            self.replica.claim.notify_one();
        }
        tracing::info!(job_id = %job.id, status = %record.status, "job ended");
        Ok(record)
    }

    /// Ends a job one of whose writes failed for good (the writer stopped it): its watchers get
    /// a terminal `failed` event with error `store_unavailable` at once (it cannot be durable
    /// yet), and a background task writes that ending once the store takes writes again (until
    /// shutdown; a restart's recovery ends the job otherwise). `None` when someone else ended it.
    pub(super) async fn end_unpersisted(self: &Arc<Self>, job: &Arc<LiveJob>) -> Option<JobRecord> {
        if !job.claim_unpersisted_end() {
            return None;
        }
        let reason = job.store_failure().unwrap_or("write failed").to_string();
        let payload = EventPayload::Failed {
            error: "store_unavailable".into(),
            message: format!(
                "the job's progress could not be saved ({reason}); the job was stopped"
            ),
        };
        let (event, record) = {
            let mut state = job.state.lock().await;
            let id = state.next_id;
            state.next_id += 1;
            apply_terminal(&mut state.record, &payload, id, None);
            let event = Arc::new(Event {
                id,
                job_id: job.id.clone(),
                ts: now_epoch_s(),
                payload,
            });
            (event, state.record.clone())
        };
        job.cancel.cancel();
        // Stays in the live map (readers get its final state from memory, late watchers its
        // terminal event from the ring) until the ending is saved.
        job.publish_unpersisted(event.clone());
        crate::metrics::job_ended(record.status);
        tracing::error!(job_id = %job.id, error = %reason, "job ended: its events could not be saved");
        let fences = if self.replica.shared {
            vec![Fence {
                job_id: job.id.clone(),
                epoch: job.epoch,
            }]
        } else {
            Vec::new()
        };
        let batch = WriteBatch {
            events: vec![PendingEvent::rendered(event)],
            updates: vec![JobUpdate::of(&record)],
            // Not written if another replica took the job over meanwhile.
            fences,
            ..WriteBatch::default()
        };
        let inner = self.clone();
        let job_id = job.id.clone();
        // Not on `tasks`: job tasks are waited for before `stop`, and this one waits for a
        // store that may never come back; it ends on `stop`.
        self.background.spawn(async move {
            loop {
                tokio::select! {
                    _ = inner.stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                if inner.health.problems().files.is_some() {
                    return;
                }
                if inner.store.write(&batch).await.is_ok() {
                    inner.live_map().remove(&job_id);
                    tracing::info!(job_id = %job_id, "ending of a job stopped by a store failure saved");
                    return;
                }
            }
        });
        Some(record)
    }
}
