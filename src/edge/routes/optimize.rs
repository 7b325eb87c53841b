//! `/v1/optimize…`: create, read, cancel and stream jobs. Each handler maps the request onto one
//! core call and the answer back; the unversioned aliases reuse these handlers.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, Version};

use crate::api::pb;
use crate::api::rest::{CreatedJob, JobState, OptimizeBody};
use crate::edge::EdgeState;
use crate::edge::error::{ApiError, ErrorBody};
use crate::edge::extract::{CallContext, JobIdPath, JsonBody, QueryPairs};
use crate::edge::sse;

/// The `?iterations=` parameter: an integer ≥ 1 (the core clamps it to `MAX_ITERATIONS`).
fn iterations(query: &QueryPairs) -> Result<Option<u32>, ApiError> {
    match query.integer("iterations")? {
        None => Ok(None),
        Some(n) if n < 1 => Err(ApiError::invalid(
            &["query", "iterations"],
            "iterations must be >= 1",
        )),
        Some(n) => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
    }
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(String::new()),
        Some(value) => value.to_str().map(str::to_string).map_err(|_| {
            ApiError::invalid(
                &["header", "idempotency-key"],
                "Idempotency-Key must be visible ASCII",
            )
        }),
    }
}

/// Create an optimization job.
#[utoipa::path(
    post, path = "/v1/optimize", tag = "optimize",
    params(
        ("iterations" = Option<i64>, Query, minimum = 1, description = "Iterations (>= 1, default 1), clamped to MAX_ITERATIONS"),
        ("Idempotency-Key" = Option<String>, Header, max_length = 256, description = "Repeat a key to get the same job back"),
    ),
    request_body = OptimizeBody,
    responses(
        (status = 200, description = "Created (or replayed)", body = CreatedJob),
        (status = 401, body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused with a different request (idempotency_conflict)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<EdgeState>,
    principal: Option<axum::Extension<crate::layers::auth::Principal>>,
    ctx: CallContext,
    query: QueryPairs,
    headers: HeaderMap,
    JsonBody(body): JsonBody<OptimizeBody>,
) -> Result<Json<CreatedJob>, ApiError> {
    let request = body.into_pb(iterations(&query)?, idempotency_key(&headers)?);
    let created = state
        .upstream()
        .optimizer()
        .create_job(ctx.request(request))
        .await?
        .into_inner();
    let mut answer = CreatedJob::new(created.job_id, &state, ctx.principal_id());
    if principal.is_none() {
        // An anonymous creator (`REQUIRE_AUTH=false`) may not read the job: no stream token.
        answer.stream_token = None;
    }
    Ok(Json(answer))
}

/// A job's state; `result` is null until the job is terminal.
#[utoipa::path(
    get, path = "/v1/optimize/{job_id}", tag = "optimize",
    params(("job_id" = String, Path)),
    responses((status = 200, body = JobState), (status = 404, body = ErrorBody))
)]
pub async fn get(
    State(state): State<EdgeState>,
    ctx: CallContext,
    JobIdPath(job_id): JobIdPath,
) -> Result<Json<JobState>, ApiError> {
    let mut jobs = state.upstream().jobs();
    job_state(jobs.get_job(ctx.request(pb::GetJobRequest { job_id }))).await
}

/// Cancel a running job: 200 with the state, already `cancelled`.
#[utoipa::path(
    delete, path = "/v1/optimize/{job_id}", tag = "optimize",
    params(("job_id" = String, Path)),
    responses(
        (status = 200, body = JobState),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Already terminal (not_cancelable)", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<EdgeState>,
    ctx: CallContext,
    JobIdPath(job_id): JobIdPath,
) -> Result<Json<JobState>, ApiError> {
    let mut jobs = state.upstream().jobs();
    job_state(jobs.cancel_job(ctx.request(pb::CancelJobRequest { job_id }))).await
}

/// Pause a running GEPA job at its next safe point: 200 with the state, already `paused`.
#[utoipa::path(
    post, path = "/v1/optimize/{job_id}/pause", tag = "optimize",
    params(("job_id" = String, Path)),
    responses(
        (status = 200, body = JobState),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not running, or its mode cannot pause (invalid_job_state)", body = ErrorBody),
    )
)]
pub async fn pause(
    State(state): State<EdgeState>,
    ctx: CallContext,
    JobIdPath(job_id): JobIdPath,
) -> Result<Json<JobState>, ApiError> {
    let mut jobs = state.upstream().jobs();
    job_state(jobs.pause_job(ctx.request(pb::PauseJobRequest { job_id }))).await
}

/// Resume a paused job from its checkpoint: 200 with the state, `running`.
#[utoipa::path(
    post, path = "/v1/optimize/{job_id}/resume", tag = "optimize",
    params(("job_id" = String, Path)),
    responses(
        (status = 200, body = JobState),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not paused (invalid_job_state)", body = ErrorBody),
    )
)]
pub async fn resume(
    State(state): State<EdgeState>,
    ctx: CallContext,
    JobIdPath(job_id): JobIdPath,
) -> Result<Json<JobState>, ApiError> {
    let mut jobs = state.upstream().jobs();
    job_state(jobs.resume_job(ctx.request(pb::ResumeJobRequest { job_id }))).await
}

/// Server-Sent Events of a job: `retry:` prelude, then `id`/`event`/`data` frames, `:` pings
/// while idle, ending after the terminal event. Resume with `Last-Event-ID` or
/// `?last_event_id=`.
#[utoipa::path(
    get, path = "/v1/optimize/{job_id}/events", tag = "optimize",
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
    State(state): State<EdgeState>,
    ctx: CallContext,
    version: Version,
    headers: HeaderMap,
    query: QueryPairs,
    JobIdPath(job_id): JobIdPath,
) -> Result<Response, ApiError> {
    let after_event_id = sse::resume_point(&headers, query.get("last_event_id"));
    let upstream = state
        .upstream()
        .jobs()
        .watch_job(ctx.request(pb::WatchJobRequest {
            job_id,
            after_event_id,
        }))
        .await?
        .into_inner();
    Ok(sse::response(
        state.sse_config(),
        version,
        upstream,
        state.stream_stop(),
    ))
}

/// The JSON state of the job a core call answers with.
async fn job_state(
    answer: impl Future<Output = Result<tonic::Response<pb::Job>, tonic::Status>>,
) -> Result<Json<JobState>, ApiError> {
    Ok(Json(JobState::from_pb(answer.await?.into_inner())))
}
