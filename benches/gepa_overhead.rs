//! The GEPA engine's own overhead per iteration: everything except model latency. The task model
//! is an in-process provider that answers instantly (it follows the rule-based operator's
//! "When the input is …, answer …" lines the offline rule-based operator writes, so children that
//! fix minibatch failures are accepted and fully validated), events go to a counting sink and
//! checkpoints (top of each iteration and after each batch of calls) to the memory store. Prints
//! time per iteration for a few validation-set sizes, and the final checkpoint's size.
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

async fn run(val: usize, generations: u32) -> (f64, u32, u64, usize, usize) {
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
    let store = Arc::new(MemoryStore::new());
    let ctx = JobContext {
        steering: Default::default(),
        job_id: "bench".into(),
        spec: Arc::new(spec),
        events: sink.clone(),
        cancel: CancellationToken::new(),
        halt: CancellationToken::new(),
        store: store.clone(),
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
        checkpoint_bytes(&store).await,
    )
}

/// Size of the last checkpoint as JSON.
async fn checkpoint_bytes(store: &MemoryStore) -> usize {
    use innerloop::store::JobStore;
    store
        .get_checkpoint("bench")
        .await
        .ok()
        .flatten()
        .map_or(0, |c| c.to_string().len())
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
        "{:>5} {:>6} {:>11} {:>12} {:>14} {:>6} {:>10}",
        "|V|", "iters", "total ms", "µs/iter", "µs/metric call", "pool", "ckpt KB"
    );
    for (val, generations) in [(10, 200), (30, 200), (100, 200), (300, 200)] {
        let (secs, iters, calls, pool, ckpt) = rt.block_on(run(val, generations));
        let per_iter = secs * 1e6 / f64::from(iters.max(1));
        println!(
            "{:>5} {:>6} {:>11.1} {:>12.1} {:>14.2} {:>6} {:>10.1}",
            val,
            iters,
            secs * 1e3,
            per_iter,
            secs * 1e6 / calls.max(1) as f64,
            pool,
            ckpt as f64 / 1024.0
        );
    }
}
