//! Eval jobs (`mode: eval`): score one prompt on a dataset (a built-in pack or the stored
//! examples) with the job's metrics, concurrently (`EVAL_MAX_CONCURRENCY` per job under the
//! global cap), streaming `eval_case` per example in dataset order, then `eval_finished`.
//! Metric calls are reserved before dispatch like GEPA's. The request's `name` is only a label
//! (as in the original); `eval_started` carries the original's `{task, examples}` too.

use async_trait::async_trait;
use futures_util::StreamExt;

use super::gepa::budget::{Budget, Limits, Spent};
use super::gepa::engine::provider_failed;
use super::gepa::{GepaConfig, Models, load_examples, metrics_for};
use super::{JobContext, OptimizeError, Optimizer};
use crate::domain::gepa::{EvalCase, EvalFinished, EvalResult, EvalStarted};
use crate::domain::{EventPayload, JobResult};

/// The system prompt of an eval request that names none (its `task` is then the first
/// example's input, as in the original).
pub const DEFAULT_EVAL_PROMPT: &str = "You are a helpful assistant. Answer concisely.";

/// Runs eval jobs.
pub struct EvalOptimizer {
    models: Models,
    config: GepaConfig,
}

impl EvalOptimizer {
    pub fn new(models: Models, config: GepaConfig) -> Self {
        EvalOptimizer { models, config }
    }
}

#[async_trait]
impl Optimizer for EvalOptimizer {
    async fn run(&self, ctx: JobContext) -> Result<JobResult, OptimizeError> {
        let spec = ctx.spec.clone();
        let (mut examples, default_metric) = load_examples(&ctx).await?;
        let cap = spec
            .budget
            .max_rollouts
            .map_or(self.config.eval_max_examples, |n| n as usize)
            .min(self.config.eval_max_examples);
        examples.truncate(cap);
        // The label the client gave (`name`), else the dataset's name.
        let name = spec.eval_name.clone().unwrap_or_else(|| {
            spec.dataset
                .as_ref()
                .map_or_else(|| "examples".to_string(), |d| d.name.clone())
        });
        // The original's `task`: the prompt, or the first example's input when none was given.
        let task = if spec.prompt == DEFAULT_EVAL_PROMPT {
            examples
                .first()
                .map(|e| e.input.clone())
                .unwrap_or_default()
        } else {
            spec.prompt.clone()
        };
        ctx.events
            .emit(EventPayload::EvalStarted(EvalStarted {
                name: name.clone(),
                total: examples.len() as u32,
                task,
                examples: examples.len() as u32,
            }))
            .await?;
        let mut budget = Budget::new(
            Limits {
                max_metric_calls: Some(examples.len() as u64),
                max_cost_usd: spec.budget.max_cost,
                max_tokens: spec.budget.max_tokens,
                ..Limits::default()
            },
            Spent::default(),
        );
        let evaluator =
            self.models
                .evaluator(&spec, &self.config, metrics_for(&spec, default_metric));
        let system: std::sync::Arc<str> = spec.prompt.as_str().into();
        let mut cases = Vec::with_capacity(examples.len());
        let mut pending = futures_util::stream::FuturesOrdered::new();
        let mut next = 0;
        while next < examples.len() || !pending.is_empty() {
            while next < examples.len()
                && pending.len() < evaluator.per_job.max(1)
                && budget.reserve(1).is_ok()
            {
                pending.push_back(evaluator.rollout(&system, &examples[next]));
                next += 1;
            }
            let Some(outcome) = pending.next().await else {
                break; // cost or token budget used up
            };
            let rollout = outcome.map_err(|e| provider_failed(&e))?;
            budget.record(rollout.cost_usd, rollout.tokens);
            let case = EvalCase {
                example_id: examples[cases.len()].id.clone(),
                output: rollout.record.output,
                score: rollout.record.score,
                feedback: rollout.record.feedback,
            };
            ctx.events
                .emit(EventPayload::EvalCase(case.clone()))
                .await?;
            cases.push(case);
        }
        let count = cases.len() as u32;
        let score = if cases.is_empty() {
            0.0
        } else {
            cases.iter().map(|c| c.score).sum::<f64>() / f64::from(count)
        };
        ctx.events
            .emit(EventPayload::BudgetProgress(budget.usage(0)))
            .await?;
        ctx.events
            .emit(EventPayload::EvalFinished(EvalFinished { score, count }))
            .await?;
        Ok(JobResult::Eval(EvalResult {
            name,
            score,
            count,
            cases,
            metric_calls_used: budget.spent.metric_calls,
            cost_usd: budget.spent.cost_usd,
        }))
    }
}
