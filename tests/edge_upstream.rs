//! `innerloop edge --upstream URL` as its own process in front of a separate `innerloop serve`
//! process: create + stream behave exactly as through the core's own edge, and readiness follows
//! the core.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

/// A child process killed when the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn innerloop(args: &[&str]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_innerloop"))
        .args(args)
        .env("LOG_LEVEL", "warn")
        .env("JOB_STORE", "memory")
        .env("SSE_PING_INTERVAL_S", "30")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn innerloop");
    Proc(child)
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    for _ in 0..300 {
        if let Ok(response) = http.get(format!("{base}/v1/readyz")).send().await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} never became ready");
}

async fn stream_bytes(http: &reqwest::Client, url: &str) -> Vec<u8> {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let mut body = response.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("stream stalled")
    {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

#[tokio::test]
async fn edge_process_in_front_of_a_core_process_behaves_the_same() {
    let (core_http, core_grpc, edge_http) = (free_port(), free_port(), free_port());
    let _core = innerloop(&[
        "serve",
        "--dev",
        "--port",
        &core_http.to_string(),
        "--grpc-port",
        &core_grpc.to_string(),
    ]);
    let upstream = format!("http://127.0.0.1:{core_grpc}");
    let edge = innerloop(&[
        "edge",
        "--dev",
        "--upstream",
        &upstream,
        "--port",
        &edge_http.to_string(),
    ]);
    let http = reqwest::Client::new();
    let (core_base, edge_base) = (
        format!("http://127.0.0.1:{core_http}"),
        format!("http://127.0.0.1:{edge_http}"),
    );
    wait_ready(&http, &core_base).await;
    wait_ready(&http, &edge_base).await;

    let created = http
        .post(format!("{edge_base}/v1/optimize?iterations=2"))
        .header("Idempotency-Key", "upstream-test")
        .json(&json!({"prompt": "hello edge", "target_model": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    assert!(created.headers().get("x-request-id").is_some());
    let job_id = created.json::<serde_json::Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();

    let via_edge = stream_bytes(&http, &format!("{edge_base}/v1/optimize/{job_id}/events")).await;
    let via_core = stream_bytes(&http, &format!("{core_base}/v1/optimize/{job_id}/events")).await;
    assert_eq!(via_edge, via_core, "both edges send identical bytes");
    let text = String::from_utf8(via_edge).unwrap();
    assert!(
        text.starts_with("retry: 1500\n\nid: 1\nevent: started\n"),
        "{text}"
    );
    assert!(text.contains("\"target_model\":\"t\""));
    assert!(text.ends_with("}\n\n") && text.contains("event: finished\n"));

    let state = |base: String| {
        let http = http.clone();
        let job_id = job_id.clone();
        async move {
            http.get(format!("{base}/v1/optimize/{job_id}"))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let (a, b) = (
        state(edge_base.clone()).await,
        state(core_base.clone()).await,
    );
    assert_eq!(a, b);
    assert_eq!(a["status"], json!("finished"));

    let missing = http
        .get(format!("{edge_base}/v1/optimize/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<serde_json::Value>().await.unwrap(),
        json!({"error":{"code":"not_found","message":"job nope not found","details":{}}})
    );

    // Without its core the edge is not ready and says so in the envelope.
    drop(_core);
    let not_ready = http
        .get(format!("{edge_base}/v1/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_ready.status(), 503);
    assert_eq!(
        not_ready.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        json!("unavailable")
    );
    let unavailable = http
        .get(format!("{edge_base}/v1/optimize/{job_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(unavailable.status(), 503);
    drop(edge);
}
