//! The gRPC core end to end: a real server on 127.0.0.1:0 and tonic clients.

mod support;

use std::time::Duration;

use innerloop::api::pb;
use support::grpc::*;
use tonic::Code;

#[tokio::test]
async fn optimize_streams_every_event_to_the_terminal_one() {
    let core = Core::start(test_settings(), Some(ticker(5, 0))).await;
    let stream = core
        .optimizer()
        .await
        .optimize(request("write a haiku"))
        .await
        .unwrap()
        .into_inner();
    let events = collect(stream).await;
    assert_eq!(
        types(&events),
        [
            "started", "mutation", "mutation", "mutation", "mutation", "mutation", "finished"
        ]
    );
    assert_eq!(ids(&events), (1..=7).collect::<Vec<u64>>());
    let job_id = &events[0].job_id;
    assert!(
        events
            .iter()
            .all(|e| &e.job_id == job_id && e.time.is_some())
    );
    match &events[6].payload {
        Some(pb::job_event::Payload::Finished(f)) => assert!(f.result.is_some()),
        other => panic!("unexpected {other:?}"),
    }
    let job = core
        .jobs()
        .await
        .get_job(pb::GetJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status(), pb::JobStatus::Finished);
    assert_eq!(job.last_event_id, 7);
    assert!(job.result.is_some());
    core.shutdown().await;
}

#[tokio::test]
async fn two_watchers_of_one_job_each_receive_every_event_in_order() {
    let core = Core::start(test_settings(), Some(ticker(20, 5))).await;
    let job_id = core
        .optimizer()
        .await
        .create_job(request("p"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let mut jobs = core.jobs().await;
    let a = jobs
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.clone(),
            after_event_id: 0,
        })
        .await
        .unwrap();
    let b = jobs
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.clone(),
            after_event_id: 0,
        })
        .await
        .unwrap();
    let (a, b) = tokio::join!(collect(a.into_inner()), collect(b.into_inner()));
    assert_eq!(ids(&a), (1..=22).collect::<Vec<u64>>());
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(a.last().unwrap().r#type, "finished");
    core.shutdown().await;
}

