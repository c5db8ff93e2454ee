//! The store's settings as binaries declare them (feature `cli`): one clap + serde struct that
//! api-server and seeder flatten into their command lines (and api-server into its TOML file),
//! so each flag, environment variable and file key is written once. This module reads nothing
//! itself: clap reads the flags and `EXTSTATUS_*` variables in the binary, and the binary passes
//! in the conventional `MONGODB_URI` through [`StoreArgs::with_plain_env`].

use std::path::PathBuf;

use serde::Deserialize;

use crate::Secret;

/// Where the records are: the embedded store's directory, or a MongoDB deployment. Every field
/// is optional, so that a caller can merge several sources (flags over a file over defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args, Deserialize)]
#[serde(default)]
pub struct StoreArgs {
    /// The embedded store's directory, used when no MongoDB URI is given [default: ./data].
    #[arg(long, env = "EXTSTATUS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use MongoDB instead of the embedded store (also read from MONGODB_URI).
    #[arg(
        long,
        env = "EXTSTATUS_MONGODB_URI",
        value_name = "URI",
        hide_env_values = true
    )]
    pub mongodb_uri: Option<Secret>,
    /// MongoDB database name [default: call_center].
    #[arg(long, env = "EXTSTATUS_MONGODB_DB", value_name = "NAME")]
    pub mongodb_db: Option<String>,
}

impl StoreArgs {
    /// The embedded store's directory when none is given.
    pub const DEFAULT_DATA_DIR: &'static str = "./data";
    /// The MongoDB database when none is given.
    pub const DEFAULT_DATABASE: &'static str = "call_center";

