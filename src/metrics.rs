//! Process-wide metrics (prometheus-client): the original service's names
//! (`http_requests_total`, `http_request_duration_seconds`, `sse_clients`, `jobs_created_total`,
//! `jobs_finished_total`, `jobs_failed_total`, `jobs_cancelled_total`) plus gRPC equivalents
//! (`grpc_server_handled_total`, `grpc_server_handling_seconds`), `active_watchers` (open SSE
//! streams and streaming RPCs), `job_queue_depth` (jobs pending or running here) and
//! `store_operation_seconds` (store latency, by operation).
//!
//! The access log layer records requests; the job runtime calls [`job_created`],
//! [`job_ended`] and [`observe_store`]. [`render_text`] is the `/v1/metrics` body and [`render_json`] the
//! `/v1/metricsz` object (the same numbers, read back from the same text); the edge serves both
//! (`crate::edge::routes::metrics`).

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::JobStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub grpc_service: String,
    pub grpc_method: String,
    pub grpc_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcMethodLabels {
    pub grpc_service: String,
    pub grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
    pub kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistogramFamily<RouteLabels>,
    pub grpc_handled: Family<GrpcLabels, Counter>,
    pub grpc_duration: HistogramFamily<GrpcMethodLabels>,
    pub sse_clients: Gauge,
    pub active_watchers: Gauge,
    pub jobs_created: Counter,
    pub jobs_finished: Counter,
    pub jobs_failed: Counter,
    pub jobs_cancelled: Counter,
    pub job_queue_depth: Gauge,
    pub jobs_claimable: Gauge,
    pub job_leases_held: Gauge,
    pub store_latency: HistogramFamily<StoreLabels>,
    pub provider_failures: Family<ProviderLabels, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            grpc_handled: Family::default(),
            grpc_duration: Family::new_with_constructor(latency_histogram),
            sse_clients: Gauge::default(),
            active_watchers: Gauge::default(),
            jobs_created: Counter::default(),
            jobs_finished: Counter::default(),
            jobs_failed: Counter::default(),
            jobs_cancelled: Counter::default(),
            job_queue_depth: Gauge::default(),
            jobs_claimable: Gauge::default(),
            job_leases_held: Gauge::default(),
            store_latency: Family::new_with_constructor(latency_histogram),
            provider_failures: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency to the response head",
            m.http_duration.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "RPCs completed by service, method and gRPC code",
            m.grpc_handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "RPC latency to the response head",
            m.grpc_duration.clone(),
        );
        registry.register("sse_clients", "Open SSE streams", m.sse_clients.clone());
        registry.register(
            "active_watchers",
            "Open event streams on both transports (SSE and streaming RPCs)",
            m.active_watchers.clone(),
        );
        registry.register("jobs_created", "Jobs created", m.jobs_created.clone());
        registry.register("jobs_finished", "Jobs finished", m.jobs_finished.clone());
        registry.register("jobs_failed", "Jobs failed", m.jobs_failed.clone());
        registry.register("jobs_cancelled", "Jobs cancelled", m.jobs_cancelled.clone());
        registry.register(
            "job_queue_depth",
            "Jobs pending or running in this process",
            m.job_queue_depth.clone(),
        );
        registry.register(
            "jobs_claimable",
            "Live jobs no replica holds a lease on (the shared queue; Postgres only)",
            m.jobs_claimable.clone(),
        );
        registry.register(
            "job_leases_held",
            "Job leases this replica holds (Postgres only)",
            m.job_leases_held.clone(),
        );
        registry.register(
            "store_operation_seconds",
            "Store operation latency (event commits of the group-committing writer)",
            m.store_latency.clone(),
        );
        registry.register(
            "provider_attempt_failures",
            "Failed model-provider attempts (retried or not) by provider and kind (malformed, timeout, http_5xx, ...)",
            m.provider_failures.clone(),
        );
        Metrics { registry, ..m }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Runtime hook: a job was created (not on an idempotent replay).
pub fn job_created() {
    global().jobs_created.inc();
    global().job_queue_depth.inc();
}

/// Runtime hook: a live job ended with `status`.
pub fn job_ended(status: JobStatus) {
    let m = global();
    m.job_queue_depth.dec();
    match status {
        JobStatus::Finished => {
            m.jobs_finished.inc();
        }
        JobStatus::Failed => {
            m.jobs_failed.inc();
        }
        JobStatus::Cancelled => {
            m.jobs_cancelled.inc();
        }
        _ => {}
    }
}

/// Runtime hook: a store operation `op` took `elapsed`.
pub fn observe_store(op: &str, elapsed: std::time::Duration) {
    global()
        .store_latency
        .get_or_create(&StoreLabels { op: op.to_string() })
        .observe(elapsed.as_secs_f64());
}

/// Provider hook: one attempt of a model call to `provider` failed with an error of `kind`.
pub fn provider_attempt_failed(provider: &str, kind: &str) {
    global()
        .provider_failures
        .get_or_create(&ProviderLabels {
            provider: provider.to_string(),
            kind: kind.to_string(),
        })
        .inc();
}

/// Content type of [`render_text`] (OpenMetrics text, which Prometheus scrapes natively).
pub const TEXT_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Prometheus/OpenMetrics text exposition.
pub fn render_text() -> String {
    let mut out = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &global().registry) {
        tracing::error!(error = %err, "metrics encoding failed");
    }
    out
}

/// The same samples as a JSON object: `{"<name>{<labels>}": value}` with labels exactly as in
/// the text form, so the two never disagree; plus the original's snapshot keys, read from the
/// same samples: `jobs_created`, `jobs_finished`, `jobs_failed`, `jobs_cancelled`,
/// `sse_clients`, `rate_limited` (HTTP 429 answers), `oversize_rejected` (HTTP 413 answers)
/// and `ts` (Unix seconds).
pub fn render_json() -> serde_json::Value {
    let mut map = serde_json::Map::new();
    let (mut rate_limited, mut oversize) = (0.0, 0.0);
    for line in render_text().lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let parsed = value.parse::<f64>().ok();
        if name.starts_with("http_requests_total{") {
            if name.contains(r#"status="429""#) {
                rate_limited += parsed.unwrap_or(0.0);
            } else if name.contains(r#"status="413""#) {
                oversize += parsed.unwrap_or(0.0);
            }
        }
        let number = parsed
            .and_then(serde_json::Number::from_f64)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null);
        map.insert(name.to_string(), number);
    }
    for (original, ours) in [
        ("jobs_created", "jobs_created_total"),
        ("jobs_finished", "jobs_finished_total"),
        ("jobs_failed", "jobs_failed_total"),
        ("jobs_cancelled", "jobs_cancelled_total"),
    ] {
        let value = map.get(ours).cloned().unwrap_or(serde_json::Value::from(0));
        map.insert(original.to_string(), value);
    }
    map.insert("rate_limited".into(), serde_json::Value::from(rate_limited));
    map.insert(
        "oversize_rejected".into(),
        serde_json::Value::from(oversize),
    );
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    map.insert("ts".into(), serde_json::Value::from(ts));
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_names_are_exposed_and_json_matches_text() {
        job_created();
        let text = render_text();
        for name in [
            "jobs_created_total",
            "jobs_finished_total",
            "jobs_failed_total",
            "jobs_cancelled_total",
            "sse_clients",
            "job_queue_depth",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        let json = render_json();
        assert!(json["jobs_created_total"].as_f64().unwrap() >= 1.0);
        assert_eq!(json["jobs_created"], json["jobs_created_total"]);
    }
}
