//! The tower plumbing every simple guard shares: a [`Guard`] decides per request (pass it on
//! untouched, answer it with an error, or admit it holding a ticket) and wraps the inner call
//! of an admitted request; [`GuardLayer`] and [`GuardService`] do the rest (the clone-and-swap
//! of the inner service, boxing, answering in the request's protocol with [`super::reject`]).

use std::future::Future;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service};

use super::{LayerBody, is_grpc, reject};
use crate::error::Error;

/// What a guard decides about one request.
pub enum Verdict<T> {
    /// Not this guard's business: straight to the inner service.
    Pass,
    /// Answered here with this error (in the request's protocol).
    Reject(Error),
    /// Admitted: the inner call runs through [`Guard::run`] with this ticket.
    Admit(T),
}

/// One guard: its decision and what it does around an admitted call.
pub trait Guard: Clone + Send + Sync + 'static {
    /// What an admitted request holds (a permit, a stream slot, nothing).
    type Ticket: Send + 'static;

    fn admit<B>(&self, req: &Request<B>) -> Verdict<Self::Ticket>;

    /// Runs the inner `call` of an admitted request (`grpc`: the caller's protocol). By
    /// default the ticket is held until the response head is ready.
    fn run<RB, E, F>(
        &self,
        ticket: Self::Ticket,
        grpc: bool,
        call: F,
    ) -> BoxFuture<'static, Result<Response<RB>, E>>
    where
        RB: LayerBody,
        E: Send + 'static,
        F: Future<Output = Result<Response<RB>, E>> + Send + 'static,
    {
        let _ = grpc;
        Box::pin(async move {
            let response = call.await;
            drop(ticket);
            response
        })
    }
}

/// Applies [`GuardService`] with a guard `G`.
#[derive(Clone)]
pub struct GuardLayer<G>(pub G);

impl<S, G: Guard> Layer<S> for GuardLayer<G> {
    type Service = GuardService<S, G>;
    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            guard: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GuardService<S, G> {
    inner: S,
    guard: G,
}

impl<S, G, B, RB> Service<Request<B>> for GuardService<S, G>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    G: Guard,
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
        // The service that was polled ready serves this request; a fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match self.guard.admit(&req) {
            Verdict::Pass => Box::pin(inner.call(req)),
            Verdict::Reject(error) => {
                let answer = reject::<RB>(is_grpc(&req), &error);
                Box::pin(async move { Ok(answer) })
            }
            Verdict::Admit(ticket) => {
                let grpc = is_grpc(&req);
                self.guard.run(ticket, grpc, inner.call(req))
            }
        }
    }
}
