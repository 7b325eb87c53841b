//! `GET /v1/metrics` (OpenMetrics text) and `GET /v1/metricsz` (the same numbers as JSON), and
//! their unversioned aliases. The registry is [`crate::metrics`]; this only serves it. Mounted
//! under the layers: public like health unless `METRICS_REQUIRE_AUTH`, but still counted,
//! logged and rate limited.

use axum::Router;
use axum::routing::get;

use crate::api::routes::{METRICS, METRICSZ};
use crate::metrics::{TEXT_CONTENT_TYPE, render_json, render_text};

/// Both metrics routes, at `/v1` and unversioned.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let text = || async {
        (
            [(http::header::CONTENT_TYPE, TEXT_CONTENT_TYPE)],
            render_text(),
        )
    };
    let json = || async { axum::Json(render_json()) };
    Router::new()
        .route(&format!("/v1{METRICS}"), get(text))
        .route(METRICS, get(text))
        .route(&format!("/v1{METRICSZ}"), get(json))
        .route(METRICSZ, get(json))
}
