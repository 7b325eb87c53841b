//! The original service's `mode: "default"` optimizer: a cheap, deterministic loop with no
//! dataset. Each round mutates the current base word by word, recombines the previous round's
//! ranked pool, keeps the Pareto v1 front over the requested objectives, lets the judge rank it
//! (Pareto v2) or run a tournament, and reports the chosen candidate's scores; it stops early
//! after `early_stop_patience` rounds without a gain in the score sum.
//!
//! Submodules: [`mutation`] (operators, crossover), [`pareto_v1`] (front, dominance, tie-break),
//! [`objectives`] (brevity, diversity, coverage), [`judge`] (stub and model judge, tournament),
//! [`retrieval`] (TF-IDF over stored examples). The runtime owns `started`, the terminal event,
//! the deadline (`MAX_WALL_TIME_S`: past it the job fails `deadline_exceeded`) and
//! cancellation; this loop emits `mutation`, `progress`, `selected` per round and possibly
//! `early_stop`, and pauses `DEFAULT_MODE_ITERATION_DELAY_MS` after each round as the original
//! did.

pub mod judge;
pub mod mutation;
pub mod objectives;
pub mod pareto_v1;
pub mod retrieval;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::Instrument;

use self::judge::{Judge, JudgeChoice, StubReference};
use self::objectives::ObjectiveSet;
use super::{JobContext, OptimizeError, Optimizer, Stopped};
use crate::domain::job::DefaultResult;
use crate::domain::{EventPayload, Example, JobResult, Objective, ObjectiveScores};
use crate::provider::ModelProvider;

/// Work over fewer bytes of text than this runs inline (tens of microseconds at most); bigger
/// work goes to the blocking pool so a 20 000-character prompt never holds an async worker.
const INLINE_BYTES: usize = 16 * 1024;

/// The settings default-mode jobs read (the server's defaults of a request's knobs and its
/// limits); built where the app is wired (`Settings::default_mode`).
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultModeConfig {
    /// `MAX_EXAMPLES_PER_JOB`: inline plus retrieved examples a job keeps.
    pub max_examples_per_job: usize,
    /// `RETRIEVAL_MAX_EXAMPLES`: stored examples retrieved per job.
    pub retrieval_max_examples: usize,
    /// `DETERMINISTIC_SEED`: the seed of a request that names none.
    pub seed: i64,
    /// `TARGET_MODEL_DEFAULT`.
    pub target_model: String,
    /// `EVALUATION_RUBRIC_DEFAULT` (never empty: the original's default when unset).
    pub rubric: String,
    /// `DEFAULT_MODE_ITERATION_DELAY_MS`, after every iteration.
    pub iteration_delay: Duration,
    /// `TOURNAMENT_SIZE`, `RECOMBINATION_RATE`, `EARLY_STOP_PATIENCE`: a request's defaults.
    pub tournament_size: u32,
    pub recombination_rate: f64,
    pub early_stop_patience: u32,
    /// `MAX_MUTATIONS_PER_ROUND`, `MAX_CANDIDATES`, `PARETO_TOPN`, `ENABLE_PARETO_V2`.
    pub max_mutations: usize,
    pub max_candidates: usize,
    pub top_n: usize,
    pub pareto_v2: bool,
    /// The stub judge or a model (`USE_JUDGE_STUB`, `JUDGE_PROVIDER`, `JUDGE_MODEL_ID`,
    /// `JUDGE_TIMEOUT_S`).
    pub judge: JudgeChoice,
}

/// The cheap deterministic mutate/rank loop.
pub struct DefaultOptimizer {
    /// The model the judge asks when the configuration turns the stub judge off.
    judge_provider: Arc<dyn ModelProvider>,
    config: DefaultModeConfig,
}

impl DefaultOptimizer {
    pub fn new(judge_provider: Arc<dyn ModelProvider>, config: DefaultModeConfig) -> Self {
        DefaultOptimizer {
            judge_provider,
            config,
        }
    }
}

/// Everything fixed for one job, resolved from its spec and the configuration.
struct Plan {
    task: String,
    examples: Vec<Example>,
    objectives: Arc<ObjectiveSet>,
    judge: Judge,
    seed: i64,
    target_model: String,
    rubric: Option<String>,
    tournament_size: usize,
    recombination_rate: f64,
    patience: u32,
    max_mutations: usize,
    max_candidates: usize,
    top_n: usize,
    pareto_v2: bool,
    /// `DEFAULT_MODE_ITERATION_DELAY_MS` after every iteration.
    pause: Duration,
}

