//! What the original's clients, scrapers and operators see at the edge (issue 16): public
//! metrics under the original's names with bounded labels, `REQUIRE_AUTH=false` opening job
//! creation only, deprecation headers on every alias response, and `details: {}` on every error
//! but validation errors.

mod support;

use innerloop::api::pb;
use innerloop::api::pb::job_service_client::JobServiceClient;
use innerloop::api::pb::optimizer_service_client::OptimizerServiceClient;
use innerloop::config::Settings;
use reqwest::Method;
use serde_json::{Value, json};
use support::contract::{Server, settings};

const METRICS_ROUTES: [&str; 4] = ["/v1/metrics", "/v1/metricsz", "/metrics", "/metricsz"];

#[tokio::test]
async fn metrics_answer_without_a_token_like_health() {
    let server = Server::start(settings()).await;
    for path in METRICS_ROUTES {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} is public");
    }
    // Everything else still wants the token.
    let response = server
        .http
        .get(server.url("/v1/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn metrics_require_a_token_when_metrics_require_auth_is_set() {
    let server = Server::start(Settings {
        metrics_require_auth: true,
        ..settings()
    })
    .await;
    for path in METRICS_ROUTES {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path} without a token");
        let response = server.authed(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} with the token");
    }
}

#[tokio::test]
async fn metricsz_exposes_the_original_counter_names() {
    let server = Server::start(settings()).await;
    let job = server.create(1, json!({"prompt": "count me"})).await;
    let _ = server.sse_text(&format!("/v1/optimize/{job}/events")).await;
    // The counters move just after the terminal event is durable, so a client that has read
    // the stream's end may read them a moment early: poll briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let metrics = loop {
        let metrics: Value = server
            .http
            .get(server.url("/v1/metricsz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if metrics["jobs_finished"].as_f64() >= Some(1.0) || std::time::Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    for name in [
        "jobs_created",
        "jobs_finished",
        "jobs_failed",
        "jobs_cancelled",
        "sse_clients",
        "rate_limited",
        "oversize_rejected",
    ] {
        assert!(metrics[name].is_number(), "{name} missing from {metrics}");
    }
    assert!(metrics["jobs_created"].as_f64().unwrap() >= 1.0);
    assert!(
        metrics["jobs_finished"].as_f64().unwrap() >= 1.0,
        "{metrics}"
    );
    assert!(
        metrics["ts"].as_f64().unwrap() > 1.7e9,
        "ts is epoch seconds"
    );
}

#[tokio::test]
async fn unknown_paths_share_one_metric_label() {
    let server = Server::start(settings()).await;
    let secret = uuid::Uuid::new_v4().simple().to_string();
    for path in [
        format!("/v1/{secret}"),
        format!("/{secret}/x"),
        format!("/v1/optimize/a/{secret}"),
    ] {
        let response = server.authed(Method::GET, &path).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    let text = server
        .http
        .get(server.url("/v1/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(&secret), "a random path became a label");
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="unmatched",status="404"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn require_auth_false_opens_job_creation_and_nothing_else() {
    let server = Server::start(Settings {
        require_auth: false,
        ..settings()
    })
    .await;
    let mut jobs = Vec::new();
    for path in ["/v1/optimize", "/optimize"] {
        let response = server
            .http
            .post(server.url(path))
            .json(&json!({"prompt": "anonymous"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "anonymous POST {path}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body.get("stream_token").is_none(),
            "no stream token for an anonymous creator: {body}"
        );
        jobs.push(body["job_id"].as_str().unwrap().to_string());
    }
    let job = &jobs[0];
    let closed = [
        (Method::GET, format!("/v1/optimize/{job}")),
        (Method::GET, format!("/optimize/{job}")),
        (Method::DELETE, format!("/v1/optimize/{job}")),
        (Method::GET, format!("/v1/optimize/{job}/events")),
        (Method::GET, "/v1/admin/jobs".to_string()),
        (Method::GET, format!("/v1/admin/jobs/{job}")),
        (Method::GET, "/v1/examples".to_string()),
        (Method::POST, "/v1/eval/start".to_string()),
        (Method::GET, "/v1/version".to_string()),
    ];
    for (method, path) in &closed {
        let response = server
            .http
            .request(method.clone(), server.url(path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path} without a token");
    }
    let (status, state) = server.get_json(&format!("/v1/optimize/{job}")).await;
    assert_eq!(
        (status, state["job_id"].as_str()),
        (200, Some(job.as_str()))
    );

    // The same rule on the core's gRPC surface: CreateJob is open, reading is not.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let created = OptimizerServiceClient::new(channel.clone())
        .create_job(pb::OptimizeRequest {
            prompt: "anonymous over grpc".into(),
            ..Default::default()
        })
        .await
        .expect("anonymous CreateJob")
        .into_inner();
    let read = JobServiceClient::new(channel)
        .get_job(pb::GetJobRequest {
            job_id: created.job_id,
        })
        .await
        .unwrap_err();
    assert_eq!(read.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn dev_mode_turns_auth_off_everywhere() {
    let server = Server::start(Settings {
        require_auth: false,
        dev_mode: true,
        ..settings()
    })
    .await;
    let response = server
        .http
        .post(server.url("/v1/optimize"))
        .json(&json!({"prompt": "dev"}))
        .send()
        .await
        .unwrap();
    let job = response.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        format!("/v1/optimize/{job}"),
        "/v1/admin/jobs".into(),
        "/v1/examples".into(),
    ] {
        let response = server.http.get(server.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} in dev mode");
    }
}

fn assert_deprecated(response: &reqwest::Response, successor: &str, what: &str) {
    assert_eq!(
        response
            .headers()
            .get("deprecation")
            .map(|v| v.to_str().unwrap()),
        Some("true"),
        "{what}: Deprecation"
    );
    assert_eq!(
        response.headers().get("link").map(|v| v.to_str().unwrap()),
        Some(format!("<{successor}>; rel=\"successor-version\"").as_str()),
        "{what}: Link"
    );
}

#[tokio::test]
async fn alias_errors_carry_deprecation_headers() {
    let server = Server::start(Settings {
        max_request_bytes: 100,
        rate_limit_per_min: 60,
        rate_limit_burst: 5,
        ..settings()
    })
    .await;
    let unauthorized = server
        .http
        .post(server.url("/optimize"))
        .json(&json!({"prompt": "p"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_deprecated(&unauthorized, "/v1/optimize", "401");

    let not_found = server
        .authed(Method::GET, "/optimize/no-such-job")
        .send()
        .await
        .unwrap();
    assert_eq!(not_found.status(), 404);
    assert_deprecated(&not_found, "/v1/optimize", "404");

    let too_large = server
        .authed(Method::POST, "/optimize")
        .json(&json!({"prompt": "x".repeat(200)}))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    assert_deprecated(&too_large, "/v1/optimize", "413");

    let invalid = server
        .authed(Method::POST, "/optimize")
        .json(&json!({"prompt": "p", "bogus": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 422);
    assert_deprecated(&invalid, "/v1/optimize", "422");

    let mut limited = None;
    for _ in 0..20 {
        let response = server
            .authed(Method::GET, "/optimize/no-such-job")
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("the bucket ran dry");
    assert_deprecated(&limited, "/v1/optimize", "429");

    let health = server
        .http
        .post(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 405);
    assert_deprecated(&health, "/v1/healthz", "405 on /healthz");
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (
        status,
        response.json::<Value>().await.unwrap()["error"].clone(),
    )
}

#[tokio::test]
async fn error_details_are_empty_except_for_validation_errors() {
    let server = Server::start(Settings {
        max_request_bytes: 100,
        rate_limit_per_min: 60,
        rate_limit_burst: 3,
        ..settings()
    })
    .await;
    let (status, error) = error_of(
        server
            .http
            .get(server.url("/v1/optimize/x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &error["details"]), (401, &json!({})));

    let (status, error) = error_of(
        server
            .authed(Method::POST, "/v1/optimize")
            .json(&json!({"prompt": "x".repeat(200)}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &error["details"]), (413, &json!({})));
    assert!(
        error["message"].as_str().unwrap().contains("100"),
        "the limit is in the message: {error}"
    );

    let (status, error) = error_of(
        server
            .authed(Method::POST, "/v1/optimize")
            .json(&json!({"prompt": ""}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        error["details"]["errors"][0]["loc"],
        json!(["body", "prompt"])
    );

    let mut limited = None;
    for _ in 0..20 {
        let response = server
            .authed(Method::GET, "/v1/optimize/x")
            .send()
            .await
            .unwrap();
        if response.status() == 404 {
            let (_, error) = error_of(response).await;
            assert_eq!(error["details"], json!({}), "404");
            continue;
        }
        limited = Some(response);
        break;
    }
    let limited = limited.expect("the bucket ran dry");
    assert!(limited.headers().contains_key("retry-after"));
    let (status, error) = error_of(limited).await;
    assert_eq!((status, &error["details"]), (429, &json!({})));
}
