//! The settings grouped per component: each component takes a small struct of its own, built
//! here from [`Settings`] where the app is wired (`server.rs`, `main.rs`), never the whole
//! `Settings`: the runtime a [`RuntimeConfig`] (`settings.runtime()`), the gRPC services a
//! [`ServiceConfig`] (`settings.services()`), the layers and the listeners' guards a
//! [`LayerConfig`] (`settings.layers()`), the edge an [`SseConfig`] (`settings.sse()`),
//! logging a [`TelemetryConfig`] (`settings.telemetry()`), the optimizers a [`GepaConfig`] and a
//! [`DefaultModeConfig`], the provider an [`OpenAiConfig`], the store a [`Location`].
//! `tests/architecture.rs` keeps `Settings` out of the components. The environment variables
//! stay flat (they are the original service's names).

use std::sync::Arc;
use std::time::Duration;

use super::{DEFAULT_EVALUATION_RUBRIC, Settings, StoreKind};
use crate::edge::sse::SseConfig;
use crate::grpc::ServiceConfig;
use crate::layers::LayerConfig;
use crate::layers::auth::AuthConfig;
use crate::layers::connections::ConnectionConfig;
use crate::layers::rate_limit::RateLimitConfig;
use crate::layers::stream_token::StreamTokenConfig;
use crate::optimizer::default_mode::judge::JudgeChoice;
use crate::optimizer::gepa::budget::Prices;
use crate::optimizer::{DefaultModeConfig, GepaConfig, WallTimes};
use crate::provider::openai::{OPENAI_BASE_URL, OPENROUTER_BASE_URL, OpenAiConfig};
use crate::runtime::{ReplicaConfig, RetentionConfig, RuntimeConfig, WatchConfig};
use crate::store::Location;
use crate::telemetry::TelemetryConfig;

