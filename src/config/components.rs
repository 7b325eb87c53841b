//! The settings grouped per component: each component takes a small struct of its own, built
//! here from [`Settings`] where the app is wired (`server.rs`), never the whole `Settings`.
//! The environment variables stay flat (they are the original service's names).

use std::time::Duration;

use super::{DEFAULT_EVALUATION_RUBRIC, Settings, StoreKind};
use crate::optimizer::default_mode::judge::JudgeChoice;
use crate::optimizer::gepa::budget::Prices;
use crate::optimizer::{DefaultModeConfig, GepaConfig, WallTimes};
use crate::provider::openai::{OPENAI_BASE_URL, OPENROUTER_BASE_URL, OpenAiConfig};
use crate::store::Location;

impl Settings {
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
