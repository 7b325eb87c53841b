//! Rate limiting with tower_governor: a token bucket per verified principal (set by the auth
//! layer, which runs first), or per client IP when anonymous (auth off). Never keyed on
//! unverified input. `RATE_LIMIT_PER_MIN` refills, `RATE_LIMIT_BURST` is the bucket size.
//!
//! When limited: HTTP 429 with the contract's body, `Retry-After` (whole seconds, rounded up,
//! never 0), `X-RateLimit-Limit` and `X-RateLimit-Remaining: 0`; gRPC RESOURCE_EXHAUSTED with
//! `retry-after` metadata. Admitted responses carry `X-RateLimit-Limit/Remaining` too. Public
//! routes (health, readiness, reflection) are not limited. State is pruned by the maintenance
//! task of [`super::Protections`].

use std::marker::PhantomData;
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use governor::middleware::StateInformationMiddleware;
use http::{Request, Response};
use tower::{Layer, Service};
use tower_governor::GovernorError;
use tower_governor::governor::{Governor, GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;

use super::auth::Principal;
use super::client_ip::ClientIp;
use super::{LayerBody, is_grpc, reject};
use crate::api::routes::{RouteKind, classify};
use crate::error::Error;

/// Keys requests on the verified principal, else on the client IP.
#[derive(Debug, Clone, Copy)]
pub struct PrincipalOrIp;

impl KeyExtractor for PrincipalOrIp {
    type Key = String;

    fn extract<T>(&self, req: &Request<T>) -> Result<String, GovernorError> {
        if let Some(principal) = req.extensions().get::<Principal>() {
            return Ok(format!("p:{}", principal.id));
        }
        let ip = req
            .extensions()
            .get::<ClientIp>()
            .map(|c| c.0)
            .or_else(|| super::client_ip::peer_addr(req).map(|a| a.ip()));
        Ok(match ip {
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => format!("ip:{v4}"),
                None => format!("ip:{v6}"),
            },
            Some(ip) => format!("ip:{ip}"),
            None => "ip:unknown".to_string(),
        })
    }
}

/// The governor configuration (and its limiter) of one transport.
pub type LimiterConfig = GovernorConfig<PrincipalOrIp, StateInformationMiddleware>;

/// What the rate limit reads of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests per minute per principal or client IP (`RATE_LIMIT_PER_MIN`).
    pub per_min: u32,
    /// Requests above the rate a client may burst (`RATE_LIMIT_BURST`).
    pub burst: u32,
}

/// Builds the limiter of one transport.
pub fn limiter_config(config: &RateLimitConfig) -> LimiterConfig {
    let per_min = u64::from(config.per_min.max(1));
    let period = Duration::from_nanos(60_000_000_000 / per_min);
    GovernorConfigBuilder::default()
        .period(period)
        .burst_size(config.burst.max(1))
        .key_extractor(PrincipalOrIp)
        .use_headers()
        .finish()
        .expect("period and burst are non-zero")
}

/// Marks governor's rejection so [`RateLimitService`] can answer in the request's protocol.
#[derive(Debug, Clone, Copy)]
struct Limited {
    retry_after_s: u64,
}

fn marker<RB: LayerBody>(error: GovernorError) -> Response<RB> {
    let (retry_after_s, headers) = match error {
        // governor truncates the wait to whole seconds; the true wait is below `wait + 1`.
        GovernorError::TooManyRequests { wait_time, headers } => (wait_time + 1, headers),
        _ => (1, None),
    };
    let mut response = Response::new(RB::default());
    if let Some(headers) = headers {
        *response.headers_mut() = headers;
    }
    response.extensions_mut().insert(Limited { retry_after_s });
    response
}

/// Applies [`RateLimitService`].
pub struct RateLimitLayer<RB> {
    config: std::sync::Arc<LimiterConfig>,
    _body: PhantomData<fn() -> RB>,
}

impl<RB> Clone for RateLimitLayer<RB> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            config: self.config.clone(),
            _body: PhantomData,
        }
    }
}

impl<RB> RateLimitLayer<RB> {
    pub fn new(config: std::sync::Arc<LimiterConfig>) -> Self {
        RateLimitLayer {
            config,
            _body: PhantomData,
        }
    }
}

impl<S: Clone, RB: LayerBody> Layer<S> for RateLimitLayer<RB> {
    type Service = RateLimitService<S, RB>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            limited: Governor::new(inner.clone(), &self.config).error_handler(marker::<RB>),
            inner,
        }
    }
}

/// The governor around the inner service, bypassed for public routes.
pub struct RateLimitService<S, RB> {
    inner: S,
    limited: Governor<PrincipalOrIp, StateInformationMiddleware, S, RB>,
}

impl<S: Clone, RB> Clone for RateLimitService<S, RB> {
    fn clone(&self) -> Self {
        RateLimitService {
            inner: self.inner.clone(),
            limited: self.limited.clone(),
        }
    }
}

impl<S, B, RB> Service<Request<B>> for RateLimitService<S, RB>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: LayerBody,
    Response<RB>: From<GovernorError>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        // Both paths end in clones of the same inner service.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if classify(req.uri().path()) == RouteKind::Public {
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(inner.call(req));
        }
        let grpc = is_grpc(&req);
        // The governor forwards `poll_ready` to its own inner clone; drive it on a fresh clone.
        let mut limited = self.limited.clone();
        let clone = self.inner.clone();
        limited.inner = std::mem::replace(&mut self.inner, clone);
        let future = limited.call(req);
        Box::pin(async move {
            let response = future.await?;
            let Some(Limited { retry_after_s }) = response.extensions().get::<Limited>().copied()
            else {
                return Ok(response);
            };
            let mut answer = reject::<RB>(grpc, &Error::RateLimited { retry_after_s });
            for name in ["x-ratelimit-limit", "x-ratelimit-remaining"] {
                if let Some(value) = response.headers().get(name) {
                    answer.headers_mut().insert(name, value.clone());
                }
            }
            Ok(answer)
        })
    }
}
