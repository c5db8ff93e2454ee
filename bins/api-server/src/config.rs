//! The server's configuration: command-line flags (each also an environment variable), an
//! optional TOML file, and the typed, fully resolved [`Config`] the rest of the library takes.
//!
//! Every setting is declared once, in [`Args`]: its flag, its `EXTSTATUS_*` variable (clap) and
//! its TOML key (serde, the field's name); the store's settings come from the `store` crate's
//! [`StoreArgs`], flattened in. Precedence is flags > environment > file > defaults: clap reads
//! flags and variables into one [`Args`] (so every setting is optional and carries no clap
//! default), the file is read into another, and [`Config::resolve`] merges them over the
//! defaults. Reading the process environment and the file is left to the binary, which passes
//! what it read in.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use store::cli::StoreArgs;

/// The workspace's one secret type (AMI secret, API tokens, a MongoDB URI with credentials):
/// it prints as `[redacted]` in every `Debug` and `Display`.
pub use store::Secret;

/// A duration written as a number with an optional unit: `500ms`, `2s`, `5m`, `1h`; a bare
/// number counts seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a duration such as 500ms, 2s, 5m or 1h"))?;
        let d = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "" | "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            other => return Err(format!("unknown duration unit {other:?} in {s:?}")),
        };
        Ok(Self(d))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A number of seconds or a text with a unit; anything else is named as what it is.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration: seconds as a whole number, or a text such as \"500ms\", \"2s\", \"5m\" or \"1h\"")
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration(Duration::from_secs(n)))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<HumanDuration, E> {
                u64::try_from(n)
                    .map(|n| HumanDuration(Duration::from_secs(n)))
                    .map_err(|_| E::custom(format!("a duration cannot be negative ({n})")))
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The pause reasons the dashboard offers, written as one comma-separated list
/// (`Lunch,Break,Training`) or, in the TOML file, as a list or that same text. Each entry is a
/// valid pause reason (1 to 64 characters, no control characters); empty entries between
/// commas are skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PauseReasons(pub Vec<String>);

impl FromStr for PauseReasons {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_entries(s.split(',').map(str::to_owned).collect())
    }
}

impl PauseReasons {
    /// The list the dashboard offers when none is configured.
    pub const DEFAULT: &'static str = "Lunch,Break,Training,After call work,Meeting";

    /// Checks every entry (trimmed; blank entries skipped) and refuses duplicates, naming the
    /// entry by its position and text.
    fn from_entries(entries: Vec<String>) -> Result<Self, String> {
        let mut out: Vec<String> = Vec::new();
        for (i, raw) in entries.iter().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let reason = domain::PauseReason::parse(raw)
                .map_err(|e| format!("entry {} ({raw:?}) {}", i + 1, e.rule))?;
            let text = reason.as_str().to_owned();
            if out.iter().any(|o| o.eq_ignore_ascii_case(&text)) {
                return Err(format!("entry {} ({raw:?}) is listed twice", i + 1));
            }
            out.push(text);
        }
        if out.is_empty() {
            return Err(
                "the list is empty; give at least one reason, e.g. \"Lunch,Break\"".to_owned(),
            );
        }
        Ok(Self(out))
    }
}

