//! `innerloop.v1.WorkbenchService`: a job's candidates, steering and branching for the
//! workbench, and the proto ↔ domain conversions of [`crate::workbench`] types.

use tonic::{Request, Response, Status};

use super::convert_gepa;
use super::pb;
use super::pb::workbench_service_server::{WorkbenchService, WorkbenchServiceServer};
use crate::domain::gepa::CandidateInfo;
use crate::domain::spec::BranchedFrom;
use crate::domain::{Budget, DatasetRef};
use crate::error::Error;
use crate::runtime::JobRuntime;
use crate::workbench::branch::{BranchFrom, BranchRequest};
use crate::workbench::{
    self, HumanCandidate, HumanFeedback, Lineage, RejectedProposal, SteerRequest,
};

pub fn candidate_to_pb(c: &CandidateInfo) -> pb::CandidateInfo {
    pb::CandidateInfo {
        id: c.id,
        parents: c.parents.clone(),
        origin: c.origin.clone(),
        components: c.components.clone().into_iter().collect(),
        score: c.score,
        val_scores: c.val_scores.clone().into_iter().collect(),
        discovered_at_metric_calls: c.discovered_at_metric_calls,
        validated_on: c.validated_on,
    }
}

pub fn candidate_from_pb(c: pb::CandidateInfo) -> CandidateInfo {
    CandidateInfo {
        id: c.id,
        parents: c.parents,
        origin: c.origin,
        components: c.components.into_iter().collect(),
        score: c.score,
        val_scores: c.val_scores.into_iter().collect(),
        discovered_at_metric_calls: c.discovered_at_metric_calls,
        validated_on: c.validated_on,
    }
}

pub fn lineage_to_pb(l: &Lineage) -> pb::ListCandidatesResponse {
    pb::ListCandidatesResponse {
        candidates: l.candidates.iter().map(candidate_to_pb).collect(),
        rejected: l
            .rejected
            .iter()
            .map(|r| pb::RejectedProposal {
                generation: r.generation,
                parent_ids: r.parent_ids.clone(),
                component: r.component.clone(),
                text: r.text.clone(),
                example_ids: r.example_ids.clone(),
                parent_scores: r.parent_scores.clone(),
                child_scores: r.child_scores.clone(),
            })
            .collect(),
        val_example_ids: l.val_example_ids.clone(),
        best_id: l.best_id,
        branched_from: l.branched_from.as_ref().map(|b| pb::BranchedFrom {
            job_id: b.job_id.clone(),
            candidate_id: b.candidate_id,
        }),
    }
}

pub fn lineage_from_pb(l: pb::ListCandidatesResponse) -> Lineage {
    Lineage {
        candidates: l.candidates.into_iter().map(candidate_from_pb).collect(),
        rejected: l
            .rejected
            .into_iter()
            .map(|r| RejectedProposal {
                generation: r.generation,
                parent_ids: r.parent_ids,
                component: r.component,
                text: r.text,
                example_ids: r.example_ids,
                parent_scores: r.parent_scores,
                child_scores: r.child_scores,
            })
            .collect(),
        val_example_ids: l.val_example_ids,
        best_id: l.best_id,
        branched_from: l.branched_from.map(|b| BranchedFrom {
            job_id: b.job_id,
            candidate_id: b.candidate_id,
        }),
    }
}

pub fn steer_from_pb(r: pb::SteerJobRequest) -> SteerRequest {
    let component = Some(r.component).filter(|c| !c.is_empty());
    SteerRequest {
        feedback: Some(r.feedback)
            .filter(|f| !f.is_empty())
            .map(|text| HumanFeedback { component, text }),
        candidate: r.candidate.map(|c| HumanCandidate {
            parent_id: c.parent_id,
            components: c.components.into_iter().collect(),
        }),
    }
}

