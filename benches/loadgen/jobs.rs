//! Scenario `jobs`: job throughput. Each of `conc` tasks loops `CreateJob` (default mode,
//! LocalEcho, iterations=4) then `WatchJob` from the start to the terminal event, and records the
//! create latency, the time to the first event and the time to the terminal event.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use innerloop::api::pb;
use innerloop::api::pb::job_service_client::JobServiceClient;
use innerloop::api::pb::optimizer_service_client::OptimizerServiceClient;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::report::{self, Step};
use crate::target::{Target, base_settings};
use crate::{Opts, optimize_request};

/// What one task measured.
struct Tally {
    /// Jobs that reached `finished` (latency = time to terminal).
    jobs: Step,
    create: Histogram<u64>,
    first_event: Histogram<u64>,
    events: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            jobs: Step::new(),
            create: report::histogram(),
            first_event: report::histogram(),
            events: 0,
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.jobs.merge(&other.jobs);
        self.create.add(&other.create).expect("same bounds");
        self.first_event
            .add(&other.first_event)
            .expect("same bounds");
        self.events += other.events;
    }
}

/// One job, create to terminal. `None` when anything failed or the job did not finish.
async fn one_job(channel: Channel, tally: &mut Tally) -> Option<()> {
    let t0 = Instant::now();
    let created = OptimizerServiceClient::new(channel.clone())
        .create_job(optimize_request(4, None))
        .await
        .ok()?
        .into_inner();
    let create = t0.elapsed();
    let mut stream = JobServiceClient::new(channel)
        .watch_job(pb::WatchJobRequest {
            job_id: created.job_id,
            after_event_id: 0,
        })
        .await
        .ok()?
        .into_inner();
    let mut first = None;
    let mut last_type = String::new();
    let mut events = 0;
    while let Ok(Ok(Some(event))) =
        tokio::time::timeout(Duration::from_secs(30), stream.message()).await
    {
        first.get_or_insert_with(|| t0.elapsed());
        events += 1;
        last_type = event.r#type;
    }
    let terminal = t0.elapsed();
    if last_type != "finished" {
        return None;
    }
    report::record(&mut tally.create, create);
    report::record(&mut tally.first_event, first?);
    report::record(&mut tally.jobs.latency, terminal);
    tally.events += events;
    Some(())
}

pub async fn run(opts: &Opts) -> anyhow::Result<()> {
    report::header("jobs: CreateJob + WatchJob to the terminal event (default mode, iterations=4)");
    let target = Target::new(opts.target.as_deref(), base_settings()).await?;
    let local = matches!(target, Target::Local(_));
    let rss_before = report::rss_kib().filter(|_| local);
    // Every job created, warm-up included: they all stay in the memory store (TTL 1 h here).
    let mut created = 0u64;
    let (warmup, measure) = if opts.quick {
        (Duration::from_millis(300), Duration::from_millis(1500))
    } else {
        (Duration::from_secs(1), Duration::from_secs(5))
    };
    println!(
        "| conc | jobs ok | err | jobs/s | events/s | create p50 / p99 | first event p50 / p99 | \
         terminal p50 / p95 / p99 / max |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut lines = Vec::new();
    for conc in [16usize, 64] {
        let channels = target.channels(4).await?;
        let start = Instant::now();
        let from = start + warmup;
        let until = from + measure;
        let mut tasks = JoinSet::new();
        for i in 0..conc {
            let channel = channels[i % channels.len()].clone();
            tasks.spawn(async move {
                let mut tally = Tally::new();
                let mut scratch = Tally::new();
                loop {
                    let t = Instant::now();
                    if t >= until {
                        break;
                    }
                    let sink = if t >= from { &mut tally } else { &mut scratch };
                    if one_job(channel.clone(), sink).await.is_some() {
                        sink.jobs.ok += 1;
                    } else {
                        sink.jobs.errors += 1;
                    }
                }
                (tally, scratch.jobs.ok + scratch.jobs.errors)
            });
        }
        let mut total = Tally::new();
        while let Some(joined) = tasks.join_next().await {
            let (tally, warmup_jobs) = joined.expect("load task panicked");
            total.merge(&tally);
            created += tally.jobs.ok + tally.jobs.errors + warmup_jobs;
        }
        total.jobs.elapsed = from.elapsed();
        let secs = total.jobs.elapsed.as_secs_f64();
        let q = |h: &Histogram<u64>, q: f64| report::fmt_d(report::quantile(h, q));
        let t = &total.jobs.latency;
        println!(
            "| {conc} | {} | {} | {:.0} | {:.0} | {} / {} | {} / {} | {} / {} / {} / {} |",
            total.jobs.ok,
            total.jobs.errors,
            total.jobs.per_second(),
            total.events as f64 / secs,
            q(&total.create, 0.5),
            q(&total.create, 0.99),
            q(&total.first_event, 0.5),
            q(&total.first_event, 0.99),
            q(t, 0.5),
            q(t, 0.95),
            q(t, 0.99),
            report::fmt_d(Duration::from_micros(t.max())),
        );
        lines.push(format!(
            "- c={conc}: {} ({:.1} events per job)",
            report::versus_targets("job create→terminal", &total.jobs, "jobs"),
            total.events as f64 / total.jobs.ok.max(1) as f64
        ));
    }
    println!();
    for line in lines {
        println!("{line}");
    }
    if let (Some(before), Some(after)) = (rss_before, report::rss_kib()) {
        println!(
            "- RSS {:.1} → {:.1} MiB after {created} jobs, all kept (record + ~15 events each, \
             memory store): {:.1} KiB per retained job, client + server",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            after.saturating_sub(before) as f64 / created.max(1) as f64
        );
    }
    Ok(())
}
