//! A job's identity, lifecycle state and result.

use serde::{Deserialize, Serialize};

use super::event::ObjectiveScores;
use super::spec::JobSpec;

/// A job id (a UUID v4 in text form).
pub type JobId = String;

/// Lifecycle state. `Pending → Running → Finished | Failed | Cancelled | Shutdown`; a running
/// resumable job may be `Paused` (and resumed, or cancelled) any number of times.
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
    /// Paused by a client: checkpointed, no worker; continues on resume. Not terminal.
    Paused,
}

impl JobStatus {
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Finished,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Shutdown,
        JobStatus::Paused,
    ];

    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            JobStatus::Pending | JobStatus::Running | JobStatus::Paused
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Shutdown => "shutdown",
            JobStatus::Paused => "paused",
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
    /// How far it got. Not a column: live jobs keep it from their events, stored jobs derive it
    /// from their result ([`Progress::from_result`]).
    #[serde(default)]
    pub progress: Progress,
}

/// How far a job got: what its events (or its result) said last.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Iterations completed (GEPA generations, default-mode iterations).
    pub generation: u32,
    pub metric_calls_used: u64,
    pub metric_calls_budget: Option<u64>,
    /// Best mean validation score so far (GEPA).
    pub best_score: Option<f64>,
    pub cost_usd: f64,
}

impl Progress {
    /// Takes in what an event says about progress.
    pub fn observe(&mut self, payload: &super::EventPayload) {
        use super::EventPayload as P;
        match payload {
            P::Progress { iteration, .. } => self.generation = self.generation.max(*iteration),
            P::BudgetProgress(usage)
            | P::GenerationStarted(super::gepa::GenerationStarted { budget: usage, .. }) => {
                self.generation = self.generation.max(usage.generation);
                self.metric_calls_used = usage.metric_calls_used;
                self.metric_calls_budget = usage
                    .metric_calls_left
                    .map(|left| left + usage.metric_calls_used);
                self.cost_usd = usage.cost_usd;
            }
            P::FrontierUpdated(update) => self.best_score = Some(update.best_score),
            P::Finished(result) => *self = Progress::from_result(result).unwrap_or(self.clone()),
            _ => {}
        }
    }

    /// What a result says (`None` when it says nothing about progress).
    pub fn from_result(result: &JobResult) -> Option<Progress> {
        match result {
            JobResult::Gepa(r) => Some(Progress {
                generation: r.generations,
                metric_calls_used: r.budget.metric_calls_used,
                metric_calls_budget: r
                    .budget
                    .metric_calls_left
                    .map(|left| left + r.budget.metric_calls_used),
                best_score: Some(r.best_score),
                cost_usd: r.budget.cost_usd,
            }),
            JobResult::Eval(r) => Some(Progress {
                metric_calls_used: r.metric_calls_used,
                cost_usd: r.cost_usd,
                best_score: Some(r.score),
                ..Progress::default()
            }),
            JobResult::Default(_) | JobResult::Error(_) => None,
        }
    }
}
