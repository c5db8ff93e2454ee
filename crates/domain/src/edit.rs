//! User edits: the only way people change records. These types cannot carry the fields that
//! only the PBX or the store may set, so no code path can write a status through them.

use std::fmt;

use serde_json::{Map, Value};

use crate::fields::{AgentName, Department, ExtensionNumber, FieldError, Rule};

/// A request to create an extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewExtension {
    /// The extension number.
    pub extension: ExtensionNumber,
    /// The agent's name.
    pub agent_name: AgentName,
    /// The department.
    pub department: Department,
    /// Whether it is in service (default true).
    pub is_active: bool,
}

/// A change to the user-editable fields of an existing extension. Absent fields stay as they
/// are. The extension number is immutable and has no place here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtensionPatch {
    /// A new agent name.
    pub agent_name: Option<AgentName>,
    /// A new department.
    pub department: Option<Department>,
    /// A new active flag.
    pub is_active: Option<bool>,
}

impl ExtensionPatch {
    /// Whether the patch sets nothing at all.
    pub fn is_empty(&self) -> bool {
        self.agent_name.is_none() && self.department.is_none() && self.is_active.is_none()
    }
}

/// Every field problem found in one request, in field order.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct FieldErrors(pub Vec<FieldError>);

/// How many problems a refusal's sentence says in full ([`FieldErrors`], and the api-server's
/// pause refusal); the rest are counted, since a body of thousands of unknown members would
/// otherwise make a sentence of megabytes.
pub const SAID: usize = 8;

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().take(SAID).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        if self.0.len() > SAID {
            write!(f, "; and {} more", self.0.len() - SAID)?;
        }
        Ok(())
    }
}

impl FieldErrors {
    fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    fn into_result<T>(self, ok: impl FnOnce() -> Option<T>) -> Result<T, FieldErrors> {
        match ok() {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(self),
        }
    }
}

/// Fields set by the PBX or the store; a request that names one is refused and names it.
pub const SERVER_FIELDS: [&str; 11] = [
    "_id",
    "status_code",
    "device_state",
    "status",
    "last_status_change",
    "last_seen",
    "queues",
    "presence",
    "call",
    "createdAt",
    "updatedAt",
];

fn refuse_extra(body: &Map<String, Value>, allowed: &[&str], errors: &mut FieldErrors) {
    // Report in name order whatever order the map keeps (serde_json's `preserve_order`
    // feature, which another crate may switch on, keeps insertion order).
    let mut keys: Vec<&String> = body.keys().collect();
    keys.sort();
    for key in keys {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        let rule = if SERVER_FIELDS.contains(&key.as_str()) {
            Rule::NotSettable
        } else if key == "extension" {
            Rule::Immutable
        } else {
            Rule::UnknownField
        };
        errors.push(FieldError::new(
            crate::fields::shown_name(key.clone()),
            rule,
        ));
    }
}

fn text<T>(
    body: &Map<String, Value>,
    field: &str,
    parse: fn(&str) -> Result<T, FieldError>,
    errors: &mut FieldErrors,
) -> Option<T> {
    match body.get(field) {
        // `null` is refused like any other wrong type: a client sending it to mean "clear this"
        // must not be told that it succeeded. To leave a field as it is, leave it out.
        None => None,
        Some(Value::String(s)) => parse(s).map_err(|e| errors.push(e)).ok(),
        Some(_) => {
            errors.push(FieldError::new(
                field,
                Rule::WrongType {
                    expected: "a string",
                },
            ));
            None
        }
    }
}

fn flag(body: &Map<String, Value>, field: &str, errors: &mut FieldErrors) -> Option<bool> {
    match body.get(field) {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            errors.push(FieldError::new(
                field,
                Rule::WrongType {
                    expected: "true or false",
                },
            ));
            None
        }
    }
}

fn required<T>(
    value: Option<T>,
    body: &Map<String, Value>,
    field: &str,
    errors: &mut FieldErrors,
) -> Option<T> {
    if value.is_none() && body.get(field).is_none() {
        errors.push(FieldError::new(field, Rule::Required));
    }
    value
}

