//! The examples and eval services over real gRPC, and GEPA offline (the offline world as task
//! model and reflection).

mod support;

use innerloop::api::pb;
use innerloop::api::pb::eval_service_client::EvalServiceClient;
use innerloop::api::pb::examples_service_client::ExamplesServiceClient;
use innerloop::api::values::struct_from_json;
use innerloop::config::Settings;
use support::fake_llm::{DOUBLE_RULE, MIRROR_RULE, REFLECT_MODEL, SEED_PROMPT, TASK_MODEL};
use support::grpc::{Core, collect, test_settings, types};

fn example(id: &str, input: &str, expected: &str) -> pb::Example {
    pb::Example {
        id: id.into(),
        input: input.into(),
        expected: Some(expected.into()),
        meta: None,
    }
}

#[tokio::test]
async fn examples_are_upserted_listed_and_deleted_over_grpc() {
    let core = Core::start(test_settings(), None).await;
    let mut client = ExamplesServiceClient::new(core.channel().await);
    let upserted = client
        .bulk_upsert_examples(pb::BulkUpsertExamplesRequest {
            examples: vec![example("a", "2+2?", "4"), example("", "3+3?", "6")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(upserted.upserted, 2);
    // Upsert by id replaces.
    client
        .bulk_upsert_examples(pb::BulkUpsertExamplesRequest {
            examples: vec![example("a", "2+2?", "four")],
        })
        .await
        .unwrap();
    let listed = client
        .list_examples(pb::ListExamplesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.limit, 50);
    assert_eq!(listed.examples.len(), 2);
    let a = listed.examples.iter().find(|e| e.id == "a").unwrap();
    assert_eq!(a.expected.as_deref(), Some("four"));
    assert!(
        listed.examples.iter().any(|e| e.id.len() == 36),
        "missing id became a UUID"
    );

    let deleted = client
        .delete_example(pb::DeleteExampleRequest { id: "a".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted);
    let again = client
        .delete_example(pb::DeleteExampleRequest { id: "a".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.deleted, "unknown ids succeed with deleted=false");
    let page = client
        .list_examples(pb::ListExamplesRequest {
            limit: 1,
            offset: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.examples.len(), 1);

    // MAX_REQUEST_BYTES is the only size limit: a long input under it is stored, a message
    // over it is refused as payload_too_large.
    client
        .bulk_upsert_examples(pb::BulkUpsertExamplesRequest {
            examples: vec![example("x", &"y".repeat(20_001), "z")],
        })
        .await
        .expect("no hidden field cap");
    let too_long = client
        .bulk_upsert_examples(pb::BulkUpsertExamplesRequest {
            examples: vec![example("x", &"y".repeat(70_000), "z")],
        })
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        innerloop::api::status::error_from_status(&too_long).code,
        innerloop::error::ErrorCode::PayloadTooLarge
    );
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eval_job_scores_every_stored_example_and_streams_each_case() {
    let (url, _fake) = support::fake_llm::start().await;
    let settings = Settings {
        use_model_stub: false,
        openai_base_url: Some(url),
        reflection_model_id: Some(REFLECT_MODEL.into()),
        ..test_settings()
    };
    let core = Core::start(settings, None).await;
    let examples: Vec<pb::Example> = support::fake_llm::examples()
        .into_iter()
        .map(|e| pb::Example {
            id: e.id,
            input: e.input,
            expected: e.expected,
            meta: Some(struct_from_json(&e.meta)),
        })
        .collect();
    let total = examples.len();
    ExamplesServiceClient::new(core.channel().await)
        .bulk_upsert_examples(pb::BulkUpsertExamplesRequest { examples })
        .await
        .unwrap();

    let mut eval = EvalServiceClient::new(core.channel().await);
    let mut jobs = core.jobs().await;
    for (prompt, want) in [
        (SEED_PROMPT.to_string(), 1.0 / 3.0),
        (format!("{SEED_PROMPT}\n{DOUBLE_RULE}\n{MIRROR_RULE}"), 1.0),
    ] {
        let job_id = eval
            .start_eval(pb::StartEvalRequest {
                prompt,
                target_model_id: Some(TASK_MODEL.into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .job_id;
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
        let names = types(&events);
        assert_eq!(names[..2], ["started", "eval_started"]);
        assert_eq!(names.iter().filter(|n| *n == "eval_case").count(), total);
        assert_eq!(
            names[names.len() - 3..],
            ["budget_progress", "eval_finished", "finished"]
        );
        let Some(pb::job_event::Payload::Finished(f)) = events.last().unwrap().payload.clone()
        else {
            panic!("no finished")
        };
        let Some(pb::job_result::Kind::Eval(result)) = f.result.unwrap().kind else {
            panic!("not an eval result")
        };
        assert_eq!(result.count as usize, total);
        assert_eq!(result.metric_calls_used as usize, total);
        assert!((result.score - want).abs() < 1e-9, "score {}", result.score);
    }

    // `name` is a label; an unknown pack is chosen with `dataset`.
    let bad = eval
        .start_eval(pb::StartEvalRequest {
            name: Some("nope".into()),
            dataset: Some(pb::DatasetRef {
                name: "nope".into(),
                split: None,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gepa_runs_offline_with_the_offline_world_reflection() {
    let core = Core::start(test_settings(), None).await;
    let mut client = core.optimizer().await;
    let request = pb::OptimizeRequest {
        prompt: "Answer the question.".into(),
        mode: pb::Mode::Gepa as i32,
        dataset: Some(pb::DatasetRef {
            name: "toy_qa".into(),
            split: None,
        }),
        budget: Some(pb::Budget {
            max_rollouts: Some(40),
            ..Default::default()
        }),
        ..Default::default()
    };
    let events = collect(client.optimize(request).await.unwrap().into_inner()).await;
    let reflected = events.iter().any(|e| {
        matches!(&e.payload, Some(pb::job_event::Payload::ReflectionFinished(r)) if !r.rule_based)
    });
    assert!(
        reflected,
        "offline reflection is the offline world's operator"
    );
    let Some(pb::job_event::Payload::Finished(f)) = events.last().unwrap().payload.clone() else {
        panic!("no finished: {:?}", types(&events))
    };
    let Some(pb::job_result::Kind::Gepa(result)) = f.result.unwrap().kind else {
        panic!("not a gepa result")
    };
    assert!(result.budget.unwrap().metric_calls_used <= 40);
    // Free-form questions: the operator can only memorise answers, which the validation set
    // (other questions) does not reward, so the seed stays best.
    assert!(result.best_prompt.starts_with("Answer the question."));
    core.shutdown().await;
}
