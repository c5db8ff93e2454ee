//! The history of what the PBX reported and of what bounds that knowledge: one [`HistoryEntry`]
//! per change of status, pause, presence or call, plus PBX-link and server markers; and the
//! validated [`TimeRange`] the history and analytics endpoints take.
//!
//! Both stores persist these entries and `GET /api/extensions/{id}/history` serves them as JSON.
//! Every entry is one flat object with `at` (RFC 3339 UTC, milliseconds), `kind`, and the
//! members of its kind:
//!
//! | `kind` | members |
//! |---|---|
//! | `status` | `extension`, `previous_code`, `code`, `device_state`, `status` (the last two derived from `code`) |
//! | `pause` | `extension`, `queue`, `paused` (bool), `reason` (string or null) |
//! | `presence` | `extension`, `state`, `subtype` (string or null), `message` (string or null) |
//! | `call` | `extension`, `on_call` (bool), `queue` (string or null) |
//! | `pbx_link_down`, `pbx_link_up` | none: the AMI link was lost / is logged in again |
//! | `server_start`, `server_stop` | none: the server process started / stopped cleanly |
//!
//! ```json
//! {"at":"2026-12-01T09:00:00.000Z","kind":"status","extension":"1001","previous_code":0,"code":1,"device_state":"INUSE","status":"online"}
//! {"at":"2026-12-01T09:05:00.000Z","kind":"pause","extension":"1001","queue":"sales","paused":true,"reason":"lunch"}
//! {"at":"2026-12-01T09:06:00.000Z","kind":"pbx_link_down"}
//! ```
//!
//! Reading also accepts the older status-only shape (`extension`, `previous_code`, `new_code`,
//! `at`, no `kind`), which [`StatusHistoryEntry`] wrote, so entries stored before this type
//! existed still read.

use std::fmt;

use chrono::Duration;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::callcenter::CallCenterView;
use crate::fields::ExtensionNumber;
use crate::record::{StatusHistoryEntry, Timestamp, format_rfc3339, truncate};
use crate::status::ExtensionState;

/// One recorded change, at the time the PBX reported it (or, for markers, the server saw it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When it happened, UTC, whole milliseconds.
    pub at: Timestamp,
    /// What happened.
    pub event: HistoryEvent,
}

/// What a [`HistoryEntry`] records.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryEvent {
    /// The extension state code of `extension` changed (JSON kind `status`).
    Status {
        /// The extension.
        extension: ExtensionNumber,
        /// The raw code before.
        previous_code: i32,
        /// The raw code after; `device_state` and `status` are derived from it.
        code: i32,
    },
    /// `extension` was paused or unpaused in `queue` (JSON kind `pause`).
    Pause {
        /// The extension.
        extension: ExtensionNumber,
        /// The queue the pause applies to.
        queue: String,
        /// Paused after the change.
        paused: bool,
        /// The pause reason, when one was given (always `None` when unpaused).
        reason: Option<String>,
    },
    /// The presence state of `extension` changed (JSON kind `presence`).
    Presence {
        /// The extension.
        extension: ExtensionNumber,
        /// The presence state, e.g. `available`, `away`, `dnd`.
        state: String,
        /// The presence subtype, if any.
        subtype: Option<String>,
        /// The presence message, if any.
        message: Option<String>,
    },
    /// `extension` started or ended a call (JSON kind `call`).
    Call {
        /// The extension.
        extension: ExtensionNumber,
        /// On a call (talking or being rung) after the change.
        on_call: bool,
        /// The queue the call came from, if any.
        queue: Option<String>,
    },
    /// The AMI link was lost (JSON kind `pbx_link_down`): what follows until
    /// [`HistoryEvent::PbxLinkUp`] is not known.
    PbxLinkDown,
    /// The AMI link is logged in again (JSON kind `pbx_link_up`). Record it on every successful
    /// login, including the first one after a server start.
    PbxLinkUp,
    /// The server process started (JSON kind `server_start`). The PBX link counts as down until
    /// the next [`HistoryEvent::PbxLinkUp`]. A start that follows no
    /// [`HistoryEvent::ServerStop`] means the server crashed: it was not running from the last
    /// entry before the start.
    ServerStart,
    /// The server process stopped cleanly (JSON kind `server_stop`).
    ServerStop,
}

