//! End-to-end tests: ws.
