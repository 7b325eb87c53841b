//! Creating a job: admission (draining, store health, the mode, server-side limits), the
//! idempotency key (the same key and request name the same job; another request is a
//! conflict), the row written through the event writer (owned by this replica when it has room
//! on a shared store, else announced as claimable), and starting its run.

use std::sync::Arc;

use super::JobRuntime;
use super::event_log::LiveJob;
use crate::domain::{JobId, JobRecord, JobSpec, JobStatus, now_epoch_s};
use crate::error::{Error, Result};
use crate::store::IdempotencyClaim;

/// The outcome of [`JobRuntime::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub job_id: JobId,
    /// True when an idempotency key matched an existing job and nothing was created.
    pub replayed: bool,
}

impl JobRuntime {
    /// Creates a job (or returns the one an unexpired idempotency key names) and starts it.
    /// `spec` must already be validated.
    pub async fn create(&self, spec: JobSpec, idempotency_key: Option<&str>) -> Result<Created> {
        self.create_from(spec, idempotency_key, None).await
    }

    /// [`JobRuntime::create`] whose job starts from `checkpoint` (another job's, for
    /// `BranchJob`): it is stored for the new job before its run starts.
    pub async fn create_from(
        &self,
        spec: JobSpec,
        idempotency_key: Option<&str>,
        checkpoint: Option<&serde_json::Value>,
    ) -> Result<Created> {
        if !self.is_accepting() {
            return Err(Error::Unavailable("server is shutting down".into()));
        }
        if let Some(why) = self.inner.health.problems().describe() {
            return Err(Error::Unavailable(why));
        }
        let Some(optimizer) = self.inner.optimizers.get(&spec.mode) else {
            return Err(Error::invalid(
                &["mode"],
                "this mode is not available on this server",
            ));
        };
        self.admit(&spec)?;
        optimizer.admit(&spec)?;
        let job_id = uuid::Uuid::new_v4().to_string();
        let now = now_epoch_s();
        if let Some(key) = idempotency_key.filter(|k| !k.is_empty()) {
            let expires = now + self.inner.config.retention.idempotency_ttl_s;
            let hash = request_hash(&spec);
            match self
                .inner
                .store
                .claim_idempotency_key_for(key, &job_id, Some(&hash), now, expires)
                .await?
            {
                IdempotencyClaim::Existing(existing) => {
                    return Ok(Created {
                        job_id: existing,
                        replayed: true,
                    });
                }
                IdempotencyClaim::Conflict(existing) => {
                    return Err(Error::IdempotencyConflict {
                        key: key.to_string(),
                        job_id: existing,
                    });
                }
                IdempotencyClaim::Claimed => {}
            }
        }
        let record = JobRecord {
            id: job_id.clone(),
            status: JobStatus::Pending,
            created_at: now,
            updated_at: now,
            spec,
            result: None,
            last_event_id: 0,
            progress: Default::default(),
        };
        // On a shared store the job is inserted owned by this replica when it has room (it runs
        // here at once, and no other replica can claim it in between); otherwise it is queued for
        // any replica with room.
        let shared = self.inner.replica.shared;
        let runs_here = !shared || self.inner.has_capacity();
        let lease = (shared && runs_here).then(|| crate::store::NewLease {
            job_id: job_id.clone(),
            owner: self.inner.replica.id.clone(),
            until: now + self.inner.replica.lease_s,
        });
        let epoch = u64::from(lease.is_some());
        // Through the writer: concurrent creations share a commit with each other and with events.
        match self.inner.writer.insert(record.clone(), lease).await.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(Error::Store(err)),
            Err(_) => return Err(Error::Unavailable("server is shutting down".into())),
        }
        if let Some(checkpoint) = checkpoint
            && let Err(err) = self.inner.store.put_checkpoint(&job_id, checkpoint).await
        {
            // The job exists; it runs from its seed rather than not at all.
            tracing::warn!(job_id = %job_id, error = %err, "branch checkpoint not stored");
        }
        if !runs_here {
            if let Err(err) = self.inner.store.announce_claimable().await {
                tracing::warn!(error = %err, "claimable job not announced");
            }
            crate::metrics::global().jobs_created.inc();
            return Ok(Created {
                job_id,
                replayed: false,
            });
        }
        let spec = Arc::new(record.spec.clone());
        let job = Arc::new(LiveJob::claimed(
            record,
            self.inner.config.watch.buffer_size,
            epoch,
        ));
        self.inner.live_map().insert(job_id.clone(), job.clone());
        crate::metrics::job_created();
        let inner = self.inner.clone();
        self.inner.tasks.spawn(tracing::Instrument::instrument(
            async move { inner.run_job(job, spec, false).await },
            // A child of the creating request's span, so a trace runs request → job.
            tracing::info_span!("job", otel.name = "job", job_id = %job_id),
        ));
        Ok(Created {
            job_id,
            replayed: false,
        })
    }

    /// Server-side limits of a validated request.
    fn admit(&self, spec: &JobSpec) -> Result<()> {
        let gepa_max_s = self.inner.config.wall_times.gepa_max_s;
        if let Some(wall) = spec.budget.max_wall_time_s
            && wall > gepa_max_s
        {
            return Err(Error::invalid(
                &["budget", "max_wall_time_s"],
                format!("max_wall_time_s must be <= {gepa_max_s} (GEPA_MAX_WALL_TIME_S)"),
            ));
        }
        Ok(())
    }
}

/// A hash of a validated request, remembered with its idempotency key: the same key with a
/// different request is a conflict. FNV-1a over the spec's JSON (stable across processes).
fn request_hash(spec: &JobSpec) -> String {
    let text = serde_json::to_string(spec).unwrap_or_default();
    format!(
        "{:016x}",
        crate::optimizer::gepa::state::fnv1a(&[text.as_str()])
    )
}
