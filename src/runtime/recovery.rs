//! Taking over a job a claim returned: crash recovery at start (every job a previous process
//! left live, on a store one process uses) and, on a shared store, jobs whose owner's lease
//! expired or was released. A queued job starts, a resumable one continues from its
//! checkpoint, a paused one stays paused, any other gets exactly one terminal event.

use super::*;

impl Inner {
    /// Takes over a job a claim returned: a queued job (created where there was no room,
    /// never run) starts; a resumable one continues from its checkpoint (a `resumed
    /// {reason:"restart"}` event, ids continuing after the last stored one, no second
    /// `started`); a paused one becomes live here, still paused; any other gets exactly one
    /// terminal event (`shutdown {reason:"interrupted"}`) unless its log already has one.
    /// At start this is crash recovery: on a store one process uses, every job a previous
    /// process left live; on a shared one, jobs whose owner's lease expired or was released.
    pub(super) async fn adopt(self: &Arc<Self>, claimed: Claimed) -> Result<()> {
        let Claimed {
            mut record,
            epoch,
            requested,
        } = claimed;
        if self.live_job(&record.id).is_some() {
            return Ok(());
        }
        let store = &self.store;
        let mut last_id = 0;
        let mut terminal: Option<EventPayload> = None;
        let mut progress = crate::domain::job::Progress::default();
        loop {
            let page = store.events_after(&record.id, last_id, 1000).await?;
            let Some(last) = page.last() else { break };
            if last.id <= last_id {
                // A log whose ids do not grow (never written so by this service): read no
                // further rather than page through it forever.
                tracing::warn!(job_id = %record.id, after = last_id, "event log does not advance");
                break;
            }
            last_id = last.id;
            for event in &page {
                progress.observe(&event.payload);
                if event.is_terminal() {
                    terminal = Some(event.payload.clone());
                }
            }
        }
        let resumable = self.mode_resumable(record.spec.mode);
        let queued = self.replica.shared
            && record.status == JobStatus::Pending
            && last_id == 0
            && epoch == 1;
        let capacity = self.config.watch.buffer_size;
        if terminal.is_none() && (queued || resumable) {
            record.last_event_id = last_id;
            record.progress = progress;
            let spec = Arc::new(record.spec.clone());
            let paused = record.status == JobStatus::Paused;
            let job = Arc::new(LiveJob::claimed(record, capacity, epoch));
            self.live_map().insert(job.id.clone(), job.clone());
            crate::metrics::global().job_queue_depth.inc();
            if self.replica.shared {
                // Steering left for the previous owner, or while it was queued.
                self.take_steering(&job.id).await;
            }
            if let Some(command) = requested {
                self.spawn_command(job.id.clone(), command);
            }
            if queued {
                tracing::info!(job_id = %job.id, "claimed a queued job");
                self.spawn_run(job, spec, false);
            } else if paused {
                tracing::info!(job_id = %job.id, "paused job kept paused");
            } else {
                tracing::info!(job_id = %job.id, last_event_id = last_id, "resuming interrupted job");
                let resumed = EventPayload::Resumed {
                    reason: "restart".into(),
                };
                if let Ok((id, ack)) = self.enqueue(&job, resumed).await {
                    let _ = Inner::await_ack(&job, id, ack).await;
                }
                self.spawn_run(job, spec, true);
            }
            return Ok(());
        }
        // The terminal event and the final row commit together.
        let mut batch = WriteBatch::default();
        let payload = match terminal {
            Some(payload) => payload,
            None => {
                let payload = EventPayload::Shutdown {
                    reason: "interrupted".into(),
                };
                last_id += 1;
                batch.events.push(PendingEvent::rendered(Arc::new(Event {
                    id: last_id,
                    job_id: record.id.clone(),
                    ts: now_epoch_s(),
                    payload: payload.clone(),
                })));
                payload
            }
        };
        apply_terminal(&mut record, &payload, last_id, None);
        batch.updates.push(JobUpdate::of(&record));
        if self.replica.shared {
            batch.fences.push(Fence {
                job_id: record.id.clone(),
                epoch,
            });
        }
        let fenced = store
            .write_fenced(&batch, Box::pin(std::future::ready(())))
            .await?;
        if fenced.is_empty() {
            tracing::info!(job_id = %record.id, status = %record.status, "recovered interrupted job");
        }
        Ok(())
    }
}
