//! Validated field types: a value of one of these types has passed its rule, so code that holds
//! one never checks again.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A rule a field value broke.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// The value is missing or blank.
    Required,
    /// The value is longer than allowed; `max` and `got` count characters.
    TooLong {
        /// The maximum.
        max: usize,
        /// The length that was given.
        got: usize,
    },
    /// The value is shorter than allowed; `min` and `got` count characters.
    TooShort {
        /// The minimum.
        min: usize,
        /// The length that was given.
        got: usize,
    },
    /// The value holds something other than the ASCII digits 0-9.
    NotDigits,
    /// The value holds a control character (a line break, a tab, a NUL...), or one of the
    /// invisible characters that reorder or hide text: the bidirectional embeddings,
    /// overrides and isolates (U+202A-U+202E, U+2066-U+2069) and the byte-order mark (U+FEFF).
    ControlCharacter,
    /// The value has the wrong JSON type.
    WrongType {
        /// What was expected, e.g. "a string".
        expected: &'static str,
    },
    /// The field may not be set through this operation (a status field, an id, a timestamp).
    NotSettable,
    /// The field was set at creation and can never change (the extension number).
    Immutable,
    /// The field is not part of this operation at all.
    UnknownField,
    /// The value is not a 24-character hexadecimal id.
    NotAnId,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Required => f.write_str("is required and may not be blank"),
            Rule::TooLong { max, got } => {
                write!(f, "must be at most {max} characters, got {got}")
            }
            Rule::TooShort { min, got } => {
                write!(f, "must be at least {min} characters, got {got}")
            }
            Rule::NotDigits => f.write_str("must contain only the digits 0-9"),
            Rule::ControlCharacter => f.write_str("must not contain control characters"),
            Rule::WrongType { expected } => write!(f, "must be {expected}"),
            Rule::NotSettable => f.write_str("is set by the server and cannot be written"),
            Rule::Immutable => f.write_str("cannot be changed after creation"),
            Rule::UnknownField => f.write_str("is not a known field here"),
            Rule::NotAnId => f.write_str("must be a 24-character hexadecimal id"),
        }
    }
}

/// A field value that broke a rule. The message names the field and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct FieldError {
    /// The field's JSON name, e.g. `agent_name`.
    pub field: String,
    /// The rule it broke.
    pub rule: Rule,
}

/// The longest member or query parameter name a refusal shows whole.
pub const SHOWN_NAME: usize = 64;

/// A member or query parameter name as a refusal shows it: no endpoint has a name longer than
/// [`SHOWN_NAME`] characters, so a longer one (unknown, whatever it holds) is cut there and
/// marked with `…`, and a refusal never echoes a body's or a URL's worth of it, twice (in its
/// message and in `fields`).
pub fn shown_name(mut name: String) -> String {
    if let Some((at, _)) = name.char_indices().nth(SHOWN_NAME) {
        name.truncate(at);
        name.push('…');
    }
    name
}

impl FieldError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, rule: Rule) -> Self {
        Self {
            field: field.into(),
            rule,
        }
    }
}

/// Whether `c` may not appear in a name: a control character, a Unicode line or paragraph
/// separator (`\u{2028}`, `\u{2029}`: line breaks to a browser's text layout and to JavaScript,
/// though not in the control category), or an invisible formatting character that could make a
/// name display as another (a right-to-left override shows `\u{202e}yrollaM` as `Mallory`), or a
/// byte-order mark left over from a file.
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

/// Checks the shared text rule: trimmed, `min..=max` characters, no control characters.
fn checked_text(field: &str, raw: &str, max: usize) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(FieldError::new(field, Rule::Required));
    }
    let chars = trimmed.chars().count();
    if chars > max {
        return Err(FieldError::new(field, Rule::TooLong { max, got: chars }));
    }
    if trimmed.chars().any(is_forbidden_char) {
        return Err(FieldError::new(field, Rule::ControlCharacter));
    }
    Ok(trimmed.to_owned())
}

