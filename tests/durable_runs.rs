//! Runs that outlive their moment: results kept in durable stores past the memory TTLs and
//! until `JOB_RETENTION_S`, idempotency keys bound to their job and their request, pause and
//! resume over gRPC and REST, best-so-far results of jobs that end without finishing, request
//! and progress summaries, per-job wall time. A real core on 127.0.0.1:0 with real clients; GEPA
//! runs against the fake OpenAI-compatible server (deterministic answers).
//! (Restarts of the real binary — SIGTERM hand-over, pause across a restart — are in
//! `tests/restart.rs`.)

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use innerloop::api::pb;
use innerloop::api::status::error_from_status;
use innerloop::config::{Settings, StoreKind};
use innerloop::error::ErrorCode;
use innerloop::store::{JobStore, SqlStore};
use support::fake_llm::{REFLECT_MODEL, SEED_PROMPT, TASK_MODEL};
use support::gepa::{count, gepa_request, gepa_result, wait_until};
use support::grpc::Core;

fn settings(base_url: &str) -> Settings {
    Settings {
        use_model_stub: false,
        openai_base_url: Some(base_url.to_string()),
        reflection_model_id: Some(REFLECT_MODEL.into()),
        provider_backoff_base_ms: 5,
        provider_max_retries: 1,
        eval_max_concurrency: 2,
        ..support::grpc::test_settings()
    }
}

async fn create(core: &Core, request: pb::OptimizeRequest) -> String {
    core.optimizer()
        .await
        .create_job(request)
        .await
        .unwrap()
        .into_inner()
        .job_id
}

