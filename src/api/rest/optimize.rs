//! The create request: `POST /v1/optimize` (and `POST /v1/optimize/estimate`, which takes the
//! same body) with its parts (GEPA options, dataset, budget, inline examples), the names its
//! options accept (documentation-only enums) and its mapping onto `pb::OptimizeRequest`.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::api::pb;
use crate::api::values::struct_from_json;

/// `POST /v1/optimize` body. Unknown fields are rejected.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizeBody {
    /// The prompt to evolve (not blank; only `MAX_REQUEST_BYTES` bounds its length).
    #[schema(min_length = 1, pattern = r"\S")]
    pub prompt: String,
    /// Free-form context.
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
    /// Which optimizer runs the job (default `default`).
    pub mode: Option<ModeName>,
    /// A built-in example pack.
    pub dataset: Option<DatasetBody>,
    /// Metric names, e.g. `exact_match`.
    #[schema(value_type = Option<Vec<MetricName>>)]
    pub metrics: Option<Vec<String>>,
    /// Spending limits.
    pub budget: Option<BudgetBody>,
    /// Inline examples; numeric ids become strings, missing ids are generated.
    pub examples: Option<Vec<ExampleBody>>,
    /// `brevity`, `diversity`, `coverage` (default all three).
    #[schema(value_type = Option<Vec<ObjectiveName>>)]
    pub objectives: Option<Vec<String>>,
    /// Random seed; 0 means the server's default.
    pub seed: Option<i64>,
    /// The target model (alias of `target_model_id`, highest precedence).
    pub target_model: Option<String>,
    /// The target model.
    #[schema(max_length = 200)]
    pub target_model_id: Option<String>,
    /// The target model (alias of `target_model_id`, lowest precedence).
    pub model_id: Option<String>,
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    #[schema(minimum = 1, maximum = 100000)]
    pub max_tokens: Option<u32>,
    #[schema(minimum = 1, maximum = 64)]
    pub tournament_size: Option<u32>,
    #[schema(minimum = 0, maximum = 1)]
    pub recombination_rate: Option<f64>,
    #[schema(minimum = 1, maximum = 1000)]
    pub early_stop_patience: Option<u32>,
    pub evaluation_rubric: Option<String>,
    /// GEPA knobs (mode `gepa` only).
    pub gepa: Option<GepaBody>,
}

/// `gepa` of [`OptimizeBody`]. Its ranges are checked in modes `gepa` and `eval` only.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GepaBody {
    /// Examples per reflective minibatch (default 4).
    #[schema(minimum = 1, maximum = 64)]
    pub minibatch_size: Option<u32>,
    /// `pareto` (default), `current_best` or `epsilon_greedy`.
    #[schema(value_type = Option<SelectorName>)]
    pub candidate_selector: Option<String>,
    /// `strict_improvement` (default) or `improvement_or_equal`.
    #[schema(value_type = Option<AcceptanceName>)]
    pub acceptance: Option<String>,
    /// System-aware merge (default on).
    pub use_merge: Option<bool>,
    /// Merge attempts allowed, counting every attempt (default 5).
    #[schema(maximum = 100)]
    pub max_merge_invocations: Option<u32>,
    /// Extra named components evolved next to `prompt`.
    #[schema(schema_with = components_schema)]
    pub components: Option<std::collections::BTreeMap<String, String>>,
    /// `subsample` (default) or `full`.
    #[schema(value_type = Option<ValidationPolicyName>)]
    pub validation_policy: Option<String>,
    /// Reproduce the engine before issue 20 (benchmarks only).
    pub legacy_budget: Option<bool>,
    /// Reflective proposals per generation, run together.
    #[schema(minimum = 1, maximum = 16)]
    pub parallel_proposals: Option<u32>,
}
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    Default,
    Gepa,
}

/// `gepa.components`: names of 1 to 100 characters other than `system_prompt`, text values.
fn components_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .description(Some(
            "Extra named components evolved next to `prompt`: names of 1 to 100 characters \
             other than `system_prompt`, text values.",
        ))
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(*crate::api::limits::COMPONENT_NAME_CHARS.start()))
                .max_length(Some(*crate::api::limits::COMPONENT_NAME_CHARS.end()))
                .pattern(Some("^(?!system_prompt$)")),
        ))
        .build()
}

/// `dataset` of [`OptimizeBody`].
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetBody {
    #[schema(value_type = DatasetName)]
    pub name: String,
    pub split: Option<String>,
}

/// `budget` of [`OptimizeBody`].
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub max_generations: Option<u32>,
    /// At least 1.
    #[schema(minimum = 1)]
    pub max_rollouts: Option<u64>,
    #[schema(minimum = 0)]
    pub max_cost: Option<f64>,
    /// Tokens over task, reflection and judge calls.
    pub max_tokens: Option<u64>,
    /// Wall time of a GEPA job in seconds (> 0; at most the server's `GEPA_MAX_WALL_TIME_S`,
    /// 86400 by default).
    #[schema(exclusive_minimum = 0, maximum = 86400)]
    pub max_wall_time_s: Option<f64>,
}

/// One inline example.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExampleBody {
    /// A string or a number (kept as its decimal text); generated when absent.
    #[schema(schema_with = example_id_schema)]
    pub id: Option<ExampleId>,
    pub input: String,
    pub expected: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The schema of an example id: a string or a number, or null.
fn example_id_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    let one_of = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "A string or a number (kept as its decimal text); generated when absent.",
        ))
        .build();
    Schema::OneOf(one_of)
}

/// Documentation only: the names `objectives` accepts.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ObjectiveName {
    Brevity,
    Diversity,
    Coverage,
}

