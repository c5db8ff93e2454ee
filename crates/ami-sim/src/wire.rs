//! The bytes the simulator writes, header for header as Asterisk 20.20.1 wrote them in the real
//! captures (`fixtures/ami/real/`). Pure: callers pass the clock readings.
//!
//! Every packet is `Key: Value` lines ending in CRLF and closed by an empty line. Header order
//! and spelling are part of the format: a client that works against these bytes works against
//! the real PBX.
//!
//! This is the workspace's one writer of server-side AMI: the simulator, `--demo` and the
//! end-to-end peer all write through it (clients write actions with `ami-proto`'s encoder).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::states::{DeviceState, ExtensionState};

/// The greeting, a single line with no blank line after it (AMI 9.0.0 is Asterisk 20).
pub const BANNER: &[u8] = b"Asterisk Call Manager/9.0.0\r\n";

/// A packet under construction.
pub struct Packet<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Packet<'a> {
    /// Starts a packet whose first header is `key: value`.
    pub fn start(out: &'a mut Vec<u8>, key: &str, value: &str) -> Packet<'a> {
        let mut p = Packet { out };
        p.header(key, value);
        p
    }

    /// Starts a `Response:` packet, with `ActionID` second when the request carried one.
    pub fn response(out: &'a mut Vec<u8>, kind: &str, action_id: Option<&str>) -> Self {
        let mut p = Packet::start(out, "Response", kind);
        p.action_id(action_id);
        p
    }

    /// Starts a list item or list-complete event: `Event:` then `ActionID` (when given), and
    /// no `Privilege`, as action handlers write them.
    pub fn list_event(out: &'a mut Vec<u8>, event: &str, action_id: Option<&str>) -> Self {
        let mut p = Packet::start(out, "Event", event);
        p.action_id(action_id);
        p
    }

    /// Adds `ActionID: <id>` unless the request had none, which is what Asterisk does.
    pub fn action_id(&mut self, action_id: Option<&str>) -> &mut Self {
        if let Some(id) = action_id {
            self.header("ActionID", id);
        }
        self
    }

    /// Adds one header line.
    pub fn header(&mut self, key: &str, value: &str) -> &mut Self {
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Closes the packet with the empty line.
    pub fn end(self) {
        self.out.extend_from_slice(b"\r\n");
    }
}

/// `Response: Error` with a message.
pub fn error(out: &mut Vec<u8>, action_id: Option<&str>, message: &str) {
    let mut p = Packet::response(out, "Error", action_id);
    p.header("Message", message);
    p.end();
}

/// `Response: Success` with a message.
pub fn success(out: &mut Vec<u8>, action_id: Option<&str>, message: &str) {
    let mut p = Packet::response(out, "Success", action_id);
    p.header("Message", message);
    p.end();
}

/// The answer to an action Asterisk does not know.
pub fn unknown_action(out: &mut Vec<u8>, action_id: Option<&str>, action: &str) {
    let message = format!(
        "Invalid/unknown command: {action}. Use Action: ListCommands to show available commands."
    );
    error(out, action_id, &message);
}

/// The answer to `Logoff`; the server closes the socket after it.
pub fn goodbye(out: &mut Vec<u8>, action_id: Option<&str>) {
    let mut p = Packet::response(out, "Goodbye", action_id);
    p.header("Message", "Thanks for all the fish.");
    p.end();
}

/// `<seconds>.<microseconds>` since the epoch, as in `Timestamp:` of a Ping answer.
pub fn timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    format!("{}.{:06}", since.as_secs(), since.subsec_micros())
}

/// The answer to `Ping`.
pub fn pong(out: &mut Vec<u8>, action_id: Option<&str>, now: SystemTime) {
    let mut p = Packet::response(out, "Success", action_id);
    p.header("Ping", "Pong");
    p.header("Timestamp", &timestamp(now));
    p.end();
}

/// The answer to `Challenge` with `AuthType: MD5`.
pub fn challenge(out: &mut Vec<u8>, action_id: Option<&str>, challenge: &str) {
    let mut p = Packet::response(out, "Success", action_id);
    p.header("Challenge", challenge);
    p.end();
}

/// The answer to `Events`: `Events: On` or `Events: Off`, and no `Message`.
pub fn events_reply(out: &mut Vec<u8>, action_id: Option<&str>, on: bool) {
    let mut p = Packet::response(out, "Success", action_id);
    p.header("Events", if on { "On" } else { "Off" });
    p.end();
}

