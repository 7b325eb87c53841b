//! Hostile input against the real server on port 0: JSON nested past the limit is a 422
//! `validation_error` naming the field and the limit on every route that takes JSON, and
//! INVALID_ARGUMENT on gRPC (never a 500 or an INTERNAL exposing the decoder's path).

mod edge_support;

use edge_support::TestServer;
use innerloop::domain::depth::MAX_JSON_DEPTH;
use innerloop::grpc::convert::struct_from_json;
use innerloop::grpc::pb;
use serde_json::{Value, json};
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
