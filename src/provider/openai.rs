//! An OpenAI-compatible chat-completions provider (OpenAI, OpenRouter, vLLM, Ollama, llama.cpp,
//! …): one pooled `reqwest` client with connect and request timeouts; retries with exponential
//! backoff and jitter on 429, 5xx, timeouts, connection errors and malformed or truncated
//! answers, honouring `Retry-After` (a call given up on says how many attempts were made);
//! a per-provider concurrency cap (semaphore) and QPS limit; a circuit breaker that fails fast
//! after repeated failures. The API key is sent as a bearer token and never logged or shown.
//!
//! Configuration ([`OpenAiConfig`], built from the settings by `Settings::openai`):
//! `OPENAI_BASE_URL` selects any compatible server (its key, if any, is `OPENAI_API_KEY`);
//! otherwise `OPENROUTER_API_KEY` selects OpenRouter and `OPENAI_API_KEY` selects OpenAI.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::{Completion, CompletionRequest, ModelProvider, ProviderError, Usage};

pub const OPENROUTER_BASE_URL: &str = "https://openrouter.ai/api/v1";
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Spaces calls at least `1/qps` apart (a queue of reservations; waiting never holds a lock).
pub struct RateLimiter {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// `qps <= 0` means unlimited.
    pub fn new(qps: f64) -> Self {
        RateLimiter {
            interval: (qps > 0.0 && qps.is_finite()).then(|| Duration::from_secs_f64(1.0 / qps)),
            next: Mutex::new(Instant::now()),
        }
    }

    pub async fn acquire(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let wait = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Settings of one OpenAI-compatible endpoint.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// Base URL without the trailing `/chat/completions`.
    pub base_url: String,
    pub api_key: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub max_concurrency: usize,
    /// Requests per second; 0 = unlimited.
    pub qps: f64,
    /// Consecutive failed calls (after retries) that open the circuit.
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("max_retries", &self.max_retries)
            .field("max_concurrency", &self.max_concurrency)
            .field("qps", &self.qps)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

/// The provider. Cheap to share behind an `Arc`; one connection pool for all jobs.
pub struct OpenAiCompatible {
    client: reqwest::Client,
    config: OpenAiConfig,
    url: String,
    permits: Semaphore,
    limiter: RateLimiter,
    breaker: Mutex<Breaker>,
    jitter: Mutex<crate::domain::rng::SeededRng>,
}

#[derive(Deserialize)]
struct WireResponse {
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl OpenAiCompatible {
    pub fn new(config: OpenAiConfig) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ProviderError::Transport(format!("client set-up failed: {e}")))?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos() as u64);
        Ok(OpenAiCompatible {
            client,
            url: format!("{}/chat/completions", config.base_url),
            permits: Semaphore::new(config.max_concurrency),
            limiter: RateLimiter::new(config.qps),
            breaker: Mutex::new(Breaker::default()),
            jitter: Mutex::new(crate::domain::rng::SeededRng::new(seed)),
            config,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_breaker(&self) -> Result<(), ProviderError> {
        let mut breaker = self.breaker();
        match breaker.open_until {
            Some(until) if Instant::now() < until => Err(ProviderError::CircuitOpen),
            Some(_) => {
                // Half-open: let calls through; one more failure re-opens at once.
                breaker.open_until = None;
                breaker.consecutive_failures = self.config.breaker_threshold.saturating_sub(1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn record_outcome(&self, ok: bool) {
        let mut breaker = self.breaker();
        if ok {
            breaker.consecutive_failures = 0;
        } else {
            breaker.consecutive_failures += 1;
            if breaker.consecutive_failures >= self.config.breaker_threshold {
                breaker.open_until = Some(Instant::now() + self.config.breaker_cooldown);
                tracing::warn!(base_url = %self.config.base_url, "provider circuit opened");
            }
        }
    }

    /// Exponential backoff with full jitter in [delay/2, delay], at least `Retry-After`.
    fn backoff(&self, attempt: u32, retry_after_s: Option<f64>) -> Duration {
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.config.backoff_max);
        let jitter = self
            .jitter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_f64();
        let delay = exp.mul_f64(0.5 + 0.5 * jitter);
        match retry_after_s {
            Some(s) if s.is_finite() && s > 0.0 => delay.max(Duration::from_secs_f64(s.min(60.0))),
            _ => delay,
        }
    }

    async fn attempt(&self, body: &serde_json::Value) -> Result<Completion, ProviderError> {
        let mut request = self.client.post(&self.url).json(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(classify)?;
        let status = response.status();
        if status.as_u16() == 429 {
            let retry_after_s = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok());
            return Err(ProviderError::RateLimited { retry_after_s });
        }
        if !status.is_success() {
            return Err(ProviderError::Http {
                status: status.as_u16(),
            });
        }
        // Read the whole body first: a body cut short is told apart from one that is not JSON.
        let bytes = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                ProviderError::Timeout
            } else {
                ProviderError::InvalidResponse("answer truncated".into())
            }
        })?;
        let wire: WireResponse = serde_json::from_slice(&bytes).map_err(|e| {
            ProviderError::InvalidResponse(if e.is_eof() {
                "answer truncated".into()
            } else {
                "not a chat completion".into()
            })
        })?;
        let text = wire
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| ProviderError::InvalidResponse("no choices".into()))?;
        let usage = wire.usage.map_or(Usage::default(), |u| Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        });
        Ok(Completion { text, usage })
    }
}

/// Maps a transport error without leaking URLs' secrets (reqwest errors never carry headers).
fn classify(err: reqwest::Error) -> ProviderError {
    if err.is_timeout() {
        ProviderError::Timeout
    } else if err.is_connect() {
        ProviderError::Transport("connection failed".into())
    } else {
        ProviderError::Transport("request failed".into())
    }
}

/// Transient failures worth another attempt. A malformed or truncated answer (often a proxy
/// cutting a 200 short) is retried like a 5xx.
fn retryable(err: &ProviderError) -> bool {
    match err {
        ProviderError::Timeout
        | ProviderError::RateLimited { .. }
        | ProviderError::Transport(_)
        | ProviderError::InvalidResponse(_) => true,
        ProviderError::Http { status } => *status >= 500,
        ProviderError::CircuitOpen | ProviderError::GaveUp { .. } => false,
    }
}

#[async_trait]
impl ModelProvider for OpenAiCompatible {
    fn name(&self) -> &str {
        "openai_compatible"
    }