/// `FullyBooted`, sent right after a login whose session reads `system` events.
pub fn fully_booted(out: &mut Vec<u8>, uptime: Duration) {
    let secs = uptime.as_secs().to_string();
    let mut p = Packet::start(out, "Event", "FullyBooted");
    p.header("Privilege", "system,all");
    p.header("Uptime", &secs);
    p.header("LastReload", &secs);
    p.header("Status", "Fully Booted");
    p.end();
}

/// What `SuccessfulAuth` reports about the session.
pub struct AuthInfo<'a> {
    pub username: &'a str,
    pub session_id: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub now: chrono::DateTime<chrono::Utc>,
}

fn ami_address(addr: SocketAddr) -> String {
    let family = if addr.is_ipv4() { "IPV4" } else { "IPV6" };
    format!("{family}/TCP/{}/{}", addr.ip(), addr.port())
}

/// The security event a `read=all` user gets for its own login.
pub fn successful_auth(out: &mut Vec<u8>, info: &AuthInfo<'_>) {
    let tv = info.now.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string();
    let mut p = Packet::start(out, "Event", "SuccessfulAuth");
    p.header("Privilege", "security,all");
    p.header("EventTV", &tv);
    p.header("Severity", "Informational");
    p.header("Service", "AMI");
    p.header("EventVersion", "1");
    p.header("AccountID", info.username);
    p.header("SessionID", &format!("{:#x}", info.session_id));
    p.header("LocalAddress", &ami_address(info.local));
    p.header("RemoteAddress", &ami_address(info.remote));
    p.header("UsingPassword", "0");
    p.header("SessionTV", &tv);
    p.end();
}

/// `Shutdown`, sent to `system` readers before the server closes their sockets.
pub fn shutdown(out: &mut Vec<u8>) {
    let mut p = Packet::start(out, "Event", "Shutdown");
    p.header("Privilege", "system,all");
    p.header("Shutdown", "Cleanly");
    p.header("Restart", "False");
    p.end();
}

/// One extension's fields, shared by the event, the list item and the `ExtensionState` answer.
pub struct Hinted<'a> {
    pub exten: &'a str,
    pub context: &'a str,
    pub hint: &'a str,
    pub state: ExtensionState,
}

impl Hinted<'_> {
    fn fields(&self, p: &mut Packet<'_>) {
        p.header("Exten", self.exten);
        p.header("Context", self.context);
        p.header("Hint", self.hint);
        p.header("Status", &self.state.code().to_string());
        p.header("StatusText", self.state.status_text());
    }
}

/// The broadcast `ExtensionStatus` event (`Privilege: call,all`).
pub fn extension_status(out: &mut Vec<u8>, ext: &Hinted<'_>) {
    let mut p = Packet::start(out, "Event", "ExtensionStatus");
    p.header("Privilege", "call,all");
    ext.fields(&mut p);
    p.end();
}

/// The broadcast `DeviceStateChange` event (`Privilege: call,all`).
pub fn device_state_change(out: &mut Vec<u8>, device: &str, state: DeviceState) {
    let mut p = Packet::start(out, "Event", "DeviceStateChange");
    p.header("Privilege", "call,all");
    p.header("Device", device);
    p.header("State", state.as_str());
    p.end();
}

/// The first packet of a list answer.
pub fn list_start(out: &mut Vec<u8>, action_id: Option<&str>, message: &str) {
    let mut p = Packet::response(out, "Success", action_id);
    p.header("EventList", "start");
    p.header("Message", message);
    p.end();
}

/// One `ExtensionStatus` item of an `ExtensionStateList` answer.
pub fn extension_status_item(out: &mut Vec<u8>, action_id: Option<&str>, ext: &Hinted<'_>) {
    let mut p = Packet::list_event(out, "ExtensionStatus", action_id);
    ext.fields(&mut p);
    p.end();
}

/// One `DeviceStateChange` item of a `DeviceStateList` answer.
pub fn device_state_item(
    out: &mut Vec<u8>,
    action_id: Option<&str>,
    device: &str,
    state: DeviceState,
) {
    let mut p = Packet::list_event(out, "DeviceStateChange", action_id);
    p.header("Device", device);
    p.header("State", state.as_str());
    p.end();
}

