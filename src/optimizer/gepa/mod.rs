//! `mode: "gepa"`: reflective prompt evolution with per-instance Pareto selection and
//! system-aware merge, faithful to the paper and the reference library, with hard budgets,
//! typed progress events and exact resume from checkpoints.
//!
//! - [`state`]: the engine's state (pool, lineage, scores, RNG, sampler, counters).
//! - [`memo`]: every answer paid for (rollouts by compact key, reflections), with its cost.
//! - [`checkpoint`]: how state and memo are stored: a base, incremental parts, the journal,
//!   and where a resumed run's budget starts.
//! - [`frontier`]: per-instance Pareto frontier, dominance pruning, parent selectors.
//! - [`merge`]: merge eligibility, composition and subsampling.
//! - [`budget`]: reservations before dispatch; cost, tokens, generations, wall time; prices.
//! - [`reflection`]: reflective dataset, meta-prompt, fenced parsing, offline operator.
//! - [`metrics`]: metrics with feedback; [`judge`]: the server's LLM judge.
//! - [`evaluator`]: concurrent rollouts under per-job and global caps.
//! - [`models`]: what the optimizer is built with (its config, its models).
//! - [`engine`]: the loop; `saving`: its checkpoint writes (parts, bases, what was paid).
//! - [`evaluation`]: rollouts served from the memo or reserved and dispatched; staged
//!   validation of accepted children.
//! - [`proposals`]: reflective mutation, several proposals per generation, reproducibly;
//!   `ask_reflection`: asking the reflection model (memo, replay, memory of rejected proposals).
//! - [`estimate`]: metric calls, reflection calls, tokens and cost predicted before a run.

mod ask_reflection;
pub mod budget;
pub mod checkpoint;
pub mod engine;
pub mod estimate;
pub mod evaluation;
pub mod evaluator;
pub mod frontier;
pub mod judge;
pub mod memo;
pub mod merge;
pub mod metrics;
pub mod models;
pub mod proposals;
pub mod reflection;
mod saving;
pub mod state;
pub mod steer;

use std::time::{Duration, Instant};

use async_trait::async_trait;

use self::budget::{Budget, Limits, Prices, Spent};
use self::engine::{Config, Engine, Halt};
use self::metrics::Metric;
pub use self::models::{GepaConfig, Models};
use self::state::{Candidate, Checkpoint, GepaState, Memo, STATE_VERSION};
use super::{JobContext, OptimizeError, Optimizer, PartialJob, datasets};
use crate::domain::gepa::{
    CandidateInfo, DEFAULT_COMPONENT, DEFAULT_MINIBATCH_SIZE, GepaResult, TestReport,
};
use crate::domain::{Example, JobResult, JobSpec};
use crate::optimizer::rng::SeededRng;
use crate::store::{CheckpointStore, ExampleStore};

/// Share of the job's wall time (`budget.max_wall_time_s`, else `GEPA_DEFAULT_WALL_TIME_S`)
/// after which no new iteration starts (the rest is left for the
/// iteration in flight, so the job finishes with a result instead of `deadline_exceeded`).
const WALL_TIME_SHARE: f64 = 0.8;

/// The examples a job names: inline, else a built-in pack, else the stored examples.
pub async fn load_examples(
    ctx: &JobContext,
) -> Result<(Vec<Example>, &'static str), OptimizeError> {
    examples_of(&ctx.spec, ctx.examples.as_ref()).await
}

/// [`load_examples`] for a spec that is not (yet) a job.
pub async fn examples_of(
    spec: &JobSpec,
    store: &dyn ExampleStore,
) -> Result<(Vec<Example>, &'static str), OptimizeError> {
    if !spec.examples.is_empty() {
        return Ok((spec.examples.clone(), "exact_match"));
    }
    let name = spec.dataset.as_ref().map_or("toy_qa", |d| d.name.as_str());
    if let Some(pack) = datasets::pack(name) {
        return Ok((pack.examples(), pack.default_metric));
    }
    let stored = store
        .list_examples(crate::domain::spec::MAX_EXAMPLES, 0)
        .await
        .map_err(|e| OptimizeError::Failed {
            code: "store_error".into(),
            message: crate::error::Error::from(e).to_string(),
        })?;
    Ok((stored, "exact_match"))
}

