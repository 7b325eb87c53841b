//! Reflective mutation with several proposals per generation. Parents and minibatches are
//! drawn in order from the seeded RNG; then the parents' minibatches, the reflections and the
//! children's minibatches each run together under the job's concurrency cap; then acceptance
//! and validation run in proposal order. Every answer is stored by its position, so the result
//! depends only on the seed and the inputs, never on which call finished first.

use super::engine::{Engine, Halt, Outcome, ValidatedChild};
use super::reflection::{self, Record};
use super::state::{Candidate, EvalRecord, Origin, Rejected, candidate_hash};
use crate::domain::EventPayload;
use crate::domain::gepa::{
    Acceptance, CandidateProposed, CandidateVerdict, MinibatchEvaluated, ParentSelected,
    ProposalCost, ReflectionFinished, ReflectionStarted,
};

/// Proposals per generation by default. More proposals per generation means fewer
/// generations for a budget, each learning from fewer accepted children: at budget 300 on the
/// offline world, 10 per generation (what `EVAL_MAX_CONCURRENCY=32` held before) halved test
/// accuracy on one pack while 2 kept it. Wall time comes from the concurrency instead: every
/// stage of a generation (parents' minibatches, reflections, children's minibatches,
/// validations) runs its calls together.
pub const DEFAULT_PARALLEL_PROPOSALS: usize = 2;
/// A minibatch where the parent scores at least this everywhere is skipped.
const PERFECT_SCORE: f64 = 1.0;
/// Lessons kept in the result.
const MAX_LESSONS: usize = 20;

/// A proposal judged on its minibatch.
struct Judged {
    p: Proposal,
    child: Candidate,
    repeat: bool,
    text: String,
    parent_scores: Vec<f64>,
    child_scores: Vec<f64>,
    before: f64,
    after: f64,
    already_in_pool: bool,
    accepted: bool,
}

/// One proposal in flight.
struct Proposal {
    parent: usize,
    batch: Vec<usize>,
    parent_candidate: Candidate,
    parent_records: Vec<EvalRecord>,
    component: String,
    /// The offline rule-based operator's text, or the reflection prompt.
    rule_text: Option<String>,
    prompt: Option<String>,
    /// Spent so far: the parent's minibatch, then the reflection and the child's minibatch.
    cost: ProposalCost,
}

