//! The in-memory store: everything in maps behind one mutex. For tests and throw-away runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{
    CheckpointError, CheckpointStore, EventStore, EventStoreError, ExampleStore, ExampleStoreError,
    IdempotencyClaim, IdempotencyError, IdempotencyKeys, JobRows, JobRowsError, LeaseStore,
    ListJobsQuery, WriteBatch,
};
use crate::domain::{Event, Example, JobId, JobRecord, JobStatus};

#[derive(Default)]
struct State {
    jobs: HashMap<JobId, JobRecord>,
    /// Shared with the runtime's writer and watchers: appending is a reference count, not a copy.
    events: HashMap<JobId, Vec<Arc<Event>>>,
    /// key → (job id, expiry, request hash).
    idempotency: HashMap<String, (JobId, f64, Option<String>)>,
    examples: BTreeMap<String, Example>,
    /// As JSON text, as a SQL store keeps them (the engine writes text; a resume reads it).
    checkpoints: HashMap<JobId, String>,
    checkpoint_parts: HashMap<JobId, Vec<String>>,
}

/// A [`super::JobStore`] that keeps everything in process memory.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn newest_first(jobs: &mut [JobRecord]) {
    jobs.sort_by(|a, b| {
        b.created_at
            .total_cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });
}

#[async_trait]
impl EventStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn write(&self, batch: &WriteBatch) -> Result<(), EventStoreError> {
        let mut state = self.lock();
        for job in &batch.inserts {
            state.jobs.insert(job.id.clone(), job.clone());
        }
        for pending in &batch.events {
            let event = &pending.event;
            match state.events.get_mut(&event.job_id) {
                Some(log) => log.push(event.clone()),
                None => {
                    state
                        .events
                        .insert(event.job_id.clone(), vec![event.clone()]);
                }
            }
        }
        for update in &batch.updates {
            if let Some(existing) = state.jobs.get_mut(&update.id) {
                existing.status = update.status;
                existing.updated_at = update.updated_at;
                existing.result = update.result.clone();
                existing.last_event_id = update.last_event_id;
                // As the SQL stores read it back: a stored job's progress is its result's.
                if let Some(progress) = update
                    .result
                    .as_ref()
                    .and_then(crate::domain::job::Progress::from_result)
                {
                    existing.progress = progress;
                }
            }
        }
        Ok(())
    }

    /// Keeps the events themselves; rendered text would only be dropped.
    fn keeps_rendered_data(&self) -> bool {
        false
    }

    async fn events_after(
        &self,
        job_id: &str,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<Event>, EventStoreError> {
        let state = self.lock();
        let Some(log) = state.events.get(job_id) else {
            return Ok(Vec::new());
        };
        // Ids are dense from 1, so the position of id `n` is `n - 1`; search anyway in case a
        // log was written with gaps.
        let start = log.partition_point(|e| e.id <= after_id);
        Ok(log[start..]
            .iter()
            .take(limit)
            .map(|e| Event::clone(e))
            .collect())
    }
}

#[async_trait]
impl JobRows for MemoryStore {
    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>, JobRowsError> {
        Ok(self.lock().jobs.get(id).cloned())
    }

    async fn list_jobs(&self, query: &ListJobsQuery) -> Result<Vec<JobRecord>, JobRowsError> {
        let state = self.lock();
        let mut jobs: Vec<JobRecord> = state
            .jobs
            .values()
            .filter(|j| query.statuses.is_empty() || query.statuses.contains(&j.status))
            .cloned()
            .collect();
        drop(state);
        newest_first(&mut jobs);
        Ok(jobs
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .collect())
    }

    async fn jobs_with_status(
        &self,
        statuses: &[JobStatus],
    ) -> Result<Vec<JobRecord>, JobRowsError> {
        let mut jobs: Vec<JobRecord> = self
            .lock()
            .jobs
            .values()
            .filter(|j| statuses.contains(&j.status))
            .cloned()
            .collect();
        newest_first(&mut jobs);
        Ok(jobs)
    }

    async fn delete_job(&self, id: &str) -> Result<bool, JobRowsError> {
        let mut state = self.lock();
        state.events.remove(id);
        state.checkpoints.remove(id);
        state.checkpoint_parts.remove(id);
        state.idempotency.retain(|_, (job, _, _)| job != id);
        Ok(state.jobs.remove(id).is_some())
    }

