//! The payloads of GEPA and eval events, wire ↔ domain. Most have the same fields on both sides
//! ([`same_fields!`]); the others name theirs in full. [`super::events`] dispatches to these
//! in one exhaustive match each way.

use super::pb;
use crate::domain::gepa::{
    CandidateProposed, CandidateScored, EvalFinished, EvalStarted, FrontierUpdated,
    GenerationStarted, JudgeScored, LessonsUpdated, MergeAttempted, MinibatchEvaluated,
    ParentSelected, ReflectionFinished, ReflectionStarted,
};

impl From<GenerationStarted> for pb::GenerationStarted {
    fn from(e: GenerationStarted) -> Self {
        let GenerationStarted {
            generation,
            budget,
            r#gen,
            population_size,
        } = e;
        pb::GenerationStarted {
            generation,
            budget: Some(budget.into()),
            r#gen,
            population_size,
        }
    }
}

impl From<pb::GenerationStarted> for GenerationStarted {
    fn from(e: pb::GenerationStarted) -> Self {
        let pb::GenerationStarted {
            generation,
            budget,
            r#gen,
            population_size,
        } = e;
        GenerationStarted {
            generation,
            budget: budget.unwrap_or_default().into(),
            r#gen,
            population_size,
        }
    }
}

same_fields!(
    pb::ParentSelected,
    ParentSelected {
        generation,
        candidate_id,
        selector,
        score,
    }
);

same_fields!(
    pb::MinibatchEvaluated,
    MinibatchEvaluated {
        generation,
        candidate_id,
        example_ids,
        parent_scores,
        child_scores,
    }
);

same_fields!(
    pb::ReflectionStarted,
    ReflectionStarted {
        generation,
        candidate_id,
        component,
        r#gen,
        feedback,
    }
);

same_fields!(
    pb::ReflectionFinished,
    ReflectionFinished {
        generation,
        component,
        rule_based,
        r#gen,
    }
);

same_fields!(
    pb::CandidateProposed,
    CandidateProposed {
        generation,
        parent_ids,
        component,
        text,
    }
);

impl From<CandidateScored> for pb::CandidateScored {
    fn from(e: CandidateScored) -> Self {
        let CandidateScored {
            candidate_id,
            score,
            val_scores,
            cost,
            len,
        } = e;
        pb::CandidateScored {
            candidate_id,
            score,
            val_scores: val_scores.into_iter().collect(),
            cost,
            len,
        }
    }
}

impl From<pb::CandidateScored> for CandidateScored {
    fn from(e: pb::CandidateScored) -> Self {
        let pb::CandidateScored {
            candidate_id,
            score,
            val_scores,
            cost,
            len,
        } = e;
        CandidateScored {
            candidate_id,
            score,
            val_scores: val_scores.into_iter().collect(),
            cost,
            len,
        }
    }
}

same_fields!(
    pb::JudgeScored,
    JudgeScored {
        example_id,
        score,
        id,
        judge_score,
    }
);

impl From<FrontierUpdated> for pb::FrontierUpdated {
    fn from(e: FrontierUpdated) -> Self {
        let FrontierUpdated {
            frontier,
            best_id,
            best_score,
            r#gen,
            size,
            best,
        } = e;
        pb::FrontierUpdated {
            frontier: frontier.into_iter().map(Into::into).collect(),
            best_id,
            best_score,
            r#gen,
            size,
            best,
        }
    }
}

impl From<pb::FrontierUpdated> for FrontierUpdated {
    fn from(e: pb::FrontierUpdated) -> Self {
        let pb::FrontierUpdated {
            frontier,
            best_id,
            best_score,
            r#gen,
            size,
            best,
        } = e;
        FrontierUpdated {
            frontier: frontier.into_iter().map(Into::into).collect(),
            best_id,
            best_score,
            r#gen,
            size,
            best,
        }
    }
}

same_fields!(
    pb::LessonsUpdated,
    LessonsUpdated {
        lessons,
        count,
        sample,
    }
);

same_fields!(
    pb::MergeAttempted,
    MergeAttempted {
        generation,
        parent_ids,
        ancestor_id,
        before,
        after,
        accepted,
        attempts,
    }
);

same_fields!(
    pb::EvalStarted,
    EvalStarted {
        name,
        total,
        task,
        examples,
    }
);

same_fields!(pb::EvalFinished, EvalFinished { score, count });
