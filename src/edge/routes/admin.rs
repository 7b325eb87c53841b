//! `/v1/admin/jobs…`: list (paginated), read, cancel and delete jobs.
//!
//! Pagination: `?limit=` (1–500, default 50) and `?page_token=` taken from the previous page's
//! `next_page_token` (null on the last page).

use axum::Json;
use axum::extract::State;
use http::StatusCode;

use crate::api::pb;
use crate::api::rest::{JobList, JobState};
use crate::edge::EdgeState;
use crate::edge::error::{ApiError, ErrorBody};
use crate::edge::extract::{CallContext, JobIdPath, QueryPairs};

/// Jobs, newest first, one page at a time.
#[utoipa::path(
    get, path = "/v1/admin/jobs", tag = "admin",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, description = "Page size (default 50), clamped to 500"),
        ("page_token" = Option<String>, Query, pattern = "^[0-9]{0,18}$", description = "next_page_token of the previous page"),
    ),
    responses((status = 200, body = JobList), (status = 422, body = ErrorBody))
)]
pub async fn list(
    State(state): State<EdgeState>,
    ctx: CallContext,
    query: QueryPairs,
) -> Result<Json<JobList>, ApiError> {
    let page_size = match query.integer("limit")? {
        None => 0,
        Some(n) if n < 1 => {
            return Err(ApiError::invalid(&["query", "limit"], "limit must be >= 1"));
        }
        Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
    };
    let request = pb::ListJobsRequest {
        page_size,
        page_token: query.get("page_token").unwrap_or("").to_string(),
        status: Vec::new(),
    };
    let list = state
        .upstream()
        .jobs()
        .list_jobs(ctx.request(request))
        .await?
        .into_inner();
    Ok(Json(JobList::from_pb(list)))
}

/// One job's state.
#[utoipa::path(
    get, path = "/v1/admin/jobs/{job_id}", tag = "admin",
    params(("job_id" = String, Path)),
    responses((status = 200, body = JobState), (status = 404, body = ErrorBody))
)]
pub async fn get(
    state: State<EdgeState>,
    ctx: CallContext,
    job_id: JobIdPath,
) -> Result<Json<JobState>, ApiError> {
    super::optimize::get(state, ctx, job_id).await
}

/// Cancel a job (same rules as `DELETE /v1/optimize/{job_id}`).
#[utoipa::path(
    post, path = "/v1/admin/jobs/{job_id}/cancel", tag = "admin",
    params(("job_id" = String, Path)),
    responses(
        (status = 200, body = JobState),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
    )
)]
pub async fn cancel(
    state: State<EdgeState>,
    ctx: CallContext,
    job_id: JobIdPath,
) -> Result<Json<JobState>, ApiError> {
    super::optimize::cancel(state, ctx, job_id).await
}

/// Delete a job and its events (a running job is cancelled first); 204 for unknown ids too.
#[utoipa::path(
    delete, path = "/v1/admin/jobs/{job_id}", tag = "admin",
    params(("job_id" = String, Path)),
    responses((status = 204, description = "Deleted (or never existed)"))
)]
pub async fn delete(
    State(state): State<EdgeState>,
    ctx: CallContext,
    JobIdPath(job_id): JobIdPath,
) -> Result<StatusCode, ApiError> {
    state
        .upstream()
        .jobs()
        .delete_job(ctx.request(pb::DeleteJobRequest { job_id }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
