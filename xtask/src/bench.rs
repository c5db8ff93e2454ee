//! `cargo xtask bench`: runs the criterion benchmarks and the parser throughput measurement
//! that `docs/performance.md` quotes. Benchmarks are never part of `ci`: numbers from a shared
//! 2-core machine are evidence for the docs, not pass/fail gates.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The crates that have criterion benchmarks.
const BENCH_CRATES: [&str; 4] = ["ami-proto", "domain", "store", "hub"];

/// The generator of the realistic AMI stream, kept in the repository.
fn generator(root: &Path) -> Option<PathBuf> {
    Some(root.join("fixtures/bench/gen_ami.py")).filter(|p| p.is_file())
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(root);
    cmd
}

fn check(cmd: &mut Command) -> Result<()> {
    eprintln!("bench: $ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs the benchmarks of `only` (or of every bench crate when empty).
pub fn run(root: &Path, only: &[String]) -> Result<()> {
    let crates: Vec<&str> = if only.is_empty() {
        BENCH_CRATES.to_vec()
    } else {
        only.iter().map(String::as_str).collect()
    };
    for krate in &crates {
        check(cargo(root).args(["bench", "-p", krate]))?;
    }
    if crates.contains(&"ami-proto") {
        parser_throughput(root)?;
    }
    Ok(())
}

/// Generates the realistic 200,000-packet stream and times `ami-dump --count` on it.
fn parser_throughput(root: &Path) -> Result<()> {
    let Some(generator) = generator(root) else {
        bail!(
            "fixtures/bench/gen_ami.py not found in the workspace at {}",
            root.display()
        );
    };
    let stream = root.join("target/ami200k.ami");
    if !stream.is_file() {
        check(
            Command::new("python3")
                .arg(&generator)
                .args(["-n", "200000", "-o"])
                .arg(&stream),
        )?;
    }
    check(cargo(root).args(["build", "--release", "-p", "ami-proto", "--bin", "ami-dump"]))?;
    let dump = root.join("target/release/ami-dump");
    for chunk in ["4096", "65536"] {
        for _ in 0..3 {
            check(
                Command::new(&dump)
                    .args(["--count", "--chunk", chunk])
                    .arg(&stream),
            )?;
        }
    }
    Ok(())
}
