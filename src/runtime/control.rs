//! Client control of a job's lifecycle — cancel, pause, resume, steering — on this replica or,
//! through the job's row and a notification, on the replica that owns it.

use super::*;
use crate::domain::steering::{STEER_ACTION, SteerRequest, check_steerable};

impl JobRuntime {
    /// Cancels a pending, running or paused job; returns it already `cancelled`, with the best
    /// result found so far when its optimizer saved one.
    pub async fn cancel(&self, job_id: &str) -> Result<JobRecord> {
        if let Some(job) = self.inner.live_job(job_id) {
            return self.cancel_live(job).await;
        }
        if self.inner.replica.shared {
            return self.cancel_elsewhere(job_id).await;
        }
        match self.inner.store.get_job(job_id).await? {
            None => Err(Error::JobNotFound(job_id.to_string())),
            Some(record) => Err(Error::NotCancelable {
                job_id: job_id.into(),
                status: record.status.to_string(),
            }),
        }
    }

    /// Cancels a job another replica runs (or nobody does): leaves the command for its owner
    /// and waits until the job's terminal state is durable; claims the job and cancels it here
    /// when its owner is gone.
    pub(super) async fn cancel_elsewhere(&self, job_id: &str) -> Result<JobRecord> {
        let Some(record) = self.inner.store.get_job(job_id).await? else {
            return Err(Error::JobNotFound(job_id.to_string()));
        };
        let not_cancelable = |status: JobStatus| Error::NotCancelable {
            job_id: job_id.into(),
            status: status.to_string(),
        };
        if record.status.is_terminal() {
            return Err(not_cancelable(record.status));
        }
        self.inner.store.request(job_id, replica::CANCEL).await?;
        match self
            .inner
            .await_stored(job_id, |status| status.is_terminal())
            .await?
        {
            replica::Awaited::Stored(record) if record.status == JobStatus::Cancelled => {
                Ok(*record)
            }
            replica::Awaited::Stored(record) => Err(not_cancelable(record.status)),
            replica::Awaited::Live(job) => self.cancel_live(job).await,
        }
    }

    /// Cancels a job live in this process.
    pub(super) async fn cancel_live(&self, job: Arc<LiveJob>) -> Result<JobRecord> {
        let partial = self.inner.partial_result(&job, "cancelled").await;
        match self
            .inner
            .terminate_with(&job, EventPayload::Cancelled {}, partial)
            .await
        {
            Ok(record) => Ok(record),
            Err(Stopped) => {
                let status = job.state.lock().await.record.status;
                Err(Error::NotCancelable {
                    job_id: job.id.clone(),
                    status: status.to_string(),
                })
            }
        }
    }

    /// Pauses a running resumable job at its next safe point and returns it `paused` (a paused
    /// job is returned as it is). Its checkpoint is durable and it holds no worker; it stays
    /// paused across restarts until [`JobRuntime::resume`] or a cancel.
    pub async fn pause(&self, job_id: &str) -> Result<JobRecord> {
        let action = "only a running GEPA job can be paused";
        if self.inner.replica.shared && self.inner.live_job(job_id).is_none() {
            let record = self
                .elsewhere(job_id, action, |r, resumable| {
                    resumable
                        && matches!(
                            r.status,
                            JobStatus::Pending | JobStatus::Running | JobStatus::Paused
                        )
                })
                .await?;
            if record.status == JobStatus::Paused {
                return Ok(record);
            }
            let paused = |s: JobStatus| s == JobStatus::Paused || s.is_terminal();
            let wanted = |s: JobStatus| s == JobStatus::Paused;
            if let Some(record) = self
                .via_owner(job_id, replica::PAUSE, action, paused, wanted)
                .await?
            {
                return Ok(record);
            }
        }
        let job = self
            .live_or_state_error(job_id, "only a running job can be paused")
            .await?;
        let resumable = self.inner.resumable(&job).await;
        {
            let mut state = job.state.lock().await;
            let status = state.record.status;
            match status {
                JobStatus::Paused => return Ok(state.record.clone()),
                JobStatus::Pending | JobStatus::Running if resumable => {
                    if state.halting.is_none() {
                        state.halting = Some(HaltReason::Pause);
                    }
                    state.halt.cancel();
                }
                _ => {
                    return Err(Error::InvalidJobState {
                        job_id: job_id.into(),
                        status: status.to_string(),
                        action: "only a running GEPA job can be paused",
                    });
                }
            }
        }
        // The run stops at its next safe point (model calls in flight are dropped).
        let deadline = tokio::time::Instant::now() + PAUSE_WAIT;
        loop {
            let halted = job.halted.notified();
            tokio::pin!(halted);
            halted.as_mut().enable();
            let record = job.state.lock().await.record.clone();
            if record.status == JobStatus::Paused || record.status.is_terminal() {
                return Ok(record);
            }
            if tokio::time::timeout_at(deadline, halted).await.is_err() {
                return Err(Error::Unavailable(format!(
                    "job {job_id} did not reach a safe point within {} s; it will pause when it does",
                    PAUSE_WAIT.as_secs()
                )));
            }
        }
    }