impl HistoryEvent {
    /// The JSON `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Pause { .. } => "pause",
            Self::Presence { .. } => "presence",
            Self::Call { .. } => "call",
            Self::PbxLinkDown => "pbx_link_down",
            Self::PbxLinkUp => "pbx_link_up",
            Self::ServerStart => "server_start",
            Self::ServerStop => "server_stop",
        }
    }

    /// The extension the event is about; `None` for the global markers.
    pub fn extension(&self) -> Option<&ExtensionNumber> {
        match self {
            Self::Status { extension, .. }
            | Self::Pause { extension, .. }
            | Self::Presence { extension, .. }
            | Self::Call { extension, .. } => Some(extension),
            Self::PbxLinkDown | Self::PbxLinkUp | Self::ServerStart | Self::ServerStop => None,
        }
    }
}

impl HistoryEntry {
    /// A new entry; `at` is truncated to milliseconds.
    pub fn new(at: Timestamp, event: HistoryEvent) -> Self {
        Self {
            at: truncate(at),
            event,
        }
    }

    /// The extension the entry is about; `None` for the global markers.
    pub fn extension(&self) -> Option<&ExtensionNumber> {
        self.event.extension()
    }
}

impl From<StatusHistoryEntry> for HistoryEntry {
    fn from(e: StatusHistoryEntry) -> Self {
        Self::new(
            e.at,
            HistoryEvent::Status {
                extension: e.extension,
                previous_code: e.previous_code,
                code: e.new_code,
            },
        )
    }
}

impl Serialize for HistoryEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = match &self.event {
            HistoryEvent::Status { .. } => 7,
            HistoryEvent::Pause { .. } | HistoryEvent::Presence { .. } => 6,
            HistoryEvent::Call { .. } => 5,
            _ => 2,
        };
        let mut st = s.serialize_struct("HistoryEntry", len)?;
        st.serialize_field("at", &format_rfc3339(&self.at))?;
        st.serialize_field("kind", self.event.kind())?;
        match &self.event {
            HistoryEvent::Status {
                extension,
                previous_code,
                code,
            } => {
                let state = ExtensionState::from_code(*code);
                st.serialize_field("extension", extension)?;
                st.serialize_field("previous_code", previous_code)?;
                st.serialize_field("code", code)?;
                st.serialize_field("device_state", &state.device_state())?;
                st.serialize_field("status", &state.presence())?;
            }
            HistoryEvent::Pause {
                extension,
                queue,
                paused,
                reason,
            } => {
                st.serialize_field("extension", extension)?;
                st.serialize_field("queue", queue)?;
                st.serialize_field("paused", paused)?;
                st.serialize_field("reason", reason)?;
            }
            HistoryEvent::Presence {
                extension,
                state,
                subtype,
                message,
            } => {
                st.serialize_field("extension", extension)?;
                st.serialize_field("state", state)?;
                st.serialize_field("subtype", subtype)?;
                st.serialize_field("message", message)?;
            }
            HistoryEvent::Call {
                extension,
                on_call,
                queue,
            } => {
                st.serialize_field("extension", extension)?;
                st.serialize_field("on_call", on_call)?;
                st.serialize_field("queue", queue)?;
            }
            HistoryEvent::PbxLinkDown
            | HistoryEvent::PbxLinkUp
            | HistoryEvent::ServerStart
            | HistoryEvent::ServerStop => {}
        }
        st.end()
    }
}

/// Every member any kind may have; what [`HistoryEntry`] reads before checking the kind's rules.
/// `device_state` and `status` are derived from `code`, so they are not read.
#[derive(Deserialize)]
struct RawEntry {
    #[serde(with = "crate::record::rfc3339")]
    at: Timestamp,
    kind: Option<String>,
    extension: Option<ExtensionNumber>,
    previous_code: Option<i32>,
    code: Option<i32>,
    /// The older status-only shape's name for `code`.
    new_code: Option<i32>,
    queue: Option<String>,
    paused: Option<bool>,
    reason: Option<String>,
    state: Option<String>,
    subtype: Option<String>,
    message: Option<String>,
    on_call: Option<bool>,
}

