//! The workbench's routes, each one call of `WorkbenchService`: a job's candidates
//! (`GET /v1/optimize/{job_id}/candidates`), steering it (`POST …/steer`) and branching a new job
//! from it (`POST …/branch`).

use crate::api::pb;
use crate::api::rest::{BranchBody, Candidates, CreatedJob, SteerBody, Steered};
use crate::edge::EdgeState;
use crate::edge::error::{ApiError, ErrorBody};
use crate::edge::extract::{CallContext, JobIdPath, JsonBody};
use crate::edge::routes::optimize::idempotency_key;
use axum::Json;
use axum::extract::State;
use http::HeaderMap;

/// Every candidate of a GEPA job with its parents, origin, texts and validation scores, and the
/// rejected proposals with their minibatch scores (live while the job runs).
#[utoipa::path(
    get, path = "/v1/optimize/{job_id}/candidates", tag = "workbench",
    params(("job_id" = String, Path)),
    responses(
        (status = 200, body = Candidates),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not a gepa job (invalid_job_state)", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub async fn candidates(
    State(state): State<EdgeState>,
    ctx: CallContext,
    JobIdPath(job_id): JobIdPath,
) -> Result<Json<Candidates>, ApiError> {
    let answer = state
        .upstream()
        .workbench()
        .list_candidates(ctx.request(pb::ListCandidatesRequest { job_id }))
        .await?
        .into_inner();
    Ok(Json(Candidates::from_pb(answer)))
}

/// Queue human feedback for a running or paused GEPA job's next reflections and/or a
/// hand-written candidate for its pool (origin `human`); both are taken at its next iteration.
#[utoipa::path(
    post, path = "/v1/optimize/{job_id}/steer", tag = "workbench",
    params(("job_id" = String, Path)),
    request_body = SteerBody,
    responses(
        (status = 200, body = Steered),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not a running or paused gepa job (invalid_job_state)", body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "Nothing to do (neither feedback nor a candidate), or an invalid one", body = ErrorBody),
    )
)]
pub async fn steer(
    State(state): State<EdgeState>,
    ctx: CallContext,
    JobIdPath(job_id): JobIdPath,
    JsonBody(body): JsonBody<SteerBody>,
) -> Result<Json<Steered>, ApiError> {
    let answer = state
        .upstream()
        .workbench()
        .steer_job(ctx.request(body.into_pb(job_id)))
        .await?
        .into_inner();
    Ok(Json(Steered::from_pb(answer)))
}

/// Start a new GEPA job from one of this job's candidates or from its checkpoint, with
/// changed settings; the new job's candidates route names it `branched_from`.
#[utoipa::path(
    post, path = "/v1/optimize/{job_id}/branch", tag = "workbench",
    params(
        ("job_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, max_length = 256, description = "Repeat a key to get the same job back"),
    ),
    request_body = BranchBody,
    responses(
        (status = 200, body = CreatedJob),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not a gepa job (invalid_job_state)", body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
pub async fn branch(
    State(state): State<EdgeState>,
    ctx: CallContext,
    headers: HeaderMap,
    JobIdPath(job_id): JobIdPath,
    JsonBody(body): JsonBody<BranchBody>,
) -> Result<Json<CreatedJob>, ApiError> {
    let request = body.into_pb(job_id, idempotency_key(&headers)?);
    let created = state
        .upstream()
        .workbench()
        .branch_job(ctx.request(request))
        .await?
        .into_inner();
    Ok(Json(CreatedJob::new(
        created.job_id,
        &state,
        ctx.principal_id(),
    )))
}
