//! `seeder`: loads extension records from a CSV file, a JSON array or a generated range into
//! the store (embedded or MongoDB) or through a running api-server's REST API, as an
//! idempotent upsert keyed by extension number.
//!
//! The logic lives here so that tests drive it; `main.rs` only reads the process environment
//! and maps the outcome to an exit status. The seeder deliberately never writes status fields
//! (the types it uses cannot carry them) and never deletes records that the input lacks.

pub mod input;
pub mod plan;
pub mod target;

use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};
use futures_util::StreamExt as _;
use store::Secret;
use store::cli::StoreArgs;

use crate::input::{Parsed, parse_csv, parse_json, parse_range};
use crate::plan::{Action, Plan, plan};
use crate::target::{ApiTarget, StoreTarget, Target, TargetError};

/// Inputs larger than this show a progress bar (when stderr is a terminal).
const PROGRESS_ABOVE: usize = 500;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "seeder",
    version,
    about = "Loads extension records into the extstatus store: an idempotent upsert by \
             extension number.",
    after_help = "Exit status: 0 when every row was loaded, 1 when a row was rejected or a \
                  write failed, 2 when nothing could be done (bad arguments, unreadable input, \
                  store unavailable). MONGODB_URI is also accepted without the EXTSTATUS_ \
                  prefix."
)]
pub struct Cli {
    /// A CSV file (header `extension,agent_name,department[,is_active]`) or a JSON array of
    /// objects with those members; `-` reads standard input.
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
    /// Shows what would change and writes nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the records are (unless --api is given): `--data-dir`, `--mongodb-uri`,
    /// `--mongodb-db`, declared once by the store, as the api-server has them.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Goes through a running api-server (e.g. http://127.0.0.1:8080) instead of opening the
    /// store, which belongs to that server while it runs.
    #[arg(
        long,
        env = "EXTSTATUS_API",
        value_name = "URL",
        conflicts_with = "mongodb_uri"
    )]
    pub api: Option<String>,
    /// The admin token for --api (sent as `Authorization: Bearer`).
    #[arg(
        long,
        env = "EXTSTATUS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<Secret>,
    /// How many writes are in flight at once.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
}

/// Input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
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
    /// Rows refused by validation; nothing of them was written.
    pub rejected: usize,
    /// Writes the target refused or failed.
    pub failed: usize,
}

impl Summary {
    /// 0 when everything was loaded, 1 when a row was rejected or a write failed.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.rejected > 0 || self.failed > 0)
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
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .context("reading standard input")?;
        (buf, "stdin".to_owned())
    } else {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        (bytes, path.display().to_string())
    };
    let format = cli.format.unwrap_or_else(|| detect_format(path, &bytes));
    let parsed = match format {
        Format::Csv => parse_csv(&bytes)?,
        Format::Json => {
            let text = std::str::from_utf8(&bytes)
                .map_err(|e| anyhow::anyhow!("JSON: not valid UTF-8: {e}"))?;
            parse_json(text)?
        }
    };
    Ok((parsed, name))
}

/// Opens the target the command line names.
pub async fn open_target(cli: &Cli) -> Result<Box<dyn Target>> {
    if let Some(api) = &cli.api {
        return Ok(Box::new(ApiTarget::new(api, cli.token.clone())?));
    }
    let options = store::StoreOptions::default();
    cli.store
        .check()
        .map_err(|(flag, problem)| anyhow::anyhow!("{flag}: {problem}"))?;
    if let Some(uri) = cli.store.mongodb_uri() {
        let database = cli.store.database();
        let config = store::MongoConfig::new(uri.expose(), database.clone());
        let store = store::open(&store::Backend::MongoDb(config), options).await?;
        return Ok(Box::new(StoreTarget {
            store,
            description: format!("MongoDB database {database}"),
        }));
    }
    let store = store::EmbeddedStore::open(&cli.store.data_dir(), options).await?;
    let description = format!("embedded store {}", store.path().display());
    Ok(Box::new(StoreTarget {
        store: Arc::new(store),
        description,
    }))
}