#[tokio::test]
async fn resume_from_an_event_id_yields_exactly_the_missing_events() {
    let core = Core::start(test_settings(), Some(ticker(30, 2))).await;
    let job_id = core
        .optimizer()
        .await
        .create_job(request("p"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let mut jobs = core.jobs().await;
    // Read a few events live, then drop the stream mid-job.
    let mut first = jobs
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.clone(),
            after_event_id: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(first.message().await.unwrap().unwrap().id);
    }
    drop(first);
    let rest = collect(
        jobs.watch_job(pb::WatchJobRequest {
            job_id: job_id.clone(),
            after_event_id: 5,
        })
        .await
        .unwrap()
        .into_inner(),
    )
    .await;
    seen.extend(ids(&rest));
    assert_eq!(seen, (1..=32).collect::<Vec<u64>>(), "no gap, no duplicate");
    // Resuming at the terminal id ends at once; past it too.
    for after in [32, 40] {
        let none = collect(
            jobs.watch_job(pb::WatchJobRequest {
                job_id: job_id.clone(),
                after_event_id: after,
            })
            .await
            .unwrap()
            .into_inner(),
        )
        .await;
        assert!(none.is_empty(), "after {after}: {:?}", ids(&none));
    }
    core.shutdown().await;
}

#[tokio::test]
async fn a_watcher_that_never_reads_stalls_neither_the_job_nor_other_watchers() {
    let settings = innerloop::config::Settings {
        sse_buffer_size: 8,
        ..test_settings()
    };
    let core = Core::start(settings, Some(ticker(2_000, 0))).await;
    let job_id = core
        .optimizer()
        .await
        .create_job(request("p"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let mut jobs = core.jobs().await;
    // The stalled watcher: opened, never read.
    let _stalled = jobs
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.clone(),
            after_event_id: 0,
        })
        .await
        .unwrap();
    let reader = collect(
        core.jobs()
            .await
            .watch_job(pb::WatchJobRequest {
                job_id: job_id.clone(),
                after_event_id: 0,
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(reader.len(), 2_002);
    assert_eq!(ids(&reader), (1..=2_002).collect::<Vec<u64>>());
    let job = jobs
        .get_job(pb::GetJobRequest { job_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status(), pb::JobStatus::Finished);
    core.shutdown().await;
}

#[tokio::test]
async fn cancel_running_job_returns_it_cancelled_then_conflicts_and_unknown_is_not_found() {
    let core = Core::start(test_settings(), Some(ticker(1_000, 20))).await;
    let job_id = core
        .optimizer()
        .await
        .create_job(request("p"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let mut jobs = core.jobs().await;
    let job = jobs
        .cancel_job(pb::CancelJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status(), pb::JobStatus::Cancelled);
    let again = jobs
        .cancel_job(pb::CancelJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let missing = jobs
        .cancel_job(pb::CancelJobRequest {
            job_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let events = collect(
        jobs.watch_job(pb::WatchJobRequest {
            job_id,
            after_event_id: 0,
        })
        .await
        .unwrap()
        .into_inner(),
    )
    .await;
    let terminals: Vec<_> = types(&events)
        .into_iter()
        .filter(|t| t != "started" && t != "mutation")
        .collect();
    assert_eq!(terminals, ["cancelled"], "exactly one terminal event");
    core.shutdown().await;
}

#[tokio::test]
async fn same_idempotency_key_returns_the_same_job() {
    let core = Core::start(test_settings(), Some(ticker(1, 0))).await;
    let mut client = core.optimizer().await;
    let req = pb::OptimizeRequest {
        idempotency_key: "k-1".into(),
        ..request("p")
    };
    let a = client
        .create_job(req.clone())
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let b = client.create_job(req).await.unwrap().into_inner().job_id;
    let c = client
        .create_job(request("p"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    assert_eq!(a, b);
    assert_ne!(a, c);
    let listed = core
        .jobs()
        .await
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs.len(), 2);
    core.shutdown().await;
}

#[tokio::test]
async fn a_job_past_its_wall_time_fails_with_deadline_exceeded() {
    let settings = innerloop::config::Settings {
        max_wall_time_s: 0.2,
        ..test_settings()
    };
    let core = Core::start(settings, Some(ticker(1_000, 50))).await;
    let events = collect(
        core.optimizer()
            .await
            .optimize(request("p"))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    match &events.last().unwrap().payload {
        Some(pb::job_event::Payload::Failed(f)) => assert_eq!(f.error, "deadline_exceeded"),
        other => panic!("unexpected {other:?}"),
    }
    let job = core
        .jobs()
        .await
        .get_job(pb::GetJobRequest {
            job_id: events[0].job_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status(), pb::JobStatus::Failed);
    core.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_running_jobs_with_a_shutdown_event_and_ends_watchers() {
    let core = Core::start(test_settings(), Some(ticker(10_000, 20))).await;
    let mut stream = core
        .optimizer()
        .await
        .optimize(request("p"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().r#type, "started");
    let runtime = core.runtime.clone();
    let reader = tokio::spawn(collect(stream));
    core.shutdown().await;
    let rest = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap();
    let last = rest.last().unwrap();
    assert_eq!(last.r#type, "shutdown");
    match &last.payload {
        Some(pb::job_event::Payload::Shutdown(s)) => assert_eq!(s.reason, "shutdown"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!runtime.is_accepting());
}

#[tokio::test]
async fn invalid_requests_are_rejected_with_field_details() {
    let core = Core::start(test_settings(), Some(ticker(1, 0))).await;
    let mut client = core.optimizer().await;
    let bad = pb::OptimizeRequest {
        iterations: Some(0),
        objectives: vec!["speed".into()],
        ..request("")
    };
    let status = client.create_job(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let info = innerloop::api::status::error_from_status(&status);
    assert_eq!(info.code.as_str(), "validation_error");
    let locs: Vec<String> = info.details["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["loc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    assert_eq!(locs, ["objectives.0", "iterations", "prompt"]);
    core.shutdown().await;
}

#[tokio::test]
async fn list_jobs_pages_newest_first_and_filters_by_status() {
    let core = Core::start(test_settings(), Some(ticker(1, 0))).await;
    let mut client = core.optimizer().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(
            client
                .create_job(request("p"))
                .await
                .unwrap()
                .into_inner()
                .job_id,
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut jobs = core.jobs().await;
    let page1 = jobs
        .list_jobs(pb::ListJobsRequest {
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let page2 = jobs
        .list_jobs(pb::ListJobsRequest {
            page_size: 3,
            page_token: page1.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<String> = page1
        .jobs
        .iter()
        .chain(&page2.jobs)
        .map(|j| j.job_id.clone())
        .collect();
    created.reverse();
    assert_eq!(listed, created);
    assert!(page2.next_page_token.is_empty());
    let cancelled = jobs
        .list_jobs(pb::ListJobsRequest {
            status: vec![pb::JobStatus::Cancelled as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cancelled.jobs.is_empty());
    core.shutdown().await;
}

#[tokio::test]
async fn delete_removes_a_job_and_its_events() {
    let core = Core::start(test_settings(), Some(ticker(1_000, 10))).await;
    let job_id = core
        .optimizer()
        .await
        .create_job(request("p"))
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let mut jobs = core.jobs().await;
    assert!(
        jobs.delete_job(pb::DeleteJobRequest {
            job_id: job_id.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .deleted
    );
    assert_eq!(
        jobs.get_job(pb::GetJobRequest {
            job_id: job_id.clone()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    assert_eq!(
        jobs.watch_job(pb::WatchJobRequest {
            job_id: job_id.clone(),
            after_event_id: 0
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    assert!(
        !jobs
            .delete_job(pb::DeleteJobRequest { job_id })
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    core.shutdown().await;
}

#[tokio::test]
async fn health_reports_serving_and_reflection_lists_the_services() {
    let core = Core::start(test_settings(), Some(ticker(1, 0))).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(core.channel().await);
    for service in [
        "",
        "innerloop.v1.OptimizerService",
        "innerloop.v1.JobService",
    ] {
        let resp = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            resp.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "{service}"
        );
    }
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            core.channel().await,
        );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let names: Vec<String> = match response.message_response {
        Some(tonic_reflection::pb::v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected {other:?}"),
    };
    for expected in [
        "innerloop.v1.OptimizerService",
        "innerloop.v1.JobService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    core.shutdown().await;
}
