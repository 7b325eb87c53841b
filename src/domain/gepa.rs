//! GEPA's request options, progress events and result, as plain data with snake_case JSON.
//! The engine lives in `optimizer::gepa`; this module is only the shapes the transports carry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Name of the candidate component the request's `prompt` fills.
pub const DEFAULT_COMPONENT: &str = "system_prompt";

/// Built-in dataset packs, plus `examples` (the stored examples).
pub const DATASET_NAMES: &[&str] = &[
    "toy_qa",
    "toy_clf",
    "world_case",
    "world_wrap",
    "world_join",
    "world_mixed",
    "examples",
];

/// Metric names a request may use (`regex` is an alias of `regex_pass`).
pub const METRIC_NAMES: &[&str] = &[
    "strict_match",
    "exact_match",
    "contains",
    "regex_pass",
    "regex",
    "token_f1",
    "json_schema",
    "llm_judge",
];

/// How the next parent is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateSelector {
    /// Frequency-weighted sampling from the per-instance Pareto frontier (the paper's default).
    #[default]
    Pareto,
    /// The best mean validation score.
    CurrentBest,
    /// Best with probability 0.9, otherwise uniform.
    EpsilonGreedy,
}

/// When a child beats its parent on the minibatch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acceptance {
    /// sum(child) > sum(parent) (the reference's default).
    #[default]
    StrictImprovement,
    /// sum(child) >= sum(parent).
    ImprovementOrEqual,
}

/// How an accepted child is scored on the validation (Pareto) set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationPolicy {
    /// Every validation id (the reference's default). When the budget no longer covers them all,
    /// the ids that fit are scored and the child is compared with its parent on those.
    Full,
    /// The default: a random subsample first (a fifth of the set, at least 5); only a child at
    /// least as good as its parent there is promoted to the rest of the set (children that
    /// won a lucky minibatch cost a fifth of a validation instead of all of it).
    #[default]
    Subsample,
}

/// Examples per reflective minibatch when a request names none. The reference library's default
/// is 3; with the strict 0/1 metrics GEPA is run with, a 3-example minibatch is often all-correct
/// (the iteration is skipped, its calls spent) and shows the reflection too few categories at once.
/// 4 beat 3 at every budget on the offline world (docs/gepa.md, "Minibatch size").
pub const DEFAULT_MINIBATCH_SIZE: u32 = 4;

/// GEPA knobs of one request; every field has a default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GepaOptions {
    /// Examples per reflective minibatch (default [`DEFAULT_MINIBATCH_SIZE`]).
    pub minibatch_size: Option<u32>,
    pub candidate_selector: CandidateSelector,
    pub acceptance: Acceptance,
    /// System-aware merge (default on).
    pub use_merge: Option<bool>,
    /// Merge attempts allowed, counting every attempt (default 5).
    pub max_merge_invocations: Option<u32>,
    /// Extra named components evolved next to `prompt` (which is `system_prompt`).
    pub components: BTreeMap<String, String>,
    pub validation_policy: ValidationPolicy,
    /// Reflective proposals per generation, run together (default 2). Results do not depend on
    /// timing or on the server's concurrency.
    pub parallel_proposals: Option<u32>,
    /// Reproduces the engine before issue 20 (for benchmarks): an iteration starts only when its
    /// worst case (2 × minibatch + the validation set) fits, and reflection has no memory.
    pub legacy_budget: bool,
}

/// One frontier member as the original reported it: `{id, score}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierEntry {
    pub id: u32,
    /// Mean validation score.
    pub score: f64,
}

/// Budget spent and left.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetUsage {
    pub generation: u32,
    pub metric_calls_used: u64,
    pub metric_calls_left: Option<u64>,
    /// USD over task, reflection and judge calls.
    pub cost_usd: f64,
    pub cost_left_usd: Option<f64>,
    pub tokens_used: u64,
    pub tokens_left: Option<u64>,
    /// The original's name for the metric calls used.
    #[serde(default)]
    pub rollouts: u64,
}

