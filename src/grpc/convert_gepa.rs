//! Proto ↔ domain conversions of the GEPA and eval shapes (options, events, results). Part of
//! [`super::convert`], kept in its own file for size; `convert` calls in here.

use super::pb;
use crate::domain::EventPayload;
use crate::domain::gepa::{
    Acceptance, BudgetUsage, CandidateInfo, CandidateProposed, CandidateScored, CandidateSelector,
    CandidateVerdict, EvalCase, EvalFinished, EvalResult, EvalStarted, FrontierEntry,
    FrontierUpdated, GenerationStarted, GepaOptions, GepaResult, JudgeScored, LessonsUpdated,
    MergeAttempted, MinibatchEvaluated, ParentSelected, ReflectionFinished, ReflectionStarted,
};
use crate::domain::gepa::{ProposalCost, TestReport, ValidationPolicy};
use crate::error::FieldError;

type P = pb::job_event::Payload;

/// Decodes request options; unknown enum names become field errors.
pub fn options_from_pb(
    options: Option<pb::GepaOptions>,
    errors: &mut Vec<FieldError>,
) -> GepaOptions {
    let Some(o) = options else {
        return GepaOptions::default();
    };
    let candidate_selector = match o.candidate_selector.as_str() {
        "" | "pareto" => CandidateSelector::Pareto,
        "current_best" => CandidateSelector::CurrentBest,
        "epsilon_greedy" => CandidateSelector::EpsilonGreedy,
        _ => {
            errors.push(FieldError::new(
                &["gepa", "candidate_selector"],
                "candidate_selector must be pareto, current_best or epsilon_greedy",
            ));
            CandidateSelector::Pareto
        }
    };
    let acceptance = match o.acceptance.as_str() {
        "" | "strict_improvement" => Acceptance::StrictImprovement,
        "improvement_or_equal" => Acceptance::ImprovementOrEqual,
        _ => {
            errors.push(FieldError::new(
                &["gepa", "acceptance"],
                "acceptance must be strict_improvement or improvement_or_equal",
            ));
            Acceptance::StrictImprovement
        }
    };
    let validation_policy = match o.validation_policy.as_str() {
        "full" => ValidationPolicy::Full,
        "" | "subsample" => ValidationPolicy::Subsample,
        _ => {
            errors.push(FieldError::new(
                &["gepa", "validation_policy"],
                "validation_policy must be full or subsample",
            ));
            ValidationPolicy::Subsample
        }
    };
    GepaOptions {
        validation_policy,
        legacy_budget: o.legacy_budget,
        parallel_proposals: o.parallel_proposals,
        minibatch_size: o.minibatch_size,
        candidate_selector,
        acceptance,
        use_merge: o.use_merge,
        max_merge_invocations: o.max_merge_invocations,
        components: o.components.into_iter().collect(),
    }
}

pub fn estimate_to_pb(e: &crate::optimizer::gepa::estimate::Estimate) -> pb::EstimateJobResponse {
    pb::EstimateJobResponse {
        metric_calls: e.metric_calls,
        reflection_calls: e.reflection_calls,
        iterations: e.iterations,
        task_tokens: e.task_tokens,
        reflection_tokens: e.reflection_tokens,
        cost_usd: e.cost_usd,
        train_examples: e.train_examples,
        val_examples: e.val_examples,
    }
}

pub fn frontier_to_pb(entries: &[FrontierEntry]) -> Vec<pb::FrontierEntry> {
    entries
        .iter()
        .map(|e| pb::FrontierEntry {
            id: e.id,
            score: e.score,
        })
        .collect()
}

pub fn frontier_from_pb(entries: Vec<pb::FrontierEntry>) -> Vec<FrontierEntry> {
    entries
        .into_iter()
        .map(|e| FrontierEntry {
            id: e.id,
            score: e.score,
        })
        .collect()
}

pub fn budget_to_pb(b: &BudgetUsage) -> pb::BudgetUsage {
    pb::BudgetUsage {
        generation: b.generation,
        metric_calls_used: b.metric_calls_used,
        metric_calls_left: b.metric_calls_left,
        cost_usd: b.cost_usd,
        cost_left_usd: b.cost_left_usd,
        tokens_used: b.tokens_used,
        tokens_left: b.tokens_left,
        rollouts: b.rollouts,
    }
}

