//! The GEPA loop (paper Algorithm 1, reference `GEPAEngine.run`), with hard budgets and a
//! checkpoint at the top of every iteration. One `Engine` runs one job.

use std::sync::Arc;

use super::budget::{Budget, StopReason};
use super::evaluator::{Evaluator, render_system};
use super::frontier;
use super::reflection::{self, Record};
use super::state::{
    Candidate, CheckpointRef, EvalRecord, GepaState, Memo, Origin, cache_key, candidate_hash, fnv1a,
};
use crate::domain::gepa::{
    Acceptance, CandidateProposed, CandidateScored, CandidateSelector, CandidateVerdict,
    FrontierEntry, FrontierUpdated, GenerationStarted, JudgeScored, LessonsUpdated,
    MinibatchEvaluated, ParentSelected, ReflectionFinished, ReflectionStarted, ValidationPolicy,
};
use crate::domain::{EventPayload, Example, ObjectiveScores};
use crate::optimizer::{JobContext, OptimizeError};
use crate::provider::{ChatMessage, CompletionRequest, ModelProvider, ProviderError};

/// Validation examples a merge child is first judged on.
pub const MERGE_SUBSAMPLE: usize = 5;
/// A minibatch where the parent scores at least this everywhere is skipped.
const PERFECT_SCORE: f64 = 1.0;
/// Lessons kept in the result.
const MAX_LESSONS: usize = 20;
/// Epsilon of the epsilon-greedy selector.
const EPSILON: f64 = 0.1;
/// Rejected proposals kept for reflection memory (per job; the prompt shows those of the parent
/// and component being reflected on).
const MAX_REJECTED: usize = 24;
/// Rejected proposals shown in one reflection prompt.
const MEMORY_IN_PROMPT: usize = 3;

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
    /// The state at the top of the current iteration, as checkpointed.
    pub top: serde_json::Value,
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
    #[tracing::instrument(
        name = "evaluate",
        skip_all,
        fields(
            otel.name = if on_val { "evaluate" } else { "minibatch" },
            set = if on_val { "val" } else { "train" },
            examples = indices.len(),
            misses = tracing::field::Empty,
        )
    )]
    pub async fn evaluate(
        &mut self,
        candidate: &Candidate,
        on_val: bool,
        indices: &[usize],
    ) -> Result<Vec<EvalRecord>, Halt> {
        let hash = candidate_hash(candidate);
        let set = if on_val { &self.val } else { &self.train };
        let keys: Vec<String> = indices
            .iter()
            .map(|i| cache_key(hash, &set[*i].id))
            .collect();
        let mut misses: Vec<usize> = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            if !self.memo.cache.contains_key(key) && !misses.iter().any(|m| keys[*m] == *key) {
                misses.push(k);
            }
        }
        tracing::Span::current().record("misses", misses.len());
        self.budget
            .reserve(misses.len() as u64)
            .map_err(Halt::Budget)?;
        let system = render_system(candidate);
        let examples: Vec<&Example> = misses.iter().map(|k| &set[indices[*k]]).collect();
        // A halt (pause, hand-over) drops the calls in flight: the memo saved so far is what
        // a resume replays, so only these are paid twice.
        let rollouts = tokio::select! {
            rollouts = self.eval.batch(&system, &examples) => rollouts,
            _ = self.ctx.halt.cancelled() => return Err(Halt::Error(OptimizeError::Halted)),
        }
        .map_err(|e| Halt::Error(provider_failed(&e)))?;
        let mut judged = Vec::new();
        for (k, rollout) in misses.iter().zip(rollouts) {
            self.budget.record(rollout.cost_usd, rollout.tokens);
            if let Some(score) = rollout.judge_score {
                judged.push((set[indices[*k]].id.clone(), score));
            }
            self.memo.cache.insert(keys[*k].clone(), rollout.record);
        }
        if !misses.is_empty() {
            self.save().await;
        }
        for (example_id, score) in judged {
            self.emit(EventPayload::JudgeScored(JudgeScored { example_id, score }))
                .await?;
        }
        Ok(keys
            .iter()
            .map(|k| {
                self.memo.cache.get(k).cloned().unwrap_or(EvalRecord {
                    output: String::new(),
                    score: 0.0,
                    feedback: String::new(),
                })
            })
            .collect())
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

    /// Validation ids of `order` whose uncached rollouts of `candidate` fit the budget, in order.
    fn fitting(&self, candidate: &Candidate, order: &[usize]) -> Vec<usize> {
        if self.budget.spending_stop().is_some() {
            return Vec::new();
        }
        let Some(mut left) = self.budget.metric_calls_left() else {
            return order.to_vec();
        };
        let hash = candidate_hash(candidate);
        let mut out = Vec::new();
        for k in order {
            let cached = self
                .memo
                .cache
                .contains_key(&cache_key(hash, &self.val[*k].id));
            if !cached {
                if left == 0 {
                    continue;
                }
                left -= 1;
            }
            out.push(*k);
        }
        out
    }

    /// Scores an accepted child on the validation set under the job's policy. Returns its
    /// per-instance scores and the indices left unscored (estimated by the best parent's scores),
    /// or `None` when the child lost to that parent on the ids it was scored on.
    pub(super) async fn validate_child(
        &mut self,
        child: &Candidate,
        parents: &[usize],
    ) -> Result<Option<(Vec<f64>, Vec<usize>)>, Halt> {
        let n = self.val.len();
        let all: Vec<usize> = (0..n).collect();
        if self.cfg.legacy
            || self.fitting(child, &all).len() == n && self.cfg.validation == ValidationPolicy::Full
        {
            return Ok(Some((self.validate(child).await?, Vec::new())));
        }
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
        let mut order = all;
        self.state.rng.shuffle(&mut order);
        let mut scored: Vec<Option<f64>> = vec![None; n];
        let loses = |scored: &[Option<f64>], state: &GepaState| {
            let (mut child_sum, mut parent_sum) = (0.0, 0.0);
            for (k, s) in scored.iter().enumerate() {
                if let Some(s) = s {
                    child_sum += s;
                    parent_sum += state.val_scores[reference][k];
                }
            }
            child_sum < parent_sum
        };
        if self.cfg.validation == ValidationPolicy::Subsample {
            let size = n.div_ceil(5).max(MERGE_SUBSAMPLE).min(n);
            let mut sub = self.fitting(child, &order[..size]);
            sub.sort_unstable();
            if sub.is_empty() {
                return Ok(None);
            }
            for (k, r) in sub.iter().zip(self.evaluate(child, true, &sub).await?) {
                scored[*k] = Some(r.score);
            }
            if loses(&scored, &self.state) {
                return Ok(None);
            }
        }
        let rest: Vec<usize> = order.into_iter().filter(|k| scored[*k].is_none()).collect();
        let mut rest = self.fitting(child, &rest);
        rest.sort_unstable();
        if !rest.is_empty() {
            for (k, r) in rest.iter().zip(self.evaluate(child, true, &rest).await?) {
                scored[*k] = Some(r.score);
            }
        }
        if scored.iter().all(Option::is_none) {
            return Ok(None);
        }
        let missing: Vec<usize> = (0..n).filter(|k| scored[*k].is_none()).collect();
        if !missing.is_empty() && loses(&scored, &self.state) {
            return Ok(None);
        }
        let scores = (0..n)
            .map(|k| scored[k].unwrap_or(self.state.val_scores[reference][k]))
            .collect();
        Ok(Some((scores, missing)))
    }

    pub fn frontier_entries(&self) -> Vec<FrontierEntry> {
        frontier_entries(&self.state)
    }

    pub fn best(&self) -> usize {
        frontier::best(&self.state.val_scores)
    }

    /// Events after a candidate joined the pool.
    pub async fn announce(&self, id: usize) -> Result<(), Halt> {
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
        }))
        .await?;
        let best = self.best();
        self.emit(EventPayload::FrontierUpdated(FrontierUpdated {
            frontier: self.frontier_entries(),
            best_id: best as u32,
            best_score: self.state.aggregate(best),
        }))
        .await?;
        self.emit(EventPayload::Selected {
            candidate: self.state.candidates[best]
                .get(crate::domain::gepa::DEFAULT_COMPONENT)
                .cloned()
                .unwrap_or_default(),
            scores: ObjectiveScores::default(),
        })
        .await
    }

    /// Writes the checkpoint: top-of-iteration state, memo, spend.
    pub async fn save(&self) {
        // The checkpoint must not get ahead of the event log: on resume, ids continue after the
        // last stored event, and every event before this point must be among them.
        if self.ctx.events.flush().await.is_err() {
            return;
        }
        let checkpoint = CheckpointRef {
            state: &self.top,
            memo: &self.memo,
            spent: &self.budget.spent,
        };
        match serde_json::to_value(&checkpoint) {
            Ok(value) => {
                if let Err(err) = self
                    .ctx
                    .store
                    .put_checkpoint(&self.ctx.job_id, &value)
                    .await
                {
                    tracing::warn!(job_id = %self.ctx.job_id, error = %err, "checkpoint not saved");
                }
            }
            Err(err) => tracing::warn!(error = %err, "checkpoint not serialisable"),
        }
    }

    /// Snapshots the state at the top of an iteration and saves it.
    async fn checkpoint(&mut self) {
        self.state.spent = self.budget.spent.clone();
        match serde_json::to_value(&self.state) {
            Ok(top) => self.top = top,
            Err(err) => tracing::warn!(error = %err, "state not serialisable"),
        }
        self.save().await;
    }

    /// Runs iterations until a budget stops the search. Returns the stop reason.
    pub async fn run(&mut self) -> Result<StopReason, OptimizeError> {
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
            match self.iteration(merge_due).await {
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
        self.emit(EventPayload::GenerationStarted(GenerationStarted {
            generation,
            budget: self.budget.usage(self.state.generation),
        }))
        .await?;
        if merge_due && self.try_merge(generation).await? {
            tracing::Span::current().record("phase", "merge");
            self.state.last_accepted = false;
            return Ok(Outcome::Progress);
        }
        tracing::Span::current().record("phase", "reflective_mutation");
        self.state.last_accepted = false;
        self.reflective_mutation(generation).await
    }

    fn select_parent(&mut self) -> usize {
        let scores = &self.state.val_scores;
        match self.cfg.selector {
            CandidateSelector::Pareto => frontier::sample_pareto(scores, &mut self.state.rng),
            CandidateSelector::CurrentBest => frontier::best(scores),
            CandidateSelector::EpsilonGreedy => {
                frontier::epsilon_greedy(scores, EPSILON, &mut self.state.rng)
            }
        }
    }

    async fn reflective_mutation(&mut self, generation: u32) -> Result<Outcome, Halt> {
        let parent =
            tracing::info_span!("select", otel.name = "select", selector = ?self.cfg.selector)
                .in_scope(|| self.select_parent());
        self.emit(EventPayload::ParentSelected(ParentSelected {
            generation,
            candidate_id: parent as u32,
            selector: serde_json::to_value(self.cfg.selector)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            score: self.state.aggregate(parent),
        }))
        .await?;
        let mut size = self.cfg.minibatch.min(self.train.len()).max(1);
        if let Some(left) = self.budget.metric_calls_left() {
            size = size.min((left / 2).max(1) as usize);
        }
        let batch = self
            .state
            .sampler
            .next_batch(self.train.len(), size, &mut self.state.rng);
        let example_ids: Vec<String> = batch.iter().map(|i| self.train[*i].id.clone()).collect();
        let parent_candidate = self.state.candidates[parent].clone();
        let parent_records = self.evaluate(&parent_candidate, false, &batch).await?;
        let parent_scores: Vec<f64> = parent_records.iter().map(|r| r.score).collect();
        if parent_scores.iter().all(|s| *s >= PERFECT_SCORE) {
            self.emit(EventPayload::MinibatchEvaluated(MinibatchEvaluated {
                generation,
                candidate_id: parent as u32,
                example_ids,
                parent_scores,
                child_scores: Vec::new(),
            }))
            .await?;
            return Ok(Outcome::Idle);
        }
        let n = self.cfg.components.len().max(1);
        let component = self.cfg.components[self.state.next_component[parent] % n].clone();
        self.state.next_component[parent] += 1;
        let feedback = self.feedback_for(&component);
        self.emit(EventPayload::ReflectionStarted(ReflectionStarted {
            generation,
            candidate_id: parent as u32,
            component: component.clone(),
            feedback: feedback.clone(),
        }))
        .await?;
        let current = parent_candidate
            .get(&component)
            .cloned()
            .unwrap_or_default();
        let memory: Vec<super::state::Rejected> = if self.cfg.legacy {
            Vec::new()
        } else {
            let mut recent: Vec<_> = self
                .state
                .rejected
                .iter()
                .rev()
                .filter(|r| r.parent == parent && r.component == component)
                .take(MEMORY_IN_PROMPT)
                .cloned()
                .collect();
            recent.reverse();
            recent
        };
        let (rule_text, prompt, lessons) = {
            let records: Vec<Record<'_>> = batch
                .iter()
                .zip(&parent_records)
                .map(|(i, eval)| Record {
                    example: &self.train[*i],
                    eval,
                })
                .collect();
            let lessons = reflection::lessons(&records);
            match &self.cfg.reflection {
                None => (
                    Some(reflection::rule_based(&current, &records)),
                    None,
                    lessons,
                ),
                Some(_) => (
                    None,
                    Some(super::steer::with_feedback(
                        reflection::with_memory(
                            reflection::reflection_prompt(&current, &records),
                            &memory,
                        ),
                        &feedback,
                    )),
                    lessons,
                ),
            }
        };
        let rule_based = rule_text.is_some();
        let new_text = match (rule_text, prompt, self.cfg.reflection.clone()) {
            (Some(text), _, _) => text,
            (None, Some(prompt), Some((provider, model))) => {
                let answer = self.reflect(provider, model, prompt).await?;
                let text = reflection::parse_fenced(&answer);
                if text.is_empty() {
                    current.clone()
                } else {
                    text
                }
            }
            _ => current.clone(),
        };
        self.emit(EventPayload::ReflectionFinished(ReflectionFinished {
            generation,
            component: component.clone(),
            rule_based,
        }))
        .await?;
        self.emit(EventPayload::CandidateProposed(CandidateProposed {
            generation,
            parent_ids: vec![parent as u32],
            component: component.clone(),
            text: new_text.clone(),
        }))
        .await?;
        let proposed_component = component.clone();
        let proposed_text = new_text.clone();
        let mut child = parent_candidate.clone();
        child.insert(component, new_text);
        let repeat = !self.state.proposed.insert(candidate_hash(&child));

        let child_records = self.evaluate(&child, false, &batch).await?;
        let child_scores: Vec<f64> = child_records.iter().map(|r| r.score).collect();
        let (before, after) = (
            parent_scores.iter().sum::<f64>(),
            child_scores.iter().sum::<f64>(),
        );
        self.emit(EventPayload::MinibatchEvaluated(MinibatchEvaluated {
            generation,
            candidate_id: parent as u32,
            example_ids,
            parent_scores,
            child_scores,
        }))
        .await?;
        // A child whose text is already in the pool (the parent itself or any earlier
        // candidate) adds nothing: its evaluations come from the cache, so accepting it again
        // would count as progress for free and the no-progress stop would never fire.
        let already_in_pool = self.state.candidates.contains(&child);
        let accepted = match self.cfg.acceptance {
            Acceptance::StrictImprovement => after > before,
            Acceptance::ImprovementOrEqual => after >= before,
        } && !already_in_pool;
        let remember = |state: &mut GepaState, before: f64, after: f64| {
            if !already_in_pool {
                state.rejected.push(super::state::Rejected {
                    parent,
                    component: proposed_component.clone(),
                    text: proposed_text.clone(),
                    before,
                    after,
                    size: batch.len(),
                });
                let overflow = state.rejected.len().saturating_sub(MAX_REJECTED);
                state.rejected.drain(..overflow);
            }
        };
        if !accepted {
            remember(&mut self.state, before, after);
            self.emit(EventPayload::CandidateRejected(CandidateVerdict {
                generation,
                candidate_id: None,
                parent_ids: vec![parent as u32],
                before,
                after,
            }))
            .await?;
            let idle = repeat || already_in_pool;
            return Ok(if idle {
                Outcome::Idle
            } else {
                Outcome::Progress
            });
        }
        let Some((scores, missing)) = self.validate_child(&child, &[parent]).await? else {
            remember(&mut self.state, before, after);
            self.emit(EventPayload::CandidateRejected(CandidateVerdict {
                generation,
                candidate_id: None,
                parent_ids: vec![parent as u32],
                before,
                after,
            }))
            .await?;
            return Ok(Outcome::Progress);
        };
        let id = self.state.add(
            child,
            vec![parent],
            Origin::Reflection,
            scores,
            self.budget.spent.metric_calls,
        );
        self.state.set_imputed(id, missing);
        self.emit(EventPayload::CandidateAccepted(CandidateVerdict {
            generation,
            candidate_id: Some(id as u32),
            parent_ids: vec![parent as u32],
            before,
            after,
        }))
        .await?;
        self.announce(id).await?;
        if !lessons.is_empty() {
            for lesson in lessons {
                if !self.state.lessons.contains(&lesson) {
                    self.state.lessons.push(lesson);
                }
            }
            let overflow = self.state.lessons.len().saturating_sub(MAX_LESSONS);
            self.state.lessons.drain(..overflow);
            self.emit(EventPayload::LessonsUpdated(LessonsUpdated {
                lessons: self.state.lessons.clone(),
            }))
            .await?;
        }
        if self.cfg.use_merge && self.state.merge_attempts < self.cfg.max_merges {
            self.state.merges_due += 1;
        }
        self.state.last_accepted = true;
        Ok(Outcome::Progress)
    }

    #[tracing::instrument(name = "reflect", skip_all, fields(otel.name = "reflect", model = %model))]
    async fn reflect(
        &mut self,
        provider: Arc<dyn ModelProvider>,
        model: String,
        prompt: String,
    ) -> Result<String, Halt> {
        let key = format!("{:016x}", fnv1a(&[&model, &prompt]));
        if let Some(answer) = self.memo.reflections.get(&key) {
            return Ok(answer.clone());
        }
        if let Some(reason) = self.budget.spending_stop() {
            return Err(Halt::Budget(reason));
        }
        let request = CompletionRequest {
            model: model.clone(),
            messages: vec![ChatMessage::user(prompt)],
            temperature: Some(1.0),
            max_tokens: None,
            seed: None,
        };
        let completion = tokio::select! {
            completion = provider.complete(request) => completion,
            _ = self.ctx.halt.cancelled() => return Err(Halt::Error(OptimizeError::Halted)),
        }
        .map_err(|e| Halt::Error(provider_failed(&e)))?;
        let cost = self.eval.prices.cost(&model, completion.usage);
        self.budget.record(
            cost,
            completion.usage.prompt_tokens + completion.usage.completion_tokens,
        );
        self.memo.reflections.insert(key, completion.text.clone());
        self.save().await;
        Ok(completion.text)
    }
}
