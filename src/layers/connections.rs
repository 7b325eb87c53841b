//! Connection-level protections of both listeners (HTTP edge and gRPC core), before any byte
//! reaches hyper or tonic:
//!
//! - **First byte**: a connection that sends nothing within `IDLE_CONNECTION_TIMEOUT_S` is
//!   closed (the slowloris guard only starts once a request head has begun).
//! - **Caps**: at most `MAX_CONNECTIONS` open connections per listener and
//!   `MAX_CONNECTIONS_PER_IP` per client IP. At a cap, the oldest connection of that scope that
//!   has not sent a byte yet is evicted to make room, so a flood of idle sockets cannot lock
//!   real clients (health checks included) out; when every connection is active, the new one
//!   is closed at once.
//! - **Descriptor reserve**: [`raise_nofile_limit`] lifts the soft `RLIMIT_NOFILE` to the hard
//!   limit at start, and the automatic caps leave [`FD_RESERVE`] descriptors free for the
//!   store, the model provider and health checks.
//!
//! [`Gate::admit`] hands out a [`Permit`] that lives as long as the connection;
//! [`guard_first_byte`] waits for the first byte (or eviction, or the timeout).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Descriptors kept out of the automatic connection caps (store, provider, logs, health).
pub const FD_RESERVE: usize = 128;

/// Upper bound of the automatic per-listener cap.
const AUTO_MAX_CONNECTIONS: usize = 16_384;

/// Lifts the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
#[cfg(unix)]
pub fn raise_nofile_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every Unix
    Some(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn raise_nofile_limit() -> Option<u64> {
    None
}

/// Descriptors the process has open now (Linux; `None` elsewhere).
pub fn open_descriptors() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// What the connection caps read of the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionConfig {
    /// Open connections per listener; 0 = automatic (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Open connections per client IP and listener; 0 = the listener's cap
    /// (`MAX_CONNECTIONS_PER_IP`).
    pub max_connections_per_ip: usize,
    /// Time a new connection gets to send its first byte (`IDLE_CONNECTION_TIMEOUT_S`).
    pub first_byte_timeout: Duration,
}

impl Default for ConnectionConfig {
    /// Automatic caps and a 5 s first-byte timeout: the settings' defaults.
    fn default() -> Self {
        ConnectionConfig {
            max_connections: 0,
            max_connections_per_ip: 0,
            first_byte_timeout: Duration::from_secs(5),
        }
    }
}

/// The caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_listener: usize,
    pub per_ip: usize,
    pub first_byte_timeout: Duration,
}

impl Limits {
    /// From the configuration; a cap of 0 means automatic: the descriptors left after
    /// [`FD_RESERVE`], shared by the two listeners (per listener at most 16,384), and per IP
    /// the whole listener's cap.
    pub fn new(config: &ConnectionConfig, nofile: Option<u64>) -> Limits {
        let auto = nofile
            .map(|n| (n as usize).saturating_sub(FD_RESERVE) / 2)
            .unwrap_or(AUTO_MAX_CONNECTIONS)
            .clamp(16, AUTO_MAX_CONNECTIONS);
        let per_listener = match config.max_connections {
            0 => auto,
            n => n,
        };
        let per_ip = match config.max_connections_per_ip {
            0 => per_listener,
            n => n.min(per_listener),
        };
        Limits {
            per_listener,
            per_ip,
            first_byte_timeout: config.first_byte_timeout,
        }
    }
}

#[derive(Default)]
struct State {
    open: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections that have not sent a byte yet, oldest first.
    pending: BTreeMap<u64, (IpAddr, CancellationToken)>,
    next_id: u64,
}

/// Counts the connections of one listener. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    name: &'static str,
    limits: Limits,
    state: Arc<Mutex<State>>,
}

/// One admitted connection; frees its slot on drop.
pub struct Permit {
    gate: Gate,
    id: u64,
    ip: IpAddr,
    evicted: CancellationToken,
}

