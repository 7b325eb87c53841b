//! The shapes of the routes beside optimize: stored examples (`/v1/examples…`), eval jobs
//! (`POST /v1/eval/start`) and estimates (`POST /v1/optimize/estimate`), with their mapping onto
//! the protobuf requests and from the responses.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::optimize::{DatasetBody, ExampleBody, MetricName, resolve_target_model};
use crate::api::pb;
use crate::api::values::{json_from_struct, struct_from_json};

/// `{"upserted": N}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Upserted {
    pub upserted: u32,
}

/// One stored example as the original lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExampleOut {
    pub id: String,
    pub input: String,
    pub expected: Option<String>,
    #[schema(value_type = Object)]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

/// `{"examples": [...], "limit": L, "offset": O}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExamplePage {
    pub examples: Vec<ExampleOut>,
    pub limit: u32,
    pub offset: u32,
}

/// `POST /v1/eval/start` body (the original's keys, plus `prompt` and `metrics`).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct EvalBody {
    /// A label for the run (any string, echoed in `eval_started`); it never selects data.
    pub name: Option<String>,
    /// A built-in pack to evaluate instead of the stored examples.
    pub dataset: Option<DatasetBody>,
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
    #[schema(value_type = Option<Vec<MetricName>>)]
    pub metrics: Option<Vec<String>>,
}

/// `POST /v1/optimize/estimate` answer: what a GEPA request is predicted to spend.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
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

/// `POST /v1/examples/bulk`: upsert by id; a missing id is left empty for the core to assign,
/// a missing meta stays unset.
pub fn bulk_upsert_request(examples: Vec<ExampleBody>) -> pb::BulkUpsertExamplesRequest {
    let examples = examples
        .into_iter()
        .map(|e| pb::Example {
            id: e.id.map(|id| id.into_string()).unwrap_or_default(),
            input: e.input,
            expected: e.expected,
            meta: e.meta.as_ref().map(struct_from_json),
        })
        .collect();
    pb::BulkUpsertExamplesRequest { examples }
}

impl Upserted {
    pub fn from_pb(reply: pb::BulkUpsertExamplesResponse) -> Upserted {
        Upserted {
            upserted: reply.upserted,
        }
    }
}

impl ExamplePage {
    pub fn from_pb(page: pb::ListExamplesResponse) -> ExamplePage {
        ExamplePage {
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
        }
    }
}

impl EvalBody {
    /// The protobuf request; the key comes from the `Idempotency-Key` header (empty: none).
    pub fn into_pb(self, idempotency_key: String) -> pb::StartEvalRequest {
        pb::StartEvalRequest {
            name: self.name,
            dataset: self.dataset.map(|d| pb::DatasetRef {
                name: d.name,
                split: d.split,
            }),
            target_model_id: resolve_target_model(
                self.target_model,
                self.target_model_id,
                self.model_id,
            ),
            max_examples: self.max_examples,
            seed: self.seed,
            tournament_size: self.tournament_size,
            recombination_rate: self.recombination_rate,
            early_stop_patience: self.early_stop_patience,
            prompt: self.prompt.unwrap_or_default(),
            metrics: self.metrics.unwrap_or_default(),
            idempotency_key,
        }
    }
}

impl EstimateBody {
    pub fn from_pb(e: pb::EstimateJobResponse) -> EstimateBody {
        EstimateBody {
            metric_calls: e.metric_calls,
            reflection_calls: e.reflection_calls,
            iterations: e.iterations,
            task_tokens: e.task_tokens,
            reflection_tokens: e.reflection_tokens,
            tokens: e.task_tokens + e.reflection_tokens,
            cost_usd: e.cost_usd,
            train_examples: e.train_examples,
            val_examples: e.val_examples,
        }
    }
}
