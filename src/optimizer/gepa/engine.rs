//! The GEPA loop (paper Algorithm 1, reference `GEPAEngine.run`), with hard budgets and a
//! checkpoint at the top of every iteration. One `Engine` runs one job.

use std::sync::Arc;

use super::budget::{Budget, StopReason};
use super::evaluator::{BatchStop, Evaluator, render_system};
use super::frontier;
use super::state::{
    CacheKey, Candidate, CheckpointJournal, CheckpointPartRef, CheckpointRef, EvalRecord,
    ExampleKeys, GepaState, Memo, StateDeltaRef, candidate_hash,
};
use crate::domain::gepa::{
    Acceptance, CandidateScored, CandidateSelector, FrontierEntry, FrontierUpdated,
    GenerationStarted, JudgeScored, LessonsUpdated, ProposalCost, ValidationPolicy,
};
use crate::domain::{EventPayload, Example, ObjectiveScores};
use crate::optimizer::{JobContext, OptimizeError};
use crate::provider::{ModelProvider, ProviderError};

/// Validation examples a merge child is first judged on.
pub const MERGE_SUBSAMPLE: usize = 5;
/// Epsilon of the epsilon-greedy selector.
const EPSILON: f64 = 0.1;

/// Why the loop ended early, or why it failed.
pub enum Halt {
    Budget(StopReason),
    Error(OptimizeError),
}

impl From<OptimizeError> for Halt {
    fn from(e: OptimizeError) -> Self {
        Halt::Error(e)
    }
}

impl From<crate::optimizer::Stopped> for Halt {
    fn from(_: crate::optimizer::Stopped) -> Self {
        Halt::Error(OptimizeError::Stopped)
    }
}

pub fn provider_failed(err: &ProviderError) -> OptimizeError {
    OptimizeError::Failed {
        code: "provider_error".into(),
        message: format!("model provider failed: {err}"),
    }
}

/// The Pareto frontier of a state's pool as `{id, score}` entries.
pub fn frontier_entries(state: &GepaState) -> Vec<FrontierEntry> {
    let fronts = frontier::instance_fronts(&state.val_scores);
    let agg: Vec<f64> = (0..state.candidates.len())
        .map(|c| state.aggregate(c))
        .collect();
    frontier::dominators(&fronts, &agg)
        .into_iter()
        .map(|c| FrontierEntry {
            id: c as u32,
            score: agg[c],
        })
        .collect()
}

/// Knobs fixed for the run.
pub struct Config {
    pub minibatch: usize,
    pub selector: CandidateSelector,
    pub acceptance: Acceptance,
    pub use_merge: bool,
    pub max_merges: u32,
    pub components: Vec<String>,
    pub reflection: Option<(Arc<dyn ModelProvider>, String)>,
    pub validation: ValidationPolicy,
    /// The engine before issue 20: worst-case start rule, no reflection memory.
    pub legacy: bool,
    /// Reflective proposals per generation (`None`: `DEFAULT_PARALLEL_PROPOSALS`).
    pub parallel: Option<usize>,
}

pub struct Engine<'a> {
    pub ctx: &'a JobContext,
    pub eval: Evaluator,
    pub cfg: Config,
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub budget: Budget,
    pub state: GepaState,
    /// Model answers paid for (checkpointed with the top-of-iteration state).
    pub memo: Memo,
    /// The train and validation examples' indices in `memo`'s id table (cache keys).
    pub example_keys: ExampleKeys,
    /// The state at the top of the iteration of the last base write (what a whole write
    /// carries until a base with a state exists).
    pub top: Option<GepaState>,
    /// `lessons_updated` already sent in this generation.
    pub lessons_sent: bool,
    /// What has been written of the checkpoint (incremental writes).
    pub journal: CheckpointJournal,
    /// Spend since the job (re)started, for the per-proposal ledger (not checkpointed).
    pub spend: ProposalCost,
    /// Per item of the last `evaluate_many`: what its uncached rollouts cost.
    pub item_spend: Vec<ProposalCost>,
    /// The pool's per-instance fronts and aggregates, kept up to date as candidates join (not
    /// checkpointed: rebuilt from the state).
    pub fronts: frontier::FrontIndex,
    /// Memo keys the interrupted iteration paid for ([`super::state::Checkpoint::replay`]).
    pub replay: std::collections::BTreeSet<String>,
}

