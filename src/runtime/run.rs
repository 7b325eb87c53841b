//! Running a job: its optimizer task, the event sink it reports through, and what happens when it
//! halts (hand-over, pause, deadline, cancel, failure) — the best-so-far result included.

use super::*;

impl Inner {
    /// Marks a job running, in memory and in the store, and returns its run's halt token
    /// (`None` when it is terminal or paused). The row update is queued on the writer
    /// under the state lock (not awaited: the writer commits in queue order, and a failure is
    /// logged there): a concurrent `terminate` (cancel, shutdown) queues its terminal record
    /// after it, so the store never shows a finished job as `running`. A run that starts
    /// while the server drains (a claim round that was under way when the stop came, after
    /// `shutdown` had listed the live jobs) is halted at once: it is handed over like the
    /// others instead of running on, unseen, until the grace period ends.
    pub(super) async fn set_running(&self, job: &Arc<LiveJob>) -> Option<CancellationToken> {
        let mut state = job.state.lock().await;
        if state.record.status.is_terminal() || state.record.status == JobStatus::Paused {
            return None;
        }
        if self.mode_resumable(state.record.spec.mode) && self.draining.load(Ordering::SeqCst) {
            state.halting.get_or_insert(HaltReason::Suspend);
            state.halt.cancel();
        }
        state.record.status = JobStatus::Running;
        state.record.updated_at = now_epoch_s();
        drop(
            self.writer
                .update(JobUpdate::of(&state.record), job.epoch)
                .await,
        );
        Some(state.halt.clone())
    }

    /// Spawns a job's run on the job tasks.
    pub(super) fn spawn_run(
        self: &Arc<Self>,
        job: Arc<LiveJob>,
        spec: Arc<JobSpec>,
        resumed: bool,
    ) {
        let inner = self.clone();
        let job_id = job.id.clone();
        self.tasks.spawn(tracing::Instrument::instrument(
            async move { inner.run_job(job, spec, resumed).await },
            tracing::info_span!("job", otel.name = "job", job_id = %job_id),
        ));
    }

    pub(super) async fn resumable(&self, job: &LiveJob) -> bool {
        let mode = job.state.lock().await.record.spec.mode;
        self.mode_resumable(mode)
    }

    /// Whether jobs of `mode` are run by a resumable optimizer (GEPA).
    pub(super) fn mode_resumable(&self, mode: crate::domain::Mode) -> bool {
        self.optimizers.get(&mode).is_some_and(|o| o.resumable())
    }

    /// The best result so far of a live job that ends without finishing.
    pub(super) async fn partial_result(&self, job: &LiveJob, reason: &str) -> Option<JobResult> {
        let spec = job.state.lock().await.record.spec.clone();
        let optimizer = self.optimizers.get(&spec.mode)?;
        let partial = PartialJob {
            job_id: &job.id,
            spec: &spec,
            checkpoints: self.store.as_ref(),
            examples: self.store.as_ref(),
        };
        optimizer.partial_result(&partial, reason).await
    }

    /// After a halted run returned: the `paused` (status `paused`) or `suspended` event.
    pub(super) async fn after_halt(&self, job: &Arc<LiveJob>) {
        let reason = job.state.lock().await.halting;
        let step = match reason {
            Some(HaltReason::Pause) => {
                self.enqueue_with(
                    job,
                    EventPayload::Paused {
                        reason: "client".into(),
                    },
                    Transition {
                        status: Some(JobStatus::Paused),
                        ..Transition::default()
                    },
                )
                .await
            }
            Some(HaltReason::Suspend) | None => {
                self.enqueue(
                    job,
                    EventPayload::Suspended {
                        reason: "shutdown".into(),
                    },
                )
                .await
            }
        };
        if let Ok((id, ack)) = step {
            let _ = Self::await_ack(job, id, ack).await;
        }
        tracing::info!(job_id = %job.id, reason = ?reason, "job halted at a safe point");
        job.halted.notify_waiters();
    }

