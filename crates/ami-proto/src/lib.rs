//! `ami-proto`: the Asterisk Manager Interface (AMI) protocol for extstatus.
//!
//! What this crate owns:
//!
//! * the framer ([`Decoder`]): bytes in, [`Frame`]s out, with no IO. It finds packet boundaries
//!   (blank line, or `--END COMMAND--` for the legacy `Response: Follows` form), accepts CRLF and
//!   bare LF, skips blank lines between packets, recognises the banner on the first line, caps
//!   packet size without losing sync, and reports every error with its byte offset;
//! * the nom parser for banner and `Key: Value` lines (private: nom never appears in the API);
//! * the raw [`Packet`] (ordered headers, duplicates kept, case-insensitive lookup, lossless
//!   bytes with a text view that reads invalid UTF-8 as Windows-1252, [`text`]) and typed views over it ([`views`], and [`callcenter`] for
//!   queues, presence and channels);
//! * the action encoder ([`Action`]), which refuses header injection, and MD5 login keys;
//! * behind the `tokio` feature, the [`client`]: connect, login, ActionID correlation, event
//!   lists, keepalive, reconnect with backoff, and wire-order sequence numbers;
//! * the `ami-dump` tool (`src/bin/ami-dump.rs`).
//!
//! What it deliberately does not do: it knows nothing about extensions, departments, stores or
//! HTTP (that is `domain` and `api-server`); it does not map extension states to the board's
//! online/offline status; it does not decide when to resync (it only says when a connection was
//! re-established); it never reads configuration or installs a tracing subscriber; it does not
//! speak the HTTP variants of AMI (`/rawman`, `/mxml`) or TLS.

pub mod callcenter;
mod encode;
mod error;
mod frame;
mod packet;
mod parse;
mod scan;
#[cfg(test)]
mod stream_tests;
pub mod text;
pub mod views;

#[cfg(feature = "tokio")]
pub mod client;

pub use callcenter::CallCenterEvent;
pub use encode::{Action, Secret, md5_key};
pub use error::{DecodeError, EncodeError, ViewError};
pub use frame::{Banner, DEFAULT_MAX_PACKET_SIZE, Decoder, Frame};
pub use packet::{Header, Headers, Kind, Packet};
