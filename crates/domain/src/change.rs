//! The status-change function: given what is stored and what the PBX just said, decide exactly
//! what must be written. It is pure, so every backend and the server agree on it.

use crate::record::{StatusView, Timestamp, truncate};
use crate::status::{DeviceState, ExtensionState, Presence};

/// Where an observation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The PBX reported this extension (an `ExtensionStatus` event or list item): it was seen.
    Reported,
    /// The extension was absent from a full `ExtensionStateList`: the PBX no longer knows it.
    /// Its status becomes unknown, but it was not seen.
    AbsentFromList,
}

/// One observation of an extension's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The raw extension state code.
    pub code: i32,
    /// When it was observed (the receiving side's clock).
    pub at: Timestamp,
    /// Where it came from.
    pub source: Source,
}

impl Observation {
    /// A reported code.
    pub fn reported(code: i32, at: Timestamp) -> Self {
        Self {
            code,
            at,
            source: Source::Reported,
        }
    }

    /// An extension missing from a full list: it becomes unknown (`-1`, hint removed).
    pub fn absent(at: Timestamp) -> Self {
        Self {
            code: ExtensionState::Deactivated.code(),
            at,
            source: Source::AbsentFromList,
        }
    }
}

/// The status fields to overwrite because the code really changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusChange {
    /// The code before, for the history.
    pub previous_code: i32,
    /// The new raw code.
    pub status_code: i32,
    /// Its device state.
    pub device_state: DeviceState,
    /// Its presence.
    pub status: Presence,
    /// The new `last_status_change`.
    pub at: Timestamp,
}

/// Exactly what must be written for one observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusWrite {
    /// Present only when the status code really changed.
    pub change: Option<StatusChange>,
    /// The new `last_seen`, present whenever the PBX reported the extension.
    pub last_seen: Option<Timestamp>,
}

impl StatusWrite {
    /// Whether this write changes the status fields (as opposed to only `last_seen`).
    pub fn is_status_change(&self) -> bool {
        self.change.is_some()
    }
}

/// Why an observation led to no write at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoWrite {
    /// The observation is older than what is stored; a newer truth is already there.
    Stale,
    /// The extension was absent from the list and is already unknown.
    AlreadyUnknown,
}

/// Decides what an observation means for a stored record.
///
/// * An observation older than the stored `last_seen` (or `last_status_change`) is ignored.
/// * The status fields and `last_status_change` change only when the code really changes.
/// * `last_seen` is written for every reported observation, changed or not.
/// * An extension absent from a full list becomes unknown without being "seen".
pub fn decide(current: &StatusView, obs: &Observation) -> Result<StatusWrite, NoWrite> {
    let at = truncate(obs.at);
    let newest = current.last_seen.max(current.last_status_change);
    if newest.is_some_and(|newest| at < newest) {
        return Err(NoWrite::Stale);
    }
    let change = (obs.code != current.status_code).then(|| {
        let state = ExtensionState::from_code(obs.code);
        StatusChange {
            previous_code: current.status_code,
            status_code: obs.code,
            device_state: state.device_state(),
            status: state.presence(),
            at,
        }
    });
    let last_seen = match obs.source {
        Source::Reported => Some(at),
        Source::AbsentFromList => None,
    };
    if change.is_none() && last_seen.is_none() {
        return Err(NoWrite::AlreadyUnknown);
    }
    Ok(StatusWrite { change, last_seen })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u32) -> Timestamp {
        format!("2026-11-30T12:00:{s:02}Z")
            .parse()
            .expect("valid time")
    }

    fn view(code: i32, changed: Option<u32>, seen: Option<u32>) -> StatusView {
        StatusView {
            status_code: code,
            last_status_change: changed.map(t),
            last_seen: seen.map(t),
        }
    }

    fn check(current: StatusView, obs: Observation, want: Result<StatusWrite, NoWrite>) {
        assert_eq!(decide(&current, &obs), want, "{current:?} + {obs:?}");
    }

    fn changed(prev: i32, code: i32, dev: DeviceState, p: Presence, at: u32) -> StatusChange {
        StatusChange {
            previous_code: prev,
            status_code: code,
            device_state: dev,
            status: p,
            at: t(at),
        }
    }

    #[test]
    fn first_report_changes_status_and_last_seen() {
        check(
            view(-1, None, None),
            Observation::reported(0, t(5)),
            Ok(StatusWrite {
                change: Some(changed(-1, 0, DeviceState::NotInUse, Presence::Online, 5)),
                last_seen: Some(t(5)),
            }),
        );
    }

    #[test]
    fn same_code_only_touches_last_seen() {
        check(
            view(1, Some(3), Some(4)),
            Observation::reported(1, t(9)),
            Ok(StatusWrite {
                change: None,
                last_seen: Some(t(9)),
            }),
        );
    }

    #[test]
    fn older_observation_is_ignored() {
        check(
            view(1, Some(3), Some(8)),
            Observation::reported(0, t(7)),
            Err(NoWrite::Stale),
        );
        // An absent-from-list mark also sets the clock, without last_seen.
        check(
            view(-1, Some(8), Some(3)),
            Observation::reported(0, t(7)),
            Err(NoWrite::Stale),
        );
        // The same instant is not older.
        check(
            view(1, Some(3), Some(8)),
            Observation::reported(1, t(8)),
            Ok(StatusWrite {
                change: None,
                last_seen: Some(t(8)),
            }),
        );
    }

    #[test]
    fn every_code_maps_through_the_change() {
        use DeviceState as D;
        use Presence as P;
        let rows = [
            (-2, D::Unknown, P::Unknown),
            (-1, D::Unknown, P::Unknown),
            (0, D::NotInUse, P::Online),
            (1, D::InUse, P::Online),
            (2, D::Busy, P::Online),
            (4, D::Unavailable, P::Offline),
            (8, D::Ringing, P::Online),
            (9, D::RingInUse, P::Online),
            (16, D::OnHold, P::Online),
            (17, D::InUse, P::Online),
            (42, D::Unknown, P::Unknown),
        ];
        for (code, dev, presence) in rows {
            // Start from a code that differs from every row.
            check(
                view(1000, Some(1), Some(1)),
                Observation::reported(code, t(2)),
                Ok(StatusWrite {
                    change: Some(changed(1000, code, dev, presence, 2)),
                    last_seen: Some(t(2)),
                }),
            );
        }
    }

    #[test]
    fn absent_from_list_becomes_unknown_without_being_seen() {
        check(
            view(0, Some(1), Some(2)),
            Observation::absent(t(3)),
            Ok(StatusWrite {
                change: Some(changed(0, -1, DeviceState::Unknown, Presence::Unknown, 3)),
                last_seen: None,
            }),
        );
        check(
            view(-1, Some(1), Some(2)),
            Observation::absent(t(3)),
            Err(NoWrite::AlreadyUnknown),
        );
    }

    #[test]
    fn sub_millisecond_precision_is_dropped() {
        let at: Timestamp = "2026-11-30T12:00:05.123999Z".parse().expect("time");
        let write = decide(&view(0, None, None), &Observation::reported(0, at)).expect("write");
        assert_eq!(
            write.last_seen.map(|t| crate::record::format_rfc3339(&t)),
            Some("2026-11-30T12:00:05.123Z".to_owned())
        );
    }
}
