//! Shared harness of the edge tests: a real core + edge on 127.0.0.1:0 whose jobs run a gated
//! optimizer (each iteration waits for a permit the test releases, so nothing depends on timing),
//! a probe around the in-process upstream (counts open WatchJob streams, can break them), and a
//! raw SSE reader that keeps the exact bytes.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use innerloop::config::{Settings, StoreKind};
use innerloop::domain::job::DefaultResult;
use innerloop::domain::{EventPayload, JobResult, Mode, ObjectiveScores};
use innerloop::edge::upstream::TransportError;
use innerloop::edge::{EdgeState, Upstream};
use innerloop::optimizer::{JobContext, OptimizeError, Optimizer};
use innerloop::runtime::JobRuntime;
use innerloop::{edge, grpc, server, store};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Emits `mutation {count: i}` for i in 1..=iterations, each after one gate permit.
pub struct GatedOptimizer {
    pub gate: Arc<Semaphore>,
}

#[async_trait]
impl Optimizer for GatedOptimizer {
    async fn run(&self, ctx: JobContext) -> Result<JobResult, OptimizeError> {
        for i in 1..=ctx.spec.iterations {
            tokio::select! {
                permit = self.gate.acquire() => permit.map_err(|_| OptimizeError::Stopped)?.forget(),
                _ = ctx.cancel.cancelled() => return Err(OptimizeError::Stopped),
            }
            ctx.events.emit(EventPayload::Mutation { count: i }).await?;
        }
        Ok(JobResult::Default(DefaultResult {
            proposal: ctx.spec.prompt.clone(),
            lessons: Vec::new(),
            scores: ObjectiveScores::default(),
            target_model: "m".into(),
            rubric: None,
        }))
    }
}

pub fn test_settings() -> Settings {
    Settings {
        job_store: StoreKind::Memory,
        max_iterations: 50,
        max_wall_time_s: 120.0,
        sse_ping_interval_s: 30.0,
        shutdown_grace_s: 2.0,
        // These tests are about the edge; auth and limits are covered by tests/layers_*.
        require_auth: false,
        dev_mode: true,
        rate_limit_per_min: 600_000,
        rate_limit_burst: 100_000,
        ..Settings::default()
    }
}

pub async fn gated_runtime(settings: Arc<Settings>, gate: Arc<Semaphore>) -> JobRuntime {
    let store = store::open(&settings.store_location())
        .await
        .expect("store");
    let mut optimizers: HashMap<Mode, Arc<dyn Optimizer>> = HashMap::new();
    optimizers.insert(Mode::Default, Arc::new(GatedOptimizer { gate }));
    JobRuntime::start(settings.runtime(), store, optimizers)
        .await
        .expect("runtime")
}

/// The full server (`server::serve`: core + in-process edge) with a gated optimizer.
pub struct TestServer {
    pub base: String,
    pub grpc: SocketAddr,
    pub gate: Arc<Semaphore>,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(test_settings()).await
    }

    pub async fn start_with(settings: Settings) -> TestServer {
        let settings = Arc::new(settings);
        let gate = Arc::new(Semaphore::new(0));
        let runtime = gated_runtime(settings.clone(), gate.clone()).await;
        let listeners = server::Listeners::ephemeral().await.expect("bind");
        let base = format!("http://{}", listeners.http.local_addr().unwrap());
        let grpc = listeners.grpc.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run_with_runtime(
            settings,
            runtime,
            listeners,
            async move {
                let _ = stopped.await;
            },
        ));
        TestServer {
            base,
            grpc,
            gate,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Lets the gated jobs take `n` more steps.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Creates a job of `iterations` gated steps and returns its id.
    pub async fn create(&self, iterations: u32) -> String {
        let response = self
            .http
            .post(self.url(&format!("/v1/optimize?iterations={iterations}")))
            .json(&serde_json::json!({"prompt": "write a haiku about rust"}))
            .send()
            .await
            .expect("create");
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        body["job_id"].as_str().unwrap().to_string()
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("server");
        }
    }
}

/// Counts open WatchJob response bodies of the core, can break them (an upstream failure), and
/// records the metadata of every call (method path, `x-request-id`, `traceparent`).
#[derive(Clone, Default)]
pub struct Probe {
    pub open_watches: Arc<AtomicUsize>,
    pub break_streams: CancellationToken,
    pub calls: Arc<std::sync::Mutex<Vec<Call>>>,
}

/// A recorded gRPC call: method path, `x-request-id`, `traceparent`.
pub type Call = (String, Option<String>, Option<String>);

struct WatchGuard(Arc<AtomicUsize>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A core response body that counts itself and fails when the probe breaks streams.
struct ProbedBody {
    inner: tonic::body::Body,
    _guard: WatchGuard,
    broken: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl http_body::Body for ProbedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        if self.broken.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(tonic::Status::unavailable("core went away"))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }
}

use std::future::Future;

