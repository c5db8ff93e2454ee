//! Asterisk's state vocabulary as the PBX writes it: device states (`enum ast_device_state`,
//! the `State:` strings of `DeviceStateChange`), extension states (`enum ast_extension_states`,
//! the `Status:` numbers of `ExtensionStatus`) and the hint arithmetic between them.
//!
//! The simulator plays the PBX, so it owns the PBX's side of these tables; what the states
//! mean for the board (online, offline) is `domain`'s business, not this crate's. The
//! end-to-end crate checks that both sides agree on every number and string.

use std::fmt;

/// A device state (`enum ast_device_state`); the discriminants are Asterisk's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceState {
    /// `0`, `UNKNOWN`.
    Unknown = 0,
    /// `1`, `NOT_INUSE`.
    NotInUse = 1,
    /// `2`, `INUSE`.
    InUse = 2,
    /// `3`, `BUSY`.
    Busy = 3,
    /// `4`, `INVALID`.
    Invalid = 4,
    /// `5`, `UNAVAILABLE`.
    Unavailable = 5,
    /// `6`, `RINGING`.
    Ringing = 6,
    /// `7`, `RINGINUSE`.
    RingInUse = 7,
    /// `8`, `ONHOLD`.
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

    /// The wire string (`ast_devstate_str()`), as in `State:`.
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

    /// Parses a value the way `ast_devstate_val()` does: without regard to case, and anything
    /// unrecognised is `UNKNOWN`.
    pub fn parse_lenient(s: &str) -> DeviceState {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
            .unwrap_or(Self::Unknown)
    }

    /// The extension state of a hint holding only this device (`ast_devstate_to_extenstate()`).
    pub fn to_extension_state(self) -> ExtensionState {
        match self {
            Self::Unknown | Self::NotInUse => ExtensionState::NOT_INUSE,
            Self::InUse => ExtensionState::INUSE,
            Self::Busy => ExtensionState::BUSY,
            Self::Invalid | Self::Unavailable => ExtensionState::UNAVAILABLE,
            Self::Ringing => ExtensionState::RINGING,
            Self::RingInUse => ExtensionState::RINGINUSE,
            Self::OnHold => ExtensionState::ONHOLD,
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An extension (hint) state: the raw `Status:` number. Any number can be written, so a script
/// can make the PBX report codes the hint arithmetic never produces (17, 42, -1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtensionState(i32);

impl ExtensionState {
    /// `-2`, `AST_EXTENSION_REMOVED`.
    pub const REMOVED: ExtensionState = ExtensionState(-2);
    /// `-1`, `AST_EXTENSION_DEACTIVATED`: also the `ExtensionState` answer for no hint.
    pub const DEACTIVATED: ExtensionState = ExtensionState(-1);
    /// `0`, idle.
    pub const NOT_INUSE: ExtensionState = ExtensionState(0);
    /// `1`, in use.
    pub const INUSE: ExtensionState = ExtensionState(1);
    /// `2`, busy.
    pub const BUSY: ExtensionState = ExtensionState(2);
    /// `4`, unavailable.
    pub const UNAVAILABLE: ExtensionState = ExtensionState(4);
    /// `8`, ringing.
    pub const RINGING: ExtensionState = ExtensionState(8);
    /// `9`, in use and ringing.
    pub const RINGINUSE: ExtensionState = ExtensionState(9);
    /// `16`, on hold.
    pub const ONHOLD: ExtensionState = ExtensionState(16);
    /// `17`, in use and on hold (in Asterisk's table, never produced by hint arithmetic).
    pub const INUSE_ONHOLD: ExtensionState = ExtensionState(17);

    /// The state with this `Status:` number.
    pub const fn from_code(code: i32) -> ExtensionState {
        ExtensionState(code)
    }

    /// The `Status:` number.
    pub const fn code(self) -> i32 {
        self.0
    }

    /// The `StatusText` Asterisk sends with it (`ast_extension_state2str()`): `Unknown` for
    /// anything outside its table, including -1 and -2.
    pub fn status_text(self) -> &'static str {
        match self.0 {
            0 => "Idle",
            1 => "InUse",
            2 => "Busy",
            4 => "Unavailable",
            8 => "Ringing",
            9 => "InUse&Ringing",
            16 => "Hold",
            17 => "InUse&Hold",
            _ => "Unknown",
        }
    }

    /// The device state a phone is in when its single-device hint reports this state; `UNKNOWN`
    /// for codes no device state produces.
    pub fn device_state(self) -> DeviceState {
        match self.0 {
            0 => DeviceState::NotInUse,
            1 | 17 => DeviceState::InUse,
            2 => DeviceState::Busy,
            4 => DeviceState::Unavailable,
            8 => DeviceState::Ringing,
            9 => DeviceState::RingInUse,
            16 => DeviceState::OnHold,
            _ => DeviceState::Unknown,
        }
    }
}

impl fmt::Display for ExtensionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.status_text())
    }
}

