//! A standalone edge (`innerloop edge --upstream`, here `server::run_edge` in-process) maps the
//! core layers' rejections back to the same HTTP answers as the core's own edge (issue 17):
//! a core-side 413 stays `payload_too_large`, a core-side timeout is `deadline_exceeded`.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use innerloop::config::Settings;
use innerloop::layers::Protections;
use serde_json::{Value, json};
use support::contract::{Server, settings};
use tokio_util::sync::CancellationToken;

/// A standalone edge in front of `upstream` (a gRPC URL); returns its base URL.
async fn edge(upstream: String, stop: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let edge_settings = Arc::new(Settings {
        request_timeout_s: 30.0,
        ..settings()
    });
    tokio::spawn(async move {
        innerloop::server::run_edge(edge_settings, listener, &upstream, async move {
            stop.cancelled().await
        })
        .await
    });
    base
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (
        status,
        response.json::<Value>().await.unwrap()["error"].clone(),
    )
}

#[tokio::test]
async fn a_core_side_413_reaches_the_client_as_payload_too_large() {
    // The core takes smaller bodies than the edge: the edge passes the request, the core's
    // body limit refuses it.
    let core = Server::start(Settings {
        max_request_bytes: 300,
        ..settings()
    })
    .await;
    let stop = CancellationToken::new();
    let base = edge(format!("http://{}", core.grpc), stop.clone()).await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/v1/optimize"))
        .bearer_auth(support::contract::TOKEN)
        .json(&json!({"prompt": "x".repeat(1_000)}))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert_eq!(error["details"], json!({}));
    stop.cancel();
}

/// A `JobService` whose every call outlasts any sane timeout.
#[derive(Clone)]
struct SlowJobs;

impl tonic::server::NamedService for SlowJobs {
    const NAME: &'static str = "innerloop.v1.JobService";
}

impl tower::Service<http::Request<tonic::body::Body>> for SlowJobs {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(tonic::Status::unavailable("too late").into_http())
        })
    }
}

#[tokio::test]
async fn a_core_side_timeout_reaches_the_client_as_deadline_exceeded() {
    // The core's own layers (REQUEST_TIMEOUT_S = 50 ms) around a service that never answers.
    let core_settings = Arc::new(Settings {
        request_timeout_s: 0.05,
        ..settings()
    });
    let stop = CancellationToken::new();
    let (protections, _task) = Protections::start(&core_settings.layers(), stop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = listener.local_addr().unwrap();
    let until = stop.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(protections.grpc_layers())
            .add_service(SlowJobs)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move { until.cancelled().await },
            ),
    );
    let base = edge(format!("http://{grpc}"), stop.clone()).await;
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/optimize/some-job"))
        .bearer_auth(support::contract::TOKEN)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (504, Some("deadline_exceeded"))
    );
    assert_eq!(error["details"], json!({}));
    stop.cancel();
}
