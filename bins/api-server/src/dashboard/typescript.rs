//! Generates the dashboard's `types.d.ts` and `constants.js` from the Rust types, and fails when
//! the committed files differ, so the page's shapes cannot drift from what the server sends.
//!
//! The record and the WebSocket messages come from `ts_rs::TS` derives on `domain` and `hub`
//! (their feature `ts`); the status-code and device-state tables come from
//! [`ExtensionState::KNOWN`] and [`DeviceState::ALL`]. To rewrite the files after a change:
//! `EXTSTATUS_BLESS=1 cargo test -p api-server dashboard::typescript`.

use std::fmt::Write as _;
use std::path::PathBuf;

use domain::{
    AgentName, AgentPresence, CallInfo, CallState, Department, DeviceState, Extension,
    ExtensionNumber, ExtensionState, NewExtension, PauseReason, Presence, QueueMembership,
    RecordId,
};
use hub::{PbxLink, ServerMessage};
use ts_rs::{Config, TS};

const GENERATED: &str = "Generated from the Rust types by the test `dashboard::typescript` in \
                         bins/api-server; do not edit.\n// Rewrite with: EXTSTATUS_BLESS=1 cargo \
                         test -p api-server dashboard::typescript";

/// `export type X = ...;` for one type, with its doc comment.
fn declare<T: TS>(cfg: &Config, out: &mut String) {
    if let Some(docs) = T::docs() {
        out.push_str(docs.trim_end());
        out.push('\n');
    }
    let decl = T::decl(cfg);
    out.push_str("export ");
    out.push_str(decl.trim());
    out.push_str("\n\n");
}

/// A string as a JavaScript/TypeScript literal.
fn lit(s: &str) -> String {
    serde_json::to_string(s).expect("invariant: a string always serializes")
}

/// The text of `types.d.ts`.
fn types_d_ts() -> String {
    let cfg = Config::new().with_large_int("number");
    let mut out = format!("// {GENERATED}\n\n");
    declare::<RecordId>(&cfg, &mut out);
    declare::<ExtensionNumber>(&cfg, &mut out);
    declare::<AgentName>(&cfg, &mut out);
    declare::<Department>(&cfg, &mut out);
    declare::<DeviceState>(&cfg, &mut out);
    declare::<Presence>(&cfg, &mut out);
    declare::<QueueMembership>(&cfg, &mut out);
    declare::<AgentPresence>(&cfg, &mut out);
    declare::<CallState>(&cfg, &mut out);
    declare::<CallInfo>(&cfg, &mut out);
    declare::<PauseReason>(&cfg, &mut out);
    declare::<Extension>(&cfg, &mut out);
    declare::<PbxLink>(&cfg, &mut out);
    declare::<ServerMessage>(&cfg, &mut out);

    let codes: Vec<String> = ExtensionState::KNOWN
        .iter()
        .map(|s| s.code().to_string())
        .collect();
    let _ = write!(
        out,
        "/** The `type` of each WebSocket message. */\n\
         export type ServerMessageType = ServerMessage[\"type\"];\n\n\
         /**\n * The extension states Asterisk defines (`status_code`); any other number is kept as\n \
         * sent and shown as unknown.\n */\n\
         export type KnownStatusCode = {};\n\n\
         /** One row of `EXTENSION_STATES` in constants.js. */\n\
         export type ExtensionStateInfo = {{ code: KnownStatusCode, text: string, device_state: DeviceState, status: Presence, }};\n\n\
         /** One row of `DEVICE_STATES` in constants.js. */\n\
         export type DeviceStateInfo = {{ name: DeviceState, number: number, cli: string, status: Presence, }};\n\n\
         /** The body of every error answer of the HTTP API (`docs/api.md`). */\n\
         export type ApiErrorBody = {{ error: {{ code: string, message: string, fields?: Record<string, string>, }}, }};\n\n\
         /** The members of a creation request (`POST /api/extensions`). */\n\
         export type NewExtensionField = {};\n",
        codes.join(" | "),
        NewExtension::FIELDS
            .iter()
            .map(|f| lit(f))
            .collect::<Vec<_>>()
            .join(" | "),
    );
    out
}

