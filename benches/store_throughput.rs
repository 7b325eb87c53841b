//! Throughput of the durable store against memory, in three workloads: **flood** (N jobs at
//! once through the real `JobRuntime`, each emitting E events as fast as the runtime takes
//! them), **service** (M real default-mode jobs at once through the runtime, offline provider)
//! and **api** (the same M jobs submitted by M clients through the `Optimize` streaming RPC of
//! the real gRPC server). Every job is watched to its terminal event. Prints jobs/s, events/s
//! and the process's CPU time per event per store, and the SQLite/memory ratio, both of the best
//! rounds and as the median of the rounds' own ratios (the stores alternate within a round).
//! Run with `cargo bench --bench store_throughput` (release).
//!
//! The target (SQLite ≥ 0.6 of memory) is about jobs: it is checked on the two job workloads,
//! service and api, by the median of rounds, and the last line says whether both met it. The
//! flood is reported beside them as the worst case, without a target: its jobs do nothing but
//! emit, so its ratio is the cost of durability itself per event (render, compress, write)
//! against a store that does nothing (`docs/durability.md`).
//!
//! Knobs: `BENCH_JOBS` (flood, default 200), `BENCH_EVENTS` (per flood job, default 1000),
//! `BENCH_SERVICE_JOBS` (service and api, default 4000), `BENCH_ROUNDS` (default 5; the best
//! round of each store counts), `BENCH_WORKLOADS` and `BENCH_STORES` (comma-separated subsets
//! of `flood,service,api` and `memory,sqlite`, for profiling one). With `BENCH_POSTGRES=1`,
//! Postgres at `DATABASE_URL` is measured too, in a throw-away schema.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use innerloop::config::Settings;
use innerloop::domain::job::DefaultResult;
use innerloop::domain::{EventPayload, JobResult, JobSpec, Mode, ObjectiveScores};
use innerloop::optimizer::{JobContext, OptimizeError, Optimizer};
use innerloop::runtime::JobRuntime;
use innerloop::store::{JobStore, MemoryStore, SqlStore};

/// The service's allocator (see `src/main.rs`), so the bench measures what ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Emits `events` progress events as fast as the runtime accepts them, then finishes. Each
/// event carries a different proposal (words drawn per job and iteration), as an optimizer's
/// would: identical texts would flatter a store that compresses.
struct Burst {
    events: u32,
}

/// Words the flood's proposals are made of.
const WORDS: [&str; 64] = [
    "rewrite",
    "prompt",
    "assistant",
    "answers",
    "three",
    "short",
    "bullet",
    "points",
    "citing",
    "ticket",
    "customer",
    "plan",
    "never",
    "apologising",
    "summarise",
    "issue",
    "engineer",
    "on-call",
    "include",
    "severity",
    "steps",
    "reproduce",
    "concise",
    "avoid",
    "jargon",
    "mention",
    "account",
    "region",
    "escalate",
    "when",
    "billing",
    "refund",
    "policy",
    "quote",
    "exact",
    "error",
    "message",
    "first",
    "then",
    "suggest",
    "workaround",
    "link",
    "runbook",
    "keep",
    "under",
    "words",
    "tone",
    "neutral",
    "friendly",
    "list",
    "affected",
    "services",
    "timeline",
    "owner",
    "next",
    "update",
    "due",
    "confirm",
    "impact",
    "users",
    "latency",
    "outage",
    "status",
    "page",
];

/// A proposal of about 160 characters, different for every `(seed, iteration)`.
fn proposal(seed: u64, iteration: u32) -> String {
    let mut state = seed ^ (u64::from(iteration) << 32 | u64::from(iteration)) | 1;
    let mut text = String::with_capacity(200);
    while text.len() < 160 {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
    }
    text.push('.');
    text
}

