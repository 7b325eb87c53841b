//! Results and the shapes inside them (scores, budgets, frontiers, candidates, verdicts), wire
//! ↔ domain. Each `From` names every field on both sides: a field added to either type does
//! not compile until it is mapped here.

use super::{Missing, pb};
use crate::domain::event::ObjectiveScores;
use crate::domain::gepa::{
    BudgetUsage, CandidateInfo, CandidateVerdict, EvalCase, EvalResult, FrontierEntry, GepaResult,
    ProposalCost, TestReport,
};
use crate::domain::job::{DefaultResult, ErrorResult, JobResult};

// ---------- the result ----------

impl From<JobResult> for pb::JobResult {
    fn from(result: JobResult) -> Self {
        use pb::job_result::Kind as K;
        let kind = match result {
            JobResult::Default(r) => K::DefaultResult(r.into()),
            JobResult::Error(ErrorResult { error }) => K::Error(pb::ErrorResult { error }),
            JobResult::Gepa(r) => K::Gepa((*r).into()),
            JobResult::Eval(r) => K::Eval(r.into()),
        };
        pb::JobResult { kind: Some(kind) }
    }
}

impl TryFrom<pb::JobResult> for JobResult {
    type Error = Missing;
    fn try_from(result: pb::JobResult) -> Result<Self, Missing> {
        use pb::job_result::Kind as K;
        let pb::JobResult { kind } = result;
        Ok(match kind.ok_or(Missing("result.kind"))? {
            K::DefaultResult(r) => JobResult::Default(r.into()),
            K::Error(pb::ErrorResult { error }) => JobResult::Error(ErrorResult { error }),
            K::Gepa(r) => JobResult::Gepa(Box::new(r.into())),
            K::Eval(r) => JobResult::Eval(r.into()),
        })
    }
}

impl From<DefaultResult> for pb::DefaultResult {
    fn from(r: DefaultResult) -> Self {
        let DefaultResult {
            proposal,
            lessons,
            scores,
            target_model,
            rubric,
        } = r;
        pb::DefaultResult {
            proposal,
            lessons,
            scores: Some(scores.into()),
            target_model,
            rubric,
        }
    }
}

impl From<pb::DefaultResult> for DefaultResult {
    fn from(r: pb::DefaultResult) -> Self {
        let pb::DefaultResult {
            proposal,
            lessons,
            scores,
            target_model,
            rubric,
        } = r;
        DefaultResult {
            proposal,
            lessons,
            scores: scores.unwrap_or_default().into(),
            target_model,
            rubric,
        }
    }
}

impl From<ObjectiveScores> for pb::Scores {
    fn from(scores: ObjectiveScores) -> Self {
        let ObjectiveScores {
            brevity,
            diversity,
            coverage,
            judge,
        } = scores;
        pb::Scores {
            brevity,
            diversity,
            coverage,
            judge: judge.into_iter().collect(),
        }
    }
}

impl From<pb::Scores> for ObjectiveScores {
    fn from(scores: pb::Scores) -> Self {
        let pb::Scores {
            brevity,
            diversity,
            coverage,
            judge,
        } = scores;
        ObjectiveScores {
            brevity,
            diversity,
            coverage,
            judge: judge.into_iter().collect(),
        }
    }
}

// ---------- GEPA and eval results ----------

