//! Helpers shared by the layer tests: a log capture and a gRPC core on 127.0.0.1:0 whose jobs
//! run until cancelled (so streams stay open).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use innerloop::config::Settings;
use innerloop::domain::{JobResult, Mode};
use innerloop::optimizer::{JobContext, OptimizeError, Optimizer};
use innerloop::runtime::JobRuntime;
use innerloop::server::{self, Listeners};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Everything logged by this test binary.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a global JSON subscriber writing into a buffer, and returns the buffer.
pub fn capture_logs() -> Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter("info")
            .with_writer(move || writer.clone())
            .try_init();
        captured
    })
    .clone()
}

/// Runs until its job is cancelled.
pub struct UntilCancelled;

#[async_trait]
impl Optimizer for UntilCancelled {
    async fn run(&self, ctx: JobContext) -> Result<JobResult, OptimizeError> {
        ctx.cancel.cancelled().await;
        Err(OptimizeError::Stopped)
    }
}

pub const TOKEN: &str = "tok-secret-4711";

/// Settings for tests: one token, generous limits unless a test narrows them.
pub fn settings() -> Settings {
    Settings {
        api_bearer_tokens: vec![TOKEN.into()],
        rate_limit_per_min: 6000,
        rate_limit_burst: 1000,
        shutdown_grace_s: 1.0,
        max_wall_time_s: 60.0,
        job_store: innerloop::config::StoreKind::Memory,
        ..Settings::default()
    }
}

/// A running core; stops on drop of `stop`.
pub struct Core {
    pub addr: SocketAddr,
    /// The REST + SSE edge of the same process.
    pub http: SocketAddr,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Core {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A URL on the edge.
    pub fn edge(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

/// Starts the gRPC core whose default mode runs until cancelled.
pub async fn start_core(settings: Settings) -> Core {
    let settings = Arc::new(settings);
    let store = innerloop::store::open(&settings.store_location())
        .await
        .unwrap();
    let mut optimizers: HashMap<Mode, Arc<dyn Optimizer>> = HashMap::new();
    optimizers.insert(Mode::Default, Arc::new(UntilCancelled));
    let runtime = JobRuntime::start(settings.runtime(), store, optimizers)
        .await
        .unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = http_listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let until = stop.clone();
    let task = tokio::spawn(server::run_with_runtime(
        settings,
        runtime,
        Listeners {
            grpc,
            http: http_listener,
        },
        async move { until.cancelled().await },
    ));
    Core {
        addr,
        http,
        stop,
        task,
    }
}
