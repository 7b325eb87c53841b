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

    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        super::offline_call("local_echo", self.latency, request, |request| {
            request
                .messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| m.content.to_string())
                .unwrap_or_default()
        })
        .await
    }
}