/// Decodes a branch request; unknown selector or acceptance names are field errors.
pub fn branch_from_pb(r: pb::BranchJobRequest) -> Result<BranchRequest, Error> {
    let mut errors = Vec::new();
    let gepa = r.gepa.unwrap_or_default();
    let selector_set = !gepa.candidate_selector.is_empty();
    let acceptance_set = !gepa.acceptance.is_empty();
    let (minibatch_size, use_merge, max_merge_invocations) = (
        gepa.minibatch_size,
        gepa.use_merge,
        gepa.max_merge_invocations,
    );
    let options = convert_gepa::options_from_pb(Some(gepa), &mut errors);
    let data = if r.dataset.is_some() || !r.examples.is_empty() {
        let examples = convert_gepa::examples_from_pb(r.examples)?;
        let dataset = r.dataset.map(|d| DatasetRef {
            name: d.name,
            split: d.split,
        });
        Some((dataset, examples))
    } else {
        None
    };
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    Ok(BranchRequest {
        from: if r.from_checkpoint {
            BranchFrom::Checkpoint
        } else {
            BranchFrom::Candidate(r.candidate_id)
        },
        budget: r.budget.map(|b| Budget {
            max_generations: b.max_generations,
            max_rollouts: b.max_rollouts,
            max_cost: b.max_cost,
            max_tokens: b.max_tokens,
            max_wall_time_s: b.max_wall_time_s,
        }),
        minibatch_size,
        candidate_selector: selector_set.then_some(options.candidate_selector),
        acceptance: acceptance_set.then_some(options.acceptance),
        use_merge,
        max_merge_invocations,
        data,
        seed: r.seed.filter(|s| *s != 0),
    })
}

fn job_id(raw: &str) -> Result<&str, Status> {
    if raw.is_empty() || raw.len() > 128 {
        return Err(Error::invalid(&["job_id"], "job_id must be 1 to 128 bytes").into());
    }
    Ok(raw)
}

/// The service over the runtime.
#[derive(Clone)]
pub struct WorkbenchServiceImpl {
    pub runtime: JobRuntime,
}

impl WorkbenchServiceImpl {
    pub fn server(runtime: JobRuntime) -> WorkbenchServiceServer<WorkbenchServiceImpl> {
        WorkbenchServiceServer::new(WorkbenchServiceImpl { runtime })
    }
}

#[tonic::async_trait]
impl WorkbenchService for WorkbenchServiceImpl {
    async fn list_candidates(
        &self,
        request: Request<pb::ListCandidatesRequest>,
    ) -> Result<Response<pb::ListCandidatesResponse>, Status> {
        let request = request.into_inner();
        let lineage = workbench::lineage(&self.runtime, job_id(&request.job_id)?).await?;
        Ok(Response::new(lineage_to_pb(&lineage)))
    }

    async fn steer_job(
        &self,
        request: Request<pb::SteerJobRequest>,
    ) -> Result<Response<pb::SteerJobResponse>, Status> {
        let request = request.into_inner();
        let id = job_id(&request.job_id)?.to_string();
        let steer = steer_from_pb(request);
        let (feedback_queued, candidate_queued) =
            (steer.feedback.is_some(), steer.candidate.is_some());
        workbench::steer(&self.runtime, &id, steer).await?;
        Ok(Response::new(pb::SteerJobResponse {
            job_id: id,
            feedback_queued,
            candidate_queued,
        }))
    }

    async fn branch_job(
        &self,
        request: Request<pb::BranchJobRequest>,
    ) -> Result<Response<pb::CreateJobResponse>, Status> {
        let request = request.into_inner();
        let id = job_id(&request.job_id)?.to_string();
        if request.idempotency_key.len() > 256 {
            return Err(Error::invalid(
                &["idempotency_key"],
                "idempotency_key must be at most 256 bytes",
            )
            .into());
        }
        let key = Some(request.idempotency_key.clone()).filter(|k| !k.is_empty());
        let branch = branch_from_pb(request)?;
        let created = workbench::branch::branch(&self.runtime, &id, branch, key.as_deref()).await?;
        Ok(Response::new(pb::CreateJobResponse {
            job_id: created.job_id,
        }))
    }
}
