//! Model access behind one trait, [`ModelProvider`]. [`LocalEcho`] is offline and deterministic
//! (the default, so everything runs without keys).
//!
//! A request's texts are shared (`Arc<str>`), not owned: a GEPA candidate's system prompt goes
//! into every rollout's request (hundreds per iteration, each prompt kilobytes long), and a
//! request that owned it copied it once per call.

pub mod local_echo;
pub mod offline_world;
pub mod openai;

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use local_echo::LocalEcho;
pub use offline_world::OfflineWorld;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: Cow<'static, str>,
    /// Shared with whoever built the request (see the module doc).
    #[serde(with = "shared_text")]
    pub content: Arc<str>,
}

impl ChatMessage {
    pub fn system(content: impl Into<Arc<str>>) -> Self {
        ChatMessage {
            role: Cow::Borrowed("system"),
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<Arc<str>>) -> Self {
        ChatMessage {
            role: Cow::Borrowed("user"),
            content: content.into(),
        }
    }
}

/// A chat-completion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    #[serde(with = "shared_text")]
    pub model: Arc<str>,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub seed: Option<i64>,
}

/// An `Arc<str>` as a JSON string (serde's own impl needs its `rc` feature, which would
/// rebuild every crate that uses serde for two fields).
mod shared_text {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(text: &Arc<str>, to: S) -> Result<S::Ok, S::Error> {
        to.serialize_str(text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(from).map(Arc::from)
    }
}

/// Token usage reported by the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub usage: Usage,
}

/// Why a provider call failed. Messages never contain secrets.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("provider timed out")]
    Timeout,
    #[error("provider rate-limited the call")]
    RateLimited { retry_after_s: Option<f64> },
    #[error("provider answered HTTP {status}")]
    Http { status: u16 },
    #[error("provider unreachable: {0}")]
    Transport(String),
    #[error("provider circuit open after repeated failures")]
    CircuitOpen,
    #[error("provider answer unreadable: {0}")]
    InvalidResponse(String),
    /// The last failure of a call that was given up on, with what was tried: the message names
    /// the provider, the model and how many attempts were made.
    #[error("{last} ({provider}, model {model}, {attempts} attempt{s})", s = plural_s(.attempts))]
    GaveUp {
        provider: String,
        model: String,
        attempts: u32,
        last: Box<ProviderError>,
    },
}

/// One call of an offline provider (`LocalEcho`, the offline world) named `provider`: after
/// `latency`, `respond`'s answer with its usage counted in whitespace-separated words, all on a
/// `provider_call` span like the real provider's.
#[tracing::instrument(
    name = "provider_call",
    skip_all,
    fields(
        otel.name = "provider_call",
        provider = provider,
        model = %request.model,
        attempts = 1,
        prompt_tokens = tracing::field::Empty,
        completion_tokens = tracing::field::Empty,
    )
)]
pub(crate) async fn offline_call(
    provider: &'static str,
    latency: std::time::Duration,
    request: CompletionRequest,
    respond: impl FnOnce(&CompletionRequest) -> String,
) -> Result<Completion, ProviderError> {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let text = respond(&request);
    Ok(offline_completion(&request, text))
}

/// The answer of an offline provider with its usage, recorded on the current `provider_call`
/// span.
fn offline_completion(request: &CompletionRequest, text: String) -> Completion {
    let prompt_tokens = request
        .messages
        .iter()
        .map(|m| m.content.split_whitespace().count() as u64)
        .sum();
    let completion_tokens = text.split_whitespace().count() as u64;
    let span = tracing::Span::current();
    span.record("prompt_tokens", prompt_tokens);
    span.record("completion_tokens", completion_tokens);
    Completion {
        text,
        usage: Usage {
            prompt_tokens,
            completion_tokens,
        },
    }
}

fn plural_s(n: &u32) -> &'static str {
    if *n == 1 { "" } else { "s" }
}

impl ProviderError {
    /// The underlying failure (what a [`ProviderError::GaveUp`] wraps, else itself).
    pub fn root(&self) -> &ProviderError {
        match self {
            ProviderError::GaveUp { last, .. } => last.root(),
            other => other,
        }
    }

    /// A short label for metrics: `timeout`, `rate_limited`, `http_5xx`, `http_4xx`,
    /// `transport`, `circuit_open`, `malformed`.
    pub fn kind(&self) -> &'static str {
        match self.root() {
            ProviderError::Timeout => "timeout",
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::Http { status } if *status >= 500 => "http_5xx",
            ProviderError::Http { .. } => "http_4xx",
            ProviderError::Transport(_) => "transport",
            ProviderError::CircuitOpen => "circuit_open",
            ProviderError::InvalidResponse(_) => "malformed",
            ProviderError::GaveUp { .. } => "other",
        }
    }
}

/// A source of completions.
#[async_trait]
pub trait ModelProvider: Send + Sync + 'static {
    /// A short name for logs (`local_echo`, `openai_compatible`).
    fn name(&self) -> &str;
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError>;
}
