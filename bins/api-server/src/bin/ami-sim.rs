//! `ami-sim`: the AMI simulator as its own binary, for demos and load tests.

fn main() {}
