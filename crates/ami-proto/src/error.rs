//! Error types of the protocol core: decoding, encoding and typed views.
//!
//! Every decoding error carries the absolute byte offset in the stream, counted from the first
//! byte the decoder was ever given, so a message can point at the exact spot in a capture.

/// Why bytes could not be turned into packets.
///
/// After any of these the decoder is still in sync: it has skipped the bad packet and the next
/// call to `decode` starts at the following packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A packet grew beyond the configured size cap.
    #[error("packet starting at byte {offset} exceeds the size cap of {limit} bytes")]
    PacketTooLarge {
        /// Stream offset of the first byte of the oversized packet.
        offset: u64,
        /// The cap that was exceeded.
        limit: usize,
    },
    /// A line inside a packet has no colon, so it is not a `Key: Value` header.
    #[error(
        "malformed header line at byte {offset} (no colon) in packet starting at byte {packet_offset}"
    )]
    MalformedLine {
        /// Stream offset of the first byte of the offending line.
        offset: u64,
        /// Stream offset of the first byte of the packet that holds it.
        packet_offset: u64,
    },
    /// The stream ended inside a packet (no closing blank line).
    #[error("stream ended inside a packet starting at byte {offset}")]
    Truncated {
        /// Stream offset of the first byte of the unfinished packet.
        offset: u64,
    },
}

impl DecodeError {
    /// The stream offset the error points at (the bad line, or the start of the bad packet).
    pub fn offset(&self) -> u64 {
        match self {
            DecodeError::PacketTooLarge { offset, .. }
            | DecodeError::MalformedLine { offset, .. }
            | DecodeError::Truncated { offset } => *offset,
        }
    }

    /// True when the stream itself is broken rather than one packet in it: after a truncated
    /// stream nothing more can follow.
    pub fn is_end_of_stream(&self) -> bool {
        matches!(self, DecodeError::Truncated { .. })
    }
}

/// Why an action could not be encoded.
///
/// Values are never included in the message, because a value may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The action name is empty.
    #[error("the action name is empty")]
    EmptyActionName,
    /// The action name contains CR or LF, which would inject headers.
    #[error("the action name contains a line break")]
    LineBreakInActionName,
    /// A header key is empty.
    #[error("header #{index} has an empty key")]
    EmptyKey {
        /// Position of the header in the action (0 = first header after `Action`).
        index: usize,
    },
    /// A header key contains CR, LF or a colon.
    #[error("header key {key:?} contains a line break or a colon")]
    InvalidKey {
        /// The offending key, as given.
        key: String,
    },
    /// A header value contains CR or LF, which would inject headers or end the action early.
    #[error("the value of header {key:?} contains a line break")]
    LineBreakInValue {
        /// The key whose value is at fault.
        key: String,
    },
    /// The action already has an `ActionID` header and the caller asked to add another one.
    #[error("the action already carries an ActionID header")]
    DuplicateActionId,
}

/// Why a typed view could not be built from a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// The packet is not the kind of message the view describes.
    #[error("packet is not a {expected}")]
    WrongMessage {
        /// What the view expected, e.g. `ExtensionStatus event`.
        expected: &'static str,
    },
    /// A header the view needs is missing.
    #[error("header {header} is missing")]
    MissingHeader {
        /// The missing header name.
        header: &'static str,
    },
    /// A header that must hold a number does not.
    #[error("header {header} is not a number: {value:?}")]
    InvalidNumber {
        /// The header name.
        header: &'static str,
        /// The value as received (lossy UTF-8).
        value: String,
    },
}
