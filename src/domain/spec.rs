//! What a client asks of a job, after transport decoding, and its validation.

use std::fmt::Display;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::limits;
use crate::error::{Error, FieldError};

/// Which optimizer runs the job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Default,
    Gepa,
    /// An eval job: score a prompt on a dataset (`EvalService.StartEval`, `POST /v1/eval/start`).
    Eval,
}

/// The original's three deterministic objectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    Brevity,
    Diversity,
    Coverage,
}

impl Objective {
    pub const ALL: [Objective; 3] = [
        Objective::Brevity,
        Objective::Diversity,
        Objective::Coverage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Brevity => "brevity",
            Objective::Diversity => "diversity",
            Objective::Coverage => "coverage",
        }
    }

    pub fn parse(s: &str) -> Option<Objective> {
        Objective::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// A built-in example pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRef {
    pub name: String,
    pub split: Option<String>,
}

/// Spending limits. `None` means the server default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub max_generations: Option<u32>,
    /// Metric calls (the original's `max_rollouts`).
    pub max_rollouts: Option<u64>,
    /// USD.
    pub max_cost: Option<f64>,
    /// Tokens over task, reflection and judge calls.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Wall time of a GEPA job in seconds (capped by `GEPA_MAX_WALL_TIME_S`).
    #[serde(default)]
    pub max_wall_time_s: Option<f64>,
}

/// One input/expected pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub id: String,
    pub input: String,
    pub expected: Option<String>,
    #[serde(default)]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

/// A validated job request. Built by the transports from their wire types; `validate` is the one
/// place the rules live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub prompt: String,
    #[serde(default)]
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub dataset: Option<DatasetRef>,
    #[serde(default)]
    pub metrics: Vec<String>,
    #[serde(default)]
    pub budget: Budget,
    #[serde(default)]
    pub examples: Vec<Example>,
    /// Requested objectives; `None` means all three.
    #[serde(default)]
    pub objectives: Option<Vec<Objective>>,
    pub seed: Option<i64>,
    pub target_model_id: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub tournament_size: Option<u32>,
    pub recombination_rate: Option<f64>,
    pub early_stop_patience: Option<u32>,
    pub evaluation_rubric: Option<String>,
    /// Requested iterations, already clamped to `MAX_ITERATIONS`.
    pub iterations: u32,
    /// GEPA knobs (`mode: "gepa"` only).
    #[serde(default)]
    pub gepa: super::gepa::GepaOptions,
    /// Eval jobs: the run's label (the request's `name`); it never selects data.
    #[serde(default)]
    pub eval_name: Option<String>,
    /// The job (and candidate) this one was branched from (`BranchJob`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branched_from: Option<BranchedFrom>,
}

/// Where a branched job came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchedFrom {
    pub job_id: String,
    /// The candidate that seeded it; None when it continued the job's checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_id: Option<u32>,
}

/// At most this many stored examples are loaded for one job (a read cap of the store, not a
/// request rule). Requests have no size caps of their own: `MAX_REQUEST_BYTES` bounds every
/// field on both transports, so a body the byte limit accepts is never refused for a field's
/// length (the original had no such caps either).
pub const MAX_EXAMPLES: usize = 1_000;

impl JobSpec {
    /// A spec with only a prompt, everything else default (handy for tests and examples).
    pub fn from_prompt(prompt: impl Into<String>) -> Self {
        JobSpec {
            prompt: prompt.into(),
            context: None,
            mode: Mode::Default,
            dataset: None,
            metrics: Vec::new(),
            budget: Budget::default(),
            examples: Vec::new(),
            objectives: None,
            seed: None,
            target_model_id: None,
            temperature: None,
            max_tokens: None,
            tournament_size: None,
            recombination_rate: None,
            early_stop_patience: None,
            evaluation_rubric: None,
            iterations: 1,
            gepa: Default::default(),
            eval_name: None,
            branched_from: None,
        }
    }

    /// Objectives in force (all three when the request named none).
    pub fn objectives(&self) -> Vec<Objective> {
        self.objectives
            .clone()
            .unwrap_or_else(|| Objective::ALL.to_vec())
    }

