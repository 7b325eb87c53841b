//! Scenario `fanout`: 1,000 concurrent `WatchJob` streams of one long job (LocalEcho judge with
//! simulated latency, so the job lasts a few seconds). Checks that every watcher received every
//! event id exactly once and in order, measures delivery lag (event `time` → receipt, for events
//! emitted after the watcher subscribed) and the process RSS per watcher.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use innerloop::api::pb;
use innerloop::api::pb::job_service_client::JobServiceClient;
use innerloop::api::pb::optimizer_service_client::OptimizerServiceClient;
use innerloop::config::Settings;
use tokio::task::JoinSet;

use crate::report::{self, target};
use crate::target::{Target, base_settings};
use crate::{Opts, optimize_request};

/// Watchers per HTTP/2 connection in scenario `fanout` (1,000 watchers → 20 connections);
/// scenario `fanout-conns` gives every watcher its own connection, as SSE clients have.
pub const SHARED_STREAMS_PER_CONNECTION: usize = 50;

/// Settings for jobs that take time: the model judge is `LocalEcho`, every call `latency_ms`.
pub fn long_job_settings(latency_ms: u64) -> Settings {
    Settings {
        use_judge_stub: false,
        judge_provider: "local_echo".into(),
        local_echo_latency_ms: latency_ms,
        max_iterations: 1000,
        ..base_settings()
    }
}

/// What one watcher saw.
struct Seen {
    ids: Vec<u64>,
    /// Delivery lag in µs of events emitted after this watcher subscribed.
    live_lag_us: Vec<u64>,
    replayed: usize,
    last_type: String,
    failed: bool,
}

fn event_time(event: &pb::JobEvent) -> Option<SystemTime> {
    let t = event.time.as_ref()?;
    Some(UNIX_EPOCH + Duration::new(u64::try_from(t.seconds).ok()?, u32::try_from(t.nanos).ok()?))
}

async fn watch(
    channel: tonic::transport::Channel,
    job_id: String,
    subscribed: Arc<AtomicUsize>,
) -> Seen {
    let mut seen = Seen {
        ids: Vec::new(),
        live_lag_us: Vec::new(),
        replayed: 0,
        last_type: String::new(),
        failed: false,
    };
    let since = SystemTime::now();
    let request = pb::WatchJobRequest {
        job_id,
        after_event_id: 0,
    };
    let mut stream = match JobServiceClient::new(channel).watch_job(request).await {
        Ok(r) => r.into_inner(),
        Err(_) => {
            seen.failed = true;
            return seen;
        }
    };
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
            Ok(Ok(Some(event))) => {
                let now = SystemTime::now();
                if seen.ids.is_empty() {
                    subscribed.fetch_add(1, Ordering::SeqCst);
                }
                match event_time(&event) {
                    Some(t) if t >= since => {
                        let lag = now.duration_since(t).unwrap_or_default();
                        seen.live_lag_us.push(lag.as_micros() as u64);
                    }
                    _ => seen.replayed += 1,
                }
                seen.ids.push(event.id);
                seen.last_type = event.r#type;
            }
            Ok(Ok(None)) => return seen,
            Ok(Err(_)) | Err(_) => {
                seen.failed = true;
                return seen;
            }
        }
    }
}

