//! A job's identity, lifecycle state and result.

use serde::{Deserialize, Serialize};

use super::event::ObjectiveScores;
use super::spec::JobSpec;

/// A job id (a UUID v4 in text form).
pub type JobId = String;

/// Lifecycle state. `Pending → Running → Finished | Failed | Cancelled | Shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Running,
    Finished,
    Failed,
    Cancelled,
    /// The server stopped (cleanly or by a crash) while the job ran.
    Shutdown,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Finished,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Shutdown,
    ];

    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Shutdown => "shutdown",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a terminal job returns. Serialised untagged, in the original's shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobResult {
    /// `{proposal, lessons, scores, target_model, rubric}`.
    Default(DefaultResult),
    /// `{best_prompt, frontier:[{id,score}], lessons, …}`.
    Gepa(Box<super::gepa::GepaResult>),
    /// `{name, score, count, cases, …}` of an eval job.
    Eval(super::gepa::EvalResult),
    /// `{"error": "<code>"}` for failed jobs.
    Error(ErrorResult),
}

/// Result of the default-mode optimizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefaultResult {
    pub proposal: String,
    pub lessons: Vec<String>,
    pub scores: ObjectiveScores,
    pub target_model: String,
    pub rubric: Option<String>,
}

/// Result of a failed job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResult {
    pub error: String,
}

/// A job as stored: its spec, state and (once terminal) result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub status: JobStatus,
    /// Unix epoch seconds.
    pub created_at: f64,
    /// Unix epoch seconds of the last state change.
    pub updated_at: f64,
    pub spec: JobSpec,
    pub result: Option<JobResult>,
    /// Id of the last event appended to the job's log (0 when none).
    pub last_event_id: u64,
}
