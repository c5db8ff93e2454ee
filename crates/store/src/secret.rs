//! [`Secret`]: the one type for a value that must never be shown (a MongoDB URI with
//! credentials, the AMI secret, API tokens), shared by every binary of the workspace.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A secret value. It prints as `[redacted]` in every `Debug` and `Display`, so no log line or
/// error message can carry it; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty text (an empty `TOKEN=` variable), which callers treat
    /// as not given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("mongodb://u:s3cr3t@db/");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "mongodb://u:s3cr3t@db/");
        let parsed: Secret = serde_json::from_str("\"t0k3n\"").expect("json");
        assert_eq!(parsed, Secret::new("t0k3n"));
        assert!(Secret::new("").is_empty());
    }
}
