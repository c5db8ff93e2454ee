//! The action encoder: builds `Action:` requests and writes them in wire form.
//!
//! Encoding refuses CR and LF in names, keys and values, so no caller-supplied text can inject a
//! header or end the action early; an action never contains a blank line.

use std::fmt;

use md5::{Digest, Md5};

use crate::error::EncodeError;
use crate::packet::is_sensitive;

/// A manager password. `Debug` and `Display` print `***`, so it cannot leak into logs by
/// accident; [`Secret::expose`] is the one deliberate way to read it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for the login step only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The MD5 login key: lower-case hex of MD5(challenge ‖ secret), as Asterisk computes it.
pub fn md5_key(challenge: &str, secret: &Secret) -> String {
    let mut hasher = Md5::new();
    hasher.update(challenge.as_bytes());
    hasher.update(secret.expose().as_bytes());
    let digest = hasher.finalize();
    let mut out = String::with_capacity(32);
    for byte in digest {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte & 0x0f));
    }
    out
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

/// One AMI request: the action name and its headers in order, duplicates allowed.
///
/// Build it with the constructors for the actions this project uses, or [`Action::new`] plus
/// [`Action::header`] for any other. Nothing is checked until [`Action::encode`], which refuses
/// line breaks with a typed error.
#[derive(Clone, PartialEq, Eq)]
pub struct Action {
    name: String,
    headers: Vec<(String, String)>,
}