/// The metrics a job asked for, or the data's default.
pub fn metrics_for(spec: &JobSpec, default: &str) -> Vec<Metric> {
    let names: Vec<&str> = if spec.metrics.is_empty() {
        vec![default]
    } else {
        spec.metrics.iter().map(String::as_str).collect()
    };
    names.into_iter().filter_map(Metric::parse).collect()
}

/// Predicts what a GEPA request will spend ([`estimate`]), with the server's defaults.
pub async fn estimate_request(
    spec: &JobSpec,
    config: &GepaConfig,
    prices: &Prices,
    store: &dyn ExampleStore,
) -> Result<estimate::Estimate, OptimizeError> {
    let (examples, _) = examples_of(spec, store).await?;
    let split = datasets::split(examples);
    let task_model = spec
        .target_model_id
        .clone()
        .unwrap_or_else(|| config.target_model.clone());
    let reflection_model = config
        .reflection_model
        .clone()
        .unwrap_or_else(|| task_model.clone());
    Ok(estimate::estimate(
        &estimate::Request {
            prompt: &spec.prompt,
            train: &split.train,
            val: &split.val,
            max_metric_calls: spec
                .budget
                .max_rollouts
                .unwrap_or(config.default_max_metric_calls),
            max_generations: spec.budget.max_generations,
            minibatch: spec.gepa.minibatch_size.unwrap_or(DEFAULT_MINIBATCH_SIZE) as usize,
            validation: spec.gepa.validation_policy,
            task_model: &task_model,
            reflection_model: &reflection_model,
        },
        prices,
    ))
}

fn failed(code: &str, message: impl Into<String>) -> OptimizeError {
    OptimizeError::Failed {
        code: code.into(),
        message: message.into(),
    }
}

/// The GEPA optimizer.
pub struct GepaOptimizer {
    models: Models,
    config: GepaConfig,
}

impl GepaOptimizer {
    pub fn new(models: Models, config: GepaConfig) -> Self {
        GepaOptimizer { models, config }
    }
}

#[async_trait]
impl Optimizer for GepaOptimizer {
    fn resumable(&self) -> bool {
        true
    }

    async fn run(&self, ctx: JobContext) -> Result<JobResult, OptimizeError> {
        let spec = ctx.spec.clone();
        let config = &self.config;
        let (examples, default_metric) = load_examples(&ctx).await?;
        if examples.is_empty() {
            return Err(failed(
                "no_examples",
                "the job has no examples to optimize on",
            ));
        }
        let split = datasets::split(examples);
        let test = split.test;
        let seed = seed_candidate(&spec);
        let limits = limits_for(&spec, config);
        if limits
            .max_metric_calls
            .is_some_and(|m| m < split.val.len() as u64)
        {
            return Err(failed(
                "budget_exhausted",
                format!(
                    "max_rollouts must cover at least the validation set ({} examples)",
                    split.val.len()
                ),
            ));
        }
        let reflection = self.models.reflection.clone().map(|p| {
            let model = self
                .models
                .reflection_model
                .clone()
                .unwrap_or_else(|| config.target_model.clone());
            (p, model)
        });
        let resumed = load_checkpoint(ctx.checkpoints.as_ref(), &ctx.job_id, &seed).await;
        let seed_rng = SeededRng::from_seed(spec.seed.unwrap_or(config.seed));
        let is_resume = resumed.is_some();
        let (state, memo, spent, replay) = match resumed {
            Some(c) => {
                let (spent, replay) = c.resume_budget();
                (c.state, c.memo, spent, replay)
            }
            None => (
                GepaState::new(seed.clone(), Vec::new(), seed_rng, Spent::default()),
                Memo::default(),
                Spent::default(),
                Default::default(),
            ),
        };
        let components: Vec<String> = seed.keys().cloned().collect();
        let mut memo = memo;
        let example_keys = state::ExampleKeys::new(&mut memo, &split.train, &split.val);
        let mut engine = Engine {
            ctx: &ctx,
            eval: self
                .models
                .evaluator(&spec, config, metrics_for(&spec, default_metric)),
            cfg: Config {
                minibatch: spec.gepa.minibatch_size.unwrap_or(DEFAULT_MINIBATCH_SIZE) as usize,
                selector: spec.gepa.candidate_selector,
                acceptance: spec.gepa.acceptance,
                use_merge: spec.gepa.use_merge.unwrap_or(true),
                max_merges: spec.gepa.max_merge_invocations.unwrap_or(5),
                components,
                reflection,
                validation: spec.gepa.validation_policy,
                legacy: spec.gepa.legacy_budget,
                parallel: spec.gepa.parallel_proposals.map(|n| n as usize),
            },
            budget: Budget::new(limits, spent),
            state,
            memo,
            example_keys,
            top: None,
            lessons_sent: false,
            journal: Default::default(),
            spend: Default::default(),
            item_spend: Vec::new(),
            fronts: Default::default(),
            replay,
            train: split.train,
            val: split.val,
        };
        if is_resume {
            tracing::info!(job_id = %ctx.job_id, generation = engine.state.generation, "gepa resumed from checkpoint");
        } else {
            let scores = match engine.validate(&seed).await {
                Ok(scores) => scores,
                Err(Halt::Budget(reason)) => {
                    return Err(failed("budget_exhausted", reason.as_str()));
                }
                Err(Halt::Error(err)) => return Err(err),
            };
            engine.state.val_scores[0] = scores;
            engine.forget_validation(0);
            engine.state.discovered_at[0] = engine.budget.spent.metric_calls;
            engine
                .state
                .unannounced
                .push((0, engine.budget.spent.cost_usd));
            let announced = engine.announce(0).await;
            for step in [announced, engine.emit_budget().await] {
                if let Err(Halt::Error(err)) = step {
                    return Err(err);
                }
            }
        }
        let stop = engine.run().await?;
        let mut out = result(&engine, stop.as_str());
        if !test.is_empty() {
            out.test = Some(held_out(&engine, &test).await?);
        }
        Ok(JobResult::Gepa(Box::new(out)))
    }

