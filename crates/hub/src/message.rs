//! The server-to-client messages of `GET /ws` as serde types, the snapshot a stream starts
//! with, and the frames several messages are packed into.

use std::sync::Arc;

use bytestring::ByteString;
use domain::record::rfc3339;
use domain::{Extension, RecordId, Timestamp};
use serde::ser::SerializeStruct as _;
use serde::{Deserialize, Serialize, Serializer};

use crate::change::{PbxLink, SequencedChange, to_json};

/// One message of the WebSocket stream, exactly as `docs/api.md` describes it.
///
/// The hub sends pre-serialized text ([`SequencedChange::json`], [`Snapshot::to_json`]); this
/// type exists so that clients and tests can read the stream, and it serializes to the same
/// text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The whole (filtered) board at `seq`; the first message of a stream, and what a
    /// subscriber that fell behind is cut over to.
    Snapshot {
        /// The sequence number of the last change the snapshot includes.
        seq: u64,
        /// The records, ordered by extension number.
        extensions: Vec<Extension>,
        /// The PBX link at `seq`.
        pbx_link: PbxLink,
    },
    /// The PBX reported a new status.
    ExtensionStatusUpdated {
        /// This change's sequence number.
        seq: u64,
        /// The record after the change.
        extension: Extension,
    },
    /// A user created an extension.
    ExtensionCreated {
        /// This change's sequence number.
        seq: u64,
        /// The new record.
        extension: Extension,
    },
    /// A user edited an extension. A client filtered by department drops the record when its
    /// department is no longer the one it watches.
    ExtensionUpdated {
        /// This change's sequence number.
        seq: u64,
        /// The record after the edit.
        extension: Extension,
    },
    /// A user deleted an extension.
    ExtensionDeleted {
        /// This change's sequence number.
        seq: u64,
        /// The deleted record's id.
        #[serde(rename = "_id")]
        id: RecordId,
    },
    /// The AMI link was lost or is back.
    PbxLink {
        /// This change's sequence number.
        seq: u64,
        /// Whether the link is up.
        connected: bool,
        /// Since when.
        #[serde(with = "rfc3339::option")]
        #[cfg_attr(feature = "ts", ts(type = "string | null"))]
        since: Option<Timestamp>,
    },
}

impl ServerMessage {
    /// The message's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            ServerMessage::Snapshot { seq, .. }
            | ServerMessage::ExtensionStatusUpdated { seq, .. }
            | ServerMessage::ExtensionCreated { seq, .. }
            | ServerMessage::ExtensionUpdated { seq, .. }
            | ServerMessage::ExtensionDeleted { seq, .. }
            | ServerMessage::PbxLink { seq, .. } => *seq,
        }
    }

    /// Reads one text frame: a single message, or several in a JSON array.
    pub fn parse_frame(text: &str) -> Result<Vec<ServerMessage>, serde_json::Error> {
        if text.trim_start().starts_with('[') {
            serde_json::from_str(text)
        } else {
            serde_json::from_str(text).map(|one| vec![one])
        }
    }
}

/// The board as it was after change `seq`: what a subscription starts from.
///
/// The records are shared with the hub's view, so taking a snapshot copies pointers, not
/// records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The sequence number of the last change included; the stream goes on with `seq + 1`.
    pub seq: u64,
    /// The records (only the filtered department's, for a filtered subscription), ordered by
    /// extension number as [`domain::ExtensionNumber`] orders them (by value, so `200` comes
    /// before `1001`).
    pub extensions: Vec<Arc<Extension>>,
    /// The PBX link at `seq`.
    pub pbx_link: PbxLink,
}

impl Snapshot {
    /// Orders the records the way [`Snapshot::extensions`] promises.
    pub(crate) fn sort(&mut self) {
        // One key per record, computed once: the records sit behind pointers, and comparing
        // them in place would chase those pointers on every comparison.
        self.extensions
            .sort_by_cached_key(|e| e.extension.order_key());
    }

