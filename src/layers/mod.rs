//! Tower layers shared by both public surfaces (the tonic core and the axum edge): access log,
//! request id and trace context ([`access_log`]), load shedding ([`shed`]), authentication
//! ([`auth`], with job-scoped SSE tokens from [`stream_token`]), rate limiting ([`rate_limit`]),
//! per-principal stream caps ([`streams`]), body size limits ([`body_limit`]) and unary timeouts
//! ([`timeout`]). Each works on plain `http::Request<B>` / `http::Response<B>`, so the same code
//! guards gRPC and REST; [`reject`] answers in the caller's protocol (gRPC status or the contract's
//! JSON error body).
//!
//! Order, outermost first (see [`Protections::grpc_layers`]): access log → load shed → auth →
//! rate limit → stream cap → body limit → timeout → service. Authentication runs before rate
//! limiting and size checks, and every rejection is logged and counted.
//!
//! Seams for the edge: [`Protections::http_layers`] is the same stack for an axum `Router`
//! (plus CORS); the slowloris guard is a property of the HTTP server, not of a layer, so the edge
//! serves through [`http_server::serve`] (hyper with `http1().header_read_timeout`) instead of
//! `axum::serve`. Each gRPC call the edge makes carries the caller's credential, request id,
//! client IP and trace context ([`forward::forward_to_core`]). Layers mount no routes: which
//! path is public, a stream or about a job comes from the route catalogue
//! ([`crate::api::routes`]), and the edge mounts its routes itself
//! ([`crate::edge::protected_app`]).

pub mod access_log;
pub mod auth;
pub mod body_limit;
pub mod client_ip;
pub mod connections;
pub mod forward;
pub mod guard;
pub mod http_server;
pub mod rate_limit;
pub mod shed;
pub mod stream_token;
pub mod streams;
pub mod timeout;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use tokio_util::sync::CancellationToken;

use crate::api::status;
use crate::error::Error;

/// Boxed error of wrapped bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A response/request body type the layers can build and wrap: axum's and tonic's bodies.
pub trait LayerBody:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Default + Send + Unpin + 'static + Sized
{
    /// Wraps another body (to count it, hold a guard until it ends, …).
    fn wrap<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>;
    /// A body of fixed bytes.
    fn full(bytes: Bytes) -> Self {
        Self::wrap(http_body_util::Full::new(bytes))
    }
}

impl LayerBody for axum::body::Body {
    fn wrap<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        axum::body::Body::new(body)
    }
}

impl LayerBody for tonic::body::Body {
    fn wrap<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        tonic::body::Body::new(body)
    }
}