    /// A `max_cost` is only a limit when every model the job pays for has a price.
    fn admit(&self, spec: &JobSpec) -> Result<(), crate::error::Error> {
        if spec.mode != crate::domain::Mode::Gepa || spec.budget.max_cost.is_none() {
            return Ok(());
        }
        let target = spec
            .target_model_id
            .clone()
            .unwrap_or_else(|| self.config.target_model.clone());
        let mut models = vec![target];
        if self.models.reflection.is_some() {
            models.push(
                self.models
                    .reflection_model
                    .clone()
                    .unwrap_or_else(|| self.config.target_model.clone()),
            );
        }
        match models.iter().find(|m| !self.models.prices.has(m)) {
            None => Ok(()),
            Some(model) => Err(crate::error::Error::invalid(
                &["budget", "max_cost"],
                format!(
                    "budget.max_cost needs a price for model {model:?}, and MODEL_PRICES_JSON has none"
                ),
            )),
        }
    }

    /// The best candidate of the last checkpoint, its score and the spend, as a result whose
    /// `error` says how the job ended.
    async fn partial_result(&self, job: &PartialJob<'_>, reason: &str) -> Option<JobResult> {
        let spec = job.spec;
        let seed = seed_candidate(spec);
        let checkpoint = load_checkpoint(job.checkpoints, job.job_id, &seed).await?;
        let (examples, _) = examples_of(spec, job.examples).await.ok()?;
        let split = datasets::split(examples);
        let budget = Budget::new(limits_for(spec, &self.config), checkpoint.spent);
        let state = &checkpoint.state;
        if state
            .val_scores
            .first()
            .is_none_or(|s| s.len() != split.val.len())
        {
            return None;
        }
        let mut result = snapshot_result(state, &split.val, budget.usage(state.generation), reason);
        result.error = Some(reason.to_string());
        Some(JobResult::Gepa(Box::new(result)))
    }
}

/// The limits of a job: its budget, the server's default metric-call budget, and its wall
/// time ([`WallTimes::of`]) counted from now.
fn limits_for(spec: &JobSpec, config: &GepaConfig) -> Limits {
    let wall = config.wall_times.of(spec);
    Limits {
        max_metric_calls: Some(
            spec.budget
                .max_rollouts
                .unwrap_or(config.default_max_metric_calls),
        ),
        max_generations: spec.budget.max_generations,
        max_cost_usd: spec.budget.max_cost,
        max_tokens: spec.budget.max_tokens,
        deadline: Some(Instant::now() + Duration::from_secs_f64(wall * WALL_TIME_SHARE)),
        hard_deadline: Some(Instant::now() + Duration::from_secs_f64(wall)),
    }
}

/// The seed candidate of a request.
fn seed_candidate(spec: &JobSpec) -> Candidate {
    let mut seed = Candidate::new();
    seed.insert(DEFAULT_COMPONENT.to_string(), spec.prompt.clone());
    for (name, text) in &spec.gepa.components {
        seed.insert(name.clone(), text.clone());
    }
    seed
}