/// Carries out the plan with up to `concurrency` writes in flight. Returns the rows not
/// written, with the line of their row, in line order: with the reason, or with `None` for
/// rows not tried because the API had already refused the token.
pub async fn apply(
    target: &dyn Target,
    plan: &Plan,
    concurrency: usize,
    progress: &indicatif::ProgressBar,
) -> Vec<(usize, Option<String>)> {
    // A refused token (401/403) fails every row the same way: the first refusal stops the
    // run, instead of repeating one message for each of thousands of rows.
    let refused = std::sync::atomic::AtomicBool::new(false);
    let refused = &refused;
    let mut failures: Vec<(usize, Option<String>)> = futures_util::stream::iter(&plan.actions)
        .map(|action| async move {
            let row = action.row();
            if refused.load(std::sync::atomic::Ordering::Relaxed) {
                return (row.line, row.extension.clone(), None);
            }
            let result = match action {
                Action::Create(row) => target.create(row.to_new()).await.map(drop),
                Action::Update { id, patch, .. } => {
                    target.update(id, patch.clone()).await.map(drop)
                }
            };
            if let Err(TargetError::Api {
                status: 401 | 403, ..
            }) = &result
                && refused.swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                // Another row already reported the refusal.
                return (row.line, row.extension.clone(), None);
            }
            (row.line, row.extension.clone(), Some(result))
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|(line, ext, result)| {
            progress.inc(1);
            std::future::ready(match result {
                Some(Err(
                    e @ TargetError::Api {
                        status: 401 | 403, ..
                    },
                )) => Some((
                    line,
                    Some(format!(
                        "extension {ext}: {e}; stopped: check --token (the admin token)"
                    )),
                )),
                Some(result) => result
                    .err()
                    .map(|e| (line, Some(format!("extension {ext}: {e}")))),
                None => Some((line, None)),
            })
        })
        .collect()
        .await;
    failures.sort();
    failures
}

/// Runs the seeder: reads, plans, writes (unless `--dry-run`), and reports to `out` (the plan
/// and the summary) and `err` (rejected rows and failed writes). Errors that stop the run
/// before anything is written are returned.
pub async fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<Summary> {
    let (parsed, source) = read_rows(cli)?;
    for r in &parsed.rejected {
        writeln!(err, "{source}: {r}")?;
    }
    let target = open_target(cli).await?;
    let existing = target
        .list()
        .await
        .with_context(|| format!("reading the records of the {}", target.describe()))?;
    let plan = plan(&existing, &parsed.rows);
    let mut summary = Summary {
        created: plan.creates(),
        updated: plan.updates(),
        unchanged: plan.unchanged,
        rejected: parsed.rejected_rows(),
        failed: 0,
    };
    if cli.dry_run {
        for action in &plan.actions {
            writeln!(out, "{action}")?;
        }
        writeln!(
            out,
            "dry run, nothing written to the {}: would create {}, would update {}, unchanged {}, \
             rejected {}",
            target.describe(),
            summary.created,
            summary.updated,
            summary.unchanged,
            summary.rejected
        )?;
        return Ok(summary);
    }

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
    let failures = apply(
        target.as_ref(),
        &plan,
        usize::from(cli.concurrency),
        &progress,
    )
    .await;
    progress.finish_and_clear();
    for (line, message) in &failures {
        if let Some(message) = message {
            writeln!(err, "{source}: line {line}: {message}")?;
        }
        let failed_create = plan
            .actions
            .iter()
            .any(|a| a.row().line == *line && matches!(a, Action::Create(_)));
        if failed_create {
            summary.created -= 1;
        } else {
            summary.updated -= 1;
        }
    }
    summary.failed = failures.len();
    write!(
        out,
        "created {}, updated {}, unchanged {}, rejected {}",
        summary.created, summary.updated, summary.unchanged, summary.rejected
    )?;
    if summary.failed > 0 {
        write!(out, ", failed {}", summary.failed)?;
    }
    writeln!(out, " ({})", target.describe())?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("seeder").chain(args.iter().copied()))
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
            &[
                "--from",
                "a.csv",
                "--api",
                "http://h",
                "--mongodb-uri",
                "mongodb://h",
            ],
            &["--from", "a.csv", "--concurrency", "0"],
        ] {
            assert!(cli(bad).is_err(), "{bad:?}");
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
            ..Summary::default()
        };
        assert_eq!(s.exit_code(), 1);
        let s = Summary {
            failed: 2,
            ..Summary::default()
        };
        assert_eq!(s.exit_code(), 1);
    }
}
