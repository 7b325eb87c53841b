//! The GEPA engine's own overhead per iteration: everything except model latency. The task model
//! is an in-process provider that answers instantly (it follows the rule-based operator's
//! "When the input is …, answer …" lines, so every iteration's child is accepted and fully
//! validated: the engine's worst case), events go to a counting sink and checkpoints to the
//! memory store. Prints time per iteration for a few validation-set sizes and run lengths.
//!
//! Run: `cargo bench --bench gepa_overhead`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use innerloop::config::Settings;
use innerloop::domain::{EventPayload, Example, JobResult, JobSpec, Mode};
use innerloop::optimizer::gepa::budget::Prices;
use innerloop::optimizer::gepa::metrics::Judge;
use innerloop::optimizer::gepa::{GepaOptimizer, Models};
use innerloop::optimizer::{EventSink, JobContext, Optimizer, Stopped};
use innerloop::provider::{Completion, CompletionRequest, ModelProvider, ProviderError, Usage};
use innerloop::store::MemoryStore;
use tokio_util::sync::CancellationToken;

/// Answers instantly, following rules of the form `When the input is "q", answer "a".`.
struct Instant0;

#[async_trait]
impl ModelProvider for Instant0 {
    fn name(&self) -> &str {
        "instant"
    }
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
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
        Ok(Completion {
            text,
            usage: Usage {
                prompt_tokens: 50,
                completion_tokens: 2,
            },
        })
    }
}

struct CountingSink(AtomicU64);

#[async_trait]
impl EventSink for CountingSink {
    async fn emit(&self, _payload: EventPayload) -> Result<u64, Stopped> {
        Ok(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

async fn run(val: usize, generations: u32) -> (f64, u32, u64, usize) {
    let settings = Arc::new(Settings::default());
    let models = Models {
        task: Arc::new(Instant0),
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
    let ctx = JobContext {
        job_id: "bench".into(),
        spec: Arc::new(spec),
        events: sink.clone(),
        cancel: CancellationToken::new(),
        store: Arc::new(MemoryStore::new()),
        settings: Arc::new(Settings {
            max_wall_time_s: 3600.0,
            ..(*settings).clone()
        }),
    };
    let start = Instant::now();
    let result = GepaOptimizer::new(models).run(ctx).await;
    let elapsed = start.elapsed().as_secs_f64();
    let Ok(JobResult::Gepa(result)) = result else {
        panic!("bench run failed: {result:?}");
    };
    (
        elapsed,
        result.generations,
        result.budget.metric_calls_used,
        result.candidates.len(),
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("GEPA engine overhead per iteration (instant in-process model; every child accepted)");
    println!(
        "{:>5} {:>6} {:>11} {:>12} {:>14} {:>10}",
        "|V|", "iters", "total ms", "µs/iter", "µs/metric call", "pool"
    );
    for (val, generations) in [(10, 50), (30, 50), (30, 200), (100, 100)] {
        let (secs, iters, calls, pool) = rt.block_on(run(val, generations));
        let per_iter = secs * 1e6 / f64::from(iters.max(1));
        println!(
            "{:>5} {:>6} {:>11.1} {:>12.1} {:>14.2} {:>10}",
            val,
            iters,
            secs * 1e3,
            per_iter,
            secs * 1e6 / calls.max(1) as f64,
            pool
        );
    }
}
