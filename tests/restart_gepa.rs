//! GEPA runs across restarts of the real `innerloop` binary (SQLite on a temporary data
//! directory), against the fake OpenAI-compatible server of `tests/support/fake_llm.rs`:
//! - SIGTERM hands a running GEPA job over (`suspended`, not terminal); the next start resumes
//!   it (`resumed`, ids continue) and it ends with the result of an uninterrupted run;
//! - a paused job stays paused across a restart and, resumed, ends with that same result;
//! - (ignored, run by hand) ten jobs through three SIGTERMs at random moments, watched over SSE
//!   with `Last-Event-ID` reconnects.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use innerloop::api::pb;
use innerloop::api::values::struct_from_json;
use support::fake_llm::{REFLECT_MODEL, TASK_MODEL};
use support::gepa::{count, gepa_request, gepa_result, wait_until};
use support::process::{Process, serve};

/// Rollouts in flight per job (EVAL_MAX_CONCURRENCY): at most these are paid twice per
/// interruption (or one reflection call).
const IN_FLIGHT: u64 = 2;

type Server = Process;

/// Starts `innerloop serve` on `data` (SQLite), its models at the fake `llm_url`, and waits until
/// its gRPC port answers; `run` numbers its log.
async fn start(data: &Path, llm_url: &str, run: u32) -> Server {
    let in_flight = IN_FLIGHT.to_string();
    let settings = [
        ("JOB_STORE", "sqlite"),
        ("EVAL_MAX_CONCURRENCY", &in_flight),
    ];
    serve(data, &format!("server-{run}"), llm_url, &settings).await
}

/// Runs one job to its end and returns its result.
async fn run_to_end(server: &Server, seed: i64, max_rollouts: u64) -> pb::GepaResult {
    let job_id = server.create(gepa_request(seed, max_rollouts)).await;
    let sink = Arc::new(Mutex::new(Vec::new()));
    tokio::time::timeout(Duration::from_secs(120), server.record(&job_id, 0, sink))
        .await
        .expect("job ends")
        .unwrap();
    gepa_result(&server.get(&job_id).await)
}

/// A fake OpenAI-compatible server that answers as the offline world does (its task model
/// follows only the formatting rules the system prompt states; its reflection reads the
/// feedback), after `latency`, counting task and reflection calls. Its pack `world_mixed` needs
/// many accepted children, so a GEPA run there spends (most of) budget 300, unlike the
/// `fake_llm` world, where runs converge after a few dozen calls.
struct WorldFake {
    latency: Duration,
    task_calls: std::sync::atomic::AtomicU64,
    reflect_calls: std::sync::atomic::AtomicU64,
}

async fn world_chat(
    axum::extract::State(fake): axum::extract::State<Arc<WorldFake>>,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> axum::Json<serde_json::Value> {
    tokio::time::sleep(fake.latency).await;
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let messages = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| innerloop::provider::ChatMessage {
            role: m["role"].as_str().unwrap_or("user").to_owned().into(),
            content: m["content"].as_str().unwrap_or_default().into(),
        })
        .collect();
    let text =
        innerloop::provider::OfflineWorld::respond(&innerloop::provider::CompletionRequest {
            model: model.as_str().into(),
            messages,
            temperature: None,
            max_tokens: None,
            seed: None,
        });
    // Counted once answered: a call cut off by a SIGTERM is not paid.
    let counter = if model == REFLECT_MODEL {
        &fake.reflect_calls
    } else {
        &fake.task_calls
    };
    counter.fetch_add(1, Ordering::SeqCst);
    axum::Json(serde_json::json!({
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    }))
}

async fn world_fake(latency: Duration) -> (String, Arc<WorldFake>) {
    let fake = Arc::new(WorldFake {
        latency,
        task_calls: Default::default(),
        reflect_calls: Default::default(),
    });
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(world_chat))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v1"), fake)
}

