//! The one end-to-end test binary: each module drives a real server.

mod analytics;
mod browser;
mod faults;
mod callcenter;
mod pipeline;
mod rest;
mod ws;