/// Folds the device states of one hint into its extension state, the way Asterisk does
/// (`ast_devstate_aggregate_add()` then `ast_devstate_to_extenstate()`).
///
/// A ringing device next to an in-use, busy or held one gives `InUse&Ringing`; otherwise the
/// device with the highest priority wins. An empty hint aggregates to INVALID, so Unavailable.
pub fn aggregate(devices: impl IntoIterator<Item = DeviceState>) -> ExtensionState {
    // Asterisk's `state_order[]`, indexed by device state number: the priority of each state.
    const ORDER: [u8; 9] = [1, 3, 6, 7, 0, 2, 5, 8, 4];
    let priority = |d: DeviceState| ORDER[usize::from(d.number())];
    let mut ringing = false;
    let mut in_use = false;
    let mut state = DeviceState::Invalid;
    for device in devices {
        match device {
            DeviceState::Ringing => ringing = true,
            DeviceState::InUse | DeviceState::OnHold | DeviceState::Busy => in_use = true,
            _ => {}
        }
        if ringing && in_use {
            state = DeviceState::RingInUse;
        } else if priority(device) > priority(state) {
            state = device;
        }
    }
    state.to_extension_state()
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceState::*;

    #[test]
    fn hint_arithmetic_matches_the_captures() {
        // Single-device hint (scenario e) and combined hint 1099 (scenario e, steps 14-22).
        let rows: &[(&[DeviceState], i32)] = &[
            (&[NotInUse], 0),
            (&[InUse], 1),
            (&[Busy], 2),
            (&[Unavailable], 4),
            (&[Ringing], 8),
            (&[RingInUse], 9),
            (&[OnHold], 16),
            (&[Invalid], 4),
            (&[Unknown], 0),
            (&[InUse, NotInUse], 1),
            (&[InUse, Ringing], 9),
            (&[InUse, OnHold], 1),
            (&[OnHold, OnHold], 16),
            (&[NotInUse, OnHold], 16),
            (&[Ringing, OnHold], 9),
            (&[Busy, OnHold], 2),
            (&[NotInUse, NotInUse], 0),
            (&[], 4),
        ];
        for (devices, code) in rows {
            assert_eq!(
                aggregate(devices.iter().copied()).code(),
                *code,
                "{devices:?}"
            );
        }
    }

    #[test]
    fn a_reported_state_round_trips_through_its_device_state() {
        for code in [0, 1, 2, 4, 8, 9, 16] {
            let state = ExtensionState::from_code(code);
            assert_eq!(state.device_state().to_extension_state(), state, "{code}");
            assert_ne!(state.status_text(), "Unknown");
        }
        assert_eq!(ExtensionState::INUSE_ONHOLD.device_state(), InUse);
        assert_eq!(ExtensionState::from_code(42).device_state(), Unknown);
        assert_eq!(ExtensionState::DEACTIVATED.status_text(), "Unknown");
        assert_eq!(DeviceState::parse_lenient(" ringinuse "), RingInUse);
        assert_eq!(DeviceState::parse_lenient("nonsense"), Unknown);
    }
}