    /// Checks every field; all problems are reported at once. `requested_iterations` is the raw
    /// value (it lives outside the body on REST) and is clamped to `max_iterations`.
    pub fn validate(
        &mut self,
        requested_iterations: i64,
        max_iterations: u32,
    ) -> Result<(), Error> {
        let mut errors = Vec::new();
        if requested_iterations < 1 {
            errors.push(FieldError::new(&["iterations"], "iterations must be >= 1"));
        } else {
            self.iterations = requested_iterations.min(i64::from(max_iterations.max(1))) as u32;
        }
        if self.prompt.trim().is_empty() {
            errors.push(FieldError::new(&["prompt"], "prompt must not be empty"));
        }
        self.validate_depth(&mut errors);
        for (name, value, range) in [
            ("temperature", self.temperature, &limits::TEMPERATURE),
            (
                "recombination_rate",
                self.recombination_rate,
                &limits::RECOMBINATION_RATE,
            ),
        ] {
            check_range(&mut errors, &[name], value, range);
        }
        for (name, value, range) in [
            ("max_tokens", self.max_tokens, &limits::MAX_TOKENS),
            (
                "tournament_size",
                self.tournament_size,
                &limits::TOURNAMENT_SIZE,
            ),
            (
                "early_stop_patience",
                self.early_stop_patience,
                &limits::EARLY_STOP_PATIENCE,
            ),
        ] {
            check_range(&mut errors, &[name], value, range);
        }
        if let Some(n) = self.budget.max_rollouts
            && n == 0
        {
            errors.push(FieldError::new(
                &["budget", "max_rollouts"],
                "max_rollouts must be >= 1",
            ));
        }
        if self.gepa.components.len() > limits::MAX_COMPONENTS {
            errors.push(FieldError::new(
                &["gepa", "components"],
                format!("at most {} components", limits::MAX_COMPONENTS),
            ));
        }
        let name_chars = &limits::COMPONENT_NAME_CHARS;
        for name in self.gepa.components.keys() {
            if !name_chars.contains(&name.chars().count()) || name == super::gepa::DEFAULT_COMPONENT
            {
                errors.push(FieldError::new(
                    &["gepa", "components", name],
                    format!(
                        "component names must be {}-{} characters and not system_prompt",
                        name_chars.start(),
                        name_chars.end()
                    ),
                ));
            }
        }
        // The documented range (int64): larger values are refused, not silently taken.
        for (name, value) in [
            ("max_rollouts", self.budget.max_rollouts),
            ("max_tokens", self.budget.max_tokens),
        ] {
            if value.is_some_and(|v| v > i64::MAX as u64) {
                errors.push(FieldError::new(
                    &["budget", name],
                    format!("{name} must be at most {}", i64::MAX),
                ));
            }
        }
        if let Some(cost) = self.budget.max_cost
            && !(cost.is_finite() && cost >= 0.0)
        {
            errors.push(FieldError::new(
                &["budget", "max_cost"],
                "max_cost must be >= 0",
            ));
        }
        if let Some(wall) = self.budget.max_wall_time_s
            && !(wall.is_finite() && wall > 0.0)
        {
            errors.push(FieldError::new(
                &["budget", "max_wall_time_s"],
                "max_wall_time_s must be > 0",
            ));
        }
        // Built-in dataset and metric names and the documented ranges of `gepa` options hold
        // in every mode (the default mode ignores them, but does not accept values the schema
        // forbids).
        use super::gepa::{DATASET_NAMES, METRIC_NAMES};
        if let Some(dataset) = &self.dataset
            && !DATASET_NAMES.contains(&dataset.name.as_str())
        {
            errors.push(FieldError::new(
                &["dataset", "name"],
                format!(
                    "unknown dataset {:?}; expected one of {}",
                    dataset.name,
                    DATASET_NAMES.join(", ")
                ),
            ));
        }
        for (i, metric) in self.metrics.iter().enumerate() {
            if !METRIC_NAMES.contains(&metric.as_str()) {
                errors.push(FieldError::new(
                    &["metrics", &i.to_string()],
                    format!(
                        "unknown metric {metric:?}; expected one of {}",
                        METRIC_NAMES.join(", ")
                    ),
                ));
            }
        }
        check_range(
            &mut errors,
            &["gepa", "minibatch_size"],
            self.gepa.minibatch_size,
            &limits::MINIBATCH_SIZE,
        );
        if let Some(n) = self.gepa.max_merge_invocations
            && n > limits::MAX_MERGE_INVOCATIONS
        {
            errors.push(FieldError::new(
                &["gepa", "max_merge_invocations"],
                format!(
                    "max_merge_invocations must be at most {}",
                    limits::MAX_MERGE_INVOCATIONS
                ),
            ));
        }
        check_range(
            &mut errors,
            &["gepa", "parallel_proposals"],
            self.gepa.parallel_proposals,
            &limits::PARALLEL_PROPOSALS,
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(errors))
        }
    }
}