impl Action {
    /// A custom action with no headers yet.
    pub fn new(name: impl Into<String>) -> Action {
        Action {
            name: name.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header (builder style). Keys may repeat; order is kept.
    #[must_use]
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Action {
        self.push_header(key, value);
        self
    }

    /// Adds a header in place.
    pub fn push_header(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.headers.push((key.into(), value.into()));
    }

    /// The action name, e.g. `Ping`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The headers after `Action:`, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The first value of `key` (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// `Login` with a plain `Secret`. Add `Events` with [`Action::header`] to choose the event mask.
    pub fn login(username: &str, secret: &Secret) -> Action {
        Action::new("Login")
            .header("Username", username)
            .header("Secret", secret.expose())
    }

    /// `Challenge` with `AuthType: MD5`, the first step of an MD5 login.
    pub fn challenge_md5() -> Action {
        Action::new("Challenge").header("AuthType", "MD5")
    }

    /// `Login` with `AuthType: MD5` and `Key` = MD5(challenge ‖ secret), the second step.
    pub fn login_md5(username: &str, challenge: &str, secret: &Secret) -> Action {
        Action::new("Login")
            .header("AuthType", "MD5")
            .header("Username", username)
            .header("Key", md5_key(challenge, secret))
    }

    /// `Ping`, answered with `Ping: Pong`.
    pub fn ping() -> Action {
        Action::new("Ping")
    }

    /// `Events` with an event mask such as `on`, `off` or `call,system`.
    pub fn events(mask: &str) -> Action {
        Action::new("Events").header("EventMask", mask)
    }

    /// `ExtensionStateList`: every hint as `ExtensionStatus` list items.
    pub fn extension_state_list() -> Action {
        Action::new("ExtensionStateList")
    }

    /// `DeviceStateList`: every device as `DeviceStateChange` list items.
    pub fn device_state_list() -> Action {
        Action::new("DeviceStateList")
    }

    /// `ExtensionState` for one extension in one context.
    pub fn extension_state(exten: &str, context: &str) -> Action {
        Action::new("ExtensionState")
            .header("Exten", exten)
            .header("Context", context)
    }

    /// `Command`: runs a CLI command.
    pub fn command(command: &str) -> Action {
        Action::new("Command").header("Command", command)
    }

    /// `Logoff`, answered with `Response: Goodbye` before the server closes the connection.
    pub fn logoff() -> Action {
        Action::new("Logoff")
    }

    /// Checks the action without writing it.
    pub fn validate(&self) -> Result<(), EncodeError> {
        if self.name.is_empty() {
            return Err(EncodeError::EmptyActionName);
        }
        if has_line_break(&self.name) {
            return Err(EncodeError::LineBreakInActionName);
        }
        for (index, (key, value)) in self.headers.iter().enumerate() {
            if key.is_empty() {
                return Err(EncodeError::EmptyKey { index });
            }
            if key.bytes().any(|b| b == b'\r' || b == b'\n' || b == b':') {
                return Err(EncodeError::InvalidKey { key: key.clone() });
            }
            if has_line_break(value) {
                return Err(EncodeError::LineBreakInValue { key: key.clone() });
            }
        }
        Ok(())
    }

    /// Appends the action in wire form (CRLF line ends, closing blank line) to `out`.
    /// On error `out` is left unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.encode_inner(None, out)
    }

    /// Like [`Action::encode`], with `ActionID: action_id` right after the `Action` line.
    /// Refuses an action that already carries its own `ActionID`.
    pub fn encode_with_action_id(
        &self,
        action_id: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        if self.get("ActionID").is_some() {
            return Err(EncodeError::DuplicateActionId);
        }
        if has_line_break(action_id) {
            return Err(EncodeError::LineBreakInValue {
                key: "ActionID".to_owned(),
            });
        }
        self.encode_inner(Some(action_id), out)
    }

    /// The wire form as a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    fn encode_inner(&self, action_id: Option<&str>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.validate()?;
        put(out, "Action", &self.name);
        if let Some(id) = action_id {
            put(out, "ActionID", id);
        }
        for (key, value) in &self.headers {
            put(out, key, value);
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

fn has_line_break(s: &str) -> bool {
    s.bytes().any(|b| b == b'\r' || b == b'\n')
}

fn put(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

impl fmt::Debug for Action {
    /// Prints the action with the values of `Secret` and `Key` replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        list.entry(&format_args!("Action: {}", self.name));
        for (key, value) in &self.headers {
            if is_sensitive(key.as_bytes()) {
                list.entry(&format_args!("{key}: ***"));
            } else {
                list.entry(&format_args!("{key}: {value}"));
            }
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Packet;
    use proptest::prelude::*;

    #[test]
    fn md5_key_matches_fixture_c() {
        assert_eq!(
            md5_key("139199246", &Secret::new("monitorpass")),
            "d9ef8250de2451aec579721b4f8e6763"
        );
    }

    fn check(action: Action, id: Option<&str>, expected: Result<&str, EncodeError>) {
        let mut out = b"keep".to_vec();
        let got = match id {
            Some(id) => action.encode_with_action_id(id, &mut out),
            None => action.encode(&mut out),
        };
        match expected {
            Ok(wire) => {
                assert_eq!(got, Ok(()));
                assert_eq!(String::from_utf8_lossy(&out[4..]), wire);
            }
            Err(e) => {
                assert_eq!(got, Err(e));
                assert_eq!(out, b"keep", "output must be untouched on error");
            }
        }
    }

    #[test]
    fn encoding_table() {
        let secret = Secret::new("monitorpass");
        check(
            Action::ping(),
            Some("es-1-1"),
            Ok("Action: Ping\r\nActionID: es-1-1\r\n\r\n"),
        );
        check(
            Action::login("monitor", &secret).header("Events", "off"),
            Some("a-1"),
            Ok(
                "Action: Login\r\nActionID: a-1\r\nUsername: monitor\r\nSecret: monitorpass\r\nEvents: off\r\n\r\n",
            ),
        );
        check(
            Action::login_md5("monitor", "139199246", &secret),
            None,
            Ok(
                "Action: Login\r\nAuthType: MD5\r\nUsername: monitor\r\nKey: d9ef8250de2451aec579721b4f8e6763\r\n\r\n",
            ),
        );
        check(
            Action::challenge_md5(),
            None,
            Ok("Action: Challenge\r\nAuthType: MD5\r\n\r\n"),
        );
        check(
            Action::events("on"),
            None,
            Ok("Action: Events\r\nEventMask: on\r\n\r\n"),
        );
        check(
            Action::extension_state_list(),
            None,
            Ok("Action: ExtensionStateList\r\n\r\n"),
        );
        check(
            Action::device_state_list(),
            None,
            Ok("Action: DeviceStateList\r\n\r\n"),
        );
        check(
            Action::extension_state("1001", "agents"),
            None,
            Ok("Action: ExtensionState\r\nExten: 1001\r\nContext: agents\r\n\r\n"),
        );
        check(
            Action::command("core show hints"),
            None,
            Ok("Action: Command\r\nCommand: core show hints\r\n\r\n"),
        );
        check(Action::logoff(), None, Ok("Action: Logoff\r\n\r\n"));
        check(
            Action::new("Setvar")
                .header("Variable", "A")
                .header("Variable", "B")
                .header("Value", ""),
            None,
            Ok("Action: Setvar\r\nVariable: A\r\nVariable: B\r\nValue: \r\n\r\n"),
        );
        check(Action::new(""), None, Err(EncodeError::EmptyActionName));
        check(
            Action::new("Ping\r\nAction: Logoff"),
            None,
            Err(EncodeError::LineBreakInActionName),
        );
        check(
            Action::new("Setvar").header("Value", "x\r\n\r\nAction: Originate"),
            None,
            Err(EncodeError::LineBreakInValue {
                key: "Value".into(),
            }),
        );
        check(
            Action::new("Setvar").header("Value", "x\ny"),
            None,
            Err(EncodeError::LineBreakInValue {
                key: "Value".into(),
            }),
        );
        check(
            Action::new("Setvar").header("Va\rlue", "x"),
            None,
            Err(EncodeError::InvalidKey {
                key: "Va\rlue".into(),
            }),
        );
        check(
            Action::new("Setvar").header("A:B", "x"),
            None,
            Err(EncodeError::InvalidKey { key: "A:B".into() }),
        );
        check(
            Action::new("Setvar").header("", "x"),
            None,
            Err(EncodeError::EmptyKey { index: 0 }),
        );
        check(
            Action::ping().header("actionid", "mine"),
            Some("es-1"),
            Err(EncodeError::DuplicateActionId),
        );
        check(
            Action::ping(),
            Some("es\n1"),
            Err(EncodeError::LineBreakInValue {
                key: "ActionID".into(),
            }),
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        let login = Action::login("u", &secret);
        let md5 = Action::login_md5("u", "1", &secret);
        let text = format!("{login:?} {md5:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains(&md5_key("1", &secret)), "{text}");
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        // Any text without CR, LF or colon, at least one character.
        "[^\r\n:]{1,20}"
    }

    fn value_strategy() -> impl Strategy<Value = String> {
        "[^\r\n]{0,40}"
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(
            name in "[^\r\n]{1,20}",
            headers in proptest::collection::vec((key_strategy(), value_strategy()), 0..12),
        ) {
            let mut action = Action::new(name.clone());
            for (k, v) in &headers {
                action.push_header(k.clone(), v.clone());
            }
            let wire = action.to_bytes().expect("valid action");
            let packet = Packet::parse(&wire).expect("encoded action parses");
            let got: Vec<(String, String)> =
                packet.headers().map(|h| (h.key().into_owned(), h.value().into_owned())).collect();
            let mut want = vec![("Action".to_owned(), name)];
            want.extend(headers);
            prop_assert_eq!(got, want);
            prop_assert_eq!(packet.kind(), crate::Kind::Action);
        }
    }
}
