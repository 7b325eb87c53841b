//! A cap on concurrent long streams (SSE `/events`, `WatchJob`, `Optimize`) per principal, or
//! per client IP when anonymous: long streams are not "requests per minute". The slot is held
//! by the response body and freed when the stream ends or the client goes away. Over the cap:
//! 429 `rate_limited` / RESOURCE_EXHAUSTED with `Retry-After: 1`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};

use super::LayerBody;
use super::auth::Principal;
use super::client_ip::ClientIp;
use super::guard::{Guard, GuardLayer, Verdict};
use crate::api::routes::{RouteKind, classify};
use crate::error::Error;

/// Open streams per key.
#[derive(Clone)]
pub struct StreamCounter {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream; releases its slot on drop.
pub struct StreamSlot {
    key: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(count) = open.get_mut(&self.key)
        {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl StreamCounter {
    pub fn new(max: usize) -> StreamCounter {
        StreamCounter {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for `key`, or `None` when it already has `max` open streams.
    pub fn try_open(&self, key: &str) -> Option<StreamSlot> {
        let mut open = self.open.lock().ok()?;
        let count = open.entry(key.to_string()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            key: key.to_string(),
            open: self.open.clone(),
        })
    }

    /// Streams open for `key` (tests and metrics).
    pub fn open_for(&self, key: &str) -> usize {
        self.open
            .lock()
            .map(|o| o.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// A body that keeps `guard` alive until the body is dropped.
pub struct Guarded<B, G> {
    body: B,
    _guard: G,
}

impl<B, G> Guarded<B, G> {
    pub fn new(body: B, guard: G) -> Self {
        Guarded {
            body,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin, G: Unpin> Body for Guarded<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The key of a request for per-caller accounting.
pub fn caller_key<B>(req: &Request<B>) -> String {
    match (
        req.extensions().get::<Principal>(),
        req.extensions().get::<ClientIp>(),
    ) {
        (Some(principal), _) => format!("p:{}", principal.id),
        (None, Some(ip)) => format!("ip:{}", ip.0),
        (None, None) => "ip:unknown".into(),
    }
}

/// The per-principal stream cap.
#[derive(Clone)]
pub struct StreamCap(StreamCounter);

/// Applies the stream cap.
pub type StreamCapLayer = GuardLayer<StreamCap>;

impl StreamCapLayer {
    pub fn new(counter: StreamCounter) -> Self {
        GuardLayer(StreamCap(counter))
    }
}

impl Guard for StreamCap {
    /// The caller's stream slot, held by the response body until the stream ends.
    type Ticket = StreamSlot;

    fn admit<B>(&self, req: &Request<B>) -> Verdict<StreamSlot> {
        if !matches!(classify(req.uri().path()), RouteKind::Stream { .. }) {
            return Verdict::Pass;
        }
        match self.0.try_open(&caller_key(req)) {
            Some(slot) => Verdict::Admit(slot),
            None => Verdict::Reject(Error::RateLimited { retry_after_s: 1 }),
        }
    }

    fn run<RB, E, F>(
        &self,
        slot: StreamSlot,
        _grpc: bool,
        call: F,
    ) -> BoxFuture<'static, Result<Response<RB>, E>>
    where
        RB: LayerBody,
        E: Send + 'static,
        F: Future<Output = Result<Response<RB>, E>> + Send + 'static,
    {
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|body| RB::wrap(Guarded::new(body, slot))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_key_and_freed_on_drop() {
        let counter = StreamCounter::new(2);
        let a = counter.try_open("p:a").unwrap();
        let _b = counter.try_open("p:a").unwrap();
        assert!(counter.try_open("p:a").is_none());
        assert!(counter.try_open("p:other").is_some());
        drop(a);
        assert_eq!(counter.open_for("p:a"), 1);
        assert!(counter.try_open("p:a").is_some());
    }
}
