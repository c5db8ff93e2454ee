//! The extension record, exactly as the interface (`docs/api.md`) names its fields, and the time format
//! it is written in.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::agent::{AgentPresence, CallInfo, QueueMembership};
use crate::change::StatusWrite;
use crate::edit::{ExtensionPatch, NewExtension};
use crate::fields::{AgentName, Department, ExtensionNumber, RecordId};
use crate::status::{DeviceState, ExtensionState, Presence};

/// A point in time as the records hold it: UTC, truncated to whole milliseconds so that it
/// survives a round trip through BSON dates and JSON unchanged.
pub type Timestamp = DateTime<Utc>;

/// The current time, truncated to milliseconds.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(3)
}

/// Truncates a time to the milliseconds records hold.
pub fn truncate(at: Timestamp) -> Timestamp {
    at.trunc_subsecs(3)
}

/// RFC 3339 in UTC with milliseconds and a `Z`, e.g. `2026-11-30T12:51:37.123Z`.
pub fn format_rfc3339(at: &Timestamp) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Serde helpers that write [`Timestamp`]s as [`format_rfc3339`] does.
pub mod rfc3339 {
    use super::{Timestamp, format_rfc3339};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes a timestamp.
    pub fn serialize<S: Serializer>(at: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(at))
    }

    /// Reads any RFC 3339 timestamp and converts it to UTC.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| serde::de::Error::custom(format!("not an RFC 3339 time {s:?}: {e}")))
    }

    /// The same for optional timestamps (`null` when absent).
    pub mod option {
        use super::super::{Timestamp, format_rfc3339};
        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes an optional timestamp.
        pub fn serialize<S: Serializer>(at: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => s.serialize_str(&format_rfc3339(at)),
                None => s.serialize_none(),
            }
        }

        /// Reads an optional RFC 3339 timestamp.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            let s = Option::<String>::deserialize(d)?;
            s.map(|s| {
                chrono::DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|e| {
                        serde::de::Error::custom(format!("not an RFC 3339 time {s:?}: {e}"))
                    })
            })
            .transpose()
        }
    }
}

/// One extension: who sits at it (user fields) and what its phone is doing (AMI fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Extension {
    /// The store's id.
    #[serde(rename = "_id")]
    pub id: RecordId,
    /// The extension number; unique and immutable after creation.
    pub extension: ExtensionNumber,
    /// The agent's display name.
    pub agent_name: AgentName,
    /// The agent's department.
    pub department: Department,
    /// The raw Asterisk extension state (see [`ExtensionState`]).
    pub status_code: i32,
    /// The device state derived from `status_code`.
    pub device_state: DeviceState,
    /// Online, offline or unknown, derived from `status_code`.
    pub status: Presence,
    /// When `status_code` last really changed.
    #[serde(with = "rfc3339::option")]
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub last_status_change: Option<Timestamp>,
    /// When the PBX last reported on this extension.
    #[serde(with = "rfc3339::option")]
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub last_seen: Option<Timestamp>,
    /// The queues the agent is a member of (`[]` when none), from the PBX only. Absent from
    /// records written before call-center state existed, hence the default.
    #[serde(default)]
    pub queues: Vec<QueueMembership>,
    /// The agent's presence; null when no presence provider is hinted. From the PBX only.
    /// Boxed, like `call`, so that a record without call-center state stays small.
    #[serde(default)]
    pub presence: Option<Box<AgentPresence>>,
    /// The call the agent is being rung for or is talking on; null when none. From the PBX
    /// only.
    #[serde(default)]
    pub call: Option<Box<CallInfo>>,
    /// Whether the extension is in service; inactive ones stay listed but are not expected to
    /// be staffed.
    pub is_active: bool,
    /// When the record was created.
    #[serde(rename = "createdAt", with = "rfc3339")]
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub created_at: Timestamp,
    /// When a user last edited the record (status changes do not count).
    #[serde(rename = "updatedAt", with = "rfc3339")]
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub updated_at: Timestamp,
}

impl Extension {
    /// Builds a fresh record from a user's creation request: status unknown until the PBX
    /// reports.
    pub fn create(id: RecordId, new: NewExtension, at: Timestamp) -> Self {
        let at = truncate(at);
        let initial = ExtensionState::INITIAL;
        Self {
            id,
            extension: new.extension,
            agent_name: new.agent_name,
            department: new.department,
            status_code: initial.code(),
            device_state: initial.device_state(),
            status: initial.presence(),
            last_status_change: None,
            last_seen: None,
            queues: Vec::new(),
            presence: None,
            call: None,
            is_active: new.is_active,
            created_at: at,
            updated_at: at,
        }
    }

    /// The status fields the change function looks at.
    pub fn status_view(&self) -> StatusView {
        StatusView {
            status_code: self.status_code,
            last_status_change: self.last_status_change,
            last_seen: self.last_seen,
        }
    }

    /// Applies a user edit. Returns whether anything changed; `updatedAt` moves only then.
    pub fn apply_patch(&mut self, patch: &ExtensionPatch, at: Timestamp) -> bool {
        let mut changed = false;
        if let Some(name) = &patch.agent_name {
            changed |= *name != self.agent_name;
            self.agent_name = name.clone();
        }
        if let Some(dept) = &patch.department {
            changed |= *dept != self.department;
            self.department = dept.clone();
        }
        if let Some(active) = patch.is_active {
            changed |= active != self.is_active;
            self.is_active = active;
        }
        if changed {
            self.updated_at = truncate(at);
        }
        changed
    }

