//! Latency of one job read through the REST edge vs the same read made directly over gRPC.
//!
//! One process runs the server (core + in-process edge) on 127.0.0.1:0. The same finished job is
//! read N times sequentially, alternating rounds: `JobService/GetJob` over a tonic channel on
//! the gRPC port, and `GET /v1/optimize/{id}` over a keep-alive reqwest client on the HTTP port.
//! Prints p50/p99 of each and their ratio (the budget: edge ≤ 1.15 × gRPC).
//!
//! Run: `cargo bench --bench edge_latency` (ROUNDS and PER_ROUND below).
//! Measured 2026-11-25 on the shared 2-core machine, release, 10 000 calls each: edge/gRPC
//! p50 0.85 and 0.96, p99 0.89 and 0.97 (two runs): the edge is no slower than direct gRPC,
//! because it reaches the core in-process while the gRPC client pays a TCP + HTTP/2 hop.
//! With the shared layers on both transports (auth off, limits high), same machine, one run:
//! gRPC p50 104.9µs p99 191.5µs, edge p50 113.4µs p99 189.5µs; ratio p50 1.082, p99 0.989.

use std::sync::Arc;
use std::time::{Duration, Instant};

use innerloop::api::pb;
use innerloop::api::pb::job_service_client::JobServiceClient;
use innerloop::api::pb::optimizer_service_client::OptimizerServiceClient;
use innerloop::config::Settings;
use innerloop::server;

const WARMUP: usize = 500;
const ROUNDS: usize = 10;
const PER_ROUND: usize = 1000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Arc::new(Settings {
        log_level: "error".into(),
        // Both transports run the shared layers; auth off and limits out of the way so the
        // calls measure the path, not 401s or 429s.
        require_auth: false,
        dev_mode: true,
        rate_limit_per_min: 60_000_000,
        rate_limit_burst: 1_000_000,
        job_store: innerloop::config::StoreKind::Memory,
        ..Settings::default()
    });
    innerloop::telemetry::init(&settings.telemetry());
    let listeners = server::Listeners::ephemeral().await?;
    let grpc_url = format!("http://{}", listeners.grpc.local_addr()?);
    let http_base = format!("http://{}", listeners.http.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(settings, listeners, async move {
        let _ = stopped.await;
    }));

    let channel = tonic::transport::Endpoint::from_shared(grpc_url)?
        .connect()
        .await?;
    let mut optimizer = OptimizerServiceClient::new(channel.clone());
    let mut jobs = JobServiceClient::new(channel);
    let job_id = optimizer
        .create_job(pb::OptimizeRequest {
            prompt: "benchmark the edge".into(),
            iterations: Some(2),
            ..Default::default()
        })
        .await?
        .into_inner()
        .job_id;
    let mut watch = jobs
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.clone(),
            after_event_id: 0,
        })
        .await?
        .into_inner();
    while watch.message().await?.is_some() {}

    let http = reqwest::Client::new();
    let url = format!("{http_base}/v1/optimize/{job_id}");
    let grpc_call = |mut jobs: JobServiceClient<tonic::transport::Channel>, job_id: String| async move {
        let start = Instant::now();
        let job = jobs
            .get_job(pb::GetJobRequest { job_id })
            .await?
            .into_inner();
        let elapsed = start.elapsed();
        anyhow::ensure!(job.status == pb::JobStatus::Finished as i32);
        Ok::<_, anyhow::Error>(elapsed)
    };
    let http_call = |http: reqwest::Client, url: String| async move {
        let start = Instant::now();
        let response = http.get(&url).send().await?;
        anyhow::ensure!(response.status() == 200);
        let body = response.bytes().await?;
        let elapsed = start.elapsed();
        anyhow::ensure!(body.starts_with(b"{\"job_id\""));
        Ok::<_, anyhow::Error>(elapsed)
    };

    for _ in 0..WARMUP {
        grpc_call(jobs.clone(), job_id.clone()).await?;
        http_call(http.clone(), url.clone()).await?;
    }
    let mut grpc_samples = Vec::with_capacity(ROUNDS * PER_ROUND);
    let mut edge_samples = Vec::with_capacity(ROUNDS * PER_ROUND);
    for round in 0..ROUNDS {
        // Alternate which goes first so drift on a shared machine hits both.
        for side in [round % 2, 1 - round % 2] {
            for _ in 0..PER_ROUND {
                if side == 0 {
                    grpc_samples.push(grpc_call(jobs.clone(), job_id.clone()).await?);
                } else {
                    edge_samples.push(http_call(http.clone(), url.clone()).await?);
                }
            }
        }
    }
    grpc_samples.sort();
    edge_samples.sort();
    let (g50, g99) = (
        percentile(&grpc_samples, 0.5),
        percentile(&grpc_samples, 0.99),
    );
    let (e50, e99) = (
        percentile(&edge_samples, 0.5),
        percentile(&edge_samples, 0.99),
    );
    println!(
        "GetJob direct gRPC   n={} p50={:.1}µs p99={:.1}µs",
        grpc_samples.len(),
        micros(g50),
        micros(g99)
    );
    println!(
        "GET /v1/optimize/id  n={} p50={:.1}µs p99={:.1}µs",
        edge_samples.len(),
        micros(e50),
        micros(e99)
    );
    println!(
        "edge/gRPC ratio: p50 {:.3}  p99 {:.3}  (budget 1.15)",
        micros(e50) / micros(g50),
        micros(e99) / micros(g99)
    );

    let _ = stop.send(());
    server.await??;
    Ok(())
}
