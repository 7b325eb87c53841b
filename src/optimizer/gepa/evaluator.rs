//! Rollouts: run a candidate on examples with the task model and score each output with the
//! job's metrics (each giving a score and feedback). Runs up to `EVAL_MAX_CONCURRENCY` rollouts
//! of a job at once and holds a permit of the server-wide semaphore for each, so jobs share a
//! global cap. Nothing here blocks the runtime.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::Semaphore;

use super::budget::Prices;
use super::metrics::{Judge, Metric, Scored, score_sync};
use super::state::{Candidate, EvalRecord};
use crate::domain::Example;
use crate::domain::gepa::DEFAULT_COMPONENT;
use crate::provider::{ChatMessage, CompletionRequest, ModelProvider, ProviderError, Usage};

/// One rollout's verdict and what it cost.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub record: EvalRecord,
    pub cost_usd: f64,
    /// The judge's share of `cost_usd`.
    pub judge_cost_usd: f64,
    pub tokens: u64,
    /// The judge's score when `llm_judge` ran.
    pub judge_score: Option<f64>,
}

/// Why [`Evaluator::batch_until`] stopped early.
#[derive(Debug)]
pub enum BatchStop {
    /// Halted: the rollouts completed so far, in input order.
    Halted(Vec<Rollout>),
    Failed(ProviderError),
}

/// Everything needed to run rollouts for one job.
pub struct Evaluator {
    pub task: Arc<dyn ModelProvider>,
    pub judge: Arc<Judge>,
    pub metrics: Vec<Metric>,
    /// Shared by every rollout's request (see [`crate::provider`]).
    pub model: Arc<str>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub seed: Option<i64>,
    pub rubric: String,
    pub prices: Arc<Prices>,
    pub global: Arc<Semaphore>,
    pub per_job: usize,
}

/// The system prompt a candidate becomes: `system_prompt`, then every other component under its
/// own heading.
pub fn render_system(candidate: &Candidate) -> String {
    let mut out = candidate
        .get(DEFAULT_COMPONENT)
        .cloned()
        .unwrap_or_default();
    for (name, text) in candidate.iter().filter(|(n, _)| *n != DEFAULT_COMPONENT) {
        out.push_str(&format!("\n\n## {name}\n{text}"));
    }
    out
}

fn tokens(u: Usage) -> u64 {
    u.prompt_tokens + u.completion_tokens
}

impl Evaluator {
    /// Runs `system` on one example and scores it. The request shares `system` (no copy).
    pub async fn rollout(
        &self,
        system: &Arc<str>,
        example: &Example,
    ) -> Result<Rollout, ProviderError> {
        let _permit = self
            .global
            .acquire()
            .await
            .map_err(|_| ProviderError::CircuitOpen)?;
        let completion = self
            .task
            .complete(CompletionRequest {
                model: self.model.clone(),
                messages: vec![
                    ChatMessage::system(system.clone()),
                    ChatMessage::user(example.input.as_str()),
                ],
                temperature: self.temperature,
                max_tokens: self.max_tokens,
                seed: self.seed,
            })
            .await?;
        let mut cost_usd = self.prices.cost(&self.model, completion.usage);
        let mut judge_cost_usd = 0.0;
        let mut used = tokens(completion.usage);
        let output = completion.text;
        let mut verdicts: Vec<Scored> = Vec::new();
        let mut judge_score = None;
        for metric in &self.metrics {
            match score_sync(*metric, &output, example) {
                Some(v) => verdicts.push(v),
                None => {
                    // Boxed: the judge's future is large, and inline it made every rollout's
                    // future (moved into the batch's queue) as large.
                    let (mut v, usage) =
                        Box::pin(self.judge.score(&self.rubric, &output, example)).await?;
                    if v.score < 1.0 {
                        v.feedback = super::metrics::with_context(v.feedback, example);
                    }
                    let judge_cost = self.prices.cost(self.judge.model(), usage);
                    cost_usd += judge_cost;
                    judge_cost_usd += judge_cost;
                    used += tokens(usage);
                    judge_score = Some(v.score);
                    verdicts.push(v);
                }
            }
        }
        let score = if verdicts.is_empty() {
            0.0
        } else {
            verdicts.iter().map(|v| v.score).sum::<f64>() / verdicts.len() as f64
        };
        // One metric (the usual case): its feedback as it is, not a copy of it.
        let feedback = if verdicts.len() == 1 {
            verdicts.pop().map(|v| v.feedback).unwrap_or_default()
        } else {
            verdicts
                .into_iter()
                .map(|v| v.feedback)
                .collect::<Vec<_>>()
                .join(" ")
        };
        Ok(Rollout {
            record: EvalRecord {
                task_usd: cost_usd - judge_cost_usd,
                judge_usd: judge_cost_usd,
                tokens: used,
                output,
                score,
                feedback,
            },
            cost_usd,
            judge_cost_usd,
            tokens: used,
            judge_score,
        })
    }

