//! The one end-to-end test binary: each module drives a real server.

mod browser;
mod hostile;
mod pipeline;
mod rest;
mod security;
mod ws;
