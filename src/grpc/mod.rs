//! The tonic core: the services, each a few lines over [`JobRuntime`](crate::runtime::JobRuntime)
//! that decode a request with [`crate::api`], call the runtime and encode the answer.

mod config;
mod services;
mod services_gepa;
pub mod workbench;

pub use config::ServiceConfig;
pub use services::{JobServiceImpl, OptimizerServiceImpl, router};
pub use services_gepa::{EvalServiceImpl, ExamplesServiceImpl};
