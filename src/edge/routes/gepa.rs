//! `/v1/examples…` and `/v1/eval…`: stored examples CRUD and eval jobs, each handler one core
//! call (`ExamplesService`, `EvalService`, `JobService.WatchJob`).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Version};
use serde::{Deserialize, Serialize};

use crate::api::pb;
use crate::api::pb::eval_service_client::EvalServiceClient;
use crate::api::pb::examples_service_client::ExamplesServiceClient;
use crate::api::rest::{CreatedJob, ExampleBody, ExampleId, OptimizeBody, resolve_target_model};
use crate::api::values::{json_from_struct, struct_from_json};
use crate::edge::EdgeState;
use crate::edge::error::{ApiError, ErrorBody};
use crate::edge::extract::{CallContext, JobIdPath, JsonBody, QueryPairs};

/// `{"upserted": N}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Upserted {
    pub upserted: u32,
}

/// One stored example as the original lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExampleOut {
    pub id: String,
    pub input: String,
    pub expected: Option<String>,
    #[schema(value_type = Object)]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

/// `{"examples": [...], "limit": L, "offset": O}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExamplePage {
    pub examples: Vec<ExampleOut>,
    pub limit: u32,
    pub offset: u32,
}

/// `POST /v1/eval/start` body (the original's keys, plus `prompt` and `metrics`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct EvalBody {
    /// A label for the run (any string, echoed in `eval_started`); it never selects data.
    pub name: Option<String>,
    /// A built-in pack to evaluate instead of the stored examples.
    pub dataset: Option<crate::api::rest::DatasetBody>,
    pub target_model: Option<String>,
    pub target_model_id: Option<String>,
    pub model_id: Option<String>,
    /// Examples evaluated (at least 1).
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 4294967295_i64)]
    pub max_examples: Option<u32>,
    pub seed: Option<i64>,
    #[schema(minimum = 1, maximum = 64)]
    pub tournament_size: Option<u32>,
    #[schema(minimum = 0, maximum = 1)]
    pub recombination_rate: Option<f64>,
    #[schema(minimum = 1, maximum = 1000)]
    pub early_stop_patience: Option<u32>,
    pub prompt: Option<String>,
    #[schema(value_type = Option<Vec<crate::api::rest::MetricName>>)]
    pub metrics: Option<Vec<String>>,
}

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
    let examples = body
        .into_iter()
        .map(|e| pb::Example {
            id: match e.id {
                Some(ExampleId::Text(s)) => s,
                Some(ExampleId::Number(n)) => n.to_string(),
                None => String::new(),
            },
            input: e.input,
            expected: e.expected,
            meta: e.meta.as_ref().map(struct_from_json),
        })
        .collect();
    let reply = examples_client(&state)
        .bulk_upsert_examples(ctx.request(pb::BulkUpsertExamplesRequest { examples }))
        .await?
        .into_inner();
    Ok(Json(Upserted {
        upserted: reply.upserted,
    }))
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
    Ok(Json(ExamplePage {
        examples: page
            .examples
            .into_iter()
            .map(|e| ExampleOut {
                id: e.id,
                input: e.input,
                expected: e.expected,
                meta: e.meta.as_ref().map(json_from_struct).unwrap_or_default(),
            })
            .collect(),
        limit: page.limit,
        offset: page.offset,
    }))
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
    let request = pb::StartEvalRequest {
        name: body.name,
        dataset: body.dataset.map(|d| pb::DatasetRef {
            name: d.name,
            split: d.split,
        }),
        target_model_id: resolve_target_model(
            body.target_model,
            body.target_model_id,
            body.model_id,
        ),
        max_examples: body.max_examples,
        seed: body.seed,
        tournament_size: body.tournament_size,
        recombination_rate: body.recombination_rate,
        early_stop_patience: body.early_stop_patience,
        prompt: body.prompt.unwrap_or_default(),
        metrics: body.metrics.unwrap_or_default(),
        idempotency_key,
    };
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

/// `POST /v1/optimize/estimate` answer: what a GEPA request is predicted to spend.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EstimateBody {
    pub metric_calls: u64,
    pub reflection_calls: u64,
    pub iterations: u64,
    pub task_tokens: u64,
    pub reflection_tokens: u64,
    /// `task_tokens + reflection_tokens`.
    pub tokens: u64,
    pub cost_usd: f64,
    pub train_examples: u32,
    pub val_examples: u32,
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
    Ok(Json(EstimateBody {
        metric_calls: e.metric_calls,
        reflection_calls: e.reflection_calls,
        iterations: e.iterations,
        task_tokens: e.task_tokens,
        reflection_tokens: e.reflection_tokens,
        tokens: e.task_tokens + e.reflection_tokens,
        cost_usd: e.cost_usd,
        train_examples: e.train_examples,
        val_examples: e.val_examples,
    }))
}