/// True for gRPC requests (`content-type: application/grpc…`); they get gRPC-shaped errors.
pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// An error response in the protocol of the request: a gRPC status encoded exactly as the
/// services encode theirs ([`status::status_from_error`]: an `ErrorInfo` whose reason is the
/// contract's code, `RetryInfo` and `retry-after` when rate limited), so an edge in front of
/// this core maps it back to the same HTTP answer; or the contract's JSON envelope
/// ([`status::ErrorBody`], with `Retry-After` when rate limited).
pub fn reject<B: LayerBody>(grpc: bool, error: &Error) -> Response<B> {
    let retry_after = match error {
        Error::RateLimited { retry_after_s } => Some(HeaderValue::from(*retry_after_s)),
        _ => None,
    };
    let mut response = if grpc {
        status::status_from_error(error).into_http::<B>()
    } else {
        let body = status::ErrorBody::from_error(error).to_json();
        let mut response = Response::new(B::full(Bytes::from(body)));
        *response.status_mut() = error.code().http_status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    };
    if let Some(value) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A timeout answer: 504 `deadline_exceeded` on HTTP, DEADLINE_EXCEEDED (with the same
/// `ErrorInfo`) on gRPC.
pub fn reject_deadline<B: LayerBody>(grpc: bool, after: Duration) -> Response<B> {
    reject(
        grpc,
        &Error::DeadlineExceeded {
            after_s: after.as_secs_f64(),
        },
    )
}

/// What the layers and the listeners' connection guards read of the configuration; built where
/// the app is wired (`Settings::layers`).
#[derive(Clone)]
pub struct LayerConfig {
    pub auth: auth::AuthConfig,
    pub rate_limit: rate_limit::RateLimitConfig,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// `CORS_ALLOWED_ORIGINS`; empty = no CORS headers.
    pub cors_allowed_origins: Vec<String>,
    /// Requests served at once per transport (`MAX_CONCURRENT_REQUESTS`).
    pub max_concurrent_requests: usize,
    /// Open streams per principal (`MAX_STREAMS_PER_PRINCIPAL`).
    pub max_streams_per_principal: usize,
    /// The largest request body (`MAX_REQUEST_BYTES`).
    pub max_request_bytes: usize,
    /// Time a unary request may take (`REQUEST_TIMEOUT_S`).
    pub request_timeout: Duration,
    /// The slowloris guard of the HTTP/1 server: how long a client may take to send its request
    /// head (`HEADER_READ_TIMEOUT_S`).
    pub header_read_timeout: Duration,
    /// The caps of each listener.
    pub connections: connections::ConnectionConfig,
}

/// Shared state of the layers of one process: one authenticator, one limiter per transport, one
/// stream counter, one shedding gate per transport. Cheap to clone.
#[derive(Clone)]
pub struct Protections {
    pub auth: Arc<auth::Authenticator>,
    pub streams: streams::StreamCounter,
    grpc_limiter: Arc<rate_limit::LimiterConfig>,
    http_limiter: Arc<rate_limit::LimiterConfig>,
    grpc_gate: shed::Gate,
    http_gate: shed::Gate,
    trusted: Arc<client_ip::TrustedProxies>,
    cors: tower_http::cors::CorsLayer,
    max_request_bytes: usize,
    request_timeout: Duration,
}

impl Protections {
    /// Builds the shared state and starts its maintenance task (limiter pruning, token-file
    /// reload), which ends when `stop` is cancelled.
    pub fn start(
        config: &LayerConfig,
        stop: CancellationToken,
    ) -> (Protections, tokio::task::JoinHandle<()>) {
        let auth = Arc::new(auth::Authenticator::new(&config.auth));
        let grpc_limiter = Arc::new(rate_limit::limiter_config(&config.rate_limit));
        let http_limiter = Arc::new(rate_limit::limiter_config(&config.rate_limit));
        let protections = Protections {
            auth: auth.clone(),
            streams: streams::StreamCounter::new(config.max_streams_per_principal),
            grpc_gate: shed::Gate::new(config.max_concurrent_requests),
            http_gate: shed::Gate::new(config.max_concurrent_requests),
            trusted: Arc::new(client_ip::TrustedProxies::new(&config.trusted_proxies)),
            grpc_limiter: grpc_limiter.clone(),
            http_limiter: http_limiter.clone(),
            cors: cors(&config.cors_allowed_origins),
            max_request_bytes: config.max_request_bytes,
            request_timeout: config.request_timeout,
        };
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        grpc_limiter.limiter().retain_recent();
                        http_limiter.limiter().retain_recent();
                        auth.reload_file_if_changed().await;
                    }
                }
            }
        });
        (protections, task)
    }

    /// The stack for the tonic server (`Server::builder().layer(..)`).
    pub fn grpc_layers(&self) -> GrpcLayers {
        self.layers::<tonic::body::Body>(&self.grpc_gate, &self.grpc_limiter, "grpc")
    }

    /// The same stack for an axum `Router` (`router.layer(..)`), plus CORS for
    /// `CORS_ALLOWED_ORIGINS` (outermost, so preflights are answered without a token).
    pub fn http_layers(&self) -> HttpLayers {
        tower::ServiceBuilder::new()
            .layer(self.cors.clone())
            .layer(self.layers::<axum::body::Body>(&self.http_gate, &self.http_limiter, "http"))
            .into_inner()
    }

    /// For the edge's in-process upstream (no TCP hop): only the access log, so each RPC still
    /// gets its log line, its gRPC metrics and a span that is a child of the edge's span, while
    /// the caller is authenticated, limited and sized once, by the edge's layers.
    pub fn in_process_grpc_layers(&self) -> access_log::AccessLogLayer {
        access_log::AccessLogLayer::new("grpc-in-process", self.trusted.clone())
    }

    fn layers<B: LayerBody>(
        &self,
        gate: &shed::Gate,
        limiter: &Arc<rate_limit::LimiterConfig>,
        transport: &'static str,
    ) -> Stack<B> {
        tower::ServiceBuilder::new()
            .layer(access_log::AccessLogLayer::new(
                transport,
                self.trusted.clone(),
            ))
            .layer(shed::ShedLayer::new(gate.clone()))
            .layer(auth::AuthLayer::new(self.auth.clone()))
            .layer(rate_limit::RateLimitLayer::new(limiter.clone()))
            .layer(streams::StreamCapLayer::new(self.streams.clone()))
            .layer(body_limit::BodyLimitLayer::new(self.max_request_bytes))
            .layer(timeout::UnaryTimeoutLayer::new(self.request_timeout))
            .into_inner()
    }
}

use tower::layer::util::{Identity, Stack as S};

/// The concrete layer stack (innermost last in the type, outermost first in the list above).
pub type Stack<B> = S<
    timeout::UnaryTimeoutLayer,
    S<
        body_limit::BodyLimitLayer,
        S<
            streams::StreamCapLayer,
            S<
                rate_limit::RateLimitLayer<B>,
                S<auth::AuthLayer, S<shed::ShedLayer, S<access_log::AccessLogLayer, Identity>>>,
            >,
        >,
    >,
>;
/// The gRPC stack.
pub type GrpcLayers = Stack<tonic::body::Body>;
/// The HTTP stack: CORS outermost, so preflights and rejections carry its headers.
pub type HttpLayers = S<Stack<axum::body::Body>, S<tower_http::cors::CorsLayer, Identity>>;

/// CORS for the configured origins only; no origin is allowed when the list is empty.
pub fn cors(allowed_origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        // CORS off: no CORS headers at all (preflights get a bare 200 without allow-origin).
        return CorsLayer::new();
    }
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            http::Method::GET,
            http::Method::POST,
            http::Method::DELETE,
            http::Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            http::HeaderName::from_static("idempotency-key"),
            http::HeaderName::from_static("last-event-id"),
            http::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            http::HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
        ])
}
