//! The Asterisk status vocabulary: extension states, device states and presence.
//!
//! Two different enumerations meet here, and mixing them up is the classic mistake this module
//! exists to prevent. `ExtensionStatus` events carry an *extension state* number
//! (`enum ast_extension_states` in `include/asterisk/pbx.h`), where `16` is ONHOLD and `9` is
//! ringing while in use. `DeviceStateChange` events carry a *device state* string
//! (`enum ast_device_state` in `include/asterisk/devicestate.h`), where `7` is RINGINUSE and `8`
//! is ONHOLD. See `docs/status-mapping.md` for the table with its sources.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An extension state as reported by Asterisk in `ExtensionStatus` (`Status:`).
///
/// Every value Asterisk defines has its own variant; any other number is kept verbatim in
/// [`ExtensionState::Other`], so a tracker never loses the raw code even when it cannot
/// interpret it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtensionState {
    /// `-2`, `AST_EXTENSION_REMOVED`: the extension was removed. StatusText `Unknown`,
    /// device state `UNKNOWN`, presence unknown. Asterisk only tells per-hint watchers, never
    /// an AMI `ExtensionStatus` event.
    Removed,
    /// `-1`, `AST_EXTENSION_DEACTIVATED`: the hint was removed, or (in the `ExtensionState`
    /// action's answer) the extension has no hint. StatusText `Unknown`, device state
    /// `UNKNOWN`, presence unknown. It is also what a new record starts with.
    Deactivated,
    /// `0`, `AST_EXTENSION_NOT_INUSE`: StatusText `Idle`, device state `NOT_INUSE`, online.
    /// Note that Asterisk maps a device in state UNKNOWN to this value too, so `Idle` does not
    /// prove that the phone is registered.
    NotInUse,
    /// `1`, `AST_EXTENSION_INUSE`: StatusText `InUse`, device state `INUSE`, online.
    InUse,
    /// `2`, `AST_EXTENSION_BUSY`: StatusText `Busy`, device state `BUSY`, online.
    Busy,
    /// `4`, `AST_EXTENSION_UNAVAILABLE`: StatusText `Unavailable`, device state
    /// `UNAVAILABLE`, **offline**. This is the only state that means offline.
    Unavailable,
    /// `8`, `AST_EXTENSION_RINGING`: StatusText `Ringing`, device state `RINGING`, online.
    Ringing,
    /// `9`, `INUSE | RINGING`: StatusText `InUse&Ringing`, device state `RINGINUSE`, online.
    /// Ringing while in use (or busy, or on hold).
    RingInUse,
    /// `16`, `AST_EXTENSION_ONHOLD`: StatusText `Hold`, device state `ONHOLD`, online.
    /// The original design document called 16 "RING*INUSE"; that was wrong.
    OnHold,
    /// `17`, `INUSE | ONHOLD`: StatusText `InUse&Hold`, device state `INUSE` (what app_queue
    /// uses), online. In Asterisk's table but never produced by the core's hint aggregation;
    /// accepted all the same.
    InUseOnHold,
    /// Any other number: StatusText `Unknown`, device state `UNKNOWN`, presence unknown. The raw
    /// number is kept.
    Other(i32),
}

impl ExtensionState {
    /// Every state Asterisk defines, in numeric order (without [`ExtensionState::Other`]).
    pub const KNOWN: [ExtensionState; 10] = [
        ExtensionState::Removed,
        ExtensionState::Deactivated,
        ExtensionState::NotInUse,
        ExtensionState::InUse,
        ExtensionState::Busy,
        ExtensionState::Unavailable,
        ExtensionState::Ringing,
        ExtensionState::RingInUse,
        ExtensionState::OnHold,
        ExtensionState::InUseOnHold,
    ];

    /// The state a record has before the PBX has reported on it.
    pub const INITIAL: ExtensionState = ExtensionState::Deactivated;

    /// Interprets a raw `Status:` number.
    pub fn from_code(code: i32) -> Self {
        match code {
            -2 => Self::Removed,
            -1 => Self::Deactivated,
            0 => Self::NotInUse,
            1 => Self::InUse,
            2 => Self::Busy,
            4 => Self::Unavailable,
            8 => Self::Ringing,
            9 => Self::RingInUse,
            16 => Self::OnHold,
            17 => Self::InUseOnHold,
            other => Self::Other(other),
        }
    }

