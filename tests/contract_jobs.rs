//! What the original's clients see of jobs (issue 16): the byte limit is the only size limit,
//! default mode paces itself (cancel right after create works; idle gaps carry pings), fails
//! `deadline_exceeded` past `MAX_WALL_TIME_S`, always names a rubric, and eval jobs treat `name`
//! as a label over the stored examples.

mod support;

use innerloop::config::Settings;
use reqwest::Method;
use serde_json::{Value, json};
use support::contract::{Server, events, settings};

/// `{"prompt":"xxx…"}` of exactly `bytes` bytes.
fn body_of(bytes: usize) -> String {
    let frame = r#"{"prompt":""}"#.len();
    format!(r#"{{"prompt":"{}"}}"#, "x".repeat(bytes - frame))
}

#[tokio::test]
async fn a_body_of_exactly_max_request_bytes_is_accepted_and_one_byte_more_is_413() {
    let server = Server::start(settings()).await;
    let limit = settings().max_request_bytes;
    assert_eq!(limit, 64_000);
    for (bytes, status) in [(limit, 200), (limit + 1, 413)] {
        let body = body_of(bytes);
        assert_eq!(body.len(), bytes);
        let response = server
            .authed(Method::POST, "/v1/optimize")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{bytes} bytes");
    }
}

#[tokio::test]
async fn long_example_inputs_and_rubrics_have_no_hidden_caps() {
    let server = Server::start(settings()).await;
    let long = "word ".repeat(5_000);
    let response = server
        .authed(Method::POST, "/v1/optimize")
        .json(&json!({
            "prompt": "p",
            "evaluation_rubric": long,
            "examples": [{"input": long}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

async fn cancel_right_after_create(server: &Server, cancel: (Method, &str)) {
    let job = server
        .create(4, json!({"prompt": "describe a lighthouse at night"}))
        .await;
    let path = cancel.1.replace("{id}", &job);
    let response = server.authed(cancel.0.clone(), &path).send().await.unwrap();
    assert_eq!(response.status(), 200, "{} {path}", cancel.0);
    let state: Value = response.json().await.unwrap();
    assert_eq!(state["status"], "cancelled");
    let sse = server.sse_text(&format!("/v1/optimize/{job}/events")).await;
    let names: Vec<String> = events(&sse).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names.first().map(String::as_str), Some("started"));
    assert_eq!(
        names.last().map(String::as_str),
        Some("cancelled"),
        "{names:?}"
    );
    assert!(sse.contains("event: cancelled\n"));
    // Cancelling again: 409 `not_cancelable`, with `details: {}`.
    let again = server.authed(cancel.0.clone(), &path).send().await.unwrap();
    assert_eq!(again.status(), 409);
    let error = &again.json::<Value>().await.unwrap()["error"];
    assert_eq!(
        (error["code"].as_str(), &error["details"]),
        (Some("not_cancelable"), &json!({}))
    );
}

#[tokio::test]
async fn cancelling_a_default_job_right_after_creating_it_gives_cancelled() {
    let server = Server::start(settings()).await;
    cancel_right_after_create(&server, (Method::DELETE, "/v1/optimize/{id}")).await;
    cancel_right_after_create(&server, (Method::POST, "/v1/admin/jobs/{id}/cancel")).await;
    cancel_right_after_create(&server, (Method::DELETE, "/optimize/{id}")).await;
}

#[tokio::test]
async fn default_mode_pauses_between_iterations_so_idle_streams_get_pings() {
    let server = Server::start(Settings {
        default_mode_iteration_delay_ms: 200,
        sse_ping_interval_s: 0.05,
        ..settings()
    })
    .await;
    let job = server.create(2, json!({"prompt": "a slow job"})).await;
    let sse = server.sse_text(&format!("/v1/optimize/{job}/events")).await;
    let between = sse
        .split("event: selected")
        .nth(1)
        .expect("a selected event")
        .split("event: mutation")
        .next()
        .unwrap();
    assert!(
        between.contains("\n:\n\n") || between.starts_with(":\n\n") || between.contains(":\n\n"),
        "a ping between iterations: {sse}"
    );
    let names: Vec<String> = events(&sse).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.last().map(String::as_str), Some("finished"));
}

#[tokio::test]
async fn default_mode_past_max_wall_time_fails_with_deadline_exceeded() {
    let server = Server::start(Settings {
        max_wall_time_s: 0.15,
        default_mode_iteration_delay_ms: 100,
        ..settings()
    })
    .await;
    let job = server
        .create(4, json!({"prompt": "too slow to finish"}))
        .await;
    let sse = server.sse_text(&format!("/v1/optimize/{job}/events")).await;
    let all = events(&sse);
    let (name, data) = all.last().unwrap();
    assert_eq!(name, "failed");
    assert_eq!(data, &json!({"error": "deadline_exceeded"}));
    let (status, state) = server.get_json(&format!("/v1/optimize/{job}")).await;
    assert_eq!(status, 200);
    assert_eq!(state["status"], "failed");
    assert_eq!(state["result"], json!({"error": "deadline_exceeded"}));
}

async fn rubrics(server: &Server, body: Value) -> Vec<Value> {
    let job = server.create(1, body).await;
    let sse = server.sse_text(&format!("/v1/optimize/{job}/events")).await;
    events(&sse)
        .into_iter()
        .filter(|(name, _)| name == "progress" || name == "finished")
        .map(|(_, data)| data["rubric"].clone())
        .collect()
}

#[tokio::test]
async fn progress_and_finished_always_carry_a_rubric() {
    let server = Server::start(settings()).await;
    assert_eq!(
        rubrics(&server, json!({"prompt": "p"})).await,
        [
            json!("overall quality and clarity"),
            json!("overall quality and clarity")
        ]
    );
    assert_eq!(
        rubrics(
            &server,
            json!({"prompt": "p", "evaluation_rubric": "brevity first"})
        )
        .await,
        [json!("brevity first"), json!("brevity first")]
    );
    drop(server);
    let server = Server::start(Settings {
        evaluation_rubric_default: Some("be kind".into()),
        ..settings()
    })
    .await;
    assert_eq!(
        rubrics(&server, json!({"prompt": "p"})).await,
        [json!("be kind"), json!("be kind")]
    );
}

async fn store_examples(server: &Server, n: usize) {
    let examples: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("ex-{i}"), "input": format!("what is {i} plus {i}"), "expected": format!("{}", 2 * i)}))
        .collect();
    let response = server
        .authed(Method::POST, "/v1/examples/bulk")
        .json(&examples)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn start_eval(server: &Server, body: Value) -> reqwest::Response {
    server
        .authed(Method::POST, "/v1/eval/start")
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn eval_name_is_a_label_and_the_stored_examples_are_evaluated() {
    let server = Server::start(settings()).await;
    store_examples(&server, 3).await;
    for name in ["baseline", "classify the sentiment"] {
        let response = start_eval(&server, json!({"name": name})).await;
        assert_eq!(response.status(), 200, "name {name:?}");
        let job = response.json::<Value>().await.unwrap()["job_id"]
            .as_str()
            .unwrap()
            .to_string();
        let sse = server.sse_text(&format!("/v1/eval/{job}/events")).await;
        let all = events(&sse);
        let started = &all.iter().find(|(n, _)| n == "eval_started").unwrap().1;
        assert_eq!(started["examples"], 3, "{started}");
        assert_eq!(started["task"], "what is 0 plus 0", "first example's input");
        assert_eq!(started["name"], name);
        let cases = all.iter().filter(|(n, _)| n == "eval_case").count();
        assert_eq!(cases, 3);
        assert_eq!(all.last().unwrap().0, "finished");

        let (status, state) = server.get_json(&format!("/v1/eval/{job}")).await;
        assert_eq!(status, 200);
        assert_eq!(state["job_id"], job.as_str());
        assert_eq!(state["status"], "finished");
        assert_eq!(state["result"]["count"], 3, "{state}");
    }
    let (status, _) = server.get_json("/v1/eval/no-such-job").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn eval_selects_a_built_in_pack_with_dataset() {
    let server = Server::start(settings()).await;
    let response = start_eval(
        &server,
        json!({"name": "qa run", "dataset": {"name": "toy_qa"}, "max_examples": 2, "prompt": "answer briefly"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let job = response.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sse = server.sse_text(&format!("/v1/eval/{job}/events")).await;
    let all = events(&sse);
    let started = &all.iter().find(|(n, _)| n == "eval_started").unwrap().1;
    assert_eq!(started["examples"], 2);
    assert_eq!(started["task"], "answer briefly");
    let response = start_eval(&server, json!({"dataset": {"name": "nope"}})).await;
    assert_eq!(response.status(), 422);
    let error = &response.json::<Value>().await.unwrap()["error"];
    assert_eq!(
        error["details"]["errors"][0]["loc"],
        json!(["body", "dataset", "name"])
    );
}

#[tokio::test]
async fn eval_validation_names_the_fields_of_the_eval_request() {
    let server = Server::start(settings()).await;
    let response = start_eval(&server, json!({"name": "x", "max_examples": 0})).await;
    assert_eq!(response.status(), 422);
    let error = &response.json::<Value>().await.unwrap()["error"];
    assert_eq!(
        error["details"]["errors"][0]["loc"],
        json!(["body", "max_examples"]),
        "{error}"
    );
}