impl RawEntry {
    fn into_entry(self) -> Result<HistoryEntry, String> {
        // An entry without `kind` is the older status-only shape.
        let kind = self.kind.as_deref().unwrap_or("status");
        let missing = |field: &str| format!("history entry of kind {kind:?}: {field} is missing");
        let extension = || self.extension.clone().ok_or_else(|| missing("extension"));
        let event = match kind {
            "status" => HistoryEvent::Status {
                extension: extension()?,
                previous_code: self.previous_code.ok_or_else(|| missing("previous_code"))?,
                code: self.code.or(self.new_code).ok_or_else(|| missing("code"))?,
            },
            "pause" => HistoryEvent::Pause {
                extension: extension()?,
                queue: self.queue.clone().ok_or_else(|| missing("queue"))?,
                paused: self.paused.ok_or_else(|| missing("paused"))?,
                reason: self.reason.clone(),
            },
            "presence" => HistoryEvent::Presence {
                extension: extension()?,
                state: self.state.clone().ok_or_else(|| missing("state"))?,
                subtype: self.subtype.clone(),
                message: self.message.clone(),
            },
            "call" => HistoryEvent::Call {
                extension: extension()?,
                on_call: self.on_call.ok_or_else(|| missing("on_call"))?,
                queue: self.queue.clone(),
            },
            "pbx_link_down" => HistoryEvent::PbxLinkDown,
            "pbx_link_up" => HistoryEvent::PbxLinkUp,
            "server_start" => HistoryEvent::ServerStart,
            "server_stop" => HistoryEvent::ServerStop,
            other => {
                return Err(format!(
                    "history entry: kind must be one of status, pause, presence, call, \
                     pbx_link_down, pbx_link_up, server_start, server_stop; got {other:?}"
                ));
            }
        };
        Ok(HistoryEntry::new(self.at, event))
    }
}

impl<'de> Deserialize<'de> for HistoryEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawEntry::deserialize(d)?
            .into_entry()
            .map_err(serde::de::Error::custom)
    }
}

/// Which bound of a [`TimeRange`] is at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The `from` parameter.
    From,
    /// The `to` parameter.
    To,
}

impl Bound {
    /// The query parameter's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::From => "from",
            Self::To => "to",
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A time range a user asked for that cannot be served. The message names the parameter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// A bound was not given.
    #[error("{0} is required (an RFC 3339 time such as 2026-12-01T00:00:00Z)")]
    Missing(Bound),
    /// A bound is not an RFC 3339 time.
    #[error(
        "{bound} must be an RFC 3339 time such as 2026-12-01T00:00:00Z, got {got:?}{cut}{hint}"
    )]
    NotRfc3339 {
        /// What was given, or its start when it is long.
        got: String,
        /// Which bound.
        bound: Bound,
        /// When `got` is only the start: `... (N characters)`; empty otherwise.
        cut: String,
        /// Extra advice, possibly empty.
        hint: &'static str,
    },
    /// `to` is not after `from`.
    #[error("to must be after from (from is {from}, to is {to})")]
    NotAfter {
        /// The given `from`, as RFC 3339.
        from: String,
        /// The given `to`, as RFC 3339.
        to: String,
    },
    /// The range is longer than [`TimeRange::MAX_DAYS`].
    #[error(
        "to is too far after from: the range may span at most {max} days, this one spans {}",
        span_text(*.span_ms)
    )]
    TooLong {
        /// The maximum, in days.
        max: i64,
        /// The asked span, in milliseconds.
        span_ms: i64,
    },
}

/// A span as whole days and the rest as `hh:mm:ss.mmm`, so that a range just over the limit
/// does not read as exactly the limit (`93.0`).
fn span_text(span_ms: i64) -> String {
    const DAY: i64 = 86_400_000;
    let (days, rest) = (span_ms.div_euclid(DAY), span_ms.rem_euclid(DAY));
    let unit = if days == 1 { "day" } else { "days" };
    if rest == 0 {
        return format!("{days} {unit}");
    }
    format!(
        "{days} {unit} {:02}:{:02}:{:02}.{:03}",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

impl RangeError {
    /// The query parameter at fault, for a `fields` member of an error body.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Missing(b) | Self::NotRfc3339 { bound: b, .. } => b.as_str(),
            Self::NotAfter { .. } | Self::TooLong { .. } => Bound::To.as_str(),
        }
    }
}