    /// The raw number Asterisk uses for this state.
    pub fn code(self) -> i32 {
        match self {
            Self::Removed => -2,
            Self::Deactivated => -1,
            Self::NotInUse => 0,
            Self::InUse => 1,
            Self::Busy => 2,
            Self::Unavailable => 4,
            Self::Ringing => 8,
            Self::RingInUse => 9,
            Self::OnHold => 16,
            Self::InUseOnHold => 17,
            Self::Other(code) => code,
        }
    }

    /// The `StatusText` Asterisk sends with this state (`ast_extension_state2str()`), which
    /// answers `Unknown` for anything outside its table, including -1 and -2.
    pub fn status_text(self) -> &'static str {
        match self {
            Self::NotInUse => "Idle",
            Self::InUse => "InUse",
            Self::Busy => "Busy",
            Self::Unavailable => "Unavailable",
            Self::Ringing => "Ringing",
            Self::RingInUse => "InUse&Ringing",
            Self::OnHold => "Hold",
            Self::InUseOnHold => "InUse&Hold",
            Self::Removed | Self::Deactivated | Self::Other(_) => "Unknown",
        }
    }

    /// The device state we store as `device_state` for this extension state.
    pub fn device_state(self) -> DeviceState {
        match self {
            Self::NotInUse => DeviceState::NotInUse,
            Self::InUse | Self::InUseOnHold => DeviceState::InUse,
            Self::Busy => DeviceState::Busy,
            Self::Unavailable => DeviceState::Unavailable,
            Self::Ringing => DeviceState::Ringing,
            Self::RingInUse => DeviceState::RingInUse,
            Self::OnHold => DeviceState::OnHold,
            Self::Removed | Self::Deactivated | Self::Other(_) => DeviceState::Unknown,
        }
    }

    /// Whether the agent's phone counts as online, offline or unknown in this state.
    pub fn presence(self) -> Presence {
        match self {
            Self::NotInUse
            | Self::InUse
            | Self::Busy
            | Self::Ringing
            | Self::RingInUse
            | Self::OnHold
            | Self::InUseOnHold => Presence::Online,
            Self::Unavailable => Presence::Offline,
            Self::Removed | Self::Deactivated | Self::Other(_) => Presence::Unknown,
        }
    }
}

impl fmt::Display for ExtensionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.status_text())
    }
}

/// A device state as Asterisk writes it in `DeviceStateChange` (`State:`), from
/// `ast_devstate_str()`. The discriminants are Asterisk's `enum ast_device_state` numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceState {
    /// `0`, `UNKNOWN` (CLI `Unknown`); its hint folds to extension state 0; presence unknown.
    Unknown = 0,
    /// `1`, `NOT_INUSE` (CLI `Not in use`); extension state 0; online.
    NotInUse = 1,
    /// `2`, `INUSE` (CLI `In use`); extension state 1; online.
    InUse = 2,
    /// `3`, `BUSY` (CLI `Busy`); extension state 2; online.
    Busy = 3,
    /// `4`, `INVALID` (CLI `Invalid`); extension state 4; presence unknown (hints fold it into
    /// Unavailable, but the device itself is not known to be offline).
    Invalid = 4,
    /// `5`, `UNAVAILABLE` (CLI `Unavailable`); extension state 4; offline.
    Unavailable = 5,
    /// `6`, `RINGING` (CLI `Ringing`); extension state 8; online.
    Ringing = 6,
    /// `7`, `RINGINUSE` (CLI `Ring+Inuse`); extension state 9; online.
    RingInUse = 7,
    /// `8`, `ONHOLD` (CLI `On Hold`); extension state 16; online.
    OnHold = 8,
}

impl DeviceState {
    /// All nine device states, in Asterisk's numeric order.
    pub const ALL: [DeviceState; 9] = [
        DeviceState::Unknown,
        DeviceState::NotInUse,
        DeviceState::InUse,
        DeviceState::Busy,
        DeviceState::Invalid,
        DeviceState::Unavailable,
        DeviceState::Ringing,
        DeviceState::RingInUse,
        DeviceState::OnHold,
    ];

