//! Scenario `shutdown`: graceful shutdown under load. 50 long jobs run, each with a watcher, while
//! 8 tasks keep calling `GetJob`; then the server's shutdown future resolves (as on SIGTERM) and
//! we measure how long `innerloop::server::run` takes to return and whether every watcher got a
//! `shutdown` terminal event. In-process only: an external server cannot be told to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use innerloop::api::pb;
use innerloop::api::pb::job_service_client::JobServiceClient;
use innerloop::api::pb::optimizer_service_client::OptimizerServiceClient;
use tokio::task::JoinSet;

use crate::fanout::long_job_settings;
use crate::report::{self, target};
use crate::target::{InProcess, Target};
use crate::{Opts, optimize_request};

const JOBS: usize = 50;
const READERS: usize = 8;

/// What one watcher saw: its last event type, and when it arrived.
struct Ending {
    last_type: String,
    at: Option<Instant>,
    clean: bool,
}

pub async fn run(opts: &Opts) -> anyhow::Result<()> {
    report::header(&format!(
        "shutdown: {JOBS} running jobs with watchers and {READERS} GetJob loops, then SIGTERM"
    ));
    if opts.target.is_some() {
        println!("(skipped: needs the in-process server)");
        return Ok(());
    }
    let mut server = InProcess::start(long_job_settings(50)).await?;
    let target = Target::External(server.uri());
    let channels = target.channels(5).await?;

    let mut job_ids = Vec::with_capacity(JOBS);
    for i in 0..JOBS {
        let mut client = OptimizerServiceClient::new(channels[i % channels.len()].clone());
        let created = client
            .create_job(optimize_request(1000, Some(1000)))
            .await?;
        job_ids.push(created.into_inner().job_id);
    }
    let running = Arc::new(AtomicUsize::new(0));
    let mut watchers = JoinSet::new();
    for (i, job_id) in job_ids.iter().enumerate() {
        let channel = channels[i % channels.len()].clone();
        let request = pb::WatchJobRequest {
            job_id: job_id.clone(),
            after_event_id: 0,
        };
        let running = running.clone();
        watchers.spawn(async move {
            let mut ending = Ending {
                last_type: String::new(),
                at: None,
                clean: false,
            };
            let Ok(response) = JobServiceClient::new(channel).watch_job(request).await else {
                return ending;
            };
            let mut stream = response.into_inner();
            loop {
                match tokio::time::timeout(Duration::from_secs(60), stream.message()).await {
                    Ok(Ok(Some(event))) => {
                        if ending.last_type.is_empty() {
                            running.fetch_add(1, Ordering::SeqCst);
                        }
                        ending.last_type = event.r#type;
                        ending.at = Some(Instant::now());
                    }
                    Ok(Ok(None)) => {
                        ending.clean = true;
                        return ending;
                    }
                    Ok(Err(_)) | Err(_) => return ending,
                }
            }
        });
    }
    let reading = Arc::new(AtomicBool::new(true));
    let mut readers = JoinSet::new();
    for i in 0..READERS {
        let mut client = JobServiceClient::new(channels[i % channels.len()].clone());
        let job_id = job_ids[i].clone();
        let reading = reading.clone();
        readers.spawn(async move {
            let (mut ok, mut err) = (0u64, 0u64);
            while reading.load(Ordering::SeqCst) {
                let request = pb::GetJobRequest {
                    job_id: job_id.clone(),
                };
                match client.get_job(request).await {
                    Ok(_) => ok += 1,
                    Err(_) => {
                        err += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (ok, err)
        });
    }
    let wait = Instant::now();
    while running.load(Ordering::SeqCst) < JOBS && wait.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(if opts.quick { 300 } else { 1000 })).await;

    let sigterm = Instant::now();
    let returned = server.shutdown().await?;
    reading.store(false, Ordering::SeqCst);
    let mut endings = Vec::with_capacity(JOBS);
    while let Some(ending) = watchers.join_next().await {
        endings.push(ending.expect("watcher panicked"));
    }
    let (mut reads_ok, mut reads_err) = (0, 0);
    while let Some(counts) = readers.join_next().await {
        let (ok, err) = counts.expect("reader panicked");
        reads_ok += ok;
        reads_err += err;
    }
    let with_shutdown = endings
        .iter()
        .filter(|e| e.last_type == "shutdown" && e.clean)
        .count();
    let last_event = endings
        .iter()
        .filter_map(|e| e.at)
        .max()
        .map(|at| at.saturating_duration_since(sigterm))
        .unwrap_or_default();
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| running jobs (watchers) at SIGTERM | {} |",
        running.load(Ordering::SeqCst)
    );
    println!(
        "| watchers whose stream ended cleanly after a `shutdown` event | {with_shutdown} / {JOBS} |"
    );
    println!(
        "| SIGTERM → last `shutdown` event received | {} |",
        report::fmt_d(last_event)
    );
    println!(
        "| SIGTERM → `server::run` returned | {} |",
        report::fmt_d(returned)
    );
    println!("| GetJob during the run: ok / refused once draining | {reads_ok} / {reads_err} |");
    println!(
        "\n- graceful shutdown {} = {} the 5 s target; {with_shutdown}/{JOBS} watchers got `shutdown`",
        report::fmt_d(returned),
        report::fmt_ratio(returned.as_secs_f64() / target::SHUTDOWN.as_secs_f64()),
    );
    Ok(())
}
