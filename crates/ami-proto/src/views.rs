//! Typed views over the packets this project acts on: responses, list completion,
//! `ExtensionStatus`, `DeviceStateChange` and `FullyBooted`.
//!
//! A view borrows its packet and never copies valid UTF-8. Unknown headers are ignored, so new
//! Asterisk versions that add fields do not break them; unknown events stay raw packets.

use std::borrow::Cow;

use crate::error::ViewError;
use crate::packet::{Kind, Packet};

/// A `Response:` packet.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    packet: &'a Packet,
}

impl<'a> Response<'a> {
    /// The view, or `None` when the packet is not a response.
    pub fn from_packet(packet: &'a Packet) -> Option<Response<'a>> {
        (packet.kind() == Kind::Response).then_some(Response { packet })
    }

    /// The `Response` value: `Success`, `Error`, `Goodbye`, `Follows`...
    pub fn status(&self) -> Cow<'a, str> {
        self.packet.name().unwrap_or(Cow::Borrowed(""))
    }

    /// True for `Success`, `Goodbye` (Logoff), `Follows` (legacy Command) and `Pong` (1.4 Ping).
    pub fn is_success(&self) -> bool {
        ["Success", "Goodbye", "Follows", "Pong"]
            .iter()
            .any(|s| self.packet.is(Kind::Response, s))
    }

    /// True for `Response: Error`.
    pub fn is_error(&self) -> bool {
        self.packet.is(Kind::Response, "Error")
    }

    /// The first `Message` header.
    pub fn message(&self) -> Option<Cow<'a, str>> {
        self.packet.get("Message")
    }

    /// The first `ActionID` header; absent when the request had none.
    pub fn action_id(&self) -> Option<Cow<'a, str>> {
        self.packet.action_id()
    }

    /// True when an event list follows (`EventList: start`, compared without regard to case,
    /// because FAXSessions writes `Start`).
    pub fn is_list_start(&self) -> bool {
        self.packet.has("EventList", "start")
    }

    /// The packet behind the view.
    pub fn packet(&self) -> &'a Packet {
        self.packet
    }
}

/// The event that ends an event list: `EventList: Complete`, usually named `<Something>Complete`.
#[derive(Debug, Clone, Copy)]
pub struct ListComplete<'a> {
    packet: &'a Packet,
}

impl<'a> ListComplete<'a> {
    /// The view, or `None` when the packet is not a list-complete event.
    pub fn from_packet(packet: &'a Packet) -> Option<ListComplete<'a>> {
        (packet.kind() == Kind::Event && packet.has("EventList", "Complete"))
            .then_some(ListComplete { packet })
    }

    /// The event name, e.g. `ExtensionStateListComplete`.
    pub fn name(&self) -> Cow<'a, str> {
        self.packet.name().unwrap_or(Cow::Borrowed(""))
    }

    /// The ActionID of the list.
    pub fn action_id(&self) -> Option<Cow<'a, str>> {
        self.packet.action_id()
    }

    /// The `ListItems` count the server announces, when present and numeric.
    pub fn list_items(&self) -> Option<u64> {
        self.packet
            .get("ListItems")
            .and_then(|v| v.trim().parse().ok())
    }
}

/// An extension (hint) state: the `ExtensionStatus` event, its list-item form, or the answer to
/// the `ExtensionState` action, which carries the same fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionStatus<'a> {
    /// `Exten`.
    pub exten: Cow<'a, str>,
    /// `Context`.
    pub context: Cow<'a, str>,
    /// `Hint`, e.g. `Custom:1001` or `Custom:1099a&Custom:1099b`; empty when absent.
    pub hint: Cow<'a, str>,
    /// `Status`: the raw extension state, signed because -1 and -2 exist.
    pub status: i32,
    /// `StatusText` (Asterisk 13 and later), e.g. `InUse&Ringing`.
    pub status_text: Option<Cow<'a, str>>,
}

impl<'a> ExtensionStatus<'a> {
    /// Builds the view from `Event: ExtensionStatus` or from a successful response that carries
    /// `Exten` and `Status` (the `ExtensionState` action answer).
    pub fn from_packet(packet: &'a Packet) -> Result<ExtensionStatus<'a>, ViewError> {
        let is_event = packet.is(Kind::Event, "ExtensionStatus");
        let is_answer = packet.is(Kind::Response, "Success") && packet.get_bytes("Exten").is_some();
        if !is_event && !is_answer {
            return Err(ViewError::WrongMessage {
                expected: "ExtensionStatus event",
            });
        }
        let status_raw = required(packet, "Status")?;
        let status = status_raw
            .trim()
            .parse::<i32>()
            .map_err(|_| ViewError::InvalidNumber {
                header: "Status",
                value: status_raw.clone().into_owned(),
            })?;
        Ok(ExtensionStatus {
            exten: required(packet, "Exten")?,
            context: required(packet, "Context")?,
            hint: packet.get("Hint").unwrap_or(Cow::Borrowed("")),
            status,
            status_text: packet.get("StatusText"),
        })
    }
}

/// `Event: DeviceStateChange` (broadcast or DeviceStateList item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStateChange<'a> {
    /// `Device`, e.g. `Custom:1001` or `PJSIP/1001`.
    pub device: Cow<'a, str>,
    /// `State`, e.g. `NOT_INUSE`, `INUSE`, `RINGINUSE`.
    pub state: Cow<'a, str>,
}