impl Gate {
    pub fn new(name: &'static str, limits: Limits) -> Gate {
        Gate {
            name,
            limits,
            state: Arc::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip`, evicting the oldest silent connection when a cap is
    /// reached; `None` when it must be closed (a cap is full of active connections).
    pub fn admit(&self, ip: IpAddr) -> Option<Permit> {
        let mut state = self.lock();
        let ip_full = state.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.per_ip;
        let port_full = state.open >= self.limits.per_listener;
        if ip_full || port_full {
            // The oldest silent connection of the full scope (this IP first when it is full).
            let victim = state
                .pending
                .iter()
                .find(|(_, (owner, _))| !ip_full || *owner == ip)
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                tracing::debug!(listener = self.name, %ip, "connection refused: cap reached");
                return None;
            };
            if let Some((owner, token)) = state.pending.remove(&victim) {
                token.cancel();
                // Its slot passes to the newcomer now; the evicted permit's drop skips it.
                state.open -= 1;
                if let Some(n) = state.per_ip.get_mut(&owner) {
                    *n -= 1;
                }
            }
        }
        state.open += 1;
        *state.per_ip.entry(ip).or_insert(0) += 1;
        let id = state.next_id;
        state.next_id += 1;
        let evicted = CancellationToken::new();
        state.pending.insert(id, (ip, evicted.clone()));
        Some(Permit {
            gate: self.clone(),
            id,
            ip,
            evicted,
        })
    }

    /// Open connections (tests, chaos tooling).
    pub fn open(&self) -> usize {
        self.lock().open
    }
}

impl Permit {
    /// The connection sent its first byte: it can no longer be evicted. `false` when it was
    /// evicted just before (it must then be closed: its slot is gone).
    pub fn activate(&self) -> bool {
        let mut state = self.gate.lock();
        state.pending.remove(&self.id);
        !self.evicted.is_cancelled()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.evicted.is_cancelled() {
            return; // its slot was handed over at eviction
        }
        let mut state = self.gate.lock();
        state.pending.remove(&self.id);
        state.open = state.open.saturating_sub(1);
        if let Some(n) = state.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Waits until `stream` has a byte to read; `false` when it closed, stayed silent past the
/// first-byte timeout, or was evicted (the caller then drops it).
pub async fn guard_first_byte(stream: &TcpStream, permit: &Permit) -> bool {
    let mut byte = [0u8; 1];
    let ready = tokio::select! {
        peeked = tokio::time::timeout(permit.gate.limits.first_byte_timeout, stream.peek(&mut byte)) => {
            matches!(peeked, Ok(Ok(n)) if n > 0)
        }
        _ = permit.evicted.cancelled() => false,
    };
    ready && permit.activate()
}

/// Accepts from `listener` until `stop`, admitting each connection through `gate` and handing
/// the ones that sent their first byte to `serve`. Accept errors (out of descriptors) back off
/// instead of spinning. Returns once `stop` is cancelled and every admission it started has
/// ended (each ends at `stop`, at the first byte, or at the first-byte timeout).
pub async fn accept_loop<F>(
    listener: tokio::net::TcpListener,
    gate: Gate,
    stop: CancellationToken,
    serve: F,
) where
    F: Fn(TcpStream, std::net::SocketAddr, Permit) + Clone + Send + 'static,
{
    let admissions = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(listener = gate.name, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let Some(permit) = gate.admit(peer.ip()) else {
            continue; // dropped: closed at once
        };
        let serve = serve.clone();
        let stop = stop.clone();
        admissions.spawn(async move {
            let ready = tokio::select! {
                ready = guard_first_byte(&stream, &permit) => ready,
                _ = stop.cancelled() => false,
            };
            if ready {
                serve(stream, peer, permit);
            }
        });
    }
    admissions.close();
    admissions.wait().await;
}

/// A TCP stream that holds its connection's [`Permit`] (the gRPC server's incoming items).
pub struct GuardedStream {
    stream: TcpStream,
    _permit: Permit,
}

impl GuardedStream {
    pub fn new(stream: TcpStream, permit: Permit) -> GuardedStream {
        GuardedStream {
            stream,
            _permit: permit,
        }
    }
}

impl tokio::io::AsyncRead for GuardedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for GuardedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// The gRPC server's incoming connections: [`accept_loop`] on `listener`, TCP_NODELAY set,
/// each stream holding its permit; and the task that runs it, which ends once `stop` is
/// cancelled and every connection it admitted was handed over (or the server dropped the
/// stream). The server waits for it on shutdown.
pub fn grpc_incoming(
    listener: tokio::net::TcpListener,
    gate: Gate,
    stop: CancellationToken,
) -> (
    tokio_stream::wrappers::ReceiverStream<std::io::Result<GuardedStream>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let handovers = TaskTracker::new();
    let spawner = handovers.clone();
    let task = tokio::spawn(async move {
        accept_loop(listener, gate, stop, move |stream, peer, permit| {
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %err, "could not set TCP_NODELAY");
            }
            let tx = tx.clone();
            spawner.spawn(async move {
                let _ = tx.send(Ok(GuardedStream::new(stream, permit))).await;
            });
        })
        .await;
        handovers.close();
        handovers.wait().await;
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(per_listener: usize, per_ip: usize) -> Gate {
        Gate::new(
            "test",
            Limits {
                per_listener,
                per_ip,
                first_byte_timeout: Duration::from_secs(1),
            },
        )
    }

    #[test]
    fn at_a_cap_the_oldest_silent_connection_is_evicted_and_active_ones_are_kept() {
        let gate = gate(2, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let first = gate.admit(a).unwrap();
        let second = gate.admit(a).unwrap();
        second.activate();
        let third = gate.admit(a).expect("evicts the silent one");
        assert!(first.evicted.is_cancelled());
        assert!(!second.evicted.is_cancelled());
        drop(first);
        assert_eq!(gate.open(), 2);
        third.activate();
        assert!(gate.admit(a).is_none(), "all active: refused");
        drop(second);
        assert_eq!(gate.open(), 1);
        assert!(gate.admit(a).is_some());
    }

    #[test]
    fn a_full_ip_evicts_only_its_own_silent_connections() {
        let gate = gate(10, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let from_b = gate.admit(b).unwrap();
        let from_a = gate.admit(a).unwrap();
        let again_a = gate.admit(a).unwrap();
        assert!(from_a.evicted.is_cancelled());
        assert!(!from_b.evicted.is_cancelled());
        drop((from_a, again_a, from_b));
        assert_eq!(gate.open(), 0);
    }
}
