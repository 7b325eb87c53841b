//! The OpenAI-compatible provider against the fake server: bearer auth without leaking the key,
//! the per-provider concurrency cap, the circuit breaker, usage read from responses.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use innerloop::provider::openai::{OpenAiCompatible, OpenAiConfig};
use innerloop::provider::{ChatMessage, CompletionRequest, ModelProvider, ProviderError};
use support::fake_llm::TASK_MODEL;

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

fn config(url: &str) -> OpenAiConfig {
    let mut config = support::grpc::test_settings().openai_at(url);
    config.backoff_base = Duration::from_millis(1);
    config
}

#[tokio::test]
async fn answers_carry_usage_and_the_key_goes_only_in_the_bearer_header() {
    let (url, fake) = support::fake_llm::start().await;
    let mut config = config(&url);
    config.api_key = Some("sk-secret-123".into());
    assert!(!format!("{config:?}").contains("sk-secret-123"));
    let provider = OpenAiCompatible::new(config).unwrap();
    let completion = provider.complete(request()).await.unwrap();
    assert_eq!(completion.text, "hi");
    assert_eq!(completion.usage.prompt_tokens, 10);
    assert_eq!(completion.usage.completion_tokens, 2);
    assert_eq!(
        fake.last_auth.lock().unwrap().as_deref(),
        Some("Bearer sk-secret-123")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_per_provider_is_capped() {
    let (url, fake) = support::fake_llm::start().await;
    *fake.latency.lock().unwrap() = Duration::from_millis(30);
    let mut config = config(&url);
    config.max_concurrency = 2;
    let provider = Arc::new(OpenAiCompatible::new(config).unwrap());
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.complete(request()).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures_and_fails_fast() {
    let (url, fake) = support::fake_llm::start().await;
    fake.dead.store(true, Ordering::SeqCst);
    let mut config = config(&url);
    config.max_retries = 1;
    config.breaker_threshold = 2;
    config.breaker_cooldown = Duration::from_secs(60);
    let provider = OpenAiCompatible::new(config).unwrap();
    for _ in 0..2 {
        let err = provider.complete(request()).await.unwrap_err();
        assert!(
            matches!(err.root(), ProviderError::Http { status: 500 }),
            "{err:?}"
        );
    }
    let seen = fake.requests.load(Ordering::SeqCst);
    assert_eq!(seen, 4, "two calls, each retried once");
    let err = provider.complete(request()).await.unwrap_err();
    assert!(matches!(err, ProviderError::CircuitOpen), "{err:?}");
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        seen,
        "no request while open"
    );
}
