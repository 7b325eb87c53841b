//! Harness of the contract tests: the real server (`server::run`: gRPC core, in-process edge,
//! the real optimizers, memory store) on 127.0.0.1:0 with the settings a test asks for, and a
//! reqwest client that speaks to its edge.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use innerloop::config::{Settings, StoreKind};
use innerloop::server::{self, Listeners};
use serde_json::Value;

pub const TOKEN: &str = "contract-token-1";

/// Auth on with one token, memory store, limits out of the way unless a test narrows them.
pub fn settings() -> Settings {
    Settings {
        job_store: StoreKind::Memory,
        api_bearer_tokens: vec![TOKEN.into()],
        rate_limit_per_min: 600_000,
        rate_limit_burst: 100_000,
        max_wall_time_s: 60.0,
        shutdown_grace_s: 2.0,
        sse_ping_interval_s: 30.0,
        ..Settings::default()
    }
}

/// A running server.
pub struct Server {
    pub base: String,
    pub grpc: SocketAddr,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub async fn start(settings: Settings) -> Server {
        let listeners = Listeners::ephemeral().await.expect("bind");
        let base = format!("http://{}", listeners.http.local_addr().unwrap());
        let grpc = listeners.grpc.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run(Arc::new(settings), listeners, async move {
            let _ = stopped.await;
        }));
        let server = Server {
            base,
            grpc,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        };
        for _ in 0..200 {
            if let Ok(r) = server.http.get(server.url("/v1/readyz")).send().await
                && r.status() == 200
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("server never became ready");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the bearer token.
    pub fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(TOKEN)
    }

    /// Creates a default-mode job with the token and returns its id.
    pub async fn create(&self, iterations: u32, body: Value) -> String {
        let response = self
            .authed(
                reqwest::Method::POST,
                &format!("/v1/optimize?iterations={iterations}"),
            )
            .json(&body)
            .send()
            .await
            .expect("create");
        assert_eq!(response.status(), 200, "create");
        let body: Value = response.json().await.unwrap();
        body["job_id"].as_str().unwrap().to_string()
    }

    /// GET with the token → (status, JSON body).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .authed(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The whole SSE body of `path` (read with the token until the server ends it).
    pub async fn sse_text(&self, path: &str) -> String {
        let response = self
            .authed(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "SSE {path}");
        tokio::time::timeout(Duration::from_secs(20), response.text())
            .await
            .expect("stream ended in time")
            .unwrap()
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("server");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `(event name, data JSON)` of every named event of an SSE body, in order.
pub fn events(sse: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for frame in sse.split("\n\n") {
        let mut name = None;
        let mut data = None;
        for line in frame.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                name = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str::<Value>(v).expect("data is JSON"));
            }
        }
        if let (Some(name), Some(data)) = (name, data) {
            out.push((name, data["data"].clone()));
        }
    }
    out
}