impl<'de> Deserialize<'de> for PauseReasons {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A list of texts or one comma-separated text; an entry that is not a text is named by
        /// its position.
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PauseReasons;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of pause reasons (texts) or one comma-separated text")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<PauseReasons, E> {
                s.parse()
                    .map_err(|e| E::custom(format!("pause_reasons: {e}")))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<PauseReasons, A::Error> {
                use serde::de::Error as _;
                let mut entries = Vec::new();
                loop {
                    let at = entries.len() + 1;
                    match seq.next_element::<String>() {
                        Ok(Some(entry)) => entries.push(entry),
                        Ok(None) => break,
                        Err(e) => {
                            return Err(A::Error::custom(format!(
                                "pause_reasons: entry {at} is not a text: {e}"
                            )));
                        }
                    }
                }
                PauseReasons::from_entries(entries)
                    .map_err(|e| A::Error::custom(format!("pause_reasons: {e}")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Every setting, declared once: the command line (each flag also read from `EXTSTATUS_<NAME>`)
/// and the TOML file (each key the field's name, in snake_case). No setting has a clap default,
/// so that [`Config::resolve`] can tell "not given" from "given".
#[derive(Clone, Debug, Default, clap::Parser, Deserialize)]
#[serde(default)]
#[command(
    name = "api-server",
    version,
    about = "extstatus: live extension status from Asterisk AMI over REST and WebSocket",
    after_help = "Precedence: flags > environment > --config file > defaults. \
                  MONGODB_URI and AMI_SECRET are also accepted without the EXTSTATUS_ prefix."
)]
pub struct Args {
    /// A TOML file with any of the settings below (keys in snake_case, e.g. `data_dir`).
    #[arg(long, env = "EXTSTATUS_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// HTTP + WebSocket address [default: 127.0.0.1:8080].
    #[arg(long, env = "EXTSTATUS_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Where the records are: `--data-dir`, `--mongodb-uri`, `--mongodb-db`.
    #[command(flatten)]
    #[serde(flatten)]
    pub store: StoreArgs,
    /// Asterisk manager address [default: 127.0.0.1:5038].
    #[arg(long, env = "EXTSTATUS_AMI", value_name = "ADDR")]
    pub ami: Option<String>,
    /// Asterisk manager user name.
    #[arg(long, env = "EXTSTATUS_AMI_USER", value_name = "NAME")]
    pub ami_user: Option<String>,
    /// Asterisk manager secret, never logged (also read from AMI_SECRET).
    #[arg(
        long,
        env = "EXTSTATUS_AMI_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub ami_secret: Option<Secret>,
    /// Log in with the MD5 challenge, so that the secret never crosses the network.
    #[arg(long, env = "EXTSTATUS_AMI_MD5", value_parser = clap::builder::BoolishValueParser::new())]
    pub ami_md5: bool,
    /// Follow only the hints of this dialplan context (for a PBX where one number is hinted in
    /// several contexts, e.g. one per tenant); by default every context counts.
    #[arg(long, env = "EXTSTATUS_AMI_CONTEXT", value_name = "NAME")]
    pub ami_context: Option<String>,
    /// Let supervisors pause and resume agents in their queues from the API (`QueuePause`);
    /// the manager user then needs `write = agent` too. Off by default, so a read-only user is
    /// enough.
    #[arg(long, env = "EXTSTATUS_AMI_ACTIONS", value_parser = clap::builder::BoolishValueParser::new())]
    pub ami_actions: bool,
    /// When set, POST/PUT/DELETE need `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        env = "EXTSTATUS_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<Secret>,
    /// When set, GET /api/*, /metrics and /ws need a viewer or admin token.
    #[arg(
        long,
        env = "EXTSTATUS_VIEWER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub viewer_token: Option<Secret>,
    /// Sample extensions (seeded into an empty store: the embedded one, or MongoDB when a URI
    /// is given) and a built-in AMI simulator on loopback.
    #[arg(long, env = "EXTSTATUS_DEMO", value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,
    /// Log format [default: human].
    #[arg(long, env = "EXTSTATUS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter in `tracing` syntax, e.g. `info,api_server=debug` [default: info].
    #[arg(long, env = "EXTSTATUS_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// How often the full extension list is fetched again to repair drift [default: 5m].
    #[arg(long, env = "EXTSTATUS_RESYNC_INTERVAL", value_name = "DURATION")]
    pub resync_interval: Option<HumanDuration>,
    /// How long to wait for `FullyBooted` after each login [default: 2s].
    #[arg(long, env = "EXTSTATUS_FULLY_BOOTED_WAIT", value_name = "DURATION")]
    pub fully_booted_wait: Option<HumanDuration>,
    /// How long the PBX link may be down before clients are told [default: 5s].
    #[arg(long, env = "EXTSTATUS_PBX_GRACE", value_name = "DURATION")]
    pub pbx_grace: Option<HumanDuration>,
    /// How often the AMI link is pinged; a ping unanswered for this long (at most 5s) drops the
    /// link [default: 20s].
    #[arg(long, env = "EXTSTATUS_AMI_PING_INTERVAL", value_name = "DURATION")]
    pub ami_ping_interval: Option<HumanDuration>,
    /// How often the server pings each WebSocket client [default: 15s].
    #[arg(long, env = "EXTSTATUS_WS_PING_INTERVAL", value_name = "DURATION")]
    pub ws_ping_interval: Option<HumanDuration>,
    /// A WebSocket client silent (no pong, no message) for this long is closed [default: 45s].
    #[arg(long, env = "EXTSTATUS_WS_TIMEOUT", value_name = "DURATION")]
    pub ws_timeout: Option<HumanDuration>,
    /// How long shutdown waits for requests and writes to finish [default: 10s].
    #[arg(long, env = "EXTSTATUS_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    pub shutdown_timeout: Option<HumanDuration>,
    /// How often `last_seen` refreshes are written, at most one per extension [default: 1s].
    #[arg(long, env = "EXTSTATUS_LAST_SEEN_INTERVAL", value_name = "DURATION")]
    pub last_seen_interval: Option<HumanDuration>,
    /// The pause reasons the dashboard offers, comma-separated (free text is allowed too)
    /// [default: Lunch,Break,Training,After call work,Meeting].
    #[arg(long, env = "EXTSTATUS_PAUSE_REASONS", value_name = "LIST")]
    pub pause_reasons: Option<PauseReasons>,
    /// The dashboard shows a queue's longest wait in amber from this long [default: 30s].
    #[arg(long, env = "EXTSTATUS_QUEUE_WAIT_AMBER", value_name = "DURATION")]
    pub queue_wait_amber: Option<HumanDuration>,
    /// The dashboard shows a queue's longest wait in red from this long [default: 90s].
    #[arg(long, env = "EXTSTATUS_QUEUE_WAIT_RED", value_name = "DURATION")]
    pub queue_wait_red: Option<HumanDuration>,
    /// How many days of history are kept; older entries are deleted in the background
    /// [default: 93].
    #[arg(long, env = "EXTSTATUS_HISTORY_DAYS", value_name = "DAYS")]
    pub history_days: Option<u32>,
    /// Browser origins other than the server's own that may call the API and open `/ws`, as a
    /// comma list of exact origins (`https://wall.example.com,http://localhost:3000`)
    /// [default: none, CORS off].
    #[arg(
        long,
        env = "EXTSTATUS_CORS_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Option<Vec<String>>,
    /// Write requests (POST/PUT/DELETE/PATCH) each client IP may make per second, on average;
    /// 0 turns the limit off [default: 50].
    #[arg(long, env = "EXTSTATUS_RATE_LIMIT", value_name = "PER_SECOND")]
    pub rate_limit: Option<u32>,
    /// Write requests a client IP may make at once before the average applies [default: 200].
    #[arg(long, env = "EXTSTATUS_RATE_LIMIT_BURST", value_name = "REQUESTS")]
    pub rate_limit_burst: Option<u32>,
    /// Most WebSocket clients served at once; more are answered 503 [default: 10000].
    #[arg(long, env = "EXTSTATUS_WS_MAX_CONNECTIONS", value_name = "N")]
    pub ws_max_connections: Option<usize>,
    /// Largest WebSocket message a client may send, in bytes; a larger one closes the socket
    /// with code 1009 [default: 4096].
    #[arg(long, env = "EXTSTATUS_WS_MAX_MESSAGE", value_name = "BYTES")]
    pub ws_max_message: Option<usize>,
    /// How long a store operation may take before it fails as unavailable (a user edit then
    /// answers 503), and MongoDB's server selection timeout when the URI sets none
    /// [default: 1500ms].
    #[arg(long, env = "EXTSTATUS_STORE_TIMEOUT", value_name = "DURATION")]
    pub store_timeout: Option<HumanDuration>,
    /// This instance's name among several on one MongoDB database (in the lease and the
    /// change log) [default: the host name and the listen port, e.g. `web-1:8080`].
    #[arg(long, env = "EXTSTATUS_INSTANCE_ID", value_name = "NAME")]
    pub instance_id: Option<String>,
    /// On MongoDB: how long the AMI lease lasts without a renewal; the holder renews every
    /// third of it, and another instance takes over after a whole lease time without one
    /// [default: 10s].
    #[arg(long, env = "EXTSTATUS_LEASE_TIME", value_name = "DURATION")]
    pub lease_time: Option<HumanDuration>,
    /// On MongoDB without change streams: how often each instance reads the change log for
    /// new entries [default: 25ms].
    #[arg(long, env = "EXTSTATUS_CHANGE_LOG_POLL", value_name = "DURATION")]
    pub change_log_poll: Option<HumanDuration>,
    /// On MongoDB: how long change-log entries are kept (what a `?resume` on another
    /// instance can still continue from) [default: 1h].
    #[arg(long, env = "EXTSTATUS_CHANGE_LOG_RETENTION", value_name = "DURATION")]
    pub change_log_retention: Option<HumanDuration>,
}

impl Args {
    /// Fills the two secrets that are also accepted under their conventional names
    /// (`MONGODB_URI`, `AMI_SECRET`) when neither a flag nor the `EXTSTATUS_` variable gave them.
    pub fn with_plain_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        self.store = self.store.with_plain_env(&lookup);
        if non_empty(self.ami_secret.clone()).is_none() {
            self.ami_secret = lookup("AMI_SECRET")
                .filter(|v| !v.is_empty())
                .map(Secret::new);
        }
        self
    }

    /// Reads the TOML file: the same settings as the flags, keys in snake_case. A key that
    /// names no setting is refused, naming the key.
    fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::File(e.to_string()))?;
        let command = <Args as clap::CommandFactory>::command();
        let keys: Vec<&str> = command
            .get_arguments()
            .map(|a| a.get_id().as_str())
            .filter(|id| !matches!(*id, "config" | "help" | "version"))
            .collect();
        if let Some(unknown) = table.keys().find(|k| !keys.contains(&k.as_str())) {
            return Err(ConfigError::File(format!(
                "unknown field `{unknown}`, expected one of {}",
                keys.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Args::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::File(e.to_string()))
    }
}

/// Where records are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded store in this directory.
    Embedded {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// A MongoDB deployment.
    Mongo {
        /// The connection string; it may hold credentials, so it is a secret.
        uri: Secret,
        /// The database name.
        database: String,
    },
}

/// How to reach the Asterisk manager interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmiConfig {
    /// `host:port` of the manager interface.
    pub addr: String,
    /// The manager user; without one the server does not connect (nothing to log in as).
    pub username: Option<String>,
    /// The manager secret.
    pub secret: Option<Secret>,
    /// Log in with the MD5 challenge instead of a plain secret.
    pub md5: bool,
    /// Only hints of this dialplan context count; `None` means every context.
    pub context: Option<String>,
    /// PBX actions (pause and resume from the API) are allowed.
    pub actions: bool,
}

/// The API tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Needed for POST/PUT/DELETE when set.
    pub admin_token: Option<Secret>,
    /// Needed (or the admin token) for GET /api/*, /metrics and /ws when set.
    pub viewer_token: Option<Secret>,
}

