//! End-to-end test harness crate.
