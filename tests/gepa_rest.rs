//! The GEPA-side REST routes through the real edge and core (offline models): examples CRUD,
//! eval jobs and their SSE stream, and a gepa job's typed events over SSE.

use std::sync::Arc;
use std::time::Duration;

use innerloop::config::Settings;
use innerloop::server::{self, Listeners};
use serde_json::{Value, json};

struct Edge {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start() -> Edge {
    let settings = Settings {
        job_store: innerloop::config::StoreKind::Memory,
        require_auth: false,
        dev_mode: true,
        rate_limit_per_min: 600_000,
        rate_limit_burst: 100_000,
        max_wall_time_s: 60.0,
        ..Settings::default()
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
    /// The SSE stream of a job to its end, as (event name, data) pairs.
    async fn sse(&self, path: &str) -> Vec<(String, Value)> {
        let body = tokio::time::timeout(Duration::from_secs(30), async {
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
        .await
        .expect("stream ended");
        let mut events = Vec::new();
        let mut name = String::new();
        for line in body.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                let envelope: Value = serde_json::from_str(d).unwrap();
                events.push((name.clone(), envelope["data"].clone()));
            }
        }
        events
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_crud_and_eval_jobs_over_rest_and_sse() {
    let edge = start().await;
    let upserted: Value = edge
        .http
        .post(format!("{}/examples/bulk", edge.base))
        .json(&json!([
            {"id": 1, "input": "2+2?", "expected": "4"},
            {"input": "capital of france?", "expected": "paris", "meta": {"k": "v"}}
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(upserted, json!({"upserted": 2}));
    let page: Value = edge
        .http
        .get(format!("{}/examples?limit=10&offset=0", edge.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["limit"], 10);
    assert_eq!(page["offset"], 0);
    assert_eq!(page["examples"].as_array().unwrap().len(), 2);
    assert!(
        page["examples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == "1" && e["meta"] == json!({}))
    );

    let started: Value = edge
        .http
        .post(format!("{}/eval/start", edge.base))
        .json(&json!({"name": "examples", "max_examples": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = started["job_id"].as_str().unwrap().to_string();
    let events = edge.sse(&format!("/eval/{job_id}/events")).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "started",
            "eval_started",
            "eval_case",
            "eval_case",
            "budget_progress",
            "eval_finished",
            "finished"
        ]
    );
    let eval_started = &events[1].1;
    assert_eq!(
        (
            &eval_started["name"],
            &eval_started["total"],
            &eval_started["examples"]
        ),
        (&json!("examples"), &json!(2), &json!(2))
    );
    assert!(["2+2?", "capital of france?"].contains(&eval_started["task"].as_str().unwrap()));
    assert_eq!(events[6].1["count"], 2);

    let deleted = edge
        .http
        .delete(format!("{}/examples/1", edge.base))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gepa_job_streams_its_typed_events_over_sse() {
    let edge = start().await;
    let created: Value = edge
        .http
        .post(format!("{}/optimize", edge.base))
        .json(&json!({
            "prompt": "Answer the question.",
            "mode": "gepa",
            "dataset": {"name": "toy_clf"},
            "budget": {"max_rollouts": 30},
            "gepa": {"minibatch_size": 2}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = created["job_id"].as_str().unwrap().to_string();
    let events = edge.sse(&format!("/optimize/{job_id}/events")).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "candidate_scored",
        "frontier_updated",
        "generation_started",
        "parent_selected",
        "minibatch_evaluated",
        "budget_progress",
        "finished",
    ] {
        assert!(names.contains(&expected), "no {expected} in {names:?}");
    }
    let result = &events.last().unwrap().1;
    assert_eq!(result["best_prompt"], "Answer the question.");
    assert!(result["frontier"][0]["id"].is_u64() && result["frontier"][0]["score"].is_f64());
    assert!(result["lessons"].is_array());
    assert!(result["budget"]["metric_calls_used"].as_u64().unwrap() <= 30);
    let unknown: Value = edge
        .http
        .post(format!("{}/optimize", edge.base))
        .json(&json!({"prompt": "p", "mode": "gepa", "metrics": ["vibes"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unknown["error"]["code"], "validation_error", "{unknown}");
    edge.stop().await;
}