pub fn budget_from_pb(b: Option<pb::BudgetUsage>) -> BudgetUsage {
    let b = b.unwrap_or_default();
    BudgetUsage {
        generation: b.generation,
        metric_calls_used: b.metric_calls_used,
        metric_calls_left: b.metric_calls_left,
        cost_usd: b.cost_usd,
        cost_left_usd: b.cost_left_usd,
        tokens_used: b.tokens_used,
        tokens_left: b.tokens_left,
        rollouts: b.rollouts,
    }
}

fn case_to_pb(c: &EvalCase) -> pb::EvalCase {
    pb::EvalCase {
        example_id: c.example_id.clone(),
        output: c.output.clone(),
        score: c.score,
        feedback: c.feedback.clone(),
    }
}

fn case_from_pb(c: pb::EvalCase) -> EvalCase {
    EvalCase {
        example_id: c.example_id,
        output: c.output,
        score: c.score,
        feedback: c.feedback,
    }
}

pub fn gepa_result_to_pb(r: &GepaResult) -> pb::GepaResult {
    pb::GepaResult {
        best_prompt: r.best_prompt.clone(),
        frontier: frontier_to_pb(&r.frontier),
        lessons: r.lessons.clone(),
        best_candidate_id: r.best_candidate_id,
        best_candidate: r.best_candidate.clone().into_iter().collect(),
        best_score: r.best_score,
        seed_score: r.seed_score,
        candidates: r
            .candidates
            .iter()
            .map(|c| pb::CandidateInfo {
                id: c.id,
                parents: c.parents.clone(),
                origin: c.origin.clone(),
                components: c.components.clone().into_iter().collect(),
                score: c.score,
                val_scores: c.val_scores.clone().into_iter().collect(),
                discovered_at_metric_calls: c.discovered_at_metric_calls,
                validated_on: c.validated_on,
            })
            .collect(),
        generations: r.generations,
        budget: Some(budget_to_pb(&r.budget)),
        stop_reason: r.stop_reason.clone(),
        test: r.test.as_ref().map(|t| pb::TestReport {
            count: t.count,
            seed_score: t.seed_score,
            best_score: t.best_score,
            best_candidate_id: t.best_candidate_id,
            metric_calls: t.metric_calls,
        }),
        error: r.error.clone(),
        proposals: r
            .proposals
            .iter()
            .map(|v| pb::ProposalVerdict {
                generation: v.generation,
                candidate_id: v.candidate_id,
                parent_ids: v.parent_ids.clone(),
                before: v.before,
                after: v.after,
                cost: Some(cost_to_pb(&v.cost)),
            })
            .collect(),
    }
}

pub fn gepa_result_from_pb(r: pb::GepaResult) -> GepaResult {
    GepaResult {
        best_prompt: r.best_prompt,
        frontier: frontier_from_pb(r.frontier),
        lessons: r.lessons,
        best_candidate_id: r.best_candidate_id,
        best_candidate: r.best_candidate.into_iter().collect(),
        best_score: r.best_score,
        seed_score: r.seed_score,
        candidates: r
            .candidates
            .into_iter()
            .map(|c| CandidateInfo {
                id: c.id,
                parents: c.parents,
                origin: c.origin,
                components: c.components.into_iter().collect(),
                score: c.score,
                val_scores: c.val_scores.into_iter().collect(),
                discovered_at_metric_calls: c.discovered_at_metric_calls,
                validated_on: c.validated_on,
            })
            .collect(),
        generations: r.generations,
        budget: budget_from_pb(r.budget),
        stop_reason: r.stop_reason,
        test: r.test.map(|t| TestReport {
            count: t.count,
            seed_score: t.seed_score,
            best_score: t.best_score,
            best_candidate_id: t.best_candidate_id,
            metric_calls: t.metric_calls,
        }),
        error: r.error,
        proposals: r
            .proposals
            .into_iter()
            .map(|v| CandidateVerdict {
                generation: v.generation,
                candidate_id: v.candidate_id,
                parent_ids: v.parent_ids,
                before: v.before,
                after: v.after,
                cost: cost_from_pb(v.cost),
            })
            .collect(),
    }
}