macro_rules! string_newtype_serde {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                $ty::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl $ty {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

/// An extension number: 2 to 10 ASCII digits. Leading zeros are significant (`0101` is not
/// `101`), so it is text, never a number.
///
/// It orders the way a supervisor reads a board: by the numeric value of its digits
/// (`99` < `100`, and `0101`, worth 101, sits between `100` and `102`), and numbers of equal
/// value by length, fewer leading zeros first (`101` < `0101` < `00101`).
/// This is the one definition of extension order: the store lists records in it and the
/// hub's snapshots use it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ExtensionNumber(String);

impl Ord for ExtensionNumber {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

impl PartialOrd for ExtensionNumber {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The order key of digits (see [`ExtensionNumber::order_key`]).
fn digits_key(digits: &[u8]) -> u64 {
    let value = digits.iter().fold(0u64, |v, b| {
        v.saturating_mul(10)
            .saturating_add(u64::from(b.wrapping_sub(b'0')))
    });
    value.saturating_mul(16).saturating_add(digits.len() as u64)
}

impl ExtensionNumber {
    /// A number that orders exactly as [`Ord`] orders extension numbers: the digits' value
    /// times 16 plus the length (at most 10 digits, so the value is below 2^34 and the length
    /// below 16; two numbers have the same key only when they are the same text). For sorting
    /// with a cached key (`sort_by_cached_key`), where comparing in place would be slower.
    pub fn order_key(&self) -> u64 {
        digits_key(self.0.as_bytes())
    }

    /// [`ExtensionNumber::order_key`] of an extension number's digits as stored elsewhere,
    /// without making an `ExtensionNumber`: `None` unless they are 2 to 10 ASCII digits.
    pub fn order_key_of(digits: &[u8]) -> Option<u64> {
        let valid = (Self::MIN_LEN..=Self::MAX_LEN).contains(&digits.len())
            && digits.iter().all(u8::is_ascii_digit);
        valid.then(|| digits_key(digits))
    }

    /// The shortest extension number.
    pub const MIN_LEN: usize = 2;
    /// The longest extension number.
    pub const MAX_LEN: usize = 10;

    /// Validates an extension number. Surrounding white space is not trimmed: an extension
    /// is an exact dial string.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        const FIELD: &str = "extension";
        if raw.is_empty() {
            return Err(FieldError::new(FIELD, Rule::Required));
        }
        if !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldError::new(FIELD, Rule::NotDigits));
        }
        let len = raw.len();
        if len < Self::MIN_LEN {
            return Err(FieldError::new(
                FIELD,
                Rule::TooShort {
                    min: Self::MIN_LEN,
                    got: len,
                },
            ));
        }
        if len > Self::MAX_LEN {
            return Err(FieldError::new(
                FIELD,
                Rule::TooLong {
                    max: Self::MAX_LEN,
                    got: len,
                },
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}
string_newtype_serde!(ExtensionNumber);

/// An agent's display name: 1 to 100 characters after trimming, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AgentName(String);

impl AgentName {
    /// The longest name, in characters.
    pub const MAX_LEN: usize = 100;

    /// Validates and trims an agent name.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        checked_text("agent_name", raw, Self::MAX_LEN).map(Self)
    }
}
string_newtype_serde!(AgentName);

/// A department name: 1 to 50 characters after trimming, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Department(String);

impl Department {
    /// The longest department name, in characters.
    pub const MAX_LEN: usize = 50;

    /// Validates and trims a department name.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        checked_text("department", raw, Self::MAX_LEN).map(Self)
    }
}
string_newtype_serde!(Department);

/// A record id: 24 lower-case hexadecimal characters, the text form of a MongoDB ObjectId.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RecordId(String);

impl RecordId {
    /// Validates an id. Upper-case hex is accepted and stored lower-case, as MongoDB prints it.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.len() == 24 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(raw.to_ascii_lowercase()))
        } else {
            Err(FieldError::new("_id", Rule::NotAnId))
        }
    }

    /// Builds an id from the 12 bytes of an ObjectId.
    pub fn from_bytes(bytes: [u8; 12]) -> Self {
        use fmt::Write as _;
        let mut s = String::with_capacity(24);
        for b in bytes {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
        }
        Self(s)
    }

    /// The 12 bytes of the ObjectId this id spells.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        for (i, chunk) in self.0.as_bytes().chunks(2).enumerate() {
            let hex = |c: u8| match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                // Parsing admitted only lower-case hex digits.
                _ => 0,
            };
            if let (Some(slot), [hi, lo]) = (out.get_mut(i), chunk) {
                *slot = (hex(*hi) << 4) | hex(*lo);
            }
        }
        out
    }
}
string_newtype_serde!(RecordId);

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: fmt::Debug + AsRef<str>>(got: Result<T, FieldError>, want: Result<&str, &str>) {
        match (got, want) {
            (Ok(v), Ok(w)) => assert_eq!(v.as_ref(), w),
            (Err(e), Err(w)) => assert_eq!(e.to_string(), w),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn extension_numbers() {
        let rows: &[(&str, Result<&str, &str>)] = &[
            ("1001", Ok("1001")),
            ("10", Ok("10")),
            ("0123456789", Ok("0123456789")),
            ("", Err("extension is required and may not be blank")),
            ("1", Err("extension must be at least 2 characters, got 1")),
            (
                "01234567890",
                Err("extension must be at most 10 characters, got 11"),
            ),
            ("10a1", Err("extension must contain only the digits 0-9")),
            (" 1001", Err("extension must contain only the digits 0-9")),
            ("١٢٣", Err("extension must contain only the digits 0-9")),
            ("+1001", Err("extension must contain only the digits 0-9")),
        ];
        for (raw, want) in rows {
            check(ExtensionNumber::parse(raw), *want);
        }
    }

    #[test]
    fn agent_names_and_departments() {
        let long = "x".repeat(101);
        let rows: &[(&str, Result<&str, &str>)] = &[
            ("  Alice Smith ", Ok("Alice Smith")),
            ("Zoë Müller", Ok("Zoë Müller")),
            ("   ", Err("agent_name is required and may not be blank")),
            (
                &long,
                Err("agent_name must be at most 100 characters, got 101"),
            ),
            (
                "Bob\nSmith",
                Err("agent_name must not contain control characters"),
            ),
            (
                "Bob\u{0}",
                Err("agent_name must not contain control characters"),
            ),
            // Unicode's line and paragraph separators break the line on the board like \n.
            (
                "Bob\u{2028}Smith",
                Err("agent_name must not contain control characters"),
            ),
            (
                "Bob\u{2029}Smith",
                Err("agent_name must not contain control characters"),
            ),
        ];
        for (raw, want) in rows {
            check(AgentName::parse(raw), *want);
        }
        // 100 multi-byte characters are allowed: the limit counts characters, not bytes.
        check(AgentName::parse(&"é".repeat(100)), Ok(&"é".repeat(100)));
        check(Department::parse(" Sales "), Ok("Sales"));
        check(
            Department::parse(&"d".repeat(51)),
            Err("department must be at most 50 characters, got 51"),
        );
        check(
            Department::parse("a\tb"),
            Err("department must not contain control characters"),
        );
    }

    #[test]
    fn record_ids() {
        let id = RecordId::parse("65A1B2C3D4E5F60718293A4B").expect("valid");
        assert_eq!(id.as_str(), "65a1b2c3d4e5f60718293a4b");
        assert_eq!(RecordId::from_bytes(id.to_bytes()), id);
        for bad in [
            "",
            "65a1",
            "zz a1b2c3d4e5f60718293a4b",
            "65a1b2c3d4e5f60718293a4bb",
        ] {
            assert_eq!(
                RecordId::parse(bad).expect_err(bad).to_string(),
                "_id must be a 24-character hexadecimal id"
            );
        }
    }

    #[test]
    fn extension_numbers_order_by_value_then_length() {
        let mut numbers: Vec<ExtensionNumber> = [
            "1001",
            "200",
            "0999",
            "99",
            "9999999999",
            "0000000000",
            "1000",
            "10",
            "0101",
            "101",
            "00101",
            "100",
            "102",
            "00",
        ]
        .iter()
        .map(|s| ExtensionNumber::parse(s).expect("ext"))
        .collect();
        numbers.sort();
        let got: Vec<&str> = numbers.iter().map(ExtensionNumber::as_str).collect();
        assert_eq!(
            got,
            [
                "00",
                "0000000000",
                "10",
                "99",
                "100",
                "101",
                "0101",
                "00101",
                "102",
                "200",
                "0999",
                "1000",
                "1001",
                "9999999999"
            ]
        );
        // The cached key agrees with the order everywhere, and only equal numbers share it.
        for a in &numbers {
            for b in &numbers {
                assert_eq!(a.cmp(b), a.order_key().cmp(&b.order_key()), "{a} vs {b}");
                assert_eq!(a == b, a.order_key() == b.order_key(), "{a} vs {b}");
            }
            // The key of stored digits is the number's own.
            assert_eq!(
                ExtensionNumber::order_key_of(a.as_str().as_bytes()),
                Some(a.order_key())
            );
        }
        for bad in ["", "1", "12345678901", "10a1", " 101", "１０"] {
            assert_eq!(
                ExtensionNumber::order_key_of(bad.as_bytes()),
                None,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn serde_validates() {
        let n: ExtensionNumber = serde_json::from_str("\"1001\"").expect("valid");
        assert_eq!(serde_json::to_string(&n).expect("ser"), "\"1001\"");
        let err = serde_json::from_str::<ExtensionNumber>("\"1\"").expect_err("too short");
        assert!(err.to_string().contains("extension must be at least 2"));
    }
}
