//! Extractors and middleware whose failures come out in the contract's error envelope: JSON
//! bodies, query strings, path ids, the request id, and the call metadata that carries the
//! request id and trace context into gRPC.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::error::ErrorCode;

/// The request id of this request (echoed from `X-Request-ID`, else a new UUID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

pub const X_REQUEST_ID: &str = "x-request-id";

fn acceptable_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty() && text.len() <= 200 && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| text.to_string())
}

/// Middleware: assigns the request id and puts it on every response.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(acceptable_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

/// Unversioned paths of the original and their `/v1` successors.
const DEPRECATED: [(&str, &str); 3] = [
    ("/healthz", "/v1/healthz"),
    ("/readyz", "/v1/readyz"),
    ("/optimize", "/v1/optimize"),
];

/// Middleware: `Deprecation: true` and the successor `Link` on every response of a legacy path.
pub async fn deprecation(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let successor = DEPRECATED.iter().find_map(|(old, new)| {
        let matches = path == *old
            || path
                .strip_prefix(old)
                .is_some_and(|rest| rest.starts_with('/'));
        matches.then_some(*new)
    });
    let mut response = next.run(req).await;
    if let Some(new) = successor
        && let Ok(link) = HeaderValue::from_str(&format!("<{new}>; rel=\"successor-version\""))
    {
        let headers = response.headers_mut();
        headers.insert("deprecation", HeaderValue::from_static("true"));
        headers.insert(http::header::LINK, link);
    }
    response
}

/// Headers passed through unchanged into gRPC metadata: W3C trace context, and the bearer
/// token (a core that authenticates its gRPC callers sees the HTTP client's credentials).
const PASSED_THROUGH: [&str; 3] = ["traceparent", "tracestate", "authorization"];

/// What flows from the HTTP request into gRPC metadata.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    request_id: Option<String>,
    passed_through: Vec<(&'static str, HeaderValue)>,
    /// From the shared layers: the credential (also an SSE `?access_token=`), the client IP and
    /// the current span's trace context; overrides the passed-through headers.
    forwarded: tonic::metadata::MetadataMap,
    /// The authenticated caller's principal id (set by the auth layer), for stream tokens.
    principal_id: Option<String>,
}

impl CallContext {
    /// The authenticated caller's principal id, when auth is on.
    pub fn principal_id(&self) -> Option<&str> {
        self.principal_id.as_deref()
    }

    /// A gRPC request carrying `x-request-id`, and the passed-through headers when present.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        if let Some(id) = self.request_id.as_deref()
            && let Ok(value) = id.parse()
        {
            metadata.insert(X_REQUEST_ID, value);
        }
        for (name, value) in &self.passed_through {
            if let Ok(text) = value.to_str()
                && let Ok(value) = text.parse()
            {
                metadata.insert(*name, value);
            }
        }
        for entry in self.forwarded.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = entry {
                metadata.insert(key.clone(), value.clone());
            }
        }
        request
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CallContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(CallContext {
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
            passed_through: PASSED_THROUGH
                .iter()
                .filter_map(|name| Some((*name, parts.headers.get(*name)?.clone())))
                .collect(),
            principal_id: parts
                .extensions
                .get::<crate::layers::auth::Principal>()
                .map(|p| p.id.clone()),
            forwarded: {
                let mut forwarded = tonic::metadata::MetadataMap::new();
                crate::layers::forward::forward_to_core(parts, &mut forwarded);
                forwarded
            },
        })
    }
}

/// The `{job_id}` path segment (of the documented shape, else 422).
pub struct JobIdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => match crate::api::jobs::job_id_path_segment(&id) {
                Ok(()) => Ok(JobIdPath(id)),
                Err(message) => Err(ApiError::invalid(&["path", "job_id"], message)),
            },
            Err(rejection) => Err(ApiError::invalid(
                &["path", "job_id"],
                rejection.body_text(),
            )),
        }
    }
}

/// The query string as ordered pairs; each route reads what it knows and ignores the rest.
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    /// The last value of `name`, as the original's framework reads it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An optional integer parameter; a non-integer is a 422 at `["query", name]`.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => raw.trim().parse::<i64>().map(Some).map_err(|_| {
                ApiError::invalid(
                    &["query", name],
                    "Input should be a valid integer, unable to parse string as an integer",
                )
            }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(Query(pairs)) => Ok(QueryPairs(pairs)),
            Err(rejection) => Err(ApiError::invalid(&["query"], rejection.body_text())),
        }
    }
}