impl<'a> DeviceStateChange<'a> {
    /// Builds the view, or says why it cannot.
    pub fn from_packet(packet: &'a Packet) -> Result<DeviceStateChange<'a>, ViewError> {
        if !packet.is(Kind::Event, "DeviceStateChange") {
            return Err(ViewError::WrongMessage {
                expected: "DeviceStateChange event",
            });
        }
        Ok(DeviceStateChange {
            device: required(packet, "Device")?,
            state: required(packet, "State")?,
        })
    }
}

/// `Event: FullyBooted`, sent after login when the session may read `system` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullyBooted<'a> {
    /// `Status`, normally `Fully Booted`.
    pub status: Option<Cow<'a, str>>,
    /// `Uptime` in seconds (Asterisk 14 and later).
    pub uptime: Option<u64>,
    /// `LastReload` in seconds (Asterisk 14 and later).
    pub last_reload: Option<u64>,
}

impl<'a> FullyBooted<'a> {
    /// Builds the view, or says why it cannot.
    pub fn from_packet(packet: &'a Packet) -> Result<FullyBooted<'a>, ViewError> {
        if !packet.is(Kind::Event, "FullyBooted") {
            return Err(ViewError::WrongMessage {
                expected: "FullyBooted event",
            });
        }
        let number = |key| packet.get(key).and_then(|v| v.trim().parse().ok());
        Ok(FullyBooted {
            status: packet.get("Status"),
            uptime: number("Uptime"),
            last_reload: number("LastReload"),
        })
    }
}

/// The lines of a `Command` answer: the `Output` headers (Asterisk 14 and later) or the raw text
/// of a legacy `Response: Follows` body (Asterisk 13 and older), one entry per CLI line.
pub fn command_output(packet: &Packet) -> Vec<Cow<'_, str>> {
    if let Some(body) = packet.follows_body() {
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        if body.is_empty() {
            return Vec::new();
        }
        return body
            .split(|&b| b == b'\n')
            .map(|line| String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)))
            .collect();
    }
    packet.get_all("Output").collect()
}

