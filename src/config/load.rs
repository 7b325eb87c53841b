//! Loading the settings: serialized defaults → optional `innerloop.toml` (or `--config FILE`) →
//! environment variables (the original service's names, legacy ones mapped) → command-line
//! flags; then one [`Settings::validate`] whose messages name the setting at fault.

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};

use super::{ConfigError, Settings, StoreKind};

/// Legacy environment names of the original, mapped onto ours.
const LEGACY_ENV: &[(&str, &str)] = &[
    ("RATE_LIMIT_OPTIMIZE_RPS", "rate_limit_per_min"),
    ("RATE_LIMIT_OPTIMIZE_BURST", "rate_limit_burst"),
];

/// Settings that only a flag or a file may set (`--dev` must be said out loud).
const NOT_FROM_ENV: &[&str] = &["dev_mode"];

/// One line per bad setting: its environment variable (or key) and the value, then why.
fn describe(err: figment::Error, from_env: &[(String, String, String)]) -> String {
    let mut lines = Vec::new();
    for error in err {
        let key = error.path.first().cloned().unwrap_or_default();
        // The last variable merged for this key is the one in force.
        let line = match from_env.iter().rev().find(|(k, _, _)| *k == key) {
            Some((_, var, value)) => format!("{var}={value:?}: {}", error.kind),
            None if key.is_empty() => error.kind.to_string(),
            None => format!("{}: {}", key.to_ascii_uppercase(), error.kind),
        };
        lines.push(line);
    }
    lines.join("; ")
}