impl Engine<'_> {
    /// Proposals this generation: the configured number, else [`DEFAULT_PARALLEL_PROPOSALS`];
    /// fewer when the budget left does not cover them. Never derived from the concurrency, so
    /// a result does not depend on how the server is configured.
    fn proposals_now(&self, size: usize) -> usize {
        let wanted = self
            .cfg
            .parallel
            .unwrap_or(DEFAULT_PARALLEL_PROPOSALS)
            .max(1);
        match self.budget.metric_calls_left() {
            Some(left) => wanted.min((left / (2 * size as u64).max(1)).max(1) as usize),
            None => wanted,
        }
    }

    pub(super) async fn reflective_round(&mut self, generation: u32) -> Result<Outcome, Halt> {
        let mut size = self.cfg.minibatch.min(self.train.len()).max(1);
        if let Some(left) = self.budget.metric_calls_left() {
            size = size.min((left / 2).max(1) as usize);
        }
        let k = if self.cfg.legacy {
            1
        } else {
            self.proposals_now(size)
        };
        // 1. Parents and minibatches, in order.
        let mut drawn: Vec<(usize, Vec<usize>)> = Vec::with_capacity(k);
        for _ in 0..k {
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
            let batch = self
                .state
                .sampler
                .next_batch(self.train.len(), size, &mut self.state.rng);
            drawn.push((parent, batch));
        }
        // 2. The parents on their minibatches, together.
        let parents: Vec<Candidate> = drawn
            .iter()
            .map(|(p, _)| self.state.candidates[*p].clone())
            .collect();
        let items: Vec<(&Candidate, bool, &[usize])> = drawn
            .iter()
            .zip(&parents)
            .map(|((_, batch), c)| (c, false, batch.as_slice()))
            .collect();
        let records = self.evaluate_many(&items).await?;
        let parent_spend = std::mem::take(&mut self.item_spend);
        // 3. Skip perfect minibatches; pick components; build the reflection inputs.
        let mut live: Vec<Proposal> = Vec::new();
        let mut new_lessons = Vec::new();
        for ((((parent, batch), parent_candidate), parent_records), cost) in drawn
            .into_iter()
            .zip(parents)
            .zip(records)
            .zip(parent_spend)
        {
            if parent_records.iter().all(|r| r.score >= PERFECT_SCORE) {
                self.emit(EventPayload::MinibatchEvaluated(MinibatchEvaluated {
                    generation,
                    candidate_id: parent as u32,
                    example_ids: self.ids(&batch),
                    parent_scores: parent_records.iter().map(|r| r.score).collect(),
                    child_scores: Vec::new(),
                }))
                .await?;
                continue;
            }
            let n = self.cfg.components.len().max(1);
            let component = self.cfg.components[self.state.next_component[parent] % n].clone();
            self.state.next_component[parent] += 1;
            let feedback = self.feedback_for(&component);
            self.emit(EventPayload::ReflectionStarted(ReflectionStarted {
                generation,
                candidate_id: parent as u32,
                component: component.clone(),
                r#gen: generation,
                feedback: feedback.clone(),
            }))
            .await?;
            let current = parent_candidate
                .get(&component)
                .cloned()
                .unwrap_or_default();
            let memory = self.memory(parent, &component);
            let (rule_text, prompt) = {
                let records: Vec<Record<'_>> = batch
                    .iter()
                    .zip(&parent_records)
                    .map(|(i, eval)| Record {
                        example: &self.train[*i],
                        eval,
                    })
                    .collect();
                new_lessons.extend(reflection::lessons(&records));
                match &self.cfg.reflection {
                    None => (Some(reflection::rule_based(&current, &records)), None),
                    Some(_) => (
                        None,
                        Some(super::steer::with_feedback(
                            reflection::with_memory(
                                reflection::reflection_prompt(&current, &records),
                                &memory,
                            ),
                            &feedback,
                        )),
                    ),
                }
            };
            live.push(Proposal {
                parent,
                batch,
                parent_candidate,
                parent_records,
                component,
                rule_text,
                prompt,
                cost,
            });
        }
        if live.is_empty() {
            return Ok(Outcome::Idle);
        }
        // Lessons come from the feedback reflection reads (the original's order: between
        // reflection_started and reflection_finished).
        for lesson in new_lessons {
            if !self.state.lessons.contains(&lesson) {
                self.state.lessons.push(lesson);
            }
        }
        let overflow = self.state.lessons.len().saturating_sub(MAX_LESSONS);
        self.state.lessons.drain(..overflow);
        self.emit_lessons().await?;
        // 4. Reflections, together.
        let prompts: Vec<Option<String>> = live.iter().map(|p| p.prompt.clone()).collect();
        let (answers, reflection_usd) = self.reflect_many(&prompts).await?;
        for (p, usd) in live.iter_mut().zip(reflection_usd) {
            p.cost.reflection_usd += usd;
        }
        let mut children: Vec<(Candidate, bool, String)> = Vec::with_capacity(live.len());
        for (p, answer) in live.iter().zip(answers) {
            let current = p
                .parent_candidate
                .get(&p.component)
                .cloned()
                .unwrap_or_default();
            let text = match (&p.rule_text, answer) {
                (Some(text), _) => text.clone(),
                (None, Some(answer)) => {
                    let text = reflection::parse_fenced(&answer);
                    if text.is_empty() { current } else { text }
                }
                (None, None) => current,
            };
            self.emit(EventPayload::ReflectionFinished(ReflectionFinished {
                generation,
                component: p.component.clone(),
                rule_based: p.rule_text.is_some(),
                r#gen: generation,
            }))
            .await?;
            self.emit(EventPayload::CandidateProposed(CandidateProposed {
                generation,
                parent_ids: vec![p.parent as u32],
                component: p.component.clone(),
                text: text.clone(),
            }))
            .await?;
            let mut child = p.parent_candidate.clone();
            child.insert(p.component.clone(), text.clone());
            let repeat = !self.state.proposed.insert(candidate_hash(&child));
            children.push((child, repeat, text));
        }
        // 5. The children on the same minibatches, together.
        let items: Vec<(&Candidate, bool, &[usize])> = live
            .iter()
            .zip(&children)
            .map(|(p, (child, _, _))| (child, false, p.batch.as_slice()))
            .collect();
        let child_records = self.evaluate_many(&items).await?;
        for (p, spend) in live.iter_mut().zip(std::mem::take(&mut self.item_spend)) {
            add(&mut p.cost, &spend);
        }
        // 6. Acceptance in proposal order; the accepted children are validated together;
        //    then the verdicts, in proposal order.
        let mut judged: Vec<Judged> = Vec::with_capacity(live.len());
        for ((p, (child, repeat, text)), records) in
            live.into_iter().zip(children).zip(child_records)
        {
            let parent_scores: Vec<f64> = p.parent_records.iter().map(|r| r.score).collect();
            let child_scores: Vec<f64> = records.iter().map(|r| r.score).collect();
            let (before, after) = (
                parent_scores.iter().sum::<f64>(),
                child_scores.iter().sum::<f64>(),
            );
            // A child whose text is already in the pool (the parent itself or any earlier
            // candidate), or is a child of this round accepted before it, adds nothing: its
            // evaluations come from the cache, so accepting it again would count as progress
            // for free and the no-progress stop would never fire.
            let already_in_pool = self.state.candidates.contains(&child)
                || judged.iter().any(|j| j.accepted && j.child == child);
            let accepted = match self.cfg.acceptance {
                Acceptance::StrictImprovement => after > before,
                Acceptance::ImprovementOrEqual => after >= before,
            } && !already_in_pool;
            judged.push(Judged {
                p,
                child,
                repeat,
                text,
                parent_scores,
                child_scores,
                before,
                after,
                already_in_pool,
                accepted,
            });
        }
        let to_validate: Vec<(&Candidate, &[usize])> = judged
            .iter()
            .filter(|j| j.accepted)
            .map(|j| (&j.child, std::slice::from_ref(&j.p.parent)))
            .collect();
        let mut validated = self.validate_children(&to_validate).await?.into_iter();
        let mut outcome = Outcome::Idle;
        for j in judged {
            let validation = if j.accepted { validated.next() } else { None };
            if self.verdict(generation, j, validation).await? == Outcome::Progress {
                outcome = Outcome::Progress;
            }
        }
        Ok(outcome)
    }

    fn ids(&self, batch: &[usize]) -> Vec<String> {
        batch.iter().map(|i| self.train[*i].id.clone()).collect()
    }

    /// Records one proposal's verdict: rejected on its minibatch, rejected by its validation,
    /// or added to the pool.
    async fn verdict(
        &mut self,
        generation: u32,
        j: Judged,
        validation: Option<ValidatedChild>,
    ) -> Result<Outcome, Halt> {
        let Judged {
            p,
            child,
            repeat,
            text,
            parent_scores,
            child_scores,
            before,
            after,
            already_in_pool,
            accepted,
        } = j;
        let parent = p.parent;
        self.emit(EventPayload::MinibatchEvaluated(MinibatchEvaluated {
            generation,
            candidate_id: parent as u32,
            example_ids: self.ids(&p.batch),
            parent_scores,
            child_scores,
        }))
        .await?;
        let rejected = Rejected {
            parent,
            component: p.component.clone(),
            text,
            before,
            after,
            size: p.batch.len(),
        };
        let mut verdict = CandidateVerdict {
            generation,
            candidate_id: None,
            parent_ids: vec![parent as u32],
            before,
            after,
            cost: p.cost.clone(),
        };
        let Some((validated, validation_cost)) = validation.filter(|_| accepted) else {
            if !already_in_pool {
                self.remember(rejected);
            }
            self.state.proposals.push(verdict.clone());
            self.emit(EventPayload::CandidateRejected(verdict)).await?;
            return Ok(if repeat || already_in_pool {
                Outcome::Idle
            } else {
                Outcome::Progress
            });
        };
        add(&mut verdict.cost, &validation_cost);
        let Some((scores, missing)) = validated else {
            self.remember(rejected);
            self.state.proposals.push(verdict.clone());
            self.emit(EventPayload::CandidateRejected(verdict)).await?;
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
        self.forget_validation(id);
        verdict.candidate_id = Some(id as u32);
        self.state.proposals.push(verdict.clone());
        self.emit(EventPayload::CandidateAccepted(verdict)).await?;
        self.state
            .unannounced
            .push((id, validation_cost.task_usd + validation_cost.judge_usd));
        if self.cfg.use_merge && self.state.merge_attempts < self.cfg.max_merges {
            self.state.merges_due += 1;
        }
        self.state.last_accepted = true;
        Ok(Outcome::Progress)
    }
}

use super::engine::add_cost as add;
