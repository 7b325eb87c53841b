//! The engine's checkpoint writes: after a batch of answers a part (the memo entries added since
//! and the spend), at the top of an iteration a part with the state delta, or a whole base when
//! none is written yet or the parts outweigh it (formats in [`super::checkpoint`]); never ahead
//! of the event log. What a checkpoint says was paid includes a replay's unbooked answers.

use super::engine::Engine;
use super::state::{CheckpointJournal, CheckpointPartRef, CheckpointRef, StateDeltaRef};

impl Engine<'_> {
    /// What has really been paid: the budget's spend plus, in a replayed iteration, the answers
    /// the interrupted iteration paid for that the replay has not booked again yet (the
    /// checkpoint's `spent`; see [`super::state::Checkpoint::resume_budget`]).
    pub(super) fn paid(&self) -> super::budget::Spent {
        let mut paid = self.budget.spent.clone();
        for key in &self.replay {
            if let Some(r) = self.memo.get_text(key) {
                paid.metric_calls += 1;
                paid.cost_usd += r.task_usd + r.judge_usd;
                paid.tokens += r.tokens;
            } else if let Some(r) = self.memo.reflections.get(key) {
                paid.cost_usd += r.usd;
                paid.tokens += r.tokens;
            }
        }
        paid
    }

    /// Writes the checkpoint after a batch of answers: a part with the memo entries added
    /// since the last write and the spend (a whole write until a base exists).
    pub async fn save(&mut self) {
        self.write_checkpoint(false).await;
    }

    /// Writes what changed since the last write (see `state`'s module doc). `at_top`: the state
    /// is the top of an iteration and goes into the write; a base is rewritten then once the
    /// parts outweigh it.
    async fn write_checkpoint(&mut self, at_top: bool) {
        // The checkpoint must not get ahead of the event log: on resume, ids continue after the
        // last stored event, and every event before this point must be among them.
        if self.ctx.events.flush().await.is_err() {
            return;
        }
        let journal = &self.journal;
        if at_top && journal.rebase_due() {
            self.top = Some(self.state.clone());
            let written = self.put_base().await;
            if let Some(bytes) = written {
                self.journal = CheckpointJournal {
                    pool_written: self.state.candidates.len(),
                    proposals_written: self.state.proposals.len(),
                    has_base: true,
                    base_bytes: bytes,
                    ..CheckpointJournal::default()
                };
            }
            return;
        }
        if !journal.has_base {
            // No state written yet (the seed's validation): the whole memo with the last top.
            if self.put_base().await.is_some() {
                self.journal.fresh_cache.clear();
                self.journal.fresh_reflections.clear();
            }
            return;
        }
        let paid = self.paid();
        let part = CheckpointPartRef {
            state: at_top.then(|| {
                StateDeltaRef::of(&self.state, journal.pool_written, journal.proposals_written)
            }),
            memo: journal.memo_delta(&self.memo),
            spent: &paid,
        };
        let text = match serde_json::to_string(&part) {
            Ok(text) => text,
            Err(err) => {
                tracing::warn!(error = %err, "checkpoint part not serialisable");
                return;
            }
        };
        match self
            .ctx
            .checkpoints
            .append_checkpoint_part(&self.ctx.job_id, &text)
            .await
        {
            Ok(()) => {
                let journal = &mut self.journal;
                journal.parts_bytes += text.len();
                if at_top {
                    journal.superseded_bytes += StateDeltaRef::superseded_bytes(&self.state);
                }
                journal.fresh_cache.clear();
                journal.fresh_reflections.clear();
                if at_top {
                    journal.pool_written = self.state.candidates.len();
                    journal.proposals_written = self.state.proposals.len();
                }
            }
            Err(err) => {
                // The next top of an iteration writes a whole base again.
                tracing::warn!(job_id = %self.ctx.job_id, error = %err, "checkpoint part not saved");
                self.journal.has_base = false;
            }
        }
    }

    /// Writes the whole checkpoint (`top`, memo, spend) as a new base; its size when written.
    /// Rendered once, straight to text, into a buffer sized for the last base and its parts
    /// (megabytes late in a run: a buffer grown by doubling faulted in fresh pages each time).
    async fn put_base(&self) -> Option<usize> {
        let paid = self.paid();
        let checkpoint = CheckpointRef {
            state: self.top.as_ref(),
            memo: &self.memo,
            spent: &paid,
            replay: &self.replay,
        };
        let mut text = Vec::with_capacity(self.journal.base_bytes + self.journal.parts_bytes);
        if let Err(err) = serde_json::to_writer(&mut text, &checkpoint) {
            tracing::warn!(error = %err, "checkpoint not serialisable");
            return None;
        }
        let Ok(text) = String::from_utf8(text) else {
            tracing::warn!("checkpoint not serialisable as UTF-8");
            return None;
        };
        let bytes = text.len();
        match self
            .ctx
            .checkpoints
            .put_checkpoint_text(&self.ctx.job_id, text)
            .await
        {
            Ok(()) => Some(bytes),
            Err(err) => {
                tracing::warn!(job_id = %self.ctx.job_id, error = %err, "checkpoint not saved");
                None
            }
        }
    }

    /// Snapshots the state at the top of an iteration and saves it.
    pub(super) async fn checkpoint(&mut self) {
        self.state.spent = self.budget.spent.clone();
        self.write_checkpoint(true).await;
    }
}