/// The event that closes a list answer; `ListItems` counts the items only.
pub fn list_complete(out: &mut Vec<u8>, event: &str, action_id: Option<&str>, items: usize) {
    let mut p = Packet::list_event(out, event, action_id);
    p.header("EventList", "Complete");
    p.header("ListItems", &items.to_string());
    p.end();
}

/// The single-packet answer to `ExtensionState`.
pub fn extension_state_reply(out: &mut Vec<u8>, action_id: Option<&str>, ext: &Hinted<'_>) {
    let mut p = Packet::response(out, "Success", action_id);
    p.header("Message", "Extension Status");
    ext.fields(&mut p);
    p.end();
}

/// A queue member's fields, shared by `QueueMember*` events and `QueueMember` list items.
pub struct MemberFields<'a> {
    pub queue: &'a str,
    pub name: &'a str,
    pub interface: &'a str,
    pub state_interface: &'a str,
    pub penalty: u32,
    pub calls_taken: u64,
    pub last_call: u64,
    pub last_pause: u64,
    pub login_time: u64,
    pub in_call: bool,
    /// The state interface's device state (`Status:` is `ast_device_state`'s number).
    pub status: DeviceState,
    pub paused: bool,
    pub reason: &'a str,
}

impl MemberFields<'_> {
    fn tail(&self, p: &mut Packet<'_>) {
        p.header("StateInterface", self.state_interface);
        p.header("Membership", "dynamic");
        p.header("Penalty", &self.penalty.to_string());
        p.header("CallsTaken", &self.calls_taken.to_string());
        p.header("LastCall", &self.last_call.to_string());
        p.header("LastPause", &self.last_pause.to_string());
        p.header("LoginTime", &self.login_time.to_string());
        p.header("InCall", flag(self.in_call));
        p.header("Status", &self.status.number().to_string());
        p.header("Paused", flag(self.paused));
        p.header("PausedReason", self.reason);
    }
}

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

/// A `QueueMemberAdded`, `QueueMemberRemoved`, `QueueMemberStatus`, `QueueMemberPause` or
/// `QueueMemberPenalty` event (`Privilege: agent,all`).
pub fn queue_member_event(out: &mut Vec<u8>, event: &str, m: &MemberFields<'_>) {
    let mut p = Packet::start(out, "Event", event);
    p.header("Privilege", "agent,all");
    p.header("Queue", m.queue);
    p.header("MemberName", m.name);
    p.header("Interface", m.interface);
    m.tail(&mut p);
    p.header("Ringinuse", "0");
    p.header("Wrapuptime", "0");
    p.end();
}

/// One `QueueMember` item of a `QueueStatus` answer: `Name`/`Location`, no `Ringinuse`, and
/// `ActionID` last.
pub fn queue_member_item(out: &mut Vec<u8>, action_id: Option<&str>, m: &MemberFields<'_>) {
    let mut p = Packet::start(out, "Event", "QueueMember");
    p.header("Queue", m.queue);
    p.header("Name", m.name);
    p.header("Location", m.interface);
    m.tail(&mut p);
    p.header("Wrapuptime", "0");
    p.action_id(action_id);
    p.end();
}

/// A queue's counters, for `QueueParams`.
pub struct QueueFields<'a> {
    pub queue: &'a str,
    pub strategy: &'a str,
    pub calls: usize,
    pub holdtime: u64,
    pub talktime: u64,
    pub completed: u64,
    pub abandoned: u64,
    pub service_level: u64,
    pub sl_perf: f64,
    pub sl_perf2: f64,
}

/// One `QueueParams` item of a `QueueStatus` answer (`ActionID` last).
pub fn queue_params_item(out: &mut Vec<u8>, action_id: Option<&str>, q: &QueueFields<'_>) {
    let mut p = Packet::start(out, "Event", "QueueParams");
    p.header("Queue", q.queue);
    p.header("Max", "0");
    p.header("Strategy", q.strategy);
    p.header("Calls", &q.calls.to_string());
    p.header("Holdtime", &q.holdtime.to_string());
    p.header("TalkTime", &q.talktime.to_string());
    p.header("Completed", &q.completed.to_string());
    p.header("Abandoned", &q.abandoned.to_string());
    p.header("ServiceLevel", &q.service_level.to_string());
    // `%2.1f` in app_queue.
    p.header("ServicelevelPerf", &format!("{:.1}", q.sl_perf));
    p.header("ServicelevelPerf2", &format!("{:.1}", q.sl_perf2));
    p.header("Weight", "0");
    p.action_id(action_id);
    p.end();
}