#[async_trait]
impl Optimizer for Burst {
    async fn run(&self, ctx: JobContext) -> Result<JobResult, OptimizeError> {
        let scores = ObjectiveScores {
            brevity: Some(12),
            diversity: Some(0.4),
            coverage: Some(0.7),
            judge: Default::default(),
        };
        let seed = ctx.job_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        for iteration in 1..=self.events {
            ctx.events
                .emit(EventPayload::Progress {
                    iteration,
                    proposal: proposal(seed, iteration),
                    target_model: "openai/gpt-4o-mini".into(),
                    rubric: None,
                    scores: scores.clone(),
                })
                .await?;
        }
        Ok(JobResult::Default(DefaultResult {
            proposal: proposal(seed, 0),
            lessons: Vec::new(),
            scores,
            target_model: "openai/gpt-4o-mini".into(),
            rubric: None,
        }))
    }
}

struct Measure {
    elapsed: Duration,
    jobs: usize,
    events: usize,
    /// User + system CPU time of the whole process while the round ran.
    cpu: Duration,
}

/// User + system CPU time this process has used so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

impl Measure {
    fn jobs_per_s(&self) -> f64 {
        self.jobs as f64 / self.elapsed.as_secs_f64()
    }

    fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_us_per_event(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.events as f64
    }
}

/// What the jobs of a round do.
#[derive(Clone, Copy, PartialEq)]
enum Workload {
    /// [`Burst`]: events as fast as the runtime takes them, no work in between. The store's
    /// cost per event against a runtime doing nothing else: the worst case for a durable store.
    Flood { events: u32 },
    /// The service's own default-mode optimizer with the offline provider (`MODEL_PROVIDER`
    /// default): real jobs, each doing its work between events.
    Service,
    /// The same jobs as [`Workload::Service`], submitted the way clients do: the `Optimize`
    /// server-streaming RPC of the real gRPC server on 127.0.0.1:0, every event read by its
    /// client. What a user of the service sees.
    Api,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Flood { .. } => "flood",
            Workload::Service => "service",
            Workload::Api => "api",
        }
    }
}

