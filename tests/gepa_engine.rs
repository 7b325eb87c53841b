//! GEPA end to end against a fake OpenAI-compatible server it has never seen: the validation
//! score rises well above the seed's, the server never receives more task calls than the
//! metric-call budget, faults are retried, a dead provider fails the job clearly, and a job
//! killed mid-run resumes from its checkpoint to the same result as an uninterrupted run.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use innerloop::api::pb;
use innerloop::api::values::struct_from_json;
use innerloop::config::Settings;
use innerloop::domain::gepa::GepaResult;
use innerloop::domain::{EventPayload, JobResult, JobSpec, JobStatus, Mode};
use innerloop::runtime::JobRuntime;
use innerloop::store::{CheckpointStore, EventStore, JobRows, JobStore, MemoryStore};
use support::fake_llm::{Fault, REFLECT_MODEL, SEED_PROMPT, TASK_MODEL};
use support::grpc::{Core, collect, test_settings, types};

fn settings(base_url: &str) -> Settings {
    Settings {
        use_model_stub: false,
        openai_base_url: Some(base_url.to_string()),
        reflection_model_id: Some(REFLECT_MODEL.into()),
        provider_backoff_base_ms: 5,
        eval_max_concurrency: 4,
        ..test_settings()
    }
}

fn spec(max_rollouts: u64) -> JobSpec {
    let mut spec = JobSpec::from_prompt(SEED_PROMPT);
    spec.mode = Mode::Gepa;
    spec.examples = support::fake_llm::examples();
    spec.budget.max_rollouts = Some(max_rollouts);
    spec.target_model_id = Some(TASK_MODEL.into());
    spec.metrics = vec!["exact_match".into()];
    spec.seed = Some(7);
    spec.validate(1, 4).expect("valid spec");
    spec
}

/// Runs a job on the runtime and returns its terminal event payload and all payloads.
async fn run_job(runtime: &JobRuntime, spec: JobSpec) -> (String, Vec<EventPayload>) {
    let created = runtime.create(spec, None).await.expect("create");
    let watch = runtime.watch(&created.job_id, 0).await.expect("watch");
    let events: Vec<EventPayload> = tokio::time::timeout(
        Duration::from_secs(60),
        watch.map(|e| e.payload.clone()).collect::<Vec<_>>(),
    )
    .await
    .expect("job ended in time");
    (created.job_id, events)
}

