//! `domain`: what an extension is and what an observed Asterisk state means for it.
//!
//! This crate owns:
//! * the extension record ([`Extension`]) with the exact field names of the public interface;
//! * validated field types ([`ExtensionNumber`], [`AgentName`], [`Department`], [`RecordId`])
//!   whose constructors name the field and the rule that was broken;
//! * the user-edit types ([`NewExtension`], [`ExtensionPatch`]) that cannot carry status fields,
//!   and [`JsonObject`], which reads their JSON naming members given more than once;
//! * the call-center fields of the record ([`QueueMembership`], [`AgentPresence`], [`CallInfo`]),
//!   the user's [`PauseReason`], and the pure call-center tracker ([`callcenter::Tracker`]);
//! * the complete Asterisk mapping ([`ExtensionState`], [`DeviceState`], [`Presence`]);
//! * the pure status-change function ([`change::decide`]);
//! * the history entry both stores persist ([`HistoryEntry`]), the validated [`TimeRange`] of the
//!   history and analytics endpoints, and the pure time-in-state computation
//!   ([`analytics::time_in_state`]);
//! * with feature `ts`, TypeScript declarations of the record (`ts_rs::TS`), from which the
//!   dashboard's types are generated.
//!
//! It deliberately does no IO, keeps no clock of its own (callers pass the time), and knows
//! nothing of AMI framing, storage or transport. It depends on no other workspace crate.

pub mod agent;
pub mod analytics;
pub mod callcenter;
pub mod change;
pub mod edit;
pub mod fields;
pub mod history;
pub mod json;
pub mod pbx_text;
pub mod record;
pub mod status;
#[cfg(feature = "ts")]
mod ts;

pub use agent::{AgentPresence, CallInfo, CallState, PauseReason, QueueMembership};
pub use analytics::{
    Availability, DepartmentTimes, ExtensionTimes, StateTimes, TimeInState, TimeInStateQuery,
    prior_entries, time_in_state,
};
pub use change::{NoWrite, Observation, Source, StatusChange, StatusWrite, decide};
pub use edit::{ExtensionPatch, FieldErrors, NewExtension, SERVER_FIELDS};
pub use fields::{
    AgentName, Department, ExtensionNumber, FieldError, RecordId, Rule, is_forbidden_char,
};
pub use history::{Bound, HistoryEntry, HistoryEvent, RangeError, TimeRange};
pub use json::JsonObject;
pub use record::{
    Extension, ExtensionFilter, StatusHistoryEntry, StatusView, Timestamp, format_rfc3339, now,
};
pub use status::{DeviceState, ExtensionState, Presence};
