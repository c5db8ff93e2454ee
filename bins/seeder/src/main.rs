//! seeder binary.

fn main() {}
