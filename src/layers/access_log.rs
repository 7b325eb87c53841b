//! The outermost layer: request id, client IP, trace context, one structured log line per
//! request/RPC, and request metrics.
//!
//! - `X-Request-ID` is echoed when the client sent a sane one (≤ 128 visible ASCII characters),
//!   else a new UUID; it is put back on the request (so handlers and the edge's gRPC client see
//!   it, see [`propagate_to_grpc`]), kept as a [`RequestId`] extension, and set on every response.
//! - A `request` span (OpenTelemetry name `METHOD route`) is parented on the W3C `traceparent` of
//!   the request, so an edge span → gRPC span chain forms a single trace.
//! - When the response head is ready: one `access` log line with method, route (a bounded label:
//!   ids as `{id}`, unknown paths `unmatched`), path, status, gRPC code, duration, request id,
//!   client IP, principal id (never the token) and job id when the path names one. Headers and
//!   query strings are never logged.
//! - Metrics: `http_requests_total` / `http_request_duration_seconds` on HTTP,
//!   `grpc_server_handled_total` / `grpc_server_handling_seconds` on gRPC; open streams count in
//!   `sse_clients` / `active_watchers` until their body is dropped.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response};
use opentelemetry::propagation::{Extractor, Injector};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::auth::Principal;
use super::client_ip::{ClientIp, TrustedProxies};
use super::streams::Guarded;
use super::{LayerBody, is_grpc};
use crate::api::routes::{RouteKind, UNMATCHED, classify, path_job_id, template};
use crate::metrics::{self, GrpcLabels, GrpcMethodLabels, HttpLabels, RouteLabels};

/// The request id of the current request (request and response extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

pub const REQUEST_ID: &str = "x-request-id";

fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    (!text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| text.to_string())
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// For the edge's gRPC client: copies the request id and the current span's trace context
/// (`traceparent`) into outgoing metadata, so the core's span is a child of the edge's.
pub fn propagate_to_grpc(
    request_id: Option<&RequestId>,
    metadata: &mut tonic::metadata::MetadataMap,
) {
    if let Some(id) = request_id
        && let Ok(value) = tonic::metadata::MetadataValue::try_from(id.0.as_str())
    {
        metadata.insert(REQUEST_ID, value);
    }
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut MetadataInjector(metadata));
    });
}

