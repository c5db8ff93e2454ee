//! The changes the hub orders: what a publisher hands in ([`Change`]), and the numbered,
//! pre-serialized form ([`SequencedChange`]) that every subscriber shares.

use std::fmt::Write as _;

use bytestring::ByteString;
use domain::record::rfc3339;
use domain::{Department, Extension, RecordId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::message::ServerMessage;

/// The state of the link to the PBX, as snapshots and `pbx_link` messages carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PbxLink {
    /// Whether the AMI connection is up (after the grace period the caller applies).
    pub connected: bool,
    /// Since when it has been in that state; `None` when it never was (a server that has not
    /// reached the PBX yet).
    #[serde(with = "rfc3339::option")]
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub since: Option<Timestamp>,
}

impl PbxLink {
    /// The link state of a server that has not reached the PBX yet.
    pub const fn unknown() -> Self {
        Self {
            connected: false,
            since: None,
        }
    }

    /// The link went up (`connected`) or down at `since`.
    pub const fn at(connected: bool, since: Timestamp) -> Self {
        Self {
            connected,
            since: Some(since),
        }
    }
}

/// One change to the board, as a publisher hands it to [`crate::Hub::publish`].
///
/// Extension records are complete: the hub's view takes them as they are (an upsert), so a
/// publisher sends the record as the store holds it after the write.
///
/// It serializes (as `{"kind":"status_updated","data":...}`) for the cluster's change log,
/// which carries changes between servers; that form is not the WebSocket wire format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Change {
    /// The PBX reported a new status for an extension (`extension_status_updated`).
    StatusUpdated(Extension),
    /// A user created an extension (`extension_created`).
    Created(Extension),
    /// A user edited an extension (`extension_updated`); it may have moved to another
    /// department.
    Updated(Extension),
    /// A user deleted an extension (`extension_deleted`). The department is the one it was in,
    /// so that subscribers filtered by that department hear of it.
    Deleted {
        /// The deleted record's id.
        id: RecordId,
        /// The department the record was in.
        department: Department,
    },
    /// The AMI link was lost or is back (`pbx_link`).
    PbxLink(PbxLink),
}

impl Change {
    /// The wire name of the message this change becomes, e.g. `extension_status_updated`.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::StatusUpdated(_) => "extension_status_updated",
            Change::Created(_) => "extension_created",
            Change::Updated(_) => "extension_updated",
            Change::Deleted { .. } => "extension_deleted",
            Change::PbxLink(_) => "pbx_link",
        }
    }

    /// The extension record this change carries, if any.
    pub fn record(&self) -> Option<&Extension> {
        match self {
            Change::StatusUpdated(e) | Change::Created(e) | Change::Updated(e) => Some(e),
            Change::Deleted { .. } | Change::PbxLink(_) => None,
        }
    }

    /// The id of the record the change is about; `None` for the PBX link.
    pub fn record_id(&self) -> Option<&RecordId> {
        match self {
            Change::StatusUpdated(e) | Change::Created(e) | Change::Updated(e) => Some(&e.id),
            Change::Deleted { id, .. } => Some(id),
            Change::PbxLink(_) => None,
        }
    }

    /// The department the change is about; `None` for changes every subscriber hears
    /// (the PBX link).
    pub fn department(&self) -> Option<&Department> {
        match self {
            Change::StatusUpdated(e) | Change::Created(e) | Change::Updated(e) => {
                Some(&e.department)
            }
            Change::Deleted { department, .. } => Some(department),
            Change::PbxLink(_) => None,
        }
    }
}

/// A change with its place in the history and its wire form, serialized once at publish time
/// and shared (behind an `Arc`) by every subscriber that delivers it.
///
/// It keeps what subscribers need (the number, the departments a filter looks at, the text)
/// and not the record itself: the ring holds many of these, and the text is the message.
#[derive(Debug)]
pub struct SequencedChange {
    seq: u64,
    /// The department the change is about; `None` for the PBX link, which everyone hears.
    department: Option<Department>,
    previous_department: Option<Department>,
    /// Shared bytes: a frame holding just this change is a reference-count increment.
    json: ByteString,
}

impl SequencedChange {
    /// Its sequence number: exactly one more than the change before it.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The department the extension was in before this change, when it was a different one
    /// (an edit that moved it, or a status update that raced with such an edit).
    pub fn previous_department(&self) -> Option<&Department> {
        self.previous_department.as_ref()
    }

    /// The JSON text of the message, e.g. `{"type":"extension_status_updated","seq":7,...}`,
    /// ready to be sent as a WebSocket text frame.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The same text as shared bytes: cloning it copies nothing.
    pub fn json_shared(&self) -> ByteString {
        self.json.clone()
    }