/// Browser-facing protections: CORS, the per-client write rate and the WebSocket limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Exact origins (`scheme://host[:port]`, lower-case) besides the server's own that may
    /// call the API and open `/ws`. Empty: CORS is off.
    pub cors_origins: Vec<String>,
    /// Write requests per second per client IP; 0 turns the limit off.
    pub rate_limit: u32,
    /// The bucket size: writes a client may make at once.
    pub rate_limit_burst: u32,
    /// Most WebSocket clients at once.
    pub ws_max_connections: usize,
    /// Largest WebSocket message accepted from a client, in bytes.
    pub ws_max_message: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            rate_limit: 50,
            rate_limit_burst: 200,
            ws_max_connections: 10_000,
            ws_max_message: 4096,
        }
    }
}

impl SecurityConfig {
    /// No write rate limit (for load tests and replays that write faster than a person).
    pub fn unlimited() -> Self {
        Self {
            rate_limit: 0,
            ..Self::default()
        }
    }
}

/// Checks one `--cors-origins` entry and writes it the way browsers send `Origin`: a scheme
/// (`http` or `https`), a host and an optional port, lower-case, nothing else.
fn cors_origin(raw: &str) -> Result<String, ConfigError> {
    let origin = raw.trim().trim_end_matches('/').to_ascii_lowercase();
    let refuse = |why: &str| {
        Err(ConfigError::Invalid {
            setting: "--cors-origins",
            problem: format!("{raw:?} {why}"),
        })
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return refuse("is not an origin such as https://wall.example.com");
    };
    if scheme != "http" && scheme != "https" {
        return refuse("must start with http:// or https://");
    }
    if authority.is_empty()
        || authority == "*"
        || !authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return refuse("must be exactly scheme://host[:port], without a path, query or wildcard");
    }
    Ok(origin)
}

/// Timers of the pipeline, the WebSocket heartbeat and shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// The periodic full resync.
    pub resync_interval: Duration,
    /// How long to wait for `FullyBooted` after a login.
    pub fully_booted_wait: Duration,
    /// How long the PBX link may be down before a `pbx_link` message goes out.
    pub pbx_grace: Duration,
    /// The AMI keepalive period; the pong deadline is the shorter of this and 5 s, so a dead
    /// link is noticed within two periods.
    pub ami_ping_interval: Duration,
    /// The WebSocket ping period.
    pub ws_ping_interval: Duration,
    /// How long a WebSocket client may stay silent before it is closed.
    pub ws_timeout: Duration,
    /// How long shutdown waits for in-flight work.
    pub shutdown_timeout: Duration,
    /// How often coalesced `last_seen` refreshes are written.
    pub last_seen_interval: Duration,
    /// How long a store operation may take before it fails as unavailable.
    pub store_timeout: Duration,
    /// How long an AMI action (and the banner and login) may take before it fails: a list
    /// with no complete answer by then is asked again with a doubling delay. Not a flag (the
    /// client's 10 s suits every PBX); tests shorten it.
    pub ami_action_timeout: Duration,
    /// The first delay before asking again for a list that got no complete answer or was cut
    /// short; it doubles with each further failure, up to 5 minutes. Not a flag; tests shorten
    /// it.
    pub list_retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            resync_interval: Duration::from_secs(300),
            fully_booted_wait: Duration::from_secs(2),
            pbx_grace: Duration::from_secs(5),
            ami_ping_interval: Duration::from_secs(20),
            ws_ping_interval: Duration::from_secs(15),
            ws_timeout: Duration::from_secs(45),
            shutdown_timeout: Duration::from_secs(10),
            last_seen_interval: Duration::from_secs(1),
            store_timeout: Duration::from_millis(1500),
            ami_action_timeout: Duration::from_secs(10),
            list_retry: Duration::from_secs(5),
        }
    }
}

