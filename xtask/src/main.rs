//! xtask: placeholder.

fn main() {}
