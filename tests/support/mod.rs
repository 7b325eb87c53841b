//! The one test-support module, `mod support;` in each integration test: harnesses that run
//! the real server on 127.0.0.1:0 and talk to it with real clients.
//!
//! - [`grpc`]: a gRPC core with tonic clients and a controllable optimizer (`Ticker`).
//! - [`edge`]: a core + edge whose jobs wait on a gate the test opens, a probe around the
//!   in-process upstream, and a raw SSE reader that keeps the exact bytes.
//! - [`layers`]: a log capture and a core whose jobs run until cancelled.
//! - [`contract`]: the whole server (`server::run`) with the settings a test asks for, and a
//!   client of its edge.
//! - [`fake_llm`]: a fake OpenAI-compatible provider with injectable faults.
//! - [`gepa`]: GEPA requests over the fake's examples, their results, waits over events.
//! - [`postgres`]: a fresh PostgreSQL schema per test.
//! - [`process`]: the real binary as a process (`innerloop serve`), started, stopped, killed.
//!
//! Each test binary uses part of this; the rest is dead code there.
#![allow(dead_code)]

pub mod contract;
pub mod edge;
pub mod fake_llm;
pub mod gepa;
pub mod grpc;
pub mod layers;
pub mod postgres;
pub mod process;
