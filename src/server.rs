//! Wires settings → store → runtime → transports, serves on already-bound listeners until the
//! shutdown future resolves, then drains: running jobs end with `shutdown`, watchers receive it
//! and end, the listeners close, all within `SHUTDOWN_GRACE_S`. The REST + SSE edge runs
//! beside the core in the same process and calls it in-process (no TCP hop), or alone in front
//! of a remote core ([`run_edge`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::Mode;
use crate::edge;
use crate::grpc;
use crate::layers::LayerConfig;
use crate::optimizer::eval_job::EvalOptimizer;
use crate::optimizer::gepa::metrics::Judge;
use crate::optimizer::gepa::{GepaOptimizer, Models};
use crate::optimizer::{DefaultOptimizer, Optimizer};
use crate::provider::openai::OpenAiCompatible;
use crate::provider::{LocalEcho, ModelProvider, OfflineWorld};
use crate::runtime::JobRuntime;
use crate::store;

/// Listeners the server serves on. Tests bind `127.0.0.1:0` and pass them in.
pub struct Listeners {
    pub grpc: TcpListener,
    /// The REST + SSE edge (`HOST`:`PORT`).
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(settings: &Settings) -> std::io::Result<Listeners> {
        let grpc = bind_listener(&settings.grpc_host, settings.grpc_port).await?;
        let http = bind_listener(&settings.host, settings.port).await?;
        Ok(Listeners { grpc, http })
    }

    /// Both on 127.0.0.1 with ports the OS picks (tests, benchmarks).
    pub async fn ephemeral() -> std::io::Result<Listeners> {
        Ok(Listeners {
            grpc: bind_listener("127.0.0.1", 0).await?,
            http: bind_listener("127.0.0.1", 0).await?,
        })
    }
}

/// Accept-queue length. `TcpListener::bind` uses 128, which a burst of a few hundred connecting
/// clients overflows: the kernel drops their SYNs and each retries a second later (measured by
/// benches/loadgen with 1,000 SSE clients). The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `host:port` (the first address that binds) with [`LISTEN_BACKLOG`].
async fn bind_listener(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let mut last_err = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std's `TcpListener::bind` does on Unix: a restarted server can rebind at once.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host}:{port} resolves to no address"),
        )
    }))
}

/// Serves an HTTP app until `stop` is cancelled, then lets open requests finish. The app gets
/// the peer address (`ConnectInfo<SocketAddr>`) for layers that need it.
pub async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // As on the gRPC listener: without TCP_NODELAY, SSE events and multi-write responses wait
    // ~40 ms on Nagle + delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stop.cancelled().await })
    .await
}

/// Serves the protected edge app: like [`serve_http`], plus the slowloris guard
/// (`HEADER_READ_TIMEOUT_S`), which `axum::serve` cannot set, and the connection caps.
pub fn serve_protected_http(
    listener: TcpListener,
    app: axum::Router,
    layers: &LayerConfig,
    grace: Duration,
    stop: CancellationToken,
) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
    let gate = crate::layers::connections::Gate::new("http", connection_limits(layers));
    crate::layers::http_server::serve_with_gate(
        listener,
        app,
        layers.header_read_timeout,
        grace,
        gate,
        async move { stop.cancelled().await },
    )
}

/// The connection caps of each listener. Raises the soft descriptor limit to the hard one first
/// (idempotent), so the automatic caps are computed from the real budget.
pub fn connection_limits(layers: &LayerConfig) -> crate::layers::connections::Limits {
    let nofile = crate::layers::connections::raise_nofile_limit();
    let limits = crate::layers::connections::Limits::new(&layers.connections, nofile);
    tracing::debug!(?nofile, ?limits, "connection limits");
    limits
}

/// Builds the runtime from settings: opens the store, recovers interrupted jobs.
pub async fn build_runtime(settings: &Settings) -> crate::error::Result<JobRuntime> {
    let store = store::open(&settings.store_location()).await?;
    let optimizers = optimizers(settings);
    JobRuntime::start(settings.runtime(), store, optimizers).await
}

/// The optimizers this server runs, by mode, each with its models and its part of the settings.
pub fn optimizers(settings: &Settings) -> HashMap<Mode, Arc<dyn Optimizer>> {
    let models = models(settings);
    let gepa = settings.gepa();
    // The default loop's judge asks an offline `LocalEcho` (as the original's stub world).
    let echo = Arc::new(LocalEcho::with_latency(Duration::from_millis(
        settings.local_echo_latency_ms,
    )));
    let mut optimizers: HashMap<Mode, Arc<dyn Optimizer>> = HashMap::new();
    optimizers.insert(
        Mode::Default,
        Arc::new(DefaultOptimizer::new(echo, settings.default_mode())),
    );
    optimizers.insert(
        Mode::Gepa,
        Arc::new(GepaOptimizer::new(models.clone(), gepa.clone())),
    );
    optimizers.insert(Mode::Eval, Arc::new(EvalOptimizer::new(models, gepa)));
    optimizers
}

