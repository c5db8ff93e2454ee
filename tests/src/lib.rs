//! End-to-end harness: start a real api-server on port 0 with a temporary embedded store, an
//! AMI peer (the `ami-sim` simulated PBX, which speaks the real captures' bytes) on loopback,
//! and clients for REST and WebSocket.
//!
//! It deliberately contains no assertions of its own; the test binary in `tests/e2e` does.

pub mod ami_peer;
pub mod process;
pub mod server;
