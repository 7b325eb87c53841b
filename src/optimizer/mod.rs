//! Optimizers: what a job runs. Each implements [`Optimizer`] and reports progress through an
//! [`EventSink`]; the runtime owns lifecycle (started/terminal events, deadline, cancellation).

pub mod datasets;
pub mod default_mode;
pub mod eval_job;
pub mod gepa;

/// The seeded RNG (in [`crate::domain`]: providers use it too).
pub use crate::domain::rng;

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::domain::{EventPayload, JobId, JobResult, JobSpec};
use crate::store::{CheckpointStore, ExampleStore};

pub use default_mode::{DefaultModeConfig, DefaultOptimizer};
pub use gepa::GepaConfig;

/// The job is already terminal (cancelled, shut down): stop working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("job stopped")]
pub struct Stopped;

/// Where an optimizer sends its progress events. The runtime's implementation assigns ids,
/// persists and fans out; tests use a vector.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Appends an event and returns its id; `Err(Stopped)` once the job is terminal. The event
    /// may still be on its way to the store when this returns (the runtime pipelines), but no
    /// watcher sees it before it is durable.
    async fn emit(&self, payload: EventPayload) -> Result<u64, Stopped>;

    /// Waits until every event emitted so far is durable (before a checkpoint that must not
    /// get ahead of the log).
    async fn flush(&self) -> Result<(), Stopped> {
        Ok(())
    }
}

/// Why an optimizer ended without a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimizeError {
    /// The job was stopped from outside (the runtime already wrote the terminal event).
    #[error("job stopped")]
    Stopped,
    /// The run was halted at a safe point (pause, or hand-over on shutdown) after
    /// [`JobContext::halt`] was cancelled; its checkpoint is durable and it can resume.
    #[error("job halted")]
    Halted,
    /// The job failed; `code` becomes the `failed` event's `error` and the result.
    #[error("{code}: {message}")]
    Failed { code: String, message: String },
}

impl From<Stopped> for OptimizeError {
    fn from(_: Stopped) -> Self {
        OptimizeError::Stopped
    }
}

/// Everything an optimizer gets for one job.
#[derive(Clone)]
pub struct JobContext {
    pub job_id: JobId,
    pub spec: Arc<JobSpec>,
    pub events: Arc<dyn EventSink>,
    /// Cancelled when the job is cancelled or the server shuts down.
    pub cancel: CancellationToken,
    /// Cancelled when the run should stop at its next safe point and return
    /// [`OptimizeError::Halted`], leaving a checkpoint to resume from (pause, graceful
    /// shutdown). Only [`Optimizer::resumable`] optimizers are ever halted.
    pub halt: CancellationToken,
    /// Where a resumable optimizer saves its checkpoint and finds it again.
    pub checkpoints: Arc<dyn CheckpointStore>,
    /// The stored example corpus (jobs that name neither inline examples nor a pack;
    /// default-mode retrieval).
    pub examples: Arc<dyn ExampleStore>,
    /// Human feedback and hand-written candidates for this job (`SteerJob`); GEPA drains it at
    /// the top of each iteration, other optimizers ignore it.
    pub steering: crate::domain::steering::Steering,
}

/// Runs one job to a result.
#[async_trait]
pub trait Optimizer: Send + Sync + 'static {
    /// True when the optimizer checkpoints its state (`CheckpointStore::put_checkpoint`) and can
    /// continue an interrupted job from it; the runtime then re-spawns such jobs on restart
    /// instead of ending them.
    fn resumable(&self) -> bool {
        false
    }

    async fn run(&self, ctx: JobContext) -> Result<JobResult, OptimizeError>;

    /// Checks a validated request against what this server can do (models, prices) before a
    /// job is created.
    fn admit(&self, _spec: &JobSpec) -> Result<(), crate::error::Error> {
        Ok(())
    }

    /// The best result found so far by a job that ends without finishing (cancelled, shut
    /// down, failed), from what it saved (its checkpoint); `None` when it saved nothing.
    /// `reason` is the way it ended (`cancelled`, `shutdown`, an error code).
    async fn partial_result(&self, _job: &PartialJob<'_>, _reason: &str) -> Option<JobResult> {
        None
    }
}

/// What [`Optimizer::partial_result`] gets to rebuild a job's best-so-far result.
pub struct PartialJob<'a> {
    pub job_id: &'a str,
    pub spec: &'a JobSpec,
    pub checkpoints: &'a dyn CheckpointStore,
    pub examples: &'a dyn ExampleStore,
}

/// How long jobs may run, by mode: `MAX_WALL_TIME_S` (default-mode and eval jobs),
/// `GEPA_DEFAULT_WALL_TIME_S` (GEPA jobs whose budget names none) and `GEPA_MAX_WALL_TIME_S`
/// (the most a GEPA budget may ask for).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WallTimes {
    pub max_s: f64,
    pub gepa_default_s: f64,
    pub gepa_max_s: f64,
}

impl WallTimes {
    /// Wall time a job may run, in seconds: GEPA jobs their `budget.max_wall_time_s` (capped
    /// by `gepa_max_s`) or `gepa_default_s`; other modes `max_s`.
    pub fn of(&self, spec: &JobSpec) -> f64 {
        match spec.mode {
            crate::domain::Mode::Gepa => spec
                .budget
                .max_wall_time_s
                .unwrap_or(self.gepa_default_s)
                .min(self.gepa_max_s),
            _ => self.max_s,
        }
    }
}
