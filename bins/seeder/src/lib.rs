//! `seeder`: loads extension records from a CSV file, a JSON array or a generated range into
//! the store (embedded or MongoDB) or through a running api-server's REST API, as an
//! idempotent upsert keyed by extension number.
//!
//! The logic lives here so that tests drive it; `main.rs` only reads the process environment
//! and maps the outcome to an exit status. The seeder deliberately never writes status fields
//! (the types it uses cannot carry them), never deletes records that the input lacks, and
//! never writes anything when a row of the input is refused.

pub mod input;
pub mod plan;
pub mod target;

use std::io::{IsTerminal as _, Read as _, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Parser, ValueEnum};
use futures_util::StreamExt as _;
use store::Secret;
use store::cli::StoreArgs;

use crate::input::{Parsed, parse_csv, parse_json, parse_range};
use crate::plan::{Action, Plan, plan};
use crate::target::{ApiTarget, StoreTarget, Target, TargetError};

/// Inputs larger than this show a progress bar (when stderr is a terminal).
const PROGRESS_ABOVE: usize = 500;

/// The largest input file read (64 MiB, about a million rows): a bigger one is refused before
/// it is read, instead of filling the memory.
pub const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "seeder",
    version,
    about = "Loads extension records into the extstatus store: an idempotent upsert by \
             extension number.",
    after_help = "Target: --api, --mongodb-uri or --data-dir, at most one of them on the command \
                  line; one given there beats the environment. Otherwise EXTSTATUS_API, then \
                  EXTSTATUS_MONGODB_URI or MONGODB_URI, then EXTSTATUS_DATA_DIR, then ./data. \
                  An empty variable counts as unset.\n\n\
                  Exit status: 0 when every row was loaded (or, with --dry-run, when the input \
                  is valid), 1 when a write failed, 2 when nothing was written (bad arguments, \
                  a refused row, unreadable input, store unavailable, token refused)."
)]
pub struct Cli {
    /// A CSV file (header `extension,agent_name,department[,is_active]`) or a JSON array of
    /// objects with those members; `-` reads standard input. At most 64 MiB.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "range",
        conflicts_with = "range"
    )]
    pub from: Option<PathBuf>,
    /// The format of --from; by default guessed from the file name, then from the content.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Generates extensions FIRST to LAST (e.g. 1001-1050), named "Agent 1001", ...
    #[arg(long, value_name = "FIRST-LAST", requires = "department")]
    pub range: Option<String>,
    /// The department of the extensions a --range generates.
    #[arg(long, value_name = "NAME", requires = "range", conflicts_with = "from")]
    pub department: Option<String>,
    /// Shows what would change and writes nothing: no data directory, file, collection or
    /// index is created, and the store is only read.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the records are (unless --api is given): `--data-dir`, `--mongodb-uri`,
    /// `--mongodb-db`, declared once by the store, as the api-server has them.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Goes through a running api-server (e.g. http://127.0.0.1:8080) instead of opening the
    /// store, which belongs to that server while it runs.
    #[arg(long, env = "EXTSTATUS_API", value_name = "URL")]
    pub api: Option<String>,
    /// The admin token for --api (sent as `Authorization: Bearer`).
    #[arg(
        long,
        env = "EXTSTATUS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<Secret>,
    /// How many writes are in flight at once (1 to 1024).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Which of the flags whose source matters (`api`, `mongodb_uri`, `data_dir`,
    /// `mongodb_db`, `token`) were given on the command line rather than by the environment:
    /// filled by [`Cli::try_parse_args`].
    #[arg(skip)]
    pub on_command_line: Vec<&'static str>,
}

/// The flags whose source [`Cli::on_command_line`] records.
const SOURCED: [&str; 5] = ["api", "mongodb_uri", "data_dir", "mongodb_db", "token"];

/// The flags that choose where the records go, with their environment variables.
const TARGETS: [(&str, &str, &str); 3] = [
    ("api", "--api", "EXTSTATUS_API"),
    (
        "mongodb_uri",
        "--mongodb-uri",
        "EXTSTATUS_MONGODB_URI or MONGODB_URI",
    ),
    ("data_dir", "--data-dir", "EXTSTATUS_DATA_DIR"),
];

