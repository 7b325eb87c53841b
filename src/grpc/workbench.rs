//! `innerloop.v1.WorkbenchService`: a job's candidates for the workbench, and the
//! proto ↔ domain conversions of [`crate::workbench`] types.

use tonic::{Request, Response, Status};

use super::pb;
use super::pb::workbench_service_server::{WorkbenchService, WorkbenchServiceServer};
use crate::domain::gepa::CandidateInfo;
use crate::runtime::JobRuntime;
use crate::workbench::{self, Lineage, RejectedProposal};

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
    }
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
        let job_id = request.into_inner().job_id;
        if job_id.is_empty() || job_id.len() > 128 {
            return Err(
                crate::error::Error::invalid(&["job_id"], "job_id must be 1 to 128 bytes").into(),
            );
        }
        let lineage = workbench::lineage(&self.runtime, &job_id).await?;
        Ok(Response::new(lineage_to_pb(&lineage)))
    }
}
