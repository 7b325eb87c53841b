//! `MAX_REQUEST_BYTES` on every request body, with or without `Content-Length` (chunked too).
//!
//! - A declared `Content-Length` over the limit is refused before the body is read.
//! - REST writes (any method but GET/HEAD) are read up to the limit and handed on as one buffer,
//!   so an overlong chunked body becomes a clean 413 `payload_too_large` rather than a failure
//!   inside an extractor. SSE GETs are exempt, as in the contract.
//! - gRPC bodies are streamed through a frame-aware check: any message whose length prefix is
//!   over the limit ends the request with RESOURCE_EXHAUSTED before it is buffered (tonic's own
//!   decode limit would say OUT_OF_RANGE). Streams of small messages (reflection) are unaffected.
//! - A gRPC message the decoder refuses (malformed, or nested past protobuf's recursion limit)
//!   is the caller's fault: [`decode_error_is_invalid_argument`] turns tonic's INTERNAL into
//!   INVALID_ARGUMENT without the decoder's field path.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::future::BoxFuture;
use http::{Method, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use super::{BoxError, LayerBody, is_grpc, reject};
use crate::error::Error;

/// Applies [`BodyLimitService`].
#[derive(Clone)]
pub struct BodyLimitLayer {
    limit: usize,
}

impl BodyLimitLayer {
    pub fn new(limit: usize) -> Self {
        BodyLimitLayer { limit }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyLimitService {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Clone)]
pub struct BodyLimitService<S> {
    inner: S,
    limit: usize,
}

/// Rewrites tonic's answer to an undecodable request message (INTERNAL, "failed to decode
/// Protobuf message: …") into INVALID_ARGUMENT with a message that names no internal path.
/// Wrap the gRPC server's services with it (`tower::util::MapResponseLayer`).
pub fn decode_error_is_invalid_argument<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    let internal = headers.get("grpc-status").is_some_and(|v| v == "13");
    let decode = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| {
            m.replace("%20", " ")
                .starts_with("failed to decode Protobuf message")
        });
    if internal && decode {
        let message = format!(
            "request message could not be decoded: malformed, or nested deeper than {} levels",
            crate::domain::depth::MAX_JSON_DEPTH
        );
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
        if let Ok(value) = http::HeaderValue::from_str(&message.replace(' ', "%20")) {
            headers.insert("grpc-message", value);
        }
    }
    response
}

fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl<S, B, RB> Service<Request<B>> for BodyLimitService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: LayerBody,
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
        let limit = self.limit;
        let grpc = is_grpc(&req);
        let too_large = Error::PayloadTooLarge { limit };
        if declared_length(&req).is_some_and(|len| len > limit as u64) {
            return Box::pin(async move { Ok(reject::<RB>(grpc, &too_large)) });
        }
        if grpc {
            let req = req.map(|body| {
                B::wrap(GrpcMessageLimit {
                    body,
                    limit,
                    header: Vec::with_capacity(5),
                    remaining: 0,
                })
            });
            return Box::pin(inner.call(req));
        }
        if matches!(*req.method(), Method::GET | Method::HEAD) {
            return Box::pin(inner.call(req));
        }
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            match http_body_util::Limited::new(body, limit).collect().await {
                Ok(collected) => {
                    let req = Request::from_parts(parts, B::full(collected.to_bytes()));
                    inner.call(req).await
                }
                Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                    Ok(reject::<RB>(false, &too_large))
                }
                Err(err) => {
                    tracing::debug!(error = %err, "request body ended early");
                    Ok(reject::<RB>(
                        false,
                        &Error::invalid(&["body"], "request body could not be read"),
                    ))
                }
            }
        })
    }
}

/// A gRPC request body that fails once a message declares a length over `limit`.
struct GrpcMessageLimit<B> {
    body: B,
    limit: usize,
    /// Bytes of the current 5-byte message header seen so far.
    header: Vec<u8>,
    /// Message bytes still to pass before the next header.
    remaining: usize,
}

impl<B> GrpcMessageLimit<B> {
    /// Scans a data chunk; `Err` when a header in it declares an oversized message.
    fn scan(&mut self, mut chunk: &[u8]) -> Result<(), tonic::Status> {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(chunk.len());
                self.remaining -= skip;
                chunk.advance(skip);
                continue;
            }
            let take = (5 - self.header.len()).min(chunk.len());
            self.header.extend_from_slice(&chunk[..take]);
            chunk.advance(take);
            if self.header.len() == 5 {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                self.header.clear();
                if len > self.limit {
                    // Encoded as the services encode errors, so an edge in front of this core
                    // answers 413 `payload_too_large`, not 429.
                    return Err(crate::api::status::status_from_error(
                        &Error::PayloadTooLarge { limit: self.limit },
                    ));
                }
                self.remaining = len;
            }
        }
        Ok(())
    }
}

impl<B> Body for GrpcMessageLimit<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref()
            && let Err(status) = self.scan(data)
        {
            return Poll::Ready(Some(Err(Box::new(status))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limit: usize) -> GrpcMessageLimit<http_body_util::Empty<Bytes>> {
        GrpcMessageLimit {
            body: http_body_util::Empty::new(),
            limit,
            header: Vec::new(),
            remaining: 0,
        }
    }

    fn frame(len: u32) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend(std::iter::repeat_n(7u8, len as usize));
        out
    }

    #[test]
    fn small_messages_pass_even_when_split_across_chunks() {
        let mut check = limiter(10);
        let mut stream = frame(10);
        stream.extend(frame(3));
        for chunk in stream.chunks(3) {
            assert!(check.scan(chunk).is_ok());
        }
    }

    #[test]
    fn an_oversized_length_prefix_is_refused_even_when_split() {
        let mut check = limiter(10);
        let big = frame(11);
        assert!(check.scan(&big[..2]).is_ok());
        let status = check.scan(&big[2..]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    }
}
