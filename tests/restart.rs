//! Restart and crash semantics, end to end: the real `innerloop` binary on a temporary data
//! directory, driven over gRPC; stopped cleanly (SIGTERM) or killed (SIGKILL) while jobs stream;
//! started again on the same data. What must hold afterwards:
//! - every event a client received is still there, identical, under the same id; ids are dense
//!   (none reused, none skipped);
//! - every job has exactly one terminal event, and it is the last one; a crash ends running jobs
//!   with `shutdown` (reason `interrupted`), a clean stop with `shutdown` (reason `shutdown`);
//! - watching any job replays its whole history and ends; idempotency keys return the same job;
//! - a further restart changes nothing.
//!
//! Jobs are made long (`LOCAL_ECHO_LATENCY_MS`, a large `MAX_ITERATIONS`) so they are mid-stream
//! when the server goes down.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use innerloop::api::pb;
use pb::job_service_client::JobServiceClient;
use pb::optimizer_service_client::OptimizerServiceClient;
use support::postgres::PgSchema;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

/// Iterations each job asks for: far more than a test waits for.
const ITERATIONS: u32 = 100_000;
const TERMINAL_TYPES: [&str; 4] = ["finished", "failed", "cancelled", "shutdown"];

/// Where a server keeps its jobs.
#[derive(Clone)]
enum Storage {
    Sqlite,
    /// A database URL selecting a schema of its own.
    Postgres(String),
}