impl From<GepaResult> for pb::GepaResult {
    fn from(r: GepaResult) -> Self {
        let GepaResult {
            best_prompt,
            frontier,
            lessons,
            best_candidate_id,
            best_candidate,
            best_score,
            seed_score,
            candidates,
            generations,
            budget,
            stop_reason,
            error,
            test,
            proposals,
        } = r;
        pb::GepaResult {
            best_prompt,
            frontier: frontier.into_iter().map(Into::into).collect(),
            lessons,
            best_candidate_id,
            best_candidate: best_candidate.into_iter().collect(),
            best_score,
            seed_score,
            candidates: candidates.into_iter().map(Into::into).collect(),
            generations,
            budget: Some(budget.into()),
            stop_reason,
            test: test.map(Into::into),
            error,
            proposals: proposals.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::GepaResult> for GepaResult {
    fn from(r: pb::GepaResult) -> Self {
        let pb::GepaResult {
            best_prompt,
            frontier,
            lessons,
            best_candidate_id,
            best_candidate,
            best_score,
            seed_score,
            candidates,
            generations,
            budget,
            stop_reason,
            test,
            error,
            proposals,
        } = r;
        GepaResult {
            best_prompt,
            frontier: frontier.into_iter().map(Into::into).collect(),
            lessons,
            best_candidate_id,
            best_candidate: best_candidate.into_iter().collect(),
            best_score,
            seed_score,
            candidates: candidates.into_iter().map(Into::into).collect(),
            generations,
            budget: budget.unwrap_or_default().into(),
            stop_reason,
            error,
            test: test.map(Into::into),
            proposals: proposals.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<EvalResult> for pb::EvalResult {
    fn from(r: EvalResult) -> Self {
        let EvalResult {
            name,
            score,
            count,
            cases,
            metric_calls_used,
            cost_usd,
        } = r;
        pb::EvalResult {
            name,
            score,
            count,
            cases: cases.into_iter().map(Into::into).collect(),
            metric_calls_used,
            cost_usd,
        }
    }
}

impl From<pb::EvalResult> for EvalResult {
    fn from(r: pb::EvalResult) -> Self {
        let pb::EvalResult {
            name,
            score,
            count,
            cases,
            metric_calls_used,
            cost_usd,
        } = r;
        EvalResult {
            name,
            score,
            count,
            cases: cases.into_iter().map(Into::into).collect(),
            metric_calls_used,
            cost_usd,
        }
    }
}

same_fields!(
    pb::EvalCase,
    EvalCase {
        example_id,
        output,
        score,
        feedback,
    }
);

same_fields!(
    pb::TestReport,
    TestReport {
        count,
        seed_score,
        best_score,
        best_candidate_id,
        metric_calls,
    }
);

// ---------- shapes shared by results and events ----------

same_fields!(pb::FrontierEntry, FrontierEntry { id, score });

same_fields!(
    pb::BudgetUsage,
    BudgetUsage {
        generation,
        metric_calls_used,
        metric_calls_left,
        cost_usd,
        cost_left_usd,
        tokens_used,
        tokens_left,
        rollouts,
    }
);

same_fields!(
    pb::ProposalCost,
    ProposalCost {
        metric_calls,
        task_usd,
        reflection_usd,
        judge_usd,
    }
);

impl From<CandidateInfo> for pb::CandidateInfo {
    fn from(c: CandidateInfo) -> Self {
        let CandidateInfo {
            id,
            parents,
            origin,
            components,
            score,
            val_scores,
            discovered_at_metric_calls,
            validated_on,
        } = c;
        pb::CandidateInfo {
            id,
            parents,
            origin,
            components: components.into_iter().collect(),
            score,
            val_scores: val_scores.into_iter().collect(),
            discovered_at_metric_calls,
            validated_on,
        }
    }
}

impl From<pb::CandidateInfo> for CandidateInfo {
    fn from(c: pb::CandidateInfo) -> Self {
        let pb::CandidateInfo {
            id,
            parents,
            origin,
            components,
            score,
            val_scores,
            discovered_at_metric_calls,
            validated_on,
        } = c;
        CandidateInfo {
            id,
            parents,
            origin,
            components: components.into_iter().collect(),
            score,
            val_scores: val_scores.into_iter().collect(),
            discovered_at_metric_calls,
            validated_on,
        }
    }
}

/// One verdict has two wire names with the same fields: `ProposalVerdict` in a result's ledger
/// and `CandidateVerdict` in `candidate_accepted`/`candidate_rejected` events.
macro_rules! verdict_conversions {
    ($wire:path) => {
        impl From<CandidateVerdict> for $wire {
            fn from(v: CandidateVerdict) -> Self {
                let CandidateVerdict {
                    generation,
                    candidate_id,
                    parent_ids,
                    before,
                    after,
                    cost,
                } = v;
                $wire {
                    generation,
                    candidate_id,
                    parent_ids,
                    before,
                    after,
                    cost: Some(cost.into()),
                }
            }
        }

        impl From<$wire> for CandidateVerdict {
            fn from(v: $wire) -> Self {
                let $wire {
                    generation,
                    candidate_id,
                    parent_ids,
                    before,
                    after,
                    cost,
                } = v;
                CandidateVerdict {
                    generation,
                    candidate_id,
                    parent_ids,
                    before,
                    after,
                    cost: cost.unwrap_or_default().into(),
                }
            }
        }
    };
}

verdict_conversions!(pb::ProposalVerdict);
verdict_conversions!(pb::CandidateVerdict);
