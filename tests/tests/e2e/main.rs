//! The one end-to-end test binary: each module drives a real server.

mod analytics;
mod browser;
mod callcenter;
mod cluster;
mod config;
mod faults;
mod hostile;
mod outages;
mod pipeline;
mod rest;
mod security;
mod seeder;
mod ws;