struct Server {
    child: Child,
    channel: Channel,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `innerloop serve` on `data` and waits until its gRPC port answers.
async fn start(data: &Path, storage: &Storage, run: u32) -> Server {
    let grpc_port = free_port();
    let log = std::fs::File::create(data.join(format!("server-{run}.log"))).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_innerloop"));
    command
        .args(["serve", "--dev"])
        .env_clear()
        .current_dir(data)
        .env("DATA_DIR", data)
        .env("GRPC_HOST", "127.0.0.1")
        .env("GRPC_PORT", grpc_port.to_string())
        .env("HOST", "127.0.0.1")
        .env("PORT", free_port().to_string())
        .env("REQUIRE_AUTH", "false")
        // 20 jobs + 20 watchers + reads per restart: the per-IP limiter is not under test here.
        .env("RATE_LIMIT_PER_MIN", "600000")
        .env("RATE_LIMIT_BURST", "10000")
        .env("MAX_STREAMS_PER_PRINCIPAL", "1000")
        // Long jobs: every judge call goes to LocalEcho and takes 100 ms; no early stop.
        .env("USE_JUDGE_STUB", "false")
        .env("JUDGE_PROVIDER", "local_echo")
        .env("LOCAL_ECHO_LATENCY_MS", "100")
        .env("EARLY_STOP_PATIENCE", ITERATIONS.to_string())
        .env("MAX_ITERATIONS", ITERATIONS.to_string())
        .env("MAX_WALL_TIME_S", "3600")
        .env("SHUTDOWN_GRACE_S", "10")
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    for ttl in [
        "JOB_TTL_FINISHED_S",
        "JOB_TTL_FAILED_S",
        "JOB_TTL_CANCELLED_S",
        "JOB_TTL_SHUTDOWN_S",
    ] {
        command.env(ttl, "86400");
    }
    match storage {
        Storage::Sqlite => command.env("JOB_STORE", "sqlite"),
        Storage::Postgres(url) => command
            .env("JOB_STORE", "postgres")
            .env("DATABASE_URL", url),
    };
    let mut child = command.spawn().expect("innerloop binary starts");
    let url = format!("http://127.0.0.1:{grpc_port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(channel) = Channel::from_shared(url.clone()).unwrap().connect().await {
            let mut jobs = JobServiceClient::new(channel.clone());
            if jobs.list_jobs(pb::ListJobsRequest::default()).await.is_ok() {
                return Server { child, channel };
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "server exited during start-up ({status}); see {}",
                data.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "server did not start; see {}",
            data.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Server {
    fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel.clone())
    }

    fn optimizer(&self) -> OptimizerServiceClient<Channel> {
        OptimizerServiceClient::new(self.channel.clone())
    }

    /// SIGTERM, then waits for a successful exit.
    async fn stop(mut self) {
        let pid = self.child.id().expect("server still running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server exits within its grace period")
            .unwrap();
        assert!(status.success(), "clean stop exited with {status}");
    }

    /// SIGKILL: no shutdown code runs.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    async fn create(&self, key: &str) -> String {
        let request = pb::OptimizeRequest {
            prompt: format!("Summarise the ticket ({key})."),
            iterations: Some(ITERATIONS),
            idempotency_key: key.to_string(),
            ..Default::default()
        };
        self.optimizer()
            .create_job(request)
            .await
            .unwrap()
            .into_inner()
            .job_id
    }

    /// Watches `job_id` from the start, recording every event into `sink` until the stream ends
    /// (terminal event, or the server went away).
    fn record(
        &self,
        job_id: &str,
        sink: Arc<Mutex<Vec<pb::JobEvent>>>,
    ) -> tokio::task::JoinHandle<()> {
        let mut jobs = self.jobs();
        let request = pb::WatchJobRequest {
            job_id: job_id.to_string(),
            after_event_id: 0,
        };
        tokio::spawn(async move {
            let Ok(response) = jobs.watch_job(request).await else {
                return;
            };
            let mut stream = response.into_inner();
            while let Ok(Some(event)) = stream.message().await {
                sink.lock().unwrap().push(event);
            }
        })
    }

    /// The job's whole history; panics unless the stream ends by itself.
    async fn history(&self, job_id: &str) -> Vec<pb::JobEvent> {
        let request = pb::WatchJobRequest {
            job_id: job_id.to_string(),
            after_event_id: 0,
        };
        let mut stream = self.jobs().watch_job(request).await.unwrap().into_inner();
        let mut events = Vec::new();
        let read_all = async {
            while let Some(event) = stream.message().await.unwrap() {
                events.push(event);
            }
        };
        tokio::time::timeout(Duration::from_secs(120), read_all)
            .await
            .unwrap_or_else(|_| panic!("watching {job_id} after restart did not end"));
        events
    }
}

fn is_terminal(event: &pb::JobEvent) -> bool {
    TERMINAL_TYPES.contains(&event.r#type.as_str())
}

fn shutdown_reason(event: &pb::JobEvent) -> Option<&str> {
    match &event.payload {
        Some(pb::job_event::Payload::Shutdown(s)) => Some(&s.reason),
        _ => None,
    }
}

/// Jobs created with idempotency keys, each watched by a client recording what it receives.
struct Workload {
    keys: Vec<String>,
    job_ids: Vec<String>,
    received: Vec<Arc<Mutex<Vec<pb::JobEvent>>>>,
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    async fn start(server: &Server, jobs: usize) -> Workload {
        let mut workload = Workload {
            keys: Vec::new(),
            job_ids: Vec::new(),
            received: Vec::new(),
            watchers: Vec::new(),
        };
        for i in 0..jobs {
            let key = format!("restart-key-{i}");
            let job_id = server.create(&key).await;
            let sink = Arc::new(Mutex::new(Vec::new()));
            workload.watchers.push(server.record(&job_id, sink.clone()));
            workload.keys.push(key);
            workload.job_ids.push(job_id);
            workload.received.push(sink);
        }
        workload
    }

    /// Waits until every client has received at least `n` events (or its job ended).
    async fn wait_for_events(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self.received.iter().all(|sink| {
                let events = sink.lock().unwrap();
                events.len() >= n || events.iter().any(is_terminal)
            });
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "jobs did not stream {n} events");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for every watcher to end and returns what each client received, by job id.
    async fn finish(self) -> HashMap<String, Vec<pb::JobEvent>> {
        for watcher in self.watchers {
            tokio::time::timeout(Duration::from_secs(60), watcher)
                .await
                .expect("watch streams end when the server goes away")
                .unwrap();
        }
        self.job_ids
            .into_iter()
            .zip(self.received)
            .map(|(id, sink)| (id, std::mem::take(&mut *sink.lock().unwrap())))
            .collect()
    }
}

/// Checks one job after a restart against what its client had received; returns its history.
async fn check_job(server: &Server, job_id: &str, received: &[pb::JobEvent]) -> Vec<pb::JobEvent> {
    let history = server.history(job_id).await;
    let ids: Vec<u64> = history.iter().map(|e| e.id).collect();
    let dense: Vec<u64> = (1..=history.len() as u64).collect();
    assert_eq!(
        ids, dense,
        "{job_id}: ids must be 1..n, none reused or skipped"
    );
    assert!(
        received.len() <= history.len() && history[..received.len()] == *received,
        "{job_id}: every event the client received is replayed identically"
    );
    let terminals: Vec<&pb::JobEvent> = history.iter().filter(|e| is_terminal(e)).collect();
    assert_eq!(terminals.len(), 1, "{job_id}: exactly one terminal event");
    assert!(
        is_terminal(history.last().unwrap()),
        "{job_id}: terminal is last"
    );
    let job = server
        .jobs()
        .get_job(pb::GetJobRequest {
            job_id: job_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.last_event_id, history.len() as u64, "{job_id}");
    let expected_status = match history.last().unwrap().r#type.as_str() {
        "finished" => pb::JobStatus::Finished,
        "failed" => pb::JobStatus::Failed,
        "cancelled" => pb::JobStatus::Cancelled,
        _ => pb::JobStatus::Shutdown,
    };
    assert_eq!(job.status(), expected_status, "{job_id}");
    history
}

async fn idempotency_keys_return_the_same_jobs(server: &Server, keys: &[String], ids: &[String]) {
    for (key, id) in keys.iter().zip(ids) {
        assert_eq!(&server.create(key).await, id, "key {key}");
    }
}

/// A temporary data directory, kept (with the servers' logs) when the test fails.
struct DataDir(Option<tempfile::TempDir>);

impl DataDir {
    fn path(&self) -> &Path {
        self.0.as_ref().map(|d| d.path()).unwrap_or(Path::new("."))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

fn temp_data() -> DataDir {
    DataDir(Some(
        tempfile::Builder::new()
            .prefix("innerloop-restart-")
            .tempdir()
            .unwrap(),
    ))
}

/// Kill -9 while `jobs` jobs stream, restart, check, restart once more and check nothing moved.
async fn crash_while_streaming(storage: Storage, jobs: usize) {
    let data = temp_data();
    let server = start(data.path(), &storage, 1).await;
    let workload = Workload::start(&server, jobs).await;
    workload.wait_for_events(3).await;
    let keys = workload.keys.clone();
    let ids = workload.job_ids.clone();
    server.kill().await;
    let received = workload.finish().await;

    let server = start(data.path(), &storage, 2).await;
    let mut interrupted = 0;
    let mut histories = HashMap::new();
    for id in &ids {
        let got = &received[id];
        let history = check_job(&server, id, got).await;
        let terminal = history.last().unwrap();
        if !got.iter().any(is_terminal) && terminal.r#type == "shutdown" {
            assert_eq!(shutdown_reason(terminal), Some("interrupted"), "{id}");
            assert_eq!(terminal.id, history.len() as u64);
            interrupted += 1;
        }
        histories.insert(id.clone(), history);
    }
    assert!(interrupted > 0, "no job was mid-stream at the crash");
    let total: usize = received.values().map(Vec::len).sum();
    eprintln!("{total} events received before the crash; {interrupted}/{jobs} jobs interrupted");
    idempotency_keys_return_the_same_jobs(&server, &keys, &ids).await;
    server.stop().await;

    // Recovery already ended every job: a third start adds nothing.
    let server = start(data.path(), &storage, 3).await;
    for id in &ids {
        assert_eq!(server.history(id).await, histories[id], "{id} changed");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_20_jobs_streaming_replays_every_received_event_and_ends_each_job_once() {
    crash_while_streaming(Storage::Sqlite, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_stop_ends_running_jobs_as_shutdown_and_keeps_their_history() {
    let data = temp_data();
    let server = start(data.path(), &Storage::Sqlite, 1).await;
    let workload = Workload::start(&server, 5).await;
    workload.wait_for_events(3).await;
    let keys = workload.keys.clone();
    let ids = workload.job_ids.clone();
    server.stop().await;
    let received = workload.finish().await;

    // A clean stop delivers the terminal event to every client before the streams close.
    for id in &ids {
        let last = received[id].last().expect("events received");
        assert!(is_terminal(last), "{id}: stream ended on {}", last.r#type);
    }
    let server = start(data.path(), &Storage::Sqlite, 2).await;
    for id in &ids {
        let history = check_job(&server, id, &received[id]).await;
        assert_eq!(
            history, received[id],
            "{id}: nothing added after a clean stop"
        );
        let terminal = history.last().unwrap();
        if terminal.r#type == "shutdown" {
            assert_eq!(shutdown_reason(terminal), Some("shutdown"), "{id}");
        }
    }
    idempotency_keys_return_the_same_jobs(&server, &keys, &ids).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_9_while_streaming_keeps_every_event_and_ends_each_job_once() {
    let schema = PgSchema::create("r").await;
    crash_while_streaming(Storage::Postgres(schema.url()), 5).await;
}