/// One rollout a batch pays for (see [`Engine::evaluate_many`]).
enum Due {
    /// The `n`th uncached rollout, dispatched now.
    Miss(usize),
    /// A replayed answer of item `n`: its task USD, judge USD and tokens.
    Replayed(usize, f64, f64, u64),
}

/// A validated child's scores and unscored indices (`None`: it lost to its parent), and what
/// its validation cost.
pub type ValidatedChild = (Option<(Vec<f64>, Vec<usize>)>, ProposalCost);

/// Adds `more` to a running ledger entry.
pub fn add_cost(to: &mut ProposalCost, more: &ProposalCost) {
    to.metric_calls += more.metric_calls;
    to.task_usd += more.task_usd;
    to.reflection_usd += more.reflection_usd;
    to.judge_usd += more.judge_usd;
}

/// What one iteration achieved (idle iterations count towards `converged`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Progress,
    Idle,
}

impl Engine<'_> {
    pub(super) async fn emit(&self, payload: EventPayload) -> Result<(), Halt> {
        self.ctx.events.emit(payload).await?;
        Ok(())
    }

    /// Evaluates `candidate` on `examples` (indices into train or val), serving cached rollouts
    /// and reserving budget for the rest BEFORE dispatching them.
    pub async fn evaluate(
        &mut self,
        candidate: &Candidate,
        on_val: bool,
        indices: &[usize],
    ) -> Result<Vec<EvalRecord>, Halt> {
        let mut out = self.evaluate_many(&[(candidate, on_val, indices)]).await?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Evaluates several (candidate, set, indices) items at once: the uncached rollouts of all
    /// of them are reserved together, then dispatched together under the job's concurrency
    /// cap. Results are per item, in order, whatever order the answers arrive in.
    #[tracing::instrument(
        name = "evaluate",
        skip_all,
        fields(
            otel.name = if items.iter().all(|i| !i.1) { "minibatch" } else { "evaluate" },
            set = if items.iter().all(|i| !i.1) { "train" } else { "val" },
            items = items.len(),
            misses = tracing::field::Empty,
        )
    )]
    pub async fn evaluate_many(
        &mut self,
        items: &[(&Candidate, bool, &[usize])],
    ) -> Result<Vec<Vec<EvalRecord>>, Halt> {
        let mut keys: Vec<Vec<CacheKey>> = Vec::with_capacity(items.len());
        // (item, position) of every distinct uncached rollout, in order.
        let mut misses: Vec<(usize, usize)> = Vec::new();
        // What this batch pays for, in the order the uninterrupted run paid it: the misses
        // (by index into `misses`) and, in a replayed iteration, the answers it paid for
        // before the interruption, served from the memo (item, record).
        let mut due: Vec<Due> = Vec::new();
        let mut seen = super::state::CacheSet::default();
        for (n, (candidate, on_val, indices)) in items.iter().enumerate() {
            let item_keys = self.cache_keys(candidate_hash(candidate), *on_val, indices);
            for (k, key) in item_keys.iter().enumerate() {
                match self.memo.cache.get(key) {
                    None if seen.insert(*key) => {
                        due.push(Due::Miss(misses.len()));
                        misses.push((n, k));
                    }
                    // Answers the interrupted iteration paid for are booked as paid once more
                    // (the key's text is built only while a replay is under way).
                    Some(record)
                        if !self.replay.is_empty()
                            && self.replay.remove(&self.memo.key_text(*key).to_string()) =>
                    {
                        due.push(Due::Replayed(
                            n,
                            record.task_usd,
                            record.judge_usd,
                            record.tokens,
                        ));
                    }
                    _ => {}
                }
            }
            keys.push(item_keys);
        }
        tracing::Span::current().record("misses", misses.len());
        self.budget
            .reserve(due.len() as u64)
            .map_err(Halt::Budget)?;
        let systems: Vec<Arc<str>> = items
            .iter()
            .map(|(c, _, _)| render_system(c).into())
            .collect();
        let example = |n: usize, k: usize| {
            let (_, on_val, indices) = items[n];
            let set = if on_val { &self.val } else { &self.train };
            &set[indices[k]]
        };
        let pairs: Vec<(&Arc<str>, &Example)> = misses
            .iter()
            .map(|(n, k)| (&systems[*n], example(*n, *k)))
            .collect();
        // A halt (pause, hand-over) keeps the rollouts already answered and drops only the
        // calls in flight: those are what a resume pays twice.
        let (rollouts, halted) = match self.eval.batch_pairs_until(&pairs, &self.ctx.halt).await {
            Ok(rollouts) => (rollouts, false),
            Err(BatchStop::Halted(done)) => (done, true),
            Err(BatchStop::Failed(e)) => return Err(Halt::Error(provider_failed(&e))),
        };
        // Calls reserved but never answered are given back, so the checkpoint's spend is
        // exactly what its memo holds.
        let unanswered = (misses.len() - rollouts.len()) as u64;
        self.budget.spent.metric_calls -= unanswered;
        let answered = rollouts.len();
        let mut rollouts: Vec<Option<super::evaluator::Rollout>> =
            rollouts.into_iter().map(Some).collect();
        let mut judged = Vec::new();
        self.item_spend = vec![ProposalCost::default(); items.len()];
        for entry in due {
            let (n, task_usd, judge_usd, tokens) = match entry {
                Due::Replayed(n, task_usd, judge_usd, tokens) => (n, task_usd, judge_usd, tokens),
                Due::Miss(m) => {
                    let Some(rollout) = rollouts.get_mut(m).and_then(Option::take) else {
                        continue;
                    };
                    let (n, k) = misses[m];
                    if let Some(score) = rollout.judge_score {
                        judged.push((example(n, k).id.clone(), score));
                    }
                    // Validation rollouts are kept by score alone: nothing reads their output
                    // or feedback (reflection reads training rollouts), and the checkpoint
                    // stays small.
                    let record = if items[n].1 {
                        EvalRecord {
                            score: rollout.record.score,
                            task_usd: rollout.record.task_usd,
                            judge_usd: rollout.record.judge_usd,
                            tokens: rollout.record.tokens,
                            ..EvalRecord::default()
                        }
                    } else {
                        rollout.record
                    };
                    let paid = (n, record.task_usd, record.judge_usd, record.tokens);
                    self.memo.cache.insert(keys[n][k], record);
                    self.journal.fresh_cache.push(keys[n][k]);
                    paid
                }
            };
            self.budget.record(task_usd + judge_usd, tokens);
            for spend in [&mut self.item_spend[n], &mut self.spend] {
                spend.metric_calls += 1;
                spend.task_usd += task_usd;
                spend.judge_usd += judge_usd;
            }
        }
        if answered > 0 {
            self.save().await;
        }
        for (example_id, score) in judged {
            self.emit(EventPayload::JudgeScored(JudgeScored {
                id: example_id.clone(),
                judge_score: score,
                example_id,
                score,
            }))
            .await?;
        }
        if halted {
            return Err(Halt::Error(OptimizeError::Halted));
        }
        Ok(keys
            .iter()
            .map(|item| {
                item.iter()
                    .map(|k| self.memo.cache.get(k).cloned().unwrap_or_default())
                    .collect()
            })
            .collect())
    }

    /// Drops the validation rollouts of pool member `id` from the memo. Hidden contract: a pool
    /// member is never validated again (reflection and merge children already in the pool are
    /// rejected before validation, steering skips them), so its validation rollouts are never
    /// looked up again; its scores live in `state.val_scores`. Dropping them keeps the memo —
    /// and every base checkpoint, which rewrites it — proportional to the training rollouts and
    /// the children that lost, not to pool × validation set. A resumed run may still hold
    /// some of them (from parts written before the drop): never looked up, they change nothing.
    pub(super) fn forget_validation(&mut self, id: usize) {
        let all: Vec<usize> = (0..self.val.len()).collect();
        for key in self.cache_keys(candidate_hash(&self.state.candidates[id]), true, &all) {
            self.memo.cache.remove(&key);
        }
    }

    /// The cache keys of the candidate hashed `hash` on examples `indices` of the validation
    /// (`on_val`) or training set.
    fn cache_keys(&self, hash: u64, on_val: bool, indices: &[usize]) -> Vec<CacheKey> {
        let set = if on_val {
            &self.example_keys.val
        } else {
            &self.example_keys.train
        };
        indices
            .iter()
            .map(|i| CacheKey {
                candidate: hash,
                example: set[*i],
            })
            .collect()
    }

    /// Scores a candidate on the whole validation set.
    #[tracing::instrument(name = "validate", skip_all, fields(otel.name = "validate"))]
    pub async fn validate(&mut self, candidate: &Candidate) -> Result<Vec<f64>, Halt> {
        let all: Vec<usize> = (0..self.val.len()).collect();
        Ok(self
            .evaluate(candidate, true, &all)
            .await?
            .into_iter()
            .map(|r| r.score)
            .collect())
    }

    /// Validation ids of `order` whose uncached rollouts of the candidate hashed `hash` fit in
    /// `left` metric calls (`None`: unlimited), in order; takes them from `left`. An answer a
    /// replayed iteration had paid for counts as uncached: the replay books it again.
    fn fitting(&self, hash: u64, order: &[usize], left: &mut Option<u64>) -> Vec<usize> {
        if self.budget.spending_stop().is_some() {
            return Vec::new();
        }
        let Some(left) = left.as_mut() else {
            return order.to_vec();
        };
        let mut out = Vec::new();
        for k in order {
            let key = CacheKey {
                candidate: hash,
                example: self.example_keys.val[*k],
            };
            let free = self.memo.cache.contains_key(&key)
                && (self.replay.is_empty()
                    || !self.replay.contains(&self.memo.key_text(key).to_string()));
            if !free {
                if *left == 0 {
                    continue;
                }
                *left -= 1;
            }
            out.push(*k);
        }
        out
    }

    /// [`Engine::validate_children`] for one child.
    pub(super) async fn validate_child(
        &mut self,
        child: &Candidate,
        parents: &[usize],
    ) -> Result<Option<(Vec<f64>, Vec<usize>)>, Halt> {
        let mut out = self.validate_children(&[(child, parents)]).await?;
        Ok(out.pop().and_then(|(verdict, _)| verdict))
    }

    /// Scores accepted children on the validation set under the job's policy, together: each
    /// stage (the subsample, then the rest) runs every child's rollouts at once, so a
    /// generation's validations cost one stage's latency, not one per child. Per child (in
    /// order): its per-instance scores and the indices left unscored (estimated by its best
    /// parent's scores), or `None` when it lost to that parent on the ids it was scored on;
    /// and what its validation cost. The plan (RNG draws, which ids fit the budget) is made in
    /// child order before anything runs, so it does not depend on timing.
    pub(super) async fn validate_children(
        &mut self,
        children: &[(&Candidate, &[usize])],
    ) -> Result<Vec<ValidatedChild>, Halt> {
        struct Plan {
            hash: u64,
            reference: usize,
            order: Vec<usize>,
            scored: Vec<Option<f64>>,
            /// Scored on every id in one stage (legacy, or `full` when they all fit).
            whole: bool,
            lost: bool,
            cost: ProposalCost,
        }
        let n = self.val.len();
        let all: Vec<usize> = (0..n).collect();
        let mut left = self.budget.metric_calls_left();
        let mut plans: Vec<Plan> = Vec::with_capacity(children.len());
        for (child, parents) in children {
            let hash = candidate_hash(child);
            let mut trial = left;
            let whole = self.cfg.legacy
                || self.cfg.validation == ValidationPolicy::Full
                    && self.fitting(hash, &all, &mut trial).len() == n;
            let reference = parents
                .iter()
                .copied()
                .max_by(|a, b| {
                    self.state
                        .aggregate(*a)
                        .total_cmp(&self.state.aggregate(*b))
                        .then(b.cmp(a))
                })
                .unwrap_or(0);
            let mut order = all.clone();
            if whole {
                left = trial;
            } else {
                self.state.rng.shuffle(&mut order);
            }
            plans.push(Plan {
                hash,
                reference,
                order,
                scored: vec![None; n],
                whole,
                lost: false,
                cost: ProposalCost::default(),
            });
        }
        let loses = |plan: &Plan, state: &GepaState| {
            let (mut child_sum, mut parent_sum) = (0.0, 0.0);
            for (k, s) in plan.scored.iter().enumerate() {
                if let Some(s) = s {
                    child_sum += s;
                    parent_sum += state.val_scores[plan.reference][k];
                }
            }
            child_sum < parent_sum
        };
        // 1. The subsample of every child not validated whole.
        if self.cfg.validation == ValidationPolicy::Subsample && !self.cfg.legacy {
            let size = n.div_ceil(5).max(MERGE_SUBSAMPLE).min(n);
            let mut stage: Vec<(usize, Vec<usize>)> = Vec::new();
            for (c, plan) in plans.iter_mut().enumerate().filter(|(_, p)| !p.whole) {
                let mut sub = self.fitting(plan.hash, &plan.order[..size], &mut left);
                sub.sort_unstable();
                if sub.is_empty() {
                    plan.lost = true;
                } else {
                    stage.push((c, sub));
                }
            }
            let records = self.evaluate_stage(children, &stage).await?;
            for ((c, sub), (records, cost)) in stage.iter().zip(records) {
                let plan = &mut plans[*c];
                add_cost(&mut plan.cost, &cost);
                for (k, r) in sub.iter().zip(records) {
                    plan.scored[*k] = Some(r.score);
                }
                plan.lost = loses(plan, &self.state);
            }
        }
        // 2. The rest (or everything) of every child still in the running.
        let mut stage: Vec<(usize, Vec<usize>)> = Vec::new();
        for (c, plan) in plans.iter().enumerate().filter(|(_, p)| !p.lost) {
            let rest = if plan.whole {
                all.clone()
            } else {
                let rest: Vec<usize> = plan
                    .order
                    .iter()
                    .copied()
                    .filter(|k| plan.scored[*k].is_none())
                    .collect();
                let mut rest = self.fitting(plan.hash, &rest, &mut left);
                rest.sort_unstable();
                rest
            };
            if !rest.is_empty() {
                stage.push((c, rest));
            }
        }
        let records = self.evaluate_stage(children, &stage).await?;
        for ((c, rest), (records, cost)) in stage.iter().zip(records) {
            let plan = &mut plans[*c];
            add_cost(&mut plan.cost, &cost);
            for (k, r) in rest.iter().zip(records) {
                plan.scored[*k] = Some(r.score);
            }
        }
        Ok(plans
            .into_iter()
            .map(|plan| {
                if plan.lost || plan.scored.iter().all(Option::is_none) {
                    return (None, plan.cost);
                }
                let missing: Vec<usize> = (0..n).filter(|k| plan.scored[*k].is_none()).collect();
                if !missing.is_empty() && loses(&plan, &self.state) {
                    return (None, plan.cost);
                }
                let scores = (0..n)
                    .map(|k| plan.scored[k].unwrap_or(self.state.val_scores[plan.reference][k]))
                    .collect();
                (Some((scores, missing)), plan.cost)
            })
            .collect())
    }

    /// Runs one validation stage: child `c` of `children` on the validation ids given for it,
    /// all together. Per entry: the records and what its uncached rollouts cost.
    async fn evaluate_stage(
        &mut self,
        children: &[(&Candidate, &[usize])],
        stage: &[(usize, Vec<usize>)],
    ) -> Result<Vec<(Vec<EvalRecord>, ProposalCost)>, Halt> {
        if stage.is_empty() {
            return Ok(Vec::new());
        }
        let items: Vec<(&Candidate, bool, &[usize])> = stage
            .iter()
            .map(|(c, ids)| (children[*c].0, true, ids.as_slice()))
            .collect();
        let records = self.evaluate_many(&items).await?;
        let costs = std::mem::take(&mut self.item_spend);
        Ok(records.into_iter().zip(costs).collect())
    }

    pub fn frontier_entries(&self) -> Vec<FrontierEntry> {
        if !self.fronts.is_current(&self.state.val_scores) {
            return frontier_entries(&self.state);
        }
        let agg = self.fronts.aggregates();
        self.fronts
            .dominators()
            .into_iter()
            .map(|c| FrontierEntry {
                id: c as u32,
                score: agg[c],
            })
            .collect()
    }

    pub fn best(&self) -> usize {
        if self.fronts.is_current(&self.state.val_scores) {
            self.fronts.best()
        } else {
            frontier::best(&self.state.val_scores)
        }
    }

    /// Brings the front index up to the pool.
    pub(super) fn sync_fronts(&mut self) {
        self.fronts.sync(&self.state.val_scores);
    }

    /// Announces the candidates added since the last announcement (`candidate_scored` each),
    /// then `frontier_updated` (always) and the original's `selected` (when any was added).
    pub async fn announce(&mut self, r#gen: u32) -> Result<(), Halt> {
        self.sync_fronts();
        let added = std::mem::take(&mut self.state.unannounced);
        for (id, cost) in &added {
            let id = *id;
            let val_scores = self
                .val
                .iter()
                .zip(&self.state.val_scores[id])
                .map(|(e, s)| (e.id.clone(), *s))
                .collect();
            self.emit(EventPayload::CandidateScored(CandidateScored {
                candidate_id: id as u32,
                score: self.state.aggregate(id),
                val_scores,
                cost: *cost,
                len: super::evaluator::render_system(&self.state.candidates[id])
                    .chars()
                    .count() as u32,
            }))
            .await?;
        }
        let best = self.best();
        let frontier = self.frontier_entries();
        self.emit(EventPayload::FrontierUpdated(FrontierUpdated {
            r#gen,
            size: frontier.len() as u32,
            best: self.state.aggregate(best),
            frontier,
            best_id: best as u32,
            best_score: self.state.aggregate(best),
        }))
        .await?;
        if added.is_empty() {
            return Ok(());
        }
        self.emit(EventPayload::Selected {
            candidate: self.state.candidates[best]
                .get(crate::domain::gepa::DEFAULT_COMPONENT)
                .cloned()
                .unwrap_or_default(),
            scores: ObjectiveScores::default(),
        })
        .await
    }

    /// `lessons_updated` (the original's: every generation), at most once per generation.
    pub(super) async fn emit_lessons(&mut self) -> Result<(), Halt> {
        if self.lessons_sent {
            return Ok(());
        }
        self.lessons_sent = true;
        let lessons = self.state.lessons.clone();
        self.emit(EventPayload::LessonsUpdated(LessonsUpdated {
            count: lessons.len() as u32,
            sample: lessons.iter().rev().take(3).rev().cloned().collect(),
            lessons,
        }))
        .await
    }

    /// What has really been paid: the budget's spend plus, in a replayed iteration, the answers
    /// the interrupted iteration paid for that the replay has not booked again yet (the
    /// checkpoint's `spent`; see [`super::state::Checkpoint::resume_budget`]).
    fn paid(&self) -> super::budget::Spent {
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
    async fn checkpoint(&mut self) {
        self.state.spent = self.budget.spent.clone();
        self.write_checkpoint(true).await;
    }

    /// Runs iterations until a budget stops the search. Returns the stop reason. Candidates the
    /// last generation added are not announced (the original never scored them either): the
    /// `finished` result lists them with their scores.
    pub async fn run(&mut self) -> Result<StopReason, OptimizeError> {
        self.iterate().await
    }

    async fn iterate(&mut self) -> Result<StopReason, OptimizeError> {
        loop {
            // What a human queued (`SteerJob`) joins the state before it is checkpointed; a run
            // that is halting leaves it queued for the next run.
            if !self.ctx.halt.is_cancelled() {
                match self.adopt_steering().await {
                    Ok(()) => {}
                    Err(Halt::Budget(reason)) => return Ok(reason),
                    Err(Halt::Error(err)) => return Err(err),
                }
            }
            self.checkpoint().await;
            // The safe point: the checkpoint just written is exactly where a resume starts.
            if self.ctx.halt.is_cancelled() {
                return Err(OptimizeError::Halted);
            }
            let full_merge = (MERGE_SUBSAMPLE + self.val.len()) as u64;
            let merge_due =
                self.merge_due() && (self.cfg.legacy || self.budget.can_afford(full_merge));
            let needed = if merge_due {
                full_merge
            } else if self.cfg.legacy {
                (2 * self.cfg.minibatch.min(self.train.len()) + self.val.len()) as u64
            } else {
                // A parent and a child on one example: the minibatch shrinks to what is left
                // and an accepted child is validated on the ids that still fit.
                2
            };
            if let Some(reason) = self
                .budget
                .stop_before_iteration(self.state.generation, needed)
            {
                return Ok(reason);
            }
            if self.state.idle_iterations >= self.idle_limit() {
                return Ok(StopReason::Converged);
            }
            let started = std::time::Instant::now();
            let outcome = self.iteration(merge_due).await;
            // A replayed iteration is over: what it did not ask for again is a plain cache entry.
            self.replay.clear();
            self.budget.observe_iteration(started.elapsed());
            match outcome {
                Ok(Outcome::Progress) => self.state.idle_iterations = 0,
                Ok(Outcome::Idle) => self.state.idle_iterations += 1,
                Err(Halt::Budget(reason)) => return Ok(reason),
                Err(Halt::Error(err)) => return Err(err),
            }
            self.state.generation += 1;
            self.emit_budget().await.map_err(|h| match h {
                Halt::Error(e) => e,
                Halt::Budget(_) => OptimizeError::Stopped,
            })?;
        }
    }

    pub async fn emit_budget(&self) -> Result<(), Halt> {
        self.emit(EventPayload::BudgetProgress(
            self.budget.usage(self.state.generation),
        ))
        .await
    }

    /// Idle iterations in a row after which the search has converged: two epochs of minibatches
    /// (at least 10) found nothing new to evaluate.
    fn idle_limit(&self) -> u32 {
        let per_epoch = self.train.len().div_ceil(self.cfg.minibatch.max(1));
        (2 * per_epoch).max(10) as u32
    }

    fn merge_due(&self) -> bool {
        self.cfg.use_merge
            && self.state.merges_due > 0
            && self.state.last_accepted
            && self.state.merge_attempts < self.cfg.max_merges
    }

    /// One iteration, in its own span (`phase`: `merge` or `reflective_mutation`); the
    /// selection, minibatch, reflection and validation below are child spans.
    #[tracing::instrument(
        name = "iteration",
        skip_all,
        fields(
            otel.name = "iteration",
            mode = "gepa",
            generation = self.state.generation + 1,
            phase = tracing::field::Empty,
        )
    )]
    async fn iteration(&mut self, merge_due: bool) -> Result<Outcome, Halt> {
        let generation = self.state.generation + 1;
        self.lessons_sent = false;
        self.emit(EventPayload::GenerationStarted(GenerationStarted {
            generation,
            budget: self.budget.usage(self.state.generation),
            r#gen: generation,
            population_size: self.state.candidates.len() as u32,
        }))
        .await?;
        // The original scores the population at the start of a generation: candidates added by
        // the previous one are announced here, before this generation's reflection.
        self.announce(generation).await?;
        let outcome = if merge_due && self.try_merge(generation).await? {
            tracing::Span::current().record("phase", "merge");
            self.state.last_accepted = false;
            Outcome::Progress
        } else {
            tracing::Span::current().record("phase", "reflective_mutation");
            self.state.last_accepted = false;
            self.reflective_round(generation).await?
        };
        self.emit_lessons().await?;
        Ok(outcome)
    }

    pub(super) fn select_parent(&mut self) -> usize {
        self.sync_fronts();
        if self.fronts.is_current(&self.state.val_scores) {
            let index = &self.fronts;
            return match self.cfg.selector {
                CandidateSelector::Pareto => index.sample_pareto(&mut self.state.rng),
                CandidateSelector::CurrentBest => index.best(),
                CandidateSelector::EpsilonGreedy => {
                    index.epsilon_greedy(EPSILON, &mut self.state.rng)
                }
            };
        }
        let scores = &self.state.val_scores;
        match self.cfg.selector {
            CandidateSelector::Pareto => frontier::sample_pareto(scores, &mut self.state.rng),
            CandidateSelector::CurrentBest => frontier::best(scores),
            CandidateSelector::EpsilonGreedy => {
                frontier::epsilon_greedy(scores, EPSILON, &mut self.state.rng)
            }
        }
    }
}
