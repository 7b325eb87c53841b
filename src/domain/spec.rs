//! What a client asks of a job, after transport decoding, and its validation.

use serde::{Deserialize, Serialize};

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
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            errors.push(FieldError::new(
                &["temperature"],
                "temperature must be between 0 and 2",
            ));
        }
        if let Some(r) = self.recombination_rate
            && !(0.0..=1.0).contains(&r)
        {
            errors.push(FieldError::new(
                &["recombination_rate"],
                "recombination_rate must be between 0 and 1",
            ));
        }
        if let Some(n) = self.max_tokens
            && !(1..=100_000).contains(&n)
        {
            errors.push(FieldError::new(
                &["max_tokens"],
                "max_tokens must be between 1 and 100000",
            ));
        }
        if let Some(n) = self.tournament_size
            && !(1..=64).contains(&n)
        {
            errors.push(FieldError::new(
                &["tournament_size"],
                "tournament_size must be between 1 and 64",
            ));
        }
        if let Some(n) = self.early_stop_patience
            && !(1..=1000).contains(&n)
        {
            errors.push(FieldError::new(
                &["early_stop_patience"],
                "early_stop_patience must be between 1 and 1000",
            ));
        }
        if let Some(n) = self.budget.max_rollouts
            && n == 0
        {
            errors.push(FieldError::new(
                &["budget", "max_rollouts"],
                "max_rollouts must be >= 1",
            ));
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
        if let Some(n) = self.gepa.minibatch_size
            && !(1..=64).contains(&n)
        {
            errors.push(FieldError::new(
                &["gepa", "minibatch_size"],
                "minibatch_size must be between 1 and 64",
            ));
        }
        if let Some(n) = self.gepa.max_merge_invocations
            && n > 100
        {
            errors.push(FieldError::new(
                &["gepa", "max_merge_invocations"],
                "max_merge_invocations must be at most 100",
            ));
        }
        if let Some(n) = self.gepa.parallel_proposals
            && !(1..=16).contains(&n)
        {
            errors.push(FieldError::new(
                &["gepa", "parallel_proposals"],
                "parallel_proposals must be between 1 and 16",
            ));
        }
        if matches!(self.mode, Mode::Gepa | Mode::Eval) {
            self.validate_gepa(&mut errors);
        }
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
        use super::depth::{MAX_JSON_DEPTH, message, too_deep_in_map};
        let mut report = |prefix: Vec<String>, path: Vec<String>| {
            let loc: Vec<String> = prefix.into_iter().chain(path).collect();
            let loc: Vec<&str> = loc.iter().map(String::as_str).collect();
            errors.push(FieldError::new(&loc, message()));
        };
        if let Some(context) = &self.context
            && let Some(path) = too_deep_in_map(context, 2, MAX_JSON_DEPTH)
        {
            report(vec!["context".into()], path);
        }
        for (i, example) in self.examples.iter().enumerate() {
            if let Some(path) = too_deep_in_map(&example.meta, 4, MAX_JSON_DEPTH) {
                report(vec!["examples".into(), i.to_string(), "meta".into()], path);
            }
        }
    }

    /// Rules of `mode: "gepa"`: known dataset and metrics, sane GEPA options.
    fn validate_gepa(&self, errors: &mut Vec<FieldError>) {
        use super::gepa::DEFAULT_COMPONENT;
        if self.gepa.components.len() > 16 {
            errors.push(FieldError::new(
                &["gepa", "components"],
                "at most 16 components",
            ));
        }
        for name in self.gepa.components.keys() {
            if name.is_empty() || name.len() > 100 || name == DEFAULT_COMPONENT {
                errors.push(FieldError::new(
                    &["gepa", "components", name],
                    "component names must be 1-100 bytes and not system_prompt",
                ));
            }
        }
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
}