impl NewExtension {
    /// The members a creation request may carry.
    pub const FIELDS: [&'static str; 4] = ["extension", "agent_name", "department", "is_active"];

    /// Reads a creation request from a JSON object, collecting every problem at once.
    pub fn from_json(body: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        refuse_extra(body, &Self::FIELDS, &mut errors);
        let extension = text(body, "extension", ExtensionNumber::parse, &mut errors);
        let extension = required(extension, body, "extension", &mut errors);
        let agent_name = text(body, "agent_name", AgentName::parse, &mut errors);
        let agent_name = required(agent_name, body, "agent_name", &mut errors);
        let department = text(body, "department", Department::parse, &mut errors);
        let department = required(department, body, "department", &mut errors);
        let is_active = flag(body, "is_active", &mut errors);
        errors.into_result(|| {
            Some(NewExtension {
                extension: extension?,
                agent_name: agent_name?,
                department: department?,
                is_active: is_active.unwrap_or(true),
            })
        })
    }
}

impl ExtensionPatch {
    /// The members an update request may carry.
    pub const FIELDS: [&'static str; 3] = ["agent_name", "department", "is_active"];

    /// Reads an update request from a JSON object, collecting every problem at once.
    pub fn from_json(body: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        refuse_extra(body, &Self::FIELDS, &mut errors);
        let agent_name = text(body, "agent_name", AgentName::parse, &mut errors);
        let department = text(body, "department", Department::parse, &mut errors);
        let is_active = flag(body, "is_active", &mut errors);
        errors.into_result(|| {
            Some(ExtensionPatch {
                agent_name,
                department,
                is_active,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn errors(r: Result<impl fmt::Debug, FieldErrors>) -> Vec<(String, String)> {
        r.expect_err("should be refused")
            .0
            .into_iter()
            .map(|e| (e.field.clone(), e.rule.to_string()))
            .collect()
    }

    #[test]
    fn thousands_of_unknown_members_make_a_short_sentence() {
        let mut body = obj(json!({"extension": "1001", "agent_name": "A", "department": "S"}));
        for i in 0..10_000 {
            body.insert(format!("k{i:05}"), json!(1));
        }
        body.insert("x".repeat(100_000), json!(1));
        let refused = NewExtension::from_json(&body).expect_err("refused");
        assert_eq!(refused.0.len(), 10_001);
        assert!(refused.0.iter().all(|e| e.field.len() < 100));
        let said = refused.to_string();
        assert!(said.len() < 1_000, "{said}");
        assert!(said.ends_with("; and 9993 more"), "{said}");
    }

    #[test]
    fn creation_requests() {
        let ok = NewExtension::from_json(&obj(json!({
            "extension": "1001", "agent_name": " Alice ", "department": "Sales"
        })))
        .expect("valid");
        assert_eq!(ok.agent_name.as_str(), "Alice");
        assert!(ok.is_active, "is_active defaults to true");

        let got = errors(NewExtension::from_json(&obj(json!({
            "extension": "1", "agent_name": 5, "status_code": 0, "color": "red"
        }))));
        assert_eq!(
            got,
            vec![
                ("color".into(), "is not a known field here".into()),
                (
                    "status_code".into(),
                    "is set by the server and cannot be written".into()
                ),
                (
                    "extension".into(),
                    "must be at least 2 characters, got 1".into()
                ),
                ("agent_name".into(), "must be a string".into()),
                (
                    "department".into(),
                    "is required and may not be blank".into()
                ),
            ]
        );
    }

    #[test]
    fn update_requests() {
        let ok = ExtensionPatch::from_json(&obj(json!({"is_active": false}))).expect("valid");
        assert_eq!(ok.is_active, Some(false));
        assert!(
            ExtensionPatch::from_json(&obj(json!({})))
                .expect("empty")
                .is_empty()
        );

        let got = errors(ExtensionPatch::from_json(&obj(json!({
            "extension": "1002", "last_seen": null, "department": "\u{7}", "is_active": "yes"
        }))));
        assert_eq!(
            got,
            vec![
                (
                    "extension".into(),
                    "cannot be changed after creation".into()
                ),
                (
                    "last_seen".into(),
                    "is set by the server and cannot be written".into()
                ),
                (
                    "department".into(),
                    "must not contain control characters".into()
                ),
                ("is_active".into(), "must be true or false".into()),
            ]
        );
    }

    #[test]
    fn call_center_fields_are_refused_like_status_fields() {
        let got = errors(ExtensionPatch::from_json(&obj(json!({
            "queues": [], "presence": null, "call": {"state": "up"}, "agent_name": "Bob"
        }))));
        let refused = |f: &str| {
            (
                f.to_owned(),
                "is set by the server and cannot be written".to_owned(),
            )
        };
        assert_eq!(
            got,
            vec![refused("call"), refused("presence"), refused("queues")]
        );
        let got = errors(NewExtension::from_json(&obj(json!({
            "extension": "1001", "agent_name": "A", "department": "B", "queues": []
        }))));
        assert_eq!(got, vec![refused("queues")]);
    }

    #[test]
    fn null_is_refused_not_ignored() {
        let got = errors(ExtensionPatch::from_json(&obj(json!({
            "agent_name": null, "is_active": null
        }))));
        assert_eq!(
            got,
            vec![
                ("agent_name".into(), "must be a string".into()),
                ("is_active".into(), "must be true or false".into()),
            ]
        );
        let got = errors(NewExtension::from_json(&obj(json!({
            "extension": "1001", "agent_name": "A", "department": null, "is_active": null
        }))));
        assert_eq!(
            got,
            vec![
                ("department".into(), "must be a string".into()),
                ("is_active".into(), "must be true or false".into()),
            ]
        );
    }

    #[test]
    fn operator_like_values_are_plain_text_or_refused() {
        // A `$`-prefixed string is a valid name: it is text, and stays text.
        let ok = NewExtension::from_json(&obj(json!({
            "extension": "1001", "agent_name": "$ne", "department": "{\"$gt\": \"\"}"
        })))
        .expect("valid text");
        assert_eq!(ok.agent_name.as_str(), "$ne");
        // An object where text belongs is refused.
        let got = errors(NewExtension::from_json(&obj(json!({
            "extension": {"$ne": null}, "agent_name": "A", "department": "B"
        }))));
        assert_eq!(got, vec![("extension".into(), "must be a string".into())]);
    }
}