/// A packet sorted into the messages this project acts on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Message<'a> {
    /// Any `Response:` packet.
    Response(Response<'a>),
    /// `EventList: Complete`.
    ListComplete(ListComplete<'a>),
    /// `Event: ExtensionStatus`.
    ExtensionStatus(ExtensionStatus<'a>),
    /// `Event: DeviceStateChange`.
    DeviceStateChange(DeviceStateChange<'a>),
    /// `Event: FullyBooted`.
    FullyBooted(FullyBooted<'a>),
    /// A known event whose required headers are missing or invalid.
    Invalid(&'a Packet, ViewError),
    /// Everything else, untouched.
    Other(&'a Packet),
}

impl<'a> Message<'a> {
    /// Sorts `packet`.
    pub fn classify(packet: &'a Packet) -> Message<'a> {
        if let Some(r) = Response::from_packet(packet) {
            return Message::Response(r);
        }
        if let Some(c) = ListComplete::from_packet(packet) {
            return Message::ListComplete(c);
        }
        let result = if packet.is(Kind::Event, "ExtensionStatus") {
            ExtensionStatus::from_packet(packet).map(Message::ExtensionStatus)
        } else if packet.is(Kind::Event, "DeviceStateChange") {
            DeviceStateChange::from_packet(packet).map(Message::DeviceStateChange)
        } else if packet.is(Kind::Event, "FullyBooted") {
            FullyBooted::from_packet(packet).map(Message::FullyBooted)
        } else {
            return Message::Other(packet);
        };
        result.unwrap_or_else(|e| Message::Invalid(packet, e))
    }
}

fn required<'a>(packet: &'a Packet, header: &'static str) -> Result<Cow<'a, str>, ViewError> {
    packet
        .get(header)
        .ok_or(ViewError::MissingHeader { header })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(raw: &str) -> Packet {
        Packet::parse(raw.as_bytes()).expect("valid packet")
    }

    #[test]
    fn extension_status_table() {
        type Want = Result<
            (
                &'static str,
                &'static str,
                &'static str,
                i32,
                Option<&'static str>,
            ),
            ViewError,
        >;
        let cases: &[(&str, Want)] = &[
            (
                "Event: ExtensionStatus\nPrivilege: call,all\nExten: 1001\nContext: agents\nHint: Custom:1001\nStatus: 9\nStatusText: InUse&Ringing\n",
                Ok(("1001", "agents", "Custom:1001", 9, Some("InUse&Ringing"))),
            ),
            (
                "Event: ExtensionStatus\nExten: 1\nContext: c\nStatus: -2\n",
                Ok(("1", "c", "", -2, None)),
            ),
            (
                "Response: Success\nActionID: e-40\nMessage: Extension Status\nExten: 1099\nContext: agents\nHint: Custom:1099a&Custom:1099b\nStatus: 0\nStatusText: Idle\n",
                Ok((
                    "1099",
                    "agents",
                    "Custom:1099a&Custom:1099b",
                    0,
                    Some("Idle"),
                )),
            ),
            (
                "Event: ExtensionStatus\nExten: 1\nContext: c\nStatus: busy\n",
                Err(ViewError::InvalidNumber {
                    header: "Status",
                    value: "busy".into(),
                }),
            ),
            (
                "Event: ExtensionStatus\nExten: 1\nContext: c\n",
                Err(ViewError::MissingHeader { header: "Status" }),
            ),
            (
                "Event: DeviceStateChange\nDevice: x\n",
                Err(ViewError::WrongMessage {
                    expected: "ExtensionStatus event",
                }),
            ),
        ];
        for (raw, want) in cases {
            let p = packet(raw);
            let got = ExtensionStatus::from_packet(&p).map(|e| {
                (
                    e.exten.into_owned(),
                    e.context.into_owned(),
                    e.hint.into_owned(),
                    e.status,
                    e.status_text.map(Cow::into_owned),
                )
            });
            let want = want.clone().map(|(a, b, c, d, e)| {
                (
                    a.to_owned(),
                    b.to_owned(),
                    c.to_owned(),
                    d,
                    e.map(str::to_owned),
                )
            });
            assert_eq!(got, want, "{raw:?}");
        }
    }

    #[test]
    fn responses_and_lists() {
        let start = packet(
            "Response: Success\nActionID: d-2\nEventList: Start\nMessage: Extension Statuses will follow\n",
        );
        let r = Response::from_packet(&start).expect("response");
        assert!(r.is_success() && !r.is_error() && r.is_list_start());
        assert_eq!(
            r.message().as_deref(),
            Some("Extension Statuses will follow")
        );
        assert_eq!(r.action_id().as_deref(), Some("d-2"));

        let err = packet("Response: Error\nMessage: Missing action in request\n");
        let r = Response::from_packet(&err).expect("response");
        assert!(r.is_error() && !r.is_success() && !r.is_list_start());
        assert_eq!(r.action_id(), None);

        let done = packet(
            "Event: ExtensionStateListComplete\nActionID: d-2\nEventList: Complete\nListItems: 11\n",
        );
        let c = ListComplete::from_packet(&done).expect("complete");
        assert_eq!(c.list_items(), Some(11));
        assert_eq!(c.name(), "ExtensionStateListComplete");
        assert!(matches!(Message::classify(&done), Message::ListComplete(_)));
        assert!(ListComplete::from_packet(&start).is_none());
    }

    #[test]
    fn classify_table() {
        let cases: &[(&str, &str)] = &[
            (
                "Event: DeviceStateChange\nDevice: Custom:1001\nState: INUSE\n",
                "DeviceStateChange",
            ),
            ("Event: DeviceStateChange\nDevice: Custom:1001\n", "Invalid"),
            (
                "Event: FullyBooted\nPrivilege: system,all\nUptime: 5\nLastReload: 5\nStatus: Fully Booted\n",
                "FullyBooted",
            ),
            ("Event: SuccessfulAuth\nService: AMI\n", "Other"),
            ("Foo: bar\n", "Other"),
            ("Response: Goodbye\n", "Response"),
        ];
        for (raw, want) in cases {
            let p = packet(raw);
            let got = match Message::classify(&p) {
                Message::Response(_) => "Response",
                Message::ListComplete(_) => "ListComplete",
                Message::ExtensionStatus(_) => "ExtensionStatus",
                Message::DeviceStateChange(d) => {
                    assert_eq!(
                        (d.device.as_ref(), d.state.as_ref()),
                        ("Custom:1001", "INUSE")
                    );
                    "DeviceStateChange"
                }
                Message::FullyBooted(f) => {
                    assert_eq!(
                        (f.uptime, f.last_reload, f.status.as_deref()),
                        (Some(5), Some(5), Some("Fully Booted"))
                    );
                    "FullyBooted"
                }
                Message::Invalid(..) => "Invalid",
                Message::Other(_) => "Other",
            };
            assert_eq!(got, *want, "{raw:?}");
        }
    }

    #[test]
    fn command_output_both_forms() {
        let modern =
            packet("Response: Success\nMessage: Command output follows\nOutput: \nOutput:    x\n");
        assert_eq!(command_output(&modern), ["", "   x"]);
        let legacy = Packet::parse(
            b"Response: Follows\r\nPrivilege: Command\r\na: b\n\n  c\n--END COMMAND--\r\n\r\n",
        )
        .expect("legacy packet");
        assert_eq!(command_output(&legacy), ["a: b", "", "  c"]);
    }
}
