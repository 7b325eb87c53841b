//! The handlers of the route catalogue ([`crate::api::routes`], whose paths they mount). Each
//! group is a function returning its routes relative to `/v1`, so the same handlers serve the
//! unversioned aliases. New groups (examples, eval, metrics) add a
//! module here and a line in [`v1`] (and in [`aliases`] when the contract keeps an alias).

pub mod admin;
pub mod gepa;
pub mod metrics;
pub mod optimize;
pub mod probes;
pub mod stream_token;
pub mod workbench;

use axum::Router;
use axum::routing::{get, post};

use super::EdgeState;
use crate::api::routes::*;

/// Health, readiness and version (aliased).
pub fn probes() -> Router<EdgeState> {
    Router::new()
        .route(HEALTHZ, get(probes::healthz))
        .route(READYZ, get(probes::readyz))
        .route(VERSION, get(probes::version))
}

/// The four optimize routes (aliased).
pub fn optimize() -> Router<EdgeState> {
    Router::new()
        .route(OPTIMIZE, post(optimize::create))
        .route(OPTIMIZE_JOB, get(optimize::get).delete(optimize::cancel))
        .route(OPTIMIZE_EVENTS, get(optimize::events))
        .route(OPTIMIZE_PAUSE, post(optimize::pause))
        .route(OPTIMIZE_RESUME, post(optimize::resume))
        .route(OPTIMIZE_ESTIMATE, post(gepa::estimate))
}

/// The admin routes (never aliased).
pub fn admin() -> Router<EdgeState> {
    Router::new()
        .route(ADMIN_JOBS, get(admin::list))
        .route(ADMIN_JOB, get(admin::get).delete(admin::delete))
        .route(ADMIN_CANCEL, post(admin::cancel))
}

/// Stored examples (never aliased).
pub fn examples() -> Router<EdgeState> {
    Router::new()
        .route(EXAMPLES_BULK, post(gepa::bulk))
        .route(EXAMPLES, get(gepa::list))
        .route(EXAMPLE, axum::routing::delete(gepa::delete))
}

/// Eval jobs (aliased).
pub fn eval() -> Router<EdgeState> {
    Router::new()
        .route(EVAL_START, post(gepa::start))
        .route(EVAL_JOB, get(gepa::get))
        .route(EVAL_EVENTS, get(gepa::events))
}

/// The workbench's routes (never aliased).
pub fn workbench() -> Router<EdgeState> {
    Router::new()
        .route(CANDIDATES, get(workbench::candidates))
        .route(STEER, post(workbench::steer))
        .route(BRANCH, post(workbench::branch))
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
        .route(OPENAPI, get(super::openapi::document))
}

/// The unversioned aliases of the original (kept out of the OpenAPI document).
pub fn aliases() -> Router<EdgeState> {
    Router::new()
        .merge(probes())
        .merge(optimize())
        .merge(eval())
}