impl Settings {
    /// What the job runtime reads: watchers, retention, the replica, wall times, shutdown.
    pub fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            watch: WatchConfig {
                buffer_size: self.sse_buffer_size,
                backpressure: self.sse_backpressure_policy,
                fail_timeout: self.sse_backpressure_fail_timeout(),
            },
            retention: RetentionConfig {
                reaper_interval: Duration::from_secs_f64(self.job_reaper_interval_s),
                ttl_finished_s: self.job_ttl_finished_s,
                ttl_failed_s: self.job_ttl_failed_s,
                ttl_cancelled_s: self.job_ttl_cancelled_s,
                ttl_shutdown_s: self.job_ttl_shutdown_s,
                retention_s: self.job_retention_s,
                idempotency_ttl_s: self.idempotency_ttl_s,
            },
            replica: ReplicaConfig {
                id: self.replica_id.clone(),
                lease_s: self.job_lease_s,
                heartbeat: Duration::from_secs_f64(self.job_lease_heartbeat_s),
                max_jobs: self.replica_max_jobs,
            },
            wall_times: self.wall_times(),
            shutdown_grace: self.shutdown_grace(),
            sqlite_file: self.sqlite_file(),
        }
    }

    /// `SHUTDOWN_GRACE_S` (negative counts as 0).
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace_s.max(0.0))
    }

    /// What the gRPC services read besides the runtime.
    pub fn services(&self) -> ServiceConfig {
        ServiceConfig {
            max_iterations: self.max_iterations,
            max_request_bytes: self.max_request_bytes,
            gepa: Arc::new(self.gepa()),
            prices: Arc::new(self.prices()),
        }
    }

    /// What the layers (auth, limits, CORS, timeouts) and the listeners' guards read.
    pub fn layers(&self) -> LayerConfig {
        LayerConfig {
            auth: AuthConfig {
                required: !self.dev_mode,
                anonymous_create: !self.require_auth,
                public_metrics: !self.metrics_require_auth,
                bearer_tokens: self.api_bearer_tokens.clone(),
                bearer_tokens_file: self.api_bearer_tokens_file.clone(),
                stream_tokens: StreamTokenConfig {
                    key: self.stream_token_key.clone(),
                    ttl_s: self.stream_token_ttl_s,
                },
            },
            rate_limit: RateLimitConfig {
                per_min: self.rate_limit_per_min,
                burst: self.rate_limit_burst,
            },
            trusted_proxies: self.trusted_proxies.clone(),
            cors_allowed_origins: self.cors_allowed_origins.clone(),
            max_concurrent_requests: self.max_concurrent_requests,
            max_streams_per_principal: self.max_streams_per_principal,
            max_request_bytes: self.max_request_bytes,
            request_timeout: Duration::from_secs_f64(self.request_timeout_s),
            header_read_timeout: Duration::from_secs_f64(self.header_read_timeout_s),
            connections: ConnectionConfig {
                max_connections: self.max_connections,
                max_connections_per_ip: self.max_connections_per_ip,
                first_byte_timeout: Duration::from_secs_f64(
                    self.idle_connection_timeout_s.max(0.001),
                ),
            },
        }
    }

    /// What the edge's SSE responses read (`SSE_RETRY_MS`, `SSE_PING_INTERVAL_S`).
    pub fn sse(&self) -> SseConfig {
        SseConfig {
            retry_ms: self.sse_retry_ms,
            ping: Duration::from_secs_f64(self.sse_ping_interval_s.max(0.001)),
        }
    }

    /// What logging and tracing read.
    pub fn telemetry(&self) -> TelemetryConfig {
        TelemetryConfig {
            log_level: self.log_level.clone(),
            json: self.log_format == "json",
            service_name: self.service_name.clone(),
            otlp_endpoint: self.otel_exporter_otlp_endpoint.clone(),
        }
    }

    /// Where the jobs live (`JOB_STORE`, `SQLITE_PATH` under `DATA_DIR`, `DATABASE_URL`).
    pub fn store_location(&self) -> Location {
        match self.job_store {
            StoreKind::Memory => Location::Memory,
            StoreKind::Sqlite => Location::Sqlite(self.sqlite_file()),
            StoreKind::Postgres => Location::Postgres(self.database_url.clone()),
        }
    }

    /// How long jobs may run (`MAX_WALL_TIME_S`, `GEPA_DEFAULT_WALL_TIME_S`,
    /// `GEPA_MAX_WALL_TIME_S`).
    pub fn wall_times(&self) -> WallTimes {
        WallTimes {
            max_s: self.max_wall_time_s,
            gepa_default_s: self.gepa_default_wall_time_s,
            gepa_max_s: self.gepa_max_wall_time_s,
        }
    }

    /// What GEPA and eval jobs read.
    pub fn gepa(&self) -> GepaConfig {
        GepaConfig {
            target_model: self.target_model_default.clone(),
            reflection_model: self.reflection_model_id.clone(),
            rubric: self.evaluation_rubric_default.clone(),
            seed: self.deterministic_seed,
            default_max_metric_calls: self.gepa_default_max_metric_calls,
            per_job_concurrency: self.eval_max_concurrency,
            eval_max_examples: self.eval_max_examples,
            wall_times: self.wall_times(),
        }
    }

    /// What default-mode jobs read.
    pub fn default_mode(&self) -> DefaultModeConfig {
        DefaultModeConfig {
            max_examples_per_job: self.max_examples_per_job,
            retrieval_max_examples: self.retrieval_max_examples,
            seed: self.deterministic_seed,
            target_model: self.target_model_default.clone(),
            rubric: self.default_rubric(),
            iteration_delay: Duration::from_millis(self.default_mode_iteration_delay_ms),
            tournament_size: self.tournament_size,
            recombination_rate: self.recombination_rate,
            early_stop_patience: self.early_stop_patience,
            max_mutations: self.max_mutations_per_round,
            max_candidates: self.max_candidates,
            top_n: self.pareto_topn,
            pareto_v2: self.enable_pareto_v2,
            judge: self.judge(),
        }
    }

    /// The default loop's judge: the stub (as the original: `USE_JUDGE_STUB` or
    /// `JUDGE_PROVIDER=stub`), else `JUDGE_MODEL_ID` with `JUDGE_TIMEOUT_S`.
    pub fn judge(&self) -> JudgeChoice {
        if self.use_judge_stub || self.judge_provider == "stub" {
            JudgeChoice::Stub
        } else {
            JudgeChoice::Model {
                model: self.judge_model_id.clone(),
                timeout: Duration::from_secs_f64(self.judge_timeout_s.max(0.001)),
            }
        }
    }

    /// `MODEL_PRICES_JSON`, or no prices when it is unreadable ([`Settings::validate`] refuses
    /// that at start).
    pub fn prices(&self) -> Prices {
        Prices::parse(self.model_prices_json.as_deref()).unwrap_or_else(|err| {
            tracing::error!(error = %err, "MODEL_PRICES_JSON unreadable; costs count as 0");
            Prices::default()
        })
    }

    /// The OpenAI-compatible endpoint the settings select, if any: `OPENAI_BASE_URL` (key
    /// `OPENAI_API_KEY`), else OpenRouter when `OPENROUTER_API_KEY` is set, else OpenAI when
    /// `OPENAI_API_KEY` is set.
    pub fn openai(&self) -> Option<OpenAiConfig> {
        let (base, key) =
            if let Some(base) = self.openai_base_url.as_deref().filter(|b| !b.is_empty()) {
                (base.to_string(), self.openai_api_key.clone())
            } else if let Some(key) = self.openrouter_api_key.clone() {
                (OPENROUTER_BASE_URL.to_string(), Some(key))
            } else if let Some(key) = self.openai_api_key.clone() {
                (OPENAI_BASE_URL.to_string(), Some(key))
            } else {
                return None;
            };
        let mut config = self.openai_at(base);
        config.api_key = key.filter(|k| !k.is_empty());
        Some(config)
    }

    /// An endpoint at `base_url` with the `PROVIDER_*` limits and no key.
    pub fn openai_at(&self, base_url: impl Into<String>) -> OpenAiConfig {
        OpenAiConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            api_key: None,
            connect_timeout: Duration::from_secs_f64(self.provider_connect_timeout_s.max(0.001)),
            request_timeout: Duration::from_secs_f64(self.provider_timeout_s.max(0.001)),
            max_retries: self.provider_max_retries,
            backoff_base: Duration::from_millis(self.provider_backoff_base_ms),
            backoff_max: Duration::from_secs(10),
            max_concurrency: self.provider_max_concurrency.max(1),
            qps: self.provider_qps_max,
            breaker_threshold: self.provider_breaker_threshold.max(1),
            breaker_cooldown: Duration::from_secs_f64(self.provider_breaker_cooldown_s.max(0.0)),
        }
    }

    /// The rubric a job uses when its request names none: `EVALUATION_RUBRIC_DEFAULT`, or the
    /// original's default when that is unset or blank. Never empty.
    pub fn default_rubric(&self) -> String {
        self.evaluation_rubric_default
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .unwrap_or(DEFAULT_EVALUATION_RUBRIC)
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automatic_connection_caps_are_the_settings_defaults() {
        // `layers::http_server::serve` uses `ConnectionConfig::default()` without settings.
        assert_eq!(
            Settings::default().layers().connections,
            ConnectionConfig::default()
        );
    }
}
