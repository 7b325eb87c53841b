//! An HTTP/1 + HTTP/2 (h2c) server for an axum `Router` with the protections that belong to the
//! connection rather than to a layer: the slowloris guard (`HEADER_READ_TIMEOUT_S`: a client
//! that does not finish its request head in time is disconnected), `ConnectInfo<SocketAddr>`
//! for the client IP, graceful shutdown, and the caps and first-byte timeout of
//! [`super::connections`]. `axum::serve` cannot set the header timeout, so the edge serves
//! through [`serve`] / [`serve_with_gate`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::connections;

/// Serves `router` on `listener` until `shutdown` resolves, then waits up to `grace` for open
/// connections to finish. Connection caps and the first-byte timeout are the automatic ones
/// (see [`serve_with_gate`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let limits = connections::Limits::new(
        &connections::ConnectionConfig::default(),
        connections::raise_nofile_limit(),
    );
    let gate = connections::Gate::new("http", limits);
    serve_with_gate(listener, router, header_read_timeout, grace, gate, shutdown).await
}

/// [`serve`] with the connection caps of `gate`: each connection is admitted by it (or
/// refused), and one that sends nothing within the gate's first-byte timeout is closed.
pub async fn serve_with_gate(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    grace: Duration,
    gate: connections::Gate,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    // Ends connections still waiting for their first byte when the server stops.
    let closing = CancellationToken::new();
    // Every connection's task, waited for (with the graceful drain) before returning.
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(permit) = gate.admit(peer.ip()) else {
            continue; // at a cap with every connection active: closed at once
        };
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let closing = closing.clone();
        connections.spawn(async move {
            let ready = tokio::select! {
                ready = connections::guard_first_byte(&stream, &permit) => ready,
                _ = closing.cancelled() => false,
            };
            if !ready {
                return;
            }
            // Without TCP_NODELAY, SSE events and multi-write responses wait ~40 ms on Nagle +
            // delayed ACK (measured by benches/loadgen; axum::serve does not set it either).
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %err, "could not set TCP_NODELAY");
            }
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    router.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    closing.cancel();
    connections.close();
    let drained = async {
        graceful.shutdown().await;
        connections.wait().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!("HTTP connections still open after the grace period");
    }
    Ok(())
}
