//! The payloads of GEPA and eval events, wire ↔ domain, each naming every field on both sides
//! (`wire_fields!`). [`super::events`] dispatches to these in one exhaustive match each way.

use super::pb;
use crate::domain::gepa::{
    CandidateProposed, CandidateScored, EvalFinished, EvalStarted, FrontierUpdated,
    GenerationStarted, JudgeScored, LessonsUpdated, MergeAttempted, MinibatchEvaluated,
    ParentSelected, ReflectionFinished, ReflectionStarted,
};

wire_fields!(
    pb::GenerationStarted,
    GenerationStarted {
        same: [generation, r#gen, population_size],
        message: [budget],
    }
);

wire_fields!(
    pb::ParentSelected,
    ParentSelected {
        same: [generation, candidate_id, selector, score],
    }
);

wire_fields!(
    pb::MinibatchEvaluated,
    MinibatchEvaluated {
        same: [
            generation,
            candidate_id,
            example_ids,
            parent_scores,
            child_scores
        ],
    }
);

wire_fields!(
    pb::ReflectionStarted,
    ReflectionStarted {
        same: [generation, candidate_id, component, r#gen, feedback],
    }
);

wire_fields!(
    pb::ReflectionFinished,
    ReflectionFinished {
        same: [generation, component, rule_based, r#gen],
    }
);

wire_fields!(
    pb::CandidateProposed,
    CandidateProposed {
        same: [generation, parent_ids, component, text],
    }
);

wire_fields!(
    pb::CandidateScored,
    CandidateScored {
        same: [candidate_id, score, cost, len],
        each: [val_scores],
    }
);

wire_fields!(
    pb::JudgeScored,
    JudgeScored {
        same: [example_id, score, id, judge_score],
    }
);

wire_fields!(
    pb::FrontierUpdated,
    FrontierUpdated {
        same: [best_id, best_score, r#gen, size, best],
        each: [frontier],
    }
);

wire_fields!(
    pb::LessonsUpdated,
    LessonsUpdated {
        same: [lessons, count, sample],
    }
);

wire_fields!(
    pb::MergeAttempted,
    MergeAttempted {
        same: [
            generation,
            parent_ids,
            ancestor_id,
            before,
            after,
            accepted,
            attempts,
        ],
    }
);

wire_fields!(
    pb::EvalStarted,
    EvalStarted {
        same: [name, total, task, examples],
    }
);

wire_fields!(
    pb::EvalFinished,
    EvalFinished {
        same: [score, count],
    }
);
