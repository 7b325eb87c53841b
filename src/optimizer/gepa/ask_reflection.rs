//! Asking the reflection model for a generation's proposals: each distinct prompt once, answers
//! already paid for taken from the memo (and booked again in a replayed iteration), and the
//! reflection memory of rejected proposals the prompts show.

use std::sync::Arc;

use super::engine::{Engine, Halt, provider_failed};
use super::state::{Reflection, Rejected, fnv1a};
use crate::optimizer::OptimizeError;
use crate::provider::{ChatMessage, CompletionRequest, ModelProvider};

/// Rejected proposals kept for reflection memory (per job; the prompt shows those of the parent
/// and component being reflected on).
const MAX_REJECTED: usize = 24;
/// Rejected proposals shown in one reflection prompt.
const MEMORY_IN_PROMPT: usize = 3;

impl Engine<'_> {
    /// The recent rejected proposals for this parent and component (reflection memory).
    pub(super) fn memory(&self, parent: usize, component: &str) -> Vec<Rejected> {
        if self.cfg.legacy {
            return Vec::new();
        }
        let mut recent: Vec<Rejected> = self
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
    }

    pub(super) fn remember(&mut self, rejected: Rejected) {
        self.state.rejected.push(rejected);
        let overflow = self.state.rejected.len().saturating_sub(MAX_REJECTED);
        self.state.rejected.drain(..overflow);
    }

    /// Answers of the reflection model to each prompt (`None` where there is none), asked
    /// together; answers already paid for come from the memo.
    #[tracing::instrument(name = "reflect", skip_all, fields(otel.name = "reflect", prompts = prompts.len()))]
    pub(super) async fn reflect_many(
        &mut self,
        prompts: &[Option<String>],
    ) -> Result<(Vec<Option<String>>, Vec<f64>), Halt> {
        let mut usd = vec![0.0; prompts.len()];
        let Some((provider, model)) = self.cfg.reflection.clone() else {
            return Ok((vec![None; prompts.len()], usd));
        };
        let keys: Vec<Option<String>> = prompts
            .iter()
            .map(|p| p.as_ref().map(|p| format!("{:016x}", fnv1a(&[&model, p]))))
            .collect();
        // What this call pays for, in prompt order: prompts not in the memo (each distinct
        // prompt asked once) and, in a replayed iteration, answers the interrupted iteration
        // paid for (booked again, as in `evaluate_many`).
        let mut missing: Vec<usize> = Vec::new();
        let mut due: Vec<usize> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, key) in keys.iter().enumerate() {
            let Some(key) = key else { continue };
            if !seen.insert(key.as_str()) {
                continue;
            }
            if !self.memo.reflections.contains_key(key) {
                missing.push(i);
                due.push(i);
            } else if self.replay.contains(key) {
                due.push(i);
            }
        }
        if !due.is_empty() {
            if let Some(reason) = self.budget.spending_stop() {
                return Err(Halt::Budget(reason));
            }
            let calls = missing.iter().map(|i| {
                ask(
                    provider.clone(),
                    model.clone(),
                    prompts[*i].clone().unwrap_or_default(),
                )
            });
            // A halt (pause, hand-over) drops the calls in flight (see `evaluate`).
            let answers = tokio::select! {
                answers = futures_util::future::join_all(calls) => answers,
                _ = self.ctx.halt.cancelled() => return Err(Halt::Error(OptimizeError::Halted)),
            };
            for (i, answer) in missing.iter().zip(answers) {
                let completion = answer.map_err(|e| Halt::Error(provider_failed(&e)))?;
                if let Some(key) = &keys[*i] {
                    let reflection = Reflection {
                        usd: self.eval.prices.cost(&model, completion.usage),
                        tokens: completion.usage.prompt_tokens + completion.usage.completion_tokens,
                        text: completion.text,
                    };
                    self.memo.reflections.insert(key.clone(), reflection);
                    self.journal.fresh_reflections.push(key.clone());
                }
            }
            // Booked once the answers are in: a halt above books nothing, so what the
            // checkpoint says was paid (see `Engine::paid`) stays whole.
            for i in due {
                let Some(key) = keys[i].as_ref() else {
                    continue;
                };
                self.replay.remove(key);
                let Some(paid) = self.memo.reflections.get(key) else {
                    continue;
                };
                usd[i] = paid.usd;
                self.spend.reflection_usd += paid.usd;
                self.budget.record(paid.usd, paid.tokens);
            }
            if !missing.is_empty() {
                self.save().await;
            }
        }
        let answers = keys
            .iter()
            .map(|k| {
                k.as_ref()
                    .and_then(|k| self.memo.reflections.get(k).map(|r| r.text.clone()))
            })
            .collect();
        Ok((answers, usd))
    }
}

async fn ask(
    provider: Arc<dyn ModelProvider>,
    model: String,
    prompt: String,
) -> Result<crate::provider::Completion, crate::provider::ProviderError> {
    provider
        .complete(CompletionRequest {
            model: model.into(),
            messages: vec![ChatMessage::user(prompt)],
            temperature: Some(1.0),
            max_tokens: None,
            seed: None,
        })
        .await
}
