//! Job ownership by lease, for several replicas on one database (the pattern of Postgres-backed
//! job queues: River, Oban, graphile-worker). The types the [`super::JobStore`] lease methods
//! take and return; the runtime's side (heartbeat, claims, hand-over) is `runtime::replica`.
//!
//! A job row carries `owner` (a replica id), `lease_until` (epoch seconds) and `lease_epoch`,
//! bumped by every claim. A replica claims claimable jobs — live ones (`pending`, `running`,
//! `paused`) with no owner or an expired lease — with `FOR UPDATE SKIP LOCKED` (two replicas
//! never claim one job, and never wait for each other), renews its leases by heartbeat, and
//! releases them on a graceful stop. Every write of a job's events or row carries the epoch
//! its writer claimed with; the store checks it in the same transaction (the row locked
//! `FOR SHARE`, so no claim commits in between) and drops the rows of a job claimed by someone
//! else since (**fencing**): two replicas never append to one log.

use crate::domain::{JobId, JobRecord};

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
    Command(JobId),
    /// Jobs became claimable (created without an owner, or released).
    Claimable,
    /// The listener reconnected: notices may have been lost, so everyone should look again.
    Lost,
}

/// Postgres channels of the notices.
pub const EVENTS_CHANNEL: &str = "innerloop_events";
pub const COMMANDS_CHANNEL: &str = "innerloop_commands";
pub const CLAIMABLE_CHANNEL: &str = "innerloop_claimable";
