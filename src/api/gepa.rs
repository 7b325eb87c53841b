//! The GEPA part of a request (options with their enum names) and of the estimate answer.

use super::pb;
use crate::domain::gepa::{Acceptance, CandidateSelector, GepaOptions, ValidationPolicy};
use crate::error::FieldError;
use crate::optimizer::gepa::estimate::Estimate;

/// Decodes request options; unknown enum names become field errors (in `errors`), and an
/// absent message means every default.
pub fn options_from_pb(
    options: Option<pb::GepaOptions>,
    errors: &mut Vec<FieldError>,
) -> GepaOptions {
    let Some(pb::GepaOptions {
        minibatch_size,
        candidate_selector,
        acceptance,
        use_merge,
        max_merge_invocations,
        components,
        validation_policy,
        legacy_budget,
        parallel_proposals,
    }) = options
    else {
        return GepaOptions::default();
    };
    let candidate_selector = match candidate_selector.as_str() {
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
    let acceptance = match acceptance.as_str() {
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
    let validation_policy = match validation_policy.as_str() {
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
        legacy_budget,
        parallel_proposals,
        minibatch_size,
        candidate_selector,
        acceptance,
        use_merge,
        max_merge_invocations,
        components: components.into_iter().collect(),
    }
}

wire_fields!(
    pb::EstimateJobResponse,
    Estimate {
        same: [
            metric_calls,
            reflection_calls,
            iterations,
            task_tokens,
            reflection_tokens,
            cost_usd,
            train_examples,
            val_examples,
        ],
    }
);