    /// One call, retried on transient failures. Its span carries the model, the attempts and
    /// the token usage; never the key or the prompt text.
    #[tracing::instrument(
        name = "provider_call",
        skip_all,
        fields(
            otel.name = "provider_call",
            provider = "openai_compatible",
            model = %request.model,
            attempts = tracing::field::Empty,
            prompt_tokens = tracing::field::Empty,
            completion_tokens = tracing::field::Empty,
            error = tracing::field::Empty,
        )
    )]
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        self.check_breaker()?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ProviderError::CircuitOpen)?;
        let mut body = serde_json::json!({
            "model": &*request.model,
            "messages": request.messages,
        });
        if let Some(t) = request.temperature {
            body["temperature"] = t.into();
        }
        if let Some(n) = request.max_tokens {
            body["max_tokens"] = n.into();
        }
        if let Some(seed) = request.seed {
            body["seed"] = seed.into();
        }
        let mut attempt = 0;
        loop {
            self.limiter.acquire().await;
            match self.attempt(&body).await {
                Ok(completion) => {
                    self.record_outcome(true);
                    let span = tracing::Span::current();
                    span.record("attempts", attempt + 1);
                    span.record("prompt_tokens", completion.usage.prompt_tokens);
                    span.record("completion_tokens", completion.usage.completion_tokens);
                    return Ok(completion);
                }
                Err(err) if retryable(&err) && attempt < self.config.max_retries => {
                    crate::metrics::provider_attempt_failed(self.name(), err.kind());
                    let retry_after = match &err {
                        ProviderError::RateLimited { retry_after_s } => *retry_after_s,
                        _ => None,
                    };
                    let delay = self.backoff(attempt, retry_after);
                    tracing::debug!(error = %err, attempt, ?delay, "provider call retried");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(err) => {
                    crate::metrics::provider_attempt_failed(self.name(), err.kind());
                    let err = ProviderError::GaveUp {
                        provider: self.name().to_string(),
                        model: request.model.to_string(),
                        attempts: attempt + 1,
                        last: Box::new(err),
                    };
                    self.record_outcome(false);
                    let span = tracing::Span::current();
                    span.record("attempts", attempt + 1);
                    span.record("error", tracing::field::display(&err));
                    tracing::warn!(error = %err, attempts = attempt + 1, "provider call failed");
                    return Err(err);
                }
            }
        }
    }
}
