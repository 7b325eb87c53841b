//! A global cap on requests in flight per transport (`MAX_CONCURRENT_REQUESTS`) with load
//! shedding: over the cap a request is answered at once with 503 `unavailable` / UNAVAILABLE
//! instead of waiting in an unbounded queue. A slot is held until the response head is ready;
//! long streams are bounded separately per principal ([`super::streams`]). Health and readiness
//! are never shed, so probes do not restart a busy but healthy process.

use std::sync::Arc;

use http::Request;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::guard::{Guard, GuardLayer, Verdict};
use crate::api::routes::{RouteKind, classify};
use crate::error::Error;

/// The in-flight budget of one transport.
#[derive(Clone)]
pub struct Gate(Arc<Semaphore>);

impl Gate {
    pub fn new(max: usize) -> Gate {
        Gate(Arc::new(Semaphore::new(max)))
    }
}

/// The shedding guard of one transport.
#[derive(Clone)]
pub struct Shed(Gate);

/// Applies the shedding guard.
pub type ShedLayer = GuardLayer<Shed>;

impl ShedLayer {
    pub fn new(gate: Gate) -> Self {
        GuardLayer(Shed(gate))
    }
}

impl Guard for Shed {
    /// A slot of the in-flight budget, held until the response head is ready (the default
    /// [`Guard::run`]).
    type Ticket = OwnedSemaphorePermit;

    fn admit<B>(&self, req: &Request<B>) -> Verdict<OwnedSemaphorePermit> {
        if classify(req.uri().path()) == RouteKind::Public {
            return Verdict::Pass;
        }
        match self.0.0.clone().try_acquire_owned() {
            Ok(permit) => Verdict::Admit(permit),
            Err(_) => Verdict::Reject(Error::Unavailable(
                "server is at capacity, retry shortly".into(),
            )),
        }
    }
}