    /// Asterisk's `enum ast_device_state` number.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The device state with Asterisk's number `n`, if there is one (9 is a sentinel).
    pub fn from_number(n: u8) -> Option<Self> {
        Self::ALL.get(usize::from(n)).copied()
    }

    /// The parseable wire string (`ast_devstate_str()`), also what we store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::NotInUse => "NOT_INUSE",
            Self::InUse => "INUSE",
            Self::Busy => "BUSY",
            Self::Invalid => "INVALID",
            Self::Unavailable => "UNAVAILABLE",
            Self::Ringing => "RINGING",
            Self::RingInUse => "RINGINUSE",
            Self::OnHold => "ONHOLD",
        }
    }

    /// The human string the CLI prints (`ast_devstate2str()`).
    pub fn cli_str(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::NotInUse => "Not in use",
            Self::InUse => "In use",
            Self::Busy => "Busy",
            Self::Invalid => "Invalid",
            Self::Unavailable => "Unavailable",
            Self::Ringing => "Ringing",
            Self::RingInUse => "Ring+Inuse",
            Self::OnHold => "On Hold",
        }
    }

    /// Parses a wire string the way `ast_devstate_val()` does: without regard to case, and
    /// anything unrecognised is `UNKNOWN`.
    pub fn parse_lenient(s: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
            .unwrap_or(Self::Unknown)
    }

    /// The extension state a hint holding only this device reports
    /// (`ast_devstate_to_extenstate()`).
    pub fn to_extension_state(self) -> ExtensionState {
        match self {
            Self::Unknown | Self::NotInUse => ExtensionState::NotInUse,
            Self::InUse => ExtensionState::InUse,
            Self::Busy => ExtensionState::Busy,
            Self::Invalid | Self::Unavailable => ExtensionState::Unavailable,
            Self::Ringing => ExtensionState::Ringing,
            Self::RingInUse => ExtensionState::RingInUse,
            Self::OnHold => ExtensionState::OnHold,
        }
    }

    /// Whether the device counts as online, offline or unknown.
    pub fn presence(self) -> Presence {
        match self {
            Self::Unknown | Self::Invalid => Presence::Unknown,
            Self::Unavailable => Presence::Offline,
            Self::NotInUse
            | Self::InUse
            | Self::Busy
            | Self::Ringing
            | Self::RingInUse
            | Self::OnHold => Presence::Online,
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device-state string that is not one of Asterisk's nine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "device_state must be one of UNKNOWN, NOT_INUSE, INUSE, BUSY, INVALID, UNAVAILABLE, RINGING, RINGINUSE, ONHOLD; got {0:?}"
)]
pub struct UnknownDeviceState(pub String);

impl FromStr for DeviceState {
    type Err = UnknownDeviceState;

    /// Strict parsing, for data we stored ourselves: exact upper-case names only.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDeviceState(s.to_owned()))
    }
}

impl Serialize for DeviceState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeviceState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether an extension's phone is reachable, as far as the PBX says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// The phone is registered and usable (idle, talking, ringing, on hold...).
    Online,
    /// The phone is unavailable (extension state 4).
    Offline,
    /// The PBX has not said, or said something we cannot interpret.
    Unknown,
}

impl Presence {
    /// The three values, in display order.
    pub const ALL: [Presence; 3] = [Presence::Online, Presence::Offline, Presence::Unknown];