/// The models GEPA and eval jobs use: the OpenAI-compatible endpoint the settings select when
/// `USE_MODEL_STUB=false`, else the [`OfflineWorld`] for both the task and reflection. The
/// judge is real only when `USE_JUDGE_STUB=false`.
pub fn models(settings: &Settings) -> Models {
    let real: Option<Arc<dyn ModelProvider>> = if settings.use_model_stub {
        None
    } else {
        match settings.openai().map(OpenAiCompatible::new) {
            Some(Ok(provider)) => Some(Arc::new(provider)),
            Some(Err(err)) => {
                tracing::error!(error = %err, "OpenAI-compatible provider unavailable; using local_echo");
                None
            }
            None => {
                tracing::warn!(
                    "USE_MODEL_STUB=false but no provider is configured; using local_echo"
                );
                None
            }
        }
    };
    // Offline, the task model and reflection are the offline world: answers follow only the
    // rules the prompt states (other inputs are echoed, as `LocalEcho` does), and reflection
    // reads the feedback, so an offline run can really improve a prompt.
    let world: Arc<dyn ModelProvider> = Arc::new(OfflineWorld::with_latency(
        Duration::from_millis(settings.local_echo_latency_ms),
    ));
    let judge_provider = if settings.use_judge_stub {
        None
    } else {
        real.clone()
    };
    Models {
        task: real.clone().unwrap_or_else(|| world.clone()),
        reflection: Some(real.unwrap_or(world)),
        reflection_model: settings.reflection_model_id.clone(),
        judge: Arc::new(Judge::new(
            judge_provider,
            settings.judge_model_id.clone(),
            settings.judge_cache_size,
            settings.judge_qps_max,
        )),
        prices: Arc::new(settings.prices()),
        global: Arc::new(Semaphore::new(settings.eval_global_max_concurrency.max(1))),
    }
}

/// Runs the service until `shutdown` resolves, then drains and returns.
pub async fn run(
    settings: Arc<Settings>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let runtime = build_runtime(&settings).await?;
    run_with_runtime(settings, runtime, listeners, shutdown).await
}

