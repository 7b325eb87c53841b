//! `/v1/openapi.json` against what the running server (`innerloop serve`: edge + layers + core)
//! really serves: every `/v1` route is answered by the server AND listed in the document, the
//! document lists nothing else, and the shapes clients rely on (create body, error envelope,
//! security) are described. Also the `stream_token` of the create response (issue 5).

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::layers::{TOKEN, settings, start_core};

/// Every `/v1` route the server serves, as the document names it, in an order in which probing
/// them one after the other makes sense (`{job_id}` is a real job). Add a route to the router →
/// add it here → the test asks for it in the document.
const SERVED: &[(&str, &str)] = &[
    ("GET", "/v1/healthz"),
    ("GET", "/v1/readyz"),
    ("GET", "/v1/version"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/metrics"),
    ("GET", "/v1/metricsz"),
    ("POST", "/v1/optimize"),
    ("GET", "/v1/optimize/{job_id}"),
    ("GET", "/v1/optimize/{job_id}/events"),
    ("GET", "/v1/eval/{job_id}/events"),
    ("POST", "/v1/optimize/{job_id}/stream-token"),
    ("POST", "/v1/optimize/{job_id}/pause"),
    ("POST", "/v1/optimize/{job_id}/resume"),
    ("GET", "/v1/admin/jobs"),
    ("GET", "/v1/admin/jobs/{job_id}"),
    ("POST", "/v1/admin/jobs/{job_id}/cancel"),
    ("DELETE", "/v1/optimize/{job_id}"),
    ("DELETE", "/v1/admin/jobs/{job_id}"),
    ("POST", "/v1/examples/bulk"),
    ("GET", "/v1/examples"),
    ("DELETE", "/v1/examples/{id}"),
    ("POST", "/v1/eval/start"),
    ("GET", "/v1/optimize/{job_id}/candidates"),
    ("GET", "/v1/eval/{job_id}"),
    ("POST", "/v1/optimize/{job_id}/steer"),
    ("POST", "/v1/optimize/{job_id}/branch"),
];

fn body_for(method: &str, path: &str) -> Option<Value> {
    match (method, path) {
        ("POST", "/v1/optimize") | ("POST", "/v1/eval/start") => Some(json!({"prompt": "p"})),
        ("POST", "/v1/examples/bulk") => Some(json!([{"input": "x", "expected": "y"}])),
        _ => None,
    }
}

async fn document(core: &support::layers::Core) -> Value {
    let response = reqwest::Client::new()
        .get(core.edge("/v1/openapi.json"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn create(core: &support::layers::Core) -> Value {
    let response = reqwest::Client::new()
        .post(core.edge("/v1/optimize"))
        .bearer_auth(TOKEN)
        .json(&json!({"prompt": "p"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn every_served_v1_route_is_in_the_document_and_nothing_else() {
    let core = start_core(settings()).await;
    let client = reqwest::Client::new();
    let job_id = create(&core).await["job_id"].as_str().unwrap().to_string();
    for (method, path) in SERVED {
        let concrete = path.replace("{job_id}", &job_id).replace("{id}", "ex-1");
        let mut request = client
            .request(method.parse().unwrap(), core.edge(&concrete))
            .bearer_auth(TOKEN);
        if let Some(body) = body_for(method, path) {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert_ne!(status, 405, "{method} {path} is served");
        if status == 404 {
            let body: Value = response.json().await.unwrap();
            assert_ne!(
                body["error"]["message"], "Not Found",
                "{method} {path} is served (not the router's fallback)"
            );
        }
    }

    let doc = document(&core).await;
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let served: BTreeSet<(String, String)> = SERVED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
    assert!(
        documented.iter().all(|(_, path)| path.starts_with("/v1/")),
        "unversioned aliases stay out of the document"
    );
    core.stop.cancel();
}

#[tokio::test]
async fn the_document_describes_the_create_body_the_error_envelope_and_security() {
    let core = start_core(settings()).await;
    let doc = document(&core).await;
    let schemas = &doc["components"]["schemas"];

    let create = &schemas["OptimizeBody"]["properties"];
    for field in [
        "prompt",
        "mode",
        "budget",
        "examples",
        "gepa",
        "max_tokens",
        "seed",
    ] {
        assert!(create.get(field).is_some(), "OptimizeBody.{field}");
    }
    assert!(
        schemas["BudgetBody"]["properties"]
            .get("max_tokens")
            .is_some()
    );
    let gepa = &schemas["GepaBody"]["properties"];
    for field in [
        "minibatch_size",
        "candidate_selector",
        "use_merge",
        "components",
    ] {
        assert!(gepa.get(field).is_some(), "GepaBody.{field}");
    }

    assert_eq!(
        schemas["ErrorBody"]["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorObject"
    );
    let required: BTreeSet<&str> = schemas["ErrorObject"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, BTreeSet::from(["code", "message", "details"]));

    let created = &schemas["CreatedJob"];
    assert!(created["properties"].get("stream_token").is_some());
    assert_eq!(created["required"], json!(["job_id"]));

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["access_token"]["in"], "query");
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    for public in ["/v1/healthz", "/v1/readyz"] {
        assert_eq!(
            doc["paths"][public]["get"]["security"],
            json!([{}]),
            "{public}"
        );
    }
    for sse in ["/v1/optimize/{job_id}/events", "/v1/eval/{job_id}/events"] {
        let op = &doc["paths"][sse]["get"];
        assert_eq!(
            op["security"],
            json!([{"bearer": []}, {"access_token": []}]),
            "{sse}"
        );
        assert!(
            op["responses"]["200"]["content"]
                .get("text/event-stream")
                .is_some()
        );
    }
    let bulk = &doc["paths"]["/v1/examples/bulk"]["post"];
    assert_eq!(
        bulk["responses"]["422"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    core.stop.cancel();
}

#[tokio::test]
async fn the_create_response_carries_a_stream_token_that_opens_only_that_jobs_events() {
    let core = start_core(settings()).await;
    let created = create(&core).await;
    let job_id = created["job_id"].as_str().unwrap();
    let token = created["stream_token"]
        .as_str()
        .expect("auth is on: the create response carries a stream token");
    let other = create(&core).await;
    let other_id = other["job_id"].as_str().unwrap();
    let client = reqwest::Client::new();

    let events = client
        .get(core.edge(&format!(
            "/v1/optimize/{job_id}/events?access_token={token}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    drop(events);

    let refused = client
        .get(core.edge(&format!(
            "/v1/optimize/{other_id}/events?access_token={token}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "a token opens only its own job");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    core.stop.cancel();
}

#[tokio::test]
async fn without_auth_the_create_response_is_only_the_job_id() {
    let core = start_core(innerloop::config::Settings {
        require_auth: false,
        dev_mode: true,
        ..settings()
    })
    .await;
    let created = create(&core).await;
    assert!(created["job_id"].is_string());
    assert_eq!(created.as_object().unwrap().len(), 1, "{created}");
    core.stop.cancel();
}
