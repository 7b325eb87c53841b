//! The SSE wire format through the edge: headers, prelude, frames and envelope, pings, the
//! terminal end, resume (header and query) without gap or duplicate, several watchers, errors
//! before and after the first byte, and release of the upstream watch on disconnect.

mod support;

use serde_json::json;
use support::edge::{ProbedEdge, RawSse, SseFrame, TestServer, eventually, test_settings};

fn events_url(server: &TestServer, job_id: &str) -> String {
    server.url(&format!("/v1/optimize/{job_id}/events"))
}

fn ids(frames: &[SseFrame]) -> Vec<u64> {
    frames.iter().map(|f| f.id.unwrap()).collect()
}

#[tokio::test]
async fn stream_bytes_follow_the_contract() {
    let server = TestServer::start().await;
    let job_id = server.create(2).await;
    let mut sse = RawSse::connect(
        server
            .http
            .get(events_url(&server, &job_id))
            .header("X-Request-ID", "sse-1"),
    )
    .await;
    assert_eq!(sse.status, 200);
    let header = |name: &str| {
        sse.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(header("connection").as_deref(), Some("keep-alive"));
    assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));
    assert_eq!(header("x-request-id").as_deref(), Some("sse-1"));
    assert_eq!(header("content-encoding"), None);

    assert_eq!(sse.next_frame().await.as_deref(), Some("retry: 1500\n\n"));
    let started = sse.next_event().await.unwrap();
    server.release(2);
    let mut frames = vec![started];
    frames.extend(sse.rest().await);
    let names: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(names, ["started", "mutation", "mutation", "finished"]);
    assert_eq!(ids(&frames), [1, 2, 3, 4]);
    for frame in &frames {
        let id = frame.id.unwrap();
        let prefix = format!(
            "id: {id}\nevent: {}\ndata: {{\"type\":\"{}\",\"schema_version\":1,\"job_id\":\"{job_id}\",\"ts\":",
            frame.event, frame.event
        );
        assert!(frame.text.starts_with(&prefix), "{:?}", frame.text);
        let envelope = frame.json();
        assert!(
            !frame.data.contains("\": ") && !frame.data.contains(", \""),
            "compact JSON"
        );
        assert!(frame.text.ends_with("}\n\n"));
        let keys: Vec<&str> = envelope
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["type", "schema_version", "job_id", "ts", "id", "data"]
        );
        assert_eq!(envelope["id"], json!(id));
        assert!(envelope["ts"].as_f64().unwrap() > 1.7e9);
    }
    assert_eq!(frames[1].json()["data"], json!({"count": 1}));
    assert_eq!(
        frames[3].json()["data"]["proposal"],
        json!("write a haiku about rust")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn idle_streams_get_comment_pings() {
    let server = TestServer::start_with(innerloop::config::Settings {
        sse_ping_interval_s: 0.05,
        ..test_settings()
    })
    .await;
    let job_id = server.create(1).await;
    let mut sse = RawSse::connect(server.http.get(events_url(&server, &job_id))).await;
    assert_eq!(sse.next_frame().await.as_deref(), Some("retry: 1500\n\n"));
    assert_eq!(sse.next_event().await.unwrap().event, "started");
    assert_eq!(sse.next_frame().await.as_deref(), Some(":\n\n"));
    assert_eq!(sse.next_frame().await.as_deref(), Some(":\n\n"));
    server.release(1);
    let rest = sse.rest().await;
    assert_eq!(rest.last().unwrap().event, "finished");
    server.shutdown().await;
}

#[tokio::test]
async fn resume_with_header_or_query_has_no_gap_and_no_duplicate() {
    let server = TestServer::start().await;
    let job_id = server.create(4).await;
    server.release(2);
    let mut first = RawSse::connect(server.http.get(events_url(&server, &job_id))).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(first.next_event().await.unwrap());
    }
    drop(first);
    assert_eq!(ids(&seen), [1, 2, 3]);

    // Header wins over the query.
    let mut by_header = RawSse::connect(
        server
            .http
            .get(format!("{}?last_event_id=1", events_url(&server, &job_id)))
            .header("Last-Event-ID", "3"),
    )
    .await;
    assert_eq!(
        by_header.next_frame().await.as_deref(),
        Some("retry: 1500\n\n")
    );
    // An empty header does not shadow the query.
    let mut by_query = RawSse::connect(
        server
            .http
            .get(format!("{}?last_event_id=2", events_url(&server, &job_id)))
            .header("Last-Event-ID", ""),
    )
    .await;
    server.release(2);
    let resumed = by_header.rest().await;
    assert_eq!(ids(&resumed), [4, 5, 6]);
    assert_eq!(resumed.last().unwrap().event, "finished");
    assert_eq!(ids(&by_query.rest().await), [3, 4, 5, 6]);

    // Non-digit resume points mean 0; at or past the terminal the stream ends at once.
    let mut garbage = RawSse::connect(
        server
            .http
            .get(events_url(&server, &job_id))
            .header("Last-Event-ID", "x7"),
    )
    .await;
    assert_eq!(ids(&garbage.rest().await), [1, 2, 3, 4, 5, 6]);
    let mut past = RawSse::connect(
        server
            .http
            .get(events_url(&server, &job_id))
            .header("Last-Event-ID", "6"),
    )
    .await;
    assert!(past.rest().await.is_empty());
    assert_eq!(past.raw, b"retry: 1500\n\n");
    server.shutdown().await;
}

