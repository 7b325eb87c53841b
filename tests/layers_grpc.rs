//! The shared layers on the gRPC core: auth on every RPC, rate limits with `retry-after`,
//! size limits, stream caps, request ids, logs without tokens, metrics.

mod support;

use innerloop::api::pb;
use pb::job_service_client::JobServiceClient;
use pb::optimizer_service_client::OptimizerServiceClient;
use support::layers::{TOKEN, capture_logs, settings, start_core};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn create_request() -> pb::OptimizeRequest {
    pb::OptimizeRequest {
        prompt: "write a haiku".into(),
        ..Default::default()
    }
}

/// Calls every RPC of the core with `token`; returns each one's outcome code.
async fn call_every_rpc(channel: Channel, token: Option<&str>) -> Vec<(&'static str, Code)> {
    let mut jobs = JobServiceClient::new(channel.clone());
    let mut optimizer = OptimizerServiceClient::new(channel);
    let code = |r: Result<(), Status>| r.err().map(|s| s.code()).unwrap_or(Code::Ok);
    let job = pb::GetJobRequest {
        job_id: "no-such-job".into(),
    };
    vec![
        (
            "GetJob",
            code(
                jobs.get_job(with_token(job.clone(), token))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "ListJobs",
            code(
                jobs.list_jobs(with_token(pb::ListJobsRequest::default(), token))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "CancelJob",
            code(
                jobs.cancel_job(with_token(
                    pb::CancelJobRequest {
                        job_id: "no-such-job".into(),
                    },
                    token,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "DeleteJob",
            code(
                jobs.delete_job(with_token(
                    pb::DeleteJobRequest {
                        job_id: "no-such-job".into(),
                    },
                    token,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "WatchJob",
            code(
                jobs.watch_job(with_token(
                    pb::WatchJobRequest {
                        job_id: "no-such-job".into(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "CreateJob",
            code(
                optimizer
                    .create_job(with_token(create_request(), token))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "Optimize",
            code(
                optimizer
                    .optimize(with_token(create_request(), token))
                    .await
                    .map(|_| ()),
            ),
        ),
    ]
}

#[tokio::test]
async fn every_rpc_requires_a_valid_token() {
    let core = start_core(settings()).await;
    let channel = Channel::from_shared(core.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    for token in [None, Some("wrong-token")] {
        for (rpc, code) in call_every_rpc(channel.clone(), token).await {
            assert_eq!(code, Code::Unauthenticated, "{rpc} with {token:?}");
        }
    }
    for (rpc, code) in call_every_rpc(channel.clone(), Some(TOKEN)).await {
        assert!(
            matches!(code, Code::Ok | Code::NotFound),
            "{rpc} with the right token gave {code:?}"
        );
    }
    core.stop.cancel();
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    let core = start_core(settings()).await;
    let channel = Channel::from_shared(core.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().status, 1); // SERVING
    core.stop.cancel();
}

#[tokio::test]
async fn a_flood_gets_resource_exhausted_with_retry_after() {
    let core = start_core(innerloop::config::Settings {
        rate_limit_per_min: 1,
        rate_limit_burst: 3,
        ..settings()
    })
    .await;
    let channel = Channel::from_shared(core.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut jobs = JobServiceClient::new(channel.clone());
    for _ in 0..3 {
        let reply = jobs
            .list_jobs(with_token(pb::ListJobsRequest::default(), Some(TOKEN)))
            .await
            .unwrap();
        assert_eq!(reply.metadata().get("x-ratelimit-limit").unwrap(), "3");
    }
    let status = jobs
        .list_jobs(with_token(pb::ListJobsRequest::default(), Some(TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry_after: u64 = status
        .metadata()
        .get("retry-after")
        .expect("retry-after metadata")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(status.metadata().get("x-ratelimit-remaining").unwrap(), "0");
    // Health is never limited.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    core.stop.cancel();
}

#[tokio::test]
async fn an_oversized_message_is_resource_exhausted() {
    let core = start_core(innerloop::config::Settings {
        max_request_bytes: 1000,
        ..settings()
    })
    .await;
    let channel = Channel::from_shared(core.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut optimizer = OptimizerServiceClient::new(channel);
    for size in [1_001, 100_000] {
        let request = pb::OptimizeRequest {
            prompt: "x".repeat(size),
            ..Default::default()
        };
        let status = optimizer
            .create_job(with_token(request, Some(TOKEN)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{size}: {status:?}");
    }
    let fits = pb::OptimizeRequest {
        prompt: "x".repeat(900),
        ..Default::default()
    };
    optimizer
        .create_job(with_token(fits, Some(TOKEN)))
        .await
        .unwrap();
    core.stop.cancel();
}

#[tokio::test]
async fn open_streams_are_capped_per_principal_and_released() {
    let core = start_core(innerloop::config::Settings {
        max_streams_per_principal: 2,
        ..settings()
    })
    .await;
    let channel = Channel::from_shared(core.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut optimizer = OptimizerServiceClient::new(channel.clone());
    let mut jobs = JobServiceClient::new(channel);
    let job_id = optimizer
        .create_job(with_token(create_request(), Some(TOKEN)))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let watch = || pb::WatchJobRequest {
        job_id: job_id.clone(),
        ..Default::default()
    };
    let first = jobs
        .watch_job(with_token(watch(), Some(TOKEN)))
        .await
        .unwrap();
    let _second = optimizer
        .optimize(with_token(create_request(), Some(TOKEN)))
        .await
        .unwrap();
    let third = jobs
        .watch_job(with_token(watch(), Some(TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted);
    drop(first);
    // The slot comes back once the server sees the stream end.
    let mut reopened = None;
    for _ in 0..100 {
        match jobs.watch_job(with_token(watch(), Some(TOKEN))).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    assert!(reopened.is_some(), "slot was not released");
    core.stop.cancel();
}

#[tokio::test]
async fn request_ids_are_echoed_and_logs_never_contain_the_token() {
    let logs = capture_logs();
    let core = start_core(settings()).await;
    let channel = Channel::from_shared(core.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut jobs = JobServiceClient::new(channel);
    let mut request = with_token(pb::ListJobsRequest::default(), Some(TOKEN));
    request
        .metadata_mut()
        .insert("x-request-id", "req-grpc-1".parse().unwrap());
    let reply = jobs.list_jobs(request).await.unwrap();
    assert_eq!(reply.metadata().get("x-request-id").unwrap(), "req-grpc-1");
    let generated = jobs
        .list_jobs(with_token(
            pb::ListJobsRequest::default(),
            Some("bad-token-0815"),
        ))
        .await
        .unwrap_err();
    assert_eq!(generated.metadata().get("x-request-id").unwrap().len(), 36);
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("req-grpc-1"))
        .expect("an access log line for the request");
    let entry: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["route"], "/innerloop.v1.JobService/ListJobs");
    assert_eq!(entry["grpc_code"], "0");
    assert_eq!(
        entry["principal"],
        innerloop::layers::auth::principal_id(TOKEN)
    );
    assert!(
        entry["client_ip"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1")
    );
    assert!(
        text.contains("\"grpc_code\":\"16\""),
        "the 401 is logged too"
    );
    assert!(!text.contains(TOKEN) && !text.contains("bad-token-0815"));
    core.stop.cancel();
}

#[tokio::test]
async fn grpc_metrics_count_codes_and_jobs() {
    let core = start_core(settings()).await;
    let channel = Channel::from_shared(core.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut optimizer = OptimizerServiceClient::new(channel.clone());
    let mut jobs = JobServiceClient::new(channel);
    let before = innerloop::metrics::render_json();
    let created = |v: &serde_json::Value| v["jobs_created_total"].as_f64().unwrap_or(0.0);
    let cancelled = |v: &serde_json::Value| v["jobs_cancelled_total"].as_f64().unwrap_or(0.0);
    let job_id = optimizer
        .create_job(with_token(create_request(), Some(TOKEN)))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    jobs.cancel_job(with_token(pb::CancelJobRequest { job_id }, Some(TOKEN)))
        .await
        .unwrap();
    let _ = jobs
        .list_jobs(Request::new(pb::ListJobsRequest::default()))
        .await;
    let after = innerloop::metrics::render_json();
    assert!(created(&after) >= created(&before) + 1.0);
    assert!(cancelled(&after) >= cancelled(&before) + 1.0);
    let text = innerloop::metrics::render_text();
    assert!(text.contains(
        r#"grpc_server_handled_total{grpc_service="innerloop.v1.JobService",grpc_method="ListJobs",grpc_code="16"}"#
    ), "{text}");
    assert!(text.contains("grpc_server_handling_seconds_bucket"));
    assert!(text.contains(r#"store_operation_seconds_count{op="append_events"}"#));
    core.stop.cancel();
}

#[tokio::test]
async fn a_forwarded_stream_token_opens_only_watch_of_its_job() {
    let core = start_core(innerloop::config::Settings {
        stream_token_key: Some("shared-key".into()),
        ..settings()
    })
    .await;
    let tokens = innerloop::layers::stream_token::StreamTokens::new(b"shared-key".to_vec(), 60);
    let channel = Channel::from_shared(core.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut optimizer = OptimizerServiceClient::new(channel.clone());
    let mut jobs = JobServiceClient::new(channel);
    let job_id = optimizer
        .create_job(with_token(create_request(), Some(TOKEN)))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let token = tokens
        .issue(&job_id, &innerloop::layers::auth::principal_id(TOKEN))
        .token;
    let watch = |job: &str| pb::WatchJobRequest {
        job_id: job.into(),
        ..Default::default()
    };
    jobs.watch_job(with_token(watch(&job_id), Some(&token)))
        .await
        .unwrap();
    let other = jobs
        .watch_job(with_token(watch("other-job"), Some(&token)))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::Unauthenticated);
    let get = jobs
        .get_job(with_token(
            pb::GetJobRequest {
                job_id: job_id.clone(),
            },
            Some(&token),
        ))
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::Unauthenticated);
    core.stop.cancel();
}

#[tokio::test]
async fn anonymous_callers_are_limited_per_ip_and_forwarded_for_needs_a_trusted_proxy() {
    async fn calls_allowed(trusted: Vec<String>) -> Vec<bool> {
        let core = start_core(innerloop::config::Settings {
            require_auth: false,
            dev_mode: true,
            rate_limit_per_min: 1,
            rate_limit_burst: 1,
            trusted_proxies: trusted,
            ..settings()
        })
        .await;
        let channel = Channel::from_shared(core.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut jobs = JobServiceClient::new(channel);
        let mut allowed = Vec::new();
        for client in ["198.51.100.1", "198.51.100.2"] {
            let mut request = Request::new(pb::ListJobsRequest::default());
            request
                .metadata_mut()
                .insert("x-forwarded-for", client.parse().unwrap());
            allowed.push(jobs.list_jobs(request).await.is_ok());
        }
        core.stop.cancel();
        allowed
    }
    // Untrusted peer: the header is ignored, both calls share the peer's bucket of one.
    assert_eq!(calls_allowed(vec![]).await, [true, false]);
    // Trusted peer: each forwarded client has its own bucket.
    assert_eq!(
        calls_allowed(vec!["127.0.0.0/8".into()]).await,
        [true, true]
    );
}
