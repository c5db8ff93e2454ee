//! The call-center fields of a record (`queues`, `presence`, `call`), exactly as
//! `shared/interfaces.md` names them, and the validated pause reason a user may send.
//!
//! These fields are soft state set only from the PBX, like the status fields: the user-edit
//! types cannot carry them, and after every AMI (re)connect the PBX's lists are the truth
//! (see [`crate::callcenter`]).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::fields::{FieldError, Rule};
use crate::record::{Timestamp, rfc3339};

/// One queue the agent is a member of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct QueueMembership {
    /// The queue's name, e.g. `sales`.
    pub queue: String,
    /// Whether the agent is paused in this queue.
    pub paused: bool,
    /// Why, as the PBX reports it (`PausedReason`); null when not paused or no reason given.
    pub paused_reason: Option<String>,
    /// Since when the agent is paused in this queue: the PBX's `LastPause` (or, when the PBX
    /// does not send it, when the pause was seen); null when not paused. Records written
    /// before this field existed read as null.
    #[serde(default, with = "rfc3339::option")]
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub paused_since: Option<Timestamp>,
    /// The member's penalty (lower is offered calls first).
    pub penalty: i32,
    /// Calls the agent took from this queue since it joined.
    pub calls_taken: u32,
    /// When the agent's last call from this queue ended; null when never.
    #[serde(with = "rfc3339::option")]
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub last_call: Option<Timestamp>,
    /// Whether the agent is on a call from this queue now.
    pub in_call: bool,
}

/// The agent's presence as a presence provider (`CustomPresence:...` in the hint) reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AgentPresence {
    /// Lower-case: `available`, `away`, `dnd`, `xa`, `chat`, `unavailable`, `not_set`, or
    /// another word a newer Asterisk may send.
    pub state: String,
    /// The subtype, e.g. `Lunch break`; null when none.
    pub subtype: Option<String>,
    /// The message, e.g. `Back at 14:00`; null when none.
    pub message: Option<String>,
}

impl AgentPresence {
    /// No presence set: what Asterisk reports for a provider nobody has written yet.
    pub fn not_set() -> AgentPresence {
        AgentPresence {
            state: "not_set".to_owned(),
            subtype: None,
            message: None,
        }
    }

    /// The presence states Asterisk defines (`ast_presence_state2str`).
    pub const KNOWN_STATES: [&'static str; 7] = [
        "not_set",
        "unavailable",
        "available",
        "away",
        "xa",
        "chat",
        "dnd",
    ];
}

/// Where the agent's call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    /// The agent is being rung.
    Ringing,
    /// The agent is talking.
    Up,
}

/// The call the agent is being rung for or is talking on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CallInfo {
    /// Ringing or up.
    pub state: CallState,
    /// The other party's number; null when unknown.
    pub peer_number: Option<String>,
    /// The other party's name; null when unknown.
    pub peer_name: Option<String>,
    /// The queue the call came from; null for a call that did not come through a queue.
    pub queue: Option<String>,
    /// When the call reached its current state.
    #[serde(with = "rfc3339")]
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub since: Timestamp,
}

/// A pause reason a user gives: free text, 1 to 64 characters after trimming, no control
/// characters. The PBX's own reports are not held to this (another client may set any text),
/// so [`QueueMembership::paused_reason`] is plain text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PauseReason(String);

impl PauseReason {
    /// The longest reason, in characters.
    pub const MAX_LEN: usize = 64;
    /// The request member it is read from, named in errors.
    pub const FIELD: &'static str = "reason";

    /// Validates and trims a pause reason.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(FieldError::new(Self::FIELD, Rule::Required));
        }
        let chars = trimmed.chars().count();
        if chars > Self::MAX_LEN {
            return Err(FieldError::new(
                Self::FIELD,
                Rule::TooLong {
                    max: Self::MAX_LEN,
                    got: chars,
                },
            ));
        }
        if trimmed.chars().any(crate::fields::is_forbidden_char) {
            return Err(FieldError::new(Self::FIELD, Rule::ControlCharacter));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The validated text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for PauseReason {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for PauseReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PauseReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        PauseReason::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_reasons() {
        let long = "x".repeat(65);
        let rows: &[(&str, Result<&str, &str>)] = &[
            ("Lunch", Ok("Lunch")),
            ("  Coffee break ", Ok("Coffee break")),
            ("Pause café ☕", Ok("Pause café ☕")),
            ("", Err("reason is required and may not be blank")),
            ("   ", Err("reason is required and may not be blank")),
            (&long, Err("reason must be at most 64 characters, got 65")),
            (
                "Lunch\nbreak",
                Err("reason must not contain control characters"),
            ),
            ("a\u{7f}", Err("reason must not contain control characters")),
        ];
        for (raw, want) in rows {
            let got = PauseReason::parse(raw).map(|r| r.as_str().to_owned());
            let got = got.map_err(|e| e.to_string());
            let want = want.map(str::to_owned).map_err(str::to_owned);
            assert_eq!(got, want, "{raw:?}");
        }
        // 64 multi-byte characters fit: the limit counts characters.
        assert!(PauseReason::parse(&"é".repeat(64)).is_ok());
        let r: PauseReason = serde_json::from_str("\"Lunch\"").expect("valid");
        assert_eq!(serde_json::to_string(&r).expect("ser"), "\"Lunch\"");
        let err = serde_json::from_str::<PauseReason>("\"\"").expect_err("blank");
        assert!(err.to_string().contains("reason is required"), "{err}");
    }

    #[test]
    fn json_shapes_match_the_interface() {
        let m = QueueMembership {
            queue: "sales".into(),
            paused: true,
            paused_reason: Some("Lunch".into()),
            paused_since: Some("2026-11-30T11:45:00Z".parse().expect("time")),
            penalty: 1,
            calls_taken: 3,
            last_call: Some("2026-11-30T12:00:00.123Z".parse().expect("time")),
            in_call: false,
        };
        assert_eq!(
            serde_json::to_value(&m).expect("ser"),
            serde_json::json!({
                "queue": "sales", "paused": true, "paused_reason": "Lunch",
                "paused_since": "2026-11-30T11:45:00.000Z", "penalty": 1,
                "calls_taken": 3, "last_call": "2026-11-30T12:00:00.123Z", "in_call": false,
            })
        );
        // A membership stored before `paused_since` existed reads as null.
        let old: QueueMembership = serde_json::from_value(serde_json::json!({
            "queue": "sales", "paused": true, "paused_reason": null, "penalty": 0,
            "calls_taken": 0, "last_call": null, "in_call": false,
        }))
        .expect("old shape");
        assert_eq!(old.paused_since, None);
        let p = AgentPresence {
            state: "away".into(),
            subtype: None,
            message: Some("Back at 14:00".into()),
        };
        assert_eq!(
            serde_json::to_value(&p).expect("ser"),
            serde_json::json!({"state": "away", "subtype": null, "message": "Back at 14:00"})
        );
        let c = CallInfo {
            state: CallState::Ringing,
            peer_number: Some("5559876".into()),
            peer_name: None,
            queue: Some("sales".into()),
            since: "2026-11-30T12:00:00Z".parse().expect("time"),
        };
        let json = serde_json::to_value(&c).expect("ser");
        assert_eq!(
            json,
            serde_json::json!({
                "state": "ringing", "peer_number": "5559876", "peer_name": null,
                "queue": "sales", "since": "2026-11-30T12:00:00.000Z",
            })
        );
        assert_eq!(serde_json::from_value::<CallInfo>(json).expect("back"), c);
    }
}