/// Documentation only: `gepa.validation_policy`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ValidationPolicyName {
    Subsample,
    Full,
}

/// Documentation only: `gepa.candidate_selector`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum SelectorName {
    Pareto,
    CurrentBest,
    EpsilonGreedy,
}

/// Documentation only: `gepa.acceptance`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum AcceptanceName {
    StrictImprovement,
    ImprovementOrEqual,
}

/// Documentation only: built-in datasets (`crate::domain::gepa::DATASET_NAMES`).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum DatasetName {
    ToyQa,
    ToyClf,
    Examples,
}

/// Documentation only: metric names (`crate::domain::gepa::METRIC_NAMES`; `regex` is an alias
/// of `regex_pass`).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum MetricName {
    ExactMatch,
    Contains,
    RegexPass,
    Regex,
    TokenF1,
    JsonSchema,
    LlmJudge,
}

/// An example id as clients send it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ExampleId {
    Text(String),
    Number(serde_json::Number),
}

impl ExampleBody {
    /// The protobuf example; a missing id becomes a new UUID.
    pub fn into_pb(self) -> pb::Example {
        pb::Example {
            id: self
                .id
                .map(ExampleId::into_string)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            input: self.input,
            expected: self.expected,
            meta: self.meta.as_ref().map(struct_from_json),
        }
    }
}

impl ExampleId {
    pub(super) fn into_string(self) -> String {
        match self {
            ExampleId::Text(s) => s,
            ExampleId::Number(n) => n.to_string(),
        }
    }
}

/// The contract's target-model aliases, resolved by its precedence rule:
/// `target_model` > `target_model_id` > `model_id`. Every body that accepts them uses this.
pub fn resolve_target_model(
    target_model: Option<String>,
    target_model_id: Option<String>,
    model_id: Option<String>,
) -> Option<String> {
    target_model.or(target_model_id).or(model_id)
}

impl OptimizeBody {
    /// The protobuf request. `iterations` comes from the query, the key from the header.
    pub fn into_pb(self, iterations: Option<u32>, idempotency_key: String) -> pb::OptimizeRequest {
        let target_model_id =
            resolve_target_model(self.target_model, self.target_model_id, self.model_id);
        pb::OptimizeRequest {
            prompt: self.prompt,
            context: self.context.as_ref().map(struct_from_json),
            mode: match self.mode {
                None => pb::Mode::Unspecified,
                Some(ModeName::Default) => pb::Mode::Default,
                Some(ModeName::Gepa) => pb::Mode::Gepa,
            } as i32,
            dataset: self.dataset.map(|d| pb::DatasetRef {
                name: d.name,
                split: d.split,
            }),
            metrics: self.metrics.unwrap_or_default(),
            budget: self.budget.map(BudgetBody::into_pb),
            examples: self
                .examples
                .unwrap_or_default()
                .into_iter()
                .map(ExampleBody::into_pb)
                .collect(),
            objectives: self.objectives.unwrap_or_default(),
            seed: self.seed,
            target_model_id,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            tournament_size: self.tournament_size,
            recombination_rate: self.recombination_rate,
            early_stop_patience: self.early_stop_patience,
            evaluation_rubric: self.evaluation_rubric,
            iterations,
            idempotency_key,
            gepa: self.gepa.map(GepaBody::into_pb),
        }
    }
}

impl BudgetBody {
    pub fn into_pb(self) -> pb::Budget {
        pb::Budget {
            max_generations: self.max_generations,
            max_rollouts: self.max_rollouts,
            max_cost: self.max_cost,
            max_tokens: self.max_tokens,
            max_wall_time_s: self.max_wall_time_s,
        }
    }
}

impl GepaBody {
    pub fn into_pb(self) -> pb::GepaOptions {
        pb::GepaOptions {
            minibatch_size: self.minibatch_size,
            candidate_selector: self.candidate_selector.unwrap_or_default(),
            acceptance: self.acceptance.unwrap_or_default(),
            use_merge: self.use_merge,
            max_merge_invocations: self.max_merge_invocations,
            components: self.components.unwrap_or_default().into_iter().collect(),
            validation_policy: self.validation_policy.unwrap_or_default(),
            legacy_budget: self.legacy_budget.unwrap_or(false),
            parallel_proposals: self.parallel_proposals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> OptimizeBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn target_model_alias_precedence() {
        let req = body(r#"{"prompt":"p","model_id":"c","target_model_id":"b","target_model":"a"}"#)
            .into_pb(None, String::new());
        assert_eq!(req.target_model_id.as_deref(), Some("a"));
        let req = body(r#"{"prompt":"p","model_id":"c","target_model_id":"b"}"#)
            .into_pb(None, String::new());
        assert_eq!(req.target_model_id.as_deref(), Some("b"));
        let req = body(r#"{"prompt":"p","model_id":"c"}"#).into_pb(None, String::new());
        assert_eq!(req.target_model_id.as_deref(), Some("c"));
    }

    #[test]
    fn example_ids_become_strings_or_are_generated() {
        let req = body(r#"{"prompt":"p","examples":[{"id":7,"input":"a"},{"input":"b"}]}"#)
            .into_pb(None, String::new());
        assert_eq!(req.examples[0].id, "7");
        assert_eq!(req.examples[1].id.len(), 36);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<OptimizeBody>(r#"{"prompt":"p","x":1}"#).is_err());
        assert!(
            serde_json::from_str::<OptimizeBody>(
                r#"{"prompt":"p","examples":[{"input":"a","ideal":"b"}]}"#
            )
            .is_err()
        );
    }
}
