//! GEPA quality per metric call on the offline world: held-out test accuracy and budget used at
//! metric-call budgets 100/300/1000, 3 seeds each, over the four `world_*` packs, for
//!
//! - `after`: this engine with its defaults (`validation_policy: subsample`);
//! - `after full`: this engine with `validation_policy: full` (the reference's policy);
//! - `before`: `gepa.legacy_budget: true`, the engine before issue 20 (an iteration starts only
//!   when 2 × minibatch + |val| fits; no reflection memory);
//! - `gepa pareto` / `gepa current_best`: the reference library (`gepa` from PyPI, its
//!   `DefaultAdapter`, same strict metric and feedback), driven by `tools/gepa_bench/run_gepa.py`.
//!
//! Every engine talks to the same fake OpenAI-compatible server (axum, in this process), which
//! answers with the offline world (`innerloop::provider::offline_world`: task model and
//! reflection operator) and counts the task-model calls = metric calls. Our engine runs in the
//! real server over REST (inline `examples` with `meta.split` train/val, `metrics:
//! ["strict_match"]`, `budget.max_rollouts`). Test accuracy: the best prompt's answers on the
//! pack's 100 `test` examples, computed locally with the same deterministic world.
//!
//! Run: `cargo bench --bench gepa_quality` (the gepa rows need
//! `python3 -m venv target/gepa-venv && target/gepa-venv/bin/pip install gepa==0.1.4 litellm`;
//! without it they are skipped). `GEPA_QUALITY_LATENCY_MS=100` adds model latency and reports
//! wall time for budget 300 only (pack `world_mixed`, seed 1). `GEPA_QUALITY_CONCURRENCY` sets
//! `EVAL_MAX_CONCURRENCY` (default: the server's), `GEPA_QUALITY_AFTER` the first row's `gepa`
//! object (JSON), `GEPA_QUALITY_ROWS=N` runs only the first N innerloop rows.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use innerloop::config::{Settings, StoreKind};
use innerloop::domain::Example;
use innerloop::optimizer::datasets;
use innerloop::provider::offline_world::{self, OfflineWorld};
use innerloop::provider::{ChatMessage, CompletionRequest};
use innerloop::server::{self, Listeners};
use serde_json::{Value, json};

const SEED_PROMPT: &str = "Answer with the item named in the input.";
const PACKS: [&str; 4] = ["world_case", "world_wrap", "world_join", "world_mixed"];
const SEEDS: [i64; 3] = [1, 2, 3];
const TOKEN: &str = "bench-token";

#[derive(Default)]
struct Counts {
    task_calls: AtomicU64,
    reflect_calls: AtomicU64,
    latency_ms: AtomicU64,
}

async fn chat(State(counts): State<Arc<Counts>>, Json(body): Json<Value>) -> Json<Value> {
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let messages: Vec<ChatMessage> = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| ChatMessage {
            role: m["role"].as_str().unwrap_or("user").to_owned().into(),
            content: match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            }
            .into(),
        })
        .collect();
    if model.contains("reflect") {
        counts.reflect_calls.fetch_add(1, Ordering::SeqCst);
    } else {
        counts.task_calls.fetch_add(1, Ordering::SeqCst);
    }
    let latency = counts.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let text = OfflineWorld::respond(&CompletionRequest {
        model: model.as_str().into(),
        messages,
        temperature: None,
        max_tokens: None,
        seed: None,
    });
    Json(json!({
        "id": "chatcmpl-offline",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    }))
}

async fn count(State(counts): State<Arc<Counts>>) -> Json<Value> {
    Json(json!({"task_calls": counts.task_calls.load(Ordering::SeqCst)}))
}

