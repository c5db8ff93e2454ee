//! `hub`: placeholder root; the issue that owns this crate fills it.