    /// Resumes a paused job from its checkpoint and returns it `running`.
    pub async fn resume(&self, job_id: &str) -> Result<JobRecord> {
        if !self.is_accepting() {
            return Err(Error::Unavailable("server is shutting down".into()));
        }
        if self.inner.replica.shared && self.inner.live_job(job_id).is_none() {
            let action = "only a paused job can be resumed";
            self.elsewhere(job_id, action, |r, _| r.status == JobStatus::Paused)
                .await?;
            let resumed = |s: JobStatus| s != JobStatus::Paused;
            let wanted = |s: JobStatus| !s.is_terminal();
            if let Some(record) = self
                .via_owner(job_id, replica::RESUME, action, resumed, wanted)
                .await?
            {
                return Ok(record);
            }
        }
        let job = self
            .live_or_state_error(job_id, "only a paused job can be resumed")
            .await?;
        let resumed = self
            .inner
            .enqueue_with(
                &job,
                EventPayload::Resumed {
                    reason: "client".into(),
                },
                Transition {
                    require: Some(JobStatus::Paused),
                    status: Some(JobStatus::Running),
                    fresh_run: true,
                    result: None,
                },
            )
            .await;
        let (id, ack) = match resumed {
            Ok(queued) => queued,
            Err(Stopped) => {
                let status = job.state.lock().await.record.status;
                return Err(Error::InvalidJobState {
                    job_id: job_id.into(),
                    status: status.to_string(),
                    action: "only a paused job can be resumed",
                });
            }
        };
        let _ = Inner::await_ack(&job, id, ack).await;
        let record = job.state.lock().await.record.clone();
        tracing::info!(job_id = %job.id, "resuming paused job");
        self.inner
            .spawn_run(job, Arc::new(record.spec.clone()), true);
        Ok(record)
    }

    /// Queues steering for a running, paused or queued GEPA job (`SteerJob`): into its inbox
    /// when it runs here, else left in the store for the replica that runs it (which takes it
    /// into the inbox when notified, or when it adopts the job).
    pub async fn steer(&self, job_id: &str, request: SteerRequest) -> Result<()> {
        if let Some(job) = self.inner.live_job(job_id) {
            check_steerable(&job.state.lock().await.record)?;
            return job.steering.push(request);
        }
        if !self.inner.replica.shared {
            return self
                .live_or_state_error(job_id, STEER_ACTION)
                .await
                .map(|_| ());
        }
        self.elsewhere(job_id, STEER_ACTION, |r, _| check_steerable(r).is_ok())
            .await?;
        let text = serde_json::to_string(&request).map_err(|e| Error::Internal(e.to_string()))?;
        if self.inner.store.leave_steering(job_id, &text).await? {
            return Ok(());
        }
        // It ended meanwhile.
        self.elsewhere(job_id, STEER_ACTION, |_, _| false)
            .await
            .map(|_| ())
    }

    /// The stored job a command for another replica is about, when `allowed` (given the
    /// record and whether its mode is resumable) says the command applies to it.
    pub(super) async fn elsewhere(
        &self,
        job_id: &str,
        action: &'static str,
        allowed: impl Fn(&JobRecord, bool) -> bool,
    ) -> Result<JobRecord> {
        let Some(record) = self.inner.store.get_job(job_id).await? else {
            return Err(Error::JobNotFound(job_id.to_string()));
        };
        let resumable = self.inner.mode_resumable(record.spec.mode);
        if allowed(&record, resumable) {
            Ok(record)
        } else {
            Err(Error::InvalidJobState {
                job_id: job_id.into(),
                status: record.status.to_string(),
                action,
            })
        }
    }

    /// Leaves `command` for the replica that owns `job_id` and waits until the stored status is
    /// `done`: the job as stored when that status is also `wanted`, else `InvalidJobState`;
    /// `None` when the job became live here meanwhile (the caller acts on it itself).
    async fn via_owner(
        &self,
        job_id: &str,
        command: &str,
        action: &'static str,
        done: impl Fn(JobStatus) -> bool,
        wanted: impl Fn(JobStatus) -> bool,
    ) -> Result<Option<JobRecord>> {
        self.inner.store.request(job_id, command).await?;
        match self.inner.await_stored(job_id, done).await? {
            replica::Awaited::Stored(record) if wanted(record.status) => Ok(Some(*record)),
            replica::Awaited::Stored(record) => Err(Error::InvalidJobState {
                job_id: job_id.into(),
                status: record.status.to_string(),
                action,
            }),
            replica::Awaited::Live(_) => Ok(None),
        }
    }

    /// The live job, or the error a pause/resume of a job that is not live gets.
    pub(super) async fn live_or_state_error(
        &self,
        job_id: &str,
        action: &'static str,
    ) -> Result<Arc<LiveJob>> {
        if let Some(job) = self.inner.live_job(job_id) {
            return Ok(job);
        }
        match self.inner.store.get_job(job_id).await? {
            None => Err(Error::JobNotFound(job_id.to_string())),
            Some(record) => Err(Error::InvalidJobState {
                job_id: job_id.into(),
                status: record.status.to_string(),
                action,
            }),
        }
    }
}
