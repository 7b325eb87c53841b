//! The workbench API through the real edge and core (offline models): a GEPA job's candidates
//! (`GET /v1/optimize/{id}/candidates`, `WorkbenchService.ListCandidates`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use innerloop::api::pb;
use innerloop::config::Settings;
use innerloop::domain::JobResult;
use innerloop::server::{self, Listeners};
use innerloop::workbench::lineage;
use serde_json::{Value, json};
use support::grpc::{Core, collect, test_settings};

struct Edge {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start() -> Edge {
    start_with(test_settings()).await
}

async fn start_with(settings: Settings) -> Edge {
    let settings = Settings {
        rate_limit_per_min: 600_000,
        rate_limit_burst: 100_000,
        ..settings
    };
    let listeners = Listeners::ephemeral().await.unwrap();
    let base = format!("http://{}/v1", listeners.http.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::run(Arc::new(settings), listeners, async move {
        let _ = stopped.await;
    }));
    Edge {
        base,
        http: reqwest::Client::new(),
        stop: Some(stop),
        task,
    }
}

impl Edge {
    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.try_post(path, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        answer
    }

    async fn try_post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Every event of a job so far (its SSE stream read to the end when it is terminal).
    async fn events(&self, job_id: &str) -> Vec<Value> {
        let body = tokio::time::timeout(Duration::from_secs(30), async {
            self.http
                .get(format!("{}/optimize/{job_id}/events", self.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
        .await
        .expect("stream ended");
        body.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    async fn wait_terminal(&self, job_id: &str) -> Value {
        for _ in 0..600 {
            let (_, job) = self.get(&format!("/optimize/{job_id}")).await;
            if job["result"].is_object() || job["status"] != "running" && job["status"] != "pending"
            {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {job_id} did not end");
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn gepa_body(prompt: &str, rollouts: u64) -> Value {
    json!({
        "prompt": prompt,
        "mode": "gepa",
        "dataset": {"name": "toy_qa"},
        "budget": {"max_rollouts": rollouts},
        "gepa": {"minibatch_size": 2},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_route_lists_the_pool_with_lineage_texts_scores_and_rejected_proposals() {
    let edge = start().await;
    let created = edge.post("/optimize", gepa_body("Answer.", 80)).await;
    let job_id = created["job_id"].as_str().unwrap();
    let job = edge.wait_terminal(job_id).await;
    assert_eq!(job["status"], "finished", "{job}");
    let (status, view) = edge.get(&format!("/optimize/{job_id}/candidates")).await;
    assert_eq!(status, 200, "{view}");
    let candidates = view["candidates"].as_array().unwrap();
    assert_eq!(candidates, job["result"]["candidates"].as_array().unwrap());
    assert_eq!(candidates[0]["origin"], "seed");
    assert_eq!(candidates[0]["components"]["system_prompt"], "Answer.");
    let columns = view["val_example_ids"].as_array().unwrap();
    assert!(!columns.is_empty());
    for c in candidates {
        let scores = c["val_scores"].as_object().unwrap();
        assert_eq!(
            scores.len(),
            columns.len(),
            "one score per validation example"
        );
        for parent in c["parents"].as_array().unwrap() {
            assert!(parent.as_u64() < c["id"].as_u64(), "parents come first");
        }
    }
    assert_eq!(view["best_id"], job["result"]["best_candidate_id"]);
    for r in view["rejected"].as_array().unwrap() {
        assert!(!r["text"].as_str().unwrap().is_empty());
        assert_eq!(
            r["child_scores"].as_array().unwrap().len(),
            r["example_ids"].as_array().unwrap().len()
        );
    }
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_of_unknown_jobs_are_404_and_of_default_jobs_409_invalid_job_state() {
    let edge = start().await;
    let (status, body) = edge
        .get("/optimize/00000000-0000-0000-0000-000000000000/candidates")
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let created = edge.post("/optimize", json!({"prompt": "p"})).await;
    let (status, body) = edge
        .get(&format!(
            "/optimize/{}/candidates",
            created["job_id"].as_str().unwrap()
        ))
        .await;
    // The job exists; its mode has no candidates: a state conflict, not a malformed request.
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "invalid_job_state");
    edge.shutdown().await;
}

/// While a job runs, the result does not exist yet: the pool must come from the event log
/// alone. Folding the finished job's events (without its result) gives the result's pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_alone_rebuilds_the_pool_the_result_reports() {
    let (url, _fake) = support::fake_llm::start().await;
    let settings = Settings {
        use_model_stub: false,
        openai_base_url: Some(url),
        reflection_model_id: Some(support::fake_llm::REFLECT_MODEL.into()),
        ..test_settings()
    };
    let core = Core::start(settings, None).await;
    let request = pb::OptimizeRequest {
        prompt: support::fake_llm::SEED_PROMPT.into(),
        mode: pb::Mode::Gepa as i32,
        examples: support::fake_llm::examples()
            .into_iter()
            .map(|e| pb::Example {
                id: e.id,
                input: e.input,
                expected: e.expected,
                meta: None,
            })
            .collect(),
        metrics: vec!["exact_match".into()],
        target_model_id: Some(support::fake_llm::TASK_MODEL.into()),
        seed: Some(7),
        budget: Some(pb::Budget {
            max_rollouts: Some(80),
            ..Default::default()
        }),
        gepa: Some(pb::GepaOptions {
            use_merge: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let events = collect(
        core.optimizer()
            .await
            .optimize(request)
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let job_id = events[0].job_id.clone();
    let record = core.runtime.get(&job_id).await.unwrap();
    let Some(JobResult::Gepa(result)) = &record.result else {
        panic!("no gepa result")
    };
    let stored = core
        .runtime
        .store()
        .events_after(&job_id, 0, 100_000)
        .await
        .unwrap();
    let folded = lineage::fold(lineage::seed_components(&record.spec), &stored, None, None);
    assert!(result.candidates.len() >= 2, "the run found children");
    assert_eq!(folded.candidates.len(), result.candidates.len());
    for (f, r) in folded.candidates.iter().zip(&result.candidates) {
        assert_eq!(
            (
                f.id,
                &f.parents,
                &f.origin,
                &f.components,
                f.score,
                &f.val_scores
            ),
            (
                r.id,
                &r.parents,
                &r.origin,
                &r.components,
                r.score,
                &r.val_scores
            )
        );
    }
    assert_eq!(folded.best_id, result.best_candidate_id);
    let mut workbench =
        pb::workbench_service_client::WorkbenchServiceClient::new(core.channel().await);
    let listed = workbench
        .list_candidates(pb::ListCandidatesRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.candidates.len(), result.candidates.len());
    core.shutdown().await;
}

fn fake_settings(url: String) -> Settings {
    Settings {
        use_model_stub: false,
        openai_base_url: Some(url),
        reflection_model_id: Some(support::fake_llm::REFLECT_MODEL.into()),
        ..test_settings()
    }
}

fn fake_job(rollouts: u64) -> Value {
    let examples: Vec<Value> = support::fake_llm::examples()
        .into_iter()
        .map(|e| json!({"id": e.id, "input": e.input, "expected": e.expected}))
        .collect();
    json!({
        "prompt": support::fake_llm::SEED_PROMPT,
        "mode": "gepa",
        "examples": examples,
        "metrics": ["exact_match"],
        "target_model": support::fake_llm::TASK_MODEL,
        "seed": 7,
        "budget": {"max_rollouts": rollouts},
        // One proposal per generation: the tests below count generations and read lineage.
        "gepa": {"minibatch_size": 1, "use_merge": false, "parallel_proposals": 1},
    })
}

const FEEDBACK: &str = "Mention that answers must be lower case.";

/// The demo: pause a run, give feedback and a hand-written candidate, resume; the next
/// reflection carries the feedback (in its event and in the prompt the model receives) and the
/// candidate joins the pool as `human`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steering_a_paused_run_reaches_its_next_reflection_and_adds_a_human_candidate() {
    let (url, fake) = support::fake_llm::start().await;
    *fake.latency.lock().unwrap() = Duration::from_millis(5);
    let edge = start_with(fake_settings(url)).await;
    let created = edge.post("/optimize", fake_job(200)).await;
    let job_id = created["job_id"].as_str().unwrap().to_string();
    let paused = edge
        .post(&format!("/optimize/{job_id}/pause"), json!({}))
        .await;
    assert_eq!(paused["status"], "paused", "{paused}");
    let reflections_before = fake.reflection_prompts.lock().unwrap().len();

    let human_text = format!(
        "{}\n{}",
        support::fake_llm::SEED_PROMPT,
        support::fake_llm::DOUBLE_RULE
    );
    let steered = edge
        .post(
            &format!("/optimize/{job_id}/steer"),
            json!({
                "feedback": FEEDBACK,
                "candidate": {"parent_id": 0, "components": {"system_prompt": human_text}},
            }),
        )
        .await;
    assert_eq!(steered["feedback_queued"], true);
    assert_eq!(steered["candidate_queued"], true);
    let (status, bad) = edge
        .try_post(
            &format!("/optimize/{job_id}/steer"),
            json!({"feedback": "x", "component": "nope"}),
        )
        .await;
    assert_eq!(status, 422, "{bad}");

    edge.post(&format!("/optimize/{job_id}/resume"), json!({}))
        .await;
    let job = edge.wait_terminal(&job_id).await;
    assert_eq!(job["status"], "finished", "{job}");

    let events = edge.events(&job_id).await;
    let resumed_at = events
        .iter()
        .position(|e| e["type"] == "resumed")
        .expect("a resumed event");
    let reflection = events[resumed_at..]
        .iter()
        .find(|e| e["type"] == "reflection_started")
        .expect("a reflection after the resume");
    assert_eq!(
        reflection["data"]["feedback"],
        json!([FEEDBACK]),
        "{reflection}"
    );
    let prompts = fake.reflection_prompts.lock().unwrap().clone();
    let after: Vec<&String> = prompts[reflections_before..].iter().collect();
    assert!(!after.is_empty());
    assert!(
        after[0].contains(FEEDBACK),
        "the model receives the feedback"
    );
    assert!(
        prompts[..reflections_before]
            .iter()
            .all(|p| !p.contains(FEEDBACK)),
        "not before it was given"
    );

    let (_, view) = edge.get(&format!("/optimize/{job_id}/candidates")).await;
    let human: Vec<&Value> = view["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["origin"] == "human")
        .collect();
    assert_eq!(human.len(), 1, "{view}");
    assert_eq!(human[0]["parents"], json!([0]));
    assert_eq!(human[0]["components"]["system_prompt"], human_text.as_str());
    assert!(
        human[0]["val_scores"].as_object().unwrap().len() >= 3,
        "validated"
    );

    let (status, body) = edge
        .try_post(
            &format!("/optimize/{job_id}/steer"),
            json!({"feedback": "late"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "invalid_job_state");
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_from_a_candidate_is_a_new_job_seeded_with_it_that_names_its_origin() {
    let (url, _fake) = support::fake_llm::start().await;
    let edge = start_with(fake_settings(url)).await;
    let parent = edge.post("/optimize", fake_job(60)).await;
    let parent_id = parent["job_id"].as_str().unwrap();
    let finished = edge.wait_terminal(parent_id).await;
    let result = &finished["result"];
    let pick = result["candidates"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let branched = edge
        .post(
            &format!("/optimize/{parent_id}/branch"),
            json!({
                "candidate_id": pick["id"],
                "budget": {"max_rollouts": 30},
                "gepa": {"minibatch_size": 2, "candidate_selector": "current_best"},
            }),
        )
        .await;
    let child_id = branched["job_id"].as_str().unwrap();
    assert_ne!(child_id, parent_id);
    let child = edge.wait_terminal(child_id).await;
    assert_eq!(child["status"], "finished", "{child}");
    let (_, view) = edge.get(&format!("/optimize/{child_id}/candidates")).await;
    assert_eq!(
        view["branched_from"],
        json!({"job_id": parent_id, "candidate_id": pick["id"]})
    );
    assert_eq!(view["candidates"][0]["origin"], "seed");
    assert_eq!(view["candidates"][0]["components"], pick["components"]);
    assert!(
        child["result"]["budget"]["metric_calls_used"]
            .as_u64()
            .unwrap()
            <= 30
    );

    let (status, body) = edge
        .try_post(
            &format!("/optimize/{parent_id}/branch"),
            json!({"candidate_id": 999}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_from_the_checkpoint_continues_the_search_with_its_pool_and_spend() {
    let (url, _fake) = support::fake_llm::start().await;
    let edge = start_with(fake_settings(url)).await;
    let parent = edge.post("/optimize", fake_job(60)).await;
    let parent_id = parent["job_id"].as_str().unwrap();
    let finished = edge.wait_terminal(parent_id).await;
    let parent_pool = finished["result"]["candidates"].as_array().unwrap().clone();
    let parent_generations = finished["result"]["generations"].as_u64().unwrap();
    assert!(parent_generations >= 2, "{finished}");

    let (status, body) = edge
        .try_post(
            &format!("/optimize/{parent_id}/branch"),
            json!({"from_checkpoint": true, "dataset": {"name": "toy_qa"}}),
        )
        .await;
    assert_eq!(status, 422, "examples cannot change: {body}");

    let branched = edge
        .post(
            &format!("/optimize/{parent_id}/branch"),
            json!({"from_checkpoint": true, "budget": {"max_rollouts": 200}}),
        )
        .await;
    let child_id = branched["job_id"].as_str().unwrap();
    let child = edge.wait_terminal(child_id).await;
    assert_eq!(child["status"], "finished", "{child}");
    let child_pool = child["result"]["candidates"].as_array().unwrap();
    // The checkpoint is the top of the parent's last iteration: its pool carries on (all but
    // a candidate found in an iteration the budget cut short).
    assert!(child_pool.len() + 1 >= parent_pool.len(), "{child_pool:?}");
    for (c, p) in child_pool
        .iter()
        .zip(&parent_pool)
        .take(parent_pool.len() - 1)
    {
        assert_eq!(c["components"], p["components"]);
    }
    let (_, view) = edge.get(&format!("/optimize/{child_id}/candidates")).await;
    assert_eq!(view["branched_from"], json!({"job_id": parent_id}));
    let events = edge.events(child_id).await;
    assert!(
        !events
            .iter()
            .any(|e| e["type"] == "candidate_scored" && e["data"]["candidate_id"] == 0),
        "the seed is not validated again: the search continued"
    );
    let first = events
        .iter()
        .find(|e| e["type"] == "generation_started")
        .expect("the branch iterates");
    assert!(
        first["data"]["generation"].as_u64().unwrap() >= parent_generations,
        "generations continue from the checkpoint: {first}"
    );
    edge.shutdown().await;
}
