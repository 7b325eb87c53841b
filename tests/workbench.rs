//! The workbench API through the real edge and core (offline models): a GEPA job's candidates
//! (`GET /v1/optimize/{id}/candidates`, `WorkbenchService.ListCandidates`).

mod common;
mod fake_llm;

use std::sync::Arc;
use std::time::Duration;

use common::{Core, collect, test_settings};
use innerloop::config::Settings;
use innerloop::domain::JobResult;
use innerloop::grpc::pb;
use innerloop::server::{self, Listeners};
use innerloop::workbench::lineage;
use serde_json::{Value, json};

struct Edge {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start() -> Edge {
    let settings = Settings {
        rate_limit_per_min: 600_000,
        rate_limit_burst: 100_000,
        ..test_settings()
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
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
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
async fn candidates_of_unknown_jobs_are_404_and_of_default_jobs_422() {
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
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "validation_error");
    edge.shutdown().await;
}

/// While a job runs, the result does not exist yet: the pool must come from the event log
/// alone. Folding the finished job's events (without its result) gives the result's pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_alone_rebuilds_the_pool_the_result_reports() {
    let (url, _fake) = fake_llm::start().await;
    let settings = Settings {
        use_model_stub: false,
        openai_base_url: Some(url),
        reflection_model_id: Some(fake_llm::REFLECT_MODEL.into()),
        ..test_settings()
    };
    let core = Core::start(settings, None).await;
    let request = pb::OptimizeRequest {
        prompt: fake_llm::SEED_PROMPT.into(),
        mode: pb::Mode::Gepa as i32,
        examples: fake_llm::examples()
            .into_iter()
            .map(|e| pb::Example {
                id: e.id,
                input: e.input,
                expected: e.expected,
                meta: None,
            })
            .collect(),
        metrics: vec!["exact_match".into()],
        target_model_id: Some(fake_llm::TASK_MODEL.into()),
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
