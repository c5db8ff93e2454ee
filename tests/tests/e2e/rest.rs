//! End-to-end tests: rest.
