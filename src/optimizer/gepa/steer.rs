//! The engine's side of steering (`crate::domain::steering`): at the top of an iteration it
//! takes what a human queued — feedback joins the checkpointed state and is shown to every later
//! reflection on its component; a hand-written candidate is validated like an accepted child and
//! joins the pool with origin `human`.

use super::engine::{Engine, Halt};
use super::state::{Candidate, Origin};
use crate::domain::EventPayload;
use crate::domain::gepa::{CandidateProposed, CandidateVerdict};
use crate::domain::steering::{self, HumanCandidate};

/// Appends human feedback to a reflection prompt.
pub fn with_feedback(prompt: String, feedback: &[String]) -> String {
    if feedback.is_empty() {
        return prompt;
    }
    let mut out = prompt;
    out.push_str(
        "\n\nA human reviewing this optimization gave the following feedback; follow it when you write the new instruction:",
    );
    for note in feedback {
        out.push_str("\n- ");
        out.push_str(note.trim());
    }
    out
}

impl Engine<'_> {
    /// The human feedback that applies to `component`.
    pub(super) fn feedback_for(&self, component: &str) -> Vec<String> {
        steering::feedback_for(&self.state.human_feedback, component)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Takes what was queued by `SteerJob` since the last iteration.
    pub(super) async fn adopt_steering(&mut self) -> Result<(), Halt> {
        let (feedback, candidates) = self.ctx.steering.drain();
        if !feedback.is_empty() {
            self.state.human_feedback.extend(feedback);
            let overflow = self
                .state
                .human_feedback
                .len()
                .saturating_sub(steering::MAX_FEEDBACK);
            self.state.human_feedback.drain(..overflow);
        }
        for candidate in candidates {
            self.adopt_candidate(candidate).await?;
        }
        Ok(())
    }

    async fn adopt_candidate(&mut self, human: HumanCandidate) -> Result<(), Halt> {
        let cost_before = self.budget.spent.cost_usd;
        let calls_before = self.budget.spent.metric_calls;
        let parent = human.parent_id as usize;
        let Some(parent_candidate) = self.state.candidates.get(parent).cloned() else {
            tracing::warn!(job_id = %self.ctx.job_id, parent, "human candidate names no candidate of the pool");
            return Ok(());
        };
        let mut child: Candidate = parent_candidate;
        let mut changed = Vec::new();
        for (name, text) in human.components {
            if !self.cfg.components.contains(&name) {
                tracing::warn!(job_id = %self.ctx.job_id, component = %name, "human candidate names an unknown component");
                continue;
            }
            changed.push((name.clone(), text.clone()));
            child.insert(name, text);
        }
        if changed.is_empty() || self.state.candidates.contains(&child) {
            return Ok(());
        }
        let generation = self.state.generation;
        for (component, text) in changed {
            self.emit(EventPayload::CandidateProposed(CandidateProposed {
                generation,
                parent_ids: vec![parent as u32],
                component,
                text,
            }))
            .await?;
        }
        let parent_score = self.state.aggregate(parent);
        let Some((scores, missing)) = self.validate_child(&child, &[parent]).await? else {
            self.emit(EventPayload::CandidateRejected(CandidateVerdict {
                generation,
                candidate_id: None,
                parent_ids: vec![parent as u32],
                before: parent_score,
                after: 0.0,
                cost: crate::domain::gepa::ProposalCost {
                    metric_calls: self.budget.spent.metric_calls - calls_before,
                    task_usd: self.budget.spent.cost_usd - cost_before,
                    ..Default::default()
                },
            }))
            .await?;
            return Ok(());
        };
        let id = self.state.add(
            child,
            vec![parent],
            Origin::Human,
            scores,
            self.budget.spent.metric_calls,
        );
        self.state.set_imputed(id, missing);
        self.forget_validation(id);
        let score = self.state.aggregate(id);
        self.emit(EventPayload::CandidateAccepted(CandidateVerdict {
            generation,
            candidate_id: Some(id as u32),
            parent_ids: vec![parent as u32],
            before: parent_score,
            after: score,
            cost: crate::domain::gepa::ProposalCost {
                metric_calls: self.budget.spent.metric_calls - calls_before,
                task_usd: self.budget.spent.cost_usd - cost_before,
                ..Default::default()
            },
        }))
        .await?;
        // Announced with the next generation's scoring, as reflection children are.
        self.state
            .unannounced
            .push((id, self.budget.spent.cost_usd - cost_before));
        self.state.proposed.insert(super::state::candidate_hash(
            &self.state.candidates[id].clone(),
        ));
        Ok(())
    }
}
