//! The GEPA engine's own overhead per iteration: everything except model latency. The task model
//! is an in-process provider that answers instantly (it follows the rule-based operator's
//! "When the input is …, answer …" lines the offline rule-based operator writes, so children that
//! fix minibatch failures are accepted and fully validated), events go to a counting sink and
//! checkpoints (top of each iteration and after each batch of calls) to the memory store through
//! a wrapper that renders each write to JSON text, as a SQL store does, and counts its bytes.
//! Prints time per iteration for a few validation-set sizes — in all, and the engine's (without
//! the time spent inside the model, which the job's single task runs inline) — checkpoint bytes
//! written per iteration, and the size of what a resume reads (base + parts). Runs with mimalloc,
//! the binary's allocator.
//!
//! Run: `cargo bench --bench gepa_overhead` (`GEPA_OVERHEAD_SIZES=300` runs only those
//! validation sizes, e.g. under `perf record`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use innerloop::config::Settings;
use innerloop::domain::{EventPayload, Example, JobResult, JobSpec, Mode};
use innerloop::error::Result;
use innerloop::optimizer::gepa::budget::Prices;
use innerloop::optimizer::gepa::metrics::Judge;
use innerloop::optimizer::gepa::{GepaOptimizer, Models};
use innerloop::optimizer::{EventSink, JobContext, Optimizer, Stopped};
use innerloop::provider::{Completion, CompletionRequest, ModelProvider, ProviderError, Usage};
use innerloop::store::{CheckpointError, CheckpointStore, MemoryStore};
use tokio_util::sync::CancellationToken;

/// The allocator the `innerloop` binary runs with (`src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Answers instantly, following rules of the form `When the input is "q", answer "a".`, and
/// counts the nanoseconds it spends doing so (the model's own time, not the engine's: its
/// substring search grows with the rules the rule-based operator writes).
struct Instant0(Arc<AtomicU64>);

#[async_trait]
impl ModelProvider for Instant0 {
    fn name(&self) -> &str {
        "instant"
    }
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        let started = Instant::now();
        let system = &request.messages[0].content;
        let input = &request.messages[1].content;
        let needle = format!("When the input is {input:?}, answer \"");
        let text = system
            .find(&needle)
            .map(|at| {
                let rest = &system[at + needle.len()..];
                rest[..rest.find('"').unwrap_or(0)].to_string()
            })
            .unwrap_or_else(|| "no idea".into());
        self.0
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(Completion {
            text,
            usage: Usage {
                prompt_tokens: 50,
                completion_tokens: 2,
            },
        })
    }
}

/// The memory store, with every checkpoint write rendered to text (as the SQL stores do) and
/// counted.
#[derive(Default)]
struct CountingStore {
    inner: MemoryStore,
    bytes: AtomicU64,
    writes: AtomicU64,
    /// Of the writes, the bases (whole checkpoints).
    bases: AtomicU64,
}