/// Like [`run`], on a runtime built by the caller (tests plug in their own optimizers or store);
/// `settings` configure the transports.
pub async fn run_with_runtime(
    settings: Arc<Settings>,
    runtime: JobRuntime,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let layers = settings.layers();
    let grace = settings.shutdown_grace();
    let (routes, health) = grpc::router(runtime.clone(), settings.services()).await;
    let stop_listeners = CancellationToken::new();
    let (protections, protections_task) =
        crate::layers::Protections::start(&layers, stop_listeners.clone());
    let in_process = tower::ServiceBuilder::new()
        .layer(protections.in_process_grpc_layers())
        .service(routes.clone());
    let upstream = edge::Upstream::from_service(tower::ServiceExt::<
        http::Request<tonic::body::Body>,
    >::map_err(
        in_process,
        |never: std::convert::Infallible| -> edge::upstream::TransportError { match never {} },
    ));
    let edge_state = edge::EdgeState::new(upstream, settings.sse());
    if protections.auth.required() {
        edge_state.issue_stream_tokens(protections.auth.stream_tokens.clone());
    }
    let http_addr = listeners.http.local_addr()?;
    let grpc_addr = listeners.grpc.local_addr()?;
    tracing::info!(%grpc_addr, store = runtime.store().kind(), "gRPC core listening");

    crate::layers::auth::warn_if_unprotected(&layers.auth, grpc_addr, "grpc");
    crate::layers::auth::warn_if_unprotected(&layers.auth, http_addr, "http");

    let grpc_stop = stop_listeners.clone();
    // Admitted through the connection caps, after their first byte, with TCP_NODELAY.
    let (incoming, grpc_accept) = crate::layers::connections::grpc_incoming(
        listeners.grpc,
        crate::layers::connections::Gate::new("grpc", connection_limits(&layers)),
        stop_listeners.clone(),
    );
    let grpc_server = tokio::spawn(
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(protections.grpc_layers())
            .layer(tower::util::MapResponseLayer::new(
                crate::layers::body_limit::decode_error_is_invalid_argument,
            ))
            .add_routes(routes)
            // `serve_with_incoming*` ignores the builder's `tcp_nodelay`: the incoming stream
            // sets it, or small responses wait ~40 ms on Nagle + delayed ACK.
            .serve_with_incoming_shutdown(incoming, async move { grpc_stop.cancelled().await }),
    );
    // Readiness follows the store: NOT_SERVING (readyz 503) while it cannot write.
    let readiness = tokio::spawn(follow_store_health(
        runtime.clone(),
        health.clone(),
        stop_listeners.clone(),
    ));
    tracing::info!(%http_addr, "REST + SSE edge listening");
    let http_server = tokio::spawn(serve_protected_http(
        listeners.http,
        edge::protected_app(edge_state.clone(), &protections),
        &layers,
        grace,
        stop_listeners.clone(),
    ));

    shutdown.await;
    tracing::info!("shutting down: ending running jobs");
    edge_state.begin_draining();
    readiness.abort();
    health.set_not_serving::<crate::api::pb::optimizer_service_server::OptimizerServiceServer<grpc::OptimizerServiceImpl>>().await;
    runtime.shutdown().await;
    // Watch streams have delivered their `shutdown` events; end whatever SSE is still open.
    edge_state.stop_streams();
    stop_listeners.cancel();
    // One deadline for both listeners: they drain concurrently, so the worst case is one grace
    // period, not two.
    let deadline = tokio::time::Instant::now() + grace;
    let grpc_wait = async {
        match tokio::time::timeout_at(deadline, grpc_server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::warn!(error = %err, "gRPC server ended with an error"),
            Ok(Err(err)) => tracing::warn!(error = %err, "gRPC server task failed"),
            Err(_) => tracing::warn!("gRPC connections still open after the grace period; exiting"),
        }
    };
    let accept_wait = async {
        if tokio::time::timeout_at(deadline, grpc_accept)
            .await
            .is_err()
        {
            tracing::warn!("gRPC connection admissions still running after the grace period");
        }
    };
    tokio::join!(grpc_wait, wait_http(deadline, http_server), accept_wait);
    let _ = protections_task.await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Sets the core's health to NOT_SERVING while the store reports a problem, and back to
/// SERVING when it clears (unless the runtime is draining). Ends with `stop`.
async fn follow_store_health(
    runtime: JobRuntime,
    health: tonic_health::server::HealthReporter,
    stop: CancellationToken,
) {
    type Core = crate::api::pb::optimizer_service_server::OptimizerServiceServer<
        grpc::OptimizerServiceImpl,
    >;
    let mut problems = runtime.subscribe_store_problems();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = problems.changed() => if changed.is_err() { return },
        }
        let bad = problems.borrow_and_update().describe();
        if bad.is_some() {
            health.set_not_serving::<Core>().await;
        } else if runtime.is_accepting() {
            health.set_serving::<Core>().await;
        }
    }
}

async fn wait_http(
    deadline: tokio::time::Instant,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
) {
    match tokio::time::timeout_at(deadline, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => tracing::warn!(error = %err, "HTTP server ended with an error"),
        Ok(Err(err)) => tracing::warn!(error = %err, "HTTP server task failed"),
        Err(_) => tracing::warn!("HTTP connections still open after the grace period; exiting"),
    }
}

/// `innerloop edge`: the REST + SSE edge alone, in front of the core at `upstream_url`
/// (`http://host:port`). On shutdown readiness turns 503, open SSE streams end (clients resume
/// with `Last-Event-ID`), and the listener closes.
pub async fn run_edge(
    settings: Arc<Settings>,
    http: TcpListener,
    upstream_url: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let layers = settings.layers();
    let grace = settings.shutdown_grace();
    let upstream = edge::Upstream::connect_lazy(upstream_url)?;
    let edge_state = edge::EdgeState::new(upstream, settings.sse());
    let http_addr = http.local_addr()?;
    tracing::info!(%http_addr, upstream = upstream_url, "REST + SSE edge listening");
    crate::layers::auth::warn_if_unprotected(&layers.auth, http_addr, "http");
    let stop = CancellationToken::new();
    let (protections, protections_task) = crate::layers::Protections::start(&layers, stop.clone());
    if protections.auth.required() {
        edge_state.issue_stream_tokens(protections.auth.stream_tokens.clone());
    }
    let server = tokio::spawn(serve_protected_http(
        http,
        edge::protected_app(edge_state.clone(), &protections),
        &layers,
        grace,
        stop.clone(),
    ));
    shutdown.await;
    edge_state.begin_draining();
    edge_state.stop_streams();
    stop.cancel();
    wait_http(tokio::time::Instant::now() + grace, server).await;
    let _ = protections_task.await;
    Ok(())
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
