//! Writes a generated history into an embedded store, the one the history benchmark reads
//! (`benches/support/history_gen.rs`), ending at the last midnight (UTC) before now: what
//! `cargo xtask bench` preloads with `BENCH_HISTORY=N`, to compare status writes with and
//! without a large history.
//!
//! `cargo run --release -p store --example seed_history -- DATA_DIR ENTRIES FIRST COUNT`
//! writes about ENTRIES entries for the COUNT extensions FIRST, FIRST+1, ... (as many whole
//! days as that takes, at least one) into `DATA_DIR/extstatus.redb`, and says how many.

#[path = "../benches/support/history_gen.rs"]
mod history_gen;

use anyhow::{Context as _, bail};
use store::{EmbeddedStore, Repository, StoreOptions};

const USAGE: &str = "usage: seed_history DATA_DIR ENTRIES FIRST_EXTENSION EXTENSIONS";

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> anyhow::Result<T> {
    let raw = args
        .get(i)
        .with_context(|| format!("{what} is missing; {USAGE}"))?;
    raw.parse()
        .map_err(|_| anyhow::anyhow!("{what} must be a whole number, not {raw:?}; {USAGE}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .with_context(|| format!("DATA_DIR is missing; {USAGE}"))?;
    let entries: u64 = arg(&args, 1, "ENTRIES")?;
    let first: u32 = arg(&args, 2, "FIRST_EXTENSION")?;
    let count: usize = arg(&args, 3, "EXTENSIONS")?;
    if count == 0 || entries == 0 {
        bail!("ENTRIES and EXTENSIONS must be above 0; {USAGE}");
    }
    let per_day = count as f64 * history_gen::ENTRIES_PER_EXTENSION_DAY;
    let days = ((entries as f64 / per_day).round() as i64).max(1);
    let today = domain::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .context("midnight")?
        .and_utc();
    let start = today - chrono::Duration::days(days);
    let extensions = history_gen::numbers(first, count);
    let history = history_gen::history(start, days, &extensions);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    let store = EmbeddedStore::open(std::path::Path::new(dir), StoreOptions::default())
        .await
        .with_context(|| format!("opening the embedded store in {dir}"))?;
    for chunk in history.chunks(200_000) {
        store.append_history(chunk).await?;
    }
    store.flush().await?;
    println!(
        "{} history entries over {days} days for extensions {first} to {} written to {dir}",
        history.len(),
        u64::from(first) + count as u64 - 1
    );
    Ok(())
}