/// Input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// Where the records go, as [`Cli::destination`] chose it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A running api-server.
    Api {
        /// Its base URL, checked, without a trailing `/`.
        url: String,
        /// The admin token.
        token: Option<Secret>,
    },
    /// A MongoDB database.
    MongoDb {
        /// The connection string.
        uri: Secret,
        /// The database name.
        database: String,
    },
    /// The embedded store in this directory.
    Embedded {
        /// The data directory.
        data_dir: PathBuf,
    },
}

impl Destination {
    /// Says where the records go, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Api { url, .. } => format!("API {url}"),
            Self::MongoDb { database, .. } => format!("MongoDB database {database}"),
            Self::Embedded { data_dir } => {
                format!(
                    "embedded store {}",
                    data_dir.join(store::DB_FILE_NAME).display()
                )
            }
        }
    }
}

impl Cli {
    /// Parses a command line (program name first), as clap does with the `EXTSTATUS_*`
    /// variables of the flags not given, and records which flags came from the command line.
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        // An empty variable counts as unset (a blank one is taken as unset by `blank`).
        let command = store::cli::without_blank_env(<Self as clap::CommandFactory>::command());
        let matches = command.try_get_matches_from(args)?;
        let mut cli = <Self as clap::FromArgMatches>::from_arg_matches(&matches)?;
        cli.on_command_line = SOURCED
            .into_iter()
            .filter(|id| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
            .collect();
        Ok(cli)
    }