    /// Runs a job's optimizer to its terminal event, or until it is halted (paused or handed
    /// over). A `resumed` run (restart recovery, resume) does not emit a second `started`.
    pub(super) async fn run_job(
        self: Arc<Self>,
        job: Arc<LiveJob>,
        spec: Arc<JobSpec>,
        resumed: bool,
    ) {
        self.run_job_once(&job, spec, resumed).await;
        if job.is_fenced() {
            self.drop_fenced(&job);
        }
    }

    /// [`Inner::run_job`] until the run returns.
    pub(super) async fn run_job_once(
        self: &Arc<Self>,
        job: &Arc<LiveJob>,
        spec: Arc<JobSpec>,
        resumed: bool,
    ) {
        let job = job.clone();
        let Some(halt) = self.set_running(&job).await else {
            return;
        };
        if !resumed && self.emit(&job, EventPayload::Started {}).await.is_err() {
            return;
        }
        if halt.is_cancelled() {
            self.after_halt(&job).await;
            return;
        }
        let Some(optimizer) = self.optimizers.get(&spec.mode).cloned() else {
            return;
        };
        let ctx = JobContext {
            job_id: job.id.clone(),
            spec: spec.clone(),
            events: Arc::new(JobEvents {
                inner: self.clone(),
                job: job.clone(),
            }),
            cancel: job.cancel.clone(),
            halt,
            checkpoints: self.store.clone(),
            examples: self.store.clone(),
            steering: job.steering.clone(),
        };
        let deadline = Duration::from_secs_f64(self.config.wall_times.of(&spec));
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(deadline, optimizer.run(ctx)) => outcome,
            // Whoever cancelled already wrote the terminal event, unless a store failure did.
            _ = job.cancel.cancelled() => {
                if job.store_failure().is_some() {
                    self.end_unpersisted(&job).await;
                }
                return;
            }
        };
        let payload = match outcome {
            Ok(Ok(result)) => EventPayload::Finished(result),
            Ok(Err(OptimizeError::Stopped)) => {
                if job.store_failure().is_some() {
                    self.end_unpersisted(&job).await;
                }
                return;
            }
            Ok(Err(OptimizeError::Halted)) => {
                self.after_halt(&job).await;
                return;
            }
            Ok(Err(OptimizeError::Failed { code, message })) => EventPayload::Failed {
                error: code,
                message,
            },
            Err(_elapsed) => EventPayload::Failed {
                error: "deadline_exceeded".into(),
                message: String::new(),
            },
        };
        let partial = match &payload {
            EventPayload::Failed { error, .. } => self.partial_result(&job, error).await,
            _ => None,
        };
        let _ = self.terminate_with(&job, payload, partial).await;
    }
}

/// The runtime's [`EventSink`] for one job.
struct JobEvents {
    inner: Arc<Inner>,
    job: Arc<LiveJob>,
}

#[async_trait]
impl EventSink for JobEvents {
    /// Pipelined: returns once the event is queued (in order), without waiting for its commit,
    /// so a job keeps working while the writer group-commits. Only the newest acknowledgement is
    /// kept: the writer commits in order, so it implies every earlier one. The writer's bounded
    /// queue is the backpressure.
    async fn emit(&self, payload: EventPayload) -> Result<u64, Stopped> {
        if payload.terminal_status().is_some() {
            // Terminal events belong to the runtime.
            return Err(Stopped);
        }
        let (id, ack) = self.inner.enqueue(&self.job, payload).await?;
        let previous = self.job.set_unacked(id, ack);
        drop(previous);
        Ok(id)
    }

    async fn flush(&self) -> Result<(), Stopped> {
        match self.job.take_unacked() {
            Some((id, ack)) => Inner::await_ack(&self.job, id, ack).await,
            None => Ok(()),
        }
    }
}