async fn run_once(store: Arc<dyn JobStore>, jobs: usize, workload: Workload) -> Measure {
    let settings = Arc::new(Settings {
        max_iterations: match workload {
            Workload::Flood { .. } => 1,
            Workload::Service | Workload::Api => Settings::default().max_iterations,
        },
        max_wall_time_s: 3600.0,
        job_reaper_interval_s: 3600.0,
        // Limits out of the way: the clients all come from 127.0.0.1.
        log_level: "error".into(),
        require_auth: false,
        dev_mode: true,
        rate_limit_per_min: 60_000_000,
        rate_limit_burst: 1_000_000,
        max_concurrent_requests: 100_000,
        max_streams_per_principal: 100_000,
        // No pause between default-mode iterations: store throughput is what is measured.
        default_mode_iteration_delay_ms: 0,
        ..Settings::default()
    });
    let optimizers: HashMap<Mode, Arc<dyn Optimizer>> = match workload {
        Workload::Flood { events } => {
            let mut optimizers: HashMap<Mode, Arc<dyn Optimizer>> = HashMap::new();
            optimizers.insert(Mode::Default, Arc::new(Burst { events }));
            optimizers
        }
        Workload::Service | Workload::Api => innerloop::server::optimizers(&settings),
    };
    let runtime = JobRuntime::start(settings.runtime(), store, optimizers)
        .await
        .expect("runtime starts");
    if workload == Workload::Api {
        return run_api(settings, runtime, jobs).await;
    }

    // N clients at once, each creating its job and watching it to the end.
    let cpu = cpu_time();
    let started = Instant::now();
    let clients: Vec<_> = (0..jobs)
        .map(|i| {
            let runtime = runtime.clone();
            tokio::spawn(async move {
                let created = runtime
                    .create(
                        JobSpec::from_prompt(format!(
                            "Summarise support ticket {i} for the on-call engineer."
                        )),
                        None,
                    )
                    .await
                    .expect("job created");
                let watch = runtime.watch(&created.job_id, 0).await.expect("watch");
                let events: Vec<_> = watch.collect().await;
                assert!(
                    events
                        .last()
                        .is_some_and(|e| e.payload.type_name() == "finished"),
                    "job {i} finished"
                );
                events.len()
            })
        })
        .collect();
    let mut seen = 0;
    for client in clients {
        seen += client.await.expect("client");
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time() - cpu;
    runtime.shutdown().await;
    if let Workload::Flood { events } = workload {
        // started + E progress + finished per job, all seen by its watcher.
        assert_eq!(seen, jobs * (events as usize + 2), "every event watched");
    }
    Measure {
        elapsed,
        jobs,
        events: seen,
        cpu,
    }
}

/// [`Workload::Api`]: `jobs` clients over a few HTTP/2 connections, each calling `Optimize` and
/// reading its stream to the end.
async fn run_api(settings: Arc<Settings>, runtime: JobRuntime, jobs: usize) -> Measure {
    use innerloop::api::pb;
    use innerloop::api::pb::optimizer_service_client::OptimizerServiceClient;

    let listeners = innerloop::server::Listeners::ephemeral()
        .await
        .expect("listeners");
    let url = format!("http://{}", listeners.grpc.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(innerloop::server::run_with_runtime(
        settings,
        runtime,
        listeners,
        async move {
            let _ = stopped.await;
        },
    ));
    let mut channels = Vec::new();
    for _ in 0..API_CONNECTIONS {
        channels.push(
            tonic::transport::Channel::from_shared(url.clone())
                .expect("url")
                .connect()
                .await
                .expect("connect"),
        );
    }
    let cpu = cpu_time();
    let started = Instant::now();
    let clients: Vec<_> = (0..jobs)
        .map(|i| {
            let mut client = OptimizerServiceClient::new(channels[i % channels.len()].clone());
            tokio::spawn(async move {
                let request = pb::OptimizeRequest {
                    prompt: format!("Summarise support ticket {i} for the on-call engineer."),
                    ..Default::default()
                };
                let mut stream = client
                    .optimize(request)
                    .await
                    .expect("optimize")
                    .into_inner();
                let mut last = String::new();
                let mut seen = 0;
                while let Some(event) = stream.message().await.expect("stream") {
                    seen += 1;
                    last = event.r#type;
                }
                assert_eq!(last, "finished", "job {i} finished");
                seen
            })
        })
        .collect();
    let mut seen = 0;
    for client in clients {
        seen += client.await.expect("client");
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time() - cpu;
    let _ = stop.send(());
    server.await.expect("server").expect("server stops");
    Measure {
        elapsed,
        jobs,
        events: seen,
        cpu,
    }
}

/// SQLite/memory events/s the job workloads must keep (the target).
const TARGET: f64 = 0.6;

/// HTTP/2 connections the API clients share.
const API_CONNECTIONS: usize = 4;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn postgres_store() -> Option<(Arc<dyn JobStore>, String, String)> {
    use sqlx::Connection;
    if std::env::var("BENCH_POSTGRES").ok().as_deref() != Some("1") {
        return None;
    }
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .ok()?;
    let sep = if admin.contains('?') { '&' } else { '?' };
    let url = format!("{admin}{sep}options=-csearch_path%3D{schema}");
    let store = SqlStore::open_postgres(&url).await.ok()?;
    Some((Arc::new(store), admin, schema))
}

#[tokio::main]
async fn main() {
    let jobs: usize = env_or("BENCH_JOBS", 200);
    let events: u32 = env_or("BENCH_EVENTS", 1000);
    let service_jobs: usize = env_or("BENCH_SERVICE_JOBS", 4000);
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    let workloads = std::env::var("BENCH_WORKLOADS").unwrap_or_default();
    let postgres = postgres_store().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let only = std::env::var("BENCH_STORES").unwrap_or_default();
    // (job workload, SQLite/memory median of rounds)
    let mut verdicts: Vec<(&str, f64)> = Vec::new();
    for workload in [Workload::Flood { events }, Workload::Service, Workload::Api] {
        if !workloads.is_empty() && !workloads.split(',').any(|w| w == workload.name()) {
            continue;
        }
        match workload {
            Workload::Flood { events } => println!(
                "store_throughput [flood]: {jobs} concurrent jobs x {events} events, best of {rounds}"
            ),
            Workload::Service => println!(
                "store_throughput [service]: {service_jobs} concurrent default-mode jobs \
                 (offline provider), best of {rounds}"
            ),
            Workload::Api => println!(
                "store_throughput [api]: {service_jobs} concurrent Optimize streams over gRPC \
                 (default mode, offline provider), best of {rounds}"
            ),
        }
        let jobs = match workload {
            Workload::Flood { .. } => jobs,
            Workload::Service | Workload::Api => service_jobs,
        };
        let mut best: Vec<(&str, Measure)> = Vec::new();
        // Events/s of each store per round, for the paired (same-round) ratios.
        let mut per_round: Vec<HashMap<&str, f64>> = Vec::new();
        for round in 0..rounds {
            per_round.push(HashMap::new());
            let mut contenders: Vec<(&str, Arc<dyn JobStore>)> = vec![
                ("memory", Arc::new(MemoryStore::new())),
                (
                    "sqlite",
                    Arc::new(
                        SqlStore::open_sqlite(
                            &dir.path()
                                .join(format!("bench-{}-{round}.db", workload.name())),
                        )
                        .await
                        .expect("sqlite store"),
                    ),
                ),
            ];
            if let Some((store, _, _)) = &postgres {
                contenders.push(("postgres", store.clone()));
            }
            contenders.retain(|(name, _)| only.is_empty() || only.split(',').any(|n| n == *name));
            for (name, store) in contenders {
                let measure = run_once(store, jobs, workload).await;
                println!(
                    "  round {round} {name:>8}: {:>8.0} jobs/s {:>10.0} events/s ({:.3} s, \
                     {:.2} µs CPU/event)",
                    measure.jobs_per_s(),
                    measure.events_per_s(),
                    measure.elapsed.as_secs_f64(),
                    measure.cpu_us_per_event()
                );
                per_round[round].insert(name, measure.events_per_s());
                match best.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, b)) if b.elapsed <= measure.elapsed => {}
                    Some((_, b)) => *b = measure,
                    None => best.push((name, measure)),
                }
            }
        }
        println!("best [{}]:", workload.name());
        for (name, measure) in &best {
            println!(
                "  {name:>8}: {:>8.0} jobs/s {:>10.0} events/s ({:.2} µs CPU/event)",
                measure.jobs_per_s(),
                measure.events_per_s(),
                measure.cpu_us_per_event()
            );
        }
        let rate = |name: &str| {
            best.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, m)| m.events_per_s())
                .unwrap_or(f64::NAN)
        };
        // Rounds alternate the stores, so a round's ratio compares the two under the same
        // machine conditions; the median of those is steadier than the ratio of the bests.
        let paired = |name: &str| {
            let mut ratios: Vec<f64> = per_round
                .iter()
                .filter_map(|round| Some(round.get(name)? / round.get("memory")?))
                .collect();
            ratios.sort_by(f64::total_cmp);
            match ratios.len() {
                0 => f64::NAN,
                n if n % 2 == 1 => ratios[n / 2],
                n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
            }
        };
        let mut stores = vec!["sqlite"];
        if postgres.is_some() {
            stores.push("postgres");
        }
        for store in stores {
            let median = paired(store);
            let target = match workload {
                // The worst case: reported, no target (see the module doc).
                Workload::Flood { .. } => "no target: worst case".to_string(),
                Workload::Service | Workload::Api => {
                    if store == "sqlite" {
                        verdicts.push((workload.name(), median));
                    }
                    format!("target >= {TARGET:.2}")
                }
            };
            println!(
                "[{}] {store}/memory events/s ratio: best {:.2}, median of rounds {median:.2} \
                 ({target})",
                workload.name(),
                rate(store) / rate("memory"),
            );
        }
    }
    if !verdicts.is_empty() {
        let met = verdicts.iter().all(|(_, median)| *median >= TARGET);
        let each: Vec<String> = verdicts
            .iter()
            .map(|(name, median)| format!("{name} {median:.2}"))
            .collect();
        println!(
            "store_throughput: SQLite/memory on job workloads (median of rounds): {}: target \
             >= {TARGET:.2} {}",
            each.join(", "),
            if met { "met" } else { "NOT met" }
        );
    }
    if let Some((_, admin, schema)) = postgres {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut conn)
                .await;
        }
    }
}
