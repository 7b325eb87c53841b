//! The one settings type. Layers, lowest first: serialized defaults → optional `innerloop.toml`
//! (or `--config FILE`) → environment variables (the original service's names) → command-line
//! flags (`load.rs`); then [`Settings::validate`] runs once and names the setting at fault.
//! `Settings` is read only where the app is wired (`server.rs`, `main.rs`): `components.rs`
//! builds from it the small config each component takes (`settings.runtime()`,
//! `settings.services()`, `settings.layers()`, `settings.sse()`, `settings.telemetry()`,
//! `settings.gepa()`, `settings.default_mode()`, `settings.openai()`, …).

mod components;
mod load;

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

/// `SSE_BACKPRESSURE_POLICY`; the runtime's type, named here too since a setting has it.
pub use crate::runtime::BackpressurePolicy;

/// The original's `EVALUATION_RUBRIC_DEFAULT`.
pub const DEFAULT_EVALUATION_RUBRIC: &str = "overall quality and clarity";

/// Every setting of the service. Field names are the environment variables, lower-cased.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    // --- listeners ---
    /// HTTP (edge) bind host.
    pub host: String,
    /// HTTP (edge) port.
    pub port: u16,
    /// gRPC (core) bind host.
    pub grpc_host: String,
    /// gRPC (core) port.
    pub grpc_port: u16,
    /// Seconds running jobs and streams get to end on SIGTERM before the process exits.
    pub shutdown_grace_s: f64,

    // --- auth and limits ---
    /// `false` keeps the original's meaning: anonymous clients may create jobs
    /// (`POST /v1/optimize`, `CreateJob`), nothing else. Only [`Settings::dev_mode`] turns auth off.
    pub require_auth: bool,
    /// `--dev`: authentication off everywhere. Set by the flag (or a settings file), never read
    /// from the environment.
    pub dev_mode: bool,
    /// `/v1/metrics` and `/v1/metricsz` are public (as health) unless this is set.
    pub metrics_require_auth: bool,
    #[serde(deserialize_with = "string_list")]
    pub api_bearer_tokens: Vec<String>,
    #[serde(deserialize_with = "string_list")]
    pub cors_allowed_origins: Vec<String>,
    pub max_request_bytes: usize,
    pub rate_limit_per_min: u32,
    pub rate_limit_burst: u32,
    /// Optional file of bearer tokens (one per line, or a JSON list), re-read when it changes, so
    /// tokens rotate without a restart. Its tokens are accepted in addition to `API_BEARER_TOKENS`.
    pub api_bearer_tokens_file: Option<PathBuf>,
    /// Peers (IPs or CIDR blocks) whose `X-Forwarded-For` is believed; empty = never.
    #[serde(deserialize_with = "string_list")]
    pub trusted_proxies: Vec<String>,
    /// Requests served at once per transport; more are shed with 503 / UNAVAILABLE.
    pub max_concurrent_requests: usize,
    /// Open SSE streams and server-streaming RPCs per principal (or client IP when anonymous).
    pub max_streams_per_principal: usize,
    /// Time a unary request may take before 504 / DEADLINE_EXCEEDED. Never applied to streams.
    pub request_timeout_s: f64,
    /// Time a client gets to send the request head (slowloris guard on HTTP/1).
    pub header_read_timeout_s: f64,
    /// Time a new connection (HTTP or gRPC) gets to send its first byte before it is closed.
    pub idle_connection_timeout_s: f64,
    /// Open connections per listener; 0 = from the descriptor limit (see `layers::connections`).
    pub max_connections: usize,
    /// Open connections per client IP and listener; 0 = the listener's cap.
    pub max_connections_per_ip: usize,
    /// Lifetime of the job-scoped SSE tokens (`?access_token=`).
    pub stream_token_ttl_s: u64,
    /// HMAC key of the SSE tokens; a random one per process when unset (tokens then die with it).
    pub stream_token_key: Option<String>,

    // --- streaming ---
    pub sse_retry_ms: u64,
    pub sse_ping_interval_s: f64,
    /// Events kept in memory per running job in front of the store; also each watcher's queue.
    pub sse_buffer_size: usize,
    /// Defaults to twice the ping interval.
    pub sse_backpressure_fail_timeout_s: Option<f64>,
    /// `resume` (a lagging watcher catches up from the log) or `fail_job` (the original's rule).
    pub sse_backpressure_policy: BackpressurePolicy,

    // --- jobs ---
    pub job_store: StoreKind,
    pub data_dir: PathBuf,
    /// SQLite file; relative paths are under `data_dir`. Kept from the original.
    pub sqlite_path: Option<PathBuf>,
    pub database_url: Option<String>,
    /// This process's id as the owner of job leases (several replicas on one Postgres);
    /// default a fresh random id per start. Must be unique among live replicas.
    pub replica_id: Option<String>,
    /// How long a replica's claim on a job holds without renewal: after a crash, others take
    /// the job over once it expires (Postgres; see docs/replicas.md).
    pub job_lease_s: f64,
    /// How often a replica renews its leases and looks for claimable jobs.
    pub job_lease_heartbeat_s: f64,
    /// Most jobs this replica runs at once (pending, running or paused here); more stay
    /// claimable for other replicas. 0 = no limit.
    pub replica_max_jobs: usize,
    pub max_iterations: u32,
    pub max_wall_time_s: f64,
    pub idempotency_ttl_s: f64,
    pub job_reaper_interval_s: f64,
    pub job_ttl_finished_s: f64,
    pub job_ttl_failed_s: f64,
    pub job_ttl_cancelled_s: f64,
    pub job_ttl_shutdown_s: f64,
    /// How long durable stores keep terminal jobs (events, results, keys) after they end;
    /// 0 = forever. The `JOB_TTL_*` settings only evict from memory (the memory store).
    pub job_retention_s: f64,
    /// Wall time of a GEPA job that names none (`budget.max_wall_time_s`).
    pub gepa_default_wall_time_s: f64,
    /// The most `budget.max_wall_time_s` may ask for.
    pub gepa_max_wall_time_s: f64,

    // --- models ---
    pub use_model_stub: bool,
    pub use_judge_stub: bool,
    pub openrouter_api_key: Option<String>,
    pub openai_api_key: Option<String>,
    pub judge_provider: String,
    pub judge_model_id: String,
    pub judge_timeout_s: f64,
    pub judge_cache_size: usize,
    pub judge_qps_max: f64,
    pub target_model_default: String,
    /// The rubric of jobs whose request names none; defaults to the original's
    /// [`DEFAULT_EVALUATION_RUBRIC`] (unset or empty means that one too).
    pub evaluation_rubric_default: Option<String>,
    pub model_prices_json: Option<String>,
    pub cost_tracking_enabled: bool,
    /// Simulated latency of every `LocalEcho` call, in milliseconds (0 = none). For demos,
    /// benchmarks and tests that need jobs to take time; never set it in production.
    pub local_echo_latency_ms: u64,

    // --- default-mode optimizer ---
    /// Pause after each default-mode iteration, as the original's `asyncio.sleep(0.05)`: a job
    /// just created is still running when a client cancels it. 0 for benchmarks.
    pub default_mode_iteration_delay_ms: u64,
    pub enable_pareto_v2: bool,
    pub pareto_topn: usize,
    pub max_candidates: usize,
    pub max_examples_per_job: usize,
    pub max_mutations_per_round: usize,
    pub tournament_size: u32,
    pub recombination_rate: f64,
    pub early_stop_patience: u32,
    pub retrieval_max_examples: usize,
    pub deterministic_seed: i64,
    pub gepa_deterministic: bool,
    pub eval_max_examples: usize,
    pub eval_max_concurrency: usize,
    /// Evaluations in flight across all jobs (each job also obeys `eval_max_concurrency`).
    pub eval_global_max_concurrency: usize,
    /// Metric-call budget of a GEPA job whose request sets no `max_rollouts`.
    pub gepa_default_max_metric_calls: u64,

    // --- OpenAI-compatible provider ---
    /// Any OpenAI-compatible server (vLLM, Ollama, llama.cpp, …), e.g. `http://127.0.0.1:8080/v1`;
    /// its key, if any, is `OPENAI_API_KEY`. Unset: OpenRouter or OpenAI by which key is set.
    pub openai_base_url: Option<String>,
    /// Reflection model of GEPA; defaults to `TARGET_MODEL_DEFAULT`.
    pub reflection_model_id: Option<String>,
    pub provider_connect_timeout_s: f64,
    pub provider_timeout_s: f64,
    pub provider_max_retries: u32,
    pub provider_backoff_base_ms: u64,
    pub provider_max_concurrency: usize,
    /// Requests per second per provider; 0 = unlimited.
    pub provider_qps_max: f64,
    pub provider_breaker_threshold: u32,
    pub provider_breaker_cooldown_s: f64,

    // --- observability ---
    pub service_name: String,
    pub service_env: String,
    pub log_level: String,
    /// `pretty` or `json`.
    pub log_format: String,
    /// OTLP/gRPC collector; traces are exported only when set.
    pub otel_exporter_otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Memory,
    Sqlite,
    Postgres,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: "127.0.0.1".into(),
            port: 8000,
            grpc_host: "127.0.0.1".into(),
            grpc_port: 50051,
            shutdown_grace_s: 5.0,
            require_auth: true,
            dev_mode: false,
            metrics_require_auth: false,
            api_bearer_tokens: Vec::new(),
            cors_allowed_origins: Vec::new(),
            max_request_bytes: 64_000,
            rate_limit_per_min: 60,
            rate_limit_burst: 30,
            api_bearer_tokens_file: None,
            trusted_proxies: Vec::new(),
            max_concurrent_requests: 512,
            max_streams_per_principal: 16,
            request_timeout_s: 30.0,
            header_read_timeout_s: 10.0,
            idle_connection_timeout_s: 5.0,
            max_connections: 0,
            max_connections_per_ip: 0,
            stream_token_ttl_s: 300,
            stream_token_key: None,
            sse_retry_ms: 1500,
            sse_ping_interval_s: 1.0,
            sse_buffer_size: 200,
            sse_backpressure_fail_timeout_s: None,
            sse_backpressure_policy: BackpressurePolicy::Resume,
            job_store: StoreKind::Sqlite,
            data_dir: PathBuf::from("data"),
            sqlite_path: None,
            database_url: None,
            replica_id: None,
            job_lease_s: 10.0,
            job_lease_heartbeat_s: 3.0,
            replica_max_jobs: 0,
            max_iterations: 4,
            max_wall_time_s: 15.0,
            idempotency_ttl_s: 600.0,
            job_reaper_interval_s: 2.0,
            job_ttl_finished_s: 30.0,
            job_ttl_failed_s: 120.0,
            job_ttl_cancelled_s: 60.0,
            job_ttl_shutdown_s: 120.0,
            job_retention_s: 30.0 * 86400.0,
            gepa_default_wall_time_s: 3600.0,
            gepa_max_wall_time_s: 86400.0,
            use_model_stub: true,
            use_judge_stub: true,
            openrouter_api_key: None,
            openai_api_key: None,
            judge_provider: "stub".into(),
            judge_model_id: "openai/gpt-4o-mini".into(),
            judge_timeout_s: 15.0,
            judge_cache_size: 2048,
            judge_qps_max: 5.0,
            target_model_default: "openai/gpt-4o-mini".into(),
            evaluation_rubric_default: Some(DEFAULT_EVALUATION_RUBRIC.into()),
            model_prices_json: None,
            cost_tracking_enabled: true,
            local_echo_latency_ms: 0,
            default_mode_iteration_delay_ms: 50,
            enable_pareto_v2: true,
            pareto_topn: 1,
            max_candidates: 8,
            max_examples_per_job: 16,
            max_mutations_per_round: 4,
            tournament_size: 4,
            recombination_rate: 0.5,
            early_stop_patience: 3,
            retrieval_max_examples: 4,
            deterministic_seed: 13,
            gepa_deterministic: false,
            eval_max_examples: 100,
            eval_max_concurrency: 32,
            eval_global_max_concurrency: 64,
            gepa_default_max_metric_calls: 300,
            openai_base_url: None,
            reflection_model_id: None,
            provider_connect_timeout_s: 10.0,
            provider_timeout_s: 60.0,
            provider_max_retries: 4,
            provider_backoff_base_ms: 250,
            provider_max_concurrency: 32,
            provider_qps_max: 0.0,
            provider_breaker_threshold: 5,
            provider_breaker_cooldown_s: 30.0,
            service_name: "innerloop".into(),
            service_env: "dev".into(),
            log_level: "info".into(),
            log_format: "pretty".into(),
            otel_exporter_otlp_endpoint: None,
        }
    }
}

