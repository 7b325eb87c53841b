//! The workbench's shapes: a job's candidates (`GET /v1/optimize/{job_id}/candidates`),
//! steering it (`POST …/steer`) and branching a new job from it (`POST …/branch`), with their
//! mapping onto the protobuf requests and from the responses.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::optimize::{BudgetBody, DatasetBody, ExampleBody, GepaBody};
use crate::api::pb;

/// `GET /v1/optimize/{job_id}/candidates` answer, rendered from the wire lineage (its JSON
/// rules are declared with the generated types, see `crate::api::json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Candidates {
    /// The pool by id (the seed is 0): `{id, parents, origin, components, score, val_scores,
    /// discovered_at_metric_calls}`.
    #[schema(value_type = Vec<Object>)]
    pub candidates: Vec<pb::CandidateInfo>,
    /// Proposals that did not beat their parent: `{generation, parent_ids, component, text,
    /// example_ids, parent_scores, child_scores}`.
    #[schema(value_type = Vec<Object>)]
    pub rejected: Vec<pb::RejectedProposal>,
    /// Validation example ids (the columns of the per-example score matrix).
    pub val_example_ids: Vec<String>,
    pub best_id: u32,
    /// `{job_id, candidate_id}` of the job this one was branched from; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub branched_from: Option<pb::BranchedFrom>,
}

/// `POST /v1/optimize/{job_id}/steer` body. Give feedback, a candidate, or both.
#[derive(Debug, Deserialize, ToSchema)]
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
#[derive(Debug, Deserialize, ToSchema)]
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
#[derive(Debug, Serialize, ToSchema)]
pub struct Steered {
    pub job_id: String,
    pub feedback_queued: bool,
    pub candidate_queued: bool,
}

/// `POST /v1/optimize/{job_id}/branch` body; unset settings are the job's own.
#[derive(Debug, Default, Deserialize, ToSchema)]
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

impl Candidates {
    pub fn from_pb(answer: pb::ListCandidatesResponse) -> Candidates {
        let pb::ListCandidatesResponse {
            candidates,
            rejected,
            val_example_ids,
            best_id,
            branched_from,
        } = answer;
        Candidates {
            candidates,
            rejected,
            val_example_ids,
            best_id,
            branched_from,
        }
    }
}

impl SteerBody {
    pub fn into_pb(self, job_id: String) -> pb::SteerJobRequest {
        pb::SteerJobRequest {
            job_id,
            feedback: self.feedback.unwrap_or_default(),
            component: self.component.unwrap_or_default(),
            candidate: self.candidate.map(|c| pb::HumanCandidate {
                parent_id: c.parent_id.unwrap_or(0),
                components: c.components.into_iter().collect(),
            }),
        }
    }
}

impl Steered {
    pub fn from_pb(answer: pb::SteerJobResponse) -> Steered {
        Steered {
            job_id: answer.job_id,
            feedback_queued: answer.feedback_queued,
            candidate_queued: answer.candidate_queued,
        }
    }
}

impl BranchBody {
    /// The protobuf request; the key comes from the `Idempotency-Key` header (empty: none).
    pub fn into_pb(self, job_id: String, idempotency_key: String) -> pb::BranchJobRequest {
        pb::BranchJobRequest {
            job_id,
            candidate_id: self.candidate_id,
            from_checkpoint: self.from_checkpoint.unwrap_or(false),
            budget: self.budget.map(BudgetBody::into_pb),
            gepa: self.gepa.map(GepaBody::into_pb),
            dataset: self.dataset.map(|d| pb::DatasetRef {
                name: d.name,
                split: d.split,
            }),
            examples: self
                .examples
                .unwrap_or_default()
                .into_iter()
                .map(ExampleBody::into_pb)
                .collect(),
            seed: self.seed,
            idempotency_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::gepa::CandidateInfo;
    use crate::domain::spec::BranchedFrom;
    use crate::workbench::{Lineage, RejectedProposal};

    fn text<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).expect("renders")
    }

    /// What clients read is rendered from the wire lineage; it is the bytes the domain lineage
    /// renders (the workbench page and older clients read those).
    #[test]
    fn candidates_render_as_the_domain_lineage() {
        for candidate_id in [Some(3), None] {
            let lineage = Lineage {
                candidates: vec![CandidateInfo {
                    id: 1,
                    parents: vec![0],
                    origin: "reflection".into(),
                    components: [("system_prompt".to_string(), "Be \"brief\".".to_string())].into(),
                    score: 0.75,
                    val_scores: [("b".to_string(), 1.0), ("a".to_string(), 0.5)].into(),
                    discovered_at_metric_calls: 42,
                    validated_on: 2,
                }],
                rejected: vec![RejectedProposal {
                    generation: 2,
                    parent_ids: vec![1],
                    component: "system_prompt".into(),
                    text: "t".into(),
                    example_ids: vec!["e1".into()],
                    parent_scores: vec![0.5],
                    child_scores: vec![0.25],
                }],
                val_example_ids: vec!["a".into(), "b".into()],
                best_id: 1,
                branched_from: Some(BranchedFrom {
                    job_id: "j0".into(),
                    candidate_id,
                }),
            };
            let wire = Candidates::from_pb(pb::ListCandidatesResponse::from(lineage.clone()));
            assert_eq!(text(&wire.candidates), text(&lineage.candidates));
            assert_eq!(text(&wire.rejected), text(&lineage.rejected));
            assert_eq!(text(&wire.branched_from), text(&lineage.branched_from));
        }
    }
}
