//! `innerloop.v1.WorkbenchService`: a job's candidates, steering and branching for the
//! workbench (conversions in [`crate::api::workbench`]).

use tonic::{Request, Response, Status};

use crate::api::jobs::idempotency_key_from_pb;
use crate::api::jobs::job_id;
use crate::api::pb;
use crate::api::pb::workbench_service_server::{WorkbenchService, WorkbenchServiceServer};
use crate::api::workbench::branch_from_pb;
use crate::runtime::JobRuntime;
use crate::workbench::{self, SteerRequest};

/// The service over the runtime.
#[derive(Clone)]
pub struct WorkbenchServiceImpl {
    pub runtime: JobRuntime,
    /// The most iterations a branch may ask for (`MAX_ITERATIONS`).
    pub max_iterations: u32,
}

impl WorkbenchServiceImpl {
    pub fn server(
        runtime: JobRuntime,
        max_iterations: u32,
    ) -> WorkbenchServiceServer<WorkbenchServiceImpl> {
        WorkbenchServiceServer::new(WorkbenchServiceImpl {
            runtime,
            max_iterations,
        })
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
        Ok(Response::new(lineage.into()))
    }

    async fn steer_job(
        &self,
        request: Request<pb::SteerJobRequest>,
    ) -> Result<Response<pb::SteerJobResponse>, Status> {
        let request = request.into_inner();
        let id = job_id(&request.job_id)?.to_string();
        let steer = SteerRequest::from(request);
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
        let key = idempotency_key_from_pb(request.idempotency_key.clone())?;
        let branch = branch_from_pb(request)?;
        let created = workbench::branch::branch(
            &self.runtime,
            &id,
            branch,
            key.as_deref(),
            self.max_iterations,
        )
        .await?;
        Ok(Response::new(pb::CreateJobResponse {
            job_id: created.job_id,
        }))
    }
}