impl Plan {
    async fn resolve(
        ctx: &JobContext,
        judge_provider: Arc<dyn ModelProvider>,
        config: &DefaultModeConfig,
    ) -> Result<Plan, OptimizeError> {
        let spec = &ctx.spec;
        let task = if spec.prompt.is_empty() {
            spec.examples
                .first()
                .map(|e| e.input.clone())
                .unwrap_or_default()
        } else {
            spec.prompt.clone()
        };
        let mut examples = spec.examples.clone();
        examples.truncate(config.max_examples_per_job);
        if examples.len() < config.max_examples_per_job {
            let found =
                retrieval::retrieve(ctx.examples.as_ref(), &task, config.retrieval_max_examples)
                    .await;
            examples.extend(found);
            examples.truncate(config.max_examples_per_job);
        }
        // An empty list means all three, as the original's `objectives or [...]`.
        let mut wanted = spec.objectives();
        if wanted.is_empty() {
            wanted = Objective::ALL.to_vec();
        }
        let bytes = task.len() + examples.iter().map(example_bytes).sum::<usize>();
        let (objectives, reference) = {
            let (task, examples) = (task.clone(), examples.clone());
            off_workers_if_big(bytes, move || {
                (
                    ObjectiveSet::new(wanted, &examples),
                    StubReference::new(&task, &examples),
                )
            })
            .await?
        };
        Ok(Plan {
            objectives: Arc::new(objectives),
            judge: Judge::new(&config.judge, judge_provider, reference),
            task,
            examples,
            seed: spec.seed.unwrap_or(config.seed),
            target_model: spec
                .target_model_id
                .clone()
                .unwrap_or_else(|| config.target_model.clone()),
            // Never empty: the request's, else `EVALUATION_RUBRIC_DEFAULT` (the original's).
            rubric: Some(
                spec.evaluation_rubric
                    .clone()
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| config.rubric.clone()),
            ),
            pause: config.iteration_delay,
            tournament_size: spec.tournament_size.unwrap_or(config.tournament_size) as usize,
            recombination_rate: spec.recombination_rate.unwrap_or(config.recombination_rate),
            patience: spec
                .early_stop_patience
                .unwrap_or(config.early_stop_patience)
                .max(1),
            max_mutations: config.max_mutations,
            max_candidates: config.max_candidates.max(1),
            top_n: config.top_n.max(1),
            pareto_v2: config.pareto_v2,
        })
    }

    /// The CPU part of a round: mutants, children, the Pareto v1 front and, when the stub judge
    /// ranks (Pareto v2), the ranking too. Inline for small inputs, on the blocking pool for big
    /// ones.
    async fn propose(
        &self,
        base: &str,
        pool: &[String],
        seed: i64,
    ) -> Result<Proposals, OptimizeError> {
        let bytes =
            base.len() * (2 + self.max_mutations) + pool.iter().map(String::len).sum::<usize>();
        let round = Round {
            base: base.to_string(),
            pool: pool.to_vec(),
            seed,
            max_mutations: self.max_mutations,
            rate: self.recombination_rate,
            max_candidates: self.max_candidates,
            objectives: self.objectives.clone(),
            stub_rank: self.pareto_v2 && matches!(self.judge, Judge::Stub(_)),
        };
        off_workers_if_big(bytes, move || round.run()).await
    }
}

fn example_bytes(e: &Example) -> usize {
    e.input.len() + e.expected.as_ref().map_or(0, String::len)
}

/// Runs `work` inline when `bytes` is small (microseconds of work), else on the blocking pool
/// so big prompts never hold an async worker.
async fn off_workers_if_big<T: Send + 'static>(
    bytes: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, OptimizeError> {
    if bytes < INLINE_BYTES {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| OptimizeError::Failed {
            code: "internal_error".into(),
            message: format!("scoring task failed: {err}"),
        })
}

/// Inputs of one round's CPU work, owned so it can move to the blocking pool.
struct Round {
    base: String,
    pool: Vec<String>,
    seed: i64,
    max_mutations: usize,
    rate: f64,
    max_candidates: usize,
    objectives: Arc<ObjectiveSet>,
    stub_rank: bool,
}

/// What a round's CPU work produced.
struct Proposals {
    mutants: usize,
    front: Vec<String>,
    /// The stub judge's ranking of `front`, when it was computed here.
    ranked: Option<Vec<String>>,
}

impl Round {
    fn run(self) -> Proposals {
        let mutants = mutation::mutate(&self.base, self.max_mutations, self.seed);
        let children = mutation::recombine(&self.pool, self.rate, self.seed);
        let mut candidates: Vec<String> = Vec::with_capacity(1 + mutants.len() + children.len());
        for c in std::iter::once(self.base)
            .chain(mutants.iter().cloned())
            .chain(children)
        {
            if !c.is_empty() && !candidates.contains(&c) {
                candidates.push(c);
            }
        }
        let objectives = &self.objectives;
        let front = pareto_v1::front(&candidates, self.max_candidates, |t| objectives.vector(t));
        Proposals {
            mutants: mutants.len(),
            ranked: self.stub_rank.then(|| judge::stub_rank(&front)),
            front,
        }
    }
}

