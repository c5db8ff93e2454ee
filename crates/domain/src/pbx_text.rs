//! The one place where text the PBX sends is made fit for records, call-center views and
//! history: control characters removed and each kind of value cut to a sane length.
//!
//! Asterisk copies whatever a channel, the dialplan or a phone says into its events (caller id
//! names and numbers, queue names, presence messages, channel names, hints): a hostile or
//! broken peer can send megabytes of it, or terminal escapes and line breaks. Every string of
//! a call-center [`Input`] passes through [`bound_input`] at the tracker's door, so nothing
//! longer than [`PbxField::max_chars`] reaches a record, the hub or the store. Each cut value
//! is counted per field ([`cut_counts`]; `/metrics` shows it as
//! `extstatus_pbx_values_cut_total{field}`). The counts are process-wide atomics: counting is
//! the only effect, and callers still pass the clock.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::callcenter::Input;

/// A kind of PBX text, each with its own bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PbxField {
    /// A caller's or connected party's name (`CallerIDName`, `ConnectedLineName`).
    CallerName,
    /// A caller's or connected party's number (`CallerIDNum`, `ConnectedLineNum`).
    CallerNumber,
    /// A queue name.
    Queue,
    /// A pause reason the PBX reports (`PausedReason`).
    PauseReason,
    /// A presence state word.
    PresenceState,
    /// A presence subtype.
    PresenceSubtype,
    /// A presence message.
    PresenceMessage,
    /// A channel name (`PJSIP/1001-0000002a`).
    Channel,
    /// A device, interface or presentity (`PJSIP/1001`, `Local/1001@agents`...).
    Device,
    /// A hint (`Custom:1001&PJSIP/1001,CustomPresence:1001`).
    Hint,
    /// A channel's `Uniqueid` or `Linkedid`.
    ChannelId,
}

impl PbxField {
    /// Every field, in label order of `/metrics`.
    pub const ALL: [PbxField; 11] = [
        PbxField::CallerName,
        PbxField::CallerNumber,
        PbxField::Channel,
        PbxField::ChannelId,
        PbxField::Device,
        PbxField::Hint,
        PbxField::PauseReason,
        PbxField::PresenceMessage,
        PbxField::PresenceState,
        PbxField::PresenceSubtype,
        PbxField::Queue,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::CallerName => "caller_name",
            Self::CallerNumber => "caller_number",
            Self::Queue => "queue",
            Self::PauseReason => "pause_reason",
            Self::PresenceState => "presence_state",
            Self::PresenceSubtype => "presence_subtype",
            Self::PresenceMessage => "presence_message",
            Self::Channel => "channel",
            Self::Device => "device",
            Self::Hint => "hint",
            Self::ChannelId => "channel_id",
        }
    }

    /// At most this many characters are kept. Generous for what Asterisk itself allows
    /// (80-byte extensions and caller ids, 150-byte unique ids, 128-byte queue names), small
    /// enough that a record stays a few kilobytes whatever the PBX sends.
    pub fn max_chars(self) -> usize {
        match self {
            Self::CallerName | Self::Queue | Self::PauseReason | Self::PresenceSubtype => 128,
            Self::CallerNumber | Self::PresenceState => 64,
            Self::PresenceMessage | Self::Channel | Self::Device => 256,
            Self::ChannelId => 160,
            Self::Hint => 1024,
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

static CUT: [AtomicU64; PbxField::ALL.len()] = [const { AtomicU64::new(0) }; PbxField::ALL.len()];

/// How many values of each field were cut or cleaned so far, in [`PbxField::ALL`] order.
pub fn cut_counts() -> Vec<(PbxField, u64)> {
    PbxField::ALL
        .iter()
        .map(|f| (*f, CUT[f.index()].load(Ordering::Relaxed)))
        .collect()
}

/// `value` without control characters and cut to `max` characters; borrowed when it was fine.
fn clean(value: &str, max: usize) -> Cow<'_, str> {
    let mut chars = 0;
    let fits = value.chars().all(|c| {
        chars += 1;
        chars <= max && !c.is_control()
    });
    if fits {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .chars()
            .filter(|c| !c.is_control())
            .take(max)
            .collect(),
    )
}

/// `value` made fit for `field`: control characters removed, cut to its bound (counted when
/// anything changed).
pub fn bound(field: PbxField, value: &str) -> Cow<'_, str> {
    let out = clean(value, field.max_chars());
    if matches!(out, Cow::Owned(_)) {
        CUT[field.index()].fetch_add(1, Ordering::Relaxed);
    }
    out
}

/// [`bound`] in place, allocating only when the value changes.
pub fn bound_string(field: PbxField, value: &mut String) {
    if let Cow::Owned(fixed) = bound(field, value) {
        *value = fixed;
    }
}

fn bound_opt(field: PbxField, value: &mut Option<String>) {
    if let Some(v) = value {
        bound_string(field, v);
    }
}

/// PBX text for a log line or an error message: control characters removed and at most
/// `max` characters (`...` marks a cut). Not counted: nothing is stored.
pub fn clean_for_log(value: &str, max: usize) -> String {
    let cleaned = clean(value, max);
    let cut = value.chars().filter(|c| !c.is_control()).nth(max).is_some();
    let mut out = cleaned.into_owned();
    if cut {
        out.push_str("...");
    }
    out
}

