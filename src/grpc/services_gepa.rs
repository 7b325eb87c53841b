//! The examples and eval services: thin, decode via [`crate::api`], call the example store or
//! the runtime, encode.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::api::examples::{ExamplesPage, eval_request, examples_from_pb};
use crate::api::pb;
use crate::api::pb::eval_service_server::EvalService;
use crate::api::pb::examples_service_server::ExamplesService;
use crate::error::Error;
use crate::runtime::JobRuntime;
use crate::store::ExampleStore;

/// `innerloop.v1.ExamplesService`.
#[derive(Clone)]
pub struct ExamplesServiceImpl {
    pub examples: Arc<dyn ExampleStore>,
}

#[tonic::async_trait]
impl ExamplesService for ExamplesServiceImpl {
    async fn bulk_upsert_examples(
        &self,
        request: Request<pb::BulkUpsertExamplesRequest>,
    ) -> Result<Response<pb::BulkUpsertExamplesResponse>, Status> {
        let examples = examples_from_pb(request.into_inner().examples)?;
        let upserted = self
            .examples
            .upsert_examples(&examples)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::BulkUpsertExamplesResponse {
            upserted: upserted as u32,
        }))
    }

    async fn list_examples(
        &self,
        request: Request<pb::ListExamplesRequest>,
    ) -> Result<Response<pb::ListExamplesResponse>, Status> {
        let ExamplesPage { limit, offset } = request.into_inner().into();
        let examples = self
            .examples
            .list_examples(limit as usize, offset as usize)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListExamplesResponse {
            examples: examples.into_iter().map(Into::into).collect(),
            limit,
            offset,
        }))
    }

    async fn delete_example(
        &self,
        request: Request<pb::DeleteExampleRequest>,
    ) -> Result<Response<pb::DeleteExampleResponse>, Status> {
        let deleted = self
            .examples
            .delete_example(&request.into_inner().id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::DeleteExampleResponse { deleted }))
    }
}

/// `innerloop.v1.EvalService`.
#[derive(Clone)]
pub struct EvalServiceImpl {
    pub runtime: JobRuntime,
}

#[tonic::async_trait]
impl EvalService for EvalServiceImpl {
    async fn start_eval(
        &self,
        request: Request<pb::StartEvalRequest>,
    ) -> Result<Response<pb::CreateJobResponse>, Status> {
        let create = eval_request(request.into_inner())?;
        let created = self
            .runtime
            .create(create.spec, create.idempotency_key.as_deref())
            .await?;
        Ok(Response::new(pb::CreateJobResponse {
            job_id: created.job_id,
        }))
    }
}
