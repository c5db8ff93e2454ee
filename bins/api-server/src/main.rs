//! api-server binary: thin main.

fn main() {}