/// The job's checkpoint, when there is one of this version for this seed.
async fn load_checkpoint(
    store: &dyn CheckpointStore,
    job_id: &str,
    seed: &Candidate,
) -> Option<Checkpoint> {
    let Ok(Some(value)) = store.get_checkpoint(job_id).await else {
        return None;
    };
    let mut checkpoint = serde_json::from_value::<Checkpoint>(value).ok()?;
    match store.checkpoint_parts(job_id).await {
        Ok(parts) => checkpoint.apply(&parts),
        Err(err) => {
            tracing::warn!(job_id, error = %err, "checkpoint parts unreadable; resuming from the base")
        }
    }
    Some(checkpoint)
        .filter(|c| c.state.version == STATE_VERSION && c.state.candidates.first() == Some(seed))
}

/// A job's whole checkpoint as stored JSON: its base with the incremental parts applied (what
/// a branch copies and the workbench reads; the base alone may be generations old). `None`
/// when the job has none.
pub async fn whole_checkpoint(
    store: &dyn CheckpointStore,
    job_id: &str,
) -> crate::error::Result<Option<serde_json::Value>> {
    let Some(base) = store.get_checkpoint(job_id).await? else {
        return Ok(None);
    };
    let parts = store.checkpoint_parts(job_id).await?;
    if parts.is_empty() {
        return Ok(Some(base));
    }
    let Ok(mut checkpoint) = serde_json::from_value::<Checkpoint>(base.clone()) else {
        return Ok(Some(base));
    };
    checkpoint.apply(&parts);
    Ok(Some(serde_json::to_value(&checkpoint).unwrap_or(base)))
}

/// Scores the seed and the best candidate on the held-out set (outside the search budget).
async fn held_out(engine: &Engine<'_>, test: &[Example]) -> Result<TestReport, OptimizeError> {
    let examples: Vec<&Example> = test.iter().collect();
    let best = engine.best();
    let mut means = Vec::new();
    let mut calls = 0;
    for c in [0, best] {
        if c == best && best == 0 && !means.is_empty() {
            means.push(means[0]);
            continue;
        }
        let system = evaluator::render_system(&engine.state.candidates[c]).into();
        let rollouts = engine
            .eval
            .batch(&system, &examples)
            .await
            .map_err(|e| engine::provider_failed(&e))?;
        calls += rollouts.len() as u64;
        means.push(frontier::mean(
            &rollouts.iter().map(|r| r.record.score).collect::<Vec<_>>(),
        ));
    }
    Ok(TestReport {
        count: test.len() as u32,
        seed_score: means[0],
        best_score: means[1],
        best_candidate_id: best as u32,
        metric_calls: calls,
    })
}

fn result(engine: &Engine<'_>, stop_reason: &str) -> GepaResult {
    snapshot_result(
        &engine.state,
        &engine.val,
        engine.budget.usage(engine.state.generation),
        stop_reason,
    )
}

/// The result a state stands for: its best candidate, frontier, pool and the spend `budget`.
fn snapshot_result(
    state: &GepaState,
    val: &[Example],
    budget: crate::domain::gepa::BudgetUsage,
    stop_reason: &str,
) -> GepaResult {
    let best = frontier::best(&state.val_scores);
    let candidates = (0..state.candidates.len())
        .map(|c| CandidateInfo {
            id: c as u32,
            parents: state.parents[c].iter().map(|p| *p as u32).collect(),
            origin: state.origins[c].as_str().into(),
            components: state.candidates[c].clone(),
            score: state.aggregate(c),
            val_scores: val
                .iter()
                .zip(&state.val_scores[c])
                .map(|(e, s)| (e.id.clone(), *s))
                .collect(),
            discovered_at_metric_calls: state.discovered_at[c],
            validated_on: state.validated_on(c) as u32,
        })
        .collect();
    GepaResult {
        best_prompt: state.candidates[best]
            .get(DEFAULT_COMPONENT)
            .cloned()
            .unwrap_or_default(),
        frontier: engine::frontier_entries(state),
        lessons: state.lessons.clone(),
        best_candidate_id: best as u32,
        best_candidate: state.candidates[best].clone(),
        best_score: state.aggregate(best),
        seed_score: state.aggregate(0),
        candidates,
        generations: state.generation,
        budget,
        stop_reason: stop_reason.into(),
        test: None,
        error: None,
        proposals: state.proposals.clone(),
    }
}
