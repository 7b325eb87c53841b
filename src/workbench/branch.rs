//! Branching: a new GEPA job from one of a job's candidates (a fresh search seeded with its
//! texts) or from the job's checkpoint (the same search continues: pool, scores, RNG, cache and
//! spend), with changed settings. The new job's spec records `branched_from`.

use crate::domain::gepa::{Acceptance, CandidateSelector, DEFAULT_COMPONENT};
use crate::domain::spec::BranchedFrom;
use crate::domain::{Budget, DatasetRef, Example, Mode};
use crate::error::{Error, Result};
use crate::runtime::{Created, JobRuntime};

/// Where the new job starts.
#[derive(Debug, Clone, PartialEq)]
pub enum BranchFrom {
    /// Seeded with this candidate (None: the job's best).
    Candidate(Option<u32>),
    /// The job's checkpoint: its whole search state.
    Checkpoint,
}

/// The settings a branch changes; `None` keeps the job's.
#[derive(Debug, Clone, PartialEq)]
pub struct BranchRequest {
    pub from: BranchFrom,
    pub budget: Option<Budget>,
    pub minibatch_size: Option<u32>,
    pub candidate_selector: Option<CandidateSelector>,
    pub acceptance: Option<Acceptance>,
    pub use_merge: Option<bool>,
    pub max_merge_invocations: Option<u32>,
    /// New examples: a pack, inline examples, or both replace the job's.
    pub data: Option<(Option<DatasetRef>, Vec<Example>)>,
    pub seed: Option<i64>,
}

/// Creates the branch of `job_id`; its spec is validated as a request's is, with at most
/// `max_iterations` (`MAX_ITERATIONS`).
pub async fn branch(
    runtime: &JobRuntime,
    job_id: &str,
    request: BranchRequest,
    idempotency_key: Option<&str>,
    max_iterations: u32,
) -> Result<Created> {
    let record = runtime.get(job_id).await?;
    if record.spec.mode != Mode::Gepa {
        return Err(Error::InvalidJobState {
            job_id: job_id.into(),
            status: record.status.to_string(),
            action: "only gepa jobs can be branched",
        });
    }
    let mut spec = record.spec.clone();
    let (checkpoint, candidate_id) = match request.from {
        BranchFrom::Candidate(wanted) => {
            let lineage = super::lineage(runtime, job_id).await?;
            let id = wanted.unwrap_or(lineage.best_id);
            let candidate = lineage
                .candidates
                .into_iter()
                .find(|c| c.id == id && !c.components.is_empty())
                .ok_or_else(|| Error::NotFound(format!("candidate {id} of job {job_id}")))?;
            let mut components = candidate.components;
            spec.prompt = components.remove(DEFAULT_COMPONENT).unwrap_or_default();
            spec.gepa.components = components;
            (None, Some(id))
        }
        BranchFrom::Checkpoint => {
            if request.data.is_some() {
                return Err(Error::invalid(
                    &["dataset"],
                    "a branch from the checkpoint keeps the job's examples",
                ));
            }
            let mut checkpoint =
                crate::optimizer::gepa::whole_checkpoint(runtime.store().as_ref(), job_id)
                    .await?
                    .ok_or_else(|| {
                        Error::invalid(&["from_checkpoint"], "the job has no checkpoint yet")
                    })?;
            // A branch is asked for to search on: its patience starts afresh (a converged
            // job's idle count would stop it at once).
            if let Some(idle) = checkpoint.pointer_mut("/state/idle_iterations") {
                *idle = serde_json::json!(0);
            }
            (Some(checkpoint), None)
        }
    };
    if let Some(budget) = request.budget {
        spec.budget = budget;
    }
    let gepa = &mut spec.gepa;
    gepa.minibatch_size = request.minibatch_size.or(gepa.minibatch_size);
    gepa.candidate_selector = request
        .candidate_selector
        .unwrap_or(gepa.candidate_selector);
    gepa.acceptance = request.acceptance.unwrap_or(gepa.acceptance);
    gepa.use_merge = request.use_merge.or(gepa.use_merge);
    gepa.max_merge_invocations = request.max_merge_invocations.or(gepa.max_merge_invocations);
    if let Some((dataset, examples)) = request.data {
        spec.dataset = dataset;
        spec.examples = examples;
    }
    spec.seed = request.seed.or(spec.seed);
    spec.branched_from = Some(BranchedFrom {
        job_id: job_id.to_string(),
        candidate_id,
    });
    let iterations = i64::from(spec.iterations);
    spec.validate(iterations, max_iterations)?;
    runtime
        .create_from(spec, idempotency_key, checkpoint.as_ref())
        .await
}