impl CountingStore {
    fn count(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl CheckpointStore for CountingStore {
    async fn put_checkpoint(
        &self,
        job_id: &str,
        checkpoint: &serde_json::Value,
    ) -> Result<(), CheckpointError> {
        self.count(checkpoint.to_string().len());
        self.bases.fetch_add(1, Ordering::Relaxed);
        self.inner.put_checkpoint(job_id, checkpoint).await
    }
    async fn put_checkpoint_text(
        &self,
        job_id: &str,
        checkpoint: String,
    ) -> Result<(), CheckpointError> {
        self.count(checkpoint.len());
        self.bases.fetch_add(1, Ordering::Relaxed);
        self.inner.put_checkpoint_text(job_id, checkpoint).await
    }
    async fn get_checkpoint(
        &self,
        job_id: &str,
    ) -> Result<Option<serde_json::Value>, CheckpointError> {
        self.inner.get_checkpoint(job_id).await
    }
    async fn append_checkpoint_part(
        &self,
        job_id: &str,
        part: &str,
    ) -> Result<(), CheckpointError> {
        self.count(part.len());
        self.inner.append_checkpoint_part(job_id, part).await
    }
    async fn checkpoint_parts(&self, job_id: &str) -> Result<Vec<String>, CheckpointError> {
        self.inner.checkpoint_parts(job_id).await
    }
}

struct CountingSink(AtomicU64);

#[async_trait]
impl EventSink for CountingSink {
    async fn emit(&self, _payload: EventPayload) -> Result<u64, Stopped> {
        Ok(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// One run's numbers.
struct Run {
    secs: f64,
    /// Time spent inside the model.
    model_secs: f64,
    iterations: u32,
    metric_calls: u64,
    pool: usize,
    checkpoint_writes: u64,
    base_writes: u64,
    checkpoint_bytes: u64,
    /// What a resume reads at the end: the base and its parts.
    resume_bytes: usize,
}

async fn run(val: usize, generations: u32) -> Run {
    let model_nanos = Arc::new(AtomicU64::new(0));
    let models = Models {
        task: Arc::new(Instant0(model_nanos.clone())),
        reflection: None,
        reflection_model: None,
        judge: Arc::new(Judge::new(None, "judge".into(), 16, 0.0)),
        prices: Arc::new(Prices::default()),
        global: Arc::new(tokio::sync::Semaphore::new(64)),
    };
    let mut spec = JobSpec::from_prompt("Answer the question.");
    spec.mode = Mode::Gepa;
    spec.examples = (0..2 * val)
        .map(|i| Example {
            id: format!("e{i}"),
            input: format!("question number {i}?"),
            expected: Some(format!("answer {i}")),
            meta: Default::default(),
        })
        .collect();
    spec.budget.max_rollouts = Some(10_000_000);
    spec.budget.max_generations = Some(generations);
    spec.gepa.use_merge = Some(false);
    let sink = Arc::new(CountingSink(AtomicU64::new(0)));
    let store = Arc::new(CountingStore::default());
    let ctx = JobContext {
        steering: Default::default(),
        job_id: "bench".into(),
        spec: Arc::new(spec),
        events: sink.clone(),
        cancel: CancellationToken::new(),
        halt: CancellationToken::new(),
        checkpoints: store.clone(),
        examples: Arc::new(MemoryStore::new()),
    };
    let config = Settings {
        max_wall_time_s: 3600.0,
        ..Settings::default()
    }
    .gepa();
    let start = Instant::now();
    let result = GepaOptimizer::new(models, config).run(ctx).await;
    let elapsed = start.elapsed().as_secs_f64();
    let Ok(JobResult::Gepa(result)) = result else {
        panic!("bench run failed: {result:?}");
    };
    Run {
        secs: elapsed,
        model_secs: model_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        iterations: result.generations,
        metric_calls: result.budget.metric_calls_used,
        pool: result.candidates.len(),
        checkpoint_writes: store.writes.load(Ordering::Relaxed),
        base_writes: store.bases.load(Ordering::Relaxed),
        checkpoint_bytes: store.bytes.load(Ordering::Relaxed),
        resume_bytes: resume_bytes(&store).await,
    }
}

/// Size of what a resume reads: the base checkpoint and its parts, as JSON.
async fn resume_bytes(store: &CountingStore) -> usize {
    let base = store
        .get_checkpoint("bench")
        .await
        .ok()
        .flatten()
        .map_or(0, |c| c.to_string().len());
    let parts: usize = store
        .checkpoint_parts("bench")
        .await
        .unwrap_or_default()
        .iter()
        .map(String::len)
        .sum();
    base + parts
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "GEPA engine overhead per iteration (instant in-process model, rule-based reflection; \
         runs end on max_generations or convergence)"
    );
    println!(
        "{:>5} {:>6} {:>10} {:>10} {:>16} {:>14} {:>6} {:>18} {:>15} {:>14}",
        "|V|",
        "iters",
        "total ms",
        "µs/iter",
        "engine µs/iter",
        "µs/metric call",
        "pool",
        "ckpt writes (base)",
        "ckpt KB/iter",
        "resume KB"
    );
    let sizes: Vec<usize> = match std::env::var("GEPA_OVERHEAD_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("GEPA_OVERHEAD_SIZES: sizes like 100,300")
            })
            .collect(),
        Err(_) => vec![10, 30, 100, 300],
    };
    for (val, generations) in sizes.into_iter().map(|val| (val, 200)) {
        let run = rt.block_on(run(val, generations));
        let iters = f64::from(run.iterations.max(1));
        println!(
            "{:>5} {:>6} {:>10.1} {:>10.1} {:>16.1} {:>14.2} {:>6} {:>18} {:>15.1} {:>14.1}",
            val,
            run.iterations,
            run.secs * 1e3,
            run.secs * 1e6 / iters,
            (run.secs - run.model_secs) * 1e6 / iters,
            run.secs * 1e6 / run.metric_calls.max(1) as f64,
            run.pool,
            format!("{} ({})", run.checkpoint_writes, run.base_writes),
            run.checkpoint_bytes as f64 / 1024.0 / iters,
            run.resume_bytes as f64 / 1024.0
        );
    }
}
