//! What the edge forwards to the core on every gRPC call it makes for a REST request, so both
//! transports see the same caller: the credential (the `Authorization` header, or the SSE
//! `?access_token=` as `authorization: Bearer <stream token>`, which the core accepts on
//! `WatchJob` of that job only), `x-request-id`, `x-forwarded-for` (the client IP: the core
//! believes it only when the edge's address is in `TRUSTED_PROXIES`) and the W3C `traceparent`
//! of the current span (so the core's span is a child of the edge's).

use http::request::Parts;
use tonic::metadata::{MetadataMap, MetadataValue};

use super::access_log::{RequestId, propagate_to_grpc};
use super::client_ip::ClientIp;

/// Copies the caller's identity and context from an incoming REST request into the metadata of
/// an outgoing gRPC request. Call it inside the handler (the current span is the request's).
pub fn forward_to_core(incoming: &Parts, metadata: &mut MetadataMap) {
    let authorization = incoming
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| MetadataValue::try_from(v.as_bytes()).ok())
        .or_else(|| {
            let token = incoming
                .uri
                .query()?
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| *key == "access_token")?
                .1;
            MetadataValue::try_from(format!("Bearer {token}")).ok()
        });
    if let Some(value) = authorization {
        metadata.insert("authorization", value);
    }
    if let Some(ClientIp(ip)) = incoming.extensions.get::<ClientIp>()
        && let Ok(value) = MetadataValue::try_from(ip.to_string())
    {
        metadata.insert("x-forwarded-for", value);
    }
    propagate_to_grpc(incoming.extensions.get::<RequestId>(), metadata);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_context_are_forwarded() {
        let (mut parts, ()) = http::Request::builder()
            .uri("/v1/optimize/j/events?access_token=123.abc")
            .body(())
            .unwrap()
            .into_parts();
        parts.extensions.insert(RequestId("r-1".into()));
        parts
            .extensions
            .insert(ClientIp("203.0.113.5".parse().unwrap()));
        let mut metadata = MetadataMap::new();
        forward_to_core(&parts, &mut metadata);
        assert_eq!(metadata.get("authorization").unwrap(), "Bearer 123.abc");
        assert_eq!(metadata.get("x-request-id").unwrap(), "r-1");
        assert_eq!(metadata.get("x-forwarded-for").unwrap(), "203.0.113.5");

        parts
            .headers
            .insert("authorization", "Bearer tok".parse().unwrap());
        let mut metadata = MetadataMap::new();
        forward_to_core(&parts, &mut metadata);
        assert_eq!(metadata.get("authorization").unwrap(), "Bearer tok");
    }
}