/// A validated, half-open time range `[from, to)`: `to` strictly after `from`, at most
/// [`TimeRange::MAX_DAYS`] days long, both whole milliseconds in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    from: Timestamp,
    to: Timestamp,
}

impl TimeRange {
    /// The longest range a request may ask for.
    pub const MAX_DAYS: i64 = 93;

    /// Validates a range of times (truncated to milliseconds first).
    pub fn new(from: Timestamp, to: Timestamp) -> Result<Self, RangeError> {
        let (from, to) = (truncate(from), truncate(to));
        if to <= from {
            return Err(RangeError::NotAfter {
                from: format_rfc3339(&from),
                to: format_rfc3339(&to),
            });
        }
        let span = to - from;
        if span > Duration::days(Self::MAX_DAYS) {
            return Err(RangeError::TooLong {
                max: Self::MAX_DAYS,
                span_ms: span.num_milliseconds(),
            });
        }
        Ok(Self { from, to })
    }

    /// Validates the `from` and `to` query parameters as given (`None` when absent).
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Self, RangeError> {
        let from = parse_bound(Bound::From, from)?;
        let to = parse_bound(Bound::To, to)?;
        Self::new(from, to)
    }

    /// The first instant in the range.
    pub fn from(&self) -> Timestamp {
        self.from
    }

    /// The first instant after the range.
    pub fn to(&self) -> Timestamp {
        self.to
    }
}

/// How much of a bad time an error quotes: a time with nanoseconds and an offset is 35.
const ECHOED_CHARS: usize = 64;

fn parse_bound(bound: Bound, raw: Option<&str>) -> Result<Timestamp, RangeError> {
    let raw = raw.ok_or(RangeError::Missing(bound))?;
    if raw.trim().is_empty() {
        return Err(RangeError::Missing(bound));
    }
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| without_leap_second(t.with_timezone(&chrono::Utc)))
        .map_err(|_| RangeError::NotRfc3339 {
            bound,
            // A long value is not echoed whole (twice: message and `fields`).
            got: raw.chars().take(ECHOED_CHARS).collect(),
            cut: match raw.chars().count() {
                n if n > ECHOED_CHARS => format!("... ({n} characters)"),
                _ => String::new(),
            },
            // A `+` offset in a URL decodes to a space unless it is written `%2B`.
            hint: if raw.contains(' ') {
                " (a '+' in a URL must be written %2B)"
            } else {
                ""
            },
        })
}

/// A leap second (`23:59:60`, which RFC 3339 allows) as the instant it ends at, the next
/// minute's start: the answer then names a time every client can read (JavaScript's `Date`
/// reads `23:59:60` as invalid), and the window is the same length.
fn without_leap_second(t: Timestamp) -> Timestamp {
    use chrono::Timelike as _;
    let nanos = t.nanosecond();
    if nanos < 1_000_000_000 {
        return t;
    }
    t.with_nanosecond(0)
        .and_then(|whole| whole.checked_add_signed(Duration::seconds(1)))
        .unwrap_or(t)
}