    /// Adds what the environment gives without the `EXTSTATUS_` prefix (`MONGODB_URI`), as the
    /// api-server accepts it. `lookup` reads a variable.
    pub fn with_plain_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        if !self.given("mongodb_uri") {
            self.store = self.store.with_plain_env(lookup);
        }
        self
    }

    fn given(&self, id: &str) -> bool {
        self.on_command_line.contains(&id)
    }

    /// Whether the value of a sourced flag is missing, empty or only blanks.
    fn blank(&self, id: &str) -> bool {
        let text = match id {
            "api" => self.api.as_deref(),
            "mongodb_uri" => self.store.mongodb_uri.as_ref().map(Secret::expose),
            // A path that is not UTF-8 is not blank.
            "data_dir" => match &self.store.data_dir {
                Some(dir) => Some(dir.to_str().unwrap_or("?")),
                None => None,
            },
            "mongodb_db" => self.store.mongodb_db.as_deref(),
            "token" => self.token.as_ref().map(Secret::expose),
            _ => None,
        };
        text.is_none_or(|t| t.trim().is_empty())
    }

    /// Chooses where the records go, and checks it without connecting or creating anything.
    ///
    /// The rule: a target flag on the command line (`--api`, `--mongodb-uri`, `--data-dir`)
    /// beats the environment, and two of them on the command line are refused naming both.
    /// Without one, the environment decides: `EXTSTATUS_API`, else `EXTSTATUS_MONGODB_URI` or
    /// `MONGODB_URI`, else `EXTSTATUS_DATA_DIR`, else `./data`; an empty or blank variable
    /// counts as unset, while an empty flag is refused. `--token` on the command line
    /// without an API target is refused too: those records would otherwise go to a store.
    pub fn destination(&self) -> Result<Destination> {
        let on_line: Vec<&str> = TARGETS
            .iter()
            .filter(|(id, ..)| self.given(id))
            .map(|(_, flag, _)| *flag)
            .collect();
        if on_line.len() > 1 {
            bail!(
                "{} each choose where the records go; give only one of them",
                join_and(&on_line)
            );
        }
        for (id, flag) in [
            ("api", "--api"),
            ("mongodb_uri", "--mongodb-uri"),
            ("data_dir", "--data-dir"),
            ("mongodb_db", "--mongodb-db"),
            ("token", "--token"),
        ] {
            if self.given(id) && self.blank(id) {
                bail!("{flag} is empty; give a value or leave the flag out");
            }
        }
        let chosen = match on_line.first() {
            Some(flag) => TARGETS
                .iter()
                .find(|(_, f, _)| f == flag)
                .map_or("data_dir", |(id, ..)| *id),
            None if !self.blank("api") => "api",
            None if !self.blank("mongodb_uri") => "mongodb_uri",
            None => "data_dir",
        };
        // Names the setting in messages as the user gave it.
        let name = |id: &str| {
            let (_, flag, var) = TARGETS
                .iter()
                .find(|(i, ..)| *i == id)
                .copied()
                .unwrap_or(("", "", ""));
            if self.given(id) {
                flag.to_owned()
            } else {
                var.to_owned()
            }
        };
        if chosen != "api" && self.given("token") {
            bail!(
                "--token goes with --api, but without it the records would go to {} (add \
                 --api URL to go through the api-server)",
                if self.blank(chosen) {
                    "the default --data-dir ./data".to_owned()
                } else {
                    format!("the store of {}", name(chosen))
                }
            );
        }
        match chosen {
            "api" => {
                let raw = self.api.as_deref().unwrap_or_default();
                let url =
                    target::check_api_url(raw).map_err(|p| anyhow!("{}: {p}", name("api")))?;
                let token = match &self.token {
                    Some(token) if !self.blank("token") => {
                        let flag = if self.given("token") {
                            "--token"
                        } else {
                            "EXTSTATUS_TOKEN"
                        };
                        store::cli::token_problem(token.expose())
                            .map_err(|p| anyhow!("{flag}: {p}"))?;
                        Some(token.clone())
                    }
                    _ => None,
                };
                Ok(Destination::Api { url, token })
            }
            "mongodb_uri" => {
                let uri = self
                    .store
                    .mongodb_uri
                    .clone()
                    .context("invariant: a MongoDB URI was chosen because one is set")?;
                let database = match &self.store.mongodb_db {
                    Some(db) if self.given("mongodb_db") || !db.trim().is_empty() => db.clone(),
                    _ => StoreArgs::DEFAULT_DATABASE.to_owned(),
                };
                let args = StoreArgs {
                    data_dir: None,
                    mongodb_uri: Some(uri.clone()),
                    mongodb_db: Some(database.clone()),
                };
                args.check().map_err(|(flag, problem)| {
                    let flag = if flag == "--mongodb-uri" {
                        name("mongodb_uri")
                    } else {
                        flag.to_owned()
                    };
                    anyhow!("{flag}: {problem}")
                })?;
                Ok(Destination::MongoDb { uri, database })
            }
            _ => {
                let data_dir = match &self.store.data_dir {
                    Some(dir) if !self.blank("data_dir") => dir.clone(),
                    _ => PathBuf::from(StoreArgs::DEFAULT_DATA_DIR),
                };
                let args = StoreArgs {
                    data_dir: Some(data_dir.clone()),
                    ..StoreArgs::default()
                };
                args.check()
                    .map_err(|(_, problem)| anyhow!("{}: {problem}", name("data_dir")))?;
                Ok(Destination::Embedded { data_dir })
            }
        }
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records created (or, in a dry run, that would be).
    pub created: usize,
    /// Records updated (or that would be).
    pub updated: usize,
    /// Rows that matched their record already.
    pub unchanged: usize,
    /// Rows refused by validation; when there are any, nothing at all is written.
    pub rejected: usize,
    /// Writes the target refused or failed, or that were not tried after the run stopped.
    pub failed: usize,
}

impl Summary {
    /// 0 when everything was loaded, 1 when a write failed, 2 when rows were refused (and so
    /// nothing was written).
    pub fn exit_code(&self) -> u8 {
        if self.rejected > 0 {
            2
        } else {
            u8::from(self.failed > 0)
        }
    }
}