    async fn reap(
        &self,
        now: f64,
        ttl_for: &(dyn Fn(JobStatus) -> Option<f64> + Sync),
    ) -> Result<Vec<JobId>, JobRowsError> {
        let mut state = self.lock();
        let expired: Vec<JobId> = state
            .jobs
            .values()
            .filter(|j| {
                j.status.is_terminal()
                    && ttl_for(j.status).is_some_and(|ttl| j.updated_at + ttl <= now)
            })
            .map(|j| j.id.clone())
            .collect();
        for id in &expired {
            state.jobs.remove(id);
            state.events.remove(id);
            state.checkpoints.remove(id);
            state.checkpoint_parts.remove(id);
        }
        let State {
            jobs, idempotency, ..
        } = &mut *state;
        // A key never outlives its job (a key claimed moments ago whose job is still on its way
        // through the writer names no job yet: only keys of the jobs just deleted go).
        idempotency.retain(|_, (job, expiry, _)| {
            *expiry > now && (jobs.contains_key(job) || !expired.contains(job))
        });
        Ok(expired)
    }
}

#[async_trait]
impl IdempotencyKeys for MemoryStore {
    async fn claim_idempotency_key_for(
        &self,
        key: &str,
        job_id: &str,
        request_hash: Option<&str>,
        now: f64,
        expires_at: f64,
    ) -> Result<IdempotencyClaim, IdempotencyError> {
        let mut state = self.lock();
        if let Some((existing, expiry, hash)) = state.idempotency.get(key)
            && *expiry > now
        {
            let differs = matches!((hash, request_hash), (Some(a), Some(b)) if a != b);
            return Ok(if differs {
                IdempotencyClaim::Conflict(existing.clone())
            } else {
                IdempotencyClaim::Existing(existing.clone())
            });
        }
        state.idempotency.insert(
            key.to_string(),
            (
                job_id.to_string(),
                expires_at,
                request_hash.map(str::to_string),
            ),
        );
        Ok(IdempotencyClaim::Claimed)
    }

    async fn forget_dangling_keys(&self, expiring_by: f64) -> Result<usize, IdempotencyError> {
        let mut state = self.lock();
        let State {
            jobs, idempotency, ..
        } = &mut *state;
        let before = idempotency.len();
        idempotency.retain(|_, (job, expiry, _)| *expiry > expiring_by || jobs.contains_key(job));
        Ok(before - idempotency.len())
    }
}

#[async_trait]
impl ExampleStore for MemoryStore {
    async fn upsert_examples(&self, examples: &[Example]) -> Result<usize, ExampleStoreError> {
        let mut state = self.lock();
        for example in examples {
            state.examples.insert(example.id.clone(), example.clone());
        }
        Ok(examples.len())
    }

    async fn list_examples(
        &self,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Example>, ExampleStoreError> {
        Ok(self
            .lock()
            .examples
            .values()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn delete_example(&self, id: &str) -> Result<bool, ExampleStoreError> {
        Ok(self.lock().examples.remove(id).is_some())
    }
}

#[async_trait]
impl CheckpointStore for MemoryStore {
    async fn put_checkpoint(
        &self,
        job_id: &str,
        checkpoint: &serde_json::Value,
    ) -> Result<(), CheckpointError> {
        self.put_checkpoint_text(job_id, checkpoint.to_string())
            .await
    }

    async fn put_checkpoint_text(
        &self,
        job_id: &str,
        checkpoint: String,
    ) -> Result<(), CheckpointError> {
        let mut state = self.lock();
        state.checkpoints.insert(job_id.to_string(), checkpoint);
        state.checkpoint_parts.remove(job_id);
        Ok(())
    }

    async fn get_checkpoint(
        &self,
        job_id: &str,
    ) -> Result<Option<serde_json::Value>, CheckpointError> {
        let Some(text) = self.lock().checkpoints.get(job_id).cloned() else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CheckpointError::Unreadable {
                job_id: job_id.into(),
                reason: e.to_string(),
            })
    }

    async fn append_checkpoint_part(
        &self,
        job_id: &str,
        part: &str,
    ) -> Result<(), CheckpointError> {
        self.lock()
            .checkpoint_parts
            .entry(job_id.to_string())
            .or_default()
            .push(part.to_string());
        Ok(())
    }

    async fn checkpoint_parts(&self, job_id: &str) -> Result<Vec<String>, CheckpointError> {
        Ok(self
            .lock()
            .checkpoint_parts
            .get(job_id)
            .cloned()
            .unwrap_or_default())
    }
}

/// One process: the defaults (a claim takes every live job).
impl LeaseStore for MemoryStore {}
