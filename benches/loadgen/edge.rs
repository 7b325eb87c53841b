//! The REST + SSE edge under load (HTTP/1.1, reqwest, one keep-alive connection per concurrent
//! client). Scenario `http`: `GET /v1/optimize/{id}` next to the `GET /v1/healthz` reference at
//! concurrency 1, 16, 64, and `POST /v1/optimize?iterations=4` + its SSE stream to the terminal
//! event at 16 and 64. Scenario `sse`: 1,000 SSE clients (1,000 connections) of one long job:
//! every id delivered, delivery lag (envelope `ts` → receipt), RSS per client.
//! The in-process server's edge is used unless `--http-target` names a running one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio::task::JoinSet;

use crate::Opts;
use crate::fanout::long_job_settings;
use crate::report::{self, Step, target};
use crate::target::{InProcess, base_settings};
use crate::unary::drive;

const PROMPT: &str = "Summarise the customer's complaint in two sentences, name the product, and \
                      propose one concrete remedy the support team can offer today.";

/// The in-process server (kept alive by the caller) and the edge's base URL.
async fn edge(
    opts: &Opts,
    settings: innerloop::config::Settings,
) -> anyhow::Result<(Option<InProcess>, String)> {
    Ok(match &opts.http_target {
        Some(base) => (None, base.trim_end_matches('/').to_string()),
        None => {
            let server = InProcess::start(settings).await?;
            let base = format!("http://{}", server.http_addr);
            (Some(server), base)
        }
    })
}

/// `POST /v1/optimize?iterations=N` → the job id.
async fn create(
    http: &reqwest::Client,
    base: &str,
    iterations: u32,
    patience: Option<u32>,
) -> anyhow::Result<String> {
    let mut body = serde_json::json!({ "prompt": PROMPT, "mode": "default" });
    if let Some(p) = patience {
        body["early_stop_patience"] = p.into();
    }
    let response = http
        .post(format!("{base}/v1/optimize?iterations={iterations}"))
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "create: {}", response.status());
    let created: serde_json::Value = response.json().await?;
    created["job_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("create: no job_id"))
}

/// One SSE event as the envelope gives it.
struct Seen {
    id: u64,
    kind: String,
    ts: f64,
    received: SystemTime,
}

/// Reads `GET /v1/optimize/{id}/events` to its end; `on_event` sees each event as it arrives.
async fn read_events(
    http: &reqwest::Client,
    base: &str,
    job_id: &str,
    mut on_event: impl FnMut(&Seen),
) -> anyhow::Result<Vec<Seen>> {
    let response = http
        .get(format!("{base}/v1/optimize/{job_id}/events"))
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "events: {}", response.status());
    let mut stream = response.bytes_stream().eventsource();
    let mut seen = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await? {
        let event = event?;
        let received = SystemTime::now();
        let envelope: serde_json::Value = serde_json::from_str(&event.data)?;
        let one = Seen {
            id: envelope["id"].as_u64().unwrap_or(0),
            kind: event.event,
            ts: envelope["ts"].as_f64().unwrap_or(0.0),
            received,
        };
        on_event(&one);
        seen.push(one);
    }
    Ok(seen)
}

