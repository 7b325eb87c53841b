//! GEPA offline, in the offline world (no keys): a run visibly improves a prompt on the held-out
//! split and reports it; a tight budget is spent to within one minibatch and never exceeded;
//! `max_generations: 1` runs exactly one generation. Real server on port 0, real gRPC client.

mod support;

use innerloop::api::pb;
use support::grpc::{Core, collect, test_settings, types};

fn request(pack: &str, budget: u64) -> pb::OptimizeRequest {
    pb::OptimizeRequest {
        prompt: "Answer with the item named in the input.".into(),
        mode: pb::Mode::Gepa as i32,
        dataset: Some(pb::DatasetRef {
            name: pack.into(),
            split: None,
        }),
        budget: Some(pb::Budget {
            max_rollouts: Some(budget),
            ..Default::default()
        }),
        seed: Some(3),
        ..Default::default()
    }
}

fn result_of(events: &[pb::JobEvent]) -> pb::GepaResult {
    let Some(pb::job_event::Payload::Finished(f)) = events.last().unwrap().payload.clone() else {
        panic!("no finished: {:?}", types(events))
    };
    let Some(pb::job_result::Kind::Gepa(result)) = f.result.unwrap().kind else {
        panic!("not a gepa result")
    };
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_gepa_improves_a_prompt_on_the_held_out_split() {
    let core = Core::start(test_settings(), None).await;
    let mut client = core.optimizer().await;
    let events = collect(
        client
            .optimize(request("world_mixed", 400))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let result = result_of(&events);
    let test = result.test.expect("held-out report");
    assert_eq!(test.count, 100);
    assert!(
        test.best_score >= test.seed_score + 0.3,
        "seed {} best {}",
        test.seed_score,
        test.best_score
    );
    assert!(result.best_score > result.seed_score);
    assert!(result.budget.unwrap().metric_calls_used <= 400);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tight_budget_is_spent_to_within_one_minibatch_and_never_exceeded() {
    let core = Core::start(test_settings(), None).await;
    let mut client = core.optimizer().await;
    // 50 validation examples: the seed costs 50, and a full validation never fits again.
    for (budget, policy) in [
        (100u64, "full"),
        (130, "full"),
        (100, "subsample"),
        (230, "subsample"),
    ] {
        let mut req = request("world_case", budget);
        req.gepa = Some(pb::GepaOptions {
            validation_policy: policy.into(),
            ..Default::default()
        });
        let events = collect(client.optimize(req).await.unwrap().into_inner()).await;
        let result = result_of(&events);
        let used = result.budget.unwrap().metric_calls_used;
        assert!(
            used <= budget && used + 3 >= budget,
            "{policy}: used {used} of {budget}"
        );
        assert_eq!(result.stop_reason, "max_metric_calls");
        assert!(result.generations >= 1);
        let proposed = types(&events)
            .iter()
            .filter(|t| *t == "candidate_proposed")
            .count();
        assert!(proposed >= 1, "{policy}: no proposal at budget {budget}");
    }
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_generations_one_runs_exactly_one_generation() {
    let core = Core::start(test_settings(), None).await;
    let mut client = core.optimizer().await;
    let mut req = request("world_case", 1000);
    req.budget.as_mut().unwrap().max_generations = Some(1);
    let events = collect(client.optimize(req).await.unwrap().into_inner()).await;
    let started = types(&events)
        .iter()
        .filter(|t| *t == "generation_started")
        .count();
    assert_eq!(started, 1);
    let result = result_of(&events);
    assert_eq!(result.generations, 1);
    assert_eq!(result.stop_reason, "max_generations");
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_proposals_give_byte_identical_results_for_the_same_request() {
    // A little model latency, and both runs at once: answers arrive in a different order each
    // time, the results must not care.
    let settings = innerloop::config::Settings {
        local_echo_latency_ms: 1,
        eval_max_concurrency: 8,
        ..test_settings()
    };
    let core = Core::start(settings, None).await;
    let mut req = request("world_mixed", 400);
    req.gepa = Some(pb::GepaOptions {
        parallel_proposals: Some(4),
        ..Default::default()
    });
    let (mut a, mut b) = (core.optimizer().await, core.optimizer().await);
    let (first, second) = tokio::join!(
        async { collect(a.optimize(req.clone()).await.unwrap().into_inner()).await },
        async { collect(b.optimize(req.clone()).await.unwrap().into_inner()).await },
    );
    let count =
        |events: &[pb::JobEvent], name: &str| types(events).iter().filter(|t| *t == name).count();
    // Several proposals per generation really ran.
    assert!(count(&first, "reflection_started") > count(&first, "generation_started"));
    let (first, second) = (result_of(&first), result_of(&second));
    assert!(first.candidates.len() > 2, "the run proposed and accepted");
    // The result as the REST edge renders it (protobuf maps have no stable byte order).
    let json = |r: pb::GepaResult| {
        serde_json::to_string(&innerloop::domain::gepa::GepaResult::from(r)).unwrap()
    };
    let generations = first.generations;
    let (a, b) = (json(first), json(second));
    assert!(a == b, "results differ:\n{a}\n{b}");
    assert!(generations > 0);
    core.shutdown().await;
}
