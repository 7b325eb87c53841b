//! Domain types shared by the runtime, the optimizers and the stores: jobs, their specs, their
//! events and results. Nothing here knows about HTTP, SSE or gRPC; serde gives each type the JSON
//! shape of the original service's contract, which is also how stores persist them.

pub mod depth;
pub mod event;
pub mod gepa;
pub mod job;
pub mod limits;
pub mod rng;
pub mod spec;
pub mod steering;

pub use event::{Event, EventPayload, ObjectiveScores};
pub use job::{JobId, JobRecord, JobResult, JobStatus};
pub use spec::{Budget, DatasetRef, Example, JobSpec, Mode, Objective};

/// Seconds since the Unix epoch, as the contract's `ts`, `created_at` and `updated_at` carry it.
pub fn now_epoch_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