/// Several instances over one MongoDB database (`docs/operations.md`, "Running several
/// instances"); unused with the embedded store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `--instance-id`; `None`: the host name and the port actually bound.
    pub instance_id: Option<String>,
    /// How long the AMI lease lasts without a renewal.
    pub lease_time: Duration,
    /// How often the change log is read when the server has no change streams.
    pub change_log_poll: Duration,
    /// How long change-log entries are kept.
    pub change_log_retention: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            instance_id: None,
            lease_time: Duration::from_secs(10),
            change_log_poll: Duration::from_millis(25),
            change_log_retention: Duration::from_secs(3600),
        }
    }
}

/// The longest `--instance-id`.
const MAX_INSTANCE_ID: usize = 128;

/// What the dashboard needs to know besides the records (served as `GET /api/ui-config`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UiConfig {
    /// The pause reasons offered in the pause dialog, in the order given.
    pub pause_reasons: Vec<String>,
    /// A queue's longest wait shows amber from this long.
    pub queue_wait_amber: Duration,
    /// A queue's longest wait shows red from this long.
    pub queue_wait_red: Duration,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            pause_reasons: PauseReasons::DEFAULT
                .split(',')
                .map(str::to_owned)
                .collect(),
            queue_wait_amber: Duration::from_secs(30),
            queue_wait_red: Duration::from_secs(90),
        }
    }
}

/// Everything the server needs, resolved and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The HTTP listen address as given (`host:port`).
    pub listen: String,
    /// The store.
    pub store: StoreConfig,
    /// The manager interface. In demo mode the address is replaced by the simulator's.
    pub ami: AmiConfig,
    /// The tokens.
    pub auth: AuthConfig,
    /// Demo mode: sample data and the built-in simulator.
    pub demo: bool,
    /// The log format (used by the binary only).
    pub log_format: LogFormat,
    /// The log filter (used by the binary only).
    pub log: String,
    /// Timers.
    pub timing: Timing,
    /// The dashboard's settings.
    pub ui: UiConfig,
    /// Days of history kept (at least 1).
    pub history_days: u32,
    /// CORS, rate limit and WebSocket limits.
    pub security: SecurityConfig,
    /// Several instances over one MongoDB database.
    pub cluster: ClusterConfig,
}

impl Config {
    /// The default of `--history-days`: the longest range the history and analytics endpoints
    /// serve.
    pub const DEFAULT_HISTORY_DAYS: u32 = 93;
    /// The most days of history `--history-days` may keep: 68 years, the longest time
    /// MongoDB's TTL index can hold (`expireAfterSeconds` is a 32-bit number of seconds).
    pub const MAX_HISTORY_DAYS: u32 = 24_855;