/// One `QueueSummary` item (`ActionID` last).
pub fn queue_summary_item(
    out: &mut Vec<u8>,
    action_id: Option<&str>,
    queue: &str,
    counts: &[(&str, u64)],
) {
    let mut p = Packet::start(out, "Event", "QueueSummary");
    p.header("Queue", queue);
    for (k, v) in counts {
        p.header(k, &v.to_string());
    }
    p.action_id(action_id);
    p.end();
}

/// One channel as Asterisk's `ast_manager_build_channel_state_string` writes it.
pub struct ChannelFields<'a> {
    pub channel: &'a str,
    /// `ast_channel_state`: 4 Ring, 5 Ringing, 6 Up.
    pub state: u8,
    pub caller_num: &'a str,
    pub caller_name: &'a str,
    pub connected_num: &'a str,
    pub connected_name: &'a str,
    pub context: &'a str,
    pub exten: &'a str,
    pub priority: u32,
    pub uniqueid: &'a str,
    pub linkedid: &'a str,
}

/// `ast_state2str()`.
pub fn channel_state_desc(state: u8) -> &'static str {
    match state {
        0 => "Down",
        1 => "Rsrvd",
        2 => "OffHook",
        3 => "Dialing",
        4 => "Ring",
        5 => "Ringing",
        6 => "Up",
        7 => "Busy",
        8 => "Dialing Offhook",
        9 => "Pre-ring",
        _ => "Unknown",
    }
}

/// Caller ID as events print it: empty is `<unknown>`.
fn or_unknown(v: &str) -> &str {
    if v.is_empty() { "<unknown>" } else { v }
}

impl ChannelFields<'_> {
    /// The snapshot headers, each name prefixed (`""` or `"Dest"`).
    fn write(&self, p: &mut Packet<'_>, prefix: &str) {
        let h = |p: &mut Packet<'_>, k: &str, v: &str| {
            p.header(&format!("{prefix}{k}"), v);
        };
        h(p, "Channel", self.channel);
        h(p, "ChannelState", &self.state.to_string());
        h(p, "ChannelStateDesc", channel_state_desc(self.state));
        h(p, "CallerIDNum", or_unknown(self.caller_num));
        h(p, "CallerIDName", &escape_c(or_unknown(self.caller_name)));
        h(p, "ConnectedLineNum", or_unknown(self.connected_num));
        h(
            p,
            "ConnectedLineName",
            &escape_c(or_unknown(self.connected_name)),
        );
        h(p, "Language", "en");
        h(p, "AccountCode", "");
        h(p, "Context", self.context);
        h(p, "Exten", self.exten);
        h(p, "Priority", &self.priority.to_string());
        h(p, "Uniqueid", self.uniqueid);
        h(p, "Linkedid", self.linkedid);
    }
}

/// `Newchannel`, `Newstate` or `Hangup` (with `Cause`, `Cause-txt`) for one channel
/// (`Privilege: call,all`).
pub fn channel_event(
    out: &mut Vec<u8>,
    event: &str,
    c: &ChannelFields<'_>,
    cause: Option<(u16, &str)>,
) {
    let mut p = Packet::start(out, "Event", event);
    p.header("Privilege", "call,all");
    c.write(&mut p, "");
    if let Some((code, text)) = cause {
        p.header("Cause", &code.to_string());
        p.header("Cause-txt", text);
    }
    p.end();
}

/// `DialBegin` (`DialString`) or `DialEnd` (`DialStatus`) from `caller` to `dest`.
pub fn dial_event(
    out: &mut Vec<u8>,
    event: &str,
    caller: &ChannelFields<'_>,
    dest: &ChannelFields<'_>,
    tail: (&str, &str),
) {
    let mut p = Packet::start(out, "Event", event);
    p.header("Privilege", "call,all");
    caller.write(&mut p, "");
    dest.write(&mut p, "Dest");
    p.header(tail.0, tail.1);
    p.end();
}

