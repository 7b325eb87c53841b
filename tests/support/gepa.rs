//! GEPA jobs over the fake provider's examples, as the process and durability tests run them:
//! the request, its result, and small waits over recorded events.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use innerloop::api::pb;
use innerloop::api::values::struct_from_json;

use super::fake_llm::{SEED_PROMPT, TASK_MODEL};

/// A GEPA request over the fake's examples (exact match, the task model), with `seed` and a
/// metric-call budget.
pub fn gepa_request(seed: i64, max_rollouts: u64) -> pb::OptimizeRequest {
    let examples = super::fake_llm::examples()
        .into_iter()
        .map(|e| pb::Example {
            id: e.id,
            input: e.input,
            expected: e.expected,
            meta: Some(struct_from_json(&e.meta)),
        })
        .collect();
    pb::OptimizeRequest {
        prompt: SEED_PROMPT.into(),
        mode: pb::Mode::Gepa as i32,
        examples,
        metrics: vec!["exact_match".into()],
        target_model_id: Some(TASK_MODEL.into()),
        seed: Some(seed),
        budget: Some(pb::Budget {
            max_rollouts: Some(max_rollouts),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A job's whole GEPA result (candidates, scores, budget, stop reason, cost ledger).
pub fn gepa_result(job: &pb::Job) -> pb::GepaResult {
    match job.result.as_ref().and_then(|r| r.kind.clone()) {
        Some(pb::job_result::Kind::Gepa(g)) => g,
        other => panic!("expected a GEPA result, got {other:?}"),
    }
}

/// How many recorded events have type `kind`.
pub fn count(events: &Mutex<Vec<pb::JobEvent>>, kind: &str) -> usize {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.r#type == kind)
        .count()
}

/// Polls `check` every 10 ms for at most a minute.
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