pub fn eval_result_to_pb(r: &EvalResult) -> pb::EvalResult {
    pb::EvalResult {
        name: r.name.clone(),
        score: r.score,
        count: r.count,
        cases: r.cases.iter().map(case_to_pb).collect(),
        metric_calls_used: r.metric_calls_used,
        cost_usd: r.cost_usd,
    }
}

pub fn eval_result_from_pb(r: pb::EvalResult) -> EvalResult {
    EvalResult {
        name: r.name,
        score: r.score,
        count: r.count,
        cases: r.cases.into_iter().map(case_from_pb).collect(),
        metric_calls_used: r.metric_calls_used,
        cost_usd: r.cost_usd,
    }
}

fn cost_to_pb(c: &ProposalCost) -> pb::ProposalCost {
    pb::ProposalCost {
        metric_calls: c.metric_calls,
        task_usd: c.task_usd,
        reflection_usd: c.reflection_usd,
        judge_usd: c.judge_usd,
    }
}

fn cost_from_pb(c: Option<pb::ProposalCost>) -> ProposalCost {
    let c = c.unwrap_or_default();
    ProposalCost {
        metric_calls: c.metric_calls,
        task_usd: c.task_usd,
        reflection_usd: c.reflection_usd,
        judge_usd: c.judge_usd,
    }
}

fn verdict_to_pb(v: &CandidateVerdict) -> pb::CandidateVerdict {
    pb::CandidateVerdict {
        generation: v.generation,
        candidate_id: v.candidate_id,
        parent_ids: v.parent_ids.clone(),
        before: v.before,
        after: v.after,
        cost: Some(cost_to_pb(&v.cost)),
    }
}

fn verdict_from_pb(v: pb::CandidateVerdict) -> CandidateVerdict {
    CandidateVerdict {
        generation: v.generation,
        candidate_id: v.candidate_id,
        parent_ids: v.parent_ids,
        before: v.before,
        after: v.after,
        cost: cost_from_pb(v.cost),
    }
}