async fn get(core: &Core, job_id: &str) -> pb::Job {
    core.jobs()
        .await
        .get_job(pb::GetJobRequest {
            job_id: job_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Watches a job from the start, recording every event until the stream ends.
fn record(
    core: &Core,
    job_id: &str,
) -> (Arc<Mutex<Vec<pb::JobEvent>>>, tokio::task::JoinHandle<()>) {
    let sink = Arc::new(Mutex::new(Vec::new()));
    let out = sink.clone();
    let request = pb::WatchJobRequest {
        job_id: job_id.into(),
        after_event_id: 0,
    };
    let addr = core.addr;
    let handle = tokio::spawn(async move {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut jobs = pb::job_service_client::JobServiceClient::new(channel);
        let mut stream = jobs.watch_job(request).await.unwrap().into_inner();
        while let Ok(Some(event)) = stream.message().await {
            out.lock().unwrap().push(event);
        }
    });
    (sink, handle)
}

/// Runs a GEPA job to its end and returns the final job.
async fn run_to_end(core: &Core, request: pb::OptimizeRequest) -> pb::Job {
    let job_id = create(core, request).await;
    let (_, watcher) = record(core, &job_id);
    tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .expect("job ends")
        .unwrap();
    get(core, &job_id).await
}

#[tokio::test]
async fn the_same_idempotency_key_with_a_different_body_is_409_idempotency_conflict() {
    let core = Core::start(
        support::grpc::test_settings(),
        Some(support::grpc::ticker(1, 0)),
    )
    .await;
    let mut request = support::grpc::request("first prompt");
    request.idempotency_key = "key-1".into();
    let first = create(&core, request.clone()).await;
    assert_eq!(
        create(&core, request.clone()).await,
        first,
        "same body, same job"
    );

    request.prompt = "another prompt".into();
    let status = core
        .optimizer()
        .await
        .create_job(request.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    let info = error_from_status(&status);
    assert_eq!(info.code, ErrorCode::IdempotencyConflict);
    assert!(info.message.contains(&first), "{}", info.message);

    // Over REST: 409 with the uniform envelope.
    let url = format!("http://{}/v1/optimize", core.http);
    let http = reqwest::Client::new();
    let answer = http
        .post(&url)
        .header("Idempotency-Key", "key-1")
        .json(&serde_json::json!({"prompt": "a third prompt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 409);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "idempotency_conflict");
    assert_eq!(body["error"]["details"], serde_json::json!({}));
    core.shutdown().await;
}

/// A core on a SQLite file in `dir`.
async fn sqlite_core(dir: &std::path::Path, settings: Settings) -> Core {
    let store: Arc<dyn JobStore> = Arc::new(
        SqlStore::open_sqlite(&dir.join("innerloop.db"))
            .await
            .unwrap(),
    );
    let settings = Settings {
        job_store: StoreKind::Sqlite,
        ..settings
    };
    Core::start_with_store(settings, Some(support::grpc::ticker(2, 0)), store).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_stays_readable_after_its_memory_ttl_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        job_ttl_finished_s: 0.05,
        job_reaper_interval_s: 0.05,
        idempotency_ttl_s: 600.0,
        ..support::grpc::test_settings()
    };
    let core = sqlite_core(dir.path(), settings.clone()).await;
    let mut request = support::grpc::request("kept");
    request.idempotency_key = "kept-key".into();
    let job = run_to_end(&core, request.clone()).await;
    assert_eq!(job.status(), pb::JobStatus::Finished);
    // Several reaper ticks past the memory TTL.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = get(&core, &job.job_id).await;
    assert_eq!(again.status(), pb::JobStatus::Finished);
    assert!(again.result.is_some());
    let (events, watcher) = record(&core, &job.job_id);
    watcher.await.unwrap();
    let types: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.r#type.clone())
        .collect();
    assert_eq!(types, ["started", "mutation", "mutation", "finished"]);
    assert_eq!(
        create(&core, request.clone()).await,
        job.job_id,
        "the key still names it"
    );
    core.shutdown().await;

    let core = sqlite_core(dir.path(), settings).await;
    let after_restart = get(&core, &job.job_id).await;
    assert_eq!(after_restart.status(), pb::JobStatus::Finished);
    assert_eq!(after_restart.result, job.result);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_retention_deletes_terminal_jobs_and_their_idempotency_keys_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        job_retention_s: 0.2,
        job_reaper_interval_s: 0.05,
        idempotency_ttl_s: 600.0,
        ..support::grpc::test_settings()
    };
    let core = sqlite_core(dir.path(), settings).await;
    let mut request = support::grpc::request("short-lived");
    request.idempotency_key = "retained-key".into();
    let job = run_to_end(&core, request.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = core
            .jobs()
            .await
            .get_job(pb::GetJobRequest {
                job_id: job.job_id.clone(),
            })
            .await;
        match found {
            Err(status) if status.code() == tonic::Code::NotFound => break,
            _ => assert!(Instant::now() < deadline, "job was never deleted"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its key went with it: the same request creates a new job.
    let fresh = create(&core, request).await;
    assert_ne!(fresh, job.job_id);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_then_resume_over_grpc_continues_the_stream_and_ends_with_the_uninterrupted_result() {
    let (url, fake) = support::fake_llm::start().await;
    *fake.latency.lock().unwrap() = Duration::from_millis(10);
    let core = Core::start(settings(&url), None).await;
    let uninterrupted = gepa_result(&run_to_end(&core, gepa_request(7, 60)).await);

    let job_id = create(&core, gepa_request(7, 60)).await;
    let (events, watcher) = record(&core, &job_id);
    wait_until("a first iteration", || {
        count(&events, "budget_progress") >= 2
    })
    .await;
    let mut jobs = core.jobs().await;
    let paused = jobs
        .pause_job(pb::PauseJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.status(), pb::JobStatus::Paused);
    wait_until("the paused event", || count(&events, "paused") == 1).await;
    let seen = events.lock().unwrap().len();
    let calls = fake.task_calls();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        events.lock().unwrap().len(),
        seen,
        "a paused job emits nothing"
    );
    assert_eq!(fake.task_calls(), calls, "a paused job calls no model");
    assert!(
        !watcher.is_finished(),
        "the watcher waits through the pause"
    );
    // Pausing again answers the paused job; resuming twice is a conflict the second time.
    let again = jobs
        .pause_job(pb::PauseJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.status(), pb::JobStatus::Paused);
    let resumed = jobs
        .resume_job(pb::ResumeJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.status(), pb::JobStatus::Running);
    let twice = jobs
        .resume_job(pb::ResumeJobRequest {
            job_id: job_id.clone(),
        })
        .await;
    if let Err(status) = twice {
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(error_from_status(&status).code, ErrorCode::InvalidJobState);
    }
    tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .expect("the resumed job ends")
        .unwrap();
    let events = events.lock().unwrap().clone();
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "dense ids"
    );
    let position = |kind: &str| events.iter().position(|e| e.r#type == kind).unwrap();
    assert!(position("paused") < position("resumed"));
    assert_eq!(events.last().unwrap().r#type, "finished");
    let job = get(&core, &job_id).await;
    assert_eq!(gepa_result(&job), uninterrupted);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_over_rest_and_a_paused_job_can_be_cancelled_with_its_best_so_far() {
    let (url, fake) = support::fake_llm::start().await;
    // Slow enough that the job (two proposals per generation) is still running at the pause.
    *fake.latency.lock().unwrap() = Duration::from_millis(40);
    let core = Core::start(settings(&url), None).await;
    let job_id = create(&core, gepa_request(7, 300)).await;
    let (events, watcher) = record(&core, &job_id);
    wait_until("a first iteration", || {
        count(&events, "budget_progress") >= 2
    })
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/v1/optimize/{job_id}", core.http);
    let answer = http.post(format!("{base}/pause")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let state: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(state["status"], "paused");
    assert_eq!(state["request"]["mode"], "gepa");
    assert_eq!(state["request"]["prompt_head"], SEED_PROMPT);
    assert_eq!(state["request"]["budget"]["max_rollouts"], 300);
    assert!(state["progress"]["metric_calls_used"].as_u64().unwrap() > 0);
    assert!(state["progress"]["best_score"].is_number());

    let answer = http.post(format!("{base}/resume")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let state: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(state["status"], "running");
    let answer = http.post(format!("{base}/resume")).send().await.unwrap();
    assert_eq!(answer.status(), 409);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_job_state");

    let answer = http.post(format!("{base}/pause")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let answer = http.delete(&base).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let state: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(state["status"], "cancelled");
    let result = &state["result"];
    assert_eq!(result["error"], "cancelled");
    assert_eq!(result["stop_reason"], "cancelled");
    assert!(!result["best_prompt"].as_str().unwrap().is_empty());
    assert!(result["best_score"].is_number());
    assert!(result["budget"]["metric_calls_used"].as_u64().unwrap() > 0);
    tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(events.lock().unwrap().last().unwrap().r#type, "cancelled");
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_gepa_job_keeps_its_best_candidate_so_far() {
    let (url, fake) = support::fake_llm::start().await;
    *fake.latency.lock().unwrap() = Duration::from_millis(10);
    let core = Core::start(settings(&url), None).await;
    let job_id = create(&core, gepa_request(7, 300)).await;
    let (events, _watcher) = record(&core, &job_id);
    wait_until("two iterations", || count(&events, "budget_progress") >= 3).await;
    let job = core
        .jobs()
        .await
        .cancel_job(pb::CancelJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status(), pb::JobStatus::Cancelled);
    let result = gepa_result(&job);
    assert_eq!(result.error.as_deref(), Some("cancelled"));
    assert!(result.generations >= 1, "{result:?}");
    assert_eq!(result.candidates.first().map(|c| c.id), Some(0));
    assert!(result.budget.unwrap().metric_calls_used >= 9);
    // The summary agrees with the result.
    let progress = job.progress.unwrap();
    assert_eq!(progress.best_score, Some(result.best_score));
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_failure_keeps_the_best_candidate_so_far_in_the_failed_result() {
    let (url, fake) = support::fake_llm::start().await;
    *fake.latency.lock().unwrap() = Duration::from_millis(10);
    let core = Core::start(settings(&url), None).await;
    let job_id = create(&core, gepa_request(7, 300)).await;
    let (events, watcher) = record(&core, &job_id);
    wait_until("an iteration", || count(&events, "budget_progress") >= 2).await;
    fake.dead.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .unwrap()
        .unwrap();
    let job = get(&core, &job_id).await;
    assert_eq!(job.status(), pb::JobStatus::Failed);
    let result = gepa_result(&job);
    assert_eq!(result.error.as_deref(), Some("provider_error"));
    assert!(!result.best_prompt.is_empty());
    core.shutdown().await;
}

#[tokio::test]
async fn pausing_a_default_mode_job_is_409_invalid_job_state() {
    let core = Core::start(
        support::grpc::test_settings(),
        Some(support::grpc::ticker(1000, 20)),
    )
    .await;
    let job_id = create(&core, support::grpc::request("not resumable")).await;
    let status = core
        .jobs()
        .await
        .pause_job(pb::PauseJobRequest { job_id })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(error_from_status(&status).code, ErrorCode::InvalidJobState);
    core.shutdown().await;
}

#[tokio::test]
async fn a_wall_time_above_the_server_maximum_and_a_max_cost_without_a_price_are_422() {
    let (url, _fake) = support::fake_llm::start().await;
    let core = Core::start(
        Settings {
            gepa_max_wall_time_s: 600.0,
            ..settings(&url)
        },
        None,
    )
    .await;
    let mut request = gepa_request(7, 60);
    request.budget.as_mut().unwrap().max_wall_time_s = Some(601.0);
    let status = core
        .optimizer()
        .await
        .create_job(request.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("600"), "{}", status.message());

    request.budget.as_mut().unwrap().max_wall_time_s = Some(600.0);
    request.budget.as_mut().unwrap().max_cost = Some(1.0);
    let status = core
        .optimizer()
        .await
        .create_job(request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains(TASK_MODEL),
        "{}",
        status.message()
    );
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gepa_job_stops_at_its_own_wall_time_with_a_result() {
    // Offline on toy_qa, with calls slow enough (100 ms) that the ten idle iterations the
    // search needs before it may stop as `converged` outlast the wall time: only the wall time
    // stops it. MAX_WALL_TIME_S (default mode's) is far shorter than the job's own wall time,
    // and does not apply to GEPA.
    let core = Core::start(
        Settings {
            max_wall_time_s: 0.2,
            local_echo_latency_ms: 100,
            eval_max_concurrency: 16,
            ..support::grpc::test_settings()
        },
        None,
    )
    .await;
    let request = pb::OptimizeRequest {
        prompt: SEED_PROMPT.into(),
        mode: pb::Mode::Gepa as i32,
        seed: Some(7),
        budget: Some(pb::Budget {
            max_rollouts: Some(1_000_000),
            max_wall_time_s: Some(2.0),
            ..Default::default()
        }),
        ..Default::default()
    };
    let started = Instant::now();
    let job = run_to_end(&core, request).await;
    assert_eq!(job.status(), pb::JobStatus::Finished, "{job:?}");
    assert_eq!(gepa_result(&job).stop_reason, "wall_time");
    // It ran until close to its wall time and no longer: no iteration starts after 80 % of
    // it, nor when one as slow as the slowest so far would not end within it.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
    core.shutdown().await;
}

#[test]
fn settings_that_would_silently_do_nothing_are_refused() {
    let no_provider = Settings {
        use_model_stub: false,
        ..Settings::default()
    };
    let err = no_provider.validate().unwrap_err().to_string();
    assert!(err.contains("USE_MODEL_STUB=false"), "{err}");
    let bad_prices = Settings {
        model_prices_json: Some(r#"{"gpt": 0.1}"#.into()),
        ..Settings::default()
    };
    let err = bad_prices.validate().unwrap_err().to_string();
    assert!(err.contains("MODEL_PRICES_JSON"), "{err}");
    let good_prices = Settings {
        model_prices_json: Some(r#"{"gpt": {"input": 0.1, "output": 0.4}}"#.into()),
        ..Settings::default()
    };
    good_prices.validate().unwrap();
}

#[test]
fn the_binary_refuses_use_model_stub_false_without_a_provider_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_innerloop"))
        .arg("serve")
        .env_clear()
        .current_dir(dir.path())
        .env("DATA_DIR", dir.path())
        .env("USE_MODEL_STUB", "false")
        .env("GRPC_PORT", "0")
        .env("PORT", "0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mentions: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("USE_MODEL_STUB=false"))
        .collect();
    assert_eq!(mentions.len(), 1, "{stderr}");
}