/// One candidate of the pool with its lineage and per-instance validation scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateInfo {
    pub id: u32,
    pub parents: Vec<u32>,
    /// `seed`, `reflection` or `merge`.
    pub origin: String,
    pub components: BTreeMap<String, String>,
    pub score: f64,
    pub val_scores: BTreeMap<String, f64>,
    /// Metric calls spent when it was found.
    pub discovered_at_metric_calls: u64,
    /// Validation ids actually scored (fewer than the set when the budget ran short: the others
    /// carry its parent's scores as estimates).
    #[serde(default)]
    pub validated_on: u32,
}

/// Result of a `mode: "gepa"` job. `best_prompt`, `frontier` and `lessons` are the original's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GepaResult {
    pub best_prompt: String,
    pub frontier: Vec<FrontierEntry>,
    pub lessons: Vec<String>,
    pub best_candidate_id: u32,
    pub best_candidate: BTreeMap<String, String>,
    pub best_score: f64,
    pub seed_score: f64,
    pub candidates: Vec<CandidateInfo>,
    pub generations: u32,
    pub budget: BudgetUsage,
    /// Why the search ended (`max_metric_calls`, `max_generations`, `max_cost`, …).
    pub stop_reason: String,
    /// Set when the job ended without finishing (`cancelled`, `shutdown`, or the failure's
    /// error code): the result is then the best found so far. Absent on a finished job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seed vs best on the held-out `test` split, when the request had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestReport>,
    /// The cost ledger: every proposal's verdict and what it spent, in order.
    #[serde(default)]
    pub proposals: Vec<CandidateVerdict>,
}

/// Seed vs best on the held-out `test` split, scored after the search and outside its budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestReport {
    pub count: u32,
    pub seed_score: f64,
    pub best_score: f64,
    pub best_candidate_id: u32,
    /// Metric calls the test scoring used (not counted in `budget`).
    pub metric_calls: u64,
}

/// Result of an eval job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub name: String,
    pub score: f64,
    pub count: u32,
    pub cases: Vec<EvalCase>,
    pub metric_calls_used: u64,
    pub cost_usd: f64,
}

/// One scored case of an eval job (also the `eval_case` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalCase {
    pub example_id: String,
    pub output: String,
    pub score: f64,
    pub feedback: String,
}

