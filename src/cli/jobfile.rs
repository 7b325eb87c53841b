//! The job file of `innerloop run`: a YAML (or JSON) document naming the prompt, the examples,
//! the metric, the budget and the mode. It becomes the same [`OptimizeBody`] the REST edge
//! accepts, so both clients share one mapping onto the protobuf request.
//!
//! ```yaml
//! prompt: "Answer the question."      # or prompt_file: prompt.txt
//! mode: gepa                           # gepa (default) | default
//! examples: qa.jsonl                   # JSONL or CSV, relative to the job file
//! metric: exact_match                  # or metrics: [exact_match, contains]
//! budget: { max_rollouts: 200, max_cost: 1.5 }
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::examples_file;
use crate::api::pb;
use crate::api::rest::{BudgetBody, DatasetBody, ExampleBody, GepaBody, ModeName, OptimizeBody};

/// A job file is a few kilobytes; this bounds a wrong path pointing at a large file.
const MAX_JOB_FILE_BYTES: u64 = 1024 * 1024;

/// The job file's fields. Unknown fields are rejected, so a typo is an error, not a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub prompt: Option<String>,
    /// A file holding the prompt (relative to the job file).
    pub prompt_file: Option<PathBuf>,
    /// `gepa` (the default here) or `default`.
    pub mode: Option<ModeName>,
    /// A JSONL or CSV examples file (relative to the job file).
    pub examples: Option<PathBuf>,
    /// A built-in pack (`toy_qa`, `toy_clf`) or `examples` (the server's stored examples).
    pub dataset: Option<String>,
    pub metric: Option<String>,
    pub metrics: Option<Vec<String>>,
    pub budget: Option<BudgetBody>,
    pub gepa: Option<GepaBody>,
    pub seed: Option<i64>,
    pub target_model: Option<String>,
    /// Iterations of the default loop.
    pub iterations: Option<u32>,
    pub idempotency_key: Option<String>,
}

/// Why a job file could not be turned into a request.
#[derive(Debug, thiserror::Error)]
pub enum JobFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {source}")]
    Examples {
        path: String,
        source: examples_file::ExamplesFileError,
    },
}

/// Reads a text file of at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<String, JobFileError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| JobFileError::Read {
        path: shown.clone(),
        source,
    })?;
    if meta.len() > limit {
        return Err(JobFileError::TooLarge { path: shown, limit });
    }
    std::fs::read_to_string(path).map_err(|source| JobFileError::Read {
        path: shown,
        source,
    })
}

/// Reads an examples file (JSONL, or CSV by extension).
pub fn read_examples(path: &Path) -> Result<Vec<ExampleBody>, JobFileError> {
    let text = read_bounded(path, examples_file::MAX_FILE_BYTES)?;
    let parsed = if examples_file::is_csv(path) {
        examples_file::parse_csv(&text)
    } else {
        examples_file::parse_jsonl(&text)
    };
    parsed.map_err(|source| JobFileError::Examples {
        path: path.display().to_string(),
        source,
    })
}

impl JobFile {
    /// Parses a job file's text (YAML; JSON is YAML too).
    pub fn parse(text: &str, path: &Path) -> Result<JobFile, JobFileError> {
        serde_norway::from_str(text).map_err(|e| JobFileError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Reads and parses the job file at `path`.
    pub fn load(path: &Path) -> Result<JobFile, JobFileError> {
        JobFile::parse(&read_bounded(path, MAX_JOB_FILE_BYTES)?, path)
    }

    /// The request, with files resolved relative to `base` (the job file's directory).
    pub fn into_request(self, path: &Path) -> Result<pb::OptimizeRequest, JobFileError> {
        let base = path.parent().unwrap_or(Path::new("."));
        let invalid = |message: &str| JobFileError::Invalid {
            path: path.display().to_string(),
            message: message.into(),
        };
        let prompt = match (self.prompt, self.prompt_file) {
            (Some(p), None) => p,
            (None, Some(file)) => read_bounded(&base.join(file), MAX_JOB_FILE_BYTES)?,
            (Some(_), Some(_)) => return Err(invalid("give prompt or prompt_file, not both")),
            (None, None) => return Err(invalid("prompt (or prompt_file) is required")),
        };
        let examples = match self.examples {
            Some(file) => Some(read_examples(&base.join(file))?),
            None => None,
        };
        let metrics = match (self.metric, self.metrics) {
            (Some(m), None) => Some(vec![m]),
            (None, ms) => ms,
            (Some(_), Some(_)) => return Err(invalid("give metric or metrics, not both")),
        };
        let body = OptimizeBody {
            prompt,
            mode: Some(self.mode.unwrap_or(ModeName::Gepa)),
            dataset: self.dataset.map(|name| DatasetBody { name, split: None }),
            metrics,
            budget: self.budget,
            examples,
            seed: self.seed,
            target_model: self.target_model,
            gepa: self.gepa,
            ..OptimizeBody::default()
        };
        Ok(body.into_pb(self.iterations, self.idempotency_key.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_job_file_becomes_a_gepa_request_with_its_examples() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("qa.csv"),
            "input,expected\n2+2?,4\n3+3?,6\n",
        )
        .unwrap();
        let path = dir.path().join("job.yaml");
        let job = JobFile::parse(
            "prompt: Answer.\nexamples: qa.csv\nmetric: exact_match\nbudget:\n  max_rollouts: 40\n  max_cost: 0.5\nseed: 3\n",
            &path,
        )
        .unwrap();
        let request = job.into_request(&path).unwrap();
        assert_eq!(request.prompt, "Answer.");
        assert_eq!(request.mode, pb::Mode::Gepa as i32);
        assert_eq!(request.metrics, vec!["exact_match"]);
        assert_eq!(request.examples.len(), 2);
        assert_eq!(request.examples[1].expected.as_deref(), Some("6"));
        let budget = request.budget.unwrap();
        assert_eq!(budget.max_rollouts, Some(40));
        assert_eq!(budget.max_cost, Some(0.5));
        assert_eq!(request.seed, Some(3));
    }

    #[test]
    fn job_file_typos_and_missing_prompt_are_errors() {
        let path = Path::new("job.yaml");
        let err = JobFile::parse("prompt: p\nbudjet: {}\n", path).unwrap_err();
        assert!(err.to_string().contains("budjet"), "{err}");
        let err = JobFile::parse("mode: gepa\n", path)
            .unwrap()
            .into_request(path)
            .unwrap_err();
        assert!(err.to_string().contains("prompt"), "{err}");
    }
}
