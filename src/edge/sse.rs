//! The SSE wire format of the contract, written by hand so every byte is ours:
//! `retry: N` prelude, `id:`/`event:`/`data:` frames with the contract's envelope
//! ([`crate::api::envelope`]), `:` pings while
//! idle, the end after the terminal event, and `event: error` for an upstream failure after the
//! first byte. Dropping the body (client gone, server stopping) drops the upstream watch.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::Stream;
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode, Version};
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use crate::api::envelope::EventEnvelope;
use crate::api::pb;

/// The comment frame sent while idle.
pub const PING: &[u8] = b":\n\n";

/// `retry: <ms>` and a blank line.
pub fn prelude(retry_ms: u64) -> Bytes {
    Bytes::from(format!("retry: {retry_ms}\n\n"))
}

/// One named event: `id`, `event` and a single `data` line with the compact envelope.
pub fn event_frame(event: &EventEnvelope) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.id, event.name, event.json
    ))
}

/// The `error` event sent when the upstream fails after the stream started.
pub fn error_frame(error: &ApiError) -> Bytes {
    Bytes::from(format!(
        "event: error\ndata: {}\n\n",
        error.body().to_json()
    ))
}

/// The resume point: `Last-Event-ID` when present and non-empty (it shadows the query), else
/// `?last_event_id=`; only an all-digit value counts, anything else means 0.
pub fn resume_point(headers: &HeaderMap, query_value: Option<&str>) -> u64 {
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let raw = header.or(query_value).unwrap_or("");
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse().unwrap_or(0)
    } else {
        0
    }
}

enum Stage {
    Prelude,
    Events,
    Done,
}

struct EventsBody {
    stage: Stage,
    retry_ms: u64,
    ping: Duration,
    upstream: tonic::Streaming<pb::JobEvent>,
    stop: CancellationToken,
    /// Set once `stop` fires: until then the stream keeps relaying what is already on its way
    /// (the core's `shutdown` events, published just before the edge is told to stop).
    drain_until: Option<tokio::time::Instant>,
}

/// How long a stopping stream keeps relaying upstream events before it ends anyway.
const STOP_DRAIN: Duration = Duration::from_millis(500);

/// The byte stream of one SSE response.
fn frames(body: EventsBody) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    futures_util::stream::unfold(body, |mut body| async move {
        match body.stage {
            Stage::Prelude => {
                body.stage = Stage::Events;
                let prelude = prelude(body.retry_ms);
                return Some((Ok(prelude), body));
            }
            Stage::Done => return None,
            Stage::Events => {}
        }
        loop {
            let draining = body.drain_until;
            let next = tokio::select! {
                biased;
                next = body.upstream.message() => next,
                _ = body.stop.cancelled(), if draining.is_none() => {
                    body.drain_until = Some(tokio::time::Instant::now() + STOP_DRAIN);
                    continue;
                }
                _ = tokio::time::sleep_until(draining.unwrap_or_else(tokio::time::Instant::now)),
                    if draining.is_some() => return None,
                _ = tokio::time::sleep(body.ping) => {
                    return Some((Ok(Bytes::from_static(PING)), body));
                }
            };
            match next {
                Ok(Some(message)) => {
                    // A payload this build does not know (a newer core) is skipped.
                    let Ok(event) = EventEnvelope::try_from(message) else {
                        continue;
                    };
                    if event.terminal {
                        body.stage = Stage::Done;
                    }
                    return Some((Ok(event_frame(&event)), body));
                }
                Ok(None) => return None,
                Err(status) => {
                    body.stage = Stage::Done;
                    let error = ApiError::from_status(&status);
                    return Some((Ok(error_frame(&error)), body));
                }
            }
        }
    })
}

/// What the SSE responses read of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SseConfig {
    /// The `retry:` a client waits before reconnecting (`SSE_RETRY_MS`).
    pub retry_ms: u64,
    /// Comment lines keep an idle stream open this often (`SSE_PING_INTERVAL_S`).
    pub ping: Duration,
}

/// The `200 text/event-stream` response over an upstream watch (already opened, so errors
/// before the first byte were plain HTTP errors). Ends when `stop` is cancelled.
pub fn response(
    config: &SseConfig,
    version: Version,
    upstream: tonic::Streaming<pb::JobEvent>,
    stop: CancellationToken,
) -> Response {
    let body = Body::from_stream(frames(EventsBody {
        stage: Stage::Prelude,
        retry_ms: config.retry_ms,
        ping: config.ping,
        upstream,
        stop,
        drain_until: None,
    }));
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    set_headers(response.headers_mut(), version);
    response
}

/// The SSE response headers; `Connection` only on HTTP/1.1 (HTTP/2 forbids it).
fn set_headers(headers: &mut HeaderMap, version: Version) {
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if version == Version::HTTP_11 {
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Event, EventPayload};
    use crate::error::ErrorCode;

    #[test]
    fn frames_are_byte_exact() {
        let event = Event {
            id: 8,
            job_id: "j1".into(),
            ts: 1722033641.11,
            payload: EventPayload::Mutation { count: 3 },
        };
        assert_eq!(
            event_frame(&EventEnvelope::try_from(pb::JobEvent::from(event)).unwrap()),
            Bytes::from_static(
                b"id: 8\nevent: mutation\ndata: {\"type\":\"mutation\",\"schema_version\":1,\"job_id\":\"j1\",\"ts\":1722033641.11,\"id\":8,\"data\":{\"count\":3}}\n\n"
            )
        );
        assert_eq!(prelude(1500), Bytes::from_static(b"retry: 1500\n\n"));
        let error = ApiError::new(ErrorCode::Unavailable, "gone");
        assert_eq!(
            error_frame(&error),
            Bytes::from_static(
                b"event: error\ndata: {\"error\":{\"code\":\"unavailable\",\"message\":\"gone\",\"details\":{}}}\n\n"
            )
        );
    }

    #[test]
    fn connection_header_only_on_http1() {
        let mut h1 = HeaderMap::new();
        set_headers(&mut h1, Version::HTTP_11);
        assert_eq!(h1["connection"], "keep-alive");
        assert_eq!(h1["content-type"], "text/event-stream; charset=utf-8");
        let mut h2 = HeaderMap::new();
        set_headers(&mut h2, Version::HTTP_2);
        assert!(h2.get("connection").is_none());
        assert_eq!(h2["x-accel-buffering"], "no");
    }

    #[test]
    fn resume_point_prefers_a_non_empty_header_and_needs_digits() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_point(&headers, Some("4")), 4);
        assert_eq!(resume_point(&headers, Some("-1")), 0);
        assert_eq!(resume_point(&headers, Some("4x")), 0);
        headers.insert("last-event-id", HeaderValue::from_static(""));
        assert_eq!(resume_point(&headers, Some("4")), 4);
        headers.insert("last-event-id", HeaderValue::from_static("7"));
        assert_eq!(resume_point(&headers, Some("4")), 7);
        headers.insert("last-event-id", HeaderValue::from_static("abc"));
        assert_eq!(resume_point(&headers, Some("4")), 0);
    }
}