/// A GEPA request on the `world_mixed` pack's train and validation examples (no test split:
/// its scoring after the search is outside the budget), `strict_match`.
fn world_request(seed: i64, max_rollouts: u64) -> pb::OptimizeRequest {
    let pack = innerloop::optimizer::datasets::pack("world_mixed").unwrap();
    let examples = pack
        .examples()
        .into_iter()
        .filter(|e| e.meta["split"] != "test")
        .map(|e| pb::Example {
            id: e.id,
            input: e.input,
            expected: e.expected,
            meta: Some(struct_from_json(&e.meta)),
        })
        .collect();
    pb::OptimizeRequest {
        prompt: "Answer with the item named in the input.".into(),
        mode: pb::Mode::Gepa as i32,
        examples,
        metrics: vec!["strict_match".into()],
        target_model_id: Some(TASK_MODEL.into()),
        seed: Some(seed),
        budget: Some(pb::Budget {
            max_rollouts: Some(max_rollouts),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn reason(event: &pb::JobEvent) -> Option<&str> {
    match &event.payload {
        Some(pb::job_event::Payload::Suspended(s)) => Some(&s.reason),
        Some(pb::job_event::Payload::Resumed(r)) => Some(&r.reason),
        Some(pb::job_event::Payload::Paused(p)) => Some(&p.reason),
        _ => None,
    }
}

fn assert_dense(events: &[pb::JobEvent]) {
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "ids are 1..n: none reused, none skipped"
    );
    let terminals = events
        .iter()
        .filter(|e| ["finished", "failed", "cancelled", "shutdown"].contains(&e.r#type.as_str()))
        .count();
    assert_eq!(terminals, 1, "exactly one terminal event");
}

/// A temporary data directory, kept (with the servers' logs) when the test fails.
struct DataDir(Option<tempfile::TempDir>);

impl DataDir {
    fn new() -> DataDir {
        DataDir(Some(
            tempfile::Builder::new()
                .prefix("innerloop-restart-gepa-")
                .tempdir()
                .unwrap(),
        ))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().map(|d| d.path()).unwrap_or(Path::new("."))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

/// The result of an uninterrupted run on a server of its own, and what the fake was paid.
async fn uninterrupted(seed: i64, max_rollouts: u64) -> (pb::GepaResult, u64) {
    let (url, fake) = support::fake_llm::start().await;
    *fake.latency.lock().unwrap() = Duration::from_millis(15);
    let data = DataDir::new();
    let server = start(data.path(), &url, 0).await;
    let result = run_to_end(&server, seed, max_rollouts).await;
    server.stop().await;
    (result, fake.task_calls())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_gepa_hands_the_job_over_and_the_restarted_run_ends_with_the_uninterrupted_result()
 {
    let (expected, paid_uninterrupted) = uninterrupted(7, 60).await;

    let (url, fake) = support::fake_llm::start().await;
    *fake.latency.lock().unwrap() = Duration::from_millis(15);
    let data = DataDir::new();
    let server = start(data.path(), &url, 1).await;
    let job_id = server.create(gepa_request(7, 60)).await;
    let received = Arc::new(Mutex::new(Vec::new()));
    let watcher = server.record(&job_id, 0, received.clone());
    wait_until("an iteration", || count(&received, "budget_progress") >= 2).await;
    server.stop().await;
    tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("the watch ends when the server stops")
        .unwrap();
    let before = received.lock().unwrap().clone();
    let last = before.last().unwrap();
    assert_eq!(last.r#type, "suspended", "handed over, not ended");
    assert_eq!(reason(last), Some("shutdown"));

    // The next start resumes it; a watcher reconnecting after its last id sees the rest.
    let server = start(data.path(), &url, 2).await;
    let rest = Arc::new(Mutex::new(Vec::new()));
    tokio::time::timeout(
        Duration::from_secs(120),
        server.record(&job_id, last.id, rest.clone()),
    )
    .await
    .expect("the resumed job ends")
    .unwrap();
    let rest = rest.lock().unwrap().clone();
    assert_eq!(
        rest[0].id,
        last.id + 1,
        "the stream continues with the next id"
    );
    assert_eq!(rest[0].r#type, "resumed");
    assert_eq!(reason(&rest[0]), Some("restart"));
    assert!(rest.iter().all(|e| e.r#type != "started"));
    assert_eq!(rest.last().unwrap().r#type, "finished");
    let whole: Vec<pb::JobEvent> = before.iter().chain(&rest).cloned().collect();
    assert_dense(&whole);
    let job = server.get(&job_id).await;
    assert_eq!(job.status(), pb::JobStatus::Finished);
    assert_eq!(gepa_result(&job), expected);
    let paid = fake.task_calls();
    assert!(
        paid <= paid_uninterrupted + IN_FLIGHT,
        "paid {paid} task calls, uninterrupted {paid_uninterrupted}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_paused_before_a_restart_stays_paused_and_resumed_ends_with_the_uninterrupted_result()
{
    let (expected, _) = uninterrupted(11, 60).await;

    let (url, fake) = support::fake_llm::start().await;
    *fake.latency.lock().unwrap() = Duration::from_millis(15);
    let data = DataDir::new();
    let server = start(data.path(), &url, 1).await;
    let job_id = server.create(gepa_request(11, 60)).await;
    let received = Arc::new(Mutex::new(Vec::new()));
    let _watcher = server.record(&job_id, 0, received.clone());
    wait_until("an iteration", || count(&received, "budget_progress") >= 2).await;
    let paused = server.pause(&job_id).await;
    assert_eq!(paused.status(), pb::JobStatus::Paused);
    server.stop().await;

    let server = start(data.path(), &url, 2).await;
    let job = server.get(&job_id).await;
    assert_eq!(
        job.status(),
        pb::JobStatus::Paused,
        "still paused after a restart"
    );
    let calls = fake.task_calls();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.task_calls(), calls, "a paused job calls no model");
    let watched = Arc::new(Mutex::new(Vec::new()));
    let watcher = server.record(&job_id, 0, watched.clone());
    wait_until("the replay", || count(&watched, "paused") == 1).await;
    let resumed = server.resume(&job_id).await;
    assert_eq!(resumed.status(), pb::JobStatus::Running);
    tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("the resumed job ends")
        .unwrap();
    let history = watched.lock().unwrap().clone();
    assert_dense(&history);
    let kinds: Vec<&str> = history.iter().map(|e| e.r#type.as_str()).collect();
    let paused_at = kinds.iter().position(|k| *k == "paused").unwrap();
    assert_eq!(kinds[paused_at + 1], "resumed");
    assert_eq!(reason(&history[paused_at + 1]), Some("client"));
    assert_eq!(*kinds.last().unwrap(), "finished");
    assert_eq!(gepa_result(&server.get(&job_id).await), expected);
    server.stop().await;
}

/// One SSE frame's id and event name.
struct Frame {
    id: u64,
    event: String,
}

/// Follows a job's SSE stream from `last_event_id` (sent as `Last-Event-ID`) until it ends,
/// recording frames.
async fn follow_sse(port: u16, job_id: &str, last_event_id: u64, sink: Arc<Mutex<Vec<Frame>>>) {
    let url = format!("http://127.0.0.1:{port}/v1/optimize/{job_id}/events");
    let mut request = reqwest::Client::new().get(url);
    if last_event_id > 0 {
        request = request.header("Last-Event-ID", last_event_id.to_string());
    }
    let Ok(response) = request.send().await else {
        return;
    };
    if !response.status().is_success() {
        return;
    }
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut event = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                }
            }
            if let Some(id) = id {
                sink.lock().unwrap().push(Frame { id, event });
            }
        }
    }
}

/// The must-show, by hand (slow): `cargo test --release --test restart_gepa -- --ignored
/// --nocapture`. Ten GEPA jobs (budget 300, fixed seeds) on the offline world's `world_mixed`
/// pack, served by a fake OpenAI-compatible server with 50 ms latency (the runs spend most of
/// their budget: checked);
/// the server is SIGTERMed at random moments three times and restarted; SSE watchers reconnect
/// with `Last-Event-ID`. Every job must finish with its uninterrupted result, every watcher must
/// see ids 1..n exactly once, and the fake must be paid at most the in-flight calls twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: the issue's must-show, run by hand"]
async fn ten_gepa_jobs_survive_three_sigterms_with_their_uninterrupted_results() {
    const JOBS: i64 = 10;
    const BUDGET: u64 = 300;
    let latency = Duration::from_millis(50);

    // Uninterrupted: all ten on one server.
    let (url, fake) = world_fake(latency).await;
    let data = DataDir::new();
    let server = start(data.path(), &url, 0).await;
    let started = Instant::now();
    let mut handles = Vec::new();
    let mut ids = Vec::new();
    for seed in 1..=JOBS {
        let job_id = server.create(world_request(seed, BUDGET)).await;
        let sink = Arc::new(Mutex::new(Vec::new()));
        handles.push(server.record(&job_id, 0, sink));
        ids.push(job_id);
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let mut expected = Vec::new();
    for id in &ids {
        expected.push(gepa_result(&server.get(id).await));
    }
    let uninterrupted_s = started.elapsed().as_secs_f64();
    let paid_uninterrupted = fake.task_calls.load(Ordering::SeqCst);
    let reflections_uninterrupted = fake.reflect_calls.load(Ordering::SeqCst);
    let used: Vec<u64> = expected
        .iter()
        .map(|r| r.budget.as_ref().map_or(0, |b| b.metric_calls_used))
        .collect();
    eprintln!("metric calls used per job (uninterrupted): {used:?}");
    assert!(
        used.iter().sum::<u64>() >= JOBS as u64 * BUDGET * 8 / 10,
        "the runs spend most of their budget: {used:?}"
    );
    server.stop().await;

    // Interrupted three times.
    let (url, fake) = world_fake(latency).await;
    let data = DataDir::new();
    let mut server = start(data.path(), &url, 1).await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for seed in 1..=JOBS {
        ids.push(server.create(world_request(seed, BUDGET)).await);
    }
    let frames: HashMap<String, Arc<Mutex<Vec<Frame>>>> = ids
        .iter()
        .map(|id| (id.clone(), Arc::new(Mutex::new(Vec::new()))))
        .collect();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut moments = Vec::new();
    for run in 1..=4u32 {
        let watchers: Vec<_> = ids
            .iter()
            .map(|id| {
                let sink = frames[id].clone();
                let last = sink.lock().unwrap().last().map_or(0, |f| f.id);
                let (port, id) = (server.http_port, id.clone());
                tokio::spawn(async move { follow_sse(port, &id, last, sink).await })
            })
            .collect();
        if run == 4 {
            for watcher in watchers {
                tokio::time::timeout(Duration::from_secs(600), watcher)
                    .await
                    .expect("every job finishes")
                    .unwrap();
            }
            break;
        }
        // A random moment within the uninterrupted run's length.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait =
            Duration::from_secs_f64(0.3 + (rng % 1000) as f64 / 1000.0 * uninterrupted_s * 0.4);
        moments.push(wait.as_secs_f64());
        tokio::time::sleep(wait).await;
        server.stop().await;
        for watcher in watchers {
            let _ = tokio::time::timeout(Duration::from_secs(10), watcher).await;
        }
        server = start(data.path(), &url, run + 1).await;
    }
    let interrupted_s = started.elapsed().as_secs_f64();
    let mut suspended = 0;
    for (id, want) in ids.iter().zip(&expected) {
        let job = server.get(id).await;
        assert_eq!(job.status(), pb::JobStatus::Finished, "{id}");
        let got = gepa_result(&job);
        if &got != want {
            let c = got
                .candidates
                .iter()
                .zip(&want.candidates)
                .position(|(a, b)| a != b);
            let p = got
                .proposals
                .iter()
                .zip(&want.proposals)
                .position(|(a, b)| a != b);
            eprintln!(
                "{id} differs: candidates {} vs {} (first differing {c:?}: {:?} vs {:?}); proposals {} vs {} (first differing {p:?}: {:?} vs {:?}); budget {:?} vs {:?}; generations {} vs {}; stop {} vs {}",
                got.candidates.len(),
                want.candidates.len(),
                c.map(|c| (
                    &got.candidates[c].parents,
                    got.candidates[c].score,
                    got.candidates[c].discovered_at_metric_calls,
                    got.candidates[c].validated_on
                )),
                c.map(|c| (
                    &want.candidates[c].parents,
                    want.candidates[c].score,
                    want.candidates[c].discovered_at_metric_calls,
                    want.candidates[c].validated_on
                )),
                got.proposals.len(),
                want.proposals.len(),
                p.map(|p| &got.proposals[p]),
                p.map(|p| &want.proposals[p]),
                got.budget,
                want.budget,
                got.generations,
                want.generations,
                got.stop_reason,
                want.stop_reason
            );
        }
        assert_eq!(
            &gepa_result(&job),
            want,
            "{id}: same result as uninterrupted"
        );
        let seen = frames[id].lock().unwrap();
        let seen_ids: Vec<u64> = seen.iter().map(|f| f.id).collect();
        assert_eq!(
            seen_ids,
            (1..=seen.len() as u64).collect::<Vec<_>>(),
            "{id}: the SSE watcher saw every id once, in order"
        );
        assert_eq!(seen.last().unwrap().event, "finished");
        suspended += seen.iter().filter(|f| f.event == "suspended").count();
    }
    let paid = fake.task_calls.load(Ordering::SeqCst);
    let reflections = fake.reflect_calls.load(Ordering::SeqCst);
    let bound = 3 * JOBS as u64 * IN_FLIGHT;
    eprintln!(
        "must-show: {JOBS} jobs, budget {BUDGET}, 50 ms latency; SIGTERM after {moments:?} s; \
         uninterrupted {uninterrupted_s:.1} s, interrupted {interrupted_s:.1} s; \
         {suspended} hand-overs; task calls paid {paid} vs {paid_uninterrupted} uninterrupted \
         (+{} , bound {bound}); reflection calls {reflections} vs {reflections_uninterrupted}",
        paid - paid_uninterrupted
    );
    assert!(paid <= paid_uninterrupted + bound);
    assert!(reflections <= reflections_uninterrupted + 3 * JOBS as u64);
    server.stop().await;
}
