//! `/v1/optimize/{job_id}/candidates`: the workbench's view of a job's candidates, one call of
//! `WorkbenchService`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::domain::gepa::CandidateInfo;
use crate::edge::EdgeState;
use crate::edge::error::{ApiError, ErrorBody};
use crate::edge::extract::{CallContext, JobIdPath};
use crate::grpc::pb;
use crate::grpc::workbench::lineage_from_pb;
use crate::workbench::RejectedProposal;

/// `GET /v1/optimize/{job_id}/candidates` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Candidates {
    /// The pool by id (the seed is 0): `{id, parents, origin, components, score, val_scores,
    /// discovered_at_metric_calls}`.
    #[schema(value_type = Vec<Object>)]
    pub candidates: Vec<CandidateInfo>,
    /// Proposals that did not beat their parent: `{generation, parent_ids, component, text,
    /// example_ids, parent_scores, child_scores}`.
    #[schema(value_type = Vec<Object>)]
    pub rejected: Vec<RejectedProposal>,
    /// Validation example ids (the columns of the per-example score matrix).
    pub val_example_ids: Vec<String>,
    pub best_id: u32,
}

/// Every candidate of a GEPA job with its parents, origin, texts and validation scores, and the
/// rejected proposals with their minibatch scores (live while the job runs).
#[utoipa::path(
    get, path = "/v1/optimize/{job_id}/candidates", tag = "workbench",
    params(("job_id" = String, Path)),
    responses(
        (status = 200, body = Candidates),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Not a gepa job", body = ErrorBody),
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
    let lineage = lineage_from_pb(answer);
    Ok(Json(Candidates {
        candidates: lineage.candidates,
        rejected: lineage.rejected,
        val_example_ids: lineage.val_example_ids,
        best_id: lineage.best_id,
    }))
}