#[tokio::test]
async fn two_watchers_of_one_job_both_get_everything() {
    let server = TestServer::start().await;
    let job_id = server.create(3).await;
    let mut a = RawSse::connect(server.http.get(events_url(&server, &job_id))).await;
    let mut b = RawSse::connect(server.http.get(events_url(&server, &job_id))).await;
    assert_eq!(a.next_event().await.unwrap().id, Some(1));
    assert_eq!(b.next_event().await.unwrap().id, Some(1));
    server.release(3);
    let (rest_a, rest_b) = tokio::join!(a.rest(), b.rest());
    assert_eq!(ids(&rest_a), [2, 3, 4, 5]);
    assert_eq!(ids(&rest_b), [2, 3, 4, 5]);
    assert_eq!(a.raw, b.raw, "both watchers see identical bytes");
    server.shutdown().await;
}

#[tokio::test]
async fn cancelling_ends_open_streams_with_the_cancelled_event() {
    let server = TestServer::start().await;
    let job_id = server.create(3).await;
    let mut sse = RawSse::connect(server.http.get(events_url(&server, &job_id))).await;
    assert_eq!(sse.next_event().await.unwrap().event, "started");
    let cancel = server
        .http
        .delete(server.url(&format!("/v1/optimize/{job_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let rest = sse.rest().await;
    assert_eq!(
        rest.iter().map(|f| f.event.as_str()).collect::<Vec<_>>(),
        ["cancelled"]
    );
    assert_eq!(rest[0].json()["data"], json!({}));
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_job_is_a_plain_404_before_any_stream_byte() {
    let server = TestServer::start().await;
    let response = server
        .http
        .get(events_url(&server, "missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().get("x-request-id").is_some());
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"error":{"code":"not_found","message":"job missing not found","details":{}}})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn server_shutdown_ends_streams_with_the_shutdown_event() {
    let server = TestServer::start().await;
    let job_id = server.create(3).await;
    let mut sse = RawSse::connect(server.http.get(events_url(&server, &job_id))).await;
    assert_eq!(sse.next_event().await.unwrap().event, "started");
    let stopping = tokio::spawn(server.shutdown());
    let rest = sse.rest().await;
    assert_eq!(rest.last().unwrap().event, "shutdown");
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_disconnected_client_releases_its_upstream_watch() {
    let edge = ProbedEdge::start(test_settings()).await;
    let job_id = edge.create(3).await;
    let url = edge.url(&format!("/v1/optimize/{job_id}/events"));
    let mut sse = RawSse::connect(edge.http.get(&url)).await;
    assert_eq!(sse.next_event().await.unwrap().event, "started");
    let mut other = RawSse::connect(edge.http.get(&url)).await;
    assert_eq!(other.next_event().await.unwrap().event, "started");
    assert_eq!(edge.open_watches(), 2);
    drop(sse);
    eventually("the dropped client's core watch ends", || {
        edge.open_watches() == 1
    })
    .await;
    // The job and the other watcher are unaffected.
    edge.gate.add_permits(3);
    let rest = other.rest().await;
    assert_eq!(rest.last().unwrap().event, "finished");
    eventually("the finished watch ends", || edge.open_watches() == 0).await;
}

#[tokio::test]
async fn an_upstream_failure_after_the_first_byte_becomes_an_error_event() {
    let edge = ProbedEdge::start(test_settings()).await;
    let job_id = edge.create(3).await;
    let mut sse = RawSse::connect(
        edge.http
            .get(edge.url(&format!("/v1/optimize/{job_id}/events"))),
    )
    .await;
    assert_eq!(sse.next_event().await.unwrap().event, "started");
    edge.probe.break_streams.cancel();
    assert_eq!(
        sse.next_frame().await.as_deref(),
        Some(
            "event: error\ndata: {\"error\":{\"code\":\"unavailable\",\"message\":\"the job service is unavailable\",\"details\":{}}}\n\n"
        )
    );
    assert_eq!(
        sse.next_frame().await,
        None,
        "the stream closes after the error"
    );
}
