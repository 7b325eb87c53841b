//! `REQUEST_TIMEOUT_S` on unary requests: past it the caller gets 504 `deadline_exceeded` /
//! DEADLINE_EXCEEDED and the handler is dropped. Streams (SSE, `WatchJob`, `Optimize`) and
//! public routes are never timed out: only the time to the response head is bounded here, and
//! streams have no such bound at all.

use std::future::Future;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Request, Response};

use super::guard::{Guard, GuardLayer, Verdict};
use super::{LayerBody, reject_deadline};
use crate::api::routes::{RouteKind, classify};

/// The unary deadline.
#[derive(Clone)]
pub struct UnaryTimeout {
    after: Duration,
}

/// Applies the unary deadline.
pub type UnaryTimeoutLayer = GuardLayer<UnaryTimeout>;

impl UnaryTimeoutLayer {
    pub fn new(after: Duration) -> Self {
        GuardLayer(UnaryTimeout { after })
    }
}

impl Guard for UnaryTimeout {
    type Ticket = ();

    fn admit<B>(&self, req: &Request<B>) -> Verdict<()> {
        if classify(req.uri().path()) == RouteKind::Unary {
            Verdict::Admit(())
        } else {
            Verdict::Pass
        }
    }

    fn run<RB, E, F>(
        &self,
        (): (),
        grpc: bool,
        call: F,
    ) -> BoxFuture<'static, Result<Response<RB>, E>>
    where
        RB: LayerBody,
        E: Send + 'static,
        F: Future<Output = Result<Response<RB>, E>> + Send + 'static,
    {
        let after = self.after;
        Box::pin(async move {
            match tokio::time::timeout(after, call).await {
                Ok(response) => response,
                Err(_) => Ok(reject_deadline::<RB>(grpc, after)),
            }
        })
    }
}
