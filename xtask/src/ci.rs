//! `cargo xtask ci`: the one entry point that decides whether a change may land. A local pass
//! means a green CI, because `.ci/run` runs exactly this.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::tidy;

/// One step of the pipeline, in the order CI runs them. The tests come last so that the test
/// runner's summary is the last thing CI prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `cargo fmt --check` over the workspace.
    Fmt,
    /// The tidy rules (crate edges, `//!` lines); they also run as a test, this is the fast path.
    Tidy,
    /// clippy on every target and feature, warnings as errors.
    Clippy,
    /// rustdoc for the workspace crates, warnings as errors.
    Doc,
    /// Every test: nextest when installed, plus doc tests.
    Tests,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 5] = [Step::Fmt, Step::Tidy, Step::Clippy, Step::Doc, Step::Tests];
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Fmt => "fmt",
            Step::Tidy => "tidy",
            Step::Clippy => "clippy",
            Step::Doc => "doc",
            Step::Tests => "tests",
        })
    }
}

fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.args(args).current_dir(root);
    // On CI (`CI` set, a fresh clone every run) incremental compilation only costs: it writes
    // caches no later build reads. Locally it stays on, as the profile says.
    if std::env::var_os("CI").is_some() && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        cmd.env("CARGO_INCREMENTAL", "0");
    }
    cmd
}