/// `BridgeEnter` of a channel into a basic two-party bridge.
pub fn bridge_enter(out: &mut Vec<u8>, bridge: &str, count: u32, c: &ChannelFields<'_>) {
    let mut p = Packet::start(out, "Event", "BridgeEnter");
    p.header("Privilege", "call,all");
    p.header("BridgeUniqueid", bridge);
    p.header("BridgeType", "basic");
    p.header("BridgeTechnology", "simple_bridge");
    p.header("BridgeCreator", "<unknown>");
    p.header("BridgeName", "<unknown>");
    p.header("BridgeNumChannels", &count.to_string());
    p.header("BridgeVideoSourceMode", "none");
    c.write(&mut p, "");
    p.end();
}

/// `QueueCallerJoin`, `QueueCallerLeave` (`tail`: `Position`/`Count` in Asterisk's order) or
/// `QueueCallerAbandon` (`Position`, `OriginalPosition`, `HoldTime`); `Privilege: agent,all`.
pub fn queue_caller_event(
    out: &mut Vec<u8>,
    event: &str,
    caller: &ChannelFields<'_>,
    queue: &str,
    tail: &[(&str, u64)],
) {
    let mut p = Packet::start(out, "Event", event);
    p.header("Privilege", "agent,all");
    caller.write(&mut p, "");
    p.header("Queue", queue);
    for (k, v) in tail {
        p.header(k, &v.to_string());
    }
    p.end();
}

/// `AgentCalled`, `AgentConnect`, `AgentComplete`, `AgentRingNoAnswer` or `AgentDump`: the
/// caller's channel, the member's channel (`Dest...`), `Queue`, `Interface`, `MemberName`,
/// then the event's times (and `Reason` of `AgentComplete`); `Privilege: agent,all`.
pub fn agent_event(
    out: &mut Vec<u8>,
    event: &str,
    caller: &ChannelFields<'_>,
    agent: &ChannelFields<'_>,
    queue: &str,
    member: (&str, &str),
    tail: &[(&str, String)],
) {
    let mut p = Packet::start(out, "Event", event);
    p.header("Privilege", "agent,all");
    caller.write(&mut p, "");
    agent.write(&mut p, "Dest");
    p.header("Queue", queue);
    p.header("Interface", member.0);
    p.header("MemberName", member.1);
    for (k, v) in tail {
        p.header(k, v);
    }
    p.end();
}

/// One `QueueEntry` item of a `QueueStatus` answer (`ActionID` last).
pub fn queue_entry_item(
    out: &mut Vec<u8>,
    action_id: Option<&str>,
    queue: &str,
    position: u32,
    c: &ChannelFields<'_>,
    wait: u64,
) {
    let mut p = Packet::start(out, "Event", "QueueEntry");
    p.header("Queue", queue);
    p.header("Position", &position.to_string());
    p.header("Channel", c.channel);
    p.header("Uniqueid", c.uniqueid);
    p.header("CallerIDNum", or_unknown(c.caller_num));
    p.header("CallerIDName", or_unknown(c.caller_name));
    p.header("ConnectedLineNum", or_unknown(c.connected_num));
    p.header("ConnectedLineName", or_unknown(c.connected_name));
    p.header("Wait", &wait.to_string());
    p.header("Priority", "0");
    p.action_id(action_id);
    p.end();
}

/// One `CoreShowChannel` item (`ActionID` second, no `Privilege`, raw caller ID).
pub fn core_show_channel_item(
    out: &mut Vec<u8>,
    action_id: Option<&str>,
    c: &ChannelFields<'_>,
    application: (&str, &str),
    duration_s: u64,
    bridge: &str,
) {
    let mut p = Packet::list_event(out, "CoreShowChannel", action_id);
    p.header("Channel", c.channel);
    p.header("ChannelState", &c.state.to_string());
    p.header("ChannelStateDesc", channel_state_desc(c.state));
    p.header("CallerIDNum", c.caller_num);
    p.header("CallerIDName", c.caller_name);
    p.header("ConnectedLineNum", c.connected_num);
    p.header("ConnectedLineName", c.connected_name);
    p.header("Language", "en");
    p.header("AccountCode", "");
    p.header("Context", c.context);
    p.header("Exten", c.exten);
    p.header("Priority", &c.priority.to_string());
    p.header("Uniqueid", c.uniqueid);
    p.header("Linkedid", c.linkedid);
    p.header("Application", application.0);
    p.header("ApplicationData", application.1);
    let d = duration_s;
    p.header(
        "Duration",
        &format!("{:02}:{:02}:{:02}", d / 3600, d / 60 % 60, d % 60),
    );
    p.header("BridgeId", bridge);
    p.end();
}