    /// The message as a value, read back from its text (the WebSocket layer sends
    /// [`Self::json`] instead).
    pub fn message(&self) -> ServerMessage {
        serde_json::from_str(&self.json)
            .expect("invariant: the hub's text is a message it serialized itself")
    }

    /// The length of the message's text, in bytes.
    pub fn text_len(&self) -> usize {
        self.json.len()
    }

    /// Whether a subscriber limited to `filter` must see this change: everyone sees link
    /// changes, and a department sees every change to an extension that is in it or was in it
    /// just before (so an extension moving away is seen leaving).
    pub fn concerns(&self, filter: Option<&Department>) -> bool {
        let Some(wanted) = filter else {
            return true;
        };
        match &self.department {
            None => true,
            Some(department) => {
                department == wanted || self.previous_department.as_ref() == Some(wanted)
            }
        }
    }
}

/// The part of a change's wire form that does not depend on its sequence number, built before
/// the hub's lock is taken so that the lock covers only a copy.
pub(crate) struct Encoded {
    /// `{"type":"<kind>","seq":` with room for the number and the tail.
    head: String,
    /// `,<the other members>}`.
    tail: String,
}

/// The most digits a `u64` prints as.
const SEQ_DIGITS: usize = 20;

impl Encoded {
    /// Serializes everything of `change` but its sequence number.
    pub(crate) fn new(change: &Change) -> Self {
        let tail = match change {
            Change::StatusUpdated(e) | Change::Created(e) | Change::Updated(e) => {
                member_tail("extension", e)
            }
            Change::Deleted { id, .. } => member_tail("_id", id),
            Change::PbxLink(link) => {
                // `PbxLink` serializes as `{"connected":..,"since":..}`; its members become the
                // message's own members.
                let object = to_json(link);
                let mut tail = String::with_capacity(object.len());
                tail.push(',');
                tail.push_str(object.get(1..).unwrap_or_default());
                tail
            }
        };
        let kind = change.kind();
        let mut head = String::with_capacity(24 + kind.len() + SEQ_DIGITS + tail.len());
        head.push_str(r#"{"type":""#);
        head.push_str(kind);
        head.push_str(r#"","seq":"#);
        Self { head, tail }
    }

    /// Completes the wire form with `seq`. The capacity was reserved up front, so this copies
    /// and does not allocate.
    fn finish(&mut self, seq: u64) -> String {
        let mut json = std::mem::take(&mut self.head);
        // Writing to a String cannot fail.
        let _ = write!(json, "{seq}");
        json.push_str(&self.tail);
        json
    }

    /// Builds the shared change; called under the hub's lock, where `seq` is assigned.
    /// `department` is the change's own ([`Change::department`]).
    pub(crate) fn seal(
        &mut self,
        seq: u64,
        department: Option<Department>,
        previous_department: Option<Department>,
    ) -> SequencedChange {
        SequencedChange {
            seq,
            department,
            previous_department,
            json: ByteString::from(self.finish(seq)),
        }
    }
}

/// `,"<name>":<value as JSON>}`.
fn member_tail<T: Serialize>(name: &str, value: &T) -> String {
    let value = to_json(value);
    let mut tail = String::with_capacity(value.len() + name.len() + 5);
    tail.push_str(",\"");
    tail.push_str(name);
    tail.push_str("\":");
    tail.push_str(&value);
    tail.push('}');
    tail
}

/// Serializes one of the hub's own types to JSON.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    // The types serialized here have string keys and infallible `Serialize` impls, the only
    // ways serde_json can fail.
    serde_json::to_string(value).expect("invariant: hub messages always serialize to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{AgentName, ExtensionNumber, NewExtension};

    fn record(dept: &str) -> Extension {
        Extension::create(
            RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id"),
            NewExtension {
                extension: ExtensionNumber::parse("1001").expect("ext"),
                agent_name: AgentName::parse("Zoë \"Z\" Müller").expect("name"),
                department: Department::parse(dept).expect("dept"),
                is_active: true,
            },
            "2026-11-30T12:00:00.123Z".parse().expect("time"),
        )
    }

    fn sealed(seq: u64, change: Change, previous: Option<&str>) -> SequencedChange {
        Encoded::new(&change).seal(
            seq,
            change.department().cloned(),
            previous.map(|d| Department::parse(d).expect("dept")),
        )
    }

    /// The message `change` becomes under `seq`, built from the change itself.
    fn expected(seq: u64, change: &Change) -> ServerMessage {
        match change.clone() {
            Change::StatusUpdated(extension) => {
                ServerMessage::ExtensionStatusUpdated { seq, extension }
            }
            Change::Created(extension) => ServerMessage::ExtensionCreated { seq, extension },
            Change::Updated(extension) => ServerMessage::ExtensionUpdated { seq, extension },
            Change::Deleted { id, .. } => ServerMessage::ExtensionDeleted { seq, id },
            Change::PbxLink(link) => ServerMessage::PbxLink {
                seq,
                connected: link.connected,
                since: link.since,
            },
        }
    }

    /// One change of every kind (the link up, down and unknown).
    fn every_kind() -> [Change; 7] {
        let at = "2026-11-30T12:51:37.123Z".parse().expect("time");
        [
            Change::StatusUpdated(record("Sales")),
            Change::Created(record("Sales")),
            Change::Updated(record("Support")),
            Change::Deleted {
                id: RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id"),
                department: Department::parse("Sales").expect("dept"),
            },
            Change::PbxLink(PbxLink::at(false, at)),
            Change::PbxLink(PbxLink::at(true, at)),
            Change::PbxLink(PbxLink::unknown()),
        ]
    }

    /// The hand-assembled wire form must be byte for byte what serde makes of the message, and
    /// must read back as the same message.
    #[test]
    fn wire_form_matches_the_serde_types() {
        for (i, change) in every_kind().into_iter().enumerate() {
            for seq in [0, 7, u64::MAX] {
                let kind = change.kind();
                let sc = sealed(seq, change.clone(), None);
                let message = expected(seq, &change);
                assert_eq!(sc.json(), to_json(&message), "row {i}");
                assert_eq!(sc.message(), message, "row {i}");
                assert_eq!(sc.text_len(), sc.json().len());
                let back: ServerMessage = serde_json::from_str(sc.json()).expect("parse");
                assert_eq!(back, message, "row {i}");
                assert_eq!(back.seq(), seq);
                let value: serde_json::Value = serde_json::from_str(sc.json()).expect("value");
                assert_eq!(value["type"], kind, "row {i}");
            }
        }
    }

    #[test]
    fn exact_text_of_small_messages() {
        let at = "2026-11-30T12:51:37.123Z".parse().expect("time");
        let rows = [
            (
                Change::PbxLink(PbxLink::at(false, at)),
                r#"{"type":"pbx_link","seq":42,"connected":false,"since":"2026-11-30T12:51:37.123Z"}"#,
            ),
            (
                Change::Deleted {
                    id: RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id"),
                    department: Department::parse("Sales").expect("dept"),
                },
                r#"{"type":"extension_deleted","seq":42,"_id":"65a1b2c3d4e5f60718293a4b"}"#,
            ),
        ];
        for (change, want) in rows {
            assert_eq!(sealed(42, change, None).json(), want);
        }
    }

    #[test]
    fn department_filters() {
        let sales = Department::parse("Sales").expect("dept");
        let support = Department::parse("Support").expect("dept");
        let billing = Department::parse("Billing").expect("dept");
        let link = PbxLink::unknown();
        // (change, previous department, filter, seen)
        let rows: Vec<(Change, Option<&str>, Option<&Department>, bool)> = vec![
            (Change::StatusUpdated(record("Sales")), None, None, true),
            (
                Change::StatusUpdated(record("Sales")),
                None,
                Some(&sales),
                true,
            ),
            (
                Change::StatusUpdated(record("Sales")),
                None,
                Some(&support),
                false,
            ),
            // A move from Sales to Support is seen by both, and by no one else.
            (
                Change::Updated(record("Support")),
                Some("Sales"),
                Some(&sales),
                true,
            ),
            (
                Change::Updated(record("Support")),
                Some("Sales"),
                Some(&support),
                true,
            ),
            (
                Change::Updated(record("Support")),
                Some("Sales"),
                Some(&billing),
                false,
            ),
            (
                Change::Deleted {
                    id: RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id"),
                    department: sales.clone(),
                },
                None,
                Some(&sales),
                true,
            ),
            (
                Change::Deleted {
                    id: RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id"),
                    department: sales.clone(),
                },
                None,
                Some(&support),
                false,
            ),
            (Change::PbxLink(link.clone()), None, Some(&billing), true),
            (Change::PbxLink(link), None, None, true),
        ];
        for (i, (change, previous, filter, want)) in rows.into_iter().enumerate() {
            assert_eq!(
                sealed(1, change, previous).concerns(filter),
                want,
                "row {i}"
            );
        }
    }

    /// The change log's form reads back as the same change, for every kind.
    #[test]
    fn changes_round_trip_through_their_log_form() {
        let at = "2026-11-30T12:51:37.123Z".parse().expect("time");
        for change in every_kind() {
            let text = serde_json::to_string(&change).expect("serialize");
            let back: Change = serde_json::from_str(&text).expect("parse");
            assert_eq!(back, change, "{text}");
        }
        let text = serde_json::to_string(&Change::PbxLink(PbxLink::at(true, at))).expect("json");
        assert_eq!(
            text,
            r#"{"kind":"pbx_link","data":{"connected":true,"since":"2026-11-30T12:51:37.123Z"}}"#
        );
    }
}
