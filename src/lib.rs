//! # innerloop
//!
//! A service that runs prompt-optimization jobs (GEPA: reflective prompt evolution with Pareto
//! selection, plus the original service's cheap default loop) and streams their progress.
//!
//! ## Layout: who owns what
//! - [`domain`]: jobs, specs, events and results — plain data (its serde is what the stores
//!   write) and their rules (`JobSpec::validate`, [`domain::limits`]), the
//!   steering inbox a job shares with its engine ([`domain::steering`]) and the seeded RNG
//!   ([`domain::rng`]). No transport, no database.
//! - [`optimizer`]: what a job runs ([`optimizer::Optimizer`]), reporting through an event sink;
//!   each gets only what it uses: a checkpoint store, the example corpus and a small config of
//!   its own ([`optimizer::GepaConfig`], [`optimizer::DefaultModeConfig`]), never `Settings`.
//! - [`provider`]: model access ([`provider::ModelProvider`]): the OpenAI-compatible client,
//!   and offline `LocalEcho` and `OfflineWorld` (a task model and reflection that can improve).
//! - [`store`]: persistence, one trait per seam, each with its own error: the group commit and
//!   event logs ([`store::EventStore`]), job rows, idempotency keys, examples, checkpoints and
//!   job leases for several replicas on one Postgres ([`store::LeaseStore`]);
//!   [`store::JobStore`] is all of them. SQLite (default), Postgres, memory.
//! - [`runtime`]: [`runtime::JobRuntime`] — lifecycle, event log, watchers, idempotency, reaper,
//!   shutdown, this process as one replica (claims, heartbeat, commands to other replicas).
//!   Every task it spawns ends on shutdown and is waited for. Domain logic only; no HTTP or
//!   gRPC types. Configured by a [`runtime::RuntimeConfig`].
//! - [`api`]: the contract boundary — the generated protobuf types ([`api::pb`]), every
//!   proto ↔ domain conversion (`From`/`TryFrom` naming every field), the one status table and
//!   error encodings ([`api::status`]), every limit ([`api::limits`]), the JSON clients read
//!   of events and results, rendered from the wire types ([`api::json`], [`api::envelope`]),
//!   the REST shapes ([`api::rest`]) and the route catalogue ([`api::routes`]).
//! - [`grpc`]: the tonic services, each a few lines: decode with [`api`], call the runtime,
//!   encode.
//! - [`edge`]: the axum REST + SSE `/v1` API, a gRPC client of the core (in-process or remote);
//!   it mounts the catalogue's routes, [`edge::protected_app`] behind the layers.
//! - [`cli`]: the client subcommands of the binary (`run`, `watch`, `ls`, …), over gRPC.
//! - [`server`]: wires the app — builds the providers and optimizers from the settings
//!   ([`server::optimizers`], [`server::models`]), opens the store, binds listeners and runs
//!   everything until a shutdown signal.
//! - [`config`]: the one [`config::Settings`] type, layered and validated once, and what each
//!   component reads of it, grouped (`settings.runtime()`, `settings.layers()`,
//!   `settings.gepa()`, …). Only the wiring (`server`, `cli`, `main`) reads `Settings`; every
//!   component takes its own config (`tests/architecture.rs` checks it).
//! - [`error`]: the one [`error::Error`] type and the contract's error codes (their gRPC codes
//!   and HTTP statuses are in [`api::status`]).
//! - [`telemetry`]: structured logging set-up, and OTLP trace export when configured.
//! - [`layers`]: tower layers shared by both transports — auth, rate limits, size limits,
//!   timeouts, load shedding, access log, trace context. They classify requests with the route
//!   catalogue and mount no routes.
//! - [`workbench`]: a job's candidates, lineage and branches as the workbench shows them.
//! - [`metrics`]: process-wide Prometheus metrics (the registry; the edge serves it).
//! - [`net`]: IP networks (CIDR blocks), for `TRUSTED_PROXIES`.
//!
//! Top-level modules import each other without cycles (`tests/architecture.rs` reads `src/` and
//! fails on one): `domain` and `error` at the bottom; `store`, `provider`, `optimizer`,
//! `runtime`, `workbench` above them; `api`, `grpc`, `edge`, `layers`, `cli` at the transports;
//! `config` knows the components' config types; `server` wires them all.

pub mod api;
pub mod cli;
pub mod config;
pub mod domain;
pub mod edge;
pub mod error;
pub mod grpc;
pub mod layers;
pub mod metrics;
pub mod net;
pub mod optimizer;
pub mod provider;
pub mod runtime;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod workbench;
