//! The tonic services. Each method decodes (via [`crate::api`]), calls the runtime, encodes.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::api::jobs::{ListJobsQuery, create_request, job_id, job_to_pb, list_jobs_response};
use crate::api::pb;
use crate::api::pb::job_service_server::{JobService, JobServiceServer};
use crate::api::pb::optimizer_service_server::{OptimizerService, OptimizerServiceServer};
use crate::runtime::{JobRuntime, WatchStream};

use super::ServiceConfig;

/// A stream of job events as tonic sends it.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send + 'static>>;

fn event_stream(watch: WatchStream) -> EventStream {
    Box::pin(watch.map(|event| Ok(pb::JobEvent::from(std::sync::Arc::unwrap_or_clone(event)))))
}

/// `innerloop.v1.OptimizerService`.
#[derive(Clone)]
pub struct OptimizerServiceImpl {
    runtime: JobRuntime,
    config: ServiceConfig,
}

#[tonic::async_trait]
impl OptimizerService for OptimizerServiceImpl {
    type OptimizeStream = EventStream;

    async fn optimize(
        &self,
        request: Request<pb::OptimizeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let create = create_request(request.into_inner(), self.config.max_iterations)?;
        let created = self
            .runtime
            .create(create.spec, create.idempotency_key.as_deref())
            .await?;
        let watch = self.runtime.watch(&created.job_id, 0).await?;
        Ok(Response::new(event_stream(watch)))
    }

    async fn create_job(
        &self,
        request: Request<pb::OptimizeRequest>,
    ) -> Result<Response<pb::CreateJobResponse>, Status> {
        let create = create_request(request.into_inner(), self.config.max_iterations)?;
        let created = self
            .runtime
            .create(create.spec, create.idempotency_key.as_deref())
            .await?;
        Ok(Response::new(pb::CreateJobResponse {
            job_id: created.job_id,
        }))
    }

    async fn estimate_job(
        &self,
        request: Request<pb::OptimizeRequest>,
    ) -> Result<Response<pb::EstimateJobResponse>, Status> {
        let create = create_request(request.into_inner(), self.config.max_iterations)?;
        let estimate = crate::optimizer::gepa::estimate_request(
            &create.spec,
            &self.config.gepa,
            &self.config.prices,
            self.runtime.store().as_ref(),
        )
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(estimate.into()))
    }
}

/// `innerloop.v1.JobService`.
#[derive(Clone)]
pub struct JobServiceImpl {
    runtime: JobRuntime,
}

#[tonic::async_trait]
impl JobService for JobServiceImpl {
    type WatchJobStream = EventStream;

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let record = self.runtime.get(job_id(&request.get_ref().job_id)?).await?;
        Ok(Response::new(job_to_pb(&record, true)))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let query = ListJobsQuery::try_from(request.into_inner())?;
        let page = self
            .runtime
            .list(query.statuses, query.page_size, query.offset)
            .await?;
        Ok(Response::new(list_jobs_response(
            &page.jobs,
            page.next_offset,
        )))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let record = self
            .runtime
            .cancel(job_id(&request.get_ref().job_id)?)
            .await?;
        Ok(Response::new(job_to_pb(&record, true)))
    }

    async fn delete_job(
        &self,
        request: Request<pb::DeleteJobRequest>,
    ) -> Result<Response<pb::DeleteJobResponse>, Status> {
        let deleted = self
            .runtime
            .delete(job_id(&request.get_ref().job_id)?)
            .await?;
        Ok(Response::new(pb::DeleteJobResponse { deleted }))
    }

    async fn pause_job(
        &self,
        request: Request<pb::PauseJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let record = self
            .runtime
            .pause(job_id(&request.get_ref().job_id)?)
            .await?;
        Ok(Response::new(job_to_pb(&record, true)))
    }

    async fn resume_job(
        &self,
        request: Request<pb::ResumeJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let record = self
            .runtime
            .resume(job_id(&request.get_ref().job_id)?)
            .await?;
        Ok(Response::new(job_to_pb(&record, true)))
    }

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = request.get_ref();
        let watch = self
            .runtime
            .watch(job_id(&req.job_id)?, req.after_event_id)
            .await?;
        Ok(Response::new(event_stream(watch)))
    }
}

/// The core's gRPC routes: both services, `grpc.health.v1` and server reflection (v1 and
/// v1alpha). Returns the health reporter so the server can flip it to NOT_SERVING on shutdown.
pub async fn router(
    runtime: JobRuntime,
    config: ServiceConfig,
) -> (tonic::service::Routes, tonic_health::server::HealthReporter) {
    let max_decode = config.max_request_bytes.max(4096);
    let max_iterations = config.max_iterations;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<OptimizerServiceServer<OptimizerServiceImpl>>()
        .await;
    health
        .set_serving::<JobServiceServer<JobServiceImpl>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("embedded descriptor set is valid");
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("embedded descriptor set is valid");
    let optimizer = OptimizerServiceServer::new(OptimizerServiceImpl {
        runtime: runtime.clone(),
        config,
    })
    .max_decoding_message_size(max_decode);
    let examples =
        pb::examples_service_server::ExamplesServiceServer::new(super::ExamplesServiceImpl {
            examples: runtime.store().clone(),
        })
        .max_decoding_message_size(max_decode);
    let eval = pb::eval_service_server::EvalServiceServer::new(super::EvalServiceImpl {
        runtime: runtime.clone(),
    })
    .max_decoding_message_size(max_decode);
    let runtime_for_workbench = runtime.clone();
    let jobs =
        JobServiceServer::new(JobServiceImpl { runtime }).max_decoding_message_size(max_decode);
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(optimizer)
        .add_service(jobs)
        .add_service(examples)
        .add_service(eval)
        .add_service(
            super::workbench::WorkbenchServiceImpl::server(runtime_for_workbench, max_iterations)
                .max_decoding_message_size(max_decode),
        );
    (routes, health)
}
