//! What the runtime reads of the configuration, grouped by the part of the runtime that reads it:
//! watchers ([`WatchConfig`]), how long things are kept ([`RetentionConfig`]), this process as a
//! replica ([`ReplicaConfig`]), and the limits of a job's run. Built where the app is wired
//! (`Settings::runtime` in `config/components.rs`); the runtime never sees `Settings`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::optimizer::WallTimes;

/// Everything [`JobRuntime::start`](super::JobRuntime::start) needs besides its store and its
/// optimizers.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    pub watch: WatchConfig,
    pub retention: RetentionConfig,
    pub replica: ReplicaConfig,
    /// How long a job may run (`MAX_WALL_TIME_S`, `GEPA_*_WALL_TIME_S`); `gepa_max_s` also
    /// bounds what a request may ask for.
    pub wall_times: WallTimes,
    /// How long shutdown waits for job tasks, then for background tasks (`SHUTDOWN_GRACE_S`).
    pub shutdown_grace: Duration,
    /// The SQLite file (`SQLITE_PATH` under `DATA_DIR`); the store monitor watches it when the
    /// store is SQLite.
    pub sqlite_file: PathBuf,
}

/// Watchers and the in-memory event ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatchConfig {
    /// Events kept in memory per live job, and each watcher's queue (`SSE_BUFFER_SIZE`).
    pub buffer_size: usize,
    /// What happens to a watcher that falls behind (`SSE_BACKPRESSURE_POLICY`).
    pub backpressure: BackpressurePolicy,
    /// With [`BackpressurePolicy::FailJob`]: how long a watcher's queue may stay full before the
    /// job fails (`SSE_BACKPRESSURE_FAIL_TIMEOUT_S`, default twice the ping interval).
    pub fail_timeout: Duration,
}

/// What a watcher that falls behind gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackpressurePolicy {
    /// It catches up from the store; the job never waits.
    Resume,
    /// The original's rule: the job fails with `sse_backpressure`.
    FailJob,
}

/// How long jobs and idempotency keys are kept; all in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetentionConfig {
    /// Period of the reaper (`JOB_REAPER_INTERVAL_S`).
    pub reaper_interval: Duration,
    /// Memory store: how long terminal jobs stay, by status (`JOB_TTL_*_S`).
    pub ttl_finished_s: f64,
    pub ttl_failed_s: f64,
    pub ttl_cancelled_s: f64,
    pub ttl_shutdown_s: f64,
    /// Durable stores: how long terminal jobs stay; 0 = forever (`JOB_RETENTION_S`).
    pub retention_s: f64,
    /// How long an idempotency key names its job (`IDEMPOTENCY_TTL_S`).
    pub idempotency_ttl_s: f64,
}

/// This process as one replica among several on a shared store.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaConfig {
    /// The owner id on leases (`REPLICA_ID`); `None` = a fresh random one per start.
    pub id: Option<String>,
    /// How long a lease holds without renewal (`JOB_LEASE_S`).
    pub lease_s: f64,
    /// How often leases are renewed and claimable jobs looked for (`JOB_LEASE_HEARTBEAT_S`).
    pub heartbeat: Duration,
    /// Most live jobs here; 0 = no limit (`REPLICA_MAX_JOBS`).
    pub max_jobs: usize,
}