/// Escapes like `ast_escape_c()`: backslash, double quote and control characters.
pub fn escape_c(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains([
        '\\', '"', '\'', '?', '\x07', '\x08', '\x0c', '\n', '\r', '\t', '\x0b',
    ]) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            '\\' | '"' | '\'' | '?' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A presence value, as the presence events report it.
pub struct PresenceFields<'a> {
    pub state: &'a str,
    pub subtype: &'a str,
    pub message: &'a str,
}

/// The broadcast `PresenceStateChange` (sent for every write; Subtype and Message C-escaped).
pub fn presence_state_change(out: &mut Vec<u8>, presentity: &str, v: &PresenceFields<'_>) {
    let mut p = Packet::start(out, "Event", "PresenceStateChange");
    p.header("Privilege", "call,all");
    p.header("Presentity", presentity);
    p.header("Status", v.state);
    p.header("Subtype", &escape_c(v.subtype));
    p.header("Message", &escape_c(v.message));
    p.end();
}

/// One `PresenceStateChange` item of a `PresenceStateList` answer (`ActionID` second).
pub fn presence_state_item(
    out: &mut Vec<u8>,
    action_id: Option<&str>,
    presentity: &str,
    v: &PresenceFields<'_>,
) {
    let mut p = Packet::list_event(out, "PresenceStateChange", action_id);
    p.header("Presentity", presentity);
    p.header("Status", v.state);
    p.header("Subtype", &escape_c(v.subtype));
    p.header("Message", &escape_c(v.message));
    p.end();
}

/// The broadcast `PresenceStatus` of a hint that includes the provider (raw text, only when
/// the presence really changed).
pub fn presence_status(
    out: &mut Vec<u8>,
    exten: &str,
    context: &str,
    hint: &str,
    v: &PresenceFields<'_>,
) {
    let mut p = Packet::start(out, "Event", "PresenceStatus");
    p.header("Privilege", "call,all");
    p.header("Exten", exten);
    p.header("Context", context);
    p.header("Hint", hint);
    p.header("Status", v.state);
    p.header("Subtype", v.subtype);
    p.header("Message", v.message);
    p.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn packets_are_crlf_lines_closed_by_an_empty_line() {
        let got = text(|o| goodbye(o, Some("a-3")));
        assert_eq!(
            got,
            "Response: Goodbye\r\nActionID: a-3\r\nMessage: Thanks for all the fish.\r\n\r\n"
        );
        // Without an ActionID in the request there is none in the answer.
        let got = text(|o| unknown_action(o, None, "AlsoNoSuchAction"));
        assert_eq!(
            got,
            "Response: Error\r\nMessage: Invalid/unknown command: AlsoNoSuchAction. Use Action: ListCommands to show available commands.\r\n\r\n"
        );
    }

    #[test]
    fn timestamps_have_six_digits_of_microseconds() {
        let t = UNIX_EPOCH + Duration::new(1_795_464_200, 629_248_123);
        assert_eq!(timestamp(t), "1795464200.629248");
        let t = UNIX_EPOCH + Duration::new(5, 1_000);
        assert_eq!(timestamp(t), "5.000001");
    }

    #[test]
    fn successful_auth_fields() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T20:03:20.127Z")
            .expect("valid")
            .with_timezone(&chrono::Utc);
        let info = AuthInfo {
            username: "monitor",
            session_id: 0x5644_0e9d_e620,
            local: "127.0.0.1:5038".parse().expect("addr"),
            remote: "127.0.0.1:46710".parse().expect("addr"),
            now,
        };
        let got = text(|o| successful_auth(o, &info));
        let want = "Event: SuccessfulAuth\r\nPrivilege: security,all\r\nEventTV: 2026-11-23T20:03:20.127+0000\r\nSeverity: Informational\r\nService: AMI\r\nEventVersion: 1\r\nAccountID: monitor\r\nSessionID: 0x56440e9de620\r\nLocalAddress: IPV4/TCP/127.0.0.1/5038\r\nRemoteAddress: IPV4/TCP/127.0.0.1/46710\r\nUsingPassword: 0\r\nSessionTV: 2026-11-23T20:03:20.127+0000\r\n\r\n";
        assert_eq!(got, want);
    }
}
