//! The `api-server` binary as a child process, for the faults that only a real process can
//! suffer (SIGTERM, `kill -9`) and for reading the server's own memory use from `/proc`; and
//! the `seeder` binary, run against a real server.
//!
//! The binary is the one cargo built next to the test binary (a workspace test run builds it);
//! when it is missing or older than a source it is made of, it is built once with `cargo
//! build -p api-server --bin api-server` into the same target directory, so the tests never run
//! a stale server.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

/// How long the child may take to start or to stop.
const PATIENCE: Duration = Duration::from_secs(20);

/// The path of a fresh `api-server` binary next to the test binary's `deps/` directory, built
/// first when missing or stale.
pub fn binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build("api-server").map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// The path of a fresh `seeder` binary, built the same way: the seeder end-to-end tests run it
/// against a real server.
pub fn seeder_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build("seeder").map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Builds the binary of the package `name` under `bins/` (its binary has the same name) when
/// it is missing or older than a source it is made of.
fn build(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/e2e-… → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("no target directory above {}", exe.display()))?
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| anyhow!("no target directory above {}", profile_dir.display()))?;
    let bin = profile_dir.join(name);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("the tests crate has no parent directory"))?;
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if let Some(built) = built
        && newest_source(workspace, name)? <= built
    {
        return Ok(bin);
    }
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", name, "--bin", name])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .with_context(|| format!("run cargo build for {name}"))?;
    if !status.success() {
        bail!("cargo build -p {name} failed: {status}");
    }
    if !bin.exists() {
        bail!("cargo built {name} but {} is missing", bin.display());
    }
    Ok(bin)
}

/// The newest modification time of what the binary `name` is built from: the workspace's
/// `Cargo.toml` and `Cargo.lock`, and the manifest and `src/` of `bins/<name>` and of every
/// crate under `crates/` (all of which it may depend on). Tests and docs are left out: a change
/// there does not make cargo relink the binary, so it must not make it look stale either.
fn newest_source(workspace: &Path, name: &str) -> anyhow::Result<std::time::SystemTime> {
    fn walk(dir: &Path, newest: &mut std::time::SystemTime) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(&entry.path(), newest)?;
            } else if kind.is_file() {
                *newest = (*newest).max(entry.metadata()?.modified()?);
            }
        }
        Ok(())
    }
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified());
    let mut newest =
        modified(&workspace.join("Cargo.lock"))?.max(modified(&workspace.join("Cargo.toml"))?);
    let mut packages = vec![workspace.join("bins").join(name)];
    for entry in std::fs::read_dir(workspace.join("crates"))? {
        packages.push(entry?.path());
    }
    for package in packages {
        if let Ok(t) = modified(&package.join("Cargo.toml")) {
            newest = newest.max(t);
        }
        let src = package.join("src");
        if src.is_dir() {
            walk(&src, &mut newest)
                .with_context(|| format!("read the sources under {}", src.display()))?;
        }
    }
    Ok(newest)
}

/// A running `api-server` child on a port it picked itself, with its stderr collected.
pub struct ServerProcess {
    child: Child,
    /// The HTTP address it listens on.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts the binary on `127.0.0.1:0` with the embedded store in `data_dir` and `args`
    /// added, and waits for its `listening` line.
    pub fn start(data_dir: &Path, args: &[&str]) -> anyhow::Result<ServerProcess> {
        Self::start_with_env(data_dir, args, &[])
    }

    /// Like [`ServerProcess::start`], with the environment variables `env` set (and no other
    /// `EXTSTATUS_*`, `AMI_SECRET` or `MONGODB_URI` from the test's environment).
    pub fn start_with_env(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<ServerProcess> {
        let mut cmd = Command::new(binary()?);
        for (key, _) in std::env::vars() {
            if key.starts_with("EXTSTATUS_") || key == "AMI_SECRET" || key == "MONGODB_URI" {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env.iter().copied());
        cmd.env_remove("RUST_LOG")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawn api-server")?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening")
                    && let Some(at) = line.find("addr=")
                {
                    let addr = line[at + 5..].split_whitespace().next().map(str::to_owned);
                    let _ = tx.send(addr);
                }
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let addr = match rx.recv_timeout(PATIENCE) {
            Ok(Some(addr)) => addr,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "api-server did not report its address; it logged:\n{}",
                    log.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
                );
            }
        };
        let addr = addr
            .parse()
            .with_context(|| format!("the listening address {addr:?}"))?;
        Ok(ServerProcess { child, addr, log })
    }

    /// Runs the binary with the embedded store in `data_dir` and `args` added, expecting it to
    /// refuse to start: waits for it to exit and returns its exit code and what it wrote to
    /// stderr. Fails when it is still running (it started instead) after the patience.
    pub fn run_expecting_exit(
        data_dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<(Option<i32>, String)> {
        let mut cmd = Command::new(binary()?);
        for (key, _) in std::env::vars() {
            if key.starts_with("EXTSTATUS_") || key == "AMI_SECRET" || key == "MONGODB_URI" {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .env_remove("RUST_LOG")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn api-server")?;
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait()? {
                let mut text = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    std::io::Read::read_to_string(&mut stderr, &mut text)?;
                }
                return Ok((status.code(), text));
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "api-server was still running after {PATIENCE:?}; it was expected to refuse to start"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Resident memory of the process now, in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{}/status", self.pid()))
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Sends `signal` (`TERM`, `KILL`) and waits for the process to end; returns its exit code
    /// (`None` when a signal ended it).
    pub fn signal_and_wait(mut self, signal: &str) -> anyhow::Result<Option<i32>> {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()?;
        if !sent.success() {
            bail!("kill -{signal} {pid} failed");
        }
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if std::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                bail!("api-server did not stop within {PATIENCE:?} after SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A test that failed half-way leaves no server behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