impl JobSpec {
    /// Free-form JSON no deeper than [`super::depth::MAX_JSON_DEPTH`] levels from the request's
    /// root (`context` sits at level 2, an example's `meta` at level 4).
    fn validate_depth(&self, errors: &mut Vec<FieldError>) {
        if let Some(context) = &self.context {
            super::depth::check_map(context, 2, &["context"], errors);
        }
        for (i, example) in self.examples.iter().enumerate() {
            let index = i.to_string();
            super::depth::check_map(&example.meta, 4, &["examples", &index, "meta"], errors);
        }
    }
}

/// `"<field> must be between <min> and <max>"` when `value` is set and outside `range` (NaN
/// included).
fn check_range<T: PartialOrd + Display + Copy>(
    errors: &mut Vec<FieldError>,
    loc: &[&str],
    value: Option<T>,
    range: &RangeInclusive<T>,
) {
    if let Some(value) = value
        && !range.contains(&value)
    {
        let name = loc.last().copied().unwrap_or_default();
        errors.push(FieldError::new(
            loc,
            format!(
                "{name} must be between {} and {}",
                range.start(),
                range.end()
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gepa_mode_rejects_unknown_dataset_and_metric() {
        let mut spec = JobSpec::from_prompt("hello");
        spec.mode = Mode::Gepa;
        spec.dataset = Some(DatasetRef {
            name: "nope".into(),
            split: None,
        });
        spec.metrics = vec!["exact_match".into(), "vibes".into()];
        match spec.validate(1, 4) {
            Err(Error::Validation(errors)) => {
                let locs: Vec<_> = errors.iter().map(|e| e.loc.join(".")).collect();
                assert_eq!(locs, ["dataset.name", "metrics.1"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn iterations_are_clamped_and_checked() {
        let mut spec = JobSpec::from_prompt("hello");
        spec.validate(10, 4).unwrap();
        assert_eq!(spec.iterations, 4);
        let err = JobSpec::from_prompt("hello").validate(0, 4).unwrap_err();
        assert_eq!(err.to_string(), "iterations must be >= 1");
    }

    #[test]
    fn all_field_errors_are_reported_together() {
        let mut spec = JobSpec::from_prompt(" ");
        spec.temperature = Some(3.0);
        match spec.validate(1, 4) {
            Err(Error::Validation(errors)) => {
                let locs: Vec<_> = errors.iter().map(|e| e.loc.join(".")).collect();
                assert_eq!(locs, ["prompt", "temperature"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn range_messages_state_the_limits() {
        let mut spec = JobSpec::from_prompt("p");
        spec.temperature = Some(f64::NAN);
        spec.max_tokens = Some(0);
        spec.gepa.minibatch_size = Some(65);
        let Err(Error::Validation(errors)) = spec.validate(1, 4) else {
            panic!("invalid");
        };
        let messages: Vec<_> = errors.iter().map(|e| e.msg.as_str()).collect();
        assert_eq!(
            messages,
            [
                "temperature must be between 0 and 2",
                "max_tokens must be between 1 and 100000",
                "minibatch_size must be between 1 and 64",
            ]
        );
    }
}
