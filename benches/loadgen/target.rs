//! What the load goes to: the real server started in this process (`innerloop::server::run` on
//! `127.0.0.1:0`, memory store, on its own tokio runtime so client and server do not share worker
//! queues, as two processes would not), or an external `--target`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use figment::Figment;
use figment::providers::Serialized;
use innerloop::config::{Settings, StoreKind};
use innerloop::server::{self, Listeners};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Settings every in-process server starts from: memory store, no auth, finished jobs kept
/// long enough for the read benchmarks, limiters out of the way (they are not what is measured).
/// Logging is not initialised (no subscriber).
pub fn base_settings() -> Settings {
    let base = Settings {
        job_store: StoreKind::Memory,
        require_auth: false,
        dev_mode: true,
        job_ttl_finished_s: 3600.0,
        max_wall_time_s: 120.0,
        shutdown_grace_s: 5.0,
        rate_limit_per_min: 100_000_000,
        rate_limit_burst: 1_000_000,
        ..Settings::default()
    };
    // Caps that may not exist in every version of `Settings` (per-principal stream limits,
    // global concurrency, default-mode pacing): set by name, so unknown ones are ignored instead of failing to build.
    Figment::from(Serialized::defaults(&base))
        .merge(Serialized::default("max_streams_per_principal", 1_000_000))
        .merge(Serialized::default("max_concurrent_requests", 1_000_000))
        // No pause between default-mode iterations: throughput is what is measured.
        .merge(Serialized::default("default_mode_iteration_delay_ms", 0))
        .extract()
        .unwrap_or_else(|err| {
            eprintln!("loadgen: could not raise the limits ({err}); using the defaults");
            base
        })
}

/// A server running in this process.
pub struct InProcess {
    pub addr: SocketAddr,
    /// The REST + SSE edge.
    pub http_addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// Starts `innerloop::server::run` with `settings` on a fresh 2-worker runtime.
    pub async fn start(settings: Settings) -> anyhow::Result<InProcess> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("server")
            .enable_all()
            .build()?;
        let (addr_tx, addr_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = runtime.spawn(async move {
            let listeners = Listeners::ephemeral().await?;
            let _ = addr_tx.send((listeners.grpc.local_addr()?, listeners.http.local_addr()?));
            server::run(Arc::new(settings), listeners, async move {
                let _ = stopped.await;
            })
            .await
        });
        let (addr, http_addr) = addr_rx.await.context("server did not bind")?;
        Ok(InProcess {
            addr,
            http_addr,
            runtime: Some(runtime),
            stop: Some(stop),
            done: Some(done),
        })
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Triggers a graceful shutdown (as SIGTERM does) and returns how long `run` took to return.
    pub async fn shutdown(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.context("server task")??;
        }
        Ok(started.elapsed())
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Where a scenario sends its load: the in-process server it started, or `--target`.
pub enum Target {
    Local(InProcess),
    External(String),
}

impl Target {
    /// The in-process server with `settings`, or the external one (whose settings are its own).
    pub async fn new(external: Option<&str>, settings: Settings) -> anyhow::Result<Target> {
        Ok(match external {
            Some(uri) => Target::External(uri.to_string()),
            None => Target::Local(InProcess::start(settings).await?),
        })
    }

    pub fn uri(&self) -> String {
        match self {
            Target::Local(server) => server.uri(),
            Target::External(uri) => uri.clone(),
        }
    }

    /// `n` channels, each its own HTTP/2 connection.
    pub async fn channels(&self, n: usize) -> anyhow::Result<Vec<Channel>> {
        let mut channels = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            let channel = Channel::from_shared(self.uri())?
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .with_context(|| format!("connecting to {}", self.uri()))?;
            channels.push(channel);
        }
        Ok(channels)
    }
}