    /// Fills the MongoDB URI from its conventional variable `MONGODB_URI` when neither the flag
    /// nor `EXTSTATUS_MONGODB_URI` gave one; an empty or blank value counts as not set (in
    /// each of them: an empty `EXTSTATUS_MONGODB_URI=` leaves `MONGODB_URI` in force).
    pub fn with_plain_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        if self.mongodb_uri().is_none() {
            self.mongodb_uri = lookup("MONGODB_URI")
                .filter(|v| !v.trim().is_empty())
                .map(Secret::new);
        }
        self
    }

    /// These settings where given, else `other`'s (flags over a file, say). An empty MongoDB
    /// URI counts as not given, so it does not hide `other`'s.
    pub fn or(self, other: StoreArgs) -> StoreArgs {
        let uri = self.mongodb_uri().cloned();
        StoreArgs {
            data_dir: self.data_dir.or(other.data_dir),
            mongodb_uri: uri.or(other.mongodb_uri),
            mongodb_db: self.mongodb_db.or(other.mongodb_db),
        }
    }

    /// The MongoDB URI, unless none (or an empty one) was given.
    pub fn mongodb_uri(&self) -> Option<&Secret> {
        self.mongodb_uri.as_ref().filter(|s| !s.is_empty())
    }

    /// The embedded store's directory, or [`StoreArgs::DEFAULT_DATA_DIR`].
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(Self::DEFAULT_DATA_DIR))
    }

    /// The MongoDB database, or [`StoreArgs::DEFAULT_DATABASE`].
    pub fn database(&self) -> String {
        self.mongodb_db
            .clone()
            .unwrap_or_else(|| Self::DEFAULT_DATABASE.to_owned())
    }

    /// Checks the store settings in use, without connecting or creating anything: with
    /// MongoDB the URI's syntax and options (described without its password) and the database
    /// name; otherwise that `--data-dir`, when it exists, is a directory. The error names the
    /// flag at fault and what is wrong, for a configuration error at start-up rather than a
    /// failure once running.
    #[cfg(feature = "mongodb")]
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let Some(uri) = self.mongodb_uri() else {
            return self.check_data_dir();
        };
        crate::check_uri(uri.expose()).map_err(|p| ("--mongodb-uri", p))?;
        crate::check_database_name(&self.database()).map_err(|p| ("--mongodb-db", p))
    }

    /// An existing `--data-dir` that is not a directory (a file) can never hold the store.
    /// One that does not exist yet is created when the store opens, and any other problem is
    /// named then.
    fn check_data_dir(&self) -> Result<(), (&'static str, String)> {
        let dir = self.data_dir();
        match std::fs::metadata(&dir) {
            Ok(meta) if !meta.is_dir() => Err((
                "--data-dir",
                format!(
                    "{} is not a directory; give the directory the embedded store keeps its \
                     file in (it is created when missing)",
                    dir.display()
                ),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        store: StoreArgs,
    }

    #[test]
    fn flags_defaults_and_the_plain_variable() {
        let cli = Cli::try_parse_from(["x", "--mongodb-uri", "mongodb://h/"]).expect("flags");
        assert_eq!(cli.store.mongodb_uri(), Some(&Secret::new("mongodb://h/")));
        assert_eq!(cli.store.database(), "call_center");
        assert_eq!(cli.store.data_dir(), PathBuf::from("./data"));
        let env = |k: &str| (k == "MONGODB_URI").then(|| "mongodb://plain/".to_owned());
        let kept = cli.store.clone().with_plain_env(env);
        assert_eq!(kept.mongodb_uri(), Some(&Secret::new("mongodb://h/")));
        let filled = StoreArgs::default().with_plain_env(env);
        assert_eq!(filled.mongodb_uri(), Some(&Secret::new("mongodb://plain/")));
        let blank = StoreArgs::default().with_plain_env(|_| Some("  ".to_owned()));
        assert_eq!(blank.mongodb_uri(), None);
        // An empty EXTSTATUS_MONGODB_URI (or flag) is not set: MONGODB_URI and the file apply.
        let empty = Cli::try_parse_from(["x", "--mongodb-uri", ""]).expect("flags");
        let filled = empty.store.clone().with_plain_env(env);
        assert_eq!(filled.mongodb_uri(), Some(&Secret::new("mongodb://plain/")));
        let from_file = StoreArgs {
            mongodb_uri: Some(Secret::new("mongodb://file/")),
            ..StoreArgs::default()
        };
        let merged = empty.store.or(from_file);
        assert_eq!(merged.mongodb_uri(), Some(&Secret::new("mongodb://file/")));
        let file: StoreArgs =
            serde_json::from_str(r#"{"mongodb_db":"other","data_dir":"/d"}"#).expect("file");
        let merged = cli.store.or(file);
        assert_eq!(merged.database(), "other");
        assert_eq!(merged.data_dir(), PathBuf::from("/d"));
        assert!(!format!("{merged:?}").contains("mongodb://h/"));
    }

    #[cfg(feature = "mongodb")]
    #[test]
    fn mongodb_settings_are_checked_naming_the_flag() {
        let check = |flags: &[&str]| {
            let mut argv = vec!["x"];
            argv.extend_from_slice(flags);
            Cli::try_parse_from(argv).expect("flags").store.check()
        };
        assert_eq!(check(&[]), Ok(()));
        // The database name matters only with a URI.
        assert_eq!(check(&["--mongodb-db", "a.b"]), Ok(()));
        assert_eq!(check(&["--mongodb-uri", "mongodb://u:pw@h/"]), Ok(()));
        let (flag, problem) = check(&["--mongodb-uri", "mongodb://u:se/cret@h/"]).expect_err("uri");
        assert_eq!(flag, "--mongodb-uri");
        assert!(!problem.contains("cret"), "{problem}");
        let (flag, problem) = check(&["--mongodb-uri", "notauri"]).expect_err("no scheme");
        assert_eq!(flag, "--mongodb-uri", "{problem}");
        let (flag, problem) =
            check(&["--mongodb-uri", "mongodb://h/", "--mongodb-db", "a.b"]).expect_err("db");
        assert_eq!(flag, "--mongodb-db");
        assert!(problem.contains("'.'"), "{problem}");
        let (flag, _) =
            check(&["--mongodb-uri", "mongodb://h/", "--mongodb-db", ""]).expect_err("empty db");
        assert_eq!(flag, "--mongodb-db");
    }

    #[cfg(feature = "mongodb")]
    #[test]
    fn a_data_dir_that_is_a_file_is_refused_naming_the_flag() {
        let file = tempfile::NamedTempFile::new().expect("file");
        let path = file.path().to_str().expect("utf-8 path");
        let check = |flags: &[&str]| {
            let mut argv = vec!["x"];
            argv.extend_from_slice(flags);
            Cli::try_parse_from(argv).expect("flags").store.check()
        };
        let (flag, problem) = check(&["--data-dir", path]).expect_err("a file");
        assert_eq!(flag, "--data-dir");
        assert!(
            problem.contains(path) && problem.contains("not a directory"),
            "{problem}"
        );
        // Not used with MongoDB; a directory, or one still to be created, is fine.
        assert_eq!(
            check(&["--data-dir", path, "--mongodb-uri", "mongodb://h/"]),
            Ok(())
        );
        let dir = tempfile::tempdir().expect("dir");
        let dir = dir.path().to_str().expect("utf-8 path");
        assert_eq!(check(&["--data-dir", dir]), Ok(()));
        assert_eq!(check(&["--data-dir", &format!("{dir}/new")]), Ok(()));
    }
}

/// `command` with the environment variable of each argument whose variable is set but empty
/// taken off, so that such a variable counts as unset: clap would take it as the value (and
/// refuse an empty path outright, failing the whole command line). A blank one (spaces) is left
/// to the argument's own check, which refuses it where it matters (a token of spaces is a
/// mistake, not "no token"). The binaries parse with the command this returns.
pub fn without_blank_env(mut command: clap::Command) -> clap::Command {
    let blank: Vec<clap::Id> = command
        .get_arguments()
        .filter(|arg| {
            arg.get_env()
                .and_then(std::env::var_os)
                .is_some_and(|v| v.is_empty())
        })
        .map(|arg| arg.get_id().clone())
        .collect();
    for id in blank {
        command = command.mut_arg(id, |arg| arg.env(None::<&'static str>));
    }
    command
}

/// Why no request could ever present `token`, if that is so: the api-server's rule for its own
/// tokens at start-up, and the seeder's for the `--token` it sends. A request's token is trimmed
/// and read as visible ASCII (`Authorization: Bearer TOKEN`, or `?token=` on `/ws`), so a token
/// with surrounding whitespace (a secrets file's trailing newline), only whitespace, or other
/// characters would be answered 401 every time; it is refused before any request instead.
pub fn token_problem(token: &str) -> Result<(), &'static str> {
    if token.trim().is_empty() {
        return Err("is only whitespace; give a token of visible ASCII characters");
    }
    if token.trim() != token {
        return Err(
            "starts or ends with whitespace (a trailing newline from a secrets file?); no \
             request can present it, so remove it",
        );
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "may hold only visible ASCII characters (letters, digits and punctuation, no \
             spaces), as an HTTP header carries them",
        );
    }
    Ok(())
}

/// An error and its causes as one line for a person, each cause once: store errors and HTTP
/// clients already show their cause in their own message (or hide the reason, such as
/// "connection refused", in a source), so a cause the text before it already holds is left out
/// (`{e:#}` would print it two or three times).
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod causes_tests {
    use super::causes;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct E {
        text: &'static str,
        #[source]
        source: Option<Box<E>>,
    }

    fn e(text: &'static str, source: Option<E>) -> E {
        E {
            text,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let inner = e("connection refused", None);
        let middle = e("cannot open the store: connection refused", Some(inner));
        let outer = e("starting", Some(middle));
        assert_eq!(
            causes(&outer),
            "starting: cannot open the store: connection refused"
        );
        let hidden = e("error sending request", Some(e("connection refused", None)));
        assert_eq!(causes(&hidden), "error sending request: connection refused");
    }
}
