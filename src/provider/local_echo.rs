//! `LocalEcho`: an offline, deterministic provider. It answers with the last user message,
//! so runs are reproducible and free.

use async_trait::async_trait;

use super::{Completion, CompletionRequest, ModelProvider, ProviderError};

/// Echoes the last user message back, optionally after a fixed simulated latency.
#[derive(Debug, Default, Clone)]
pub struct LocalEcho {
    latency: std::time::Duration,
}

impl LocalEcho {
    /// A `LocalEcho` whose every call takes `latency` (`LOCAL_ECHO_LATENCY_MS`).
    pub fn with_latency(latency: std::time::Duration) -> Self {
        LocalEcho { latency }
    }
}

#[async_trait]
impl ModelProvider for LocalEcho {
    fn name(&self) -> &str {
        "local_echo"
    }

    #[tracing::instrument(
        name = "provider_call",
        skip_all,
        fields(
            otel.name = "provider_call",
            provider = "local_echo",
            model = %request.model,
            attempts = 1,
            prompt_tokens = tracing::field::Empty,
            completion_tokens = tracing::field::Empty,
        )
    )]
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let text = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.to_string())
            .unwrap_or_default();
        Ok(super::offline_completion(&request, text))
    }
}