/// The history entries that record the change of one extension's call-center view from `old`
/// to `new`, at `at`: a `pause` entry per queue whose pause state (or, while paused, reason)
/// changed (leaving a queue while paused counts as unpaused; joining it paused, as paused), a
/// `presence` entry when the presence changed (a presence that is gone is recorded as
/// `not_set`, Asterisk's name for none), and a `call` entry when the extension went on or off
/// a call. Queue statistics (calls taken, penalty, last call) are not history.
pub fn call_center_changes(
    extension: &ExtensionNumber,
    old: &CallCenterView,
    new: &CallCenterView,
    at: Timestamp,
) -> Vec<HistoryEntry> {
    let mut out = Vec::new();
    let pause_of = |view: &CallCenterView, queue: &str| -> (bool, Option<String>) {
        view.queues
            .iter()
            .find(|m| m.queue == queue)
            .filter(|m| m.paused)
            .map_or((false, None), |m| (true, m.paused_reason.clone()))
    };
    let mut queues: Vec<&str> = old
        .queues
        .iter()
        .chain(&new.queues)
        .map(|m| m.queue.as_str())
        .collect();
    queues.sort_unstable();
    queues.dedup();
    for queue in queues {
        let before = pause_of(old, queue);
        let after = pause_of(new, queue);
        if before != after {
            out.push(HistoryEntry::new(
                at,
                HistoryEvent::Pause {
                    extension: extension.clone(),
                    queue: queue.to_owned(),
                    paused: after.0,
                    reason: after.1,
                },
            ));
        }
    }
    if old.presence != new.presence {
        let (state, subtype, message) = match &new.presence {
            Some(p) => (p.state.clone(), p.subtype.clone(), p.message.clone()),
            None => ("not_set".to_owned(), None, None),
        };
        out.push(HistoryEntry::new(
            at,
            HistoryEvent::Presence {
                extension: extension.clone(),
                state,
                subtype,
                message,
            },
        ));
    }
    if old.call.is_some() != new.call.is_some() {
        out.push(HistoryEntry::new(
            at,
            HistoryEvent::Call {
                extension: extension.clone(),
                on_call: new.call.is_some(),
                queue: new.call.as_ref().and_then(|c| c.queue.clone()),
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    mod call_center {
        use super::*;
        use crate::agent::{AgentPresence, CallInfo, CallState, QueueMembership};

        fn member(queue: &str, paused: bool, reason: Option<&str>) -> QueueMembership {
            QueueMembership {
                queue: queue.into(),
                paused,
                paused_reason: reason.map(str::to_owned),
                paused_since: None,
                penalty: 0,
                calls_taken: 0,
                last_call: None,
                in_call: false,
            }
        }

        fn kinds(entries: &[HistoryEntry]) -> Vec<String> {
            entries
                .iter()
                .map(|e| serde_json::to_string(e).expect("json"))
                .collect()
        }

        #[test]
        fn pauses_presence_and_calls_become_entries() {
            let n = ExtensionNumber::parse("1001").expect("ext");
            let at: Timestamp = "2026-12-01T09:00:00Z".parse().expect("time");
            let old = CallCenterView {
                queues: vec![
                    member("sales", false, None),
                    member("support", true, Some("lunch")),
                    member("billing", true, None),
                ],
                presence: None,
                call: None,
            };
            let mut new = CallCenterView {
                queues: vec![
                    // Paused now; support's reason changed; billing left while paused.
                    member("sales", true, Some("break")),
                    member("support", true, Some("admin")),
                    member("vip", true, None),
                ],
                presence: Some(AgentPresence {
                    state: "away".into(),
                    subtype: None,
                    message: Some("back at 2".into()),
                }),
                call: Some(CallInfo {
                    state: CallState::Up,
                    peer_number: None,
                    peer_name: None,
                    queue: Some("sales".into()),
                    since: at,
                }),
            };
            new.queues[0].calls_taken = 3;
            let got = kinds(&call_center_changes(&n, &old, &new, at));
            let want = [
                r#"{"at":"2026-12-01T09:00:00.000Z","kind":"pause","extension":"1001","queue":"billing","paused":false,"reason":null}"#,
                r#"{"at":"2026-12-01T09:00:00.000Z","kind":"pause","extension":"1001","queue":"sales","paused":true,"reason":"break"}"#,
                r#"{"at":"2026-12-01T09:00:00.000Z","kind":"pause","extension":"1001","queue":"support","paused":true,"reason":"admin"}"#,
                r#"{"at":"2026-12-01T09:00:00.000Z","kind":"pause","extension":"1001","queue":"vip","paused":true,"reason":null}"#,
                r#"{"at":"2026-12-01T09:00:00.000Z","kind":"presence","extension":"1001","state":"away","subtype":null,"message":"back at 2"}"#,
                r#"{"at":"2026-12-01T09:00:00.000Z","kind":"call","extension":"1001","on_call":true,"queue":"sales"}"#,
            ];
            assert_eq!(got, want);
            // Back: presence gone is not_set, the call ended.
            let back = kinds(&call_center_changes(
                &n,
                &new,
                &CallCenterView::default(),
                at,
            ));
            assert!(
                back.iter().any(|e| e.contains(r#""state":"not_set""#)),
                "{back:?}"
            );
            assert!(
                back.iter().any(|e| e.contains(r#""on_call":false"#)),
                "{back:?}"
            );
            assert_eq!(back.len(), 5, "{back:?}");
            // Statistics alone are no history.
            let mut stats = old.clone();
            stats.queues[0].calls_taken = 9;
            stats.queues[0].penalty = 2;
            assert!(call_center_changes(&n, &old, &stats, at).is_empty());
            assert!(call_center_changes(&n, &old, &old, at).is_empty());
        }
    }

    fn ext(n: &str) -> ExtensionNumber {
        ExtensionNumber::parse(n).expect("extension")
    }

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    /// One entry's JSON, and back.
    fn check(entry: HistoryEntry, want: serde_json::Value) {
        let got = serde_json::to_value(&entry).expect("serialize");
        assert_eq!(got, want);
        let back: HistoryEntry = serde_json::from_value(got).expect("parse");
        assert_eq!(back, entry);
    }

    #[test]
    fn json_shapes() {
        let at = t("2026-12-01T09:00:00.123456Z");
        let rows = [
            (
                HistoryEvent::Status {
                    extension: ext("1001"),
                    previous_code: 0,
                    code: 1,
                },
                json!({"kind":"status","extension":"1001","previous_code":0,"code":1,
                       "device_state":"INUSE","status":"online"}),
            ),
            (
                HistoryEvent::Status {
                    extension: ext("1001"),
                    previous_code: 16,
                    code: 4,
                },
                json!({"kind":"status","extension":"1001","previous_code":16,"code":4,
                       "device_state":"UNAVAILABLE","status":"offline"}),
            ),
            (
                HistoryEvent::Pause {
                    extension: ext("1001"),
                    queue: "sales".into(),
                    paused: true,
                    reason: Some("lunch".into()),
                },
                json!({"kind":"pause","extension":"1001","queue":"sales","paused":true,
                       "reason":"lunch"}),
            ),
            (
                HistoryEvent::Presence {
                    extension: ext("1001"),
                    state: "away".into(),
                    subtype: None,
                    message: Some("back at 3".into()),
                },
                json!({"kind":"presence","extension":"1001","state":"away","subtype":null,
                       "message":"back at 3"}),
            ),
            (
                HistoryEvent::Call {
                    extension: ext("1001"),
                    on_call: true,
                    queue: None,
                },
                json!({"kind":"call","extension":"1001","on_call":true,"queue":null}),
            ),
            (HistoryEvent::PbxLinkDown, json!({"kind":"pbx_link_down"})),
            (HistoryEvent::PbxLinkUp, json!({"kind":"pbx_link_up"})),
            (HistoryEvent::ServerStart, json!({"kind":"server_start"})),
            (HistoryEvent::ServerStop, json!({"kind":"server_stop"})),
        ];
        for (event, mut want) in rows {
            if let Some(o) = want.as_object_mut() {
                o.insert("at".into(), json!("2026-12-01T09:00:00.123Z"));
            }
            check(HistoryEntry::new(at, event), want);
        }
    }

    #[test]
    fn old_status_entries_still_read() {
        let old = StatusHistoryEntry {
            extension: ext("1001"),
            previous_code: -1,
            new_code: 0,
            at: t("2026-12-01T09:00:00.500Z"),
        };
        let json = serde_json::to_string(&old).expect("serialize");
        let read: HistoryEntry = serde_json::from_str(&json).expect("old shape reads");
        assert_eq!(read, HistoryEntry::from(old));
        assert_eq!(
            read.event,
            HistoryEvent::Status {
                extension: ext("1001"),
                previous_code: -1,
                code: 0
            }
        );
    }

    #[test]
    fn bad_entries_name_what_is_wrong() {
        let rows = [
            (
                json!({"at":"2026-12-01T09:00:00Z","kind":"pause","extension":"1001","paused":true}),
                "history entry of kind \"pause\": queue is missing",
            ),
            (
                json!({"at":"2026-12-01T09:00:00Z","kind":"status","extension":"1001","code":1}),
                "history entry of kind \"status\": previous_code is missing",
            ),
            (
                json!({"at":"2026-12-01T09:00:00Z","kind":"reboot"}),
                "kind must be one of status, pause, presence, call",
            ),
            (
                json!({"at":"yesterday","kind":"server_start"}),
                "not an RFC 3339 time \"yesterday\"",
            ),
            (
                json!({"at":"2026-12-01T09:00:00Z","kind":"call","extension":"1","on_call":true}),
                "extension must be at least 2 characters",
            ),
        ];
        for (json, want) in rows {
            let err = serde_json::from_value::<HistoryEntry>(json.clone()).expect_err("invalid");
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn a_long_bad_time_is_quoted_by_its_start_and_length() {
        let long = "x".repeat(30_000);
        let e = TimeRange::parse(Some(&long), Some("2026-12-02T00:00:00Z")).expect_err("bad");
        let text = e.to_string();
        assert!(text.len() < 200, "{text}");
        assert!(
            text.ends_with(&format!("{:?}... (30000 characters)", "x".repeat(64))),
            "{text}"
        );
        let short = TimeRange::parse(Some("yesterday"), Some("2026-12-02T00:00:00Z"))
            .expect_err("bad")
            .to_string();
        assert!(short.ends_with("got \"yesterday\""), "{short}");
    }

    #[test]
    fn time_ranges() {
        let ok = TimeRange::parse(
            Some("2026-12-01T00:00:00.123456+01:00"),
            Some("2026-12-02T00:00:00Z"),
        )
        .expect("valid");
        assert_eq!(ok.from(), t("2026-11-30T23:00:00.123Z"));
        assert_eq!(ok.to(), t("2026-12-02T00:00:00Z"));
        // A leap second reads as the next minute's start, which every client can parse.
        let leap = TimeRange::parse(Some("2016-12-31T23:59:60.5Z"), Some("2017-01-01T00:00:01Z"))
            .expect("leap second");
        assert_eq!(format_rfc3339(&leap.from()), "2017-01-01T00:00:00.000Z");
        // Exactly 93 days is allowed.
        TimeRange::parse(Some("2026-01-01T00:00:00Z"), Some("2026-04-04T00:00:00Z"))
            .expect("93 days");

        let rows: [(Option<&str>, Option<&str>, &str, &str); 8] = [
            (
                None,
                Some("2026-12-02T00:00:00Z"),
                "from",
                "from is required (an RFC 3339 time such as 2026-12-01T00:00:00Z)",
            ),
            (
                Some("2026-12-01T00:00:00Z"),
                Some(""),
                "to",
                "to is required (an RFC 3339 time such as 2026-12-01T00:00:00Z)",
            ),
            (
                Some("2026-12-01"),
                Some("2026-12-02T00:00:00Z"),
                "from",
                "from must be an RFC 3339 time such as 2026-12-01T00:00:00Z, got \"2026-12-01\"",
            ),
            (
                Some("2026-12-01T00:00:00Z"),
                Some("2026-12-02T00:00:00 01:00"),
                "to",
                "to must be an RFC 3339 time such as 2026-12-01T00:00:00Z, got \
                 \"2026-12-02T00:00:00 01:00\" (a '+' in a URL must be written %2B)",
            ),
            (
                Some("2026-12-01T00:00:00Z"),
                Some("2026-12-01T00:00:00Z"),
                "to",
                "to must be after from (from is 2026-12-01T00:00:00.000Z, to is \
                 2026-12-01T00:00:00.000Z)",
            ),
            (
                Some("2026-12-02T00:00:00Z"),
                Some("2026-12-01T00:00:00Z"),
                "to",
                "to must be after from (from is 2026-12-02T00:00:00.000Z, to is \
                 2026-12-01T00:00:00.000Z)",
            ),
            (
                Some("2026-01-01T00:00:00Z"),
                Some("2026-04-04T00:00:00.001Z"),
                "to",
                "to is too far after from: the range may span at most 93 days, this one spans 93 \
                 days 00:00:00.001",
            ),
            (
                Some("2026-01-01T00:00:00Z"),
                Some("2026-12-31T12:30:00Z"),
                "to",
                "to is too far after from: the range may span at most 93 days, this one spans 364 \
                 days 12:30:00.000",
            ),
        ];
        for (from, to, field, want) in rows {
            let err = TimeRange::parse(from, to).expect_err(want);
            assert_eq!(err.to_string(), want);
            assert_eq!(err.field(), field, "{want}");
        }
    }
}
