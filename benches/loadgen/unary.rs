//! Scenario `unary`: `JobService.GetJob` of a finished job at concurrency 1, 16 and 64 over a few
//! shared channels, next to the reference: `grpc.health.v1.Health/Check` on the same server, at
//! the same concurrency, in the same process — "GetJob costs X× a health check".

use std::future::Future;
use std::time::{Duration, Instant};

use innerloop::api::pb;
use innerloop::api::pb::job_service_client::JobServiceClient;
use innerloop::api::pb::optimizer_service_client::OptimizerServiceClient;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::report::{self, Step};
use crate::target::{Target, base_settings};
use crate::{Opts, optimize_request};

/// Closed-loop load: `conc` tasks over `channels` (task `i` uses channel `i % len`; a channel is
/// a tonic `Channel` or a `reqwest::Client`), each calling `call` back to back; calls started
/// during `warmup` are not recorded.
pub async fn drive<C, F, Fut>(
    conc: usize,
    channels: &[C],
    warmup: Duration,
    measure: Duration,
    call: F,
) -> Step
where
    C: Clone + Send + 'static,
    F: Fn(C) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let start = Instant::now();
    let from = start + warmup;
    let until = from + measure;
    let mut tasks = JoinSet::new();
    for i in 0..conc {
        let channel = channels[i % channels.len()].clone();
        let call = call.clone();
        tasks.spawn(async move {
            let mut step = Step::new();
            loop {
                let t = Instant::now();
                if t >= until {
                    break;
                }
                let ok = call(channel.clone()).await;
                if t >= from {
                    if ok {
                        step.ok += 1;
                        report::record(&mut step.latency, t.elapsed());
                    } else {
                        step.errors += 1;
                    }
                }
            }
            step
        });
    }
    let mut total = Step::new();
    while let Some(step) = tasks.join_next().await {
        total.merge(&step.expect("load task panicked"));
    }
    total.elapsed = from.elapsed();
    total
}

pub async fn run(opts: &Opts) -> anyhow::Result<()> {
    report::header("unary: GetJob vs the health-check reference");
    let target = Target::new(opts.target.as_deref(), base_settings()).await?;
    let setup = target.channels(1).await?;
    let job_id = finished_job(&setup[0]).await?;
    let (warmup, measure) = if opts.quick {
        (Duration::from_millis(200), Duration::from_millis(800))
    } else {
        (Duration::from_millis(500), Duration::from_secs(3))
    };
    let mut lines = Vec::new();
    report::latency_table_header();
    for conc in [1usize, 16, 64] {
        let channels = target.channels(conc.min(4)).await?;
        let health = drive(conc, &channels, warmup, measure, |ch| async move {
            let request = HealthCheckRequest {
                service: "innerloop.v1.JobService".into(),
            };
            match HealthClient::new(ch).check(request).await {
                Ok(r) => r.get_ref().status == ServingStatus::Serving as i32,
                Err(_) => false,
            }
        })
        .await;
        let id = job_id.clone();
        let get = drive(conc, &channels, warmup, measure, move |ch| {
            let request = pb::GetJobRequest { job_id: id.clone() };
            async move {
                match JobServiceClient::new(ch).get_job(request).await {
                    Ok(r) => r.get_ref().status == pb::JobStatus::Finished as i32,
                    Err(_) => false,
                }
            }
        })
        .await;
        report::latency_row("health Check (reference)", conc, &health);
        report::latency_row("GetJob", conc, &get);
        let p50 = |s: &Step| report::quantile(&s.latency, 0.5).as_secs_f64();
        let p99 = |s: &Step| report::quantile(&s.latency, 0.99).as_secs_f64();
        lines.push(format!(
            "- c={conc}: GetJob costs {} a health check at p50, {} at p99; throughput {} of it. {}",
            report::fmt_ratio(p50(&get) / p50(&health).max(1e-9)),
            report::fmt_ratio(p99(&get) / p99(&health).max(1e-9)),
            report::fmt_ratio(get.per_second() / health.per_second().max(1e-9)),
            report::versus_targets("GetJob", &get, "req"),
        ));
    }
    println!();
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// Creates a small job and waits for it to finish; its id is what `GetJob` reads.
async fn finished_job(channel: &Channel) -> anyhow::Result<String> {
    let created = OptimizerServiceClient::new(channel.clone())
        .create_job(optimize_request(2, None))
        .await?
        .into_inner();
    let mut events = JobServiceClient::new(channel.clone())
        .watch_job(pb::WatchJobRequest {
            job_id: created.job_id.clone(),
            after_event_id: 0,
        })
        .await?
        .into_inner();
    while events.message().await?.is_some() {}
    Ok(created.job_id)
}
