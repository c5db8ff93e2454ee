//! Reading a JSON value that should be an object, keeping the names of members given more than
//! once: `serde_json::Map` silently keeps the last of them, and a member given twice is
//! ambiguous (a proxy, a log or another tool may have read the other value). The REST API and
//! the seeder both refuse such objects, naming the members.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON value as read: an object, with the names of any members it repeats (in the order
/// of their second appearance, each once), or what else it was.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonObject {
    /// An object. `map` holds the first value of each member.
    Object {
        /// The members, each with its first value.
        map: Map<String, Value>,
        /// The members given more than once.
        duplicates: Vec<String>,
    },
    /// Anything but an object, read in full (so syntax errors are still reported) and
    /// described for a message ("a string", "an array", ...).
    Other(&'static str),
}

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = JsonObject;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<JsonObject, A::Error> {
        let mut map = Map::new();
        let mut duplicates = Vec::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                access.next_value::<IgnoredAny>()?;
                if !duplicates.contains(&key) {
                    duplicates.push(key);
                }
            } else {
                let value = access.next_value::<Value>()?;
                map.insert(key, value);
            }
        }
        Ok(JsonObject::Object { map, duplicates })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<JsonObject, A::Error> {
        while access.next_element::<IgnoredAny>()?.is_some() {}
        Ok(JsonObject::Other("an array"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<JsonObject, E> {
        Ok(JsonObject::Other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<JsonObject, E> {
        Ok(JsonObject::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<JsonObject, E> {
        Ok(JsonObject::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<JsonObject, E> {
        Ok(JsonObject::Other("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<JsonObject, E> {
        Ok(JsonObject::Other("a string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<JsonObject, E> {
        Ok(JsonObject::Other("null"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(text: &str, want: Result<JsonObject, ()>) {
        let got = serde_json::from_str::<JsonObject>(text).map_err(drop);
        assert_eq!(got, want, "{text}");
    }

    #[test]
    fn objects_keep_the_first_value_and_name_repeated_members() {
        let obj = |v: Value, dups: &[&str]| {
            let Value::Object(map) = v else {
                unreachable!("the test passes objects")
            };
            Ok(JsonObject::Object {
                map,
                duplicates: dups.iter().map(|s| (*s).to_owned()).collect(),
            })
        };
        check(r#"{"a": 1, "b": 2}"#, obj(json!({"a": 1, "b": 2}), &[]));
        check(
            r#"{"a": 1, "b": 2, "a": 3, "b": {"x": 1}, "a": 4}"#,
            obj(json!({"a": 1, "b": 2}), &["a", "b"]),
        );
        // A key spelled with an escape is the same member.
        check(r#"{"a": 1, "\u0061": 2}"#, obj(json!({"a": 1}), &["a"]));
        check("{}", obj(json!({}), &[]));
        for (text, kind) in [
            ("[1, {\"a\": 1}]", "an array"),
            ("true", "a boolean"),
            ("-1", "a number"),
            ("1", "a number"),
            ("1.5", "a number"),
            ("\"x\"", "a string"),
            ("null", "null"),
        ] {
            check(text, Ok(JsonObject::Other(kind)));
        }
        // Syntax errors are errors, also inside a repeated member's value.
        check(r#"{"a": 1, "a": [}"#, Err(()));
        check("[1,", Err(()));
    }
}