    /// Applies a write decided by [`crate::change::decide`].
    pub fn apply_status(&mut self, write: &StatusWrite) {
        if let Some(change) = &write.change {
            self.status_code = change.status_code;
            self.device_state = change.device_state;
            self.status = change.status;
            self.last_status_change = Some(change.at);
        }
        if let Some(seen) = write.last_seen {
            self.last_seen = Some(seen);
        }
    }
}

/// The part of a record that decides whether an observation changes anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusView {
    /// The stored raw code.
    pub status_code: i32,
    /// When it last changed.
    pub last_status_change: Option<Timestamp>,
    /// When the PBX last reported.
    pub last_seen: Option<Timestamp>,
}

/// One entry of the status history: the code of `extension` went from `previous_code` to
/// `new_code` at `at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusHistoryEntry {
    /// The extension number.
    pub extension: ExtensionNumber,
    /// The code before.
    pub previous_code: i32,
    /// The code after.
    pub new_code: i32,
    /// When it changed.
    #[serde(with = "rfc3339")]
    pub at: Timestamp,
}

/// What a list query may filter on. Every given condition must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtensionFilter {
    /// Only this department (exact match).
    pub department: Option<Department>,
    /// Only this presence.
    pub status: Option<Presence>,
    /// Only active, or only inactive, extensions.
    pub is_active: Option<bool>,
}

impl ExtensionFilter {
    /// Whether `record` passes the filter.
    pub fn matches(&self, record: &Extension) -> bool {
        self.department
            .as_ref()
            .is_none_or(|d| *d == record.department)
            && self.status.is_none_or(|s| s == record.status)
            && self.is_active.is_none_or(|a| a == record.is_active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Extension {
        let at = "2026-11-30T12:00:00.123456Z"
            .parse::<Timestamp>()
            .expect("time");
        Extension::create(
            RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id"),
            NewExtension {
                extension: ExtensionNumber::parse("1001").expect("ext"),
                agent_name: AgentName::parse("Alice").expect("name"),
                department: Department::parse("Sales").expect("dept"),
                is_active: true,
            },
            at,
        )
    }

    #[test]
    fn json_field_names_match_the_interface() {
        let json = serde_json::to_value(sample()).expect("serialize");
        let expected = serde_json::json!({
            "_id": "65a1b2c3d4e5f60718293a4b",
            "extension": "1001",
            "agent_name": "Alice",
            "department": "Sales",
            "status_code": -1,
            "device_state": "UNKNOWN",
            "status": "unknown",
            "last_status_change": null,
            "last_seen": null,
            "queues": [],
            "presence": null,
            "call": null,
            "is_active": true,
            "createdAt": "2026-11-30T12:00:00.123Z",
            "updatedAt": "2026-11-30T12:00:00.123Z",
        });
        assert_eq!(json, expected);
        let back: Extension = serde_json::from_value(json).expect("parse");
        assert_eq!(back, sample());
    }

    #[test]
    fn records_written_before_call_center_state_read_with_defaults() {
        let mut json = serde_json::to_value(sample()).expect("serialize");
        let obj = json.as_object_mut().expect("object");
        for field in ["queues", "presence", "call"] {
            assert!(obj.remove(field).is_some(), "{field}");
        }
        let back: Extension = serde_json::from_value(json).expect("parse");
        assert_eq!(back, sample());
        assert!(back.queues.is_empty() && back.presence.is_none() && back.call.is_none());
    }

    #[test]
    fn patches_move_updated_at_only_on_change() {
        let mut rec = sample();
        let later = rec.updated_at + chrono::Duration::seconds(5);
        let same = ExtensionPatch {
            agent_name: Some(AgentName::parse("Alice").expect("name")),
            ..ExtensionPatch::default()
        };
        assert!(!rec.apply_patch(&same, later));
        assert_eq!(rec.updated_at, rec.created_at);
        let rename = ExtensionPatch {
            department: Some(Department::parse("Support").expect("dept")),
            is_active: Some(false),
            ..ExtensionPatch::default()
        };
        assert!(rec.apply_patch(&rename, later));
        assert_eq!(rec.updated_at, later);
        assert_eq!(rec.department.as_str(), "Support");
        assert!(!rec.is_active);
    }

    #[test]
    fn filters() {
        let rec = sample();
        let rows = [
            (ExtensionFilter::default(), true),
            (
                ExtensionFilter {
                    department: Some(Department::parse("Sales").expect("d")),
                    ..Default::default()
                },
                true,
            ),
            (
                ExtensionFilter {
                    department: Some(Department::parse("Support").expect("d")),
                    ..Default::default()
                },
                false,
            ),
            (
                ExtensionFilter {
                    status: Some(Presence::Unknown),
                    is_active: Some(true),
                    ..Default::default()
                },
                true,
            ),
            (
                ExtensionFilter {
                    status: Some(Presence::Online),
                    ..Default::default()
                },
                false,
            ),
        ];
        for (filter, want) in rows {
            assert_eq!(filter.matches(&rec), want, "{filter:?}");
        }
    }
}