    /// The snapshot message's JSON text,
    /// `{"type":"snapshot","seq":N,"extensions":[...],"pbx_link":{...}}`.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// The snapshot as a message value (copies the records).
    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::Snapshot {
            seq: self.seq,
            extensions: self.extensions.iter().map(|e| (**e).clone()).collect(),
            pbx_link: self.pbx_link.clone(),
        }
    }
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The records, serialized straight from behind their `Arc`s.
        struct Records<'a>(&'a [Arc<Extension>]);

        impl Serialize for Records<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().map(|e| &**e))
            }
        }

        let mut s = serializer.serialize_struct("Snapshot", 4)?;
        s.serialize_field("type", "snapshot")?;
        s.serialize_field("seq", &self.seq)?;
        s.serialize_field("extensions", &Records(&self.extensions))?;
        s.serialize_field("pbx_link", &self.pbx_link)?;
        s.end()
    }
}

/// One text frame for a batch of changes: the message itself when there is one (its shared
/// text, not a copy), otherwise a JSON array of them in sequence order, as the interface allows
/// under load. Each message's text is copied, never serialized again.
/// [`crate::Subscription::frame`] also shares an array among subscribers at the same cursor.
pub fn render_frame(changes: &[Arc<SequencedChange>]) -> ByteString {
    match changes {
        [one] => one.json_shared(),
        many => {
            let len = many.iter().map(|c| c.json().len() + 1).sum::<usize>() + 1;
            let mut frame = String::with_capacity(len);
            frame.push('[');
            for (i, change) in many.iter().enumerate() {
                if i > 0 {
                    frame.push(',');
                }
                frame.push_str(change.json());
            }
            frame.push(']');
            ByteString::from(frame)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Change, Encoded};
    use domain::{AgentName, Department, ExtensionNumber, NewExtension};

    fn record(id: u8, number: &str) -> Arc<Extension> {
        Arc::new(Extension::create(
            RecordId::from_bytes([id; 12]),
            NewExtension {
                extension: ExtensionNumber::parse(number).expect("ext"),
                agent_name: AgentName::parse("Agent").expect("name"),
                department: Department::parse("Sales").expect("dept"),
                is_active: true,
            },
            "2026-11-30T12:00:00Z".parse().expect("time"),
        ))
    }

    #[test]
    fn snapshot_json_matches_the_message_and_is_ordered() {
        let mut snapshot = Snapshot {
            seq: 9,
            extensions: vec![record(1, "1001"), record(2, "200"), record(3, "0999")],
            pbx_link: PbxLink::at(true, "2026-11-30T12:00:01Z".parse().expect("time")),
        };
        snapshot.sort();
        let numbers: Vec<&str> = snapshot
            .extensions
            .iter()
            .map(|e| e.extension.as_str())
            .collect();
        assert_eq!(numbers, ["200", "0999", "1001"]);
        let json = snapshot.to_json();
        assert!(json.starts_with(r#"{"type":"snapshot","seq":9,"extensions":[{"#));
        assert!(
            json.ends_with(r#""pbx_link":{"connected":true,"since":"2026-11-30T12:00:01.000Z"}}"#)
        );
        assert_eq!(json, to_json(&snapshot.to_message()));
        let back = ServerMessage::parse_frame(&json).expect("parse");
        assert_eq!(back, [snapshot.to_message()]);
    }

    #[test]
    fn snapshot_without_a_link_time_says_null() {
        let snapshot = Snapshot {
            seq: 0,
            extensions: Vec::new(),
            pbx_link: PbxLink::unknown(),
        };
        assert_eq!(
            snapshot.to_json(),
            r#"{"type":"snapshot","seq":0,"extensions":[],"pbx_link":{"connected":false,"since":null}}"#
        );
    }

    #[test]
    fn frames() {
        let sealed = |seq: u64| {
            let change = Change::PbxLink(PbxLink::unknown());
            Arc::new(Encoded::new(&change).seal(seq, change.department().cloned(), None))
        };
        let one = [sealed(1)];
        assert_eq!(render_frame(&one), one[0].json());
        let three = [sealed(1), sealed(2), sealed(3)];
        let frame = render_frame(&three);
        assert!(frame.starts_with('[') && frame.ends_with(']'));
        let messages = ServerMessage::parse_frame(&frame).expect("parse");
        let seqs: Vec<u64> = messages.iter().map(ServerMessage::seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(
            ServerMessage::parse_frame(&render_frame(&one))
                .expect("parse")
                .len(),
            1
        );
        assert!(ServerMessage::parse_frame(r#"{"type":"nonsense","seq":1}"#).is_err());
    }
}