/// The text of `constants.js`.
fn constants_js() -> String {
    let mut out = format!("// {GENERATED}\n\n");
    out.push_str(
        "/**\n * Every extension state Asterisk defines: its `status_code`, Asterisk's StatusText, and \
         the\n * `device_state` and `status` the server stores with it.\n * @type {ReadonlyArray<import(\"./types\").ExtensionStateInfo>}\n */\n\
         export const EXTENSION_STATES = Object.freeze([\n",
    );
    for s in ExtensionState::KNOWN {
        let _ = writeln!(
            out,
            "  Object.freeze({{ code: {}, text: {}, device_state: {}, status: {} }}),",
            s.code(),
            lit(s.status_text()),
            lit(s.device_state().as_str()),
            lit(s.presence().as_str()),
        );
    }
    out.push_str(
        "]);\n\n/**\n * Every device state, in Asterisk's numeric order: the stored string, Asterisk's \
         number, the\n * CLI's wording, and the presence it means.\n * @type {ReadonlyArray<import(\"./types\").DeviceStateInfo>}\n */\n\
         export const DEVICE_STATES = Object.freeze([\n",
    );
    for d in DeviceState::ALL {
        let _ = writeln!(
            out,
            "  Object.freeze({{ name: {}, number: {}, cli: {}, status: {} }}),",
            lit(d.as_str()),
            d.number(),
            lit(d.cli_str()),
            lit(d.presence().as_str()),
        );
    }
    let presences: Vec<String> = Presence::ALL.iter().map(|p| lit(p.as_str())).collect();
    let _ = write!(
        out,
        "]);\n\n/** @type {{ReadonlyArray<import(\"./types\").Presence>}} */\n\
         export const PRESENCES = Object.freeze([{}]);\n\n\
         /** The `status_code` of a record the PBX has not reported on yet. */\n\
         export const INITIAL_STATUS_CODE = {};\n\n\
         /** The lengths the server accepts, for hints; the server alone decides what is valid. */\n\
         export const LIMITS = Object.freeze({{\n  \
         extension: Object.freeze({{ min: {}, max: {} }}),\n  \
         agent_name: Object.freeze({{ max: {} }}),\n  \
         department: Object.freeze({{ max: {} }}),\n  \
         pause_reason: Object.freeze({{ max: {} }}),\n}});\n",
        presences.join(", "),
        ExtensionState::INITIAL.code(),
        ExtensionNumber::MIN_LEN,
        ExtensionNumber::MAX_LEN,
        AgentName::MAX_LEN,
        Department::MAX_LEN,
        PauseReason::MAX_LEN,
    );
    out
}

fn asset_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
}

/// Compares a generated file with the committed one, or rewrites it when blessing.
fn check(name: &str, want: &str) {
    let path = asset_path(name);
    if std::env::var_os("EXTSTATUS_BLESS").is_some() {
        std::fs::write(&path, want).expect("write generated file");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "bins/api-server/assets/{name} is out of date with the Rust types; run \
         `EXTSTATUS_BLESS=1 cargo test -p api-server dashboard::typescript` and commit the result"
    );
}

#[test]
fn types_d_ts_is_up_to_date() {
    check("types.d.ts", &types_d_ts());
}

#[test]
fn constants_js_is_up_to_date() {
    check("constants.js", &constants_js());
}

/// The member names of an object type `{ a: T, "b": U, }`, doc comments removed.
fn members(object: &str) -> Vec<String> {
    let mut text = object.to_owned();
    while let Some(start) = text.find("/**") {
        let end = text[start..].find("*/").expect("closed comment") + start + 2;
        text.replace_range(start..end, "");
    }
    let mut names: Vec<String> = text
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter_map(|m| m.split_once(':'))
        .map(|(name, _)| name.trim().trim_matches('"').to_owned())
        .collect();
    names.sort();
    names
}

/// The alternatives of a union type, split at `|` outside braces (members may be unions too).
fn top_level_alternatives(union: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in union.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            '|' if depth == 0 => {
                parts.push(union[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(union[start..].trim());
    parts
}

/// Every message variant, as the TypeScript union declares it, has exactly the members its
/// JSON has. This catches a `serde` attribute that ts-rs did not follow.
#[test]
fn every_message_declares_exactly_its_json_members() {
    let cfg = Config::new().with_large_int("number");
    let record = Extension::create(
        RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id"),
        NewExtension {
            extension: ExtensionNumber::parse("1001").expect("ext"),
            agent_name: AgentName::parse("Alice").expect("name"),
            department: Department::parse("Sales").expect("dept"),
            is_active: true,
        },
        domain::now(),
    );
    let link = PbxLink::at(false, domain::now());
    // The match has no wildcard, so a new variant does not compile until it is listed here.
    let samples = |m: &ServerMessage| match m {
        ServerMessage::Snapshot { .. }
        | ServerMessage::ExtensionStatusUpdated { .. }
        | ServerMessage::ExtensionCreated { .. }
        | ServerMessage::ExtensionUpdated { .. }
        | ServerMessage::ExtensionDeleted { .. }
        | ServerMessage::PbxLink { .. } => (),
    };
    let messages = [
        ServerMessage::Snapshot {
            seq: 1,
            extensions: vec![record.clone()],
            pbx_link: link.clone(),
        },
        ServerMessage::ExtensionStatusUpdated {
            seq: 2,
            extension: record.clone(),
        },
        ServerMessage::ExtensionCreated {
            seq: 3,
            extension: record.clone(),
        },
        ServerMessage::ExtensionUpdated {
            seq: 4,
            extension: record.clone(),
        },
        ServerMessage::ExtensionDeleted {
            seq: 5,
            id: record.id.clone(),
        },
        ServerMessage::PbxLink {
            seq: 6,
            connected: link.connected,
            since: link.since,
        },
    ];
    let union = ServerMessage::inline(&cfg);
    let variants = top_level_alternatives(&union);
    assert_eq!(variants.len(), messages.len(), "{union}");
    for m in &messages {
        samples(m);
        let json = serde_json::to_value(m).expect("serialize");
        let kind = json["type"].as_str().expect("type").to_owned();
        let mut want: Vec<String> = json.as_object().expect("object").keys().cloned().collect();
        want.sort();
        let declared = variants
            .iter()
            .find(|v| v.contains(&format!("\"type\": {}", lit(&kind))))
            .unwrap_or_else(|| panic!("no variant for {kind} in {union}"));
        assert_eq!(members(declared), want, "{kind}");
    }
    let link_json = serde_json::to_value(&link).expect("serialize");
    let mut want: Vec<String> = link_json
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    want.sort();
    assert_eq!(members(&PbxLink::inline(&cfg)), want);
}
