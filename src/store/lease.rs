//! Job ownership by lease, for several replicas on one database (the pattern of Postgres-backed
//! job queues: River, Oban, graphile-worker): the [`LeaseStore`] seam and the types it takes and
//! returns; the runtime's side (heartbeat, claims, hand-over) is `runtime::replica`.
//!
//! A job row carries `owner` (a replica id), `lease_until` (epoch seconds) and `lease_epoch`,
//! bumped by every claim. A replica claims claimable jobs — live ones (`pending`, `running`,
//! `paused`) with no owner or an expired lease — with `FOR UPDATE SKIP LOCKED` (two replicas
//! never claim one job, and never wait for each other), renews its leases by heartbeat, and
//! releases them on a graceful stop. Every write of a job's events or row carries the epoch
//! its writer claimed with; the store checks it in the same transaction (the row locked
//! `FOR SHARE`, so no claim commits in between) and drops the rows of a job claimed by someone
//! else since (**fencing**): two replicas never append to one log.

use async_trait::async_trait;

use super::StoreFailure;
use super::jobs::{JobRows, JobRowsError};
use crate::domain::{JobId, JobRecord, JobStatus};

/// A store's notice loop ([`LeaseStore::listen`]).
pub type Listener = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Why a claim, renewal, release, command or notice failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct LeaseError(#[from] pub StoreFailure);

impl From<JobRowsError> for LeaseError {
    fn from(JobRowsError(failure): JobRowsError) -> Self {
        LeaseError(failure)
    }
}

/// Job leases. The defaults are a store one process uses: nothing to renew, release, command
/// or notify, and a claim takes every live job.
#[async_trait]
pub trait LeaseStore: JobRows {
    /// Whether several processes may share this store (Postgres): leases are then taken,
    /// renewed and checked, and watchers follow jobs other processes run.
    fn shared(&self) -> bool {
        false
    }

    /// Claims up to `claim.limit` claimable jobs (oldest first): live jobs with no owner or an
    /// expired lease (any live job with `steal`); each gets `owner`, a lease and the next
    /// epoch. The default (the memory store, which nothing outlives) returns every live job
    /// with epoch 0, unclaimed.
    async fn claim_jobs(&self, claim: &Claim<'_>) -> Result<Vec<Claimed>, LeaseError> {
        let live = [JobStatus::Pending, JobStatus::Running, JobStatus::Paused];
        Ok(self
            .jobs_with_status(&live)
            .await?
            .into_iter()
            .filter(|r| claim.job_id.is_none_or(|id| id == r.id))
            .take(claim.limit)
            .map(|record| Claimed {
                record,
                epoch: 0,
                requested: None,
            })
            .collect())
    }

    /// Extends the leases `owner` holds on live jobs to `until`; returns them.
    async fn renew_leases(&self, _owner: &str, _until: f64) -> Result<Vec<Renewed>, LeaseError> {
        Ok(Vec::new())
    }

    /// Gives up `owner`'s leases on live jobs at once (graceful stop: others claim them
    /// without waiting for expiry) and tells the other replicas.
    async fn release_leases(&self, _owner: &str) -> Result<(), LeaseError> {
        Ok(())
    }

    /// Leaves `command` for the owner of a live job and notifies it. False when the job is
    /// not live.
    async fn request(&self, _job_id: &str, _command: &str) -> Result<bool, LeaseError> {
        Ok(false)
    }

    /// Clears `command` once its owner has acted on it (a newer command left meanwhile stays).
    async fn clear_request(&self, _job_id: &str, _command: &str) -> Result<(), LeaseError> {
        Ok(())
    }

    /// Leaves a steering request (its JSON) for the owner of a live job, and notifies it
    /// (`STEER_COMMAND`). False when the job is not live, or when the store has no other
    /// replicas (every job runs here).
    async fn leave_steering(&self, _job_id: &str, _request: &str) -> Result<bool, LeaseError> {
        Ok(false)
    }

    /// Takes the steering requests left for a job, oldest first.
    async fn take_steering(&self, _job_id: &str) -> Result<Vec<String>, LeaseError> {
        Ok(Vec::new())
    }

    /// Live jobs nobody holds a lease on at `now` (the claimable queue).
    async fn claimable_count(&self, _now: f64) -> Result<u64, LeaseError> {
        Ok(0)
    }

    /// Tells the other replicas that jobs are claimable.
    async fn announce_claimable(&self) -> Result<(), LeaseError> {
        Ok(())
    }

    /// The loop that forwards notices (other replicas' commits, commands, claimable jobs) to
    /// `tx` until `stop` (or until `tx` closes), for the caller to run and own; `None` when the
    /// store has none (one process).
    fn listen(
        &self,
        _tx: tokio::sync::mpsc::Sender<Notice>,
        _stop: tokio_util::sync::CancellationToken,
    ) -> Option<Listener> {
        None
    }
}

/// A claim request.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// The claiming replica.
    pub owner: &'a str,
    pub now: f64,
    /// The lease it takes, from `now`.
    pub lease_s: f64,
    /// Most jobs to claim.
    pub limit: usize,
    /// Only this job (a cancel of a job nobody runs claims it to end it).
    pub job_id: Option<&'a str>,
    /// Ignore unexpired leases of other owners: a store only one process uses (SQLite) has no
    /// other live owner, so every live job it finds at start was left by a previous process.
    pub steal: bool,
    /// Also take live jobs this owner id holds (start-up of a replica with a fixed
    /// `REPLICA_ID`: they were its previous process's, which is gone).
    pub reclaim_own: bool,
}

