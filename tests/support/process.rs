//! The real binary as a process: `innerloop serve --dev` on free ports, its models at a fake
//! OpenAI-compatible server, with tonic clients of its core. Restart and replica tests start,
//! SIGTERM (`stop`) and `kill -9` (`kill`) these.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use innerloop::api::pb;
use pb::job_service_client::JobServiceClient;
use pb::optimizer_service_client::OptimizerServiceClient;
use pb::workbench_service_client::WorkbenchServiceClient;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use super::fake_llm::REFLECT_MODEL;

/// One running `innerloop serve`.
pub struct Process {
    pub name: String,
    pub child: Child,
    pub channel: Channel,
    pub http_port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `innerloop serve` in `dir` (its data directory; output to `dir/<name>.log`), its models
/// at `llm_url`, auth off and limits out of the way; `env` adds or overrides settings. Returns
/// once its gRPC port answers.
pub async fn serve(dir: &Path, name: &str, llm_url: &str, env: &[(&str, &str)]) -> Process {
    let grpc_port = free_port();
    let http_port = free_port();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_innerloop"));
    command
        .args(["serve", "--dev"])
        .env_clear()
        .current_dir(dir)
        .env("DATA_DIR", dir)
        .env("GRPC_HOST", "127.0.0.1")
        .env("GRPC_PORT", grpc_port.to_string())
        .env("HOST", "127.0.0.1")
        .env("PORT", http_port.to_string())
        .env("REQUIRE_AUTH", "false")
        .env("RATE_LIMIT_PER_MIN", "600000")
        .env("RATE_LIMIT_BURST", "10000")
        .env("MAX_STREAMS_PER_PRINCIPAL", "1000")
        .env("USE_MODEL_STUB", "false")
        .env("OPENAI_BASE_URL", llm_url)
        .env("REFLECTION_MODEL_ID", REFLECT_MODEL)
        .env("PROVIDER_BACKOFF_BASE_MS", "5")
        .env("SHUTDOWN_GRACE_S", "10")
        .env("LOG_FORMAT", "json");
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("innerloop binary starts");
    let url = format!("http://127.0.0.1:{grpc_port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(channel) = Channel::from_shared(url.clone()).unwrap().connect().await {
            let mut jobs = JobServiceClient::new(channel.clone());
            if jobs.list_jobs(pb::ListJobsRequest::default()).await.is_ok() {
                return Process {
                    name: name.to_string(),
                    child,
                    channel,
                    http_port,
                };
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{name} exited during start-up ({status}); see {}",
                dir.display()
            );
        }
        assert!(Instant::now() < deadline, "{name} did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Process {
    pub fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel.clone())
    }

    pub fn workbench(&self) -> WorkbenchServiceClient<Channel> {
        WorkbenchServiceClient::new(self.channel.clone())
    }

    pub async fn create(&self, request: pb::OptimizeRequest) -> String {
        OptimizerServiceClient::new(self.channel.clone())
            .create_job(request)
            .await
            .unwrap()
            .into_inner()
            .job_id
    }

    pub async fn get(&self, job_id: &str) -> pb::Job {
        self.jobs()
            .get_job(pb::GetJobRequest {
                job_id: job_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// `PauseJob`: the job as the answer shows it.
    pub async fn pause(&self, job_id: &str) -> pb::Job {
        self.jobs()
            .pause_job(pb::PauseJobRequest {
                job_id: job_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// `ResumeJob`: the job as the answer shows it.
    pub async fn resume(&self, job_id: &str) -> pb::Job {
        self.jobs()
            .resume_job(pb::ResumeJobRequest {
                job_id: job_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Follows `job_id` over gRPC from `after`, recording into `sink` until the stream ends.
    pub fn record(
        &self,
        job_id: &str,
        after: u64,
        sink: Arc<Mutex<Vec<pb::JobEvent>>>,
    ) -> tokio::task::JoinHandle<()> {
        let mut jobs = self.jobs();
        let request = pb::WatchJobRequest {
            job_id: job_id.into(),
            after_event_id: after,
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

    /// The whole history of a job, watched to its end (at most two minutes).
    pub async fn history(&self, job_id: &str) -> Vec<pb::JobEvent> {
        let sink = Arc::new(Mutex::new(Vec::new()));
        tokio::time::timeout(
            Duration::from_secs(120),
            self.record(job_id, 0, sink.clone()),
        )
        .await
        .unwrap_or_else(|_| panic!("watching {job_id} on {} did not end", self.name))
        .unwrap();
        sink.lock().unwrap().clone()
    }

    /// `kill -9`, then reaps it.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits for a successful exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("process still running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} exits within its grace period", self.name))
            .unwrap();
        assert!(
            status.success(),
            "{}: clean stop exited with {status}",
            self.name
        );
    }
}
