//! The shared layers on the real edge (`innerloop serve`: edge + core in one process): auth on
//! every route, stream tokens for SSE, floods, body limits, the slowloris guard, request ids,
//! logs without tokens and metrics — the same rules the gRPC tests check on the core.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::layers::{TOKEN, capture_logs, settings, start_core};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Every route of the contract that the edge serves (and the aliases), with a body that is valid
/// where one is needed.
const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/v1/version"),
    ("POST", "/v1/optimize"),
    ("GET", "/v1/optimize/no-such-job"),
    ("DELETE", "/v1/optimize/no-such-job"),
    ("GET", "/v1/optimize/no-such-job/events"),
    ("POST", "/v1/optimize/no-such-job/stream-token"),
    ("GET", "/v1/admin/jobs"),
    ("GET", "/v1/admin/jobs/no-such-job"),
    ("POST", "/v1/admin/jobs/no-such-job/cancel"),
    ("DELETE", "/v1/admin/jobs/no-such-job"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/version"),
    ("POST", "/optimize"),
    ("GET", "/optimize/no-such-job"),
];

#[tokio::test]
async fn every_edge_route_requires_a_valid_token_except_probes_and_metrics() {
    let core = start_core(settings()).await;
    for (method, path) in PROTECTED {
        let method: reqwest::Method = method.parse().unwrap();
        let request = |token: Option<&str>| {
            let mut request = client()
                .request(method.clone(), core.edge(path))
                .header("content-type", "application/json")
                .body(r#"{"prompt":"p"}"#);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        for token in [None, Some("wrong-token")] {
            let response = request(token).await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
            assert!(response.headers().contains_key("x-request-id"));
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
        }
        let response = request(Some(TOKEN)).await.unwrap();
        assert_ne!(response.status(), 401, "{method} {path} with the token");
        assert!(
            response.status().as_u16() < 500,
            "{method} {path}: {}",
            response.status()
        );
    }
    for path in [
        "/v1/healthz",
        "/v1/readyz",
        "/healthz",
        "/readyz",
        "/v1/metrics",
        "/metricsz",
    ] {
        let response = client().get(core.edge(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} is public");
    }
    core.stop.cancel();
}

async fn create_job(core: &support::layers::Core) -> String {
    let created: Value = client()
        .post(core.edge("/v1/optimize"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"prompt": "p"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["job_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_browser_watches_with_a_stream_token_through_the_edge_and_core() {
    let core = start_core(settings()).await;
    let job_id = create_job(&core).await;
    let other_job = create_job(&core).await;
    let issued: Value = client()
        .post(core.edge(&format!("/v1/optimize/{job_id}/stream-token")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = issued["stream_token"].as_str().unwrap();
    let events = client()
        .get(core.edge(&format!(
            "/v1/optimize/{job_id}/events?access_token={token}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = events.bytes_stream();
    use futures_util::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("an event arrives")
        .unwrap()
        .unwrap();
    assert!(!first.is_empty());
    let refused = client()
        .get(core.edge(&format!(
            "/v1/optimize/{other_job}/events?access_token={token}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "a token opens only its own job");
    core.stop.cancel();
}

#[tokio::test]
async fn an_edge_flood_gets_429_with_the_contract_body() {
    let core = start_core(innerloop::config::Settings {
        rate_limit_per_min: 1,
        rate_limit_burst: 2,
        ..settings()
    })
    .await;
    let get = || {
        client()
            .get(core.edge("/v1/admin/jobs"))
            .bearer_auth(TOKEN)
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(get().await.unwrap().status(), 200);
    let limited = get().await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(limited.headers()["x-ratelimit-limit"], "2");
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    core.stop.cancel();
}

#[tokio::test]
async fn oversized_creates_get_413_with_and_without_content_length() {
    let core = start_core(innerloop::config::Settings {
        max_request_bytes: 200,
        ..settings()
    })
    .await;
    let big = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(300));
    let declared = client()
        .post(core.edge("/v1/optimize"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    let body: Value = declared.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = big
        .into_bytes()
        .chunks(50)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let chunked = client()
        .post(core.edge("/v1/optimize"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), 413);
    let body: Value = chunked.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    core.stop.cancel();
}

#[tokio::test]
async fn a_slow_header_client_is_dropped_by_the_edge() {
    let core = start_core(innerloop::config::Settings {
        header_read_timeout_s: 0.3,
        ..settings()
    })
    .await;
    let mut socket = tokio::net::TcpStream::connect(core.http).await.unwrap();
    socket
        .write_all(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the edge kept a half-sent request open");
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    core.stop.cancel();
}

#[tokio::test]
async fn edge_logs_carry_the_request_and_never_the_token() {
    let logs = capture_logs();
    let core = start_core(settings()).await;
    let job_id = create_job(&core).await;
    let response = client()
        .get(core.edge(&format!("/v1/optimize/{job_id}")))
        .bearer_auth(TOKEN)
        .header("x-request-id", "edge-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "edge-req-1");
    let text = logs.text();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| l.contains("edge-req-1"))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v["message"] == "request")
        .collect();
    let http = lines
        .iter()
        .find(|l| l["transport"] == "http")
        .expect("HTTP access line");
    assert_eq!(http["route"], "/v1/optimize/{id}");
    assert_eq!(http["job_id"], job_id.as_str());
    assert_eq!(
        http["principal"],
        innerloop::layers::auth::principal_id(TOKEN)
    );
    let grpc = lines
        .iter()
        .find(|l| l["transport"] == "grpc-in-process")
        .expect("the core's RPC line carries the same request id");
    assert_eq!(grpc["route"], "/innerloop.v1.JobService/GetJob");
    assert!(!text.contains(TOKEN));
    let metrics = client()
        .get(core.edge("/v1/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"http_requests_total{method="GET",route="/v1/optimize/{id}",status="200"}"#
        )
    );
    assert!(metrics.contains(r#"grpc_method="GetJob",grpc_code="0""#));
    core.stop.cancel();
}

#[tokio::test]
async fn a_standalone_edge_forwards_credentials_the_remote_core_checks_again() {
    let core = start_core(innerloop::config::Settings {
        stream_token_key: Some("shared-stream-key".into()),
        ..settings()
    })
    .await;
    let job_id = create_job(&core).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let edge = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let until = stop.clone();
    let upstream = core.url();
    tokio::spawn(async move {
        innerloop::server::run_edge(
            std::sync::Arc::new(innerloop::config::Settings {
                stream_token_key: Some("shared-stream-key".into()),
                ..settings()
            }),
            listener,
            &upstream,
            async move { until.cancelled().await },
        )
        .await
    });
    let url = |path: &str| format!("http://{edge}{path}");
    let listed = client()
        .get(url("/v1/admin/jobs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200, "the bearer reaches the remote core");
    let issued: Value = client()
        .post(url(&format!("/v1/optimize/{job_id}/stream-token")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = issued["stream_token"].as_str().unwrap();
    let events = client()
        .get(url(&format!(
            "/v1/optimize/{job_id}/events?access_token={token}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        events.status(),
        200,
        "the remote core accepts the forwarded stream token"
    );
    stop.cancel();
    core.stop.cancel();
}
