//! `cargo xtask`: project automation in Rust, so it runs wherever cargo does.
//!
//! * `cargo xtask ci`: format check, tidy, clippy (warnings are errors), docs (warnings are
//!   errors), then every test. `.ci/run` runs exactly this.
//! * `cargo xtask tidy`: only the tidy rules.
//! * `cargo xtask bench`: release build, the end-to-end AMI → WebSocket harness, the parser,
//!   REST under wrk and idle memory; writes `docs/performance.md` and
//!   `target/bench/summary.json`. `cargo xtask bench criterion [CRATE...]`: the criterion
//!   benchmarks.

mod bench;
mod ci;
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run_steps(&root, &ci::Step::ALL),
        Some("tidy") => tidy::check(&root),
        Some("bench") => bench::run(&root, &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <ci | tidy | bench [criterion [CRATE...]]>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