/// A setting that failed to load or validate; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Accepts a comma-separated string, a JSON list in a string, or a real list.
fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::List(items) => items,
        Raw::Text(text) => {
            let trimmed = text.trim();
            if trimmed.starts_with('[') {
                serde_json::from_str::<Vec<String>>(trimmed).map_err(serde::de::Error::custom)?
            } else {
                trimmed
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
        }
    }
    .into_iter()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
    .collect())
}

impl Settings {
    pub fn sse_backpressure_fail_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(
            self.sse_backpressure_fail_timeout_s
                .unwrap_or(2.0 * self.sse_ping_interval_s)
                .max(0.001),
        )
    }

    /// The SQLite file in force.
    pub fn sqlite_file(&self) -> PathBuf {
        match &self.sqlite_path {
            Some(path) if path.is_absolute() => path.clone(),
            Some(path) => self.data_dir.join(path),
            None => self.data_dir.join("innerloop.db"),
        }
    }

    /// The effective configuration as TOML-like JSON with secrets replaced by `"***"`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            for key in [
                "api_bearer_tokens",
                "openrouter_api_key",
                "openai_api_key",
                "database_url",
                "stream_token_key",
            ] {
                match map.get(key) {
                    Some(serde_json::Value::Null) | None => {}
                    Some(serde_json::Value::Array(items)) => {
                        let n = items.len();
                        map.insert(key.into(), serde_json::json!(vec!["***"; n]));
                    }
                    Some(_) => {
                        map.insert(key.into(), serde_json::json!("***"));
                    }
                }
            }
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::Serialized;

    use super::*;

    #[test]
    fn token_lists_accept_commas_and_json() {
        let from = |v: &str| {
            let f = Figment::from(Serialized::defaults(Settings::default()))
                .merge(Serialized::default("api_bearer_tokens", v));
            f.extract::<Settings>().unwrap().api_bearer_tokens
        };
        assert_eq!(from("a, b"), ["a", "b"]);
        assert_eq!(from(r#"["a","b"]"#), ["a", "b"]);
        assert!(from("").is_empty());
    }

    #[test]
    fn secrets_are_redacted() {
        let settings = Settings {
            api_bearer_tokens: vec!["secret".into()],
            openai_api_key: Some("sk".into()),
            ..Settings::default()
        };
        let text = settings.redacted().to_string();
        assert!(!text.contains("secret") && !text.contains("\"sk\""));
    }

    #[test]
    fn validation_names_the_setting() {
        let settings = Settings {
            max_iterations: 0,
            ..Settings::default()
        };
        assert!(
            settings
                .validate()
                .unwrap_err()
                .to_string()
                .contains("MAX_ITERATIONS")
        );
    }
}
