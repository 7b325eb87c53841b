//! The workbench's view of a job: its candidates with lineage, scores and rejected proposals
//! ([`lineage`](mod@lineage)), branches ([`branch`]), and steering by hand (the inbox and its rules are
//! [`crate::domain::steering`], which the runtime and the engine share). The view is derived
//! from what the job already records (event log, checkpoint, result) so the optimizer needs no
//! extra bookkeeping. Domain only: the gRPC and REST mappings live in `grpc/` and `edge/`.

pub mod branch;
pub mod lineage;

pub use crate::domain::steering;

pub use lineage::{Lineage, RejectedProposal};
pub use steering::{HumanCandidate, HumanFeedback, SteerRequest, Steering};

use crate::domain::{JobResult, Mode};
use crate::error::{Error, Result};
use crate::runtime::JobRuntime;

/// Events read per store call while folding a job's log.
const PAGE: usize = 5_000;

/// The candidates of `job_id` as its log, checkpoint and result tell them.
/// `invalid_job_state` (409) for jobs that are not GEPA jobs (they have no candidates).
pub async fn lineage(runtime: &JobRuntime, job_id: &str) -> Result<Lineage> {
    let record = runtime.get(job_id).await?;
    if record.spec.mode != Mode::Gepa {
        return Err(Error::InvalidJobState {
            job_id: job_id.into(),
            status: record.status.to_string(),
            action: "only gepa jobs have candidates",
        });
    }
    let store = runtime.store();
    let mut events = Vec::new();
    loop {
        let after = events
            .last()
            .map(|e: &crate::domain::Event| e.id)
            .unwrap_or(0);
        let page = store.events_after(job_id, after, PAGE).await?;
        let done = page.len() < PAGE;
        events.extend(page);
        if done {
            break;
        }
    }
    let result = match &record.result {
        Some(JobResult::Gepa(result)) => Some(result.as_ref()),
        _ => None,
    };
    let checkpoint = match result {
        Some(_) => None,
        None => crate::optimizer::gepa::whole_checkpoint(store.as_ref(), job_id).await?,
    };
    let mut lineage = lineage::fold(
        lineage::seed_components(&record.spec),
        &events,
        checkpoint.as_ref(),
        result,
    );
    lineage.branched_from = record.spec.branched_from.clone();
    Ok(lineage)
}

/// Queues a validated [`SteerRequest`] for a running or paused GEPA job. Components must be
/// ones the job evolves.
pub async fn steer(runtime: &JobRuntime, job_id: &str, request: SteerRequest) -> Result<()> {
    request.validate()?;
    let record = runtime.get(job_id).await?;
    crate::domain::steering::check_steerable(&record)?;
    let spec = record.spec;
    let known = lineage::seed_components(&spec);
    let named = request
        .feedback
        .iter()
        .filter_map(|f| f.component.as_deref())
        .chain(
            request
                .candidate
                .iter()
                .flat_map(|c| c.components.keys().map(String::as_str)),
        );
    for name in named {
        if !known.contains_key(name) {
            let names: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(Error::invalid(
                &["component"],
                format!(
                    "the job has no component {name:?} (it has {})",
                    names.join(", ")
                ),
            ));
        }
    }
    runtime.steer(job_id, request).await
}