    /// The stored and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A presence string that is not `online`, `offline` or `unknown`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("status must be one of online, offline, unknown; got {0:?}")]
pub struct UnknownPresence(pub String);

impl FromStr for Presence {
    type Err = UnknownPresence;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPresence(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row of the extension-state table in `docs/status-mapping.md`.
    fn check_ext(code: i32, text: &str, device: &str, presence: Presence) {
        let state = ExtensionState::from_code(code);
        assert_eq!(state.code(), code, "code round trip for {code}");
        assert_eq!(state.status_text(), text, "StatusText of {code}");
        assert_eq!(
            state.device_state().as_str(),
            device,
            "device_state of {code}"
        );
        assert_eq!(state.presence(), presence, "presence of {code}");
    }

    #[test]
    fn every_extension_state_row() {
        use Presence::*;
        let rows = [
            (-2, "Unknown", "UNKNOWN", Unknown),
            (-1, "Unknown", "UNKNOWN", Unknown),
            (0, "Idle", "NOT_INUSE", Online),
            (1, "InUse", "INUSE", Online),
            (2, "Busy", "BUSY", Online),
            (4, "Unavailable", "UNAVAILABLE", Offline),
            (8, "Ringing", "RINGING", Online),
            (9, "InUse&Ringing", "RINGINUSE", Online),
            (16, "Hold", "ONHOLD", Online),
            (17, "InUse&Hold", "INUSE", Online),
            // Anything else: unknown, and the raw number survives.
            (3, "Unknown", "UNKNOWN", Unknown),
            (32, "Unknown", "UNKNOWN", Unknown),
            (-3, "Unknown", "UNKNOWN", Unknown),
            (i32::MAX, "Unknown", "UNKNOWN", Unknown),
        ];
        for (code, text, device, presence) in rows {
            check_ext(code, text, device, presence);
        }
        // The rows cover every defined state.
        for known in ExtensionState::KNOWN {
            assert!(rows.iter().any(|r| r.0 == known.code()), "{known} missing");
        }
        assert_eq!(ExtensionState::from_code(32), ExtensionState::Other(32));
    }

    #[test]
    fn the_design_document_mistake_stays_fixed() {
        assert_eq!(ExtensionState::from_code(16), ExtensionState::OnHold);
        assert_eq!(ExtensionState::from_code(9), ExtensionState::RingInUse);
        assert_eq!(
            ExtensionState::from_code(17).device_state(),
            DeviceState::InUse
        );
        assert_eq!(ExtensionState::from_code(4).presence(), Presence::Offline);
    }

    /// One row of the device-state table in `docs/status-mapping.md`.
    fn check_dev(n: u8, wire: &str, cli: &str, ext: i32, presence: Presence) {
        let d = DeviceState::from_number(n).expect("defined number");
        assert_eq!(d.number(), n);
        assert_eq!(d.as_str(), wire, "wire string of {n}");
        assert_eq!(d.cli_str(), cli, "CLI string of {n}");
        assert_eq!(
            d.to_extension_state().code(),
            ext,
            "extension state of {wire}"
        );
        assert_eq!(d.presence(), presence, "presence of {wire}");
        assert_eq!(wire.parse::<DeviceState>(), Ok(d));
        assert_eq!(DeviceState::parse_lenient(&wire.to_ascii_lowercase()), d);
        let json = serde_json::to_string(&d).expect("serialize");
        assert_eq!(json, format!("\"{wire}\""));
        assert_eq!(
            serde_json::from_str::<DeviceState>(&json).expect("parse"),
            d
        );
    }

    #[test]
    fn every_device_state_row() {
        use Presence::*;
        let rows = [
            (0, "UNKNOWN", "Unknown", 0, Unknown),
            (1, "NOT_INUSE", "Not in use", 0, Online),
            (2, "INUSE", "In use", 1, Online),
            (3, "BUSY", "Busy", 2, Online),
            (4, "INVALID", "Invalid", 4, Unknown),
            (5, "UNAVAILABLE", "Unavailable", 4, Offline),
            (6, "RINGING", "Ringing", 8, Online),
            (7, "RINGINUSE", "Ring+Inuse", 9, Online),
            (8, "ONHOLD", "On Hold", 16, Online),
        ];
        assert_eq!(rows.len(), DeviceState::ALL.len());
        for (n, wire, cli, ext, presence) in rows {
            check_dev(n, wire, cli, ext, presence);
        }
        assert_eq!(
            DeviceState::from_number(9),
            None,
            "9 is Asterisk's sentinel"
        );
        assert_eq!(DeviceState::parse_lenient("bogus"), DeviceState::Unknown);
        assert!("bogus".parse::<DeviceState>().is_err());
    }

    #[test]
    fn presence_strings() {
        for p in Presence::ALL {
            assert_eq!(p.as_str().parse::<Presence>(), Ok(p));
            assert_eq!(
                serde_json::to_string(&p).expect("serialize"),
                format!("\"{}\"", p.as_str())
            );
        }
        let err = "Online".parse::<Presence>().expect_err("case matters");
        assert!(err.to_string().contains("online, offline, unknown"));
    }
}