pub async fn run(opts: &Opts, streams_per_connection: usize) -> anyhow::Result<()> {
    let watchers = target::STREAM_CLIENTS;
    let connections = watchers.div_ceil(streams_per_connection.max(1));
    let (latency_ms, iterations) = if opts.quick { (20, 12) } else { (30, 16) };
    report::header(&format!(
        "fanout: {watchers} watchers over {connections} connections, one long job (LocalEcho \
         judge {latency_ms} ms/call, iterations={iterations})"
    ));
    let target = Target::new(opts.target.as_deref(), long_job_settings(latency_ms)).await?;
    if matches!(target, Target::External(_)) {
        println!("(external target: the job's length depends on that server's settings)");
    }
    let setup = target.channels(1).await?;
    let local = matches!(target, Target::Local(_));
    let rss_before = report::rss_kib().filter(|_| local);
    let overflows_before = report::listen_overflows();
    let channels = target.channels(connections).await?;
    let rss_connected = report::rss_kib().filter(|_| local);

    // Peak RSS, sampled every 20 ms while the watchers run.
    let peak = Arc::new(AtomicU64::new(rss_connected.unwrap_or(0)));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (peak, sampling) = (peak.clone(), sampling.clone());
        async move {
            while sampling.load(Ordering::SeqCst) {
                if let Some(rss) = report::rss_kib() {
                    peak.fetch_max(rss, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let started = Instant::now();
    let job_id = OptimizerServiceClient::new(setup[0].clone())
        .create_job(optimize_request(iterations, Some(1000)))
        .await?
        .into_inner()
        .job_id;
    let subscribed = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for i in 0..watchers {
        let channel = channels[i % channels.len()].clone();
        tasks.spawn(watch(channel, job_id.clone(), subscribed.clone()));
    }
    let wait_all = Instant::now();
    while subscribed.load(Ordering::SeqCst) < watchers
        && wait_all.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_subscribed = started.elapsed();
    let rss_subscribed = report::rss_kib().filter(|_| local);

    let mut results = Vec::with_capacity(watchers);
    while let Some(seen) = tasks.join_next().await {
        results.push(seen.expect("watcher panicked"));
    }
    let job_duration = started.elapsed();
    sampling.store(false, Ordering::SeqCst);
    let _ = sampler.await;

    let job = JobServiceClient::new(setup[0].clone())
        .get_job(pb::GetJobRequest {
            job_id: job_id.clone(),
        })
        .await?
        .into_inner();
    let expected: Vec<u64> = (1..=job.last_event_id).collect();
    let complete = results
        .iter()
        .filter(|s| !s.failed && s.ids == expected && s.last_type == "finished")
        .count();
    let failed = results.iter().filter(|s| s.failed).count();
    let mut lag = report::histogram();
    let mut replayed = 0;
    for seen in &results {
        replayed += seen.replayed;
        for us in &seen.live_lag_us {
            lag.saturating_record((*us).max(1));
        }
    }
    let delivered: usize = results.iter().map(|s| s.ids.len()).sum();
    drop(results);
    let rss_after = report::rss_kib().filter(|_| local);

    let q = |p: f64| report::quantile(&lag, p);
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| watchers (connections) | {watchers} ({}) |",
        channels.len()
    );
    println!("| events in the job | {} |", job.last_event_id);
    println!(
        "| watchers with every id 1..=last, in order, ending `finished` | {complete} / {watchers} |"
    );
    println!("| watchers that failed | {failed} |");
    println!(
        "| events delivered (live / replayed at subscribe) | {delivered} ({} / {replayed}) |",
        lag.len()
    );
    println!(
        "| all subscribed after | {} |",
        report::fmt_d(all_subscribed)
    );
    if let (Some(before), Some(after)) = (overflows_before, report::listen_overflows()) {
        println!(
            "| kernel ListenOverflows meanwhile (connects dropped, retried after 1 s) | {} |",
            after.saturating_sub(before)
        );
    }
    println!(
        "| job create → last watcher done | {} |",
        report::fmt_d(job_duration)
    );
    println!(
        "| delivery lag p50 / p95 / p99 / max | {} / {} / {} / {} |",
        report::fmt_d(q(0.5)),
        report::fmt_d(q(0.95)),
        report::fmt_d(q(0.99)),
        report::fmt_d(Duration::from_micros(lag.max()))
    );
    if let (Some(before), Some(connected), Some(sub), Some(after)) =
        (rss_before, rss_connected, rss_subscribed, rss_after)
    {
        let peak = peak.load(Ordering::SeqCst).max(sub);
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "| RSS before / connected / all subscribed / peak / after | {:.1} / {:.1} / {:.1} / \
             {:.1} / {:.1} MiB |",
            mib(before),
            mib(connected),
            mib(sub),
            mib(peak),
            mib(after)
        );
        println!(
            "| RSS per connection (connected − before) / {connections}, client + server | {:.1} KiB |",
            connected.saturating_sub(before) as f64 / connections as f64
        );
        println!(
            "| RSS per watcher stream (peak − connected) / {watchers}, client + server | {:.1} KiB |",
            peak.saturating_sub(connected) as f64 / watchers as f64
        );
    }
    println!(
        "\n- {watchers} watchers = {} the 1,000-client target; delivery lag p99 {} = {} the \
         200 ms p99 target; {complete}/{watchers} complete",
        report::fmt_ratio(watchers as f64 / target::STREAM_CLIENTS as f64),
        report::fmt_d(q(0.99)),
        report::fmt_ratio(q(0.99).as_secs_f64() / target::P99.as_secs_f64()),
    );
    Ok(())
}
