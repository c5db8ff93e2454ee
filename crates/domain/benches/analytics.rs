//! Criterion benchmark of `domain::time_in_state` (filled in below).
fn main() {}
