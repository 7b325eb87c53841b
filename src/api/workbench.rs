//! The workbench on the wire: a job's lineage (candidates, rejected proposals, where it was
//! branched from), steering and branch requests.

use super::examples::examples_from_pb;
use super::gepa::options_from_pb;
use super::pb;
use crate::domain::spec::BranchedFrom;
use crate::error::Error;
use crate::workbench::branch::{BranchFrom, BranchRequest};
use crate::workbench::{HumanCandidate, HumanFeedback, Lineage, RejectedProposal, SteerRequest};

wire_fields!(
    pb::ListCandidatesResponse,
    Lineage {
        same: [val_example_ids, best_id],
        each: [candidates, rejected],
        optional: [branched_from],
    }
);

wire_fields!(
    pb::RejectedProposal,
    RejectedProposal {
        same: [
            generation,
            parent_ids,
            component,
            text,
            example_ids,
            parent_scores,
            child_scores,
        ],
    }
);

wire_fields!(
    pb::BranchedFrom,
    BranchedFrom {
        same: [job_id, candidate_id],
    }
);

/// A steer request; empty feedback means none. The job id is the service's to check.
impl From<pb::SteerJobRequest> for SteerRequest {
    fn from(r: pb::SteerJobRequest) -> Self {
        let pb::SteerJobRequest {
            job_id: _,
            feedback,
            component,
            candidate,
        } = r;
        let component = Some(component).filter(|c| !c.is_empty());
        SteerRequest {
            feedback: Some(feedback)
                .filter(|f| !f.is_empty())
                .map(|text| HumanFeedback { component, text }),
            candidate: candidate.map(
                |pb::HumanCandidate {
                     parent_id,
                     components,
                 }| {
                    HumanCandidate {
                        parent_id,
                        components: components.into_iter().collect(),
                    }
                },
            ),
        }
    }
}

/// Decodes a branch request; unknown selector or acceptance names are field errors. The job
/// id and idempotency key are the service's to check (before this).
pub fn branch_from_pb(r: pb::BranchJobRequest) -> Result<BranchRequest, Error> {
    let pb::BranchJobRequest {
        job_id: _,
        candidate_id,
        from_checkpoint,
        budget,
        gepa,
        dataset,
        examples,
        seed,
        idempotency_key: _,
    } = r;
    let mut errors = Vec::new();
    let gepa = gepa.unwrap_or_default();
    let selector_set = !gepa.candidate_selector.is_empty();
    let acceptance_set = !gepa.acceptance.is_empty();
    let (minibatch_size, use_merge, max_merge_invocations) = (
        gepa.minibatch_size,
        gepa.use_merge,
        gepa.max_merge_invocations,
    );
    let options = options_from_pb(Some(gepa), &mut errors);
    let data = if dataset.is_some() || !examples.is_empty() {
        Some((dataset.map(Into::into), examples_from_pb(examples)?))
    } else {
        None
    };
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    Ok(BranchRequest {
        from: if from_checkpoint {
            BranchFrom::Checkpoint
        } else {
            BranchFrom::Candidate(candidate_id)
        },
        budget: budget.map(Into::into),
        minibatch_size,
        candidate_selector: selector_set.then_some(options.candidate_selector),
        acceptance: acceptance_set.then_some(options.acceptance),
        use_merge,
        max_merge_invocations,
        data,
        seed: seed.filter(|s| *s != 0),
    })
}