    /// How long history is kept.
    pub fn history_retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.history_days) * 86_400)
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML file is not valid.
    #[error("the configuration file is not valid: {0}")]
    File(String),
    /// A value is not valid.
    #[error("{setting}: {problem}")]
    Invalid {
        /// The setting, as its flag is spelled.
        setting: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            store: StoreConfig::Embedded {
                data_dir: PathBuf::from(StoreArgs::DEFAULT_DATA_DIR),
            },
            ami: AmiConfig {
                addr: "127.0.0.1:5038".to_owned(),
                username: None,
                secret: None,
                md5: false,
                context: None,
                actions: false,
            },
            auth: AuthConfig::default(),
            demo: false,
            log_format: LogFormat::Human,
            log: "info".to_owned(),
            timing: Timing::default(),
            ui: UiConfig::default(),
            history_days: Config::DEFAULT_HISTORY_DAYS,
            security: SecurityConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// Drops empty tokens: an empty `EXTSTATUS_ADMIN_TOKEN=` must not turn into a token that an
/// empty `Bearer` header would match. Applied to each source before they are merged.
fn non_empty(s: Option<Secret>) -> Option<Secret> {
    s.filter(|s| !s.expose().is_empty())
}

/// Drops a blank name (the AMI user or context), as [`non_empty`] does a token.
fn non_blank(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

impl Config {
    /// Merges the command line (flags and `EXTSTATUS_*` variables, already in `args`) over the
    /// TOML file text (when one was given) over the defaults, and checks the result.
    pub fn resolve(args: Args, file: Option<&str>) -> Result<Self, ConfigError> {
        let file = match file {
            Some(text) => Args::from_toml(text)?,
            None => Args::default(),
        };
        let d = Config::default();
        let dt = d.timing;
        let pick = |a: Option<HumanDuration>, f: Option<HumanDuration>, default: Duration| {
            a.or(f).map_or(default, |h| h.0)
        };
        let demo = args.demo || file.demo;
        let stored = args.store.or(file.store);
        let ds = SecurityConfig::default();
        let cors_origins = args
            .cors_origins
            .or(file.cors_origins)
            .unwrap_or_default()
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| cors_origin(o))
            .collect::<Result<Vec<_>, _>>()?;
        let security = SecurityConfig {
            cors_origins,
            rate_limit: args.rate_limit.or(file.rate_limit).unwrap_or(ds.rate_limit),
            rate_limit_burst: args
                .rate_limit_burst
                .or(file.rate_limit_burst)
                .unwrap_or(ds.rate_limit_burst),
            ws_max_connections: args
                .ws_max_connections
                .or(file.ws_max_connections)
                .unwrap_or(ds.ws_max_connections),
            ws_max_message: args
                .ws_max_message
                .or(file.ws_max_message)
                .unwrap_or(ds.ws_max_message),
        };
        stored
            .check()
            .map_err(|(setting, problem)| ConfigError::Invalid { setting, problem })?;
        let store = match stored.mongodb_uri() {
            // Demo mode seeds and serves whichever store is configured.
            Some(uri) => StoreConfig::Mongo {
                uri: uri.clone(),
                database: stored.database(),
            },
            _ => StoreConfig::Embedded {
                data_dir: stored.data_dir(),
            },
        };
        let config = Config {
            listen: args.listen.or(file.listen).unwrap_or(d.listen),
            store,
            ami: AmiConfig {
                addr: args.ami.or(file.ami).unwrap_or(d.ami.addr),
                username: non_blank(args.ami_user).or(non_blank(file.ami_user)),
                secret: non_empty(args.ami_secret).or(non_empty(file.ami_secret)),
                md5: args.ami_md5 || file.ami_md5,
                context: non_blank(args.ami_context).or(non_blank(file.ami_context)),
                actions: args.ami_actions || file.ami_actions,
            },
            // An empty value is "not set" in each source, so an empty variable leaves the
            // file's value in force (it used to drop the file's tokens: an open API).
            auth: AuthConfig {
                admin_token: non_empty(args.admin_token).or(non_empty(file.admin_token)),
                viewer_token: non_empty(args.viewer_token).or(non_empty(file.viewer_token)),
            },
            demo,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            log: args.log.or(file.log).unwrap_or(d.log),
            timing: Timing {
                resync_interval: pick(
                    args.resync_interval,
                    file.resync_interval,
                    dt.resync_interval,
                ),
                fully_booted_wait: pick(
                    args.fully_booted_wait,
                    file.fully_booted_wait,
                    dt.fully_booted_wait,
                ),
                pbx_grace: pick(args.pbx_grace, file.pbx_grace, dt.pbx_grace),
                ami_ping_interval: pick(
                    args.ami_ping_interval,
                    file.ami_ping_interval,
                    dt.ami_ping_interval,
                ),
                ws_ping_interval: pick(
                    args.ws_ping_interval,
                    file.ws_ping_interval,
                    dt.ws_ping_interval,
                ),
                ws_timeout: pick(args.ws_timeout, file.ws_timeout, dt.ws_timeout),
                shutdown_timeout: pick(
                    args.shutdown_timeout,
                    file.shutdown_timeout,
                    dt.shutdown_timeout,
                ),
                last_seen_interval: pick(
                    args.last_seen_interval,
                    file.last_seen_interval,
                    dt.last_seen_interval,
                ),
                store_timeout: pick(args.store_timeout, file.store_timeout, dt.store_timeout),
                ami_action_timeout: dt.ami_action_timeout,
                list_retry: dt.list_retry,
            },
            ui: UiConfig {
                pause_reasons: args
                    .pause_reasons
                    .or(file.pause_reasons)
                    .map_or(d.ui.pause_reasons, |r| r.0),
                queue_wait_amber: pick(
                    args.queue_wait_amber,
                    file.queue_wait_amber,
                    d.ui.queue_wait_amber,
                ),
                queue_wait_red: pick(
                    args.queue_wait_red,
                    file.queue_wait_red,
                    d.ui.queue_wait_red,
                ),
            },
            history_days: args
                .history_days
                .or(file.history_days)
                .unwrap_or(d.history_days),
            security,
            cluster: ClusterConfig {
                instance_id: args
                    .instance_id
                    .or(file.instance_id)
                    .map(|i| i.trim().to_owned()),
                lease_time: pick(args.lease_time, file.lease_time, d.cluster.lease_time),
                change_log_poll: pick(
                    args.change_log_poll,
                    file.change_log_poll,
                    d.cluster.change_log_poll,
                ),
                change_log_retention: pick(
                    args.change_log_retention,
                    file.change_log_retention,
                    d.cluster.change_log_retention,
                ),
            },
        };
        config.check()?;
        Ok(config)
    }

    /// Checks the rules that span settings.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |setting, problem: String| Err(ConfigError::Invalid { setting, problem });
        let t = &self.timing;
        for (setting, d) in [
            ("--resync-interval", t.resync_interval),
            ("--ami-ping-interval", t.ami_ping_interval),
            ("--ws-ping-interval", t.ws_ping_interval),
            ("--ws-timeout", t.ws_timeout),
            ("--last-seen-interval", t.last_seen_interval),
            ("--store-timeout", t.store_timeout),
        ] {
            if d.is_zero() {
                return invalid(setting, "must be longer than zero".to_owned());
            }
        }
        if self.history_days == 0 {
            return invalid(
                "--history-days",
                "must be at least 1 (the history of today is always kept)".to_owned(),
            );
        }
        if self.history_days > Config::MAX_HISTORY_DAYS {
            return invalid(
                "--history-days",
                format!(
                    "{} days is more than the {} days (68 years) history can be kept",
                    self.history_days,
                    Config::MAX_HISTORY_DAYS
                ),
            );
        }
        if t.ws_timeout <= t.ws_ping_interval {
            return invalid(
                "--ws-timeout",
                "must be longer than --ws-ping-interval, or every client would be closed"
                    .to_owned(),
            );
        }
        let ui = &self.ui;
        if ui.queue_wait_amber.is_zero() {
            return invalid("--queue-wait-amber", "must be longer than zero".to_owned());
        }
        if ui.queue_wait_red <= ui.queue_wait_amber {
            return invalid(
                "--queue-wait-red",
                format!(
                    "must be longer than --queue-wait-amber ({:?} is not longer than {:?})",
                    ui.queue_wait_red, ui.queue_wait_amber
                ),
            );
        }
        let s = &self.security;
        if s.rate_limit > 0 && s.rate_limit_burst == 0 {
            return invalid(
                "--rate-limit-burst",
                "must be at least 1 while --rate-limit is on, or every write would be refused"
                    .to_owned(),
            );
        }
        if s.ws_max_connections == 0 {
            return invalid(
                "--ws-max-connections",
                "must be at least 1, or no dashboard could connect".to_owned(),
            );
        }
        if s.ws_max_message < 125 {
            return invalid(
                "--ws-max-message",
                format!(
                    "{} bytes is below 125, the size of a ping or close frame a client may send",
                    s.ws_max_message
                ),
            );
        }
        let c = &self.cluster;
        if let Some(id) = &c.instance_id
            && (id.is_empty()
                || id.len() > MAX_INSTANCE_ID
                || id.chars().any(|ch| ch.is_control() || ch.is_whitespace()))
        {
            return invalid(
                "--instance-id",
                format!(
                    "{id:?} is not a usable name: give 1 to {MAX_INSTANCE_ID} characters \
                     without spaces or control characters"
                ),
            );
        }
        if c.lease_time < Duration::from_secs(1) {
            return invalid(
                "--lease-time",
                format!(
                    "{:?} is shorter than 1s: the holder could not renew in time over a real \
                     network",
                    c.lease_time
                ),
            );
        }
        if c.change_log_poll.is_zero() || c.change_log_poll > Duration::from_secs(10) {
            return invalid(
                "--change-log-poll",
                format!("{:?} is not between 1ms and 10s", c.change_log_poll),
            );
        }
        if c.change_log_retention < Duration::from_secs(60) {
            return invalid(
                "--change-log-retention",
                format!(
                    "{:?} is shorter than 1m: an instance that lags a little would lose \
                     entries and resync every client",
                    c.change_log_retention
                ),
            );
        }
        if let Err(problem) = host_port(&self.ami.addr) {
            return invalid("--ami", problem);
        }
        for (setting, token) in [
            ("--admin-token", &self.auth.admin_token),
            ("--viewer-token", &self.auth.viewer_token),
        ] {
            if let Some(token) = token
                && let Err(problem) = store::cli::token_problem(token.expose())
            {
                return invalid(setting, problem.to_owned());
            }
        }
        let addrs = self.listen_addrs()?;
        if self.auth.admin_token.is_none() && !addrs.iter().all(|a| a.ip().is_loopback()) {
            return invalid(
                "--listen",
                format!(
                    "{} is not a loopback address; refusing to serve the API to the network \
                     without --admin-token (set one, or listen on 127.0.0.1)",
                    self.listen
                ),
            );
        }
        Ok(())
    }

    /// The socket addresses the listen setting names.
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        let addrs: Vec<SocketAddr> = self
            .listen
            .to_socket_addrs()
            .map_err(|e| ConfigError::Invalid {
                setting: "--listen",
                problem: format!("{:?} is not a host:port address: {e}", self.listen),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "--listen",
                problem: format!("{:?} resolves to no address", self.listen),
            });
        }
        Ok(addrs)
    }
}

