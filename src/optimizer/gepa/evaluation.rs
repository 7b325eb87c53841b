//! Evaluation inside the GEPA loop: rollouts of candidates on minibatches and the validation
//! set, served from the memo where already paid for and reserved against the budget before
//! they are dispatched (the hard budget), and the staged validation of accepted children.

use std::sync::Arc;

use super::engine::{Engine, Halt, MERGE_SUBSAMPLE, add_cost, provider_failed};
use super::evaluator::{BatchStop, render_system};
use super::state::{CacheKey, Candidate, EvalRecord, GepaState, candidate_hash};
use crate::domain::gepa::{JudgeScored, ProposalCost, ValidationPolicy};
use crate::domain::{EventPayload, Example};
use crate::optimizer::OptimizeError;

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

impl Engine<'_> {
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
}
