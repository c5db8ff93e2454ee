//! TypeScript declarations for the record and its vocabulary (feature `ts`), so the dashboard's
//! types are generated from these Rust types instead of being written a second time by hand.
//!
//! Most types derive `ts_rs::TS` where they are defined; this module holds the one that cannot:
//! [`DeviceState`] serializes through [`DeviceState::as_str`], so its TypeScript union is built
//! from [`DeviceState::ALL`] and the same strings, and cannot drift from the wire format.

use ts_rs::{Config, TS};

use crate::status::DeviceState;

impl TS for DeviceState {
    type WithoutGenerics = Self;
    type OptionInnerType = Self;

    fn docs() -> Option<String> {
        // The same shape as the derived types' comments: a JSDoc block.
        Some(
            "/**\n * A device state as Asterisk writes it (`ast_devstate_str()`), also what \
             records store in\n * `device_state`.\n */\n"
                .to_owned(),
        )
    }

    fn name(_: &Config) -> String {
        "DeviceState".to_owned()
    }

    fn inline(_: &Config) -> String {
        DeviceState::ALL
            .iter()
            .map(|d| format!("\"{}\"", d.as_str()))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn decl(cfg: &Config) -> String {
        format!("type DeviceState = {};", Self::inline(cfg))
    }

    fn decl_concrete(cfg: &Config) -> String {
        Self::decl(cfg)
    }

    fn output_path() -> Option<std::path::PathBuf> {
        Some("DeviceState.ts".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        AgentName, Department, Extension, ExtensionNumber, NewExtension, Presence, RecordId,
        Timestamp,
    };

    /// The member names of a `type X = { a: T, b: U, };` declaration, doc comments removed.
    fn members(decl: &str) -> Vec<String> {
        let mut text = decl.to_owned();
        while let Some(start) = text.find("/**") {
            let end = text[start..].find("*/").expect("closed comment") + start + 2;
            text.replace_range(start..end, "");
        }
        let body = &text[text.find('{').expect("object type") + 1..text.rfind('}').expect("end")];
        body.split(',')
            .filter_map(|m| m.split_once(':'))
            .map(|(name, _)| name.trim().trim_matches('"').to_owned())
            .collect()
    }

    #[test]
    fn the_record_declares_exactly_the_serialized_members() {
        let cfg = Config::new();
        let record = Extension::create(
            RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id"),
            NewExtension {
                extension: ExtensionNumber::parse("1001").expect("ext"),
                agent_name: AgentName::parse("Alice").expect("name"),
                department: Department::parse("Sales").expect("dept"),
                is_active: true,
            },
            "2026-11-30T12:00:00Z".parse::<Timestamp>().expect("time"),
        );
        let json = serde_json::to_value(&record).expect("serialize");
        let mut want: Vec<String> = json.as_object().expect("object").keys().cloned().collect();
        let mut got = members(&Extension::decl(&cfg));
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn enum_unions_list_the_wire_strings() {
        let cfg = Config::new();
        let rows = [
            (
                DeviceState::inline(&cfg),
                DeviceState::ALL
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>(),
            ),
            (
                Presence::inline(&cfg),
                Presence::ALL.iter().map(|p| p.as_str()).collect(),
            ),
        ];
        for (union, strings) in rows {
            let want: Vec<String> = strings
                .iter()
                .map(|s| serde_json::to_string(s).expect("quote"))
                .collect();
            assert_eq!(union, want.join(" | "));
        }
        assert_eq!(RecordId::inline(&cfg), "string");
        assert_eq!(ExtensionNumber::inline(&cfg), "string");
    }
}