/// A job a claim took over.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub record: JobRecord,
    /// The epoch this claim set: the job's writes carry it (see [`Fence`]).
    pub epoch: u64,
    /// A command another replica left for the owner (`cancel`, `pause`, `resume`).
    pub requested: Option<String>,
}

/// A lease renewed by a heartbeat: the job, its epoch and any command left for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    pub job_id: JobId,
    pub epoch: u64,
    pub requested: Option<String>,
}

/// The lease a new job row is inserted with (its creator runs it: epoch 1), in the same
/// transaction as the row, so no other replica can claim it in between.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLease {
    pub job_id: JobId,
    pub owner: String,
    pub until: f64,
}

/// A job whose rows in a batch are written only while it still has this lease epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub job_id: JobId,
    pub epoch: u64,
}

/// What a replica is notified of (Postgres `LISTEN/NOTIFY`; fanned out in process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// New events or a row change of this job are committed.
    Events(JobId),
    /// A command was left for this job's owner.
    Command { command: String, job_id: JobId },
    /// Jobs became claimable (created without an owner, or released).
    Claimable,
    /// The listener reconnected: notices may have been lost, so everyone should look again.
    Lost,
}

/// Postgres channels of the notices.
pub const EVENTS_CHANNEL: &str = "innerloop_events";
pub const COMMANDS_CHANNEL: &str = "innerloop_commands";
pub const CLAIMABLE_CHANNEL: &str = "innerloop_claimable";

/// The command that tells a job's owner steering waits for it ([`LeaseStore::leave_steering`]).
pub const STEER_COMMAND: &str = "steer";

/// The payload of a command notice: `<command>:<job_id>` (command names hold no `:`).
pub fn command_payload(command: &str, job_id: &str) -> String {
    format!("{command}:{job_id}")
}

/// The notice a command payload stands for; `None` for one that is not `<command>:<job_id>`.
pub fn command_notice(payload: &str) -> Option<Notice> {
    let (command, job_id) = payload.split_once(':')?;
    Some(Notice::Command {
        command: command.to_string(),
        job_id: job_id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_notice_names_the_command_and_the_job() {
        let payload = command_payload(STEER_COMMAND, "0b6c-4f1e");
        assert_eq!(
            command_notice(&payload),
            Some(Notice::Command {
                command: "steer".into(),
                job_id: "0b6c-4f1e".into(),
            })
        );
        // A bare job id (what notices carried before) names no command.
        assert_eq!(command_notice("0b6c-4f1e"), None);
    }
}
