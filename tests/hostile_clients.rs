//! Hostile input against the real server on port 0: JSON nested past the limit is a 422
//! `validation_error` naming the field and the limit on every route that takes JSON, and
//! INVALID_ARGUMENT on gRPC (never a 500 or an INTERNAL exposing the decoder's path).

mod support;

use innerloop::api::pb;
use innerloop::api::values::struct_from_json;
use innerloop::domain::depth::MAX_JSON_DEPTH;
use serde_json::{Value, json};
use support::edge::TestServer;
use tonic::Code;

/// `{"a":{"a":…1}}` with `levels` objects.
fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!({ "a": v });
    }
    v
}

async fn post(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let response = server
        .http
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn bodies_nested_past_the_limit_are_422_naming_the_field_on_every_json_route() {
    let server = TestServer::start().await;
    // The serde default recursion limit is 128: cover both sides of it.
    for levels in [MAX_JSON_DEPTH, 40, 200] {
        let cases = [
            (
                "/v1/optimize",
                json!({"prompt": "p", "context": nested(levels)}),
                "context",
            ),
            (
                "/optimize",
                json!({"prompt": "p", "context": nested(levels)}),
                "context",
            ),
            (
                "/v1/examples/bulk",
                json!([{"input": "x", "meta": nested(levels)}]),
                "0",
            ),
            (
                "/v1/eval/start",
                json!({"name": "examples", "extra": nested(levels)}),
                "extra",
            ),
        ];
        for (path, body, field) in cases {
            let (status, body) = post(&server, path, &body).await;
            assert_eq!(status, 422, "{path} at {levels} levels: {body}");
            assert_eq!(body["error"]["code"], "validation_error", "{path}");
            let error = &body["error"]["details"]["errors"][0];
            assert_eq!(error["loc"][0], "body", "{path}: {error}");
            assert_eq!(error["loc"][1], field, "{path}: {error}");
            let msg = error["msg"].as_str().unwrap();
            assert!(msg.contains(&MAX_JSON_DEPTH.to_string()), "{path}: {msg}");
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn bodies_nested_exactly_to_the_limit_are_accepted() {
    let server = TestServer::start().await;
    // The body is level 1 and `context` level 2: the innermost object sits at the limit.
    let body = json!({"prompt": "p", "context": nested(MAX_JSON_DEPTH - 1)});
    let (status, answer) = post(&server, "/v1/optimize", &body).await;
    assert_eq!(status, 200, "{answer}");
    // Array 1, element 2, meta 3.
    let body = json!([{"input": "x", "meta": nested(MAX_JSON_DEPTH - 2)}]);
    let (status, answer) = post(&server, "/v1/examples/bulk", &body).await;
    assert_eq!(status, 200, "{answer}");
    server.shutdown().await;
}

#[tokio::test]
async fn grpc_requests_nested_too_deep_are_invalid_argument() {
    let server = TestServer::start().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut optimizer = pb::optimizer_service_client::OptimizerServiceClient::new(channel.clone());
    // Past the limit but decodable (names the field), and past protobuf's own recursion limit.
    for levels in [MAX_JSON_DEPTH, 60] {
        let Value::Object(context) = nested(levels) else {
            unreachable!()
        };
        let request = pb::OptimizeRequest {
            prompt: "p".into(),
            context: Some(struct_from_json(&context)),
            ..Default::default()
        };
        let status = optimizer.create_job(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{levels}: {status:?}");
        assert!(
            status.message().contains(&MAX_JSON_DEPTH.to_string()),
            "{levels}: {}",
            status.message()
        );
        assert!(!status.message().contains("Value.kind"), "{status:?}");
        if levels == MAX_JSON_DEPTH {
            use tonic_types::StatusExt;
            let bad = status.get_details_bad_request().expect("field violations");
            assert!(
                bad.field_violations[0].field.starts_with("context.a"),
                "{bad:?}"
            );
        }
    }
    let Value::Object(meta) = nested(60) else {
        unreachable!()
    };
    let mut examples = pb::examples_service_client::ExamplesServiceClient::new(channel);
    let status = examples
        .bulk_upsert_examples(pb::BulkUpsertExamplesRequest {
            examples: vec![pb::Example {
                input: "x".into(),
                meta: Some(struct_from_json(&meta)),
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    server.shutdown().await;
}

/// Reads until the server closes the socket; `true` when that happened within `within`.
async fn closed_by_server(socket: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(within, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_cannot_lock_out_health_checks() {
    use std::time::Duration;
    let server = TestServer::start_with(innerloop::config::Settings {
        idle_connection_timeout_s: 1.0,
        max_connections: 40,
        max_connections_per_ip: 20,
        ..support::edge::test_settings()
    })
    .await;
    let http_addr = server.base.trim_start_matches("http://").to_string();
    let mut silent = Vec::new();
    for addr in [http_addr.clone(), server.grpc.to_string()] {
        for _ in 0..60 {
            silent.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
        }
    }
    // Both listeners are full of silent sockets from this IP: real clients still get in.
    let health = server
        .http
        .get(server.url("/v1/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect("healthz answers during the flood");
    assert_eq!(health.status(), 200);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("gRPC accepts during the flood");
    let mut jobs = pb::job_service_client::JobServiceClient::new(channel);
    let listed = tokio::time::timeout(
        Duration::from_secs(2),
        jobs.list_jobs(pb::ListJobsRequest::default()),
    )
    .await
    .expect("gRPC answers during the flood");
    assert!(listed.is_ok(), "{listed:?}");
    // Every silent socket is closed by the server: evicted at once, or at the timeout.
    for (i, socket) in silent.iter_mut().enumerate() {
        assert!(
            closed_by_server(socket, Duration::from_secs(3)).await,
            "silent socket {i} still open"
        );
    }
    server.shutdown().await;
}

// ---------- the OpenAPI document and the behaviour agree (schemathesis findings) ----------

#[tokio::test]
async fn integers_written_with_a_zero_fraction_are_accepted() {
    let server = TestServer::start().await;
    let body = json!({
        "prompt": "p",
        "max_tokens": 470.0,
        "seed": 7.0,
        "budget": {"max_rollouts": 30.0, "max_cost": 1.0},
    });
    let (status, answer) = post(&server, "/v1/optimize", &body).await;
    assert_eq!(status, 200, "{answer}");
    // A real fraction is still refused where an integer is expected.
    let body = json!({"prompt": "p", "max_tokens": 470.5});
    let (status, answer) = post(&server, "/v1/optimize", &body).await;
    assert_eq!(status, 422, "{answer}");
    server.shutdown().await;
}

#[tokio::test]
async fn documented_ranges_and_names_hold_in_default_mode_too() {
    let server = TestServer::start().await;
    let body = json!({"prompt": "p", "gepa": {"minibatch_size": 0}});
    let (status, answer) = post(&server, "/v1/optimize", &body).await;
    assert_eq!(status, 422, "{answer}");
    let loc = &answer["error"]["details"]["errors"][0]["loc"];
    assert!(
        loc.as_array()
            .unwrap()
            .iter()
            .any(|s| s == "minibatch_size"),
        "{answer}"
    );
    let body = json!({"prompt": "p", "budget": {"max_rollouts": 0}});
    let (status, answer) = post(&server, "/v1/optimize", &body).await;
    assert_eq!(status, 422, "{answer}");
    let body = json!({"prompt": "p", "dataset": {"name": "no-such-pack"}});
    let (status, answer) = post(&server, "/v1/optimize", &body).await;
    assert_eq!(status, 422, "{answer}");
    server.shutdown().await;
}

#[tokio::test]
async fn operations_that_answer_422_for_long_ids_and_bad_page_tokens_document_it() {
    let server = TestServer::start().await;
    let (status, doc) = server.get_json("/v1/openapi.json").await;
    assert_eq!(status, 200);
    let long_id = "x".repeat(129);
    for (method, path) in [
        ("get", "/v1/optimize/{job_id}"),
        ("delete", "/v1/optimize/{job_id}"),
        ("get", "/v1/admin/jobs/{job_id}"),
        ("post", "/v1/admin/jobs/{job_id}/cancel"),
        ("get", "/v1/admin/jobs"),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        assert!(
            responses.get("422").is_some(),
            "{method} {path}: {responses}"
        );
    }
    // And the behaviour the document now describes.
    let (status, _) = server.get_json(&format!("/v1/optimize/{long_id}")).await;
    assert_eq!(status, 422);
    let (status, _) = server.get_json("/v1/admin/jobs?page_token=bogus").await;
    assert_eq!(status, 422);
    server.shutdown().await;
}

#[tokio::test]
async fn budget_counts_past_the_documented_int64_range_are_refused() {
    let server = TestServer::start().await;
    let body = json!({"prompt": "p", "budget": {"max_tokens": 9_223_372_036_854_775_808_u64}});
    let (status, answer) = post(&server, "/v1/optimize", &body).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["error"]["details"]["errors"][0]["loc"],
        json!(["body", "budget", "max_tokens"])
    );
    let body = json!({"prompt": "p", "budget": {"max_tokens": 9_223_372_036_854_775_807_u64}});
    let (status, answer) = post(&server, "/v1/optimize", &body).await;
    assert_eq!(status, 200, "{answer}");
    server.shutdown().await;
}
