//! The GEPA loop (paper Algorithm 1, reference `GEPAEngine.run`), with hard budgets and a
//! checkpoint at the top of every iteration. One `Engine` runs one job.

use std::sync::Arc;

use super::budget::{Budget, StopReason};
use super::evaluator::Evaluator;
use super::frontier;
use super::state::{CheckpointJournal, ExampleKeys, GepaState, Memo};
use crate::domain::gepa::{
    Acceptance, CandidateScored, CandidateSelector, FrontierEntry, FrontierUpdated,
    GenerationStarted, LessonsUpdated, ProposalCost, ValidationPolicy,
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

pub use super::evaluation::ValidatedChild;

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
