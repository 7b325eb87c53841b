//! A store that stops taking writes, behind the store trait (and, where the machine allows, a
//! real full disk): the affected job ends `failed` with `store_unavailable` and its watchers are
//! told; the core reports NOT_SERVING and refuses new jobs while writes fail, and recovers by
//! itself when they succeed again; a SQLite database deleted under the running server stops it
//! taking work.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use innerloop::api::pb;
use innerloop::domain::{
    Event, EventPayload, Example, JobId, JobRecord, JobResult, JobStatus, Mode,
};
use innerloop::error::Result;
use innerloop::optimizer::{JobContext, OptimizeError, Optimizer};
use innerloop::store::{
    CheckpointError, CheckpointStore, EventStore, EventStoreError, ExampleStore, ExampleStoreError,
    IdempotencyClaim, IdempotencyError, IdempotencyKeys, JobRows, JobRowsError, LeaseStore,
    ListJobsQuery, MemoryStore, StoreFailure, Turn, WriteBatch,
};
use support::grpc::{Core, collect, test_settings, ticker};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A memory store whose writes fail while `broken` is set (reads keep working).
#[derive(Default)]
struct BreakableStore {
    inner: MemoryStore,
    broken: AtomicBool,
}

impl BreakableStore {
    fn check(&self) -> Result<(), StoreFailure> {
        if self.broken.load(Ordering::SeqCst) {
            Err(StoreFailure("disk I/O error (injected)".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl EventStore for BreakableStore {
    fn kind(&self) -> &'static str {
        "breakable"
    }
    async fn write(&self, batch: &WriteBatch) -> Result<(), EventStoreError> {
        self.check()?;
        self.inner.write(batch).await
    }
    async fn write_after(&self, batch: &WriteBatch, previous: Turn) -> Result<(), EventStoreError> {
        previous.await;
        self.write(batch).await
    }
    async fn events_after(
        &self,
        job_id: &str,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<Event>, EventStoreError> {
        self.inner.events_after(job_id, after_id, limit).await
    }
}

#[async_trait]
impl JobRows for BreakableStore {
    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>, JobRowsError> {
        self.inner.get_job(id).await
    }
    async fn list_jobs(&self, query: &ListJobsQuery) -> Result<Vec<JobRecord>, JobRowsError> {
        self.inner.list_jobs(query).await
    }
    async fn jobs_with_status(
        &self,
        statuses: &[JobStatus],
    ) -> Result<Vec<JobRecord>, JobRowsError> {
        self.inner.jobs_with_status(statuses).await
    }
    async fn delete_job(&self, id: &str) -> Result<bool, JobRowsError> {
        self.check()?;
        self.inner.delete_job(id).await
    }
    async fn reap(
        &self,
        now: f64,
        ttl_for: &(dyn Fn(JobStatus) -> Option<f64> + Sync),
    ) -> Result<Vec<JobId>, JobRowsError> {
        self.inner.reap(now, ttl_for).await
    }
}

#[async_trait]
impl IdempotencyKeys for BreakableStore {
    async fn claim_idempotency_key_for(
        &self,
        key: &str,
        job_id: &str,
        request_hash: Option<&str>,
        now: f64,
        expires_at: f64,
    ) -> Result<IdempotencyClaim, IdempotencyError> {
        self.check()?;
        self.inner
            .claim_idempotency_key_for(key, job_id, request_hash, now, expires_at)
            .await
    }
    async fn forget_dangling_keys(&self, expiring_by: f64) -> Result<usize, IdempotencyError> {
        self.inner.forget_dangling_keys(expiring_by).await
    }
}

#[async_trait]
impl ExampleStore for BreakableStore {
    async fn upsert_examples(&self, examples: &[Example]) -> Result<usize, ExampleStoreError> {
        self.check()?;
        self.inner.upsert_examples(examples).await
    }
    async fn list_examples(
        &self,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Example>, ExampleStoreError> {
        self.inner.list_examples(limit, offset).await
    }
    async fn delete_example(&self, id: &str) -> Result<bool, ExampleStoreError> {
        self.inner.delete_example(id).await
    }
}

#[async_trait]
impl CheckpointStore for BreakableStore {
    async fn put_checkpoint(
        &self,
        job_id: &str,
        checkpoint: &serde_json::Value,
    ) -> Result<(), CheckpointError> {
        self.check()?;
        self.inner.put_checkpoint(job_id, checkpoint).await
    }
    async fn append_checkpoint_part(
        &self,
        job_id: &str,
        part: &str,
    ) -> Result<(), CheckpointError> {
        self.check()?;
        self.inner.append_checkpoint_part(job_id, part).await
    }
    async fn checkpoint_parts(&self, job_id: &str) -> Result<Vec<String>, CheckpointError> {
        self.inner.checkpoint_parts(job_id).await
    }
    async fn get_checkpoint(
        &self,
        job_id: &str,
    ) -> Result<Option<serde_json::Value>, CheckpointError> {
        self.inner.get_checkpoint(job_id).await
    }
}

/// One process: the memory store's defaults.
impl LeaseStore for BreakableStore {}

async fn serving(core: &Core) -> i32 {
    let mut health = HealthClient::new(core.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "innerloop.v1.OptimizerService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

async fn eventually_serving(core: &Core, want: ServingStatus, within: Duration) {
    let until = tokio::time::Instant::now() + within;
    while serving(core).await != want as i32 {
        assert!(
            tokio::time::Instant::now() < until,
            "health never became {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stops_writing_ends_the_job_tells_its_watchers_and_turns_readiness_off() {
    let store = Arc::new(BreakableStore::default());
    let core = Core::start_with_store(test_settings(), Some(ticker(400, 20)), store.clone()).await;
    let mut optimizer = core.optimizer().await;
    let job_id = optimizer
        .create_job(support::grpc::request("p"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let mut jobs = core.jobs().await;
    let stream = jobs
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let watcher = tokio::spawn(collect(stream));
    tokio::time::sleep(Duration::from_millis(200)).await;
    store.broken.store(true, Ordering::SeqCst);

    // The watcher's stream ends with a clear terminal event instead of hanging.
    let events = watcher.await.unwrap();
    let last = events.last().expect("events");
    assert_eq!(last.r#type, "failed", "{last:?}");
    match &last.payload {
        Some(pb::job_event::Payload::Failed(failed)) => {
            assert_eq!(failed.error, "store_unavailable");
            assert!(failed.message.contains("injected"), "{failed:?}");
        }
        other => panic!("expected a failed payload, got {other:?}"),
    }
    let job = jobs
        .get_job(pb::GetJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status, pb::JobStatus::Failed as i32);

    // Not ready, and no new work, while the store cannot write.
    eventually_serving(&core, ServingStatus::NotServing, Duration::from_secs(5)).await;
    let refused = optimizer
        .create_job(support::grpc::request("p"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    // Writes work again: the probe notices, readiness returns, the ending is saved.
    store.broken.store(false, Ordering::SeqCst);
    eventually_serving(&core, ServingStatus::Serving, Duration::from_secs(10)).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let saved = store.inner.get_job(&job_id).await.unwrap().unwrap();
        if saved.status == JobStatus::Failed {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "ending never saved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        optimizer
            .create_job(support::grpc::request("p"))
            .await
            .is_ok()
    );
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_deleted_under_the_server_stops_it_taking_work() {
    let dir = tempfile::tempdir().unwrap();
    let settings = innerloop::config::Settings {
        job_store: innerloop::config::StoreKind::Sqlite,
        data_dir: dir.path().to_path_buf(),
        ..test_settings()
    };
    let store = innerloop::store::open(&settings.store_location())
        .await
        .unwrap();
    let file = settings.sqlite_file();
    let core = Core::start_with_store(settings, Some(ticker(10_000, 20)), store).await;
    let mut optimizer = core.optimizer().await;
    let job_id = optimizer
        .create_job(support::grpc::request("p"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let mut jobs = core.jobs().await;
    let stream = jobs
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let watcher = tokio::spawn(collect(stream));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for suffix in ["", "-wal", "-shm"] {
        let mut path = file.clone().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
    eventually_serving(&core, ServingStatus::NotServing, Duration::from_secs(5)).await;
    let refused = optimizer
        .create_job(support::grpc::request("p"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(refused.message().contains("deleted"), "{refused:?}");
    // The running job is not left writing into an unlinked file.
    let events = watcher.await.unwrap();
    match &events.last().unwrap().payload {
        Some(pb::job_event::Payload::Failed(failed)) => {
            assert_eq!(failed.error, "store_unavailable");
        }
        other => panic!("expected a failed payload, got {other:?}"),
    }
    core.shutdown().await;
}

/// Emits `progress` events carrying `bytes` of text, 1 ms apart, until stopped.
struct Padded {
    bytes: usize,
}

#[async_trait]
impl Optimizer for Padded {
    async fn run(&self, ctx: JobContext) -> std::result::Result<JobResult, OptimizeError> {
        for iteration in 0.. {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                _ = ctx.cancel.cancelled() => return Err(OptimizeError::Stopped),
            }
            let proposal: String = (0..self.bytes)
                .map(|i| char::from(b'a' + ((i * 7 + iteration as usize) % 26) as u8))
                .collect();
            ctx.events
                .emit(EventPayload::Progress {
                    iteration,
                    proposal,
                    target_model: "m".into(),
                    rubric: None,
                    scores: Default::default(),
                })
                .await?;
        }
        Err(OptimizeError::Stopped)
    }
}

/// Mounts a tmpfs of `size` on a new directory; `None` (the test is skipped) when the machine
/// does not allow it (not root, no mount privilege in the container).
fn small_tmpfs(size: &str) -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().ok()?;
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir.path())
        .output()
        .ok()?;
    mounted.status.success().then_some(dir)
}

fn unmount(dir: &tempfile::TempDir) {
    // Lazy: the store's pool may hold its files for a moment after shutdown.
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(dir.path())
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_full_disk_no_job_is_left_running_and_readiness_turns_off() {
    let Some(dir) = small_tmpfs("2m") else {
        eprintln!("skipped: cannot mount a small tmpfs here");
        return;
    };
    let settings = innerloop::config::Settings {
        job_store: innerloop::config::StoreKind::Sqlite,
        data_dir: dir.path().to_path_buf(),
        ..test_settings()
    };
    let store = innerloop::store::open(&settings.store_location())
        .await
        .unwrap();
    // Events of ~4 KiB each: a few hundred fill the disk.
    let mut optimizers: std::collections::HashMap<Mode, Arc<dyn Optimizer>> = Default::default();
    optimizers.insert(Mode::Default, Arc::new(Padded { bytes: 4096 }));
    let core = Core::start_with_store(settings, Some(optimizers), store).await;
    let mut optimizer = core.optimizer().await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(
            optimizer
                .create_job(support::grpc::request("p"))
                .await
                .unwrap()
                .into_inner()
                .job_id,
        );
    }
    eventually_serving(&core, ServingStatus::NotServing, Duration::from_secs(30)).await;
    let mut client = core.jobs().await;
    for job_id in &jobs {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let job = client
                .get_job(pb::GetJobRequest {
                    job_id: job_id.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            if job.status == pb::JobStatus::Failed as i32 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "job {job_id} left {:?}",
                job.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    core.shutdown().await;
    unmount(&dir);
}
