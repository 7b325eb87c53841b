//! The route table. Each group is a function returning its routes relative to `/v1`, so the
//! same handlers serve the unversioned aliases. New groups (examples, eval, metrics) add a
//! module here and a line in [`v1`] (and in [`aliases`] when the contract keeps an alias).

pub mod admin;
pub mod gepa;
pub mod optimize;
pub mod probes;
pub mod workbench;

use axum::Router;
use axum::routing::{get, post};

use super::EdgeState;

/// Health, readiness and version (aliased).
pub fn probes() -> Router<EdgeState> {
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/version", get(probes::version))
}

/// The four optimize routes (aliased).
pub fn optimize() -> Router<EdgeState> {
    Router::new()
        .route("/optimize", post(optimize::create))
        .route(
            "/optimize/{job_id}",
            get(optimize::get).delete(optimize::cancel),
        )
        .route("/optimize/{job_id}/events", get(optimize::events))
        .route("/optimize/{job_id}/pause", post(optimize::pause))
        .route("/optimize/{job_id}/resume", post(optimize::resume))
        .route("/optimize/estimate", post(gepa::estimate))
}

/// The admin routes (never aliased).
pub fn admin() -> Router<EdgeState> {
    Router::new()
        .route("/admin/jobs", get(admin::list))
        .route(
            "/admin/jobs/{job_id}",
            get(admin::get).delete(admin::delete),
        )
        .route("/admin/jobs/{job_id}/cancel", post(admin::cancel))
}

/// Stored examples (never aliased).
pub fn examples() -> Router<EdgeState> {
    Router::new()
        .route("/examples/bulk", post(gepa::bulk))
        .route("/examples", get(gepa::list))
        .route("/examples/{id}", axum::routing::delete(gepa::delete))
}

/// Eval jobs (aliased).
pub fn eval() -> Router<EdgeState> {
    Router::new()
        .route("/eval/start", post(gepa::start))
        .route("/eval/{job_id}", get(gepa::get))
        .route("/eval/{job_id}/events", get(gepa::events))
}

/// The workbench's routes (never aliased).
pub fn workbench() -> Router<EdgeState> {
    Router::new()
        .route("/optimize/{job_id}/candidates", get(workbench::candidates))
        .route("/optimize/{job_id}/steer", post(workbench::steer))
        .route("/optimize/{job_id}/branch", post(workbench::branch))
}

/// Everything under `/v1`.
pub fn v1() -> Router<EdgeState> {
    Router::new()
        .merge(probes())
        .merge(optimize())
        .merge(admin())
        .merge(examples())
        .merge(eval())
        .merge(workbench())
        .route("/openapi.json", get(super::openapi::document))
}

/// The unversioned aliases of the original (kept out of the OpenAPI document).
pub fn aliases() -> Router<EdgeState> {
    Router::new()
        .merge(probes())
        .merge(optimize())
        .merge(eval())
}
