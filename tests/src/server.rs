//! Spawning an api-server on port 0 with a temporary store, and REST/WebSocket clients.