async fn fake_server(counts: Arc<Counts>) -> String {
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route("/chat/completions", axum::routing::post(chat))
        .route("/v1/__count", axum::routing::get(count))
        .with_state(counts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

struct Pack {
    train: Vec<Example>,
    val: Vec<Example>,
    test: Vec<Example>,
}

fn packs() -> Vec<Pack> {
    PACKS
        .iter()
        .map(|name| {
            let split = datasets::split(datasets::pack(name).unwrap().examples());
            Pack {
                train: split.train,
                val: split.val,
                test: split.test,
            }
        })
        .collect()
}

fn test_accuracy(prompt: &str, test: &[Example]) -> f64 {
    let right = test
        .iter()
        .filter(|e| {
            offline_world::answer(prompt, &e.input) == e.expected.clone().unwrap_or_default()
        })
        .count();
    right as f64 / test.len() as f64
}

/// One run's outcome.
#[derive(Clone, Copy, Default)]
struct Outcome {
    accuracy: f64,
    calls: u64,
    wall_s: f64,
}

async fn run_ours(
    http: &reqwest::Client,
    base: &str,
    counts: &Counts,
    pack: &Pack,
    budget: u64,
    seed: i64,
    gepa: Value,
) -> Outcome {
    let examples: Vec<Value> = pack
        .train
        .iter()
        .chain(&pack.val)
        .map(|e| json!({"id": e.id, "input": e.input, "expected": e.expected, "meta": {"split": e.meta["split"]}}))
        .collect();
    let before = counts.task_calls.load(Ordering::SeqCst);
    let started = Instant::now();
    let created: Value = http
        .post(format!("{base}/optimize"))
        .bearer_auth(TOKEN)
        .json(&json!({
            "prompt": SEED_PROMPT,
            "mode": "gepa",
            "examples": examples,
            "metrics": ["strict_match"],
            "budget": {"max_rollouts": budget},
            "seed": seed,
            "target_model_id": "task-model",
            "gepa": gepa,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    let state = loop {
        let state: Value = http
            .get(format!("{base}/optimize/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ["finished", "failed", "cancelled"].contains(&state["status"].as_str().unwrap_or("")) {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let wall_s = started.elapsed().as_secs_f64();
    let prompt = state["result"]["best_prompt"]
        .as_str()
        .unwrap_or_else(|| panic!("{state}"));
    Outcome {
        accuracy: test_accuracy(prompt, &pack.test),
        calls: counts.task_calls.load(Ordering::SeqCst) - before,
        wall_s,
    }
}

fn run_reference(
    url: &str,
    jobs: &[(usize, u64, i64, &str)],
    packs: &[Pack],
) -> Option<Vec<Outcome>> {
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/gepa-venv/bin/python");
    if !python.exists() {
        eprintln!("no {} : gepa rows skipped", python.display());
        return None;
    }
    let plain = |xs: &[Example]| -> Vec<Value> {
        xs.iter()
            .map(|e| json!({"input": e.input, "expected": e.expected}))
            .collect()
    };
    let spec = json!({
        "base_url": url,
        "jobs": jobs.iter().map(|(p, budget, seed, selector)| json!({
            "seed_prompt": SEED_PROMPT,
            "train": plain(&packs[*p].train),
            "val": plain(&packs[*p].val),
            "budget": budget,
            "seed": seed,
            "selector": selector,
        })).collect::<Vec<_>>(),
    });
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/gepa_bench/run_gepa.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .env("LITELLM_LOG", "ERROR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()?
        .write_all(spec.to_string().as_bytes())
        .ok()?;
    let out = child.wait_with_output().ok()?;
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if lines.len() != jobs.len() {
        eprintln!(
            "gepa driver answered {} of {} jobs",
            lines.len(),
            jobs.len()
        );
        return None;
    }
    Some(
        jobs.iter()
            .zip(lines)
            .map(|((p, ..), l)| Outcome {
                accuracy: test_accuracy(l["best_prompt"].as_str().unwrap_or(""), &packs[*p].test),
                calls: l["task_calls"].as_u64().unwrap_or(0),
                wall_s: l["wall_s"].as_f64().unwrap_or(0.0),
            })
            .collect(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let latency: u64 = std::env::var("GEPA_QUALITY_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let budgets: Vec<u64> = if latency > 0 {
        vec![300]
    } else {
        vec![100, 300, 1000]
    };
    // Rollouts in flight per job (EVAL_MAX_CONCURRENCY); the server's default unless set.
    let concurrency: usize = std::env::var("GEPA_QUALITY_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(Settings::default().eval_max_concurrency);
    let counts = Arc::new(Counts::default());
    counts.latency_ms.store(latency, Ordering::SeqCst);
    let url = fake_server(counts.clone()).await;
    let settings = Settings {
        job_store: StoreKind::Memory,
        require_auth: true,
        api_bearer_tokens: vec![TOKEN.into()],
        rate_limit_per_min: 6_000_000,
        rate_limit_burst: 1_000_000,
        max_wall_time_s: 3600.0,
        use_model_stub: false,
        openai_base_url: Some(url.clone()),
        reflection_model_id: Some("reflect-model".into()),
        eval_max_concurrency: concurrency,
        provider_max_concurrency: concurrency.max(16),
        ..Settings::default()
    };
    let listeners = Listeners::ephemeral().await.unwrap();
    let base = format!("http://{}/v1", listeners.http.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(Arc::new(settings), listeners, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let mut packs = packs();
    let seeds: &[i64] = if latency > 0 { &SEEDS[..1] } else { &SEEDS };
    if latency > 0 {
        // Wall time at model latency: one pack (the hardest), one seed per engine.
        packs.drain(..packs.len() - 1);
    }

    // `GEPA_QUALITY_AFTER`: the `gepa` object of the first row (default `{}`: the defaults).
    let after: Value = std::env::var("GEPA_QUALITY_AFTER")
        .ok()
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_else(|| json!({}));
    let engines: [(&str, Value); 3] = [
        ("innerloop after", after),
        (
            "innerloop after, validation full",
            json!({"validation_policy": "full"}),
        ),
        ("innerloop before", json!({"legacy_budget": true})),
    ];
    // rows[engine][budget] = outcomes over packs × seeds
    let mut rows: BTreeMap<(usize, u64), Vec<Outcome>> = BTreeMap::new();
    let only_reference = std::env::var("GEPA_QUALITY_ONLY_REFERENCE").is_ok();
    // `GEPA_QUALITY_ROWS=N`: only the first N innerloop rows.
    let rows_wanted: usize = std::env::var("GEPA_QUALITY_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(engines.len());
    for (e, (_, gepa)) in engines
        .iter()
        .enumerate()
        .take(rows_wanted)
        .filter(|_| !only_reference)
    {
        for &budget in &budgets {
            for pack in &packs {
                for &seed in seeds {
                    let o = run_ours(&http, &base, &counts, pack, budget, seed, gepa.clone()).await;
                    rows.entry((e, budget)).or_default().push(o);
                }
            }
        }
    }
    let mut names: Vec<String> = engines.iter().map(|(n, _)| n.to_string()).collect();
    for selector in ["pareto", "current_best"] {
        let jobs: Vec<(usize, u64, i64, &str)> = budgets
            .iter()
            .flat_map(|b| {
                (0..packs.len()).flat_map(move |p| seeds.iter().map(move |s| (p, *b, *s, selector)))
            })
            .collect();
        let u = url.clone();
        let packs_ref = &packs;
        let outcomes = tokio::task::block_in_place(|| run_reference(&u, &jobs, packs_ref));
        let Some(outcomes) = outcomes else { break };
        let e = names.len();
        names.push(format!("gepa 0.1.4 {selector}"));
        for (job, o) in jobs.iter().zip(outcomes) {
            rows.entry((e, job.1)).or_default().push(o);
        }
    }

    println!(
        "GEPA quality on the offline world: {} pack(s) x {} seed(s) per cell, 50 val / 30 train / 100 test, model latency {latency} ms, EVAL_MAX_CONCURRENCY {concurrency}",
        packs.len(),
        seeds.len()
    );
    print!("| engine |");
    for b in &budgets {
        print!(" test acc @{b} | calls used (max) @{b} |");
    }
    if latency > 0 {
        print!(" mean wall s |");
    }
    println!();
    print!("|---|");
    for _ in &budgets {
        print!("---|---|");
    }
    if latency > 0 {
        print!("---|");
    }
    println!();
    for (e, name) in names.iter().enumerate() {
        print!("| {name} |");
        let mut wall = Vec::new();
        for b in &budgets {
            let runs = rows.get(&(e, *b)).cloned().unwrap_or_default();
            let n = runs.len().max(1) as f64;
            let acc = runs.iter().map(|o| o.accuracy).sum::<f64>() / n;
            let calls = runs.iter().map(|o| o.calls as f64).sum::<f64>() / n;
            let max = runs.iter().map(|o| o.calls).max().unwrap_or(0);
            wall.extend(runs.iter().map(|o| o.wall_s));
            print!(" {acc:.3} | {calls:.0} ({max}) |");
        }
        if latency > 0 {
            print!(
                " {:.2} |",
                wall.iter().sum::<f64>() / wall.len().max(1) as f64
            );
        }
        println!();
    }
    println!(
        "reflection calls at the fake server (all engines): {}",
        counts.reflect_calls.load(Ordering::SeqCst)
    );
    let _ = stop.send(());
    let _ = server.await;
}
