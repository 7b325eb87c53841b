//! Structured logging: `tracing` with an env-filter (`RUST_LOG` wins over `LOG_LEVEL`) and a
//! pretty or JSON formatter (`LOG_FORMAT`).

use tracing_subscriber::EnvFilter;

use crate::config::Settings;

/// Installs the global subscriber once; later calls are no-ops (tests call it freely).
pub fn init(settings: &Settings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},h2=warn,hyper=warn,tower=warn",
            settings.log_level
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if settings.log_format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