#[async_trait]
impl Optimizer for DefaultOptimizer {
    async fn run(&self, ctx: JobContext) -> Result<JobResult, OptimizeError> {
        let plan = Plan::resolve(&ctx, self.judge_provider.clone(), &self.config).await?;
        let judge = &plan.judge;
        let objectives = plan.objectives.objectives().to_vec();
        let rubric = plan.rubric.as_deref();

        let mut base = ctx.spec.prompt.clone();
        let mut best = base.clone();
        let mut best_scores: Option<ObjectiveScores> = None;
        let mut best_total = f64::NEG_INFINITY;
        let mut stale = 0u32;
        let mut pool: Vec<String> = Vec::new();

        for i in 0..ctx.spec.iterations {
            if ctx.cancel.is_cancelled() {
                return Err(Stopped.into());
            }
            let seed = plan.seed.wrapping_add(i64::from(i));
            let span = tracing::info_span!(
                "iteration",
                otel.name = "iteration",
                mode = "default",
                iteration = i + 1
            );
            let round = async {
                let proposals = plan.propose(&base, &pool, seed).await?;
                ctx.events
                    .emit(EventPayload::Mutation {
                        count: proposals.mutants as u32,
                    })
                    .await?;

                let mut ranked = match proposals.ranked {
                    Some(ranked) => ranked,
                    None if plan.pareto_v2 => {
                        judge
                            .rank(
                                &plan.task,
                                &proposals.front,
                                &objectives,
                                rubric,
                                &ctx.cancel,
                            )
                            .await?
                    }
                    None => {
                        let m = (plan.tournament_size * 2).min(proposals.front.len());
                        if m > 1 {
                            judge
                                .tournament(
                                    &plan.task,
                                    &proposals.front[..m],
                                    plan.tournament_size,
                                    &ctx.cancel,
                                )
                                .await?
                        } else {
                            proposals.front
                        }
                    }
                };
                ranked.truncate(plan.top_n);
                let chosen = ranked.first().cloned().unwrap_or_else(|| base.clone());

                let mut scores = plan.objectives.scores(&chosen);
                scores.judge = judge
                    .scores(
                        &plan.task,
                        &chosen,
                        &plan.examples,
                        &objectives,
                        rubric,
                        &ctx.cancel,
                    )
                    .await?;
                ctx.events
                    .emit(EventPayload::Progress {
                        iteration: i + 1,
                        proposal: chosen.clone(),
                        target_model: plan.target_model.clone(),
                        rubric: plan.rubric.clone(),
                        scores: scores.clone(),
                    })
                    .await?;
                ctx.events
                    .emit(EventPayload::Selected {
                        candidate: chosen.clone(),
                        scores: scores.clone(),
                    })
                    .await?;
                Ok::<_, OptimizeError>((chosen, ranked, scores))
            };
            let (chosen, ranked, scores) = round.instrument(span).await?;

            let total = scores.total();
            if total > best_total {
                best_total = total;
                best = chosen.clone();
                best_scores = Some(scores);
                stale = 0;
            } else {
                stale += 1;
                if stale >= plan.patience {
                    ctx.events
                        .emit(EventPayload::EarlyStop { best: best.clone() })
                        .await?;
                    break;
                }
            }
            base = chosen;
            pool = ranked;
            // The original's pacing (`asyncio.sleep(0.05)` after each iteration): clients rely
            // on a fresh job still running when they cancel it, and on pings in the gaps.
            if !plan.pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(plan.pause) => {}
                    _ = ctx.cancel.cancelled() => return Err(Stopped.into()),
                }
            }
        }

        // The best candidate's scores as reported when it was chosen (the same inputs would give
        // the same stub scores; a model judge is not asked twice).
        let scores = match best_scores {
            Some(scores) => scores,
            None => {
                let mut scores = plan.objectives.scores(&best);
                scores.judge = judge
                    .scores(
                        &plan.task,
                        &best,
                        &plan.examples,
                        &objectives,
                        rubric,
                        &ctx.cancel,
                    )
                    .await?;
                scores
            }
        };
        Ok(JobResult::Default(DefaultResult {
            proposal: best,
            lessons: Vec::new(),
            scores,
            target_model: plan.target_model,
            rubric: plan.rubric,
        }))
    }
}

#[cfg(test)]
mod tests;
