//! The one end-to-end test binary: each module drives a real server.

mod browser;
mod outages;
mod pipeline;
mod rest;
mod ws;