/// The wire payload of a GEPA or eval event; `None` for the original's events.
pub fn event_to_pb(payload: &EventPayload) -> Option<P> {
    Some(match payload {
        EventPayload::GenerationStarted(e) => P::GenerationStarted(pb::GenerationStarted {
            generation: e.generation,
            budget: Some(budget_to_pb(&e.budget)),
            r#gen: e.r#gen,
            population_size: e.population_size,
        }),
        EventPayload::ParentSelected(e) => P::ParentSelected(pb::ParentSelected {
            generation: e.generation,
            candidate_id: e.candidate_id,
            selector: e.selector.clone(),
            score: e.score,
        }),
        EventPayload::MinibatchEvaluated(e) => P::MinibatchEvaluated(pb::MinibatchEvaluated {
            generation: e.generation,
            candidate_id: e.candidate_id,
            example_ids: e.example_ids.clone(),
            parent_scores: e.parent_scores.clone(),
            child_scores: e.child_scores.clone(),
        }),
        EventPayload::ReflectionStarted(e) => P::ReflectionStarted(pb::ReflectionStarted {
            generation: e.generation,
            candidate_id: e.candidate_id,
            component: e.component.clone(),
            r#gen: e.r#gen,
            feedback: e.feedback.clone(),
        }),
        EventPayload::ReflectionFinished(e) => P::ReflectionFinished(pb::ReflectionFinished {
            generation: e.generation,
            component: e.component.clone(),
            rule_based: e.rule_based,
            r#gen: e.r#gen,
        }),
        EventPayload::CandidateProposed(e) => P::CandidateProposed(pb::CandidateProposed {
            generation: e.generation,
            parent_ids: e.parent_ids.clone(),
            component: e.component.clone(),
            text: e.text.clone(),
        }),
        EventPayload::CandidateAccepted(v) => P::CandidateAccepted(verdict_to_pb(v)),
        EventPayload::CandidateRejected(v) => P::CandidateRejected(verdict_to_pb(v)),
        EventPayload::CandidateScored(e) => P::CandidateScored(pb::CandidateScored {
            candidate_id: e.candidate_id,
            score: e.score,
            val_scores: e.val_scores.clone().into_iter().collect(),
            cost: e.cost,
            len: e.len,
        }),
        EventPayload::JudgeScored(e) => P::JudgeScored(pb::JudgeScored {
            example_id: e.example_id.clone(),
            score: e.score,
            id: e.id.clone(),
            judge_score: e.judge_score,
        }),
        EventPayload::FrontierUpdated(e) => P::FrontierUpdated(pb::FrontierUpdated {
            frontier: frontier_to_pb(&e.frontier),
            best_id: e.best_id,
            best_score: e.best_score,
            r#gen: e.r#gen,
            size: e.size,
            best: e.best,
        }),
        EventPayload::LessonsUpdated(e) => P::LessonsUpdated(pb::LessonsUpdated {
            lessons: e.lessons.clone(),
            count: e.count,
            sample: e.sample.clone(),
        }),
        EventPayload::MergeAttempted(e) => P::MergeAttempted(pb::MergeAttempted {
            generation: e.generation,
            parent_ids: e.parent_ids.clone(),
            ancestor_id: e.ancestor_id,
            before: e.before,
            after: e.after,
            accepted: e.accepted,
            attempts: e.attempts,
        }),
        EventPayload::BudgetProgress(b) => P::BudgetProgress(budget_to_pb(b)),
        EventPayload::EvalStarted(e) => P::EvalStarted(pb::EvalStarted {
            name: e.name.clone(),
            total: e.total,
            task: e.task.clone(),
            examples: e.examples,
        }),
        EventPayload::EvalCase(c) => P::EvalCase(case_to_pb(c)),
        EventPayload::EvalFinished(e) => P::EvalFinished(pb::EvalFinished {
            score: e.score,
            count: e.count,
        }),
        // The original's payloads are converted in `convert.rs`. Listed, not `_`: a payload
        // without a wire mapping is a compile error, never a silently relabelled event.
        EventPayload::Started {}
        | EventPayload::Mutation { .. }
        | EventPayload::Progress { .. }
        | EventPayload::Selected { .. }
        | EventPayload::EarlyStop { .. }
        | EventPayload::Finished(_)
        | EventPayload::Failed { .. }
        | EventPayload::Cancelled {}
        | EventPayload::Shutdown { .. }
        | EventPayload::Paused { .. }
        | EventPayload::Resumed { .. }
        | EventPayload::Suspended { .. } => return None,
    })
}

