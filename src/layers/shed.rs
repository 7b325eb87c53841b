//! A global cap on requests in flight per transport (`MAX_CONCURRENT_REQUESTS`) with load
//! shedding: over the cap a request is answered at once with 503 `unavailable` / UNAVAILABLE
//! instead of waiting in an unbounded queue. A slot is held until the response head is ready;
//! long streams are bounded separately per principal ([`super::streams`]). Health and readiness
//! are never shed, so probes do not restart a busy but healthy process.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::{LayerBody, RouteKind, is_grpc, reject, route_kind};
use crate::error::Error;

/// The in-flight budget of one transport.
#[derive(Clone)]
pub struct Gate(Arc<Semaphore>);

impl Gate {
    pub fn new(max: usize) -> Gate {
        Gate(Arc::new(Semaphore::new(max)))
    }
}

/// Applies [`ShedService`].
#[derive(Clone)]
pub struct ShedLayer {
    gate: Gate,
}

impl ShedLayer {
    pub fn new(gate: Gate) -> Self {
        ShedLayer { gate }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = ShedService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ShedService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ShedService<S> {
    inner: S,
    gate: Gate,
}

impl<S, B, RB> Service<Request<B>> for ShedService<S>
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
        if route_kind(req.uri().path()) == RouteKind::Public {
            return Box::pin(inner.call(req));
        }
        let Ok(permit) = self.gate.0.clone().try_acquire_owned() else {
            let grpc = is_grpc(&req);
            return Box::pin(async move {
                Ok(reject::<RB>(
                    grpc,
                    &Error::Unavailable("server is at capacity, retry shortly".into()),
                ))
            });
        };
        Box::pin(async move {
            let response = inner.call(req).await;
            drop(permit);
            response
        })
    }
}
