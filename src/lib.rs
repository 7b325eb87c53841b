//! # innerloop
//!
//! A service that runs prompt-optimization jobs (GEPA: reflective prompt evolution with Pareto
//! selection, plus the original service's cheap default loop) and streams their progress.
//!
//! ## Layout: who owns what
//! - [`domain`]: jobs, specs, events and results — plain data with the contract's JSON shapes.
//! - [`optimizer`]: what a job runs ([`optimizer::Optimizer`]), reporting through an event sink.
//! - [`provider`]: model access ([`provider::ModelProvider`]); `LocalEcho` is offline.
//! - [`store`]: persistence behind [`store::JobStore`]: SQLite (default), Postgres, memory;
//!   job leases for several replicas on one Postgres ([`store::lease`]).
//! - [`runtime`]: [`runtime::JobRuntime`] — lifecycle, event log, watchers, idempotency, reaper,
//!   shutdown, this process as one replica (claims, heartbeat, commands to other replicas).
//!   Domain logic only; no HTTP or gRPC types.
//! - [`grpc`]: the tonic core — protobuf types, proto ↔ domain conversions, the services.
//! - [`edge`]: the axum REST + SSE `/v1` API, a gRPC client of the core (in-process or remote).
//! - [`cli`]: the client subcommands of the binary (`run`, `watch`, `ls`, …), over gRPC.
//! - [`server`]: binds listeners and runs everything until a shutdown signal.
//! - [`config`]: the one [`config::Settings`] type, layered and validated once.
//! - [`error`]: the one [`error::Error`] type; each code knows its gRPC code and HTTP status.
//! - [`telemetry`]: structured logging set-up, and OTLP trace export when configured.
//! - [`layers`]: tower layers shared by both transports — auth, rate limits, size limits,
//!   timeouts, load shedding, access log, trace context.
//! - [`workbench`]: a job's candidates and lineage as the workbench shows them.
//! - [`metrics`]: process-wide Prometheus metrics and the `/v1/metrics` handlers.

pub mod cli;
pub mod config;
pub mod domain;
pub mod edge;
pub mod error;
pub mod grpc;
pub mod layers;
pub mod metrics;
pub mod optimizer;
pub mod provider;
pub mod runtime;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod workbench;
