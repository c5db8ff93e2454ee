//! Tidy checks: rules about the tree itself that no compiler checks. They run as ordinary tests
//! (see the bottom of this file), so `cargo xtask ci` fails on them like on any failing test.
//!
//! * Every workspace crate depends only on the workspace crates that ARCHITECTURE.md allows.
//! * Every Rust source file starts with a `//!` line saying what it is for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The markers around the machine-read dependency table in ARCHITECTURE.md.
const DEPS_START: &str = "<!-- tidy:deps:start -->";
const DEPS_END: &str = "<!-- tidy:deps:end -->";

/// Which workspace crates each crate may depend on.
pub type Allowed = BTreeMap<String, BTreeSet<String>>;

/// Reads the allowed-edges table from ARCHITECTURE.md text. Rows look like
/// ``| `store` | `domain` | ...`` and `—` means "none".
pub fn parse_allowed(architecture: &str) -> Result<Allowed> {
    let start = architecture
        .find(DEPS_START)
        .context("ARCHITECTURE.md has no `<!-- tidy:deps:start -->` marker")?;
    let end = architecture
        .find(DEPS_END)
        .context("ARCHITECTURE.md has no `<!-- tidy:deps:end -->` marker")?;
    let mut allowed = Allowed::new();
    for line in architecture[start..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // A row is `| crate | deps | ...`; the header and separator rows have no backticks.
        let (Some(krate), Some(deps)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Some(krate) = krate.strip_prefix('`').and_then(|k| k.strip_suffix('`')) else {
            continue;
        };
        let deps = deps
            .split(',')
            .map(|d| d.trim().trim_matches('`'))
            .filter(|d| !d.is_empty() && *d != "—" && *d != "-")
            .map(str::to_owned)
            .collect();
        allowed.insert(krate.to_owned(), deps);
    }
    if allowed.is_empty() {
        bail!("the ARCHITECTURE.md dependency table between the tidy markers has no rows");
    }
    Ok(allowed)
}

/// The workspace crates each workspace crate depends on (all dependency kinds), from
/// `cargo metadata`.
pub fn workspace_edges(root: &Path) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let packages = meta["packages"].as_array().context("no packages")?;
    let names: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    let mut edges = BTreeMap::new();
    for p in packages {
        let name = p["name"]
            .as_str()
            .context("package without name")?
            .to_owned();
        let deps = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["name"].as_str())
            .filter(|d| names.contains(*d))
            .map(str::to_owned)
            .collect();
        edges.insert(name, deps);
    }
    Ok(edges)
}

/// Every edge that the table does not allow, and every crate the table does not list, as
/// human sentences.
pub fn forbidden_edges(
    edges: &BTreeMap<String, BTreeSet<String>>,
    allowed: &Allowed,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (krate, deps) in edges {
        let Some(ok) = allowed.get(krate) else {
            problems.push(format!(
                "crate `{krate}` is not in the ARCHITECTURE.md dependency table"
            ));
            continue;
        };
        for dep in deps.difference(ok) {
            problems.push(format!(
                "crate `{krate}` depends on `{dep}`, which ARCHITECTURE.md does not allow \
                 (allowed: {})",
                if ok.is_empty() {
                    "none".to_owned()
                } else {
                    ok.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            ));
        }
    }
    problems
}

/// Whether a source text starts with a `//!` line.
pub fn has_module_doc(source: &str) -> bool {
    source.trim_start_matches('\u{feff}').starts_with("//!")
}

/// Every `.rs` file under `root`, skipping build output and vendored trees.
pub fn rust_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if entry.file_type()?.is_dir() {
                if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Files under `root` that lack the `//!` first line, relative to `root`.
pub fn files_without_module_doc(root: &Path) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for path in rust_files(root)? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if !has_module_doc(&text) {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            missing.push(rel.display().to_string());
        }
    }
    Ok(missing)
}

/// Runs every tidy check on the workspace at `root`; the error lists every problem.
pub fn check(root: &Path) -> Result<()> {
    let architecture =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).context("reading ARCHITECTURE.md")?;
    let allowed = parse_allowed(&architecture)?;
    let mut problems = forbidden_edges(&workspace_edges(root)?, &allowed);
    problems.extend(
        files_without_module_doc(root)?
            .into_iter()
            .map(|f| format!("{f} does not start with a `//!` line saying what it is for")),
    );
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "tidy found {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives in the workspace")
            .to_path_buf()
    }

    /// The real tree passes tidy. This is the test that makes `cargo xtask ci` enforce it.
    #[test]
    fn tidy() {
        if let Err(e) = check(&workspace_root()) {
            panic!("{e:#}");
        }
    }

    const TABLE: &str = "
| crate | may depend on | job |
|---|---|---|
<!-- tidy:deps:start -->
| `domain` | — | record |
| `store` | `domain` | storage |
| `api-server` | `domain`, `store` | server |
<!-- tidy:deps:end -->
";

    fn edges(rows: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        rows.iter()
            .map(|(k, ds)| (k.to_string(), ds.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    #[test]
    fn a_forbidden_edge_is_reported() {
        let allowed = parse_allowed(TABLE).expect("table parses");
        assert!(allowed["domain"].is_empty());
        assert_eq!(allowed["api-server"].len(), 2);
        let ok = edges(&[("domain", &[]), ("store", &["domain"])]);
        assert!(forbidden_edges(&ok, &allowed).is_empty());
        let bad = edges(&[("domain", &["store"]), ("hub", &[])]);
        assert_eq!(
            forbidden_edges(&bad, &allowed),
            vec![
                "crate `domain` depends on `store`, which ARCHITECTURE.md does not allow \
                 (allowed: none)",
                "crate `hub` is not in the ARCHITECTURE.md dependency table",
            ]
        );
    }

    #[test]
    fn a_file_without_module_doc_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("target")).expect("mkdir");
        std::fs::write(dir.path().join("src/good.rs"), "//! Says what it is for.\n").expect("w");
        std::fs::write(
            dir.path().join("src/bad.rs"),
            "// not a module doc\nfn f() {}\n",
        )
        .expect("w");
        std::fs::write(dir.path().join("target/skipped.rs"), "fn g() {}\n").expect("w");
        let missing = files_without_module_doc(dir.path()).expect("walk");
        assert_eq!(missing, vec!["src/bad.rs".to_owned()]);
    }

    #[test]
    fn missing_markers_are_an_error() {
        let err = parse_allowed("no table here").expect_err("must fail");
        assert!(err.to_string().contains("tidy:deps:start"));
    }
}
