//! Shared test harness: a real core on 127.0.0.1:0, tonic clients, and a controllable optimizer.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use innerloop::api::pb;
use innerloop::api::pb::job_service_client::JobServiceClient;
use innerloop::api::pb::optimizer_service_client::OptimizerServiceClient;
use innerloop::config::{Settings, StoreKind};
use innerloop::domain::job::DefaultResult;
use innerloop::domain::{EventPayload, JobResult, Mode, ObjectiveScores};
use innerloop::optimizer::{JobContext, OptimizeError, Optimizer};
use innerloop::runtime::JobRuntime;
use innerloop::server::{self, Listeners};
use innerloop::store::{JobStore, MemoryStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Settings for tests: memory store, generous limits.
pub fn test_settings() -> Settings {
    Settings {
        job_store: StoreKind::Memory,
        require_auth: false,
        dev_mode: true,
        max_wall_time_s: 60.0,
        shutdown_grace_s: 5.0,
        ..Settings::default()
    }
}

/// Emits `ticks` mutation events, `delay` apart, then finishes with a result; honours cancel.
pub struct Ticker {
    pub ticks: u32,
    pub delay: Duration,
}

#[async_trait]
impl Optimizer for Ticker {
    async fn run(&self, ctx: JobContext) -> Result<JobResult, OptimizeError> {
        for i in 0..self.ticks {
            if !self.delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(self.delay) => {}
                    _ = ctx.cancel.cancelled() => return Err(OptimizeError::Stopped),
                }
            }
            ctx.events.emit(EventPayload::Mutation { count: i }).await?;
        }
        Ok(JobResult::Default(DefaultResult {
            proposal: ctx.spec.prompt.clone(),
            lessons: vec![],
            scores: ObjectiveScores::default(),
            target_model: "test".into(),
            rubric: None,
        }))
    }
}

pub fn ticker(ticks: u32, delay_ms: u64) -> HashMap<Mode, Arc<dyn Optimizer>> {
    let mut map: HashMap<Mode, Arc<dyn Optimizer>> = HashMap::new();
    map.insert(
        Mode::Default,
        Arc::new(Ticker {
            ticks,
            delay: Duration::from_millis(delay_ms),
        }),
    );
    map
}

/// A running core.
pub struct Core {
    pub addr: SocketAddr,
    /// The in-process edge (REST/SSE).
    pub http: SocketAddr,
    pub runtime: JobRuntime,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Core {
    /// Starts a core with the given optimizers (or the real registry when `None`).
    pub async fn start(
        settings: Settings,
        optimizers: Option<HashMap<Mode, Arc<dyn Optimizer>>>,
    ) -> Core {
        let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
        Core::start_with_store(settings, optimizers, store).await
    }

    pub async fn start_with_store(
        settings: Settings,
        optimizers: Option<HashMap<Mode, Arc<dyn Optimizer>>>,
        store: Arc<dyn JobStore>,
    ) -> Core {
        let settings = Arc::new(settings);
        let optimizers = optimizers.unwrap_or_else(|| innerloop::server::optimizers(&settings));
        let runtime = JobRuntime::start(settings.runtime(), store, optimizers)
            .await
            .expect("runtime");
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = grpc.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let http = http_listener.local_addr().unwrap();
        let handle = tokio::spawn(server::run_with_runtime(
            settings,
            runtime.clone(),
            Listeners {
                grpc,
                http: http_listener,
            },
            async move {
                let _ = stopped.await;
            },
        ));
        Core {
            addr,
            http,
            runtime,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    pub async fn optimizer(&self) -> OptimizerServiceClient<Channel> {
        OptimizerServiceClient::new(self.channel().await)
    }

    pub async fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel().await)
    }

    /// Triggers a graceful shutdown (like SIGTERM) and waits for the server to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("server result");
        }
    }
}

pub fn request(prompt: &str) -> pb::OptimizeRequest {
    pb::OptimizeRequest {
        prompt: prompt.into(),
        ..Default::default()
    }
}

/// Reads a stream of events to its end, with a timeout so a broken stream fails the test.
pub async fn collect(mut stream: tonic::Streaming<pb::JobEvent>) -> Vec<pb::JobEvent> {
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
            Ok(Ok(Some(event))) => events.push(event),
            Ok(Ok(None)) => return events,
            Ok(Err(status)) => panic!("stream error: {status:?}"),
            Err(_) => panic!("stream stalled after {} events", events.len()),
        }
    }
}

pub fn types(events: &[pb::JobEvent]) -> Vec<String> {
    events.iter().map(|e| e.r#type.clone()).collect()
}

pub fn ids(events: &[pb::JobEvent]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}