#[derive(Clone)]
struct ProbeService {
    routes: tonic::service::Routes,
    probe: Probe,
}

impl tower::Service<http::Request<tonic::body::Body>> for ProbeService {
    type Response = http::Response<tonic::body::Body>;
    type Error = TransportError;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, TransportError>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let watch = request.uri().path().ends_with("/WatchJob");
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let call = (
            request.uri().path().to_string(),
            header("x-request-id"),
            header("traceparent"),
        );
        self.probe.calls.lock().unwrap().push(call);
        let mut routes = self.routes.clone();
        let probe = self.probe.clone();
        Box::pin(async move {
            let response = tower::ServiceExt::oneshot(&mut routes, request)
                .await
                .map_err(|never| match never {})?;
            if !watch {
                return Ok(response);
            }
            probe.open_watches.fetch_add(1, Ordering::SeqCst);
            let guard = WatchGuard(probe.open_watches.clone());
            Ok(response.map(|inner| {
                tonic::body::Body::new(ProbedBody {
                    inner,
                    _guard: guard,
                    broken: Box::pin(probe.break_streams.clone().cancelled_owned()),
                })
            }))
        })
    }
}

/// A core (gated optimizer) and an edge whose in-process upstream goes through a [`Probe`].
pub struct ProbedEdge {
    pub base: String,
    pub gate: Arc<Semaphore>,
    pub probe: Probe,
    pub state: EdgeState,
    pub http: reqwest::Client,
    stop: CancellationToken,
}

impl ProbedEdge {
    pub async fn start(settings: Settings) -> ProbedEdge {
        let settings = Arc::new(settings);
        let gate = Arc::new(Semaphore::new(0));
        let runtime = gated_runtime(settings.clone(), gate.clone()).await;
        let (routes, _health) = grpc::router(runtime, settings.services()).await;
        let probe = Probe::default();
        let upstream = Upstream::from_service(ProbeService {
            routes,
            probe: probe.clone(),
        });
        let state = EdgeState::new(upstream, settings.sse());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(server::serve_http(
            listener,
            edge::app(state.clone()),
            stop.clone(),
        ));
        ProbedEdge {
            base,
            gate,
            probe,
            state,
            http: reqwest::Client::new(),
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn create(&self, iterations: u32) -> String {
        let response = self
            .http
            .post(self.url(&format!("/v1/optimize?iterations={iterations}")))
            .json(&serde_json::json!({"prompt": "p"}))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        body["job_id"].as_str().unwrap().to_string()
    }

    pub fn open_watches(&self) -> usize {
        self.probe.open_watches.load(Ordering::SeqCst)
    }
}

impl Drop for ProbedEdge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Waits (bounded) until `check` holds; panics with `what` otherwise.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

/// A raw SSE connection that keeps the exact bytes and splits them into frames.
pub struct RawSse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    stream: Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: Vec<u8>,
    pub raw: Vec<u8>,
}

impl RawSse {
    pub async fn connect(request: reqwest::RequestBuilder) -> RawSse {
        let response = request.send().await.expect("sse connect");
        RawSse {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            stream: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            raw: Vec::new(),
        }
    }

    /// The next frame (text up to and including the blank line), or None at the end.
    pub async fn next_frame(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Some(String::from_utf8(frame).expect("utf-8"));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("no SSE bytes within 10 s");
            match chunk {
                Some(Ok(bytes)) => {
                    self.raw.extend_from_slice(&bytes);
                    self.buffer.extend_from_slice(&bytes);
                }
                Some(Err(err)) => panic!("SSE body failed: {err}"),
                None => {
                    assert!(self.buffer.is_empty(), "trailing bytes {:?}", self.buffer);
                    return None;
                }
            }
        }
    }

    /// The next named event (pings and the `retry:` prelude skipped).
    pub async fn next_event(&mut self) -> Option<SseFrame> {
        loop {
            let frame = SseFrame::parse(&self.next_frame().await?);
            if !frame.event.is_empty() {
                return Some(frame);
            }
        }
    }

    /// Every remaining event until the stream ends.
    pub async fn rest(&mut self) -> Vec<SseFrame> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event().await {
            events.push(event);
        }
        events
    }
}

/// One `id`/`event`/`data` frame.
#[derive(Debug, Clone)]
pub struct SseFrame {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
    pub text: String,
}

impl SseFrame {
    pub fn parse(text: &str) -> SseFrame {
        let mut frame = SseFrame {
            id: None,
            event: String::new(),
            data: String::new(),
            text: text.to_string(),
        };
        for line in text.trim_end_matches('\n').split('\n') {
            if let Some(v) = line.strip_prefix("id: ") {
                frame.id = Some(v.parse().expect("numeric id"));
            } else if let Some(v) = line.strip_prefix("event: ") {
                frame.event = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ") {
                assert!(frame.data.is_empty(), "one data line per event");
                frame.data = v.to_string();
            }
        }
        frame
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).expect("data is JSON")
    }
}
