//! api-server library: composes `ami-proto`, `domain`, `store` and `hub` into the extstatus
//! server (REST, WebSocket, AMI ingest, health, metrics, dashboard); `--demo` runs the
//! simulated PBX of the `ami-sim` crate. The binary `main.rs` is a
//! thin wrapper around it, so end-to-end tests can start a server on port 0.
//!
//! Start with [`app::start`] (or [`app::run`]) and a resolved [`config::Config`].
//!
//! The library deliberately does not read the process environment or files, parse the command
//! line, install a tracing subscriber or handle signals: the binary does, and passes in a
//! bound listener and a shutdown token. It decides no status itself (that is
//! `domain::decide`) and keeps no records of its own (that is `store`; the hub's view is a
//! copy for subscribers).

pub mod analytics;
pub mod app;
pub mod auth;
pub mod callcenter;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod rest;
pub mod security;
pub mod state;
pub mod writer;
pub mod ws;
mod ws_limit;
mod ws_send;

pub use app::{RunningServer, ServerError, run, start};
pub use config::{Args, Config};
pub use state::AppState;
