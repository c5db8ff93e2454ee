//! A scriptable loopback AMI peer built from the real Asterisk 20.20.1 captures.