/// Checks that `addr` is `host:port` with a port from 1 to 65535, without resolving the host (a
/// PBX whose name does not resolve yet is retried like one that is down).
fn host_port(addr: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{addr:?} is not a host:port address ({why}), e.g. 10.0.0.5:5038"
        ))
    };
    let Some((host, port)) = addr.rsplit_once(':') else {
        return bad("no port");
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return bad("no host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bad("the port must be a number from 1 to 65535"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(flags: &[&str]) -> Args {
        let mut argv = vec!["api-server"];
        argv.extend_from_slice(flags);
        Args::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn defaults() {
        let c = Config::resolve(args(&[]), None).expect("defaults are valid");
        assert_eq!(c, Config::default());
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file = r#"
            listen = "127.0.0.1:9000"
            ami = "pbx.example:5038"
            ami_user = "monitor"
            resync_interval = "10m"
            pbx_grace = 7
            mongodb_uri = "mongodb://u:p@db/"
        "#;
        let c = Config::resolve(
            args(&["--listen", "127.0.0.1:9100", "--pbx-grace", "500ms"]),
            Some(file),
        )
        .expect("valid");
        assert_eq!(c.listen, "127.0.0.1:9100");
        assert_eq!(c.ami.addr, "pbx.example:5038");
        assert_eq!(c.ami.username.as_deref(), Some("monitor"));
        assert_eq!(c.timing.resync_interval, Duration::from_secs(600));
        assert_eq!(c.timing.pbx_grace, Duration::from_millis(500));
        assert_eq!(
            c.store,
            StoreConfig::Mongo {
                uri: Secret::new("mongodb://u:p@db/"),
                database: "call_center".to_owned()
            }
        );
    }

    #[test]
    fn store_settings_and_switches_come_from_the_file_too() {
        let file = r#"
            data_dir = "/var/lib/x"
            mongodb_db = "other"
            ami_md5 = true
        "#;
        let c = Config::resolve(args(&[]), Some(file)).expect("valid");
        assert_eq!(
            c.store,
            StoreConfig::Embedded {
                data_dir: PathBuf::from("/var/lib/x")
            }
        );
        assert!(c.ami.md5);
        let c =
            Config::resolve(args(&["--mongodb-uri", "mongodb://db/"]), Some(file)).expect("valid");
        assert_eq!(
            c.store,
            StoreConfig::Mongo {
                uri: Secret::new("mongodb://db/"),
                database: "other".to_owned()
            }
        );
        // The file cannot name another file, nor anything that is not a setting.
        for bad in ["config = \"other.toml\"", "help = true", "mongodb = \"x\""] {
            let err = Config::resolve(args(&[]), Some(bad)).expect_err(bad);
            assert!(err.to_string().contains("unknown field"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_deployment_example_is_a_valid_configuration() {
        let file = include_str!("../../../deploy/extstatus.toml");
        // The example listens on the network, so it needs the token its unit file supplies.
        let c = Config::resolve(args(&["--admin-token", "from-secrets-env"]), Some(file))
            .expect("deploy/extstatus.toml is valid");
        assert_eq!(c.listen, "0.0.0.0:8080");
        assert!(c.ami.md5);
        assert_eq!(c.log_format, LogFormat::Json);
        let refused = Config::resolve(args(&[]), Some(file));
        assert!(refused.is_err(), "no admin token on a network address");
    }

    #[test]
    fn conventional_secret_variables_fill_gaps_only() {
        let env = |k: &str| match k {
            "AMI_SECRET" => Some("plain".to_owned()),
            "MONGODB_URI" => Some("mongodb://x/".to_owned()),
            _ => None,
        };
        let a = args(&["--ami-secret", "flag"]).with_plain_env(env);
        assert_eq!(a.ami_secret, Some(Secret::new("flag")));
        assert_eq!(a.store.mongodb_uri, Some(Secret::new("mongodb://x/")));
    }

    #[test]
    fn empty_values_leave_the_file_and_the_plain_variables_in_force() {
        let file = r#"
            admin_token = "file-admin"
            viewer_token = "file-viewer"
            ami_user = "monitor"
            ami_secret = "file-secret"
            mongodb_uri = "mongodb://file/"
        "#;
        let flags = args(&[
            "--admin-token",
            "",
            "--viewer-token",
            "",
            "--ami-user",
            "",
            "--ami-secret",
            "",
            "--mongodb-uri",
            "",
        ]);
        let c = Config::resolve(flags.clone(), Some(file)).expect("valid");
        assert_eq!(c.auth.admin_token, Some(Secret::new("file-admin")));
        assert_eq!(c.auth.viewer_token, Some(Secret::new("file-viewer")));
        assert_eq!(c.ami.username.as_deref(), Some("monitor"));
        assert_eq!(c.ami.secret, Some(Secret::new("file-secret")));
        assert_eq!(
            c.store,
            StoreConfig::Mongo {
                uri: Secret::new("mongodb://file/"),
                database: "call_center".to_owned(),
            }
        );
        let env = |k: &str| match k {
            "AMI_SECRET" => Some("plain".to_owned()),
            "MONGODB_URI" => Some("mongodb://plain/".to_owned()),
            _ => None,
        };
        let c = Config::resolve(flags.with_plain_env(env), None).expect("valid");
        assert_eq!(c.ami.secret, Some(Secret::new("plain")));
        assert_eq!(
            c.store,
            StoreConfig::Mongo {
                uri: Secret::new("mongodb://plain/"),
                database: "call_center".to_owned(),
            }
        );
    }

    #[test]
    fn demo_uses_the_mongodb_uri_when_given() {
        let c = Config::resolve(
            args(&[
                "--demo",
                "--mongodb-uri",
                "mongodb://db/",
                "--data-dir",
                "/tmp/x",
            ]),
            None,
        )
        .expect("valid");
        assert!(c.demo);
        assert_eq!(
            c.store,
            StoreConfig::Mongo {
                uri: Secret::new("mongodb://db/"),
                database: "call_center".to_owned(),
            }
        );
    }

    #[test]
    fn cluster_settings_from_flags_and_file() {
        let file = r#"
            instance_id = "web-1"
            lease_time = "4s"
            change_log_retention = "2h"
        "#;
        let c = Config::resolve(args(&["--change-log-poll", "40ms"]), Some(file)).expect("valid");
        assert_eq!(
            c.cluster,
            ClusterConfig {
                instance_id: Some("web-1".to_owned()),
                lease_time: Duration::from_secs(4),
                change_log_poll: Duration::from_millis(40),
                change_log_retention: Duration::from_secs(7200),
            }
        );
        let c = Config::resolve(args(&["--instance-id", "web-2"]), Some(file)).expect("valid");
        assert_eq!(c.cluster.instance_id.as_deref(), Some("web-2"));
    }

    #[test]
    fn refusals() {
        let rows: &[(&[&str], Option<&str>, &str)] = &[
            (
                &["--listen", "0.0.0.0:8080"],
                None,
                "--listen: 0.0.0.0:8080 is not a loopback address",
            ),
            (
                &["--listen", "0.0.0.0:8080", "--admin-token", ""],
                None,
                "not a loopback address",
            ),
            (&["--listen", "nonsense"], None, "not a host:port address"),
            (&[], Some("colour = 1"), "unknown field `colour`"),
            (
                &[],
                Some("pbx_grace = \"5 fortnights\""),
                "unknown duration unit",
            ),
            (
                &["--ws-ping-interval", "1m", "--ws-timeout", "30s"],
                None,
                "--ws-timeout: must be longer than --ws-ping-interval",
            ),
            (
                &["--resync-interval", "0"],
                None,
                "must be longer than zero",
            ),
            (
                &["--cors-origins", "*"],
                None,
                "--cors-origins: \"*\" is not an origin",
            ),
            (
                &["--cors-origins", "https://ok.example,ftp://x.example"],
                None,
                "must start with http:// or https://",
            ),
            (
                &["--cors-origins", "https://x.example/path"],
                None,
                "without a path",
            ),
            (&["--rate-limit-burst", "0"], None, "--rate-limit-burst"),
            (&["--ws-max-connections", "0"], None, "--ws-max-connections"),
            (&[], Some("ws_max_message = 10"), "--ws-max-message"),
            (
                &["--history-days", "0"],
                None,
                "--history-days: must be at least 1",
            ),
            (
                &["--mongodb-uri", "mongodb://u:pass/word@db/"],
                None,
                "--mongodb-uri: MongoDB URI mongodb://u:***@db/: the user name or password",
            ),
            (
                &["--mongodb-uri", "mongodb://db/", "--mongodb-db", "a.b"],
                None,
                "--mongodb-db: \"a.b\" is not a valid database name",
            ),
            (
                &["--history-days", "24856"],
                None,
                "--history-days: 24856 days is more than the 24855 days",
            ),
            (
                &[],
                Some("history_days = 4294967295"),
                "--history-days: 4294967295 days",
            ),
            (&["--instance-id", "a b"], None, "--instance-id: \"a b\""),
            (&["--instance-id", " "], None, "--instance-id"),
            (&["--lease-time", "500ms"], None, "--lease-time: 500ms"),
            (&["--change-log-poll", "0"], None, "--change-log-poll"),
            // Tokens no request could present: every request would answer 401.
            (
                &["--admin-token", "abc "],
                None,
                "--admin-token: starts or ends",
            ),
            (
                &["--viewer-token", "\tabc"],
                None,
                "--viewer-token: starts or ends",
            ),
            (
                &["--listen", "0.0.0.0:8080", "--admin-token", "   "],
                None,
                "--admin-token: is only whitespace",
            ),
            (
                &["--admin-token", "a b"],
                None,
                "--admin-token: may hold only",
            ),
            (
                &["--viewer-token", "tökén"],
                None,
                "--viewer-token: may hold only",
            ),
            (
                &[],
                Some("admin_token = \"abc\\n\""),
                "--admin-token: starts or ends",
            ),
            (
                &[],
                Some("change_log_retention = \"30s\""),
                "--change-log-retention: 30s",
            ),
        ];
        for (flags, file, want) in rows {
            let err = Config::resolve(args(flags), *file).expect_err("refused");
            assert!(err.to_string().contains(want), "{flags:?}: {err}");
        }
        // With an admin token the same address is accepted.
        Config::resolve(
            args(&["--listen", "0.0.0.0:8080", "--admin-token", "t"]),
            None,
        )
        .expect("non-loopback with a token");
    }

    #[test]
    fn dashboard_settings() {
        let c = Config::resolve(args(&[]), None).expect("defaults");
        assert_eq!(
            c.ui.pause_reasons,
            ["Lunch", "Break", "Training", "After call work", "Meeting"]
        );
        assert_eq!(c.ui.queue_wait_amber, Duration::from_secs(30));
        assert_eq!(c.ui.queue_wait_red, Duration::from_secs(90));
        assert!(!c.ami.actions);
        let c = Config::resolve(
            args(&[
                "--pause-reasons",
                " Lunch , ,Coaching session",
                "--queue-wait-amber",
                "500ms",
                "--ami-actions",
            ]),
            Some("queue_wait_red = \"2s\"\npause_reasons = [\"Ignored\"]"),
        )
        .expect("valid");
        assert_eq!(c.ui.pause_reasons, ["Lunch", "Coaching session"]);
        assert_eq!(c.ui.queue_wait_amber, Duration::from_millis(500));
        assert_eq!(c.ui.queue_wait_red, Duration::from_secs(2));
        assert!(c.ami.actions);
        let c = Config::resolve(
            args(&[]),
            Some("pause_reasons = [\"Lunch\", \"Team meeting\"]\nami_actions = true"),
        )
        .expect("a TOML list");
        assert_eq!(c.ui.pause_reasons, ["Lunch", "Team meeting"]);
        assert!(c.ami.actions);

        let long = "x".repeat(65);
        let bad_flags: &[(&[&str], &str)] = &[
            (&["--pause-reasons", " , "], "the list is empty"),
            (
                &["--pause-reasons", "Lunch,lunch"],
                "entry 2 (\"lunch\") is listed twice",
            ),
            (
                &["--queue-wait-amber", "2m", "--queue-wait-red", "1m"],
                "--queue-wait-red: must be longer than --queue-wait-amber",
            ),
            (
                &["--queue-wait-amber", "0"],
                "--queue-wait-amber: must be longer than zero",
            ),
        ];
        for (flags, want) in bad_flags {
            let err =
                Args::try_parse_from(std::iter::once("api-server").chain(flags.iter().copied()))
                    .map_err(|e| e.to_string())
                    .and_then(|a| Config::resolve(a, None).map_err(|e| e.to_string()))
                    .expect_err("refused");
            assert!(err.contains(want), "{flags:?}: {err}");
        }
        let err = Args::try_parse_from(["api-server", "--pause-reasons", &format!("Lunch,{long}")])
            .expect_err("too long");
        assert!(err.to_string().contains("entry 2"), "{err}");
        let err = Config::resolve(args(&[]), Some("pause_reasons = [\"Tab\\there\"]"))
            .expect_err("control character");
        assert!(err.to_string().contains("pause_reasons: entry 1"), "{err}");
        // The file's types: an entry that is not a text is named by position and kind.
        for (file, want) in [
            (
                "pause_reasons = [\"a\", 5]",
                "pause_reasons: entry 2 is not a text",
            ),
            ("pause_reasons = 5", "a list of pause reasons"),
            ("ws_timeout = -3", "a duration cannot be negative (-3)"),
            ("ws_timeout = true", "a duration: seconds as a whole number"),
            ("ws_timeout = \"3 weeks\"", "unknown duration unit"),
        ] {
            let err = Config::resolve(args(&[]), Some(file)).expect_err(file);
            let text = err.to_string();
            assert!(
                text.contains(want) && !text.contains("untagged"),
                "{file}: {text}"
            );
        }
        let c = Config::resolve(args(&[]), Some("ws_timeout = 70\npause_reasons = \"A, B\""))
            .expect("a number of seconds and a comma-separated text");
        assert_eq!(c.timing.ws_timeout, Duration::from_secs(70));
        assert_eq!(c.ui.pause_reasons, ["A", "B"]);
    }

    #[test]
    fn security_settings() {
        let c = Config::resolve(args(&[]), None).expect("defaults");
        assert_eq!(c.security, SecurityConfig::default());
        assert!(c.security.cors_origins.is_empty(), "CORS is off by default");
        let c = Config::resolve(
            args(&[
                "--cors-origins",
                "https://Wall.Example.com/, http://localhost:3000",
                "--rate-limit",
                "0",
            ]),
            Some("ws_max_connections = 5\nws_max_message = 1024\nrate_limit = 9"),
        )
        .expect("valid");
        assert_eq!(
            c.security,
            SecurityConfig {
                cors_origins: vec![
                    "https://wall.example.com".to_owned(),
                    "http://localhost:3000".to_owned()
                ],
                rate_limit: 0,
                rate_limit_burst: 200,
                ws_max_connections: 5,
                ws_max_message: 1024,
            }
        );
        let c = Config::resolve(
            args(&[]),
            Some("cors_origins = [\"https://a.example:8443\"]"),
        )
        .expect("a TOML list");
        assert_eq!(c.security.cors_origins, ["https://a.example:8443"]);
    }

    #[test]
    fn durations() {
        let rows = [
            ("500ms", Some(Duration::from_millis(500))),
            ("2", Some(Duration::from_secs(2))),
            ("2s", Some(Duration::from_secs(2))),
            ("5m", Some(Duration::from_secs(300))),
            ("1h", Some(Duration::from_secs(3600))),
            ("", None),
            ("m", None),
            ("3 weeks", None),
        ];
        for (text, want) in rows {
            assert_eq!(
                text.parse::<HumanDuration>().ok().map(|h| h.0),
                want,
                "{text}"
            );
        }
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::resolve(
            args(&[
                "--ami-secret",
                "s3cr3t-ami",
                "--admin-token",
                "s3cr3t-admin",
                "--viewer-token",
                "s3cr3t-viewer",
                "--mongodb-uri",
                "mongodb://user:s3cr3t-pw@db/",
            ]),
            None,
        )
        .expect("valid");
        let shown = format!("{c:?} {:?}", args(&["--ami-secret", "s3cr3t-ami"]));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
