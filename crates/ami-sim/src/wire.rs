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