/// GEPA progress events (the `data` objects).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationStarted {
    pub generation: u32,
    pub budget: BudgetUsage,
    /// The original's fields: the generation and the pool size at its start.
    #[serde(default)]
    pub r#gen: u32,
    #[serde(default)]
    pub population_size: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentSelected {
    pub generation: u32,
    pub candidate_id: u32,
    pub selector: String,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinibatchEvaluated {
    pub generation: u32,
    pub candidate_id: u32,
    pub example_ids: Vec<String>,
    /// The parent's scores on the minibatch.
    pub parent_scores: Vec<f64>,
    /// The child's scores on the same minibatch (empty when no child was proposed).
    pub child_scores: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReflectionStarted {
    pub generation: u32,
    pub candidate_id: u32,
    pub component: String,
    /// The original's name for `generation`.
    #[serde(default)]
    pub r#gen: u32,
    /// Human feedback (`SteerJob`) this reflection receives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReflectionFinished {
    pub generation: u32,
    pub component: String,
    /// True when the rule-based operators stood in for a reflection model.
    pub rule_based: bool,
    /// The original's name for `generation`.
    #[serde(default)]
    pub r#gen: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateProposed {
    pub generation: u32,
    pub parent_ids: Vec<u32>,
    pub component: String,
    pub text: String,
}

/// `candidate_accepted` and `candidate_rejected`: minibatch sums before (parent) and after,
/// and what the proposal cost. The result's `proposals` is the ledger of every verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateVerdict {
    pub generation: u32,
    /// The new candidate's id when accepted.
    pub candidate_id: Option<u32>,
    pub parent_ids: Vec<u32>,
    pub before: f64,
    pub after: f64,
    #[serde(default)]
    pub cost: ProposalCost,
}

/// What one proposal spent: its minibatches and validation (task and judge calls) and its
/// reflection. Answers replayed from a checkpoint's memo count as free.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProposalCost {
    pub metric_calls: u64,
    pub task_usd: f64,
    pub reflection_usd: f64,
    pub judge_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateScored {
    pub candidate_id: u32,
    pub score: f64,
    pub val_scores: BTreeMap<String, f64>,
    /// The original's fields: USD spent scoring it, and the length (characters) of its prompt.
    #[serde(default)]
    pub cost: f64,
    #[serde(default)]
    pub len: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeScored {
    pub example_id: String,
    pub score: f64,
    /// The original's names for `example_id` and `score`.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub judge_score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierUpdated {
    pub frontier: Vec<FrontierEntry>,
    pub best_id: u32,
    pub best_score: f64,
    /// The original's fields: the generation, the frontier's size and the best mean score.
    #[serde(default)]
    pub r#gen: u32,
    #[serde(default)]
    pub size: u32,
    #[serde(default)]
    pub best: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LessonsUpdated {
    pub lessons: Vec<String>,
    /// The original's fields: how many lessons, and the latest few.
    #[serde(default)]
    pub count: u32,
    #[serde(default)]
    pub sample: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeAttempted {
    pub generation: u32,
    pub parent_ids: Vec<u32>,
    pub ancestor_id: u32,
    pub before: f64,
    pub after: f64,
    pub accepted: bool,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalStarted {
    /// The run's label (the request's `name`, else the dataset's).
    pub name: String,
    pub total: u32,
    /// The original's `task`: the request's prompt, else the first example's input.
    #[serde(default)]
    pub task: String,
    /// The original's `examples` (the count, as `total`).
    #[serde(default)]
    pub examples: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalFinished {
    pub score: f64,
    pub count: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventPayload, JobResult};

    fn result() -> GepaResult {
        GepaResult {
            best_prompt: "p".into(),
            frontier: vec![FrontierEntry { id: 1, score: 0.5 }],
            lessons: vec!["l".into()],
            best_candidate_id: 1,
            best_candidate: [(DEFAULT_COMPONENT.to_string(), "p".to_string())].into(),
            best_score: 0.5,
            seed_score: 0.25,
            candidates: Vec::new(),
            generations: 3,
            budget: BudgetUsage::default(),
            stop_reason: "max_metric_calls".into(),
            test: None,
            error: None,
            proposals: Vec::new(),
        }
    }

    #[test]
    fn gepa_result_json_keeps_the_original_keys_and_round_trips_untagged() {
        let r = JobResult::Gepa(Box::new(result()));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["best_prompt"], "p");
        assert_eq!(
            json["frontier"],
            serde_json::json!([{"id": 1, "score": 0.5}])
        );
        assert_eq!(json["lessons"], serde_json::json!(["l"]));
        let back: JobResult = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        // The finished event's data is the result itself.
        let finished = EventPayload::Finished(r.clone());
        let again = EventPayload::from_parts("finished", finished.data_json()).unwrap();
        assert_eq!(again, finished);
    }

    #[test]
    fn gepa_events_have_snake_case_names_and_data() {
        let event = EventPayload::CandidateAccepted(CandidateVerdict {
            generation: 2,
            candidate_id: Some(3),
            parent_ids: vec![0],
            before: 1.0,
            after: 2.0,
            cost: ProposalCost::default(),
        });
        assert_eq!(event.type_name(), "candidate_accepted");
        let data = event.data_json();
        assert_eq!(data["parent_ids"], serde_json::json!([0]));
        assert_eq!(
            EventPayload::from_parts("candidate_accepted", data).unwrap(),
            event
        );
        let budget = EventPayload::BudgetProgress(BudgetUsage {
            metric_calls_used: 5,
            metric_calls_left: Some(7),
            ..BudgetUsage::default()
        });
        assert_eq!(budget.type_name(), "budget_progress");
        assert_eq!(budget.data_json()["metric_calls_left"], 7);
    }
}
