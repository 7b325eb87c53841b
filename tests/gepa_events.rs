//! GEPA-mode events keep the original's names, fields and order (issue 16, item 11), as a client
//! of the original reads them: the real server on port 0, REST create, the SSE stream read with
//! an SSE parser. Offline models (the offline world), so the run really proposes and accepts.

use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use innerloop::config::{Settings, StoreKind};
use innerloop::server::{self, Listeners};
use serde_json::{Value, json};

const TOKEN: &str = "events-token";

/// The original's events within one generation, in the original's order.
const ORDER: [&str; 7] = [
    "generation_started",
    "candidate_scored",
    "frontier_updated",
    "reflection_started",
    "lessons_updated",
    "reflection_finished",
    "budget_progress",
];

struct Server {
    base: String,
    http: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start() -> Server {
    let settings = Settings {
        job_store: StoreKind::Memory,
        require_auth: true,
        api_bearer_tokens: vec![TOKEN.into()],
        rate_limit_per_min: 600_000,
        rate_limit_burst: 100_000,
        max_wall_time_s: 60.0,
        // The task model of these jobs, and reflection (the server's default model).
        model_prices_json: Some(
            r#"{"task": {"input": 1.0, "output": 2.0}, "openai/gpt-4o-mini": {"input": 1.0, "output": 1.0}}"#.into(),
        ),
        ..Settings::default()
    };
    let listeners = Listeners::ephemeral().await.unwrap();
    let base = format!("http://{}/v1", listeners.http.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::run(Arc::new(settings), listeners, async move {
        let _ = stopped.await;
    }));
    Server {
        base,
        http: reqwest::Client::new(),
        stop,
        task,
    }
}

impl Server {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn end(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn run_job(body: Value) -> Vec<(String, Value)> {
    let server = start().await;
    let events = stream_job(&server, &body).await;
    server.end().await;
    events
}

async fn stream_job(server: &Server, body: &Value) -> Vec<(String, Value)> {
    let (base, http) = (&server.base, &server.http);
    let (_, created) = server.post("/optimize", body).await;
    let job_id = created["job_id"].as_str().expect("job id").to_string();
    let response = http
        .get(format!("{base}/optimize/{job_id}/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream().eventsource();
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("event in time")
    {
        let event = event.unwrap();
        let envelope: Value = serde_json::from_str(&event.data).unwrap();
        let terminal = ["finished", "failed", "cancelled"].contains(&event.event.as_str());
        events.push((event.event, envelope["data"].clone()));
        if terminal {
            break;
        }
    }
    events
}

fn has_int(data: &Value, key: &str) -> bool {
    data[key].is_u64()
}

fn has_number(data: &Value, key: &str) -> bool {
    data[key].is_number()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gepa_events_keep_the_originals_names_fields_and_order() {
    let events = run_job(json!({
        "prompt": "Answer with the item named in the input.",
        "mode": "gepa",
        "dataset": {"name": "world_case"},
        "metrics": ["strict_match", "llm_judge"],
        "budget": {"max_rollouts": 400},
        "seed": 2,
    }))
    .await;
    assert_eq!(events.last().unwrap().0, "finished");
    // Split the stream into generations: each starts at generation_started.
    let mut generations: Vec<Vec<&(String, Value)>> = Vec::new();
    for event in &events {
        if event.0 == "generation_started" {
            generations.push(Vec::new());
        }
        if let Some(g) = generations.last_mut()
            && event.0 != "finished"
        {
            g.push(event);
        }
    }
    assert!(generations.len() >= 3, "{} generations", generations.len());
    let mut reflected = 0;
    let mut scored = 0;
    for (n, generation) in generations.iter().enumerate() {
        let names: Vec<&str> = generation.iter().map(|(name, _)| name.as_str()).collect();
        // Within a generation the original's events never go back in the original's order.
        let ranks: Vec<usize> = names
            .iter()
            .filter_map(|name| ORDER.iter().position(|o| o == name))
            .collect();
        assert!(
            ranks.windows(2).all(|w| w[0] <= w[1]),
            "generation {}: {names:?}",
            n + 1
        );
        for every in ["frontier_updated", "lessons_updated", "budget_progress"] {
            assert!(names.contains(&every), "generation {}: no {every}", n + 1);
        }
        for (name, data) in generation.iter() {
            let gen_no = (n + 1) as u64;
            match name.as_str() {
                "generation_started" => {
                    assert_eq!(data["gen"], gen_no, "{data}");
                    assert!(has_int(data, "population_size"), "{data}");
                }
                "candidate_scored" => {
                    scored += 1;
                    assert!(has_int(data, "candidate_id"), "{data}");
                    assert!(
                        has_number(data, "score") && has_number(data, "cost"),
                        "{data}"
                    );
                    assert!(data["len"].as_u64().unwrap() > 0, "{data}");
                }
                "frontier_updated" => {
                    assert_eq!(data["gen"], gen_no, "{data}");
                    assert!(has_int(data, "size") && has_number(data, "best"), "{data}");
                }
                "lessons_updated" => {
                    let count = data["count"].as_u64().expect("count");
                    let sample = data["sample"].as_array().expect("sample");
                    assert!(sample.len() as u64 <= count.min(3), "{data}");
                }
                "reflection_started" | "reflection_finished" => {
                    reflected += 1;
                    assert_eq!(data["gen"], gen_no, "{data}");
                }
                "judge_scored" => {
                    assert!(
                        data["id"].is_string() && has_number(data, "judge_score"),
                        "{data}"
                    );
                }
                "budget_progress" => {
                    assert!(has_int(data, "rollouts"), "{data}");
                }
                _ => {}
            }
        }
    }
    assert!(
        reflected > 0 && scored > 0,
        "reflected {reflected}, scored {scored}"
    );
    assert!(events.iter().any(|(n, _)| n == "judge_scored"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimate_predicts_the_spend_of_a_request_before_it_runs() {
    let server = start().await;
    let body = json!({
        "prompt": "Answer with the item named in the input.",
        "mode": "gepa",
        "dataset": {"name": "world_case"},
        "metrics": ["strict_match"],
        "budget": {"max_rollouts": 300},
        "target_model_id": "task",
        "seed": 2,
    });
    let (status, estimate) = server.post("/optimize/estimate", &body).await;
    assert_eq!(status, 200, "{estimate}");
    assert_eq!(estimate["val_examples"], 50);
    assert_eq!(estimate["train_examples"], 30);
    let calls = estimate["metric_calls"].as_u64().unwrap();
    assert!((250..=300).contains(&calls), "{estimate}");
    assert!(
        estimate["reflection_calls"].as_u64().unwrap() >= 5,
        "{estimate}"
    );
    assert_eq!(
        estimate["tokens"].as_u64().unwrap(),
        estimate["task_tokens"].as_u64().unwrap() + estimate["reflection_tokens"].as_u64().unwrap()
    );
    assert!(estimate["cost_usd"].as_f64().unwrap() > 0.0, "{estimate}");
    // The run it predicts: same order of spend, never over the budget.
    let events = stream_job(&server, &body).await;
    let result = &events.last().unwrap().1;
    let used = result["budget"]["metric_calls_used"].as_u64().unwrap();
    assert!(
        used <= 300 && used * 2 >= calls,
        "used {used}, predicted {calls}"
    );
    // An invalid request is a validation error, as on create.
    let (status, error) = server
        .post(
            "/optimize/estimate",
            &json!({"prompt": "x", "mode": "gepa", "metrics": ["vibes"]}),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    server.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_result_and_events_carry_a_per_proposal_cost_ledger() {
    let server = start().await;
    let body = json!({
        "prompt": "Answer with the item named in the input.",
        "mode": "gepa",
        "dataset": {"name": "world_wrap"},
        "budget": {"max_rollouts": 200},
        "target_model_id": "task",
        "seed": 4,
        "gepa": {"use_merge": false},
    });
    let events = stream_job(&server, &body).await;
    let result = &events.last().unwrap().1;
    let ledger = result["proposals"].as_array().expect("ledger");
    let verdicts: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "candidate_accepted" || n == "candidate_rejected")
        .map(|(_, d)| d)
        .collect();
    assert!(!ledger.is_empty());
    assert_eq!(ledger.len(), verdicts.len());
    let mut calls = 0;
    for (entry, event) in ledger.iter().zip(&verdicts) {
        assert_eq!(entry, *event, "the ledger is the verdict events' data");
        let cost = &entry["cost"];
        calls += cost["metric_calls"].as_u64().unwrap();
        // Priced model ("task" for both roles here): every proposal paid for its minibatches
        // and its reflection; no judge in this job.
        assert!(cost["task_usd"].as_f64().unwrap() > 0.0, "{entry}");
        assert!(cost["reflection_usd"].as_f64().unwrap() > 0.0, "{entry}");
        assert_eq!(cost["judge_usd"], 0.0, "{entry}");
    }
    // Without merges, everything spent is the seed's validation, the ledger, and the parents'
    // minibatches skipped as perfect (no proposal: at most 3 calls each).
    let used = result["budget"]["metric_calls_used"].as_u64().unwrap();
    let skipped = events
        .iter()
        .filter(|(n, d)| n == "minibatch_evaluated" && d["child_scores"] == json!([]))
        .count() as u64;
    assert!(
        calls + 50 <= used && used <= calls + 50 + 3 * skipped,
        "{calls} {used} {skipped}"
    );
    server.end().await;
}
