//! The workbench's routes, each one call of `WorkbenchService`: a job's candidates
//! (`GET /v1/optimize/{job_id}/candidates`), steering it (`POST …/steer`) and branching a new job
//! from it (`POST …/branch`).

use axum::Json;
use axum::extract::State;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::api::pb;
use crate::api::rest::{BudgetBody, CreatedJob, DatasetBody, ExampleBody, GepaBody};
use crate::domain::gepa::CandidateInfo;
use crate::edge::EdgeState;
use crate::edge::error::{ApiError, ErrorBody};
use crate::edge::extract::{CallContext, JobIdPath, JsonBody};
use crate::edge::routes::optimize::idempotency_key;
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
    /// `{job_id, candidate_id}` of the job this one was branched from; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub branched_from: Option<crate::domain::spec::BranchedFrom>,
}

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
    let lineage = crate::workbench::Lineage::from(answer);
    Ok(Json(Candidates {
        candidates: lineage.candidates,
        rejected: lineage.rejected,
        val_example_ids: lineage.val_example_ids,
        best_id: lineage.best_id,
        branched_from: lineage.branched_from,
    }))
}

/// `POST /v1/optimize/{job_id}/steer` body. Give feedback, a candidate, or both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SteerBody {
    /// Feedback the job's next reflections receive (not blank).
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    pub feedback: Option<String>,
    /// The component the feedback is about (default: every component).
    pub component: Option<String>,
    /// A hand-written candidate for the pool.
    pub candidate: Option<HumanCandidateBody>,
}

/// A hand-written candidate: a parent's components with some replaced.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HumanCandidateBody {
    /// The parent's candidate id (default 0, the seed).
    pub parent_id: Option<u32>,
    /// Component name → new text, e.g. `{"system_prompt": "…"}` (at least one).
    #[schema(schema_with = candidate_components_schema)]
    pub components: std::collections::BTreeMap<String, String>,
}

/// `components` of [`HumanCandidateBody`]: an object of strings with at least one entry.
fn candidate_components_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::Object))
        .additional_properties(Some(AdditionalProperties::from(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .min_length(Some(1))
                .pattern(Some(r"\S")),
        )))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .min_length(Some(1)),
        ))
        .min_properties(Some(1))
        .build()
}

/// `POST /v1/optimize/{job_id}/steer` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Steered {
    pub job_id: String,
    pub feedback_queued: bool,
    pub candidate_queued: bool,
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
        .steer_job(ctx.request(pb::SteerJobRequest {
            job_id,
            feedback: body.feedback.unwrap_or_default(),
            component: body.component.unwrap_or_default(),
            candidate: body.candidate.map(|c| pb::HumanCandidate {
                parent_id: c.parent_id.unwrap_or(0),
                components: c.components.into_iter().collect(),
            }),
        }))
        .await?
        .into_inner();
    Ok(Json(Steered {
        job_id: answer.job_id,
        feedback_queued: answer.feedback_queued,
        candidate_queued: answer.candidate_queued,
    }))
}

/// `POST /v1/optimize/{job_id}/branch` body; unset settings are the job's own.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchBody {
    /// The candidate that seeds the new job (default: the best).
    pub candidate_id: Option<u32>,
    /// Continue the job's search from its checkpoint instead (budget spent included; the
    /// examples cannot change).
    pub from_checkpoint: Option<bool>,
    pub budget: Option<BudgetBody>,
    /// minibatch_size, candidate_selector, acceptance, use_merge, max_merge_invocations.
    pub gepa: Option<GepaBody>,
    pub dataset: Option<DatasetBody>,
    #[schema(max_items = 1000)]
    pub examples: Option<Vec<ExampleBody>>,
    pub seed: Option<i64>,
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
    let request = pb::BranchJobRequest {
        job_id,
        candidate_id: body.candidate_id,
        from_checkpoint: body.from_checkpoint.unwrap_or(false),
        budget: body.budget.map(BudgetBody::into_pb),
        gepa: body.gepa.map(GepaBody::into_pb),
        dataset: body.dataset.map(|d| pb::DatasetRef {
            name: d.name,
            split: d.split,
        }),
        examples: body
            .examples
            .unwrap_or_default()
            .into_iter()
            .map(ExampleBody::into_pb)
            .collect(),
        seed: body.seed,
        idempotency_key: idempotency_key(&headers)?,
    };
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
