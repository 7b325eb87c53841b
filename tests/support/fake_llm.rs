//! A fake OpenAI-compatible server for tests (axum on 127.0.0.1:0).
//!
//! - The target model (`task-model`) follows instructions found in its system prompt. Inputs
//!   look like `double: word`, `mirror: word` or `echo: word`; it answers the word, written
//!   twice when the system prompt says so for double inputs, reversed when it says to reverse
//!   mirror inputs.
//! - The reflection model (`reflect-model`) reads the reflective dataset it is shown and adds
//!   the rule each failed example's feedback reveals (expected = doubled or reversed word).
//! - Faults can be queued (429 with Retry-After, 500, a hang past the client timeout, a 200
//!   with truncated JSON), or the whole server can play dead (always 500). [`black_hole`] is a
//!   provider that accepts connections and never answers.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const TASK_MODEL: &str = "task-model";
pub const REFLECT_MODEL: &str = "reflect-model";
pub const DOUBLE_RULE: &str = "When the input starts with double, write the word twice.";
pub const MIRROR_RULE: &str = "When the input starts with mirror, reverse the word.";

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    TooMany,
    Internal,
    Hang(Duration),
    /// HTTP 200 whose JSON body is cut short.
    Truncated,
}

#[derive(Default)]
pub struct Fake {
    /// Every request received, faults included.
    pub requests: AtomicU64,
    /// Task-model requests answered successfully.
    pub task_calls: AtomicU64,
    pub reflect_calls: AtomicU64,
    pub faults: Mutex<VecDeque<Fault>>,
    pub dead: AtomicBool,
    pub latency: Mutex<Duration>,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    /// The last `Authorization` header received.
    pub last_auth: Mutex<Option<String>>,
    /// Every reflection prompt received, in order.
    pub reflection_prompts: Mutex<Vec<String>>,
}

impl Fake {
    pub fn task_calls(&self) -> u64 {
        self.task_calls.load(Ordering::SeqCst)
    }
}

pub fn answer(system: &str, input: &str) -> String {
    let (kind, word) = input.split_once(':').unwrap_or(("echo", input));
    let word = word.trim();
    match kind.trim() {
        "double" if system.contains("write the word twice") => word.repeat(2),
        "mirror" if system.contains("reverse the word") => word.chars().rev().collect(),
        _ => word.to_string(),
    }
}

fn reflect(prompt: &str) -> String {
    // The current instruction sits between the first two fences.
    let current = prompt
        .split("```")
        .nth(1)
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut rules: Vec<&str> = Vec::new();
    for record in prompt.split("# Example").skip(1) {
        let input = record
            .split("## Inputs\n")
            .nth(1)
            .and_then(|s| s.lines().next())
            .unwrap_or("");
        let expected = record
            .lines()
            .find_map(|l| l.trim().strip_prefix("Expected answer: "));
        let (Some(expected), Some((kind, word))) = (expected, input.split_once(':')) else {
            continue;
        };
        let word = word.trim();
        if kind == "double" && expected == word.repeat(2) {
            rules.push(DOUBLE_RULE);
        }
        if kind == "mirror" && expected == word.chars().rev().collect::<String>() {
            rules.push(MIRROR_RULE);
        }
    }
    let mut text = current;
    for rule in rules {
        if !text.contains(rule) {
            text.push('\n');
            text.push_str(rule);
        }
    }
    format!("Here is the improved instruction:\n```\n{text}\n```")
}

async fn chat(
    State(fake): State<Arc<Fake>>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    *fake.last_auth.lock().unwrap() = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    fake.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let response = respond(&fake, body).await;
    fake.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

async fn respond(fake: &Fake, body: Value) -> Response {
    if fake.dead.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "dead").into_response();
    }
    let fault = fake.faults.lock().unwrap().pop_front();
    match fault {
        Some(Fault::TooMany) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "0")],
                "slow down",
            )
                .into_response();
        }
        Some(Fault::Internal) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response();
        }
        Some(Fault::Hang(d)) => tokio::time::sleep(d).await,
        Some(Fault::Truncated) => {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"mess"#,
            )
                .into_response();
        }
        None => {}
    }
    let latency = *fake.latency.lock().unwrap();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let text_of = |role: &str| {
        messages
            .iter()
            .filter(|m| m["role"] == role)
            .filter_map(|m| m["content"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let content = match body["model"].as_str() {
        Some(TASK_MODEL) => {
            fake.task_calls.fetch_add(1, Ordering::SeqCst);
            answer(&text_of("system"), &text_of("user"))
        }
        Some(REFLECT_MODEL) => {
            fake.reflect_calls.fetch_add(1, Ordering::SeqCst);
            fake.reflection_prompts
                .lock()
                .unwrap()
                .push(text_of("user"));
            reflect(&text_of("user"))
        }
        _ => return (StatusCode::NOT_FOUND, "unknown model").into_response(),
    };
    Json(json!({
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    }))
    .into_response()
}

/// Starts the fake; returns its base URL (`http://127.0.0.1:PORT/v1`) and its state.
pub async fn start() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/v1"), fake)
}

/// A provider black hole: accepts connections, reads nothing, never answers. Returns its base
/// URL; the listener lives until the test's runtime ends.
pub async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}/v1")
}

/// Train and validation examples of the three kinds.
pub fn examples() -> Vec<innerloop::domain::Example> {
    let words = [
        ("train", ["apple", "river", "stone"]),
        ("val", ["cloud", "tiger", "lemon"]),
    ];
    let mut out = Vec::new();
    for (split, ws) in words {
        for w in ws {
            for (kind, expected) in [
                ("double", w.repeat(2)),
                ("mirror", w.chars().rev().collect::<String>()),
                ("echo", w.to_string()),
            ] {
                let mut meta = serde_json::Map::new();
                meta.insert("split".into(), split.into());
                out.push(innerloop::domain::Example {
                    id: format!("{split}-{kind}-{w}"),
                    input: format!("{kind}: {w}"),
                    expected: Some(expected),
                    meta,
                });
            }
        }
    }
    out
}

pub const SEED_PROMPT: &str = "Repeat the word after the colon.";
