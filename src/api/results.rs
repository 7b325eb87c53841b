//! Results and the shapes inside them (scores, budgets, frontiers, candidates, verdicts), wire
//! ↔ domain. Each conversion names every field on both sides (`wire_fields!`, or in full for
//! the result's `oneof`): a field added to either type does not compile until it is mapped.

use super::{Missing, pb};
use crate::domain::event::ObjectiveScores;
use crate::domain::gepa::{
    BudgetUsage, CandidateInfo, CandidateVerdict, EvalCase, EvalResult, FrontierEntry, GepaResult,
    ProposalCost, TestReport,
};
use crate::domain::job::{DefaultResult, ErrorResult, JobResult};

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

wire_fields!(
    pb::DefaultResult,
    DefaultResult {
        same: [proposal, lessons, target_model, rubric],
        message: [scores],
    }
);

wire_fields!(
    pb::Scores,
    ObjectiveScores {
        same: [brevity, diversity, coverage],
        each: [judge],
    }
);

wire_fields!(
    pb::GepaResult,
    GepaResult {
        same: [
            best_prompt,
            lessons,
            best_candidate_id,
            best_score,
            seed_score,
            generations,
            stop_reason,
            error,
        ],
        each: [frontier, best_candidate, candidates, proposals],
        message: [budget],
        optional: [test],
    }
);

wire_fields!(
    pb::EvalResult,
    EvalResult {
        same: [name, score, count, metric_calls_used, cost_usd],
        each: [cases],
    }
);

wire_fields!(
    pb::EvalCase,
    EvalCase {
        same: [example_id, output, score, feedback],
    }
);

wire_fields!(
    pb::TestReport,
    TestReport {
        same: [
            count,
            seed_score,
            best_score,
            best_candidate_id,
            metric_calls
        ],
    }
);

wire_fields!(pb::FrontierEntry, FrontierEntry { same: [id, score] });

wire_fields!(
    pb::BudgetUsage,
    BudgetUsage {
        same: [
            generation,
            metric_calls_used,
            metric_calls_left,
            cost_usd,
            cost_left_usd,
            tokens_used,
            tokens_left,
            rollouts,
        ],
    }
);

wire_fields!(
    pb::CandidateInfo,
    CandidateInfo {
        same: [
            id,
            parents,
            origin,
            score,
            discovered_at_metric_calls,
            validated_on,
        ],
        each: [components, val_scores],
    }
);

wire_fields!(
    pb::ProposalCost,
    ProposalCost {
        same: [metric_calls, task_usd, reflection_usd, judge_usd],
    }
);

// One verdict has two wire names with the same fields: `ProposalVerdict` in a result's ledger
// and `CandidateVerdict` in `candidate_accepted`/`candidate_rejected` events.
wire_fields!(
    pb::ProposalVerdict,
    CandidateVerdict {
        same: [generation, candidate_id, parent_ids, before, after],
        message: [cost],
    }
);

wire_fields!(
    pb::CandidateVerdict,
    CandidateVerdict {
        same: [generation, candidate_id, parent_ids, before, after],
        message: [cost],
    }
);