fn has_nextest(root: &Path) -> bool {
    cargo(root, &["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a command with inherited output; `Ok(false)` when it exits unsuccessfully.
fn run(cmd: &mut Command) -> Result<bool> {
    eprintln!("ci: $ {}", render(cmd));
    Ok(cmd.status()?.success())
}

fn render(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs nextest, passing its output through, and ends with one plain line
/// `ci: N passed, N failed, N skipped` taken from nextest's summary, so that whoever reads only
/// the last line of CI's output sees the count.
fn run_nextest(cmd: &mut Command) -> Result<bool> {
    use std::io::{BufRead, BufReader, Write};
    eprintln!("ci: $ {}", render(cmd));
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn()?;
    let mut summary = None;
    if let Some(stderr) = child.stderr.take() {
        let mut out = std::io::stderr().lock();
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            writeln!(out, "{line}")?;
            if line.trim_start().starts_with("Summary [") {
                summary = Some(line);
            }
        }
    }
    let ok = child.wait()?.success();
    if let Some(line) = summary {
        let count = |word: &str| count_before(&line, word);
        eprintln!(
            "ci: {} passed, {} failed, {} skipped",
            count("passed"),
            count("failed"),
            count("skipped")
        );
    }
    Ok(ok)
}

/// The number written just before `word` in a nextest summary line (0 when absent), e.g.
/// `212` for `passed` in `213 tests run: 212 passed, 1 failed, 0 skipped`.
fn count_before(line: &str, word: &str) -> u64 {
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .find(|w| w[1] == word)
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0)
}

/// Runs one step on the workspace at `root`; `Ok(false)` means the step found a problem.
pub fn run_step(root: &Path, step: Step) -> Result<bool> {
    match step {
        Step::Fmt => run(&mut cargo(root, &["fmt", "--all", "--", "--check"])),
        Step::Tidy => match tidy::check(root) {
            Ok(()) => Ok(true),
            Err(e) => {
                eprintln!("{e:#}");
                Ok(false)
            }
        },
        Step::Clippy => run(&mut cargo(
            root,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
        )),
        // `--examples` (there are none) makes cargo resolve features as clippy's
        // `--all-targets` does, dev-dependencies included, so rustdoc reuses the dependency
        // metadata clippy built instead of checking 44 dependencies again (docs/ci.md).
        Step::Doc => run(
            cargo(root, &["doc", "--workspace", "--no-deps", "--all-features"])
                .args(["--lib", "--bins", "--examples"])
                .env("RUSTDOCFLAGS", "-D warnings"),
        ),
        Step::Tests => {
            let doc_ok = run(&mut cargo(
                root,
                &["test", "--workspace", "--all-features", "--doc"],
            ))?;
            let tests_ok = if has_nextest(root) {
                run_nextest(&mut cargo(
                    root,
                    &[
                        "nextest",
                        "run",
                        "--workspace",
                        "--all-features",
                        "--no-fail-fast",
                    ],
                ))?
            } else {
                eprintln!("ci: cargo-nextest is not installed; using cargo test");
                run(&mut cargo(
                    root,
                    &["test", "--workspace", "--all-features", "--no-fail-fast"],
                ))?
            };
            Ok(doc_ok && tests_ok)
        }
    }
}

/// The environment variable that points the MongoDB runs at a server.
const MONGODB_URI_VAR: &str = "TEST_MONGODB_URI";

/// The one line that says whether the MongoDB runs (the store contract suite and the server's
/// end-to-end tests on MongoDB) happen, given the value of `TEST_MONGODB_URI`. The URI is not
/// printed: it may hold a password.
fn mongodb_line(uri: Option<&str>) -> &'static str {
    match uri {
        Some(uri) if !uri.trim().is_empty() => {
            "ci: MongoDB runs: the store contract suite and the server end-to-end tests also run \
             against TEST_MONGODB_URI"
        }
        _ => {
            "ci: MongoDB runs skipped: TEST_MONGODB_URI is not set, so the store contract suite \
             and the server end-to-end tests ran on the embedded store only"
        }
    }
}

/// Runs `steps` in order on the workspace at `root` and stops at the first failing one.
pub fn run_steps(root: &Path, steps: &[Step]) -> Result<()> {
    for &step in steps {
        let started = Instant::now();
        eprintln!("ci: step {step} starts");
        if step == Step::Tests {
            eprintln!(
                "{}",
                mongodb_line(std::env::var(MONGODB_URI_VAR).ok().as_deref())
            );
        }
        let ok = run_step(root, step)?;
        if step != Step::Tests || !ok {
            // The tests step ends with the test count, which should stay the last line.
            eprintln!(
                "ci: step {step} {} in {:.1} s",
                if ok { "passed" } else { "FAILED" },
                started.elapsed().as_secs_f64()
            );
        }
        if !ok {
            bail!("ci failed at step `{step}`");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! These tests run the real CI steps on tiny scratch workspaces, each broken in one way,
    //! and check that CI fails at the step that should catch it. A clean scratch workspace
    //! passes every step, so the failures are not an accident of the setup.

    use super::*;
    use std::path::PathBuf;

    const ARCH: &str =
        "<!-- tidy:deps:start -->\n| `scratch` | — |\n| `helper` | — |\n<!-- tidy:deps:end -->\n";
    const GOOD_LIB: &str = "//! A scratch crate.\n\n/// Adds one.\npub fn add_one(x: u8) -> u8 {\n    x.wrapping_add(1)\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(super::add_one(1), 2);\n    }\n}\n";

    /// A scratch workspace of two crates. The cases break and repair the same workspace in
    /// turn, so nested cargo builds its dependencies once and then only what a case changed.
    struct Scratch {
        dir: tempfile::TempDir,
    }

    impl Scratch {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path();
            std::fs::write(
                root.join("Cargo.toml"),
                "[workspace]\nmembers = [\"scratch\", \"helper\"]\nresolver = \"3\"\n",
            )
            .expect("write");
            std::fs::write(root.join("ARCHITECTURE.md"), ARCH).expect("write");
            // Nested cargo must not share the outer build's target directory or its lock, so
            // the scratch workspace names its own in a config file that nested cargo reads.
            let cfg = root.join(".cargo");
            std::fs::create_dir_all(&cfg).expect("mkdir");
            std::fs::write(
                cfg.join("config.toml"),
                format!(
                    "[build]\ntarget-dir = {:?}\n",
                    root.join("target").display().to_string()
                ),
            )
            .expect("write");
            let scratch = Self { dir };
            scratch.write_crate("helper", "//! A helper crate.\n", "");
            scratch.write_crate("scratch", GOOD_LIB, "");
            scratch
        }

        fn root(&self) -> PathBuf {
            self.dir.path().to_path_buf()
        }

        /// Writes crate `name` with this `lib.rs` and these `[dependencies]` lines.
        fn write_crate(&self, name: &str, lib: &str, deps: &str) {
            let dir = self.root().join(name);
            std::fs::create_dir_all(dir.join("src")).expect("mkdir");
            std::fs::write(
                dir.join("Cargo.toml"),
                format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n{deps}"
                ),
            )
            .expect("write");
            std::fs::write(dir.join("src/lib.rs"), lib).expect("write");
        }

        /// The first step that fails with the `scratch` crate written this way, or `None`.
        /// The crate is put back in its clean state afterwards.
        fn failing_step_with(&self, lib: &str, deps: &str) -> Option<Step> {
            self.write_crate("scratch", lib, deps);
            let failing = [Step::Fmt, Step::Tidy, Step::Clippy, Step::Tests]
                .into_iter()
                .find(|&step| !run_step(&self.root(), step).expect("step runs"));
            self.write_crate("scratch", GOOD_LIB, "");
            failing
        }
    }

    #[test]
    fn the_mongodb_line_says_whether_the_runs_happen() {
        for unset in [None, Some(""), Some("  ")] {
            assert!(mongodb_line(unset).starts_with("ci: MongoDB runs skipped: "));
        }
        let line = mongodb_line(Some("mongodb://u:hunter2@127.0.0.1:10260/"));
        assert!(line.starts_with("ci: MongoDB runs: "), "{line}");
        assert!(!line.contains("hunter2"));
    }

    #[test]
    fn nextest_summary_counts() {
        let line = "     Summary [  59.286s] 213 tests run: 212 passed, 1 failed, 3 skipped";
        assert_eq!(count_before(line, "passed"), 212);
        assert_eq!(count_before(line, "failed"), 1);
        assert_eq!(count_before(line, "skipped"), 3);
        let clean = "     Summary [  1.0s] 5 tests run: 5 passed, 0 skipped";
        assert_eq!(count_before(clean, "failed"), 0);
    }

    #[test]
    fn ci_catches_each_kind_of_breakage() {
        let scratch = Scratch::new();
        let cases = [
            ("a clean workspace", GOOD_LIB.to_owned(), "", None),
            (
                "unformatted code",
                GOOD_LIB.replace("x.wrapping_add(1)", "x.wrapping_add( 1 )"),
                "",
                Some(Step::Fmt),
            ),
            (
                "a file without a `//!` line",
                GOOD_LIB.replace("//! A scratch crate.\n", "// A scratch crate.\n"),
                "",
                Some(Step::Tidy),
            ),
            (
                "a crate edge ARCHITECTURE.md does not list",
                GOOD_LIB.to_owned(),
                "helper = { path = \"../helper\" }\n",
                Some(Step::Tidy),
            ),
            (
                "a clippy warning",
                GOOD_LIB.replace(
                    "/// Adds one.",
                    "/// Counts.\npub fn count(v: &Vec<u8>) -> usize {\n    v.len()\n}\n\n/// Adds one.",
                ),
                "",
                Some(Step::Clippy),
            ),
            (
                "a failing test",
                GOOD_LIB.replace("add_one(1), 2", "add_one(1), 3"),
                "",
                Some(Step::Tests),
            ),
            // Again clean after every breakage: no case's failure leaks into the next.
            ("the repaired workspace", GOOD_LIB.to_owned(), "", None),
        ];
        for (what, lib, deps, want) in cases {
            assert_eq!(scratch.failing_step_with(&lib, deps), want, "{what}");
        }
    }
}
