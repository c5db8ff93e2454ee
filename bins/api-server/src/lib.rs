//! api-server library: composes `ami-proto`, `domain`, `store` and `hub` into the extstatus
//! server (REST, WebSocket, AMI ingest, health, metrics, dashboard). The binary `main.rs` is a
//! thin wrapper around it, so end-to-end tests can start a server on port 0.

pub mod dashboard;
pub mod sim;
