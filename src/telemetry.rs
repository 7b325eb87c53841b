//! Structured logging: `tracing` with an env-filter (`RUST_LOG` wins over `LOG_LEVEL`) and a
//! pretty or JSON formatter (`LOG_FORMAT`); OpenTelemetry spans exported over OTLP/gRPC when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`init_with_otel`]). Colours only on a terminal: logs
//! written to a file or a pipe carry no ANSI escape codes (nor with `NO_COLOR` set).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// What logging and tracing read of the configuration; built where the app is wired
/// (`Settings::telemetry`).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The default filter (`LOG_LEVEL`); `RUST_LOG` wins over it.
    pub log_level: String,
    /// JSON lines instead of pretty ones (`LOG_FORMAT=json`).
    pub json: bool,
    /// The service name on exported spans (`SERVICE_NAME`).
    pub service_name: String,
    /// The OTLP/gRPC collector (`OTEL_EXPORTER_OTLP_ENDPOINT`); spans are exported only when set.
    pub otlp_endpoint: Option<String>,
}

/// Whether log lines may carry ANSI colours: only when they go to a terminal (the formatter
/// writes to stdout) and `NO_COLOR` is unset.
fn colours() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Installs the global subscriber once; later calls are no-ops (tests call it freely).
pub fn init(config: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},h2=warn,hyper=warn,tower=warn",
            config.log_level
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours())
        .with_target(false);
    let _ = if config.json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Owns the OTLP trace pipeline (when configured) and flushes it on shutdown.
#[must_use = "dropping the guard without shutdown loses buffered spans"]
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops the exporter. Blocking inside the SDK, so it runs on the blocking pool
    /// (never on a runtime worker: it would deadlock a current-thread runtime).
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let result = tokio::task::spawn_blocking(move || {
                let _ = provider.force_flush();
                provider.shutdown()
            })
            .await;
            if let Ok(Err(err)) = result {
                eprintln!("trace exporter shutdown: {err}");
            }
        }
    }
}

/// An OTLP/gRPC tracer provider exporting to `endpoint` in batches. Build it inside a Tokio
/// runtime (the tonic exporter needs one).
pub fn otlp_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name.to_string())
                .build(),
        )
        .build())
}

/// Installs W3C trace-context propagation (`traceparent`) process-wide.
pub fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
}

/// Like [`init`], plus OpenTelemetry: W3C propagation always, OTLP export of spans only when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Call inside the Tokio runtime; keep the guard and call
/// [`TelemetryGuard::shutdown`] after the server stops.
pub fn init_with_otel(config: &TelemetryConfig) -> TelemetryGuard {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    install_propagator();
    let provider = match config.otlp_endpoint.as_deref() {
        Some(endpoint) if !endpoint.is_empty() => {
            match otlp_provider(endpoint, &config.service_name) {
                Ok(provider) => Some(provider),
                Err(err) => {
                    eprintln!("OTLP exporter not started: {err}");
                    None
                }
            }
        }
        _ => None,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},h2=warn,hyper=warn,tower=warn,opentelemetry=warn",
            config.log_level
        ))
    });
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(config.service_name.clone())));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = if config.json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_target(false),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(colours())
                    .with_target(false),
            )
            .try_init()
    };
    TelemetryGuard { provider }
}