/// Guesses the format: by file name first, then by the first character that is not blank.
pub fn detect_format(path: &Path, bytes: &[u8]) -> Format {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
    {
        Some(e) if e == "json" => return Format::Json,
        Some(e) if e == "csv" => return Format::Csv,
        _ => {}
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match text.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Format::Json,
        _ => Format::Csv,
    }
}

/// Reads at most [`MAX_INPUT_BYTES`] from `reader`; more is an error naming the limit.
fn read_capped(reader: impl std::io::Read, name: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {name}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        bail!(
            "{name}: larger than {} MiB, the most the seeder reads at once; split it into \
             smaller files",
            MAX_INPUT_BYTES / 1024 / 1024
        );
    }
    Ok(bytes)
}

/// Reads and validates the rows the command line names. The second value names the source for
/// messages.
pub fn read_rows(cli: &Cli) -> Result<(Parsed, String)> {
    if let Some(spec) = &cli.range {
        let dept = cli.department.as_deref().unwrap_or_default();
        let department = domain::Department::parse(dept).context("--department")?;
        let rows = parse_range(spec, &department)?;
        return Ok((
            Parsed {
                rows,
                rejected: Vec::new(),
            },
            "--range".into(),
        ));
    }
    let Some(path) = &cli.from else {
        bail!("give --from FILE or --range FIRST-LAST");
    };
    let (bytes, name) = if path.as_os_str() == "-" {
        (
            read_capped(std::io::stdin(), "standard input")?,
            "stdin".to_owned(),
        )
    } else {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).with_context(|| format!("reading {name}"))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            bail!("{name} is a directory; give a CSV or JSON file");
        }
        (read_capped(file, &name)?, name)
    };
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        bail!(
            "{name}: the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8"
        );
    }
    let format = cli.format.unwrap_or_else(|| detect_format(path, &bytes));
    let parsed = match format {
        Format::Csv => parse_csv(&bytes).with_context(|| name.clone())?,
        Format::Json => {
            let text = std::str::from_utf8(&bytes).map_err(|e| {
                let line = 1 + bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count();
                anyhow!("{name}: JSON: line {line}: not valid UTF-8")
            })?;
            parse_json(text).with_context(|| name.clone())?
        }
    };
    Ok((parsed, name))
}

/// Opens the target for writing.
pub async fn open_target(destination: &Destination) -> Result<Box<dyn Target>> {
    let options = store::StoreOptions::default();
    let description = destination.describe();
    match destination {
        Destination::Api { url, token } => Ok(Box::new(ApiTarget::new(url, token.clone())?)),
        Destination::MongoDb { uri, database } => {
            let config = store::MongoConfig::new(uri.expose(), database.clone());
            let store = store::open(&store::Backend::MongoDb(config), options).await?;
            Ok(Box::new(StoreTarget { store, description }))
        }
        Destination::Embedded { data_dir } => {
            let store = store::EmbeddedStore::open(data_dir, options).await?;
            Ok(Box::new(StoreTarget {
                store: Arc::new(store),
                description,
            }))
        }
    }
}

/// Every stored record, read without creating or writing anything (for `--dry-run`).
pub async fn read_existing(
    destination: &Destination,
) -> Result<Vec<domain::Extension>, TargetError> {
    match destination {
        Destination::Api { url, token } => ApiTarget::new(url, token.clone())?.list().await,
        Destination::MongoDb { uri, database } => {
            let config = store::MongoConfig::new(uri.expose(), database.clone());
            Ok(store::read_records(&store::Backend::MongoDb(config)).await?)
        }
        Destination::Embedded { data_dir } => Ok(store::read_records(&store::Backend::Embedded {
            data_dir: data_dir.clone(),
        })
        .await?),
    }
}

/// The message for a token the API refused (401 or 403): what to do about it.
fn token_refused(e: &TargetError, destination: &Destination) -> anyhow::Error {
    let answer = match e {
        TargetError::Api { status, message } => format!("{status}: {message}"),
        other => other.to_string(),
    };
    if matches!(destination, Destination::Api { token: Some(_), .. }) {
        anyhow!(
            "the API refused the token ({answer}): the token given (--token or EXTSTATUS_TOKEN) \
             is wrong or not the admin token; give the server's admin token with --token. \
             Stopped at the first refusal"
        )
    } else {
        anyhow!(
            "the API refused the request ({answer}): the token is missing; give the server's \
             admin token with --token. Stopped at the first refusal"
        )
    }
}

