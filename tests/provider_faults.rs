//! Provider faults end to end: malformed (truncated) answers are retried like a 5xx, counted in
//! the metrics, and a call given up on says how many attempts were made; a provider that never
//! answers fails the job with `provider_error` "provider timed out", naming the provider and the
//! model, within `PROVIDER_TIMEOUT_S` × attempts.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use innerloop::config::Settings;
use innerloop::domain::{EventPayload, JobSpec, Mode};
use innerloop::provider::openai::OpenAiCompatible;
use innerloop::provider::{ChatMessage, CompletionRequest, ModelProvider, ProviderError};
use support::fake_llm::{Fault, REFLECT_MODEL, SEED_PROMPT, TASK_MODEL};
use support::grpc::{Core, test_settings};

fn request() -> CompletionRequest {
    CompletionRequest {
        model: TASK_MODEL.into(),
        messages: vec![
            ChatMessage::system("Repeat the word."),
            ChatMessage::user("echo: hi"),
        ],
        temperature: None,
        max_tokens: None,
        seed: None,
    }
}

fn malformed_count() -> f64 {
    innerloop::metrics::render_json()
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("provider_attempt_failures") && k.contains("malformed"))
        .filter_map(|(_, v)| v.as_f64())
        .sum()
}

#[tokio::test]
async fn truncated_answers_are_retried_like_a_5xx_and_counted() {
    let (url, fake) = support::fake_llm::start().await;
    fake.faults
        .lock()
        .unwrap()
        .extend([Fault::Truncated, Fault::Truncated]);
    let mut config = test_settings().openai_at(&url);
    config.backoff_base = Duration::from_millis(1);
    config.max_retries = 2;
    let before = malformed_count();
    let provider = OpenAiCompatible::new(config).unwrap();
    let completion = provider
        .complete(request())
        .await
        .expect("third attempt answers");
    assert_eq!(completion.text, "hi");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3);
    assert!(
        malformed_count() - before >= 2.0,
        "both malformed answers counted"
    );
}

#[tokio::test]
async fn a_call_given_up_on_says_how_many_attempts_were_made() {
    let (url, fake) = support::fake_llm::start().await;
    fake.faults.lock().unwrap().extend([Fault::Truncated; 3]);
    let mut config = test_settings().openai_at(&url);
    config.backoff_base = Duration::from_millis(1);
    config.max_retries = 2;
    let provider = OpenAiCompatible::new(config).unwrap();
    let err = provider.complete(request()).await.unwrap_err();
    assert!(
        matches!(err.root(), ProviderError::InvalidResponse(_)),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("3 attempts"), "{message}");
    assert!(message.contains("truncated"), "{message}");
    assert!(message.contains(TASK_MODEL), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_fails_the_job_as_provider_timed_out_naming_provider_and_model()
 {
    let url = support::fake_llm::black_hole().await;
    let timeout_s = 0.4;
    let retries = 1;
    let core = Core::start(
        Settings {
            use_model_stub: false,
            openai_base_url: Some(url),
            reflection_model_id: Some(REFLECT_MODEL.into()),
            provider_backoff_base_ms: 5,
            provider_timeout_s: timeout_s,
            provider_max_retries: retries,
            max_wall_time_s: 120.0,
            ..test_settings()
        },
        None,
    )
    .await;
    let mut spec = JobSpec::from_prompt(SEED_PROMPT);
    spec.mode = Mode::Gepa;
    spec.examples = support::fake_llm::examples();
    spec.budget.max_rollouts = Some(30);
    spec.target_model_id = Some(TASK_MODEL.into());
    spec.metrics = vec!["exact_match".into()];
    spec.validate(1, 4).expect("valid spec");
    let started = Instant::now();
    let created = core.runtime.create(spec, None).await.expect("create");
    let watch = core.runtime.watch(&created.job_id, 0).await.expect("watch");
    let events: Vec<EventPayload> = tokio::time::timeout(
        Duration::from_secs(30),
        watch.map(|e| e.payload.clone()).collect::<Vec<_>>(),
    )
    .await
    .expect("job ended");
    let elapsed = started.elapsed();
    match events.last() {
        Some(EventPayload::Failed { error, message }) => {
            assert_eq!(error, "provider_error");
            assert!(message.contains("provider timed out"), "{message}");
            assert!(message.contains("openai_compatible"), "{message}");
            assert!(message.contains(TASK_MODEL), "{message}");
            assert!(message.contains("2 attempts"), "{message}");
        }
        other => panic!("expected a failed job, got {other:?}"),
    }
    // Two attempts of 0.4 s plus backoff and scheduling slack; nowhere near the wall time.
    let bound = Duration::from_secs_f64(timeout_s * f64::from(retries + 1) + 2.0);
    assert!(elapsed < bound, "took {elapsed:?}");
    core.shutdown().await;
}
