//! Load generator for the innerloop gRPC core: a tonic client harness with hdrhistogram (ghz is
//! not obtainable here). Every scenario is bounded in count and time, talks to loopback only, and
//! prints p50/p95/p99/max, throughput, errors and the ratio of each number to the seed
//! checklists' targets (`report::target`), plus a same-process reference (a health check).
//!
//! ```text
//! cargo bench --bench loadgen -- [--quick] [--scenario NAME,..] [--target URL] [--http-target URL]
//! ```
//! Without `--target` each scenario starts the real server (`innerloop::server::run`) in this
//! process on `127.0.0.1:0` with a memory store. `--quick` finishes in under 30 s (23 s measured here).
//! Output is Markdown, ready for `docs/performance.md`.

mod edge;
mod fanout;
mod jobs;
mod report;
mod shutdown;
mod target;
mod unary;

use std::time::Instant;

use clap::Parser;
use innerloop::api::pb;

/// Scenario names, in the order they run (`fanout` first: its RSS delta is cleanest in a fresh
/// process, before other scenarios' freed memory can be reused).
const SCENARIOS: [&str; 7] = [
    "fanout",
    "fanout-conns",
    "sse",
    "unary",
    "jobs",
    "http",
    "shutdown",
];

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "innerloop load generator (loopback only)")]
pub struct Opts {
    /// Shorter steps; the whole run finishes in under 30 s.
    #[arg(long)]
    pub quick: bool,
    /// Scenarios to run (comma-separated or repeated): fanout, fanout-conns, sse, unary,
    /// jobs, http, shutdown.
    #[arg(long, value_delimiter = ',')]
    pub scenario: Vec<String>,
    /// An already running gRPC core, e.g. http://127.0.0.1:50051 (loopback only).
    #[arg(long)]
    pub target: Option<String>,
    /// An already running REST + SSE edge, e.g. http://127.0.0.1:8000 (loopback only), for the
    /// `http` and `sse` scenarios; without it they use the in-process server's edge.
    #[arg(long)]
    pub http_target: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A default-mode request for `iterations` rounds (and early-stop patience, when given).
pub fn optimize_request(iterations: u32, patience: Option<u32>) -> pb::OptimizeRequest {
    pb::OptimizeRequest {
        prompt: "Summarise the customer's complaint in two sentences, name the product, and \
                 propose one concrete remedy the support team can offer today."
            .into(),
        mode: pb::Mode::Default as i32,
        iterations: Some(iterations),
        early_stop_patience: patience,
        ..Default::default()
    }
}

fn check_loopback(uri: &str) -> anyhow::Result<()> {
    let host = uri
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split([':', '/']).next())
        .unwrap_or_default();
    anyhow::ensure!(
        matches!(host, "127.0.0.1" | "localhost" | "[::1]"),
        "--target must be a loopback address (127.0.0.1, localhost, [::1]), got {uri}"
    );
    Ok(())
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    for uri in opts.target.iter().chain(&opts.http_target) {
        check_loopback(uri)?;
    }
    for name in &opts.scenario {
        anyhow::ensure!(
            SCENARIOS.contains(&name.as_str()),
            "unknown scenario {name:?}; known: {}",
            SCENARIOS.join(", ")
        );
    }
    let selected = |name: &str| opts.scenario.is_empty() || opts.scenario.iter().any(|s| s == name);
    println!(
        "## loadgen{} — target {}, {} CPUs",
        if opts.quick { " --quick" } else { "" },
        opts.target
            .as_deref()
            .unwrap_or("in-process server (memory store)"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let started = Instant::now();
    if selected("fanout") {
        fanout::run(&opts, fanout::SHARED_STREAMS_PER_CONNECTION).await?;
    }
    if selected("fanout-conns") {
        fanout::run(&opts, 1).await?;
    }
    if selected("sse") {
        edge::run_sse_fanout(&opts).await?;
    }
    if selected("unary") {
        unary::run(&opts).await?;
    }
    if selected("jobs") {
        jobs::run(&opts).await?;
    }
    if selected("http") {
        edge::run_http(&opts).await?;
    }
    if selected("shutdown") {
        shutdown::run(&opts).await?;
    }
    println!("\n(loadgen wall time {})", report::fmt_d(started.elapsed()));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("loadgen")
        .enable_all()
        .build()?;
    runtime.block_on(run(opts))
}
