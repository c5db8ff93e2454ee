//! A built-in AMI simulator speaking the formats of the real Asterisk captures (owned by the simulator work).