/// A JSON body. Wrong content type → 415; unreadable or invalid JSON → 422 with
/// `details.errors[].loc` starting at `body` (also for a body nested deeper than
/// [`crate::domain::depth::MAX_JSON_DEPTH`] levels); too large → 413. All in the error envelope.
pub struct JsonBody<T>(pub T);

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Strips serde_json's ` at line N column M` suffix.
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

/// The name between the first pair of backticks of a serde message.
fn quoted_name(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let mut loc: Vec<String> = vec!["body".into()];
    for segment in err.path().iter() {
        use serde_path_to_error::Segment;
        match segment {
            Segment::Seq { index } => loc.push(index.to_string()),
            Segment::Map { key } => loc.push(key.clone()),
            Segment::Enum { variant } => loc.push(variant.clone()),
            Segment::Unknown => {}
        }
    }
    let inner = err.into_inner();
    let text = inner.to_string();
    let message = without_position(&text);
    let msg = if !inner.is_data() {
        "JSON decode error".to_string()
    } else if message.starts_with("missing field") {
        if let Some(name) = quoted_name(message) {
            loc.push(name.to_string());
        }
        "Field required".to_string()
    } else if message.starts_with("unknown field") {
        if let Some(name) = quoted_name(message)
            && loc.last().map(String::as_str) != Some(name)
        {
            loc.push(name.to_string());
        }
        "Extra inputs are not permitted".to_string()
    } else {
        message.to_string()
    };
    let loc_refs: Vec<&str> = loc.iter().map(String::as_str).collect();
    ApiError::invalid(&loc_refs, msg)
}

/// Rewrites every number with no fractional part written as a float (`470.0`) as an integer,
/// within ±2^53 (where floats are exact).
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= 9_007_199_254_740_992.0
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                "Content-Type must be application/json",
            )
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "request body too large")
            } else {
                ApiError::invalid(&["body"], rejection.body_text())
            }
        })?;
        // Before parsing: a body nested past the limit is refused naming where, not handed to
        // a decoder that would fail deep inside the core.
        use crate::domain::depth::{MAX_JSON_DEPTH, first_too_deep, message};
        if let Some(path) = first_too_deep(&bytes, MAX_JSON_DEPTH) {
            let loc: Vec<&str> = std::iter::once("body")
                .chain(path.iter().map(String::as_str))
                .collect();
            return Err(ApiError::invalid(&loc, message()));
        }
        // JSON Schema counts 470.0 as an integer: integral numbers written with a fraction are
        // read as integers (float fields take integers unchanged). Unparseable JSON keeps the
        // typed parser's error.
        if let Ok(mut tree) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            integral_floats_as_integers(&mut tree);
            let value: T = serde_path_to_error::deserialize(tree).map_err(json_error)?;
            return Ok(JsonBody(value));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
        de.end()
            .map_err(|_| ApiError::invalid(&["body"], "JSON decode error"))?;
        Ok(JsonBody(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        prompt: String,
        items: Option<Vec<Inner>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        input: String,
    }

    fn error_of(json: &str) -> serde_json::Value {
        let mut de = serde_json::Deserializer::from_str(json);
        let err = serde_path_to_error::deserialize::<_, Outer>(&mut de).unwrap_err();
        json_error(err).details["errors"][0].clone()
    }

    #[test]
    fn json_errors_point_at_the_field() {
        assert_eq!(
            error_of(r#"{"prompt":"p","x":1}"#),
            serde_json::json!({"loc":["body","x"],"msg":"Extra inputs are not permitted"})
        );
        assert_eq!(
            error_of(r#"{"items":[]}"#),
            serde_json::json!({"loc":["body","prompt"],"msg":"Field required"})
        );
        assert_eq!(
            error_of(r#"{"prompt":"p","items":[{"input":"a","ideal":"b"}]}"#)["loc"],
            serde_json::json!(["body", "items", "0", "ideal"])
        );
        assert_eq!(
            error_of(r#"{"prompt":"#)["msg"],
            serde_json::json!("JSON decode error")
        );
    }
}
