//! GEPA placeholder
pub mod budget;
pub mod frontier;
pub mod metrics;
pub mod state;