impl Settings {
    /// Loads defaults → file → environment → `overrides` (command-line flags), then validates.
    /// `file` defaults to `innerloop.toml` in the working directory when it exists.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: Figment,
    ) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError(format!(
                        "config file {} not found",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("innerloop.toml")),
        }
        // Environment values enter as strings, tagged with the variable they came from, and
        // are converted to each setting's type on extraction ("1" is a number for a `u32`, a
        // string for a token), so a legacy deploy script's `RATE_LIMIT_OPTIMIZE_BURST=1` works.
        let mut from_env: Vec<(String, String, String)> = Vec::new();
        for (legacy, ours) in LEGACY_ENV {
            if let Ok(value) = std::env::var(legacy) {
                let value = if *legacy == "RATE_LIMIT_OPTIMIZE_RPS" {
                    // requests per second → per minute
                    value
                        .trim()
                        .parse::<f64>()
                        .map(|rps| ((rps * 60.0).round() as u64).to_string())
                        .unwrap_or(value)
                } else {
                    value
                };
                from_env.push((ours.to_string(), legacy.to_string(), value));
            }
        }
        let known: Vec<String> = serde_json::to_value(Settings::default())
            .ok()
            .and_then(|v| v.as_object().map(|m| m.keys().cloned().collect()))
            .unwrap_or_default();
        // `vars_os`: `vars()` panics on a non-UTF-8 variable anywhere in the environment.
        for (name, value) in std::env::vars_os() {
            let (Ok(name), Ok(value)) = (name.into_string(), value.into_string()) else {
                continue;
            };
            let key = name.to_ascii_lowercase();
            if known.contains(&key) && !NOT_FROM_ENV.contains(&key.as_str()) {
                from_env.push((key, name, value));
            }
        }
        for (key, _, value) in &from_env {
            figment = figment.merge(Serialized::default(key, value.trim()));
        }
        figment = figment.merge(overrides);
        let settings: Settings = figment
            .extract_lossy()
            .map_err(|err| ConfigError(describe(err, &from_env)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks cross-field rules once; every message names its setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: &str| Err(ConfigError(msg.to_string()));
        if self.max_iterations == 0 {
            return fail("MAX_ITERATIONS must be >= 1");
        }
        if self.sse_buffer_size == 0 {
            return fail("SSE_BUFFER_SIZE must be >= 1");
        }
        if self.sse_ping_interval_s.is_nan() || self.sse_ping_interval_s <= 0.0 {
            return fail("SSE_PING_INTERVAL_S must be > 0");
        }
        if self.max_wall_time_s.is_nan() || self.max_wall_time_s <= 0.0 {
            return fail("MAX_WALL_TIME_S must be > 0");
        }
        if self.job_lease_heartbeat_s.is_nan() || self.job_lease_heartbeat_s <= 0.0 {
            return fail("JOB_LEASE_HEARTBEAT_S must be > 0");
        }
        if self.job_lease_s.is_nan() || self.job_lease_s < 2.0 * self.job_lease_heartbeat_s {
            return fail("JOB_LEASE_S must be at least twice JOB_LEASE_HEARTBEAT_S");
        }
        if self
            .replica_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return fail("REPLICA_ID must not be blank");
        }
        // Settings that would silently do nothing are refused.
        if !self.use_model_stub && self.openai().is_none() {
            return fail(
                "USE_MODEL_STUB=false needs a model provider: set OPENAI_BASE_URL, \
                 OPENAI_API_KEY or OPENROUTER_API_KEY (or keep USE_MODEL_STUB=true)",
            );
        }
        if let Err(err) =
            crate::optimizer::gepa::budget::Prices::parse(self.model_prices_json.as_deref())
        {
            return Err(ConfigError(format!(
                "MODEL_PRICES_JSON is not a JSON object of {{\"model\": {{\"input\": USD per million tokens, \"output\": …}}}}: {err}"
            )));
        }
        if self.job_retention_s.is_nan() || self.job_retention_s < 0.0 {
            return fail("JOB_RETENTION_S must be >= 0 (0 keeps jobs forever)");
        }
        if self.gepa_max_wall_time_s.is_nan() || self.gepa_max_wall_time_s <= 0.0 {
            return fail("GEPA_MAX_WALL_TIME_S must be > 0");
        }
        if self.gepa_default_wall_time_s.is_nan()
            || self.gepa_default_wall_time_s <= 0.0
            || self.gepa_default_wall_time_s > self.gepa_max_wall_time_s
        {
            return fail("GEPA_DEFAULT_WALL_TIME_S must be > 0 and <= GEPA_MAX_WALL_TIME_S");
        }
        if self.job_reaper_interval_s.is_nan() || self.job_reaper_interval_s <= 0.0 {
            return fail("JOB_REAPER_INTERVAL_S must be > 0");
        }
        if self.max_request_bytes == 0 {
            return fail("MAX_REQUEST_BYTES must be >= 1");
        }
        if self.rate_limit_per_min == 0 || self.rate_limit_burst == 0 {
            return fail("RATE_LIMIT_PER_MIN and RATE_LIMIT_BURST must be >= 1");
        }
        if !(0.0..=1.0).contains(&self.recombination_rate) {
            return fail("RECOMBINATION_RATE must be between 0 and 1");
        }
        if self.require_auth && self.api_bearer_tokens.is_empty() && self.service_env == "prod" {
            return fail("API_BEARER_TOKENS must list at least one token when REQUIRE_AUTH=true");
        }
        if self.job_store == StoreKind::Postgres && self.database_url.is_none() {
            return fail("DATABASE_URL is required when JOB_STORE=postgres");
        }
        if self.max_concurrent_requests == 0 || self.max_streams_per_principal == 0 {
            return fail("MAX_CONCURRENT_REQUESTS and MAX_STREAMS_PER_PRINCIPAL must be >= 1");
        }
        if self.request_timeout_s.is_nan()
            || self.request_timeout_s <= 0.0
            || self.header_read_timeout_s.is_nan()
            || self.header_read_timeout_s <= 0.0
        {
            return fail("REQUEST_TIMEOUT_S and HEADER_READ_TIMEOUT_S must be > 0");
        }
        if self.idle_connection_timeout_s.is_nan() || self.idle_connection_timeout_s <= 0.0 {
            return fail("IDLE_CONNECTION_TIMEOUT_S must be > 0");
        }
        if self.stream_token_ttl_s == 0 {
            return fail("STREAM_TOKEN_TTL_S must be >= 1");
        }
        if let Some(bad) = self
            .trusted_proxies
            .iter()
            .find(|p| crate::net::IpNet::parse(p).is_none())
        {
            return fail(&format!(
                "TRUSTED_PROXIES: {bad} is not an IP or CIDR block"
            ));
        }
        if !matches!(self.log_format.as_str(), "pretty" | "json") {
            return fail("LOG_FORMAT must be pretty or json");
        }
        Ok(())
    }
}
