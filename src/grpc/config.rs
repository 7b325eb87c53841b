//! What the services read besides the runtime: the request limits they decode with and what
//! `EstimateJob` prices a GEPA run with. Built where the app is wired (`Settings::services` in
//! `config/components.rs`).

use std::sync::Arc;

use crate::optimizer::GepaConfig;
use crate::optimizer::gepa::budget::Prices;

/// The services' configuration; cheap to clone.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The most iterations a request may ask for (`MAX_ITERATIONS`); branches too.
    pub max_iterations: u32,
    /// The largest request (`MAX_REQUEST_BYTES`); messages are decoded up to it (at least 4 KiB).
    pub max_request_bytes: usize,
    /// What GEPA jobs read, for `EstimateJob`.
    pub gepa: Arc<GepaConfig>,
    /// Model prices, for `EstimateJob` (`MODEL_PRICES_JSON`).
    pub prices: Arc<Prices>,
}