    /// [`Evaluator::batch`], stopping early when `halt` is cancelled: then the rollouts
    /// completed so far in input order come back as `Halted` (only the ones in flight, at most
    /// `per_job`, are lost), so a pause keeps what was already paid for.
    /// [`Evaluator::batch_pairs`] until `halt`: on a halt, the rollouts answered so far (a
    /// prefix, in input order) come back in [`BatchStop::Halted`].
    pub async fn batch_pairs_until(
        &self,
        pairs: &[(&Arc<str>, &Example)],
        halt: &tokio_util::sync::CancellationToken,
    ) -> Result<Vec<Rollout>, BatchStop> {
        let mut pending = futures_util::stream::FuturesOrdered::new();
        let mut results = Vec::with_capacity(pairs.len());
        let mut next = 0;
        while next < pairs.len() || !pending.is_empty() {
            while next < pairs.len() && pending.len() < self.per_job.max(1) {
                pending.push_back(self.rollout(pairs[next].0, pairs[next].1));
                next += 1;
            }
            let done = tokio::select! {
                done = pending.next() => done,
                _ = halt.cancelled() => return Err(BatchStop::Halted(results)),
            };
            if let Some(result) = done {
                results.push(result.map_err(BatchStop::Failed)?);
            }
        }
        Ok(results)
    }

    pub async fn batch_until(
        &self,
        system: &Arc<str>,
        examples: &[&Example],
        halt: &tokio_util::sync::CancellationToken,
    ) -> Result<Vec<Rollout>, BatchStop> {
        let mut pending = futures_util::stream::FuturesOrdered::new();
        let mut results = Vec::with_capacity(examples.len());
        let mut next = 0;
        while next < examples.len() || !pending.is_empty() {
            while next < examples.len() && pending.len() < self.per_job.max(1) {
                pending.push_back(self.rollout(system, examples[next]));
                next += 1;
            }
            let done = tokio::select! {
                done = pending.next() => done,
                _ = halt.cancelled() => return Err(BatchStop::Halted(results)),
            };
            if let Some(result) = done {
                results.push(result.map_err(BatchStop::Failed)?);
            }
        }
        Ok(results)
    }

    /// Runs `system` on every example, `per_job` at a time; results in input order. The first
    /// provider failure fails the batch (a dead provider ends the job clearly).
    pub async fn batch(
        &self,
        system: &Arc<str>,
        examples: &[&Example],
    ) -> Result<Vec<Rollout>, ProviderError> {
        let pairs: Vec<(&Arc<str>, &Example)> = examples.iter().map(|e| (system, *e)).collect();
        self.batch_pairs(&pairs).await
    }

    /// Runs each (system prompt, example) pair, `per_job` at a time (several candidates share
    /// the job's cap); results in input order, whatever order they finish in.
    pub async fn batch_pairs(
        &self,
        pairs: &[(&Arc<str>, &Example)],
    ) -> Result<Vec<Rollout>, ProviderError> {
        // A hand-rolled `buffered` (no closures: keeps the future `Send` for any lifetime).
        let mut pending = futures_util::stream::FuturesOrdered::new();
        let mut results = Vec::with_capacity(pairs.len());
        let mut next = 0;
        while next < pairs.len() || !pending.is_empty() {
            while next < pairs.len() && pending.len() < self.per_job.max(1) {
                pending.push_back(self.rollout(pairs[next].0, pairs[next].1));
                next += 1;
            }
            if let Some(result) = pending.next().await {
                results.push(result?);
            }
        }
        Ok(results)
    }
}