fn gepa_result(events: &[EventPayload]) -> GepaResult {
    match events.last() {
        Some(EventPayload::Finished(JobResult::Gepa(result))) => (**result).clone(),
        other => panic!("job did not finish with a gepa result: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gepa_over_grpc_raises_the_validation_score_within_the_metric_call_budget() {
    let (url, fake) = support::fake_llm::start().await;
    let core = Core::start(settings(&url), None).await;
    let examples = support::fake_llm::examples()
        .into_iter()
        .map(|e| pb::Example {
            id: e.id,
            input: e.input,
            expected: e.expected,
            meta: Some(struct_from_json(&e.meta)),
        })
        .collect();
    let budget = 60;
    let request = pb::OptimizeRequest {
        prompt: SEED_PROMPT.into(),
        mode: pb::Mode::Gepa as i32,
        examples,
        metrics: vec!["exact_match".into()],
        budget: Some(pb::Budget {
            max_rollouts: Some(budget),
            ..Default::default()
        }),
        target_model_id: Some(TASK_MODEL.into()),
        seed: Some(7),
        ..Default::default()
    };
    let mut client = core.optimizer().await;
    let events = collect(client.optimize(request).await.unwrap().into_inner()).await;
    let names: HashSet<String> = types(&events).into_iter().collect();
    for expected in [
        "started",
        "generation_started",
        "parent_selected",
        "minibatch_evaluated",
        "reflection_started",
        "reflection_finished",
        "candidate_proposed",
        "candidate_accepted",
        "candidate_scored",
        "frontier_updated",
        "selected",
        "lessons_updated",
        "budget_progress",
        "finished",
    ] {
        assert!(names.contains(expected), "no {expected} event in {names:?}");
    }
    let Some(pb::job_event::Payload::Finished(finished)) =
        events.last().and_then(|e| e.payload.clone())
    else {
        panic!("last event is not finished");
    };
    let Some(pb::job_result::Kind::Gepa(result)) = finished.result.and_then(|r| r.kind) else {
        panic!("not a gepa result");
    };
    assert!(
        (result.seed_score - 1.0 / 3.0).abs() < 1e-9,
        "seed {}",
        result.seed_score
    );
    assert!(
        result.best_score >= result.seed_score + 0.5,
        "best {} vs seed {}",
        result.best_score,
        result.seed_score
    );
    assert!(result.best_prompt.contains("twice") || result.best_prompt.contains("reverse"));
    let used = result.budget.as_ref().unwrap().metric_calls_used;
    assert!(
        fake.task_calls() <= budget,
        "server saw {} task calls",
        fake.task_calls()
    );
    assert_eq!(
        used,
        fake.task_calls(),
        "every metric call is one task call"
    );
    // Budget progress never runs past the budget either.
    for event in &events {
        if let Some(pb::job_event::Payload::BudgetProgress(b)) = &event.payload {
            assert!(b.metric_calls_used <= budget);
        }
    }
    // Lineage: every non-seed candidate names existing parents.
    for c in &result.candidates[1..] {
        assert!(!c.parents.is_empty() && c.parents.iter().all(|p| *p < c.id));
        assert_eq!(c.val_scores.len(), 9);
    }
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_budget_is_ever_exceeded_even_by_one_call() {
    for budget in [9, 16, 24, 31, 45] {
        let (url, fake) = support::fake_llm::start().await;
        let core = Core::start(settings(&url), None).await;
        let (_, events) = run_job(&core.runtime, spec(budget)).await;
        let result = gepa_result(&events);
        assert!(
            fake.task_calls() <= budget,
            "budget {budget}: server saw {} task calls",
            fake.task_calls()
        );
        assert_eq!(result.budget.metric_calls_used, fake.task_calls());
        assert_eq!(result.stop_reason, "max_metric_calls");
        core.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_429_500_and_timeouts_are_retried() {
    let (url, fake) = support::fake_llm::start().await;
    fake.faults.lock().unwrap().extend([
        Fault::TooMany,
        Fault::Internal,
        Fault::Hang(Duration::from_secs(3)),
        Fault::TooMany,
    ]);
    let core = Core::start(
        Settings {
            provider_timeout_s: 0.5,
            ..settings(&url)
        },
        None,
    )
    .await;
    let (_, events) = run_job(&core.runtime, spec(30)).await;
    let result = gepa_result(&events);
    assert!(result.best_score > result.seed_score);
    let requests = fake.requests.load(Ordering::SeqCst);
    let answered = fake.task_calls() + fake.reflect_calls.load(Ordering::SeqCst);
    assert_eq!(
        requests,
        answered + 4,
        "each fault cost exactly one retried request"
    );
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_provider_fails_the_job_clearly() {
    let (url, fake) = support::fake_llm::start().await;
    fake.dead.store(true, Ordering::SeqCst);
    let core = Core::start(
        Settings {
            provider_max_retries: 2,
            ..settings(&url)
        },
        None,
    )
    .await;
    let (job_id, events) = run_job(&core.runtime, spec(30)).await;
    match events.last() {
        Some(EventPayload::Failed { error, message }) => {
            assert_eq!(error, "provider_error");
            assert!(message.contains("HTTP 500"), "{message}");
        }
        other => panic!("expected failed, got {other:?}"),
    }
    let record = core.runtime.get(&job_id).await.unwrap();
    assert_eq!(record.status, JobStatus::Failed);
    core.shutdown().await;
}

/// After an in-process "crash" (`shutdown_background`), the event writer — a thread of its own,
/// not a task — may still commit what was queued before it, unlike in a `kill -9`: as if the
/// crash had come just after those commits. Waits until the job's log has stopped growing
/// (two equal readings 50 ms apart), so the next "process" never writes beside it.
fn settle(store: &MemoryStore, job_id: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut last = None;
        loop {
            let n = store
                .events_after(job_id, 0, usize::MAX)
                .await
                .unwrap()
                .len();
            if last == Some(n) {
                return;
            }
            last = Some(n);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// When an in-process "crash" comes.
enum CrashAt {
    /// Once a checkpoint past the first iteration exists.
    SecondIteration,
    /// After this long.
    After(Duration),
}

/// The generation of the job's latest checkpoint: the base's, or a part's appended after it
/// (incremental checkpoints).
async fn checkpointed_generation(store: &MemoryStore, job_id: &str) -> u64 {
    let base = store
        .get_checkpoint(job_id)
        .await
        .unwrap()
        .and_then(|c| c["state"]["generation"].as_u64())
        .unwrap_or(0);
    let parts = store.checkpoint_parts(job_id).await.unwrap();
    parts
        .iter()
        .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .filter_map(|p| p["state"]["generation"].as_u64())
        .fold(base, u64::max)
}

/// Runs `JobRuntime` on `store` on a runtime of its own (its own thread) — creating `Ok(spec)`
/// first, or resuming job `Err(id)` from the store — until `at`, then drops that runtime
/// abruptly: a `kill -9`, no shutdown, no hand-over. Returns the job's id.
fn run_then_crash(
    store: Arc<MemoryStore>,
    settings: Settings,
    job: Result<JobSpec, String>,
    at: CrashAt,
) -> String {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let job_id = rt.block_on(async {
            let settings = Arc::new(settings);
            let optimizers = innerloop::server::optimizers(&settings);
            let runtime = JobRuntime::start(settings.runtime(), store.clone(), optimizers)
                .await
                .unwrap();
            let job_id = match job {
                Ok(spec) => runtime.create(spec, None).await.unwrap().job_id,
                Err(job_id) => job_id,
            };
            match at {
                CrashAt::After(wait) => tokio::time::sleep(wait).await,
                CrashAt::SecondIteration => {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                    while checkpointed_generation(&store, &job_id).await < 1 {
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "no checkpoint past the first iteration"
                        );
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            job_id
        });
        rt.shutdown_background();
        settle(&store, &job_id);
        job_id
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_mid_run_resumes_to_the_same_result_as_an_uninterrupted_run() {
    let (url, fake) = support::fake_llm::start().await;
    *fake.latency.lock().unwrap() = Duration::from_millis(15);
    let settings = Settings {
        eval_max_concurrency: 2,
        ..settings(&url)
    };

    // Uninterrupted.
    let core = Core::start(settings.clone(), None).await;
    let (_, events) = run_job(&core.runtime, spec(60)).await;
    let uninterrupted = gepa_result(&events);
    core.shutdown().await;

    // Crashed after its first iteration, then restarted on the same store (another fake, to
    // count what the interrupted run paid).
    let (url2, fake2) = support::fake_llm::start().await;
    *fake2.latency.lock().unwrap() = Duration::from_millis(15);
    let settings = Settings {
        openai_base_url: Some(url2),
        ..settings
    };
    let store = Arc::new(MemoryStore::new());
    let crash_settings = settings.clone();
    let crash_store = store.clone();
    let job_id = tokio::task::spawn_blocking(move || {
        run_then_crash(
            crash_store,
            crash_settings,
            Ok(spec(60)),
            CrashAt::SecondIteration,
        )
    })
    .await
    .unwrap();
    let before = store.get_job(&job_id).await.unwrap().unwrap();
    assert!(!before.status.is_terminal(), "the crash came mid-run");
    let stored_before = store.events_after(&job_id, 0, 10_000).await.unwrap();
    let last_before = stored_before.last().map_or(0, |e| e.id);

    let shared: Arc<dyn JobStore> = store.clone();
    let core = Core::start_with_store(settings, None, shared).await;
    let watch = core.runtime.watch(&job_id, last_before).await.unwrap();
    let resumed_events: Vec<_> =
        tokio::time::timeout(Duration::from_secs(60), watch.collect::<Vec<_>>())
            .await
            .unwrap();
    assert_eq!(
        resumed_events.first().map(|e| e.id),
        Some(last_before + 1),
        "event ids continue where they stopped"
    );
    assert!(
        resumed_events
            .iter()
            .all(|e| e.payload.type_name() != "started"),
        "no second started"
    );
    let payloads: Vec<EventPayload> = resumed_events.iter().map(|e| e.payload.clone()).collect();
    let first_generation = payloads.iter().find_map(|p| match p {
        EventPayload::GenerationStarted(g) => Some(g.generation),
        _ => None,
    });
    assert!(
        first_generation.is_some_and(|g| g >= 2),
        "continued from the checkpoint, not from scratch: {first_generation:?}"
    );
    assert!(
        !payloads
            .iter()
            .any(|p| matches!(p, EventPayload::CandidateScored(c) if c.candidate_id == 0)),
        "the seed is not re-scored"
    );
    let resumed = gepa_result(&payloads);
    assert_eq!(resumed, uninterrupted);
    // Answers paid before the crash were replayed from the checkpoint, not bought again: only
    // calls in flight at the crash (at most EVAL_MAX_CONCURRENCY, or one reflection) repeat.
    assert!(
        fake2.task_calls() <= fake.task_calls() + 2,
        "interrupted run paid {} task calls, uninterrupted {}",
        fake2.task_calls(),
        fake.task_calls()
    );
    let reflections = |f: &support::fake_llm::Fake| f.reflect_calls.load(Ordering::SeqCst);
    assert!(reflections(&fake2) <= reflections(&fake) + 1);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_is_priced_from_usage_and_max_cost_stops_the_search() {
    let (url, _fake) = support::fake_llm::start().await;
    // 12 tokens per call at 1000 USD per million tokens: 0.012 USD per call.
    let prices = format!(
        r#"{{"{TASK_MODEL}": {{"input": 1000, "output": 1000}}, "{REFLECT_MODEL}": {{"input": 1000, "output": 1000}}}}"#
    );
    let core = Core::start(
        Settings {
            model_prices_json: Some(prices),
            ..settings(&url)
        },
        None,
    )
    .await;
    let mut job = spec(1000);
    job.budget.max_cost = Some(0.15);
    let (_, events) = run_job(&core.runtime, job).await;
    let result = gepa_result(&events);
    assert_eq!(result.stop_reason, "max_cost");
    let cost = result.budget.cost_usd;
    assert!((cost - 0.012 * (result.budget.tokens_used as f64 / 12.0)).abs() < 1e-9);
    // Dispatch stops once the cap is reached: at most one batch in flight past it.
    assert!((0.15..0.15 + 0.012 * 9.0).contains(&cost), "cost {cost}");
    core.shutdown().await;
}

/// A GEPA job on the offline world's `world_mixed` pack (many rules to learn: runs spend their
/// whole budget), as the chaos run's jobs are.
fn world_spec(seed: i64, max_rollouts: u64) -> JobSpec {
    let pack = innerloop::optimizer::datasets::pack("world_mixed").unwrap();
    let mut spec = JobSpec::from_prompt("Answer with the item named in the input.");
    spec.mode = Mode::Gepa;
    spec.examples = pack
        .examples()
        .into_iter()
        .filter(|e| e.meta["split"] != "test")
        .collect();
    spec.budget.max_rollouts = Some(max_rollouts);
    spec.metrics = vec!["strict_match".into()];
    spec.seed = Some(seed);
    spec.validate(1, 4).expect("valid spec");
    spec
}

/// `kill -9` at moments spread over the run (a fraction of the uninterrupted run's time), three
/// times per job: each resumed run replays the interrupted iteration from its top with the
/// budget the uninterrupted run had there, and ends with the same whole result (pool, scores,
/// budget, cost ledger).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_any_moment_resume_to_the_uninterrupted_result() {
    let settings = Settings {
        local_echo_latency_ms: 20,
        ..test_settings()
    };
    for seed in 1..=4i64 {
        let core = Core::start(settings.clone(), None).await;
        let started = std::time::Instant::now();
        let (_, events) = run_job(&core.runtime, world_spec(seed, 200)).await;
        let uninterrupted = gepa_result(&events);
        let whole = started.elapsed().as_millis() as u64;
        eprintln!("seed {seed}: uninterrupted run {whole} ms");
        core.shutdown().await;
        for crash_ms in [whole / 7, whole / 3, whole / 2, whole * 2 / 3] {
            let store = Arc::new(MemoryStore::new());
            let (s, st) = (settings.clone(), store.clone());
            let spec = world_spec(seed, 200);
            let job_id = tokio::task::spawn_blocking(move || {
                run_then_crash(
                    st,
                    s,
                    Ok(spec),
                    CrashAt::After(Duration::from_millis(crash_ms)),
                )
            })
            .await
            .unwrap();
            // Two more crashes, each mid-way through a resumed run (its replay, or later).
            for again_ms in [crash_ms / 2 + 20, crash_ms / 3 + 15] {
                let (s, st, id) = (settings.clone(), store.clone(), job_id.clone());
                tokio::task::spawn_blocking(move || {
                    run_then_crash(
                        st,
                        s,
                        Err(id),
                        CrashAt::After(Duration::from_millis(again_ms)),
                    )
                })
                .await
                .unwrap();
            }
            let shared: Arc<dyn JobStore> = store.clone();
            let minute = Duration::from_secs(60);
            let core = tokio::time::timeout(
                minute,
                Core::start_with_store(settings.clone(), None, shared),
            )
            .await
            .expect("the core starts on the crashed store");
            let watch = tokio::time::timeout(minute, core.runtime.watch(&job_id, 0))
                .await
                .expect("watch answers")
                .unwrap();
            let Ok(events) = tokio::time::timeout(
                Duration::from_secs(120),
                watch
                    .map(|e| e.payload.clone())
                    .collect::<Vec<EventPayload>>(),
            )
            .await
            else {
                let job = store.get_job(&job_id).await.unwrap();
                let log = store.events_after(&job_id, 0, 100_000).await.unwrap();
                let tail: Vec<String> = log
                    .iter()
                    .rev()
                    .take(8)
                    .map(|e| format!("{} {}", e.id, e.payload.type_name()))
                    .collect();
                panic!(
                    "seed {seed}, first crash at {crash_ms} ms: the resumed job did not end; stored {:?}, last events {tail:?}",
                    job.map(|j| j.status)
                );
            };
            let resumed = gepa_result(&events);
            tokio::time::timeout(minute, core.shutdown())
                .await
                .expect("the core shuts down");
            if resumed != uninterrupted {
                let a = serde_json::to_value(&uninterrupted).unwrap();
                let b = serde_json::to_value(&resumed).unwrap();
                let keys: Vec<_> = a
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| a[k.as_str()] != b[k.as_str()])
                    .cloned()
                    .collect();
                let show = |v: &serde_json::Value| {
                    let text = serde_json::to_string(
                        &keys.iter().map(|k| &v[k.as_str()]).collect::<Vec<_>>(),
                    )
                    .unwrap();
                    text.chars().take(1500).collect::<String>()
                };
                panic!(
                    "seed {seed}, first crash at {crash_ms} ms: the result differs in {keys:?}\nuninterrupted {}\nresumed {}",
                    show(&a),
                    show(&b)
                );
            }
        }
    }
}
