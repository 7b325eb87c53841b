//! `REQUEST_TIMEOUT_S` on unary requests: past it the caller gets 504 `deadline_exceeded` /
//! DEADLINE_EXCEEDED and the handler is dropped. Streams (SSE, `WatchJob`, `Optimize`) and
//! public routes are never timed out: only the time to the response head is bounded here, and
//! streams have no such bound at all.

use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service};

use super::{LayerBody, RouteKind, is_grpc, reject_deadline, route_kind};

/// Applies [`UnaryTimeoutService`].
#[derive(Clone)]
pub struct UnaryTimeoutLayer {
    after: Duration,
}

impl UnaryTimeoutLayer {
    pub fn new(after: Duration) -> Self {
        UnaryTimeoutLayer { after }
    }
}

impl<S> Layer<S> for UnaryTimeoutLayer {
    type Service = UnaryTimeoutService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        UnaryTimeoutService {
            inner,
            after: self.after,
        }
    }
}

#[derive(Clone)]
pub struct UnaryTimeoutService<S> {
    inner: S,
    after: Duration,
}

impl<S, B, RB> Service<Request<B>> for UnaryTimeoutService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: LayerBody,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if route_kind(req.uri().path()) != RouteKind::Unary {
            return Box::pin(inner.call(req));
        }
        let grpc = is_grpc(&req);
        let after = self.after;
        Box::pin(async move {
            match tokio::time::timeout(after, inner.call(req)).await {
                Ok(response) => response,
                Err(_) => Ok(reject_deadline::<RB>(grpc, after)),
            }
        })
    }
}
