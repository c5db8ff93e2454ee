//! Unit tests of the sans-IO session.
