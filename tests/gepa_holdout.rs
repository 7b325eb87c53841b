//! Issue 6's must-show, end to end through the real edge: pointed at an OpenAI-compatible
//! server it has never seen (the fake in `fake_llm`), with a budget of N metric calls, a gepa
//! job streams every step over SSE, spends at most N task-model calls as counted by that server,
//! and its best prompt scores strictly higher than the seed on a HELD-OUT set the job never saw
//! (scored by eval jobs through the same edge). A second job with two components makes two
//! frontier candidates share the seed as ancestor, so a merge is attempted.

mod support;

use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use innerloop::config::{Settings, StoreKind};
use innerloop::server::{self, Listeners};
use serde_json::{Value, json};
use support::fake_llm::{REFLECT_MODEL, SEED_PROMPT, TASK_MODEL};

struct Edge {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The real server (core + edge) whose models live at `model_url`.
async fn start(model_url: &str) -> Edge {
    let settings = Settings {
        job_store: StoreKind::Memory,
        require_auth: false,
        dev_mode: true,
        rate_limit_per_min: 600_000,
        rate_limit_burst: 100_000,
        max_wall_time_s: 60.0,
        use_model_stub: false,
        openai_base_url: Some(model_url.to_string()),
        reflection_model_id: Some(REFLECT_MODEL.into()),
        provider_backoff_base_ms: 5,
        eval_max_concurrency: 4,
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
    async fn post(&self, path: &str, body: Value) -> Value {
        let answer = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// A job's SSE stream, read event by event with an SSE parser, to its end.
    async fn events(&self, path: &str) -> Vec<(String, Value)> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream().eventsource();
        let mut events = Vec::new();
        let read = async {
            while let Some(event) = stream.next().await {
                let event = event.expect("well-formed SSE");
                let envelope: Value = serde_json::from_str(&event.data).unwrap();
                events.push((event.event, envelope["data"].clone()));
            }
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("the stream ended");
        events
    }

    /// The eval score of `prompt` on the stored examples, from the eval job's SSE stream.
    async fn eval_score(&self, prompt: &str) -> f64 {
        let started = self
            .post(
                "/eval/start",
                json!({
                    "name": "examples",
                    "prompt": prompt,
                    "target_model_id": TASK_MODEL,
                    "metrics": ["exact_match"],
                }),
            )
            .await;
        let job_id = started["job_id"].as_str().unwrap();
        let events = self.events(&format!("/eval/{job_id}/events")).await;
        assert_eq!(events.last().map(|e| e.0.as_str()), Some("finished"));
        let finished = events
            .iter()
            .find(|(name, _)| name == "eval_finished")
            .expect("an eval_finished event");
        assert_eq!(finished.1["count"], HELD_OUT.len() * 3, "{}", finished.1);
        finished.1["score"].as_f64().unwrap()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

/// Words of the held-out set: never sent to the gepa job.
const HELD_OUT: [&str; 3] = ["ocean", "maple", "pearl"];

/// Held-out examples of the three kinds, as the edge's example bodies.
fn held_out() -> Vec<Value> {
    HELD_OUT
        .iter()
        .flat_map(|w| {
            [
                ("double", w.repeat(2)),
                ("mirror", w.chars().rev().collect::<String>()),
                ("echo", w.to_string()),
            ]
            .map(|(kind, expected)| {
                json!({"id": format!("held-{kind}-{w}"), "input": format!("{kind}: {w}"), "expected": expected})
            })
        })
        .collect()
}

fn bodies(examples: Vec<innerloop::domain::Example>) -> Vec<Value> {
    examples
        .into_iter()
        .map(|e| json!({"id": e.id, "input": e.input, "expected": e.expected, "meta": e.meta}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gepa_over_sse_improves_the_held_out_score_within_the_servers_metric_call_count() {
    let (url, fake) = support::fake_llm::start().await;
    let edge = start(&url).await;
    let train_val = support::fake_llm::examples();
    for e in &train_val {
        assert!(
            !HELD_OUT.iter().any(|w| e.input.ends_with(w)),
            "disjoint sets"
        );
    }
    let budget = 60u64;
    let created = edge
        .post(
            "/optimize",
            json!({
                "prompt": SEED_PROMPT,
                "mode": "gepa",
                "examples": bodies(train_val),
                "metrics": ["exact_match"],
                "budget": {"max_rollouts": budget},
                "target_model_id": TASK_MODEL,
                "seed": 7,
            }),
        )
        .await;
    let job_id = created["job_id"].as_str().unwrap().to_string();
    let events = edge.events(&format!("/optimize/{job_id}/events")).await;

    // (1) Every step over SSE, ending `finished`.
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
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
        "budget_progress",
        "finished",
    ] {
        assert!(names.contains(&expected), "no {expected} in {names:?}");
    }
    assert_eq!(names.last(), Some(&"finished"));
    let minibatch = events
        .iter()
        .find(|(n, _)| n == "minibatch_evaluated")
        .unwrap();
    assert!(minibatch.1["parent_scores"].is_array(), "{}", minibatch.1);
    let result = events.last().unwrap().1.clone();
    let best = result["best_prompt"].as_str().unwrap().to_string();
    assert_ne!(best, SEED_PROMPT, "the search found a better prompt");

    // (2) The model server's own count of task-model (metric) calls is within the budget.
    let task_calls = fake.task_calls();
    assert!(task_calls > 0);
    assert!(
        task_calls <= budget,
        "{task_calls} task calls for a budget of {budget}"
    );
    assert_eq!(
        result["budget"]["metric_calls_used"].as_u64(),
        Some(task_calls),
        "the job's count agrees with the server's: {}",
        result["budget"]
    );

    // (3) On the held-out set (stored only now, so the job never saw it) the best prompt
    // scores strictly higher than the seed.
    let upserted = edge.post("/examples/bulk", Value::Array(held_out())).await;
    assert_eq!(upserted["upserted"], HELD_OUT.len() * 3);
    let seed_score = edge.eval_score(SEED_PROMPT).await;
    let best_score = edge.eval_score(&best).await;
    assert!(
        best_score > seed_score,
        "held-out: best {best_score} vs seed {seed_score} ({best:?})"
    );
    edge.stop().await;
}

/// An example body in `split`.
fn example(split: &str, id: &str, input: &str, expected: &str) -> Value {
    json!({"id": id, "input": input, "expected": expected, "meta": {"split": split}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_components_edited_apart_from_one_seed_are_merged() {
    // Minibatches of one train example each teach exactly one rule, written into one component
    // (round robin per parent). Validation rewards each rule on two cases and punishes it on
    // one, so the seed stays on the frontier after its first child and is picked again; its
    // second child edits the OTHER component with the other rule. The two children are then
    // the frontier's dominators, share the seed as ancestor and each kept a component the
    // other changed: a merge is due and eligible.
    let (url, _fake) = support::fake_llm::start().await;
    let edge = start(&url).await;
    let examples = vec![
        example("train", "t-double", "double: apple", "appleapple"),
        example("train", "t-mirror", "mirror: river", "revir"),
        example("val", "v-double-1", "double: cloud", "cloudcloud"),
        example("val", "v-double-2", "double: tiger", "tigertiger"),
        example("val", "v-mirror-1", "mirror: lemon", "nomel"),
        example("val", "v-mirror-2", "mirror: stone", "enots"),
        example("val", "v-double-plain", "double: plain", "plain"),
        example("val", "v-mirror-plain", "mirror: plain", "plain"),
    ];
    let created = edge
        .post(
            "/optimize",
            json!({
                "prompt": SEED_PROMPT,
                "mode": "gepa",
                "examples": examples,
                "metrics": ["exact_match"],
                "budget": {"max_rollouts": 60},
                "target_model_id": TASK_MODEL,
                "seed": 7,
                "gepa": {
                    "minibatch_size": 1,
                    "candidate_selector": "pareto",
                    "use_merge": true,
                    "max_merge_invocations": 3,
                    "components": {"style": "Answer with the word only."},
                    "validation_policy": "full",
                    "parallel_proposals": 1,
                },
            }),
        )
        .await;
    let job_id = created["job_id"].as_str().unwrap().to_string();
    let events = edge.events(&format!("/optimize/{job_id}/events")).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"finished"), "{names:?}");
    let merge = events
        .iter()
        .find(|(n, _)| n == "merge_attempted")
        .unwrap_or_else(|| panic!("no merge_attempted in {names:?}"));
    // Seeded, so the same run every time: the two children of the seed are merged, and the
    // child (both rules, on the validation cases where they help) is accepted.
    let data = &merge.1;
    assert_eq!(data["ancestor_id"], 0, "{data}");
    assert_eq!(data["parent_ids"], json!([1, 2]), "{data}");
    assert_eq!(data["accepted"], true, "{data}");
    assert!(data["after"].as_f64() > data["before"].as_f64(), "{data}");
    // No candidate enters the pool twice (a repeat would be free progress and never stop).
    let result = &events.last().unwrap().1;
    let texts: Vec<String> = result["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| c["components"].to_string())
        .collect();
    let distinct: std::collections::HashSet<&String> = texts.iter().collect();
    assert_eq!(
        distinct.len(),
        texts.len(),
        "duplicate candidates in the pool: {texts:?}"
    );
    edge.stop().await;
}