fn epoch_s(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub async fn run_http(opts: &Opts) -> anyhow::Result<()> {
    report::header("http: the REST + SSE edge (HTTP/1.1, one connection per concurrent client)");
    let (_server, base) = edge(opts, base_settings()).await?;
    let http = reqwest::Client::new();
    let job_id = create(&http, &base, 2, None).await?;
    read_events(&http, &base, &job_id, |_| {}).await?;
    let (warmup, measure) = if opts.quick {
        (Duration::from_millis(200), Duration::from_millis(800))
    } else {
        (Duration::from_millis(500), Duration::from_secs(3))
    };
    let clients = [http.clone()];
    report::latency_table_header();
    let mut lines = Vec::new();
    for conc in [1usize, 16, 64] {
        let url = format!("{base}/v1/healthz");
        let health = drive(
            conc,
            &clients,
            warmup,
            measure,
            move |http: reqwest::Client| {
                let url = url.clone();
                async move {
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                        _ => false,
                    }
                }
            },
        )
        .await;
        let url = format!("{base}/v1/optimize/{job_id}");
        let get = drive(
            conc,
            &clients,
            warmup,
            measure,
            move |http: reqwest::Client| {
                let url = url.clone();
                async move {
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => r
                            .bytes()
                            .await
                            .is_ok_and(|b| b.windows(19).any(|w| w == b"\"status\":\"finished\"")),
                        _ => false,
                    }
                }
            },
        )
        .await;
        report::latency_row("GET /v1/healthz (reference)", conc, &health);
        report::latency_row("GET /v1/optimize/{id}", conc, &get);
        let p50 = |s: &Step| report::quantile(&s.latency, 0.5).as_secs_f64();
        lines.push(format!(
            "- c={conc}: GET job costs {} a healthz at p50. {}",
            report::fmt_ratio(p50(&get) / p50(&health).max(1e-9)),
            report::versus_targets("GET /v1/optimize/{id}", &get, "req"),
        ));
    }
    println!();
    for line in lines {
        println!("{line}");
    }

    println!(
        "\n| POST + SSE to terminal, conc | jobs ok | err | jobs/s | events/s | first event p50 / p99 | terminal p50 / p95 / p99 / max |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for conc in [16usize, 64] {
        let from = Instant::now() + warmup;
        let until = from + measure;
        let mut tasks = JoinSet::new();
        for _ in 0..conc {
            let (http, base) = (http.clone(), base.clone());
            tasks.spawn(async move {
                let (mut step, mut first, mut events) = (Step::new(), report::histogram(), 0u64);
                while Instant::now() < until {
                    let t0 = Instant::now();
                    let mut first_at = None;
                    let outcome = async {
                        let job_id = create(&http, &base, 4, None).await?;
                        read_events(&http, &base, &job_id, |_| {
                            first_at.get_or_insert_with(|| t0.elapsed());
                        })
                        .await
                    }
                    .await;
                    if t0 < from {
                        continue;
                    }
                    match outcome {
                        Ok(seen) if seen.last().is_some_and(|e| e.kind == "finished") => {
                            step.ok += 1;
                            events += seen.len() as u64;
                            report::record(&mut step.latency, t0.elapsed());
                            report::record(&mut first, first_at.unwrap_or_default());
                        }
                        _ => step.errors += 1,
                    }
                }
                (step, first, events)
            });
        }
        let (mut total, mut first, mut events) = (Step::new(), report::histogram(), 0u64);
        while let Some(joined) = tasks.join_next().await {
            let (step, f, e) = joined.expect("load task panicked");
            total.merge(&step);
            first.add(&f).expect("same bounds");
            events += e;
        }
        total.elapsed = from.elapsed();
        let q = |h: &hdrhistogram::Histogram<u64>, p: f64| report::fmt_d(report::quantile(h, p));
        let t = &total.latency;
        println!(
            "| {conc} | {} | {} | {:.0} | {:.0} | {} / {} | {} / {} / {} / {} |",
            total.ok,
            total.errors,
            total.per_second(),
            events as f64 / total.elapsed.as_secs_f64(),
            q(&first, 0.5),
            q(&first, 0.99),
            q(t, 0.5),
            q(t, 0.95),
            q(t, 0.99),
            report::fmt_d(Duration::from_micros(t.max())),
        );
    }
    Ok(())
}