/// Every string of `input` made fit (see the module docs). The tracker calls it on every
/// input it takes, live or listed.
pub fn bound_input(mut input: Input) -> Input {
    use PbxField as F;
    match &mut input {
        Input::Hint { hint, .. } => bound_string(F::Hint, hint),
        Input::MemberAdded(m) | Input::MemberUpdated(m) => {
            bound_string(F::Queue, &mut m.queue);
            bound_string(F::Device, &mut m.interface);
            bound_opt(F::Device, &mut m.state_interface);
            bound_opt(F::PauseReason, &mut m.paused_reason);
        }
        Input::MemberRemoved { queue, interface } => {
            bound_string(F::Queue, queue);
            bound_string(F::Device, interface);
        }
        Input::QueueParams(p) => bound_string(F::Queue, &mut p.queue),
        Input::CallerJoined(c) | Input::CallerLeft(c) | Input::CallerAbandoned(c) => {
            bound_string(F::Queue, &mut c.queue);
            bound_string(F::ChannelId, &mut c.caller_uniqueid);
        }
        Input::CallerWaiting(w) => {
            bound_string(F::Queue, &mut w.queue);
            bound_string(F::ChannelId, &mut w.caller_uniqueid);
        }
        Input::AgentCalled(a)
        | Input::AgentConnected(a)
        | Input::AgentCompleted(a)
        | Input::AgentRingNoAnswer(a)
        | Input::AgentDumped(a) => {
            bound_string(F::Queue, &mut a.queue);
            bound_string(F::Device, &mut a.interface);
            bound_opt(F::ChannelId, &mut a.caller_uniqueid);
            bound_opt(F::ChannelId, &mut a.agent_uniqueid);
            bound_opt(F::CallerNumber, &mut a.peer_number);
            bound_opt(F::CallerName, &mut a.peer_name);
        }
        Input::Presence(p) => {
            bound_string(F::Device, &mut p.presentity);
            bound_string(F::PresenceState, &mut p.state);
            bound_opt(F::PresenceSubtype, &mut p.subtype);
            bound_opt(F::PresenceMessage, &mut p.message);
        }
        Input::Channel(c) => {
            bound_string(F::ChannelId, &mut c.uniqueid);
            bound_string(F::Channel, &mut c.channel);
            bound_opt(F::CallerNumber, &mut c.peer_number);
            bound_opt(F::CallerName, &mut c.peer_name);
            bound_opt(F::ChannelId, &mut c.linkedid);
            bound_opt(F::Queue, &mut c.in_queue);
        }
        Input::Hangup { uniqueid } => bound_string(F::ChannelId, uniqueid),
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check() {
        // (field, value, what is kept)
        let long = "x".repeat(5000);
        let cases: Vec<(PbxField, &str, String)> = vec![
            (PbxField::CallerName, "Müller", "Müller".to_owned()),
            (
                PbxField::CallerName,
                "Bad\u{1b}[2J\r\nName\t",
                "Bad[2JName".to_owned(),
            ),
            (PbxField::CallerName, &long, "x".repeat(128)),
            (PbxField::Queue, &long, "x".repeat(128)),
            (PbxField::PresenceMessage, &long, "x".repeat(256)),
            (PbxField::Hint, &long, "x".repeat(1024)),
            (
                PbxField::CallerNumber,
                "+49 30 1234",
                "+49 30 1234".to_owned(),
            ),
        ];
        for (field, value, want) in cases {
            let before = cut_counts()[field.index()].1;
            let got = bound(field, value);
            assert_eq!(got, want, "{field:?}");
            let counted = cut_counts()[field.index()].1 - before;
            assert_eq!(counted, u64::from(want != value), "{field:?} {value:?}");
        }
        // Multi-byte characters are cut on character boundaries.
        let umlauts = "ü".repeat(300);
        assert_eq!(bound(PbxField::CallerName, &umlauts).chars().count(), 128);
    }

    #[test]
    fn every_string_of_an_input_is_bounded() {
        let long = "q".repeat(1000);
        let input = bound_input(Input::Channel(crate::callcenter::ChannelInput {
            uniqueid: long.clone(),
            channel: long.clone(),
            state: 6,
            peer_number: Some(long.clone()),
            peer_name: Some(format!("A\u{7}{long}")),
            linkedid: Some(long.clone()),
            in_queue: Some(long.clone()),
            age_s: None,
        }));
        let Input::Channel(c) = input else {
            panic!("still a channel")
        };
        assert_eq!(c.uniqueid.len(), 160);
        assert_eq!(c.channel.len(), 256);
        assert_eq!(c.peer_number.map(|s| s.len()), Some(64));
        assert_eq!(c.peer_name.as_deref().map(|s| &s[..2]), Some("Aq"));
        assert_eq!(c.in_queue.map(|s| s.len()), Some(128));
    }

    #[test]
    fn log_text_is_bounded_and_marked() {
        assert_eq!(
            clean_for_log("Authentication failed", 200),
            "Authentication failed"
        );
        assert_eq!(clean_for_log("ab\r\ncd", 3), "abc...");
        assert_eq!(clean_for_log("abc", 3), "abc");
    }
}