/// The domain payload of a GEPA or eval wire payload; `None` for the original's events.
pub fn event_from_pb(payload: P) -> Option<EventPayload> {
    Some(match payload {
        P::GenerationStarted(e) => EventPayload::GenerationStarted(GenerationStarted {
            generation: e.generation,
            budget: budget_from_pb(e.budget),
            r#gen: e.r#gen,
            population_size: e.population_size,
        }),
        P::ParentSelected(e) => EventPayload::ParentSelected(ParentSelected {
            generation: e.generation,
            candidate_id: e.candidate_id,
            selector: e.selector,
            score: e.score,
        }),
        P::MinibatchEvaluated(e) => EventPayload::MinibatchEvaluated(MinibatchEvaluated {
            generation: e.generation,
            candidate_id: e.candidate_id,
            example_ids: e.example_ids,
            parent_scores: e.parent_scores,
            child_scores: e.child_scores,
        }),
        P::ReflectionStarted(e) => EventPayload::ReflectionStarted(ReflectionStarted {
            generation: e.generation,
            candidate_id: e.candidate_id,
            component: e.component,
            r#gen: e.r#gen,
            feedback: e.feedback,
        }),
        P::ReflectionFinished(e) => EventPayload::ReflectionFinished(ReflectionFinished {
            generation: e.generation,
            component: e.component,
            rule_based: e.rule_based,
            r#gen: e.r#gen,
        }),
        P::CandidateProposed(e) => EventPayload::CandidateProposed(CandidateProposed {
            generation: e.generation,
            parent_ids: e.parent_ids,
            component: e.component,
            text: e.text,
        }),
        P::CandidateAccepted(v) => EventPayload::CandidateAccepted(verdict_from_pb(v)),
        P::CandidateRejected(v) => EventPayload::CandidateRejected(verdict_from_pb(v)),
        P::CandidateScored(e) => EventPayload::CandidateScored(CandidateScored {
            candidate_id: e.candidate_id,
            score: e.score,
            val_scores: e.val_scores.into_iter().collect(),
            cost: e.cost,
            len: e.len,
        }),
        P::JudgeScored(e) => EventPayload::JudgeScored(JudgeScored {
            example_id: e.example_id,
            score: e.score,
            id: e.id,
            judge_score: e.judge_score,
        }),
        P::FrontierUpdated(e) => EventPayload::FrontierUpdated(FrontierUpdated {
            frontier: frontier_from_pb(e.frontier),
            best_id: e.best_id,
            best_score: e.best_score,
            r#gen: e.r#gen,
            size: e.size,
            best: e.best,
        }),
        P::LessonsUpdated(e) => EventPayload::LessonsUpdated(LessonsUpdated {
            lessons: e.lessons,
            count: e.count,
            sample: e.sample,
        }),
        P::MergeAttempted(e) => EventPayload::MergeAttempted(MergeAttempted {
            generation: e.generation,
            parent_ids: e.parent_ids,
            ancestor_id: e.ancestor_id,
            before: e.before,
            after: e.after,
            accepted: e.accepted,
            attempts: e.attempts,
        }),
        P::BudgetProgress(b) => EventPayload::BudgetProgress(budget_from_pb(Some(b))),
        P::EvalStarted(e) => EventPayload::EvalStarted(EvalStarted {
            name: e.name,
            total: e.total,
            task: e.task,
            examples: e.examples,
        }),
        P::EvalCase(c) => EventPayload::EvalCase(case_from_pb(c)),
        P::EvalFinished(e) => EventPayload::EvalFinished(EvalFinished {
            score: e.score,
            count: e.count,
        }),
        // The original's payloads are converted in `convert.rs` (listed, not `_`, as above).
        P::Started(_)
        | P::Mutation(_)
        | P::Progress(_)
        | P::Selected(_)
        | P::EarlyStop(_)
        | P::Finished(_)
        | P::Failed(_)
        | P::Cancelled(_)
        | P::Shutdown(_)
        | P::Paused(_)
        | P::Resumed(_)
        | P::Suspended(_) => return None,
    })
}

// ---------- examples and eval requests ----------

/// The system prompt of an eval request that names none.
pub use crate::optimizer::eval_job::DEFAULT_EVAL_PROMPT;

/// Page size cap of `ListExamples`.
pub const MAX_EXAMPLES_PAGE: u32 = 500;

pub fn example_to_pb(e: &crate::domain::Example) -> pb::Example {
    pb::Example {
        id: e.id.clone(),
        input: e.input.clone(),
        expected: e.expected.clone(),
        meta: Some(super::convert::struct_from_json(&e.meta)),
    }
}

