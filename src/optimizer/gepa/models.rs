//! What a GEPA (or eval) optimizer is built with, where the app is wired: its configuration
//! ([`GepaConfig`]) and the models and shared limits its jobs use ([`Models`]).

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::budget::Prices;
use super::evaluator::Evaluator;
use super::metrics::{Judge, Metric};
use crate::domain::JobSpec;
use crate::optimizer::WallTimes;
use crate::provider::ModelProvider;

/// The settings GEPA and eval jobs read; built where the app is wired (`Settings::gepa`).
#[derive(Debug, Clone, PartialEq)]
pub struct GepaConfig {
    /// `TARGET_MODEL_DEFAULT`: the task model of a request that names none, and the reflection
    /// model when `REFLECTION_MODEL_ID` is unset.
    pub target_model: String,
    /// `REFLECTION_MODEL_ID`.
    pub reflection_model: Option<String>,
    /// `EVALUATION_RUBRIC_DEFAULT`, for the judge metric of a request that names no rubric.
    pub rubric: Option<String>,
    /// `DETERMINISTIC_SEED`: the seed of a request that names none.
    pub seed: i64,
    /// `GEPA_DEFAULT_MAX_METRIC_CALLS`: the budget of a request that sets no `max_rollouts`.
    pub default_max_metric_calls: u64,
    /// `EVAL_MAX_CONCURRENCY`: rollouts in flight per job.
    pub per_job_concurrency: usize,
    /// `EVAL_MAX_EXAMPLES`: the most examples an eval job scores.
    pub eval_max_examples: usize,
    pub wall_times: WallTimes,
}

/// Models and shared limits every GEPA (and eval) job of this server uses; built where the app
/// is wired (`server::models`).
#[derive(Clone)]
pub struct Models {
    pub task: Arc<dyn ModelProvider>,
    /// `None`: offline, the rule-based operators stand in for reflection.
    pub reflection: Option<Arc<dyn ModelProvider>>,
    pub reflection_model: Option<String>,
    pub judge: Arc<Judge>,
    pub prices: Arc<Prices>,
    /// Server-wide cap on rollouts in flight.
    pub global: Arc<Semaphore>,
}

impl Models {
    /// A rollout runner for one job.
    pub fn evaluator(
        &self,
        spec: &JobSpec,
        config: &GepaConfig,
        metrics: Vec<Metric>,
    ) -> Evaluator {
        Evaluator {
            task: self.task.clone(),
            judge: self.judge.clone(),
            metrics,
            model: spec
                .target_model_id
                .as_deref()
                .unwrap_or(&config.target_model)
                .into(),
            temperature: spec.temperature,
            max_tokens: spec.max_tokens,
            seed: spec.seed,
            rubric: spec
                .evaluation_rubric
                .clone()
                .or_else(|| config.rubric.clone())
                .unwrap_or_else(|| "The response answers the task correctly and concisely.".into()),
            prices: self.prices.clone(),
            global: self.global.clone(),
            per_job: config.per_job_concurrency.max(1),
        }
    }
}
