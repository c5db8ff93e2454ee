//! Property tests of the validators: on any input they never panic, and they accept exactly
//! what the rules of the public interface say, checked against an independent statement of
//! those rules (extension numbers, agent names, departments, record ids, and the creation and
//! update requests as JSON objects).

use std::collections::BTreeSet;

use domain::{AgentName, Department, ExtensionNumber, ExtensionPatch, NewExtension, RecordId};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Characters that make the rules interesting: digits, letters, white space of several kinds,
/// controls, line and paragraph separators, the invisible bidirectional and byte-order marks,
/// combining marks, wide digits, emoji, quotes and MongoDB's operator characters.
const ALPHABET: &[char] = &[
    '0', '1', '5', '9', 'a', 'F', 'z', 'Z', ' ', '\t', '\n', '\r', '\u{0}', '\u{7}', '\u{1b}',
    '\u{7f}', '\u{85}', '\u{a0}', '\u{3000}', '\u{200b}', '\u{200e}', '\u{202a}', '\u{202e}',
    '\u{2028}', '\u{2029}', '\u{2066}', '\u{2069}', '\u{feff}', '\u{301}', '\u{336}', 'é', 'ß',
    '٣', '７', '😀', '$', '.', '"', '\'', '{', '}', '\\', '/', '-', '+',
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(prop::sample::select(ALPHABET), 0..130)
            .prop_map(String::from_iter),
        1 => any::<String>(),
        1 => "[0-9]{0,12}",
        1 => " {0,3}[A-Za-z]{1,110} {0,3}",
    ]
}

/// The rule of the interface, stated again independently: a control character, a line or
/// paragraph separator, a bidi embedding, override or isolate, or a byte-order mark.
fn forbidden(c: char) -> bool {
    c.is_control()
        || c == '\u{2028}'
        || c == '\u{2029}'
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
        || c == '\u{feff}'
}

/// `Some(stored value)` when a name of at most `max` characters is acceptable.
fn name_rule(raw: &str, max: usize) -> Option<String> {
    let t = raw.trim();
    let n = t.chars().count();
    (n >= 1 && n <= max && !t.chars().any(forbidden)).then(|| t.to_owned())
}

fn extension_rule(raw: &str) -> bool {
    (2..=10).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit())
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => text().prop_map(Value::String),
        1 => "[0-9]{2,10}".prop_map(Value::String),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => Just(json!({"$gt": ""})),
        1 => Just(json!({"$where": "sleep(1)"})),
        1 => Just(json!(["1001"])),
    ]
}

const KEYS: &[&str] = &[
    "extension",
    "agent_name",
    "department",
    "is_active",
    "status",
    "status_code",
    "_id",
    "updatedAt",
    "$where",
    "$set",
    "agent_name.$",
    "a.b",
    "colour",
    "__proto__",
    "",
];

fn body() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((prop::sample::select(KEYS), value()), 0..6)
        .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// The fields a request must be refused for, by the rules: members not allowed, present
/// members with a wrong type or value, and missing required members.
fn expected_faults(
    body: &Map<String, Value>,
    allowed: &[&str],
    required: &[&str],
) -> BTreeSet<String> {
    let mut faults = BTreeSet::new();
    for (k, v) in body {
        let ok = match (k.as_str(), v) {
            (k, _) if !allowed.contains(&k) => false,
            ("extension", Value::String(s)) => extension_rule(s),
            ("agent_name", Value::String(s)) => name_rule(s, 100).is_some(),
            ("department", Value::String(s)) => name_rule(s, 50).is_some(),
            ("is_active", Value::Bool(_)) => true,
            _ => false,
        };
        if !ok {
            faults.insert(k.clone());
        }
    }
    for r in required {
        if !body.contains_key(*r) {
            faults.insert((*r).to_owned());
        }
    }
    faults
}

fn named(errors: &domain::FieldErrors) -> BTreeSet<String> {
    errors.0.iter().map(|e| e.field.clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn extension_numbers(raw in text()) {
        let got = ExtensionNumber::parse(&raw);
        prop_assert_eq!(got.is_ok(), extension_rule(&raw), "{:?}", raw);
        if let Ok(n) = got {
            prop_assert_eq!(n.as_str(), raw.as_str());
        }
    }

    #[test]
    fn agent_names(raw in text()) {
        let got = AgentName::parse(&raw).map(|n| n.as_str().to_owned());
        prop_assert_eq!(got.as_ref().ok().cloned(), name_rule(&raw, 100), "{:?} -> {:?}", raw, got);
        if let Err(e) = got {
            prop_assert_eq!(e.field, "agent_name");
        }
    }

    #[test]
    fn departments(raw in text()) {
        let got = Department::parse(&raw).map(|n| n.as_str().to_owned());
        prop_assert_eq!(got.as_ref().ok().cloned(), name_rule(&raw, 50), "{:?} -> {:?}", raw, got);
        if let Err(e) = got {
            prop_assert_eq!(e.field, "department");
        }
    }

    #[test]
    fn record_ids(raw in prop_oneof![text(), "[0-9a-fA-F]{22,26}", "[0-9a-g]{24}"]) {
        let want = raw.len() == 24 && raw.bytes().all(|b| b.is_ascii_hexdigit());
        let got = RecordId::parse(&raw);
        prop_assert_eq!(got.is_ok(), want, "{:?}", raw);
        if let Ok(id) = got {
            prop_assert_eq!(id.as_str(), raw.to_ascii_lowercase());
            // The id survives the round trip through the 12 bytes MongoDB stores.
            prop_assert_eq!(RecordId::from_bytes(id.to_bytes()), id);
        }
    }

    #[test]
    fn creation_requests(body in body()) {
        let faults = expected_faults(&body, &NewExtension::FIELDS, &["extension", "agent_name", "department"]);
        match NewExtension::from_json(&body) {
            Ok(new) => {
                prop_assert!(faults.is_empty(), "accepted {:?} despite {:?}", body, faults);
                prop_assert_eq!(Some(new.extension.as_str()), body["extension"].as_str());
                prop_assert_eq!(
                    Some(new.agent_name.as_str().to_owned()),
                    body["agent_name"].as_str().and_then(|s| name_rule(s, 100))
                );
                prop_assert_eq!(new.is_active, body.get("is_active").and_then(Value::as_bool).unwrap_or(true));
            }
            Err(errors) => {
                prop_assert_eq!(named(&errors), faults, "{:?}", body);
                prop_assert!(!errors.to_string().is_empty());
            }
        }
    }

    #[test]
    fn update_requests(body in body()) {
        let faults = expected_faults(&body, &ExtensionPatch::FIELDS, &[]);
        match ExtensionPatch::from_json(&body) {
            Ok(patch) => {
                prop_assert!(faults.is_empty(), "accepted {:?} despite {:?}", body, faults);
                prop_assert_eq!(
                    patch.department.map(|d| d.as_str().to_owned()),
                    body.get("department").and_then(Value::as_str).and_then(|s| name_rule(s, 50))
                );
                prop_assert_eq!(patch.is_active, body.get("is_active").and_then(Value::as_bool));
            }
            Err(errors) => prop_assert_eq!(named(&errors), faults, "{:?}", body),
        }
    }
}