/// How [`apply`] ended.
#[derive(Debug, Default)]
pub struct Applied {
    /// The rows not written, with the line of their row and the reason, in line order.
    pub failures: Vec<(usize, String)>,
    /// What stopped the run, when something did: a refused token, or a target that no longer
    /// answers. Rows not tried after it are in neither list.
    pub stopped: Option<TargetError>,
    /// The lines of the rows not tried because the run had stopped.
    pub not_tried: Vec<usize>,
}

/// Carries out the plan with up to `concurrency` writes in flight. A refused token (401/403)
/// or a target that does not answer stops the run at once, instead of failing each of
/// thousands of rows with the same message; writes already in flight finish.
pub async fn apply(
    target: &dyn Target,
    plan: &Plan,
    concurrency: usize,
    progress: &indicatif::ProgressBar,
) -> Applied {
    enum Outcome {
        Written,
        Failed(usize, String),
        Stopped(usize, Option<TargetError>),
    }
    let stop: Mutex<bool> = Mutex::new(false);
    let stop = &stop;
    let is_stopped = || *stop.lock().unwrap_or_else(PoisonError::into_inner);
    let outcomes: Vec<Outcome> = futures_util::stream::iter(&plan.actions)
        .map(|action| async move {
            let row = action.row();
            if is_stopped() {
                return Outcome::Stopped(row.line, None);
            }
            let result = match action {
                Action::Create(row) => target.create(row.to_new()).await.map(drop),
                Action::Update { id, patch, .. } => {
                    target.update(id, patch.clone()).await.map(drop)
                }
            };
            match result {
                Ok(()) => Outcome::Written,
                Err(e) if e.stops_the_run() => {
                    let mut stopped = stop.lock().unwrap_or_else(PoisonError::into_inner);
                    let first = !*stopped;
                    *stopped = true;
                    Outcome::Stopped(row.line, first.then_some(e))
                }
                Err(e) => Outcome::Failed(row.line, format!("extension {}: {e}", row.extension)),
            }
        })
        .buffer_unordered(concurrency.max(1))
        .inspect(|_| progress.inc(1))
        .collect()
        .await;
    let mut applied = Applied::default();
    for outcome in outcomes {
        match outcome {
            Outcome::Written => {}
            Outcome::Failed(line, message) => applied.failures.push((line, message)),
            Outcome::Stopped(line, first) => {
                applied.not_tried.push(line);
                if first.is_some() {
                    applied.stopped = first;
                }
            }
        }
    }
    applied.failures.sort();
    applied.not_tried.sort_unstable();
    applied
}

