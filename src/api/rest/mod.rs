//! The REST JSON shapes (snake_case, as the original), with their OpenAPI schemas and their
//! mapping onto the protobuf requests and from the protobuf responses; the edge and the CLI
//! share them. Domain rules stay in the core: this only reshapes. One file per idea:
//! `optimize` (the create request and its parts), `jobs` (the create answer, a job's state, the
//! admin list), `gepa` (stored examples, eval jobs, estimates), `workbench` (candidates,
//! steering, branching) and `service` (probes, version).

mod gepa;
mod jobs;
mod optimize;
mod service;
mod workbench;

pub use gepa::{EstimateBody, EvalBody, ExampleOut, ExamplePage, Upserted, bulk_upsert_request};
pub use jobs::{
    BudgetSummary, CreatedJob, JobList, JobState, JobSummary, ProgressSummary, RequestSummary,
};
pub use optimize::{
    AcceptanceName, BudgetBody, DatasetBody, DatasetName, ExampleBody, ExampleId, GepaBody,
    MetricName, ModeName, ObjectiveName, OptimizeBody, SelectorName, ValidationPolicyName,
    resolve_target_model,
};
pub use service::{ProbeStatus, Version};
pub use workbench::{BranchBody, Candidates, HumanCandidateBody, SteerBody, Steered};
