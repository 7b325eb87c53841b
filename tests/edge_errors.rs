//! Edge error responses against a real core + edge on port 0: every error code the routes
//! produce, with its exact envelope, status and `X-Request-ID`.

mod support;

use serde_json::json;
use support::edge::TestServer;

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn post_optimize(
    server: &TestServer,
    query: &str,
    content_type: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let response = server
        .http
        .post(server.url(&format!("/v1/optimize{query}")))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(header(&response, "x-request-id").is_some());
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn create_errors_have_the_exact_envelope() {
    let server = TestServer::start().await;
    let json_ct = "application/json";
    assert_eq!(
        post_optimize(&server, "?iterations=0", json_ct, r#"{"prompt":"p"}"#).await,
        (
            422,
            json!({"error":{"code":"validation_error","message":"iterations must be >= 1",
            "details":{"errors":[{"loc":["query","iterations"],"msg":"iterations must be >= 1"}]}}})
        )
    );
    assert_eq!(
        post_optimize(&server, "?iterations=abc", json_ct, r#"{"prompt":"p"}"#)
            .await
            .1["error"]["details"]["errors"][0]["loc"],
        json!(["query", "iterations"])
    );
    assert_eq!(
        post_optimize(&server, "", json_ct, r#"{"prompt":"p","bogus":1}"#).await,
        (
            422,
            json!({"error":{"code":"validation_error","message":"Extra inputs are not permitted",
            "details":{"errors":[{"loc":["body","bogus"],"msg":"Extra inputs are not permitted"}]}}})
        )
    );
    assert_eq!(
        post_optimize(
            &server,
            "",
            json_ct,
            r#"{"prompt":"p","examples":[{"input":"a","ideal":"b"}]}"#
        )
        .await
        .1["error"]["details"]["errors"][0]["loc"],
        json!(["body", "examples", "0", "ideal"])
    );
    assert_eq!(
        post_optimize(&server, "", json_ct, r#"{"context":{}}"#).await,
        (
            422,
            json!({"error":{"code":"validation_error","message":"Field required",
            "details":{"errors":[{"loc":["body","prompt"],"msg":"Field required"}]}}})
        )
    );
    assert_eq!(
        post_optimize(&server, "", json_ct, r#"{"prompt":"  "}"#).await,
        (
            422,
            json!({"error":{"code":"validation_error","message":"prompt must not be empty",
            "details":{"errors":[{"loc":["body","prompt"],"msg":"prompt must not be empty"}]}}})
        )
    );
    assert_eq!(
        post_optimize(&server, "", json_ct, r#"{"prompt":"#).await,
        (
            422,
            json!({"error":{"code":"validation_error","message":"JSON decode error",
            "details":{"errors":[{"loc":["body","prompt"],"msg":"JSON decode error"}]}}})
        )
    );
    assert_eq!(
        post_optimize(&server, "", "text/plain", r#"{"prompt":"p"}"#).await,
        (
            415,
            json!({"error":{"code":"validation_error",
            "message":"Content-Type must be application/json","details":{}}})
        )
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_jobs_are_404_everywhere() {
    let server = TestServer::start().await;
    let expected =
        json!({"error":{"code":"not_found","message":"job nope not found","details":{}}});
    for path in [
        "/v1/optimize/nope",
        "/v1/admin/jobs/nope",
        "/v1/optimize/nope/events",
    ] {
        assert_eq!(
            server.get_json(path).await,
            (404, expected.clone()),
            "{path}"
        );
    }
    let response = server
        .http
        .delete(server.url("/v1/optimize/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = server
        .http
        .post(server.url("/v1/admin/jobs/nope/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        expected
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_use_the_envelope() {
    let server = TestServer::start().await;
    assert_eq!(
        server.get_json("/v1/nothing-here").await,
        (
            404,
            json!({"error":{"code":"not_found","message":"Not Found","details":{}}})
        )
    );
    let response = server
        .http
        .put(server.url("/v1/optimize/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(header(&response, "allow"), Some("GET,HEAD,DELETE"));
    assert!(header(&response, "x-request-id").is_some());
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"error":{"code":"validation_error","message":"Method Not Allowed","details":{}}})
    );
    server.shutdown().await;
}