pub async fn run_sse_fanout(opts: &Opts) -> anyhow::Result<()> {
    let clients = target::STREAM_CLIENTS;
    let (latency_ms, iterations) = if opts.quick { (20, 12) } else { (30, 16) };
    report::header(&format!(
        "sse: {clients} SSE clients ({clients} HTTP/1.1 connections) of one long job (LocalEcho \
         judge {latency_ms} ms/call, iterations={iterations})"
    ));
    let (server, base) = edge(opts, long_job_settings(latency_ms)).await?;
    let local = server.is_some();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let rss_before = report::rss_kib().filter(|_| local);
    let overflows_before = report::listen_overflows();
    let peak = Arc::new(AtomicU64::new(rss_before.unwrap_or(0)));
    let started = Instant::now();
    let job_id = create(&http, &base, iterations, Some(1000)).await?;
    let subscribed = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (http, base, job_id, subscribed) = (
            http.clone(),
            base.clone(),
            job_id.clone(),
            subscribed.clone(),
        );
        tasks.spawn(async move {
            let since = epoch_s(SystemTime::now());
            let mut first = true;
            let seen = read_events(&http, &base, &job_id, |_| {
                if std::mem::take(&mut first) {
                    subscribed.fetch_add(1, Ordering::SeqCst);
                }
            })
            .await;
            (since, seen)
        });
    }
    let sampler = {
        let (peak, subscribed) = (peak.clone(), subscribed.clone());
        tokio::spawn(async move {
            // Until every client is done or 60 s passed.
            let end = Instant::now() + Duration::from_secs(60);
            while Instant::now() < end && subscribed.load(Ordering::SeqCst) != usize::MAX {
                if let Some(rss) = report::rss_kib() {
                    peak.fetch_max(rss, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let wait = Instant::now();
    while subscribed.load(Ordering::SeqCst) < clients && wait.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_subscribed = started.elapsed();
    let mut results = Vec::with_capacity(clients);
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.expect("client panicked"));
    }
    let done = started.elapsed();
    subscribed.store(usize::MAX, Ordering::SeqCst);
    let _ = sampler.await;

    let last = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .filter_map(|seen| seen.last().map(|e| e.id))
        .max()
        .unwrap_or(0);
    let expected: Vec<u64> = (1..=last).collect();
    let mut lag = report::histogram();
    let (mut complete, mut failed, mut replayed) = (0, 0, 0);
    for (since, result) in &results {
        let Ok(seen) = result else {
            failed += 1;
            continue;
        };
        let ids: Vec<u64> = seen.iter().map(|e| e.id).collect();
        if ids == expected && seen.last().is_some_and(|e| e.kind == "finished") {
            complete += 1;
        }
        for e in seen {
            if e.ts >= *since {
                let lag_s = (epoch_s(e.received) - e.ts).max(0.0);
                report::record(&mut lag, Duration::from_secs_f64(lag_s));
            } else {
                replayed += 1;
            }
        }
    }
    drop(results);
    let q = |p: f64| report::quantile(&lag, p);
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| events in the job | {last} |");
    println!(
        "| clients with every id 1..=last, in order, ending `finished` | {complete} / {clients} |"
    );
    println!("| clients that failed | {failed} |");
    println!(
        "| events live / replayed at connect | {} / {replayed} |",
        lag.len()
    );
    println!(
        "| all connected and streaming after | {} |",
        report::fmt_d(all_subscribed)
    );
    if let (Some(before), Some(after)) = (overflows_before, report::listen_overflows()) {
        println!(
            "| kernel ListenOverflows meanwhile (connects dropped, retried after 1 s) | {} |",
            after.saturating_sub(before)
        );
    }
    println!(
        "| job create → last client done | {} |",
        report::fmt_d(done)
    );
    println!(
        "| delivery lag p50 / p95 / p99 / max | {} / {} / {} / {} |",
        report::fmt_d(q(0.5)),
        report::fmt_d(q(0.95)),
        report::fmt_d(q(0.99)),
        report::fmt_d(Duration::from_micros(lag.max()))
    );
    if let Some(before) = rss_before {
        let peak = peak.load(Ordering::SeqCst);
        println!(
            "| RSS before / peak | {:.1} / {:.1} MiB |",
            before as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        println!(
            "| RSS per SSE client (connection + stream), client + server | {:.1} KiB |",
            peak.saturating_sub(before) as f64 / clients as f64
        );
    }
    println!(
        "\n- {clients} SSE clients = {} the 1,000-client target; delivery lag p99 {} = {} the \
         200 ms p99 target; {complete}/{clients} complete",
        report::fmt_ratio(clients as f64 / target::STREAM_CLIENTS as f64),
        report::fmt_d(q(0.99)),
        report::fmt_ratio(q(0.99).as_secs_f64() / target::P99.as_secs_f64()),
    );
    Ok(())
}
