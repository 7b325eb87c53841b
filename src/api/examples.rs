//! Stored examples and eval jobs on the wire: examples to upsert (with the `meta` depth rule)
//! and the `StartEvalRequest` that becomes an eval job's spec.

use super::jobs::{CreateRequest, idempotency_key_from_pb, validated};
use super::{limits, pb};
use crate::domain::depth::check_map;
use crate::domain::{DatasetRef, Example, JobSpec, Mode};
use crate::error::{Error, FieldError};
/// The system prompt of an eval request that names none.
pub use crate::optimizer::eval_job::DEFAULT_EVAL_PROMPT;

/// A `ListExamples` request, decoded: the page size (0 asks for the default; capped at
/// [`limits::MAX_EXAMPLES_PAGE`]) and how many examples to skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExamplesPage {
    pub limit: u32,
    pub offset: u32,
}

impl From<pb::ListExamplesRequest> for ExamplesPage {
    fn from(request: pb::ListExamplesRequest) -> Self {
        let pb::ListExamplesRequest { limit, offset } = request;
        let limit = match limit {
            0 => limits::DEFAULT_PAGE_SIZE,
            n => n.min(limits::MAX_EXAMPLES_PAGE),
        };
        ExamplesPage { limit, offset }
    }
}

/// Decodes examples to upsert (a missing id gets a UUID). Sizes are bounded by
/// `MAX_REQUEST_BYTES` alone, as for job requests (no field has a smaller cap of its own).
pub fn examples_from_pb(examples: Vec<pb::Example>) -> Result<Vec<Example>, Error> {
    let mut errors = Vec::new();
    let decoded: Vec<Example> = examples
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let example = Example::from(e);
            // Level 3, as in the REST body (a bare list of examples).
            let index = i.to_string();
            check_map(&example.meta, 3, &["examples", &index, "meta"], &mut errors);
            example
        })
        .collect();
    if errors.is_empty() {
        Ok(decoded)
    } else {
        Err(Error::Validation(errors))
    }
}

/// Decodes and validates a `StartEvalRequest` into an eval job spec.
pub fn eval_request(req: pb::StartEvalRequest) -> Result<CreateRequest, Error> {
    let pb::StartEvalRequest {
        name,
        target_model_id,
        max_examples,
        seed,
        tournament_size,
        recombination_rate,
        early_stop_patience,
        prompt,
        metrics,
        idempotency_key,
        dataset,
    } = req;
    let prompt = if prompt.trim().is_empty() {
        DEFAULT_EVAL_PROMPT.to_string()
    } else {
        prompt
    };
    let mut spec = JobSpec::from_prompt(prompt);
    spec.mode = Mode::Eval;
    // `name` is a label (the original evaluated the stored examples whatever it said); a pack
    // is chosen with `dataset`. "examples" (not a pack) means the stored examples.
    spec.eval_name = name.filter(|n| !n.is_empty());
    spec.dataset = Some(match dataset {
        Some(d) => d.into(),
        None => DatasetRef {
            name: "examples".into(),
            split: None,
        },
    });
    spec.metrics = metrics;
    spec.target_model_id = target_model_id.filter(|m| !m.is_empty());
    spec.seed = seed.filter(|s| *s != 0);
    spec.tournament_size = tournament_size;
    spec.recombination_rate = recombination_rate;
    spec.early_stop_patience = early_stop_patience;
    let mut errors = Vec::new();
    if max_examples == Some(0) {
        // Named as the eval request names it, not as the job budget it becomes.
        errors.push(FieldError::new(
            &["max_examples"],
            "max_examples must be >= 1",
        ));
    } else {
        spec.budget.max_rollouts = max_examples.map(u64::from);
    }
    validated(&mut spec, 1, 1, errors)?;
    Ok(CreateRequest {
        spec,
        idempotency_key: idempotency_key_from_pb(idempotency_key)?,
    })
}
