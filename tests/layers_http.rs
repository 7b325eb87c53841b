//! The shared layers on a plain axum router shaped like the edge: auth with the contract's 401
//! body, stream tokens, rate limits with `Retry-After`, size limits with and without
//! `Content-Length`, the slowloris guard, timeouts, stream caps, request ids, metrics, CORS.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::response::sse::{Event, Sse};
use axum::routing::{get, post};
use futures_util::stream;
use innerloop::config::Settings;
use innerloop::layers::Protections;
use serde_json::{Value, json};
use support::layers::{TOKEN, capture_logs, settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Edge {
    addr: SocketAddr,
    protections: Protections,
    stop: CancellationToken,
}

impl Edge {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(settings: Settings) -> Edge {
    let settings = Arc::new(settings);
    let stop = CancellationToken::new();
    let (protections, _task) = Protections::start(&settings.layers(), stop.clone());
    let forever = || async { Sse::new(stream::pending::<Result<Event, Infallible>>()) };
    let router = Router::new()
        .route(
            "/v1/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/v1/optimize",
            post(|body: Bytes| async move { axum::Json(json!({"received": body.len()})) }),
        )
        .route(
            "/v1/optimize/{id}",
            get(|| async { axum::Json(json!({"status": "running"})) }),
        )
        .route("/v1/optimize/{id}/events", get(forever))
        .route(
            "/v1/version",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .merge(innerloop::edge::routes::metrics::router())
        .merge(innerloop::edge::routes::stream_token::router(
            protections.auth.stream_tokens.clone(),
        ))
        .layer(protections.http_layers());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let until = stop.clone();
    tokio::spawn(innerloop::layers::http_server::serve(
        listener,
        router,
        settings.layers().header_read_timeout,
        Duration::from_secs(1),
        async move { until.cancelled().await },
    ));
    Edge {
        addr,
        protections,
        stop,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn error_body(response: reqwest::Response) -> Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "error bodies are JSON"
    );
    response.json::<Value>().await.unwrap()
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/optimize"),
    ("GET", "/v1/optimize/j1"),
    ("GET", "/v1/optimize/j1/events"),
];

#[tokio::test]
async fn every_route_requires_a_valid_token() {
    let edge = start(settings()).await;
    for (method, path) in ROUTES {
        let method: reqwest::Method = method.parse().unwrap();
        for token in [None, Some("wrong")] {
            let mut request = client().request(method.clone(), edge.url(path)).body("{}");
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            assert!(response.headers().contains_key("x-request-id"));
            let body = error_body(response).await;
            assert_eq!(body["error"]["code"], "unauthorized");
            assert_eq!(body["error"]["details"], json!({}));
        }
        let response = client()
            .request(method.clone(), edge.url(path))
            .bearer_auth(TOKEN)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method} {path} with the token");
    }
    for path in ["/v1/healthz", "/healthz", "/v1/metrics", "/v1/metricsz"] {
        let response = client().get(edge.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} is public");
    }
}

#[tokio::test]
async fn stream_tokens_open_only_their_own_jobs_events() {
    let edge = start(settings()).await;
    let issued = edge
        .protections
        .auth
        .stream_tokens
        .issue("job-1", &innerloop::layers::auth::principal_id(TOKEN));
    let events = |job: &str, token: &str| {
        client()
            .get(edge.url(&format!("/v1/optimize/{job}/events?access_token={token}")))
            .send()
    };
    let ok = events("job-1", &issued.token).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "text/event-stream");
    assert_eq!(events("job-2", &issued.token).await.unwrap().status(), 401);
    assert_eq!(events("job-1", "123.abc").await.unwrap().status(), 401);
    let elsewhere = client()
        .get(edge.url(&format!("/v1/optimize/job-1?access_token={}", issued.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        elsewhere.status(),
        401,
        "stream tokens only open the events route"
    );
}

#[tokio::test]
async fn a_flood_gets_429_with_retry_after_and_limit_headers() {
    let edge = start(Settings {
        rate_limit_per_min: 1,
        rate_limit_burst: 2,
        ..settings()
    })
    .await;
    for remaining in ["1", "0"] {
        let response = client()
            .get(edge.url("/v1/optimize/j1"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit"], "2");
        assert_eq!(response.headers()["x-ratelimit-remaining"], remaining);
    }
    let response = client()
        .get(edge.url("/v1/optimize/j1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(response.headers()["x-ratelimit-limit"], "2");
    assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
    let body = error_body(response).await;
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(
        body["error"]["details"],
        json!({}),
        "the wait is in Retry-After"
    );
    // Health is never limited.
    assert_eq!(
        client()
            .get(edge.url("/v1/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_with_and_without_content_length() {
    let edge = start(Settings {
        max_request_bytes: 100,
        ..settings()
    })
    .await;
    let declared = client()
        .post(edge.url("/v1/optimize"))
        .bearer_auth(TOKEN)
        .body(vec![b'x'; 101])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    assert_eq!(
        error_body(declared).await["error"]["code"],
        "payload_too_large"
    );

    let chunks: Vec<Result<Bytes, std::io::Error>> =
        (0..4).map(|_| Ok(Bytes::from(vec![b'y'; 40]))).collect();
    let chunked = client()
        .post(edge.url("/v1/optimize"))
        .bearer_auth(TOKEN)
        .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert!(chunked.headers().get("content-length").is_some());
    assert_eq!(chunked.status(), 413);
    assert_eq!(
        error_body(chunked).await["error"]["code"],
        "payload_too_large"
    );

    let fits = client()
        .post(edge.url("/v1/optimize"))
        .bearer_auth(TOKEN)
        .body(vec![b'z'; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 200);
    assert_eq!(fits.json::<Value>().await.unwrap()["received"], 100);
}

#[tokio::test]
async fn a_slow_header_client_is_disconnected() {
    let edge = start(Settings {
        header_read_timeout_s: 0.3,
        ..settings()
    })
    .await;
    let mut socket = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    socket
        .write_all(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server kept a half-sent request open");
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    // A complete request on a new connection is served.
    let ok = client().get(edge.url("/v1/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn unary_requests_time_out_but_streams_do_not() {
    let edge = start(Settings {
        request_timeout_s: 0.2,
        ..settings()
    })
    .await;
    let late = client()
        .get(edge.url("/v1/version"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 504);
    assert_eq!(error_body(late).await["error"]["code"], "deadline_exceeded");
    let stream = client()
        .get(edge.url("/v1/optimize/j1/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();
    use futures_util::StreamExt;
    let next = tokio::time::timeout(Duration::from_millis(600), body.next()).await;
    assert!(
        next.is_err(),
        "the stream is still open past the request timeout"
    );
}

#[tokio::test]
async fn open_streams_are_capped_per_principal() {
    let edge = start(Settings {
        max_streams_per_principal: 1,
        ..settings()
    })
    .await;
    let open = || {
        client()
            .get(edge.url("/v1/optimize/j1/events"))
            .bearer_auth(TOKEN)
            .send()
    };
    let first = open().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = open().await.unwrap();
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["retry-after"], "1");
    drop(first);
    let mut reopened = false;
    for _ in 0..100 {
        if open().await.unwrap().status() == 200 {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened, "the slot was not released");
}

#[tokio::test]
async fn request_ids_are_echoed_and_logs_never_contain_the_token() {
    let logs = capture_logs();
    let edge = start(settings()).await;
    let response = client()
        .get(edge.url("/v1/optimize/job-77"))
        .bearer_auth(TOKEN)
        .header("x-request-id", "req-http-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-http-1");
    let generated = client().get(edge.url("/v1/healthz")).send().await.unwrap();
    assert_eq!(generated.headers()["x-request-id"].len(), 36);
    let _ = client()
        .get(edge.url("/v1/optimize/job-78?access_token=leaky"))
        .bearer_auth("wrong-bearer-99")
        .send()
        .await
        .unwrap();
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("req-http-1"))
        .expect("access log line");
    let entry: Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["route"], "/v1/optimize/{id}");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["job_id"], "job-77");
    assert_eq!(entry["client_ip"], "127.0.0.1");
    assert_eq!(
        entry["principal"],
        innerloop::layers::auth::principal_id(TOKEN)
    );
    assert!(entry["duration_ms"].as_f64().is_some());
    assert!(text.contains("\"status\":401"), "rejections are logged");
    assert!(!text.contains(TOKEN) && !text.contains("wrong-bearer-99"));
}

#[tokio::test]
async fn metrics_are_served_with_the_original_names_and_count() {
    let edge = start(settings()).await;
    let get = |path: &'static str| client().get(edge.url(path)).bearer_auth(TOKEN).send();
    let _ = get("/v1/optimize/j1").await.unwrap();
    let _events = get("/v1/optimize/j1/events").await.unwrap();
    let text = get("/v1/metrics").await.unwrap();
    assert_eq!(text.status(), 200);
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics-text")
    );
    let text = text.text().await.unwrap();
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "sse_clients",
        "jobs_created_total",
        "jobs_finished_total",
        "jobs_failed_total",
        "jobs_cancelled_total",
        "active_watchers",
        "job_queue_depth",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/v1/optimize/{id}",status="200"}"#
        )
    );
    let json: Value = get("/v1/metricsz").await.unwrap().json().await.unwrap();
    assert!(json["sse_clients"].as_f64().unwrap() >= 1.0);
    let key = r#"http_requests_total{method="GET",route="/v1/optimize/{id}",status="200"}"#;
    assert!(json[key].as_f64().unwrap() >= 1.0);
}

#[tokio::test]
async fn cors_answers_only_configured_origins() {
    let edge = start(Settings {
        cors_allowed_origins: vec!["https://app.example".into()],
        ..settings()
    })
    .await;
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, edge.url("/v1/optimize"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn streams_opened_with_stream_tokens_count_against_the_principal_that_minted_them() {
    let edge = start(Settings {
        max_streams_per_principal: 2,
        ..settings()
    })
    .await;
    let mint = || async {
        let issued: Value = client()
            .post(edge.url("/v1/optimize/j1/stream-token"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        issued["stream_token"].as_str().unwrap().to_string()
    };
    let open = |token: String| {
        client()
            .get(edge.url(&format!("/v1/optimize/j1/events?access_token={token}")))
            .send()
    };
    // Each stream on a fresh token: the first two fill the minter's cap, the third is refused.
    let first = open(mint().await).await.unwrap();
    assert_eq!(first.status(), 200);
    let second = open(mint().await).await.unwrap();
    assert_eq!(second.status(), 200);
    let third = open(mint().await).await.unwrap();
    assert_eq!(third.status(), 429, "a new token is not a new caller");
    // The bearer itself shares the same cap.
    let bearer = client()
        .get(edge.url("/v1/optimize/j1/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 429);
    drop((first, second));
}

#[tokio::test]
async fn stream_tokens_are_issued_to_bearers_only() {
    let edge = start(settings()).await;
    let url = edge.url("/v1/optimize/job-9/stream-token");
    let issued: Value = client()
        .post(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = issued["stream_token"].as_str().unwrap().to_string();
    assert!(issued["expires_at"].as_u64().unwrap() > 0);
    let events = client()
        .get(edge.url(&format!("/v1/optimize/job-9/events?access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let minted = client()
        .post(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 401, "a stream token cannot mint another");
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_are_shed_with_503() {
    let edge = start(Settings {
        max_concurrent_requests: 1,
        ..settings()
    })
    .await;
    let slow = tokio::spawn(
        client()
            .get(edge.url("/v1/version"))
            .bearer_auth(TOKEN)
            .send(),
    );
    let mut shed = None;
    for _ in 0..100 {
        let response = client()
            .get(edge.url("/v1/optimize/j1"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if response.status() == 503 {
            shed = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shed = shed.expect("a request was shed while the slot was taken");
    assert_eq!(error_body(shed).await["error"]["code"], "unavailable");
    let health = client().get(edge.url("/v1/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "probes are never shed");
    slow.abort();
}
