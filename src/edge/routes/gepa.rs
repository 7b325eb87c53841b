//! `/v1/examples…` and `/v1/eval…`: stored examples CRUD and eval jobs, each handler one core
//! call (`ExamplesService`, `EvalService`, `JobService.WatchJob`).

use crate::api::pb;
use crate::api::pb::eval_service_client::EvalServiceClient;
use crate::api::pb::examples_service_client::ExamplesServiceClient;
use crate::api::rest::{
    CreatedJob, EstimateBody, EvalBody, ExampleBody, ExamplePage, OptimizeBody, Upserted,
    bulk_upsert_request,
};
use crate::edge::EdgeState;
use crate::edge::error::{ApiError, ErrorBody};
use crate::edge::extract::{CallContext, JobIdPath, JsonBody, QueryPairs};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Version};

fn examples_client(
    state: &EdgeState,
) -> ExamplesServiceClient<crate::edge::upstream::GrpcTransport> {
    state.upstream().examples()
}

fn eval_client(state: &EdgeState) -> EvalServiceClient<crate::edge::upstream::GrpcTransport> {
    state.upstream().eval()
}

/// `POST /v1/examples/bulk`: a JSON array; upsert by id (missing id → UUID, missing meta → {}).
#[utoipa::path(
    post, path = "/v1/examples/bulk", tag = "examples",
    request_body = Vec<ExampleBody>,
    responses(
        (status = 200, description = "Upserted", body = Upserted),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn bulk(
    State(state): State<EdgeState>,
    ctx: CallContext,
    JsonBody(body): JsonBody<Vec<ExampleBody>>,
) -> Result<Json<Upserted>, ApiError> {
    let reply = examples_client(&state)
        .bulk_upsert_examples(ctx.request(bulk_upsert_request(body)))
        .await?
        .into_inner();
    Ok(Json(Upserted::from_pb(reply)))
}

/// `GET /v1/examples?limit=50&offset=0`.
#[utoipa::path(
    get, path = "/v1/examples", tag = "examples",
    params(
        ("limit" = Option<i64>, Query, minimum = 0, description = "Page size (default 50, clamped by the core)"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Examples to skip (default 0)"),
    ),
    responses(
        (status = 200, body = ExamplePage),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<EdgeState>,
    ctx: CallContext,
    query: QueryPairs,
) -> Result<Json<ExamplePage>, ApiError> {
    let bounded = |name: &str| -> Result<u32, ApiError> {
        match query.integer(name)? {
            None => Ok(0),
            Some(n) if n < 0 => Err(ApiError::invalid(
                &["query", name],
                format!("{name} must be >= 0"),
            )),
            Some(n) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
        }
    };
    let request = pb::ListExamplesRequest {
        limit: bounded("limit")?,
        offset: bounded("offset")?,
    };
    let page = examples_client(&state)
        .list_examples(ctx.request(request))
        .await?
        .into_inner();
    Ok(Json(ExamplePage::from_pb(page)))
}

/// `DELETE /v1/examples/{id}`: 204, also for unknown ids.
#[utoipa::path(
    delete, path = "/v1/examples/{id}", tag = "examples",
    params(("id" = String, Path)),
    responses(
        (status = 204, description = "Deleted (also when it did not exist)"),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<EdgeState>,
    ctx: CallContext,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    examples_client(&state)
        .delete_example(ctx.request(pb::DeleteExampleRequest { id }))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/eval/start` → `{"job_id": …}`.
#[utoipa::path(
    post, path = "/v1/eval/start", tag = "eval",
    params(
        ("Idempotency-Key" = Option<String>, Header, max_length = 256, description = "Repeat a key to get the same job back"),
    ),
    request_body = EvalBody,
    responses(
        (status = 200, description = "Started (or replayed)", body = CreatedJob),
        (status = 401, body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused with a different request (idempotency_conflict)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn start(
    State(state): State<EdgeState>,
    ctx: CallContext,
    headers: HeaderMap,
    JsonBody(body): JsonBody<EvalBody>,
) -> Result<Json<CreatedJob>, ApiError> {
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let request = body.into_pb(idempotency_key);
    let created = eval_client(&state)
        .start_eval(ctx.request(request))
        .await?
        .into_inner();
    Ok(Json(CreatedJob::new(
        created.job_id,
        &state,
        ctx.principal_id(),
    )))
}

/// `GET /v1/eval/{job_id}`: an eval job's state; `result` (an `EvalResult`) is null until it
/// is terminal.
#[utoipa::path(
    get, path = "/v1/eval/{job_id}", tag = "eval",
    params(("job_id" = String, Path)),
    responses(
        (status = 200, body = crate::api::rest::JobState),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    )
)]
pub async fn get(
    state: State<EdgeState>,
    ctx: CallContext,
    job_id: JobIdPath,
) -> Result<Json<crate::api::rest::JobState>, ApiError> {
    // Eval jobs live in the same job log as optimize jobs.
    super::optimize::get(state, ctx, job_id).await
}

/// `GET /v1/eval/{job_id}/events`: the job's SSE stream (same framing and resume rules as
/// `/v1/optimize/{job_id}/events`).
#[utoipa::path(
    get, path = "/v1/eval/{job_id}/events", tag = "eval",
    params(
        ("job_id" = String, Path),
        ("last_event_id" = Option<String>, Query, description = "Resume after this id (digits); the Last-Event-ID header wins"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this id (digits)"),
    ),
    security(("bearer" = []), ("access_token" = [])),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = crate::edge::openapi::SseEvent),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody),
    )
)]
pub async fn events(
    state: State<EdgeState>,
    ctx: CallContext,
    version: Version,
    headers: HeaderMap,
    query: QueryPairs,
    job_id: JobIdPath,
) -> Result<Response, ApiError> {
    // Eval jobs live in the same job log as optimize jobs: one handler serves both routes.
    super::optimize::events(state, ctx, version, headers, query, job_id).await
}

/// Predicts metric calls, reflection calls, tokens and cost of an optimize request (the same
/// body as `POST /v1/optimize`) without creating a job.
pub async fn estimate(
    State(state): State<EdgeState>,
    ctx: CallContext,
    JsonBody(body): JsonBody<OptimizeBody>,
) -> Result<Json<EstimateBody>, ApiError> {
    let request = body.into_pb(None, String::new());
    let e = state
        .upstream()
        .optimizer()
        .estimate_job(ctx.request(request))
        .await?
        .into_inner();
    Ok(Json(EstimateBody::from_pb(e)))
}