/// Every RPC path this process serves (from the proto descriptor, plus health and
/// reflection), so unknown gRPC paths share one label too.
fn known_rpc(path: &str) -> bool {
    static KNOWN: std::sync::LazyLock<std::collections::HashSet<String>> =
        std::sync::LazyLock::new(|| {
            use prost::Message;
            let mut known: std::collections::HashSet<String> = [
                "/grpc.health.v1.Health/Check",
                "/grpc.health.v1.Health/Watch",
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            ]
            .into_iter()
            .map(String::from)
            .collect();
            let set = prost_types::FileDescriptorSet::decode(crate::api::pb::FILE_DESCRIPTOR_SET)
                .unwrap_or_default();
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        known.insert(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
            known
        });
    KNOWN.contains(path)
}

/// Applies [`AccessLogService`].
#[derive(Clone)]
pub struct AccessLogLayer {
    transport: &'static str,
    trusted: Arc<TrustedProxies>,
}

impl AccessLogLayer {
    pub fn new(transport: &'static str, trusted: Arc<TrustedProxies>) -> Self {
        AccessLogLayer { transport, trusted }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLogService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessLogService {
            inner,
            transport: self.transport,
            trusted: self.trusted.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessLogService<S> {
    inner: S,
    transport: &'static str,
    trusted: Arc<TrustedProxies>,
}

/// Decrements the stream gauges when a stream's body is dropped.
struct StreamGauge {
    sse: bool,
}

impl StreamGauge {
    fn open(sse: bool) -> StreamGauge {
        let m = metrics::global();
        m.active_watchers.inc();
        if sse {
            m.sse_clients.inc();
        }
        StreamGauge { sse }
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        let m = metrics::global();
        m.active_watchers.dec();
        if self.sse {
            m.sse_clients.dec();
        }
    }
}

fn grpc_code<B>(response: &Response<B>) -> &str {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
}

impl<S, B, RB> Service<Request<B>> for AccessLogService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + Send + 'static,
    B: Send + 'static,
    RB: LayerBody,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        let grpc = is_grpc(&req);
        let transport = self.transport;
        let request_id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(sane_request_id)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let header_value = HeaderValue::from_str(&request_id).ok();
        if let Some(value) = &header_value {
            req.headers_mut().insert(REQUEST_ID, value.clone());
        }
        req.extensions_mut().insert(RequestId(request_id.clone()));
        let client_ip = self.trusted.client_ip(&req);
        if let Some(ip) = client_ip {
            req.extensions_mut().insert(ClientIp(ip));
        }
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let route = if grpc {
            if known_rpc(&path) {
                path.clone()
            } else {
                UNMATCHED.to_string()
            }
        } else {
            template(&path)
        };
        let job_id = path_job_id(&path).map(String::from);
        let is_stream = matches!(classify(&path), RouteKind::Stream { .. });
        let span = tracing::info_span!(
            "request",
            otel.name = %format!("{} {}", if grpc { "RPC" } else { method.as_str() }, route),
            otel.kind = "server",
            transport,
            rpc.system = if grpc { "grpc" } else { "" },
            http.request.method = %method,
            http.route = %route,
            request_id = %request_id,
        );
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(req.headers()))
        });
        let _ = span.set_parent(parent);
        let log_span = span.clone();
        Box::pin(
            async move {
                let outcome = inner.call(req).await;
                let elapsed = started.elapsed();
                let duration_ms = elapsed.as_secs_f64() * 1000.0;
                let client_ip = client_ip.map(|ip| ip.to_string()).unwrap_or_default();
                let mut response = match outcome {
                    Ok(response) => response,
                    Err(err) => {
                        tracing::warn!(%method, %route, %request_id, %client_ip, duration_ms, error = %err, "request failed");
                        return Err(err);
                    }
                };
                let status = response.status().as_u16();
                let code = if grpc { grpc_code(&response).to_string() } else { String::new() };
                let principal = response
                    .extensions()
                    .get::<Principal>()
                    .map(|p| p.id.clone())
                    .unwrap_or_default();
                tracing::info!(
                    target: "innerloop::access",
                    transport,
                    %method,
                    %route,
                    %path,
                    status,
                    grpc_code = %code,
                    duration_ms,
                    %request_id,
                    %client_ip,
                    principal = %principal,
                    job_id = job_id.as_deref().unwrap_or(""),
                    "request"
                );
                let m = metrics::global();
                if grpc {
                    let (service, rpc) = route
                        .trim_start_matches('/')
                        .split_once('/')
                        .unwrap_or((UNMATCHED, UNMATCHED));
                    m.grpc_handled
                        .get_or_create(&GrpcLabels {
                            grpc_service: service.into(),
                            grpc_method: rpc.into(),
                            grpc_code: code.clone(),
                        })
                        .inc();
                    m.grpc_duration
                        .get_or_create(&GrpcMethodLabels {
                            grpc_service: service.into(),
                            grpc_method: rpc.into(),
                        })
                        .observe(elapsed.as_secs_f64());
                } else {
                    m.http_requests
                        .get_or_create(&HttpLabels {
                            method: method.clone(),
                            route: route.clone(),
                            status,
                        })
                        .inc();
                    m.http_duration
                        .get_or_create(&RouteLabels { method, route })
                        .observe(elapsed.as_secs_f64());
                }
                if let Some(value) = header_value {
                    response.headers_mut().insert(REQUEST_ID, value);
                }
                response.extensions_mut().insert(RequestId(request_id));
                let streaming = is_stream && status == 200 && (code.is_empty() || code == "0");
                if streaming {
                    let gauge = StreamGauge::open(!grpc);
                    response = response.map(|body| RB::wrap(Guarded::new(body, gauge)));
                }
                Ok(response)
            }
            .instrument(log_span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_rpcs_share_one_label() {
        assert!(known_rpc("/innerloop.v1.JobService/GetJob"));
        assert!(!known_rpc("/innerloop.v1.JobService/Nope"));
    }

    #[test]
    fn only_sane_request_ids_are_echoed() {
        assert_eq!(
            sane_request_id(&HeaderValue::from_static("abc-1")),
            Some("abc-1".into())
        );
        assert_eq!(sane_request_id(&HeaderValue::from_static("a b")), None);
        let long = "x".repeat(129);
        assert_eq!(
            sane_request_id(&HeaderValue::from_str(&long).unwrap()),
            None
        );
    }
}
