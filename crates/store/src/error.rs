//! The one error type every backend returns, with questions callers ask instead of matching.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;

use domain::ExtensionNumber;

/// The underlying cause of an error, shared so that one failed group commit can be reported to
/// every caller in the group.
pub type Cause = Arc<dyn StdError + Send + Sync + 'static>;

/// Wraps any error as a [`Cause`].
pub(crate) fn cause(e: impl StdError + Send + Sync + 'static) -> Cause {
    Arc::new(e)
}

/// A plain-text cause, for failures that have no error value of their own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Message(pub(crate) String);

/// The cause of an [`StoreError::Unavailable`] write whose outcome is unknown: it was sent, but
/// the connection failed (or the caller stopped waiting) before the store answered, so it may
/// have been applied. A caller that answers a user must not say "not applied" then.
#[derive(Debug, thiserror::Error)]
#[error("{0}; the write may have been applied")]
pub struct OutcomeUnknown(pub String);

/// What went wrong in a store operation.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No record has the given id or extension number.
    #[error("no such extension")]
    NotFound,
    /// Another record already has this extension number.
    #[error("extension {extension} already exists")]
    Conflict {
        /// The extension number that is taken.
        extension: ExtensionNumber,
    },
    /// The store cannot be reached or is shutting down; the same call may succeed later.
    #[error("the store is unavailable: {cause}")]
    Unavailable {
        /// Why.
        #[source]
        cause: Cause,
    },
    /// Stored data could not be read back as a valid record.
    #[error("the stored data is corrupt: {detail}")]
    Corrupt {
        /// What was found.
        detail: String,
    },
    /// Anything else the backend reported.
    #[error("store error: {cause}")]
    Internal {
        /// Why.
        #[source]
        cause: Cause,
    },
    /// The data directory or file cannot be created, opened or written.
    #[error("cannot use {}: {cause}", path.display())]
    InvalidPath {
        /// The path at fault.
        path: PathBuf,
        /// Why.
        #[source]
        cause: Cause,
    },
    /// The backend configuration is unusable (for example a malformed MongoDB URI).
    #[error("invalid store configuration: {detail}")]
    InvalidConfig {
        /// What is wrong; never contains credentials.
        detail: String,
    },
    /// The store file is held open by another process (or another store in this process).
    #[error(
        "{} is already open in another process: an embedded store belongs to one api-server \
         (several api-server instances need MongoDB: --mongodb-uri; to load records while the \
         server runs, use the seeder's --api mode)",
        path.display()
    )]
    Locked {
        /// The file that is locked.
        path: PathBuf,
    },
}

impl StoreError {
    /// Whether the record was not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound)
    }

    /// Whether the extension number is taken.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// Whether retrying the same call later may succeed (the server went away, a failover, the
    /// store is restarting).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// Whether the failed operation may still have been applied ([`OutcomeUnknown`]).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, StoreError::Unavailable { cause } if cause.downcast_ref::<OutcomeUnknown>().is_some())
    }

    /// An `Unavailable` error with a text cause.
    pub(crate) fn unavailable(msg: impl Into<String>) -> Self {
        StoreError::Unavailable {
            cause: cause(Message(msg.into())),
        }
    }

    /// An `Internal` error with a text cause.
    pub(crate) fn internal(msg: impl Into<String>) -> Self {
        StoreError::Internal {
            cause: cause(Message(msg.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_and_messages() {
        let ext = ExtensionNumber::parse("1001").expect("ext");
        let rows: Vec<(StoreError, bool, bool, bool, &str)> = vec![
            (
                StoreError::NotFound,
                true,
                false,
                false,
                "no such extension",
            ),
            (
                StoreError::Conflict { extension: ext },
                false,
                true,
                false,
                "extension 1001 already exists",
            ),
            (
                StoreError::unavailable("connection refused"),
                false,
                false,
                true,
                "the store is unavailable: connection refused",
            ),
            (
                StoreError::Locked {
                    path: PathBuf::from("/data/extstatus.redb"),
                },
                false,
                false,
                false,
                "/data/extstatus.redb is already open in another process: an embedded store \
                 belongs to one api-server (several api-server instances need MongoDB: \
                 --mongodb-uri; to load records while the server runs, use the seeder's --api \
                 mode)",
            ),
            (
                StoreError::InvalidPath {
                    path: PathBuf::from("/nope/x"),
                    cause: cause(std::io::Error::other("permission denied")),
                },
                false,
                false,
                false,
                "cannot use /nope/x: permission denied",
            ),
        ];
        for (err, not_found, conflict, transient, msg) in rows {
            assert_eq!(err.is_not_found(), not_found, "{err:?}");
            assert_eq!(err.is_conflict(), conflict, "{err:?}");
            assert_eq!(err.is_transient(), transient, "{err:?}");
            assert_eq!(err.to_string(), msg);
        }
    }
}
