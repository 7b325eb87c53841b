//! The edge's REST routes against a real core + edge on port 0: happy paths, request ids
//! and trace context, aliases and their deprecation headers, readiness, OpenAPI.

mod support;

use serde_json::json;
use support::edge::{ProbedEdge, TestServer, test_settings};

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn probes_and_version_answer_with_a_request_id() {
    let server = TestServer::start().await;
    let response = server
        .http
        .get(server.url("/v1/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let generated = header(&response, "x-request-id").unwrap().to_string();
    assert_eq!(generated.len(), 36);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"status":"ok"})
    );

    let response = server
        .http
        .get(server.url("/v1/readyz"))
        .header("X-Request-ID", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-request-id"), Some("req-42"));
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"status":"ready"})
    );

    let (status, body) = server.get_json("/v1/version").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"version": env!("CARGO_PKG_VERSION")}));
    server.shutdown().await;
}

#[tokio::test]
async fn create_then_read_the_job_until_it_finishes() {
    let server = TestServer::start().await;
    let job_id = server.create(2).await;
    let (status, state) = server.get_json(&format!("/v1/optimize/{job_id}")).await;
    assert_eq!(status, 200);
    let keys: Vec<&str> = state
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // The original's keys first, then ours (request and progress summaries).
    assert_eq!(
        keys,
        [
            "job_id",
            "status",
            "created_at",
            "updated_at",
            "result",
            "request",
            "progress"
        ]
    );
    assert_eq!(state["job_id"], json!(job_id));
    assert!(matches!(
        state["status"].as_str(),
        Some("pending" | "running")
    ));
    assert!(
        state["created_at"].as_f64().unwrap() > 1.7e9,
        "epoch seconds"
    );
    assert_eq!(state["result"], json!(null));

    server.release(2);
    let mut stream = support::edge::RawSse::connect(
        server
            .http
            .get(server.url(&format!("/v1/optimize/{job_id}/events"))),
    )
    .await;
    let events = stream.rest().await;
    assert_eq!(events.last().unwrap().event, "finished");
    let (_, state) = server.get_json(&format!("/v1/optimize/{job_id}")).await;
    assert_eq!(state["status"], json!("finished"));
    assert_eq!(
        state["result"],
        json!({"proposal":"write a haiku about rust","lessons":[],"scores":{"judge":{}},"target_model":"m","rubric":null})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn idempotency_key_replays_the_same_job() {
    let server = TestServer::start().await;
    let create = || {
        server
            .http
            .post(server.url("/v1/optimize"))
            .header("Idempotency-Key", "k-1")
            .json(&json!({"prompt": "p", "model_id": "x", "examples": [{"id": 7, "input": "a"}]}))
            .send()
    };
    let first: serde_json::Value = create().await.unwrap().json().await.unwrap();
    let second = create().await.unwrap();
    assert_eq!(second.status(), 200);
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(first, second);
    server.shutdown().await;
}

#[tokio::test]
async fn cancel_returns_cancelled_state_then_409() {
    let server = TestServer::start().await;
    let job_id = server.create(5).await;
    let response = server
        .http
        .delete(server.url(&format!("/v1/optimize/{job_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let state: serde_json::Value = response.json().await.unwrap();
    assert_eq!(state["status"], json!("cancelled"));
    assert_eq!(state["result"], json!(null));

    for request in [
        server
            .http
            .delete(server.url(&format!("/v1/optimize/{job_id}"))),
        server
            .http
            .post(server.url(&format!("/v1/admin/jobs/{job_id}/cancel"))),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 409);
        assert_eq!(
            response.json::<serde_json::Value>().await.unwrap(),
            json!({"error":{"code":"not_cancelable",
                "message": format!("job {job_id} is cancelled and cannot be cancelled"),
                "details":{}}})
        );
    }

    let other = server.create(5).await;
    let response = server
        .http
        .post(server.url(&format!("/v1/admin/jobs/{other}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["status"],
        json!("cancelled")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn admin_lists_newest_first_in_pages_and_deletes_with_204() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(server.create(1).await);
    }
    let (status, all) = server.get_json("/v1/admin/jobs").await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    let keys: Vec<&str> = all["jobs"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "job_id",
            "status",
            "created_at",
            "updated_at",
            "request",
            "progress"
        ]
    );
    assert_eq!(all["next_page_token"], json!(null));

    let (_, page1) = server.get_json("/v1/admin/jobs?limit=2").await;
    assert_eq!(page1["jobs"].as_array().unwrap().len(), 2);
    let token = page1["next_page_token"].as_str().unwrap().to_string();
    let (_, page2) = server
        .get_json(&format!("/v1/admin/jobs?limit=2&page_token={token}"))
        .await;
    assert_eq!(page2["jobs"][0]["job_id"], json!(ids[0]));
    assert_eq!(page2["next_page_token"], json!(null));

    let (status, body) = server.get_json("/v1/admin/jobs?limit=0").await;
    assert_eq!(
        (status, &body["error"]["details"]["errors"][0]["loc"]),
        (422, &json!(["query", "limit"]))
    );
    let (status, body) = server.get_json("/v1/admin/jobs?page_token=zzz").await;
    assert_eq!(
        (status, &body["error"]["details"]["errors"][0]["loc"]),
        (422, &json!(["query", "page_token"]))
    );

    let (status, state) = server.get_json(&format!("/v1/admin/jobs/{}", ids[1])).await;
    assert_eq!(
        (status, state["job_id"].as_str()),
        (200, Some(ids[1].as_str()))
    );

    for id in [ids[1].as_str(), "never-existed"] {
        let response = server
            .http
            .delete(server.url(&format!("/v1/admin/jobs/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        assert!(header(&response, "x-request-id").is_some());
        assert!(response.bytes().await.unwrap().is_empty());
    }
    assert_eq!(
        server
            .get_json(&format!("/v1/admin/jobs/{}", ids[1]))
            .await
            .0,
        404
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unversioned_aliases_answer_with_deprecation_headers() {
    let server = TestServer::start().await;
    let check = |response: &reqwest::Response, successor: &str| {
        assert_eq!(
            header(response, "deprecation"),
            Some("true"),
            "{}",
            response.url()
        );
        assert_eq!(
            header(response, "link"),
            Some(format!("<{successor}>; rel=\"successor-version\"").as_str())
        );
    };
    let healthz = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    check(&healthz, "/v1/healthz");
    let readyz = server.http.get(server.url("/readyz")).send().await.unwrap();
    check(&readyz, "/v1/readyz");
    let created = server
        .http
        .post(server.url("/optimize"))
        .json(&json!({"prompt":"p"}))
        .send()
        .await
        .unwrap();
    check(&created, "/v1/optimize");
    let job: serde_json::Value = created.json().await.unwrap();
    let job_id = job["job_id"].as_str().unwrap();
    let state = server
        .http
        .get(server.url(&format!("/optimize/{job_id}")))
        .send()
        .await
        .unwrap();
    check(&state, "/v1/optimize");
    assert_eq!(
        state.json::<serde_json::Value>().await.unwrap()["job_id"],
        json!(job_id)
    );
    let missing = server
        .http
        .get(server.url("/optimize/nope"))
        .send()
        .await
        .unwrap();
    check(&missing, "/v1/optimize");
    assert_eq!(missing.status(), 404);
    let version = server
        .http
        .get(server.url("/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(version.status(), 200);
    assert!(header(&version, "deprecation").is_none());
    let v1 = server
        .http
        .get(server.url("/v1/healthz"))
        .send()
        .await
        .unwrap();
    assert!(header(&v1, "deprecation").is_none());
    assert_eq!(
        server.get_json("/admin/jobs").await.0,
        404,
        "admin has no alias"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn openapi_document_lists_the_v1_routes_only() {
    let server = TestServer::start().await;
    let (status, doc) = server.get_json("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for path in [
        "/v1/optimize",
        "/v1/optimize/{job_id}",
        "/v1/optimize/{job_id}/events",
        "/v1/admin/jobs",
        "/v1/admin/jobs/{job_id}",
        "/v1/admin/jobs/{job_id}/cancel",
        "/v1/healthz",
        "/v1/readyz",
        "/v1/version",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
    assert!(
        paths.iter().all(|p| p.starts_with("/v1/")),
        "aliases leaked: {paths:?}"
    );
    let body = &doc["components"]["schemas"]["OptimizeBody"];
    assert_eq!(body["additionalProperties"], json!(false));
    assert_eq!(body["required"], json!(["prompt"]));
    assert!(doc["paths"]["/v1/optimize"]["post"]["responses"]["422"].is_object());
    server.shutdown().await;
}

#[tokio::test]
async fn readiness_is_503_while_draining() {
    let edge = ProbedEdge::start(test_settings()).await;
    let ready = edge.http.get(edge.url("/v1/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    edge.state.begin_draining();
    let draining = edge.http.get(edge.url("/v1/readyz")).send().await.unwrap();
    assert_eq!(draining.status(), 503);
    assert_eq!(
        draining.json::<serde_json::Value>().await.unwrap(),
        json!({"error":{"code":"unavailable","message":"the service is shutting down","details":{}}})
    );
}

#[tokio::test]
async fn request_id_and_trace_context_reach_the_core_as_grpc_metadata() {
    let edge = ProbedEdge::start(test_settings()).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = edge
        .http
        .get(edge.url("/v1/optimize/some-job"))
        .header("X-Request-ID", "trace-me")
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let generated = edge
        .http
        .get(edge.url("/v1/admin/jobs"))
        .send()
        .await
        .unwrap();
    let generated_id = header(&generated, "x-request-id").unwrap().to_string();
    let calls = edge.probe.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            (
                "/innerloop.v1.JobService/GetJob".to_string(),
                Some("trace-me".to_string()),
                Some(traceparent.to_string())
            ),
            (
                "/innerloop.v1.JobService/ListJobs".to_string(),
                Some(generated_id),
                None
            ),
        ]
    );
}
