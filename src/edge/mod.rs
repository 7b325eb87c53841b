//! The REST + SSE edge: the contract's `/v1` routes (and the original's unversioned aliases),
//! each a thin mapping onto one call of the gRPC core through a real tonic client
//! ([`Upstream`]), in-process under `innerloop serve` or over a channel under `innerloop edge`.
//!
//! - [`router`]: the routes of the catalogue ([`crate::api::routes`]) with envelope-shaped
//!   404/405 fallbacks; [`app`] adds the edge's own middleware (request id outermost,
//!   deprecation headers); [`protected_app`] adds the metrics and stream-token routes and puts
//!   everything behind the layers (what `serve` and `edge --upstream` run).
//! - [`error`]: [`ApiError`], an HTTP error built from a core status (the mapping itself is
//!   [`crate::api::status`]); [`extract`]: extractors whose
//!   rejections use the envelope; the JSON shapes are `api::rest`; [`sse`]: the SSE wire format;
//!   [`openapi`]: `/v1/openapi.json`; [`ui`]: the workbench page at `/ui`.

pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;
pub mod sse;
pub mod ui;
pub mod upstream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::error::ErrorCode;
use crate::layers::Protections;
use crate::layers::stream_token::StreamTokens;
pub use error::ApiError;
pub use upstream::Upstream;

/// Shared state of the edge's handlers. Cheap to clone.
#[derive(Clone)]
pub struct EdgeState {
    inner: Arc<Inner>,
}

struct Inner {
    upstream: Upstream,
    sse: sse::SseConfig,
    /// Cancelled when the server stops: open SSE streams end so graceful shutdown completes.
    streams_stop: CancellationToken,
    /// Set when shutdown begins: readiness answers 503.
    draining: AtomicBool,
    /// Set when auth is on: create responses then carry a `stream_token` for `EventSource`.
    stream_tokens: OnceLock<StreamTokens>,
}

impl EdgeState {
    /// The edge in front of `upstream`, its SSE responses configured by `sse`
    /// (`Settings::sse`).
    pub fn new(upstream: Upstream, sse: sse::SseConfig) -> EdgeState {
        EdgeState {
            inner: Arc::new(Inner {
                upstream,
                sse,
                streams_stop: CancellationToken::new(),
                draining: AtomicBool::new(false),
                stream_tokens: OnceLock::new(),
            }),
        }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.inner.upstream
    }

    pub fn sse_config(&self) -> &sse::SseConfig {
        &self.inner.sse
    }

    /// A token that ends every SSE stream when cancelled.
    pub fn stream_stop(&self) -> CancellationToken {
        self.inner.streams_stop.clone()
    }

    /// From now on, create responses carry a `stream_token` issued by `tokens` (call it when
    /// auth is on; the first call wins).
    pub fn issue_stream_tokens(&self, tokens: StreamTokens) {
        let _ = self.inner.stream_tokens.set(tokens);
    }

    /// A stream token for `job_id` minted by the principal `minter`, when auth is on.
    pub fn stream_token(&self, job_id: &str, minter: Option<&str>) -> Option<String> {
        let tokens = self.inner.stream_tokens.get()?;
        Some(tokens.issue(job_id, minter?).token)
    }

    /// Readiness turns 503 from now on.
    pub fn begin_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Ends every open SSE stream (after the core has sent its terminal events).
    pub fn stop_streams(&self) {
        self.inner.streams_stop.cancel();
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::ValidationError, "Method Not Allowed")
        .with_status(http::StatusCode::METHOD_NOT_ALLOWED)
}

/// Every route, with 404 and 405 (keeping axum's `Allow`) in the error envelope.
pub fn router(state: EdgeState) -> Router {
    Router::new()
        .nest("/v1", routes::v1())
        .merge(routes::aliases())
        .merge(ui::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The edge's own middleware around a router: deprecation headers on legacy paths, and the
/// request id (outermost, so every response carries `X-Request-ID`).
pub fn with_edge_layers(router: Router) -> Router {
    router
        .layer(axum::middleware::from_fn(extract::deprecation))
        .layer(axum::middleware::from_fn(extract::request_id))
}

/// The complete edge application.
pub fn app(state: EdgeState) -> Router {
    with_edge_layers(router(state))
}

/// The edge as served, behind the layers: [`app`] plus `/v1/metrics`, `/v1/metricsz` (and
/// aliases) and `POST /v1/optimize/{id}/stream-token`, all wrapped in
/// [`Protections::http_layers`]. The deprecation headers go outside them, so the layers' own
/// answers on a legacy path (401, 413, 429, 503) carry them too.
pub fn protected_app(state: EdgeState, protections: &Protections) -> Router {
    app(state)
        .merge(routes::metrics::router())
        .merge(routes::stream_token::router(
            protections.auth.stream_tokens.clone(),
        ))
        .layer(protections.http_layers())
        .layer(axum::middleware::from_fn(extract::deprecation))
}

impl crate::api::rest::CreatedJob {
    /// The answer for `job_id`, with a stream token (minted by `minter`, the caller's principal
    /// id) when the edge issues them.
    pub fn new(job_id: String, state: &EdgeState, minter: Option<&str>) -> Self {
        let stream_token = state.stream_token(&job_id, minter);
        crate::api::rest::CreatedJob {
            job_id,
            stream_token,
        }
    }
}