/// Runs the seeder: chooses the target, reads and validates the whole input, plans, writes
/// (unless `--dry-run`), and reports to `out` (the plan and the summary) and `err` (refused
/// rows and failed writes). When a row is refused nothing is written at all. Errors that stop
/// the run before anything is written are returned.
pub async fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<Summary> {
    let destination = cli.destination()?;
    let (parsed, source) = read_rows(cli)?;
    if !parsed.rejected.is_empty() {
        for r in &parsed.rejected {
            writeln!(err, "{source}: {r}")?;
        }
        let rejected = parsed.rejected_rows();
        writeln!(
            err,
            "{source}: {rejected} of {} rows refused; nothing was written to the {} (correct \
             the rows and run again)",
            rejected + parsed.rows.len(),
            destination.describe()
        )?;
        return Ok(Summary {
            rejected,
            ..Summary::default()
        });
    }
    let description = destination.describe();
    let reading = |e: TargetError| -> anyhow::Error {
        if e.is_refused_token() {
            token_refused(&e, &destination)
        } else {
            anyhow::Error::new(e).context(format!("reading the records of the {description}"))
        }
    };
    if cli.dry_run {
        let existing = read_existing(&destination).await.map_err(reading)?;
        let plan = plan(&existing, &parsed.rows);
        for action in &plan.actions {
            writeln!(out, "{action}")?;
        }
        writeln!(
            out,
            "dry run, nothing written to the {description}: would create {}, would update {}, \
             unchanged {}, rejected 0",
            plan.creates(),
            plan.updates(),
            plan.unchanged,
        )?;
        return Ok(Summary {
            created: plan.creates(),
            updated: plan.updates(),
            unchanged: plan.unchanged,
            ..Summary::default()
        });
    }

    let target = open_target(&destination).await?;
    let existing = target.list().await.map_err(reading)?;
    let plan = plan(&existing, &parsed.rows);
    let mut summary = Summary {
        created: plan.creates(),
        updated: plan.updates(),
        unchanged: plan.unchanged,
        rejected: 0,
        failed: 0,
    };
    let show = parsed.rows.len() > PROGRESS_ABOVE && std::io::stderr().is_terminal();
    let progress = if show {
        let bar = indicatif::ProgressBar::new(plan.actions.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} writes, {per_sec}, {eta} left",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let applied = apply(
        target.as_ref(),
        &plan,
        usize::from(cli.concurrency),
        &progress,
    )
    .await;
    progress.finish_and_clear();
    if let Some(e) = &applied.stopped
        && e.is_refused_token()
    {
        return Err(token_refused(e, &destination));
    }
    for (line, message) in &applied.failures {
        writeln!(err, "{source}: line {line}: {message}")?;
    }
    if let Some(e) = &applied.stopped {
        writeln!(
            err,
            "{source}: stopped: {e}; {} rows not tried (run again once it answers; rows already \
             written are then unchanged)",
            applied.not_tried.len()
        )?;
    }
    let creates: std::collections::HashSet<usize> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Create(_)))
        .map(|a| a.row().line)
        .collect();
    let not_written = applied
        .failures
        .iter()
        .map(|(line, _)| *line)
        .chain(applied.not_tried.iter().copied());
    for line in not_written {
        if creates.contains(&line) {
            summary.created -= 1;
        } else {
            summary.updated -= 1;
        }
        summary.failed += 1;
    }
    write!(
        out,
        "created {}, updated {}, unchanged {}, rejected {}",
        summary.created, summary.updated, summary.unchanged, summary.rejected
    )?;
    if summary.failed > 0 {
        write!(out, ", failed {}", summary.failed)?;
    }
    writeln!(out, " ({description})")?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_args(std::iter::once("seeder").chain(args.iter().copied()))
    }

    #[test]
    fn command_lines() {
        let c = cli(&["--range", "1001-1050", "--department", "Sales"]).expect("range");
        assert_eq!(c.range.as_deref(), Some("1001-1050"));
        assert_eq!(c.concurrency, 64);
        assert_eq!(c.store.database(), "call_center");
        assert_eq!(c.store.data_dir(), PathBuf::from("./data"));
        let c = cli(&[
            "--from",
            "a.csv",
            "--dry-run",
            "--api",
            "http://h:1",
            "--token",
            "t",
        ])
        .expect("api");
        assert!(c.dry_run && c.api.is_some());
        for bad in [
            &[][..],
            &["--range", "1001-1002"],
            &["--department", "Sales", "--from", "a.csv"],
            &["--from", "a.csv", "--range", "1-2", "--department", "S"],
            &["--from", "a.csv", "--concurrency", "0"],
            &["--from", "a.csv", "--concurrency", "1025"],
        ] {
            assert!(cli(bad).is_err(), "{bad:?}");
        }
    }

    /// The target rule on command lines alone (the environment is the end-to-end tests'
    /// part: clap reads it from the process).
    #[test]
    fn one_target_on_the_command_line() {
        let dest = |args: &[&str]| -> Result<Destination, String> {
            let mut argv = vec!["--range", "1001-1002", "--department", "S"];
            argv.extend_from_slice(args);
            let mut c = cli(&argv).map_err(|e| e.to_string())?;
            // As if nothing came from the environment.
            let given = |id| c.given(id);
            let keep = [
                given("api"),
                given("token"),
                given("mongodb_uri"),
                given("data_dir"),
                given("mongodb_db"),
            ];
            c.api = c.api.filter(|_| keep[0]);
            c.token = c.token.filter(|_| keep[1]);
            c.store.mongodb_uri = c.store.mongodb_uri.filter(|_| keep[2]);
            c.store.data_dir = c.store.data_dir.filter(|_| keep[3]);
            c.store.mongodb_db = c.store.mongodb_db.filter(|_| keep[4]);
            c.destination().map_err(|e| format!("{e:#}"))
        };
        assert_eq!(
            dest(&[]),
            Ok(Destination::Embedded {
                data_dir: PathBuf::from("./data")
            })
        );
        assert_eq!(
            dest(&["--api", "http://h:1/", "--token", "t"]),
            Ok(Destination::Api {
                url: "http://h:1".into(),
                token: Some(Secret::new("t"))
            })
        );
        assert_eq!(
            dest(&["--mongodb-uri", "mongodb://h/", "--mongodb-db", "x"]),
            Ok(Destination::MongoDb {
                uri: Secret::new("mongodb://h/"),
                database: "x".into()
            })
        );
        for (args, want) in [
            (
                &["--api", "http://h", "--mongodb-uri", "mongodb://h"][..],
                "--api and --mongodb-uri each choose where the records go; give only one of them",
            ),
            (
                &["--data-dir", "d", "--mongodb-uri", "mongodb://h"],
                "--mongodb-uri and --data-dir each choose where the records go",
            ),
            (
                &[
                    "--data-dir",
                    "d",
                    "--mongodb-uri",
                    "mongodb://h",
                    "--api",
                    "http://h",
                ],
                "--api, --mongodb-uri and --data-dir each choose where the records go",
            ),
            (&["--api", ""], "--api is empty"),
            (&["--mongodb-uri", " "], "--mongodb-uri is empty"),
            // clap refuses an empty path itself.
            (
                &["--data-dir", ""],
                "error: a value is required for '--data-dir <DIR>'",
            ),
            (&["--api", "http://h", "--token", ""], "--token is empty"),
            (
                &["--mongodb-uri", "mongodb://h", "--mongodb-db", ""],
                "--mongodb-db is empty",
            ),
            (&["--token", "t"], "--token goes with --api"),
            (
                &["--api", "ftp://h"],
                "--api: \"ftp://h\": the scheme \"ftp\" is not supported",
            ),
            (
                &["--api", "http://h", "--token", "t\n"],
                "--token: starts or ends with whitespace (a trailing newline from a secrets file?)",
            ),
            (
                &["--api", "http://h", "--token", "tök"],
                "--token: may hold only visible ASCII characters",
            ),
            (&["--mongodb-uri", "nonsense"], "--mongodb-uri: "),
        ] {
            let got = dest(args).expect_err(want);
            assert!(got.starts_with(want), "{args:?}: {got}");
        }
    }

    #[test]
    fn formats_are_detected() {
        let rows = [
            ("a.json", &b"extension,agent_name"[..], Format::Json),
            ("a.CSV", b"[", Format::Csv),
            ("-", b"\xEF\xBB\xBF  [{}]", Format::Json),
            (
                "agents.txt",
                b"extension,agent_name,department",
                Format::Csv,
            ),
        ];
        for (name, bytes, want) in rows {
            assert_eq!(detect_format(Path::new(name), bytes), want, "{name}");
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Summary::default().exit_code(), 0);
        let s = Summary {
            rejected: 1,
            failed: 1,
            ..Summary::default()
        };
        assert_eq!(s.exit_code(), 2, "refused rows: nothing was written");
        let s = Summary {
            failed: 2,
            ..Summary::default()
        };
        assert_eq!(s.exit_code(), 1);
    }
}