/// Decodes examples to upsert (a missing id gets a UUID). Sizes are bounded by
/// `MAX_REQUEST_BYTES` alone, as for job requests (no field has a smaller cap of its own).
pub fn examples_from_pb(
    examples: Vec<pb::Example>,
) -> Result<Vec<crate::domain::Example>, crate::error::Error> {
    let mut errors = Vec::new();
    let decoded: Vec<crate::domain::Example> = examples
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let meta = e
                .meta
                .as_ref()
                .map(super::convert::json_from_struct)
                .unwrap_or_default();
            // Level 3, as in the REST body (a bare list of examples).
            if let Some(path) = crate::domain::depth::too_deep_in_map(
                &meta,
                3,
                crate::domain::depth::MAX_JSON_DEPTH,
            ) {
                let index = i.to_string();
                let loc: Vec<String> = ["examples", &index, "meta"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(path)
                    .collect();
                let loc: Vec<&str> = loc.iter().map(String::as_str).collect();
                errors.push(FieldError::new(&loc, crate::domain::depth::message()));
            }
            crate::domain::Example {
                id: if e.id.is_empty() {
                    uuid::Uuid::new_v4().to_string()
                } else {
                    e.id
                },
                input: e.input,
                expected: e.expected,
                meta,
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(decoded)
    } else {
        Err(crate::error::Error::Validation(errors))
    }
}

/// Decodes and validates a `StartEvalRequest` into an eval job spec.
pub fn eval_request(
    req: pb::StartEvalRequest,
) -> Result<super::convert::CreateRequest, crate::error::Error> {
    use crate::domain::{DatasetRef, JobSpec, Mode};
    let prompt = if req.prompt.trim().is_empty() {
        DEFAULT_EVAL_PROMPT.to_string()
    } else {
        req.prompt
    };
    let mut spec = JobSpec::from_prompt(prompt);
    spec.mode = Mode::Eval;
    // `name` is a label (the original evaluated the stored examples whatever it said); a pack
    // is chosen with `dataset`. "examples" (not a pack) means the stored examples.
    spec.eval_name = req.name.filter(|n| !n.is_empty());
    spec.dataset = Some(match req.dataset {
        Some(d) => DatasetRef {
            name: d.name,
            split: d.split,
        },
        None => DatasetRef {
            name: "examples".into(),
            split: None,
        },
    });
    spec.metrics = req.metrics;
    spec.target_model_id = req.target_model_id.filter(|m| !m.is_empty());
    spec.seed = req.seed.filter(|s| *s != 0);
    spec.tournament_size = req.tournament_size;
    spec.recombination_rate = req.recombination_rate;
    spec.early_stop_patience = req.early_stop_patience;
    let mut errors = Vec::new();
    if req.max_examples == Some(0) {
        // Named as the eval request names it, not as the job budget it becomes.
        errors.push(FieldError::new(
            &["max_examples"],
            "max_examples must be >= 1",
        ));
    } else {
        spec.budget.max_rollouts = req.max_examples.map(u64::from);
    }
    match spec.validate(1, 1) {
        Ok(()) if errors.is_empty() => {}
        Ok(()) => return Err(crate::error::Error::Validation(errors)),
        Err(crate::error::Error::Validation(more)) => {
            errors.extend(more);
            return Err(crate::error::Error::Validation(errors));
        }
        Err(other) => return Err(other),
    }
    if req.idempotency_key.len() > 256 {
        return Err(crate::error::Error::invalid(
            &["idempotency_key"],
            "idempotency_key must be at most 256 bytes",
        ));
    }
    Ok(super::convert::CreateRequest {
        spec,
        idempotency_key: Some(req.idempotency_key).filter(|k| !k.is_empty()),
    })
}

/// One of every GEPA and eval payload, with non-default fields (for round-trip tests).
#[cfg(test)]
pub fn samples() -> Vec<EventPayload> {
    use crate::domain::JobResult;
    use crate::domain::gepa::*;
    let budget = BudgetUsage {
        generation: 2,
        metric_calls_used: 10,
        metric_calls_left: Some(5),
        cost_usd: 0.25,
        cost_left_usd: None,
        tokens_used: 99,
        tokens_left: Some(1),
        rollouts: 10,
    };
    let frontier = vec![FrontierEntry { id: 1, score: 0.5 }];
    let verdict = CandidateVerdict {
        generation: 1,
        candidate_id: Some(2),
        parent_ids: vec![0],
        before: 1.0,
        after: 2.0,
        cost: ProposalCost {
            metric_calls: 3,
            task_usd: 0.5,
            reflection_usd: 0.25,
            judge_usd: 0.0,
        },
    };
    let scores: std::collections::BTreeMap<String, f64> = [("a".to_string(), 1.0)].into();
    let case = EvalCase {
        example_id: "e".into(),
        output: "o".into(),
        score: 1.0,
        feedback: "f".into(),
    };
    vec![
        EventPayload::GenerationStarted(GenerationStarted {
            generation: 1,
            budget: budget.clone(),
            r#gen: 1,
            population_size: 2,
        }),
        EventPayload::ParentSelected(ParentSelected {
            generation: 1,
            candidate_id: 0,
            selector: "pareto".into(),
            score: 0.3,
        }),
        EventPayload::MinibatchEvaluated(MinibatchEvaluated {
            generation: 1,
            candidate_id: 0,
            example_ids: vec!["x".into()],
            parent_scores: vec![0.0],
            child_scores: vec![1.0],
        }),
        EventPayload::ReflectionStarted(ReflectionStarted {
            generation: 1,
            candidate_id: 0,
            component: "system_prompt".into(),
            r#gen: 1,
            feedback: vec!["be brief".into()],
        }),
        EventPayload::ReflectionFinished(ReflectionFinished {
            generation: 1,
            component: "system_prompt".into(),
            rule_based: true,
            r#gen: 1,
        }),
        EventPayload::CandidateProposed(CandidateProposed {
            generation: 1,
            parent_ids: vec![0],
            component: "system_prompt".into(),
            text: "t".into(),
        }),
        EventPayload::CandidateAccepted(verdict.clone()),
        EventPayload::CandidateRejected(CandidateVerdict {
            candidate_id: None,
            ..verdict
        }),
        EventPayload::CandidateScored(CandidateScored {
            candidate_id: 1,
            score: 1.0,
            val_scores: scores.clone(),
            cost: 0.5,
            len: 12,
        }),
        EventPayload::JudgeScored(JudgeScored {
            example_id: "e".into(),
            score: 0.7,
            id: "e".into(),
            judge_score: 0.7,
        }),
        EventPayload::FrontierUpdated(FrontierUpdated {
            frontier: frontier.clone(),
            best_id: 1,
            best_score: 0.5,
            r#gen: 1,
            size: 1,
            best: 0.5,
        }),
        EventPayload::LessonsUpdated(LessonsUpdated {
            lessons: vec!["l".into()],
            count: 1,
            sample: vec!["l".into()],
        }),
        EventPayload::MergeAttempted(MergeAttempted {
            generation: 3,
            parent_ids: vec![1, 2],
            ancestor_id: 0,
            before: 1.0,
            after: 1.5,
            accepted: true,
            attempts: 1,
        }),
        EventPayload::BudgetProgress(budget.clone()),
        EventPayload::EvalStarted(EvalStarted {
            name: "toy_qa".into(),
            total: 3,
            task: "t".into(),
            examples: 3,
        }),
        EventPayload::EvalCase(case.clone()),
        EventPayload::EvalFinished(EvalFinished {
            score: 0.5,
            count: 3,
        }),
        EventPayload::Finished(JobResult::Gepa(Box::new(GepaResult {
            best_prompt: "p".into(),
            frontier,
            lessons: vec!["l".into()],
            best_candidate_id: 1,
            best_candidate: [("system_prompt".to_string(), "p".to_string())].into(),
            best_score: 0.5,
            seed_score: 0.1,
            candidates: vec![CandidateInfo {
                id: 1,
                parents: vec![0],
                origin: "reflection".into(),
                components: [("system_prompt".to_string(), "p".to_string())].into(),
                score: 0.5,
                val_scores: scores,
                discovered_at_metric_calls: 7,
                validated_on: 1,
            }],
            generations: 2,
            budget,
            stop_reason: "max_metric_calls".into(),
            test: Some(TestReport {
                count: 2,
                seed_score: 0.0,
                best_score: 0.5,
                best_candidate_id: 1,
                metric_calls: 4,
            }),
            error: None,
            proposals: vec![CandidateVerdict {
                generation: 1,
                candidate_id: Some(1),
                parent_ids: vec![0],
                before: 1.0,
                after: 2.0,
                cost: ProposalCost {
                    metric_calls: 5,
                    task_usd: 0.5,
                    reflection_usd: 0.25,
                    judge_usd: 0.125,
                },
            }],
        }))),
        EventPayload::Finished(JobResult::Eval(EvalResult {
            name: "toy_qa".into(),
            score: 0.5,
            count: 1,
            cases: vec![case],
            metric_calls_used: 1,
            cost_usd: 0.0,
        })),
    ]
}
