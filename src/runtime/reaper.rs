//! The reaper: evicts terminal jobs from memory after their TTL, deletes them from the store after
//! `JOB_RETENTION_S`, and forgets idempotency keys left dangling by a crash.

use super::*;

impl JobRuntime {
    pub(super) fn spawn_reaper(&self) {
        let inner = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        let period = self.inner.config.retention.reaper_interval;
        self.inner.background.spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let Some(inner) = inner.upgrade() else { break };
                let retention = inner.config.retention;
                // The JOB_TTL_* settings evict from memory: the memory store is all memory,
                // while a durable store keeps terminal jobs for JOB_RETENTION_S (0 = forever).
                // (Terminal jobs leave this process's live map when they end.)
                let durable = inner.store.kind() != "memory";
                let ttl_for = move |status: JobStatus| match status {
                    _ if !status.is_terminal() => None,
                    _ if durable => (retention.retention_s > 0.0).then_some(retention.retention_s),
                    JobStatus::Finished => Some(retention.ttl_finished_s),
                    JobStatus::Failed => Some(retention.ttl_failed_s),
                    JobStatus::Cancelled => Some(retention.ttl_cancelled_s),
                    JobStatus::Shutdown => Some(retention.ttl_shutdown_s),
                    _ => None,
                };
                match inner.store.reap(now_epoch_s(), &ttl_for).await {
                    Ok(deleted) if !deleted.is_empty() => {
                        let mut live = inner.live_map();
                        for id in &deleted {
                            live.remove(id);
                        }
                        tracing::debug!(count = deleted.len(), "reaped expired jobs");
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "reaper failed"),
                }
                // Keys claimed at least DANGLING_KEY_GRACE_S ago whose job does not exist.
                let expiring_by =
                    now_epoch_s() + retention.idempotency_ttl_s - DANGLING_KEY_GRACE_S;
                match inner.store.forget_dangling_keys(expiring_by).await {
                    Ok(0) => {}
                    Ok(count) => tracing::info!(count, "forgot idempotency keys naming no job"),
                    Err(err) => tracing::warn!(error = %err, "dangling key sweep failed"),
                }
            }
        });
    }
}
